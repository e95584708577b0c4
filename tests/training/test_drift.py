"""Drift figures on small hand-written traffic."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from model.artifact import load_router
from training.drift import (
    PSI_MAJOR,
    PSI_MODERATE,
    drift,
    psi,
    psi_noise,
    suggestion_decision,
    write_drift,
)

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def test_psi_of_identical_distributions_is_zero() -> None:
    result = psi({"a": 10, "b": 30}, {"a": 1, "b": 3})
    assert result["psi"] == pytest.approx(0.0)
    assert result["band"] == "stable"


def test_psi_matches_the_formula_and_ranks_contributions() -> None:
    result = psi({"a": 50, "b": 50}, {"a": 80, "b": 20})
    expected = (0.8 - 0.5) * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5)
    assert result["psi"] == pytest.approx(expected)
    assert result["band"] == "major"  # 0.37
    assert result["per_label"][0]["label"] == "b"


def test_psi_counts_a_label_unseen_in_training() -> None:
    result = psi({"a": 100}, {"a": 90, "new": 10})
    assert result["psi"] > 0.25
    assert result["per_label"][0]["label"] == "new"


def test_psi_of_a_few_records_is_compared_with_sampling_noise() -> None:
    # Twenty equally common departments; 30 recent records, each department once or twice: the
    # PSI is in the "moderate" band, but 30 records drawn from the training data itself reach more
    # by chance. The same shares over 3,000 records are a real (moderate) shift.
    trained = {f"d{i}": 50 for i in range(20)}
    few = {f"d{i}": 2 if i < 10 else 1 for i in range(20)}
    small = psi(trained, few)
    assert PSI_MODERATE < small["psi"] < PSI_MAJOR
    assert small["records"] == 30 and small["noise"] > small["psi"]
    assert small["band"] == "noise"
    many = psi(trained, {k: 100 * v for k, v in few.items()})
    assert many["psi"] == pytest.approx(small["psi"])
    assert many["noise"] < many["psi"] and many["band"] == "moderate"


def test_sampling_noise_is_what_samples_of_the_training_distribution_exceed_5_percent_of_the_time() -> (
    None
):
    trained = {"a": 70, "b": 20, "c": 10}
    noise = psi_noise(trained, 50)
    rng = np.random.default_rng(123)  # other draws than psi_noise's own
    values = [
        psi(trained, dict(zip("abc", rng.multinomial(50, [0.7, 0.2, 0.1]), strict=True)))["psi"]
        for _ in range(2_000)
    ]
    assert 0.03 < np.mean(np.array(values) > noise) < 0.07


def test_psi_rows_mask_a_phone_number_typed_into_a_label() -> None:
    # Feedback's department is free text: a dispatcher typed the grid worker's mobile, in
    # full-width digits as a Chinese keyboard does; the drift report must not quote it.
    result = psi({"人社": 10}, {"人社": 5, "网格员李四１３９８７６５４３２１": 5})
    labels = [r["label"] for r in result["per_label"]]
    assert sorted(labels) == ["人社", "网格员李四[手机号]"]


def test_psi_without_data_says_so() -> None:
    assert psi({"a": 1}, {})["band"] == "no data"


@pytest.mark.parametrize(
    ("suggestion", "expected"),
    [
        ({"decision": "auto"}, "auto"),
        ({"department": {"decision": "auto"}, "category": {"decision": "review"}}, "review"),
        ({"department": {"decision": "auto"}, "category": None}, "auto"),
        (None, None),
        ({"department": {"decision": "maybe"}}, None),
    ],
)
def test_suggestion_decision(suggestion: object, expected: str | None) -> None:
    assert suggestion_decision(suggestion) == expected


def record(day: int, text: str, dept: str, decision: str | None) -> dict:
    return {
        "title": "",
        "text": text,
        "department": dept,
        "category": "环境",
        "suggestion": {"decision": decision} if decision else None,
        "created_at": T0 + timedelta(days=day),
    }


def test_drift_report_on_hand_written_traffic(tiny_model_dir: Path, tmp_path: Path) -> None:
    router, meta = load_router(tiny_model_dir)
    new = "共享单车乱停放堵塞盲道"  # words the tiny model never saw
    records = [
        record(0, "楼下烧烤店油烟很大", "执法", "auto"),
        record(0, "拖欠工资不发", "人社", "review"),
        *[record(1, new + place, "执法", "review") for place in ("东门", "西门", "南门")],
        record(2, "电梯故障", "住建", None),
    ]
    report = drift(router, meta, records, since=T0)
    assert report["records"] == 6 and report["period"] == "day"
    # Training is a third per department; traffic is two thirds 执法: a visible shift.
    assert report["psi"]["department"]["psi"] > 0.1
    assert report["psi"]["department"]["per_label"][0]["label"] == "执法"
    # Review share per day from the stored suggestions; the ticket without one is not counted.
    by_day = {r["period"]: r for r in report["review_share"]["by_period"]}
    assert by_day["2026-05-01"]["share"] == 0.5
    assert by_day["2026-05-02"]["share"] == 1.0
    assert "2026-05-03" not in by_day
    assert report["review_share"]["share"] == pytest.approx(4 / 5)
    # The day of the unseen sentence has a higher OOV rate than the first day.
    oov = {r["period"]: r["rate"] for r in report["oov"]["by_period"]}
    assert oov["2026-05-02"] > oov["2026-05-01"]
    terms = {t["term"]: t for t in report["new_terms"]}
    assert any(t in terms for t in ("共享", "单车", "盲道", "共享单车"))
    assert all(t["tickets"] >= 3 for t in report["new_terms"])
    assert "油烟" not in terms  # known to the model

    paths = write_drift(report, tmp_path / "drift.json")
    assert json.loads(paths[0].read_text(encoding="utf-8"))["records"] == 6
    assert paths[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_drift_leaves_masked_numbers_out_of_new_terms_and_oov(tiny_model_dir: Path) -> None:
    router, meta = load_router(tiny_model_dir)
    plain = [record(0, "楼下烧烤店油烟很大", "执法", None) for _ in range(3)]
    # Each text masks to 楼下烧烤店油烟很大 and a placeholder: the citizen wrote no new word.
    numbers = ["13812345678", "6222021234567890128", "430102199001011234", "zhang@163.com"]
    numbers += ["湘A12345", "wxid_zh4ngs4n88"]
    # Three distinct tickets each: a new term must be used by three.
    masked = [
        record(1, f"{start}油烟很大,联系{n}", "执法", None)
        for n in numbers
        for start in ("楼下烧烤店", "烧烤店", "楼下")
    ]
    report = drift(router, meta, plain + masked, since=T0)
    terms = {t["term"] for t in report["new_terms"]}
    assert not terms & {
        "手机号",
        "银行卡",
        "身份证号",
        "身份证",
        "邮箱",
        "车牌号",
        "车牌",
        "微信号",
    }
    oov = {r["period"]: r["rate"] for r in report["oov"]["by_period"]}
    assert oov["2026-05-02"] <= oov["2026-05-01"]


def test_a_new_term_of_one_ticket_is_no_frequent_term(tiny_model_dir: Path) -> None:
    # One complaint names the complainant and their WeChat id in its title and its text: the title
    # counts twice, so each occurred three times, and the report listed them. The same complaint
    # saved again (a dispatcher corrected the decision) is still one ticket.
    router, meta = load_router(tiny_model_dir)
    one = {
        **record(0, "市民赵铁柱反映施工噪音扰民，微信zhaotiezhu1988", "执法", None),
        "title": "赵铁柱施工噪音 zhaotiezhu1988",
    }
    plain = [
        record(0, f"{w}共享单车乱停放堵塞盲道", "执法", None) for w in ("东门", "西门", "南门")
    ]
    report = drift(router, meta, [one, dict(one), *plain], since=T0)
    terms = {t["term"]: t for t in report["new_terms"]}
    assert not any("铁柱" in t or "zhaotiezhu" in t for t in terms), terms
    assert terms and all(t["tickets"] >= 3 for t in terms.values())


def test_drift_counts_labels_merged_into_other_at_training_as_other(
    merged_model_dir: tuple[Path, Path],
) -> None:
    # The model's own training rows fed back are no drift; the training counts are those after
    # the rare departments were merged into 其他, and counting them by name gave PSI 0.069 where
    # the noise level was 0.034 on a real model.
    from tests.conftest import RARE_TICKETS, TINY_TICKETS

    router, meta = load_router(merged_model_dir[0])
    records = [
        {**record(0, text, dept, "auto"), "title": title, "category": cat}
        for title, text, dept, cat in TINY_TICKETS + RARE_TICKETS
    ]
    report = drift(router, meta, records, since=T0)
    for head in ("department", "category"):
        assert report["psi"][head]["psi"] == pytest.approx(0, abs=1e-9), report["psi"][head]


@pytest.mark.parametrize("recorded", ["masked", "masked as written", "as written"])
def test_drift_counts_merged_labels_holding_a_number_as_other(
    tmp_path: Path, phone_merged_model_dir: tuple[Path, Path], recorded: str
) -> None:
    # Recorded masked by training (网格员李四[手机号]), the merged labels were counted under their
    # own names, as labels training never saw; models trained before recorded them otherwise.
    from tests.conftest import OLD_MERGED_KEYS, PHONE_RARE_TICKETS, TINY_TICKETS, with_merged_keys

    model_dir = with_merged_keys(
        phone_merged_model_dir[0], tmp_path / "m", OLD_MERGED_KEYS.get(recorded)
    )
    router, meta = load_router(model_dir)
    records = [
        {**record(0, text, dept, "auto"), "title": title, "category": cat}
        for title, text, dept, cat in TINY_TICKETS + PHONE_RARE_TICKETS
    ]
    report = drift(router, meta, records, since=T0)
    assert report["psi"]["department"]["psi"] == pytest.approx(0, abs=1e-9)


def test_drift_buckets_long_spans_by_week(tiny_model_dir: Path) -> None:
    router, meta = load_router(tiny_model_dir)
    records = [record(d, "油烟扰民", "执法", "auto") for d in (0, 30, 90)]
    report = drift(router, meta, records)
    assert report["period"] == "week"
    assert [r["period"] for r in report["review_share"]["by_period"]] == [
        "2026-W18",
        "2026-W22",
        "2026-W31",
    ]


def test_drift_without_a_feedback_database_neither_creates_one_nor_fails(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A fresh install has no feedback yet: reading it used to create the data directory, a SQLite
    # file and an empty schema (with alembic's log lines) as a side effect of a read-only report.
    from typer.testing import CliRunner

    from paidan.cli import app

    data_dir = tmp_path / "var"
    env = {"PAIDAN_MODEL_ROOT": str(tmp_path / "models"), "PAIDAN_DATA_DIR": str(data_dir)}
    args = ["drift", "--since", "2026-01-01", "--model", str(tiny_model_dir)]
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "drift.json")], env=env)
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "drift.json").read_text(encoding="utf-8"))["records"] == 0
    assert not data_dir.exists()


def test_drift_reads_traffic_in_chunks_with_the_same_figures(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The whole window was tokenised at once: 100,000 records held ~600 MB of tokens beside the
    # records. Chunks must not change a figure, nor count a ticket repeated across a chunk
    # boundary twice among the tickets that use a new term.
    import training.drift as drift_module

    router, meta = load_router(tiny_model_dir)
    new = "共享单车乱停放堵塞盲道"
    records = [
        record(day, text, dept, decision)
        for day, text, dept, decision in [
            (0, "楼下烧烤店油烟很大", "执法", "auto"),
            (0, new + "东门", "执法", "review"),
            (1, "拖欠工资不发", "人社", "review"),
            (1, new + "东门", "执法", "auto"),  # the same ticket again, in another chunk below
            (2, new + "西门", "执法", None),
            (2, "电梯故障", "住建", "review"),
            (3, new + "南门", "执法", "review"),
        ]
    ]
    whole = drift(router, meta, records, since=T0)
    monkeypatch.setattr(drift_module, "CHUNK_RECORDS", 2)
    assert drift(router, meta, records, since=T0) == whole
    assert whole["new_terms"] and all(t["tickets"] == 3 for t in whole["new_terms"])


def test_drift_cleans_each_title_and_text_once_with_the_same_figures(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # drift cleaned each title and text, took the placeholders out, then had features.texts clean
    # the result again: the second pass only collapsed the spaces a placeholder left.
    import model.text
    import training.drift as drift_module

    router, meta = load_router(tiny_model_dir)
    new = "共享单车乱停放堵塞盲道"
    rows = [
        ("", "楼下烧烤店油烟很大"),
        ("油烟扰民", "楼下烧烤店油烟很大，联系13812345678"),
        ("13912345678", new + "东门"),  # a title that is only a number: empty once masked
        ("ＱＱ群 施工噪音", new + "西门 联系人　zhang@163.com 湘A12345"),
        ("电梯  故障", "  电梯故障 身份证430102199001011234  困人 "),
        ("拖欠工资", "wxid_zh4ngs4n88 拖欠工资不发，电话0731-88881234"),
        ("", new + "南门\n\n联系6222021234567890128"),
        ("施工[手机号]噪音", "literally typed [手机号] placeholder"),
    ]
    records = [
        {**record(day % 3, text, "执法", "review" if day % 2 else "auto"), "title": title}
        for day, (title, text) in enumerate(rows)
    ]

    calls: list[str | None] = []
    original = model.text.clean

    def counted(text: str | None, script: model.text.Script = "as_written") -> str:
        calls.append(text)
        return original(text, script)

    monkeypatch.setattr(model.text, "clean", counted)
    monkeypatch.setattr(drift_module, "clean", counted)
    report = drift(router, meta, records, since=T0)
    # Once per title and text, each as the record holds it.
    assert sorted(map(str, calls)) == sorted(str(r[c]) for r in records for c in ("title", "text"))

    # The same report as when features.texts cleaned what drift had cleaned already.
    monkeypatch.setattr(model.text, "clean", original)
    monkeypatch.setattr(drift_module, "clean", original)
    features = router.compiled()[0]
    # Text for text, what the segmenter cuts is the same.
    cleaned = [
        tuple(
            drift_module._PLACEHOLDERS.sub(" ", original(r[c], features.script))
            for c in ("title", "text")
        )
        for r in records
    ]
    assert drift_module.prepared(cleaned, features.title_repeat) == features.texts(cleaned)
    monkeypatch.setattr(drift_module, "prepared", lambda tickets, _: features.texts(tickets))
    assert drift(router, meta, records, since=T0) == report
    assert report["oov"]["tokens"] > 0 and report["new_terms"]


@pytest.mark.parametrize(
    ("since", "title"),
    [
        ("2026-06-01", "drift since 2026-06-01 UTC: 0 feedback records"),
        # Titled "drift since 2026-06-01" all three: the date as typed, not the window's start.
        (
            "2026-06-01T06:00:00+08:00",
            "drift since 2026-05-31 22:00:00 UTC (2026-06-01T06:00:00+08:00): 0 feedback records",
        ),
        ("2026-06-01 18:00:00", "drift since 2026-06-01 18:00:00 UTC: 0 feedback records"),
        ("2026-06-01T18:00:00+00:00", "drift since 2026-06-01 18:00:00 UTC: 0 feedback records"),
        # A space for the T, with an offset, was refused while the T form was taken; the forms
        # the time column reads are read here too.
        (
            "2026-06-01 06:00:00+08:00",
            "drift since 2026-05-31 22:00:00 UTC (2026-06-01T06:00:00+08:00): 0 feedback records",
        ),
        ("2026/6/1 18:00", "drift since 2026-06-01 18:00:00 UTC: 0 feedback records"),
    ],
)
def test_drift_titles_its_table_with_the_window_start_it_compares_with(
    tiny_model_dir: Path, tmp_path: Path, since: str, title: str
) -> None:
    from typer.testing import CliRunner

    from paidan.cli import app

    env = {"PAIDAN_MODEL_ROOT": str(tmp_path / "models"), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    out = tmp_path / "drift.json"
    args = ["drift", "--since", since, "--model", str(tiny_model_dir), "--out", str(out)]
    r = CliRunner().invoke(app, args, env={**env, "COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert title in " ".join(r.output.split())  # the title wraps to the table's width
    start = json.loads(out.read_text(encoding="utf-8"))["since"]
    assert start.replace("T", " ").startswith(title.split()[2])  # the report's bound, same day


def test_drift_reads_traditional_traffic_as_the_model_does(tiny_model_dir: Path) -> None:
    # Traffic typed in traditional characters is routed on its simplified words: its words are no
    # new terms, nor out of the vocabulary, for a model that reads simplified characters.
    router, meta = load_router(tiny_model_dir)
    simplified = ["楼下烧烤店油烟很大，晚上十二点还在营业", "商铺空调外机噪音太大，整夜轰鸣"]
    traditional = ["樓下燒烤店油煙很大，晚上十二點還在營業", "商鋪空調外機噪音太大，整夜轟鳴"]
    reports = [
        drift(router, meta, [record(day, t, "执法", "auto") for day, t in enumerate(texts)], T0)
        for texts in (simplified, traditional)
    ]
    assert reports[1]["oov"] == reports[0]["oov"]
    assert reports[1]["new_terms"] == reports[0]["new_terms"]


@pytest.mark.parametrize("how", ["setting", "option"])
def test_drift_reads_a_since_without_a_zone_in_the_centres_zone(
    tiny_model_dir: Path, tmp_path: Path, how: str
) -> None:
    # Taken as UTC, `--since 2026-06-01` at a centre in Beijing time started at 08:00 there.
    from typer.testing import CliRunner

    from paidan.cli import app

    env = {"PAIDAN_MODEL_ROOT": str(tmp_path / "models"), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    out = tmp_path / "drift.json"
    args = ["drift", "--since", "2026-06-01", "--model", str(tiny_model_dir), "--out", str(out)]
    if how == "setting":
        env["PAIDAN_TIMEZONE"] = "Asia/Shanghai"
    else:
        args += ["--timezone", "Asia/Shanghai"]
    r = CliRunner().invoke(app, args, env={**env, "COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert (
        "drift since 2026-05-31 16:00:00 UTC (2026-06-01T00:00:00+08:00): 0 feedback records"
    ) in " ".join(r.output.split())
    assert json.loads(out.read_text(encoding="utf-8"))["since"].startswith("2026-05-31T16:00:00")
