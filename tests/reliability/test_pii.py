"""Phone numbers, ID numbers and e-mail addresses never reach the database, the logs or an answer."""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn
from fastapi.testclient import TestClient

from model.config import TrainingConfig
from model.settings import Settings
from serve.app import create_app
from serve.deps import get_router
from serve.security import loggable_path
from tests.conftest import TINY_TICKETS

PHONE, ID_NUMBER, EMAIL = "13812345678", "11010119900307123X", "zhang.san@example.com"
# Forms the masks missed before, as a city's live traffic writes them (the shared real data holds
# none: its organisers masked phone numbers).
QQ, WECHAT, PLATE, PASSPORT = "987654321", "zhaotiezhu1988", "12345", "E12345678"
IN_WORDS, SPACED = "一三八一二三四五六七八", "139 - 8765 - 4321"
SECRETS = (PHONE, ID_NUMBER, ID_NUMBER.lower(), EMAIL, "zhang.san", QQ, WECHAT)
# Fragments of the plate and the spaced number with a letter or a separator in them: digits alone
# ("8765") turned up inside the floats of an answer or a log record (a duration of 0.8765210…).
SECRETS += (f"A{PLATE}", f"a{PLATE}", PASSPORT, PASSPORT.lower(), IN_WORDS)
SECRETS += ("139 - 8765", "8765 - 4321", "139-8765", "8765-4321")
PII = (
    f"电话{PHONE}，身份证{ID_NUMBER}，邮箱{EMAIL}，QQ号{QQ}，微信{WECHAT}，车牌湘A{PLATE}，"
    f"护照{PASSPORT}，手机{IN_WORDS}，{SPACED}"
)
MASKS = ("[手机号]", "[身份证号]", "[邮箱]", "[qq号]", "[微信号]", "[车牌号]", "[护照号]")


class Broken:
    """A router whose unexpected error quotes the tickets (as a tokenizer or numpy error may)."""

    version = "broken"

    def predict(self, tickets: Any, **_: Any) -> Any:
        raise ValueError(f"cannot route {tickets}")


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret} leaked"


@pytest.fixture(scope="module")
def pii_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_config: TrainingConfig) -> Path:
    """A model whose training titles and texts all carry PII (the similar tickets, their titles
    and snippets, come from them)."""
    from training.train import train

    root = tmp_path_factory.mktemp("pii-models")
    data = root / "pii.csv"
    rows = [(f"{t} {PII}", f"{PII}，{x}", d, c) for t, x, d, c in TINY_TICKETS]
    data.write_text(
        "id,title,text,department,category\n"
        + "".join(f'P{i},{t},"{x}",{d},{c}\n' for i, (t, x, d, c) in enumerate(rows)),
        encoding="utf-8",
    )
    result = train([data], root / "pii", config=tiny_config)
    assert result.model_dir is not None
    return result.model_dir


@pytest.fixture
def pii_client(make_client: Callable[..., TestClient], pii_model_dir: Path) -> TestClient:
    return make_client(model_root=pii_model_dir.parent, model_dir=pii_model_dir)


def test_similar_tickets_are_returned_masked(pii_client: TestClient) -> None:
    ticket = {"title": f"讨薪 {PII}", "text": f"老板拖欠工资三个月不发 {PII}"}
    single = pii_client.post("/v1/route", json=ticket)
    batch = pii_client.post("/v1/route/batch", json={"items": [ticket]})
    for similar in (single.json()["similar"], batch.json()["results"][0]["result"]["similar"]):
        assert similar, "the model has similar tickets to show"
        for s in similar:
            assert all(mask in s["title"] for mask in MASKS), s["title"]
            # The snippet is the start of the text: the first numbers of PII, masked.
            assert s["snippet"].startswith("电话[手机号],身份证[身份证号],邮箱[邮箱]"), s
    assert_clean(single.text)
    assert_clean(batch.text)


def test_feedback_is_stored_masked(pii_client: TestClient, tmp_path: Path) -> None:
    shown = pii_client.post("/v1/route", json={"text": f"拖欠工资 {PII}"}).json()
    shown["echo"] = f"the client may send anything back: {PII}"
    # Written with doubled spaces, a tab, a newline or zero-width spaces, these were stored as sent.
    spaced = ["138  1234  5678", "138\t1234\t5678", "138\n1234\n5678", "138\u200b1234\u200b5678"]
    shown["notes"] = [*spaced, "4301021990\u200b01011234"]
    response = pii_client.post(
        "/v1/feedback",
        json={
            "ticket_id": "PII-1",
            "title": f"投诉 {PII}",
            "text": f"公司拖欠工资，{PII}",
            "suggestion": shown,
            "department": "人社",
        },
    )
    assert response.status_code == 201, response.text
    assert_clean(response.text)
    db_file = tmp_path / "var" / "paidan.db"
    with sqlite3.connect(db_file) as conn:
        [(title, text, suggestion)] = conn.execute(
            "SELECT title, text, suggestion FROM feedback WHERE ticket_id = 'PII-1'"
        ).fetchall()
    for stored in (title, text, suggestion):
        assert_clean(stored)
    assert all(mask in text for mask in MASKS)
    assert "[手机号]" in json.loads(suggestion)["echo"]
    assert json.loads(suggestion)["notes"] == ["[手机号]"] * 4 + ["[身份证号]"]
    assert json.loads(suggestion)["model_version"] == shown["model_version"]  # its case kept
    exported = pii_client.get("/v1/feedback")
    assert exported.status_code == 200 and "PII-1" in exported.text
    assert_clean(exported.text)


# Written in traditional characters, as a Hong Kong, Macao or Taiwan resident writes: the keywords
# before a bare landline or a passport number, and the province of a plate. Stored as written before.
TRADITIONAL = "聯繫電話是8888 0000，座機 8765-4321，護照號碼G87654321，車牌滬B54321，粵A·D12345"
TRADITIONAL_SECRETS = ("8888 0000", "8765-4321", "g87654321", "b54321", "d12345")


def test_feedback_written_in_traditional_characters_is_stored_masked(
    pii_client: TestClient, tmp_path: Path
) -> None:
    shown = pii_client.post("/v1/route", json={"text": f"拖欠工資 {TRADITIONAL}"}).json()
    response = pii_client.post(
        "/v1/feedback",
        json={
            "ticket_id": "PII-TRAD",
            "title": f"投訴 {TRADITIONAL}",
            "text": f"公司拖欠工資，{TRADITIONAL}",
            "suggestion": shown,
            "department": "人社",
        },
    )
    assert response.status_code == 201, response.text
    with sqlite3.connect(tmp_path / "var" / "paidan.db") as conn:
        [(title, text)] = conn.execute(
            "SELECT title, text FROM feedback WHERE ticket_id = 'PII-TRAD'"
        ).fetchall()
    for stored in (title, text, pii_client.get("/v1/feedback").text):
        assert not [s for s in TRADITIONAL_SECRETS if s in stored.lower()], stored
    assert text.count("[电话]") == 2 and "[护照号]" in text and text.count("[车牌号]") == 2


# What the paidan of 2026-12-03 stored as written: the masks learnt these forms the day after.
OLD_MISSED = ("138。1234。5601", "139\u20108765\u20104321", "430102 900101 121")


def test_rows_an_earlier_version_stored_unmasked_are_masked_whenever_they_are_read(
    pii_client: TestClient, tmp_path: Path
) -> None:
    # They stayed as written after the upgrade, and GET /v1/feedback, retrain and drift read them so.
    from paidan.cli import _feedback_records

    numbers = "，".join(OLD_MISSED)
    assert pii_client.get("/readyz").json()["database"]["ok"]  # the schema is made
    db_file = tmp_path / "var" / "paidan.db"
    suggestion = {"department": {"label": f"网格员{OLD_MISSED[0]}"}, OLD_MISSED[1]: numbers}
    with sqlite3.connect(db_file) as conn:  # as the old paidan wrote it
        conn.execute(
            "INSERT INTO feedback (ticket_id, title, text, suggestion, department, category, "
            "created_at) VALUES ('OLD-1', ?, ?, ?, ?, ?, '2026-12-03 10:00:00')",
            (
                f"回电{OLD_MISSED[0]}",
                f"楼下烧烤油烟很大，{numbers}",
                json.dumps(suggestion, ensure_ascii=False),
                f"网格员{OLD_MISSED[1]}",
                f"联系{OLD_MISSED[2]}",
            ),
        )
    exported = pii_client.get("/v1/feedback")
    assert exported.status_code == 200 and "OLD-1" in exported.text
    [row] = [json.loads(line) for line in exported.text.splitlines()]
    assert row["title"] == "回电[手机号]"
    assert row["text"] == "楼下烧烤油烟很大,[手机号],[手机号],[身份证号]"
    assert (row["department"], row["category"]) == ("网格员[手机号]", "联系[身份证号]")
    assert row["suggestion"] == {
        "department": {"label": "网格员[手机号]"},
        "[手机号]": "[手机号],[手机号],[身份证号]",
    }
    settings = Settings(data_dir=tmp_path / "var")
    records = _feedback_records(settings, None, with_decision=True)  # retrain's and drift's read
    assert [(r["title"], r["department"]) for r in records] == [("回电[手机号]", "网格员[手机号]")]
    for read in (exported.text, json.dumps(records, default=str, ensure_ascii=False)):
        for number in (*OLD_MISSED, "1234", "8765", "900101"):
            assert number not in read, f"{number} leaked"
    with sqlite3.connect(db_file) as conn:  # the row itself is left as it was stored
        assert conn.execute("SELECT title FROM feedback").fetchall() == [(f"回电{OLD_MISSED[0]}",)]


def test_logs_hold_no_pii(
    make_client: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    # Raising server exceptions: an error re-raised past the app would reach the server's log
    # (test_an_unexpected_error_reaches_no_server_log below), not only these records.
    client = make_client()
    ticket: dict[str, Any] = {"id": "L-1", "title": f"投诉{PII}", "text": f"拖欠工资 {PII}"}
    with caplog.at_level(logging.DEBUG):
        assert client.post("/v1/route", json=ticket).status_code == 200
        client.post("/v1/route/batch", json={"items": [ticket, {"text": 1, "title": PII}]})
        client.post("/v1/feedback", json={**ticket, "department": "人社"})
        client.post("/v1/route", json={**ticket, "title": PII * 20})  # 422: too long
        client.get(f"/v1/route?text={PII}&phone={PHONE}")  # 405, PII in the query string
        client.get(f"/v1/tickets/{PHONE}/{EMAIL}")  # 404, PII in the path
        client.get("/v1/feedback", params={"since": PII})  # 422

        client.app.dependency_overrides[get_router] = lambda: Broken()  # type: ignore[attr-defined]
        assert client.post("/v1/route", json=ticket).status_code == 500
    access = [r.getMessage() for r in caplog.records if r.name == "serve.access"]
    assert len(access) >= 8, access
    assert any('"GET /v1/tickets/[手机号]/[邮箱] HTTP/1.1" 404' in line for line in access), access
    assert any('"GET /v1/route?phone=…&text=… HTTP/1.1" 405' in line for line in access), access
    assert any("ValueError" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    # Everything the server logged; the test's own HTTP client (httpx2) logs the URLs it requests.
    server_records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert len(server_records) > len(access)
    for record in server_records:
        assert_clean(record.getMessage())
        assert_clean(str(record.args))


def test_a_refused_reload_quotes_the_model_dir_masked(
    make_client: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    # "Error messages never quote a value sent": a reload naming a directory outside the model
    # root answered and logged the path as sent, whatever it held.
    client = make_client()
    with caplog.at_level(logging.DEBUG):
        response = client.post("/v1/admin/reload", json={"model_dir": f"/tmp/{PHONE}/{EMAIL}"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "model_refused"
    assert "outside the model root" in error["message"]
    assert "/tmp/[手机号]/[邮箱]" in error["message"]
    assert_clean(response.text)
    refused = [r.getMessage() for r in caplog.records if "reload refused" in r.getMessage()]
    assert len(refused) == 1, refused
    assert_clean(refused[0])


def test_an_unexpected_error_reaches_no_server_log(
    make_settings: Callable[..., Settings],
    cached_loader: Callable[[Path, Path | None], Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Starlette's ServerErrorMiddleware re-raised after the app's 500 "so the server can log it",
    # and uvicorn logged "Exception in ASGI application" with the traceback, whose last line is the
    # message: here the ticket, phone and ID number unmasked. Run under a real uvicorn.
    app = create_app(make_settings(reload_interval=0), router_loader=cached_loader)
    app.dependency_overrides[get_router] = lambda: Broken()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # log_config=None: uvicorn's loggers keep propagating to the root, where caplog listens.
    config = uvicorn.Config(app, log_config=None, log_level="info", access_log=False)
    server = uvicorn.Server(config)
    uvicorn_log = logging.getLogger("uvicorn")
    uvicorn_log.addHandler(caplog.handler)  # even if an earlier test stopped its propagation
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    try:
        with caplog.at_level(logging.DEBUG):
            thread.start()
            deadline = time.monotonic() + 60
            while not server.started:
                assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.05)
            ticket = {"title": f"投诉{PII}", "text": f"拖欠工资 {PII}"}
            response = httpx2.post(f"http://127.0.0.1:{port}/v1/route", json=ticket, timeout=30)
            server.should_exit = True
            thread.join(timeout=30)
    finally:
        server.should_exit = True
        uvicorn_log.removeHandler(caplog.handler)
        sock.close()
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert any(r.name.startswith("uvicorn") for r in records), "uvicorn's log was not captured"
    errors = [r for r in records if r.levelno >= logging.ERROR]
    assert [r.name for r in errors] == ["serve.errors"], [r.getMessage() for r in errors]
    assert "unhandled ValueError on POST /v1/route" in errors[0].getMessage()
    formatter = logging.Formatter()
    for record in records:
        assert_clean(formatter.format(record))  # the message, and any traceback with it


def test_loggable_path_masks_the_path_and_drops_query_values() -> None:
    assert loggable_path("/v1/x/%31%33%38%31%32%33%34%35%36%37%38") == "/v1/x/[手机号]"
    assert loggable_path("/v1/feedback", b"since=2024-01-01&since=x") == "/v1/feedback?since=…"
    line = loggable_path("/", f"{PHONE}={EMAIL}".encode())
    assert_clean(line)


# A grid worker's mobile typed into the department (full-width, as a Chinese keyboard in full-width
# mode writes it), a contact's into the category, and tickets numbered by the caller's phone.
LABEL_MOBILE, LABEL_CONTACT = "１３９８７６５４３２１", "13512345678"


def _in_any_width(secret: str, text: str) -> bool:
    return secret in unicodedata.normalize("NFKC", text)


@pytest.fixture(scope="module")
def pii_labels_model_dir(
    tmp_path_factory: pytest.TempPathFactory, tiny_config: TrainingConfig
) -> Path:
    from training.train import train

    root = tmp_path_factory.mktemp("pii-label-models")
    data = root / "labels.csv"
    rows = [
        (
            f"{PHONE}-{i}",
            t,
            x,
            f"{d}网格员{LABEL_MOBILE}" if d == "人社" else d,
            f"{c}联系人{LABEL_CONTACT}" if c == "环境" else c,
        )
        for i, (t, x, d, c) in enumerate(TINY_TICKETS)
    ]
    data.write_text(
        "id,title,text,department,category\n" + "".join(",".join(r) + "\n" for r in rows),
        encoding="utf-8",
    )
    result = train([data], root / "model", config=tiny_config)
    assert result.model_dir is not None
    return result.model_dir


def _model_files(model_dir: Path) -> list[Path]:
    files = [p for p in model_dir.iterdir() if p.is_file()]
    assert {"metadata.json", "serving.joblib", "router.joblib"} <= {p.name for p in files}
    return files


def _assert_nowhere(secrets: tuple[str, ...], texts: list[str], files: list[Path]) -> None:
    for text in texts + [p.read_bytes().decode("utf-8", "replace") for p in files]:
        for secret in secrets:
            assert not _in_any_width(secret, text), secret
    for p in files:  # numpy keeps strings as UTF-32
        raw = p.read_bytes()
        for secret in secrets:
            for written in {secret, unicodedata.normalize("NFKC", secret)}:
                assert written.encode("utf-32-le") not in raw, (p.name, secret)


def test_labels_of_the_history_are_learnt_masked(pii_labels_model_dir: Path) -> None:
    # Learnt as written, the numbers were in metadata.json and both pickles, every answer naming
    # the department or the category, /v1/model and /metrics' label values; and a dispatcher's
    # correction, stored masked (网格员[手机号]), was a label apart from its history's.
    from model.artifact import load_router

    router, _ = load_router(pii_labels_model_dir)
    assert "人社网格员[手机号]" in router.heads["department"].labels
    assert "环境联系人[手机号]" in router.heads["category"].labels
    assert "住建" in router.heads["department"].labels  # one with nothing to mask as written
    [answer] = router.predict([{"title": "拖欠工资", "text": "老板拖欠工资三个月不发"}])
    shown = answer.model_dump_json()
    assert "人社网格员[手机号]" in shown
    files = _model_files(pii_labels_model_dir)
    _assert_nowhere(("13987654321", LABEL_CONTACT), [shown], files)


def test_ids_of_the_history_are_kept_masked_for_the_similar_tickets(
    pii_labels_model_dir: Path,
) -> None:
    # Kept as written, a ticket numbered by the caller's phone showed it in the similar tickets
    # of every answer, to anyone who may route.
    from model.artifact import load_router

    router, _ = load_router(pii_labels_model_dir)
    assert router.index is not None
    assert list(router.index.ids) == [f"[手机号]-{i}" for i in range(len(TINY_TICKETS))]
    [answer] = router.predict([{"title": "拖欠工资", "text": "老板拖欠工资三个月不发"}])
    assert answer.similar and all(s.id.startswith("[手机号]-") for s in answer.similar)
    _assert_nowhere((PHONE,), [], _model_files(pii_labels_model_dir))


def test_a_model_that_learnt_a_label_as_written_is_scored_under_its_masked_name(
    tmp_path: Path, tiny_config: TrainingConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A champion trained before labels were read masked knows 人社网格员１３９…; the frozen set and
    # the challenger now read 人社网格员[手机号]. Scored as written, its right answers counted as
    # wrong, the comparison said the challenger "lost" the label, and quoted it in the retrain's
    # log and in the report and scores files.
    import model.tickets
    from model.artifact import load_router
    from model.tickets import read_tickets
    from tests.conftest import write_tickets_csv
    from training.compare import score_router
    from training.train import train

    rows = [
        (t, x, f"{d}网格员{LABEL_MOBILE}" if d == "人社" else d, c) for t, x, d, c in TINY_TICKETS
    ]
    data = write_tickets_csv(tmp_path / "t.csv", rows)
    as_written = model.tickets.without_format_characters
    with monkeypatch.context() as m:  # the reader of before: labels as written
        m.setattr(model.tickets, "without_format_characters", lambda labels: labels)
        old = train([data], tmp_path / "old", config=tiny_config).model_dir
    assert old is not None and as_written is model.tickets.without_format_characters
    router, _ = load_router(old)
    assert f"人社网格员{LABEL_MOBILE}" in router.heads["department"].labels
    scores = score_router(router, read_tickets([data]))["heads"]["department"]
    assert "人社网格员[手机号]" in scores["labels"]
    assert scores["per_class"]["人社网格员[手机号]"]["recall"] > 0.5
    assert not _in_any_width("13987654321", json.dumps(scores, ensure_ascii=False))
