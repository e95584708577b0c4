"""The HTTP API against the tiny model: shapes, limits, errors, feedback, metrics and a dead database."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from sqlalchemy import text

from model.router import MAX_TOP_K
from model.text import clean, combine, normalize
from serve.db import MAX_DEPARTMENTS_CHARS, Database
from serve.deps import get_router
from tests.serve.helpers import assert_error, call_with_messages

WAGE = {"id": "A-1", "title": "拖欠工资", "text": "老板拖欠农民工工资三个月不发，劳动合同也不签"}
SMOKE = {"id": "A-2", "title": "油烟", "text": "楼下烧烤店油烟扰民，晚上十二点还在营业"}
HEAD_KEYS = {
    "label",
    "score",
    "decision",
    "threshold",
    "reason",
    "candidates",
    "evidence",
    "sources",
    "remit",
    "rule",
}


def export(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/v1/feedback", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines() if line]


def export_line_validator(client: TestClient) -> Draft202012Validator:
    """A validator of one export line by the schema openapi.json publishes for it."""
    spec = client.get("/openapi.json").json()
    content = spec["paths"]["/v1/feedback"]["get"]["responses"]["200"]["content"]
    item = content["application/x-ndjson"]["x-itemSchema"]
    return Draft202012Validator({**item, "components": spec["components"]})


# -- routing --------------------------------------------------------------------------------------
def test_route_has_the_documented_shape(client: TestClient) -> None:
    response = client.post("/v1/route", json=WAGE)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "id",
        "department",
        "category",
        "decision",
        "similar",
        "co_departments",
        "model_version",
        "elapsed_ms",
        "simplified",
        "masked",
    }
    assert body["id"] == "A-1"
    assert body["masked"] is None  # not asked for
    assert body["simplified"] == {}  # a ticket in simplified characters
    assert body["co_departments"] == []  # the tiny corpus has no joint dispatch
    assert body["department"]["label"] == "人社"
    assert body["category"]["label"] == "劳动保障"
    for head in ("department", "category"):
        result = body[head]
        assert set(result) == HEAD_KEYS
        assert result["decision"] in {"auto", "review"}
        assert 0.0 <= result["score"] <= 1.0
        assert len(result["candidates"]) == 3
        scores = [c["score"] for c in result["candidates"]]
        assert scores == sorted(scores, reverse=True)
        assert result["candidates"][0]["label"] == result["label"]
        assert result["evidence"], "a ticket full of known words has evidence"
        for ev in result["evidence"]:
            assert set(ev) == {"term", "weight"} and ev["weight"] > 0
    assert 1 <= len(body["similar"]) <= 5
    for s in body["similar"]:
        assert set(s) == {
            "id",
            "title",
            "snippet",
            "department",
            "co_departments",
            "category",
            "similarity",
        }
        assert s["co_departments"] == []
        assert s["snippet"], "every tiny ticket has a text, shown from its start"
    assert body["similar"][0]["department"] == "人社"
    assert body["model_version"] == client.get("/v1/model").json()["version"]
    assert body["elapsed_ms"] >= 0


def test_the_schema_documents_a_similar_tickets_snippet(client: TestClient) -> None:
    from model.router import SNIPPET_CHARS

    similar = client.get("/openapi.json").json()["components"]["schemas"]["SimilarTicket"]
    snippet = similar["properties"]["snippet"]
    assert {"type": "null"} in snippet["anyOf"] and {"type": "string"} in snippet["anyOf"]
    assert f"at most {SNIPPET_CHARS} characters" in snippet["description"]
    assert "PII-masked" in snippet["description"]


def test_the_answer_and_its_schema_give_the_sources_of_a_heads_score(client: TestClient) -> None:
    from tests.conftest import TINY_TICKETS

    # The served model's department head reads the latent view and the category head; the
    # category head reads the words alone.
    body = client.post("/v1/route", json=SMOKE).json()
    sources = body["department"]["sources"]
    assert [s["input"] for s in sources] == ["words", "latent", "category", "intercept"]
    assert sources[2]["label"] in {c for *_, c in TINY_TICKETS}
    assert body["category"]["sources"] is None
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    head = schemas["HeadResult"]["properties"]["sources"]
    assert {"type": "null"} in head["anyOf"] and "intercept" in head["description"]
    source = schemas["Source"]["properties"]
    assert source["input"]["enum"] == ["words", "latent", "category", "intercept"]
    assert "sum to that score" in source["weight"]["description"]


def test_the_schema_publishes_the_export_line_and_every_line_meets_it(client: TestClient) -> None:
    # GET /v1/feedback's 200 had an empty media type object and FeedbackRecord was in no
    # component: a client generated from openapi.json had no type for an export line.
    from jsonschema.exceptions import ValidationError

    spec = client.get("/openapi.json").json()
    ok = spec["paths"]["/v1/feedback"]["get"]["responses"]["200"]
    assert {"FeedbackRecord", "ExportIncomplete"} <= set(spec["components"]["schemas"])
    assert "FeedbackRecord" in ok["description"] and "ExportIncomplete" in ok["description"]
    # OpenAPI 3.1 has no per-line schema: any key of a media type object but those it defines
    # is an x- extension, or a 3.1 validator refuses the whole document.
    media_keys = {"schema", "example", "examples", "encoding"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                for media, definition in response.get("content", {}).items():
                    unknown = {k for k in definition if k not in media_keys and k[:2] != "x-"}
                    assert not unknown, (method, path, status, media, unknown)
    for saved in (
        {"text": "某投诉", "department": "人社"},
        {
            "ticket_id": 20261206001,
            "title": "欠薪",
            "text": WAGE["text"],
            "department": "人社；住建",
            "category": "劳动保障",
            "dispatcher_id": "d-7",
            "suggestion": client.post("/v1/route", json=WAGE).json(),
            "request_id": "r-1",
        },
    ):
        assert client.post("/v1/feedback", json=saved).status_code == 201
    lines = export(client)
    assert len(lines) == 2
    validator = export_line_validator(client)
    for line in lines:
        validator.validate(line)
    # And the schema could fail: a line without its text, or with a text of another type, does not.
    for broken in ({k: v for k, v in lines[0].items() if k != "text"}, {**lines[0], "text": 1}):
        with pytest.raises(ValidationError):
            validator.validate(broken)


def test_routes_write_the_bytes_fastapi_writes_for_their_models_and_document_them(
    client: TestClient,
) -> None:
    # /v1/route hands FastAPI its answer already written (pydantic's serialiser, not FastAPI's
    # validation and conversion of the model): the bytes, the media type and the schema the
    # OpenAPI document gives must be those of a RouteResponse returned to FastAPI.
    from fastapi.responses import JSONResponse

    from serve.schemas import RouteBatchResponse, RouteResponse

    for ticket in (WAGE, {"text": '路灯不亮 ＡＢＣ 😀 \\ "引号"', "top_k": 5}):
        response = client.post("/v1/route", json=ticket)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        answer = RouteResponse.model_validate_json(response.content)
        assert response.content == JSONResponse(answer.model_dump(mode="json")).body
    batch = client.post("/v1/route/batch", json={"items": [WAGE, {"text": ""}, 7, SMOKE]})
    assert batch.status_code == 200, batch.text
    assert batch.headers["content-type"] == "application/json"
    answers = RouteBatchResponse.model_validate_json(batch.content)
    assert (answers.ok, answers.failed) == (2, 2)
    assert batch.content == JSONResponse(answers.model_dump(mode="json")).body
    paths = client.get("/openapi.json").json()["paths"]
    for path, model in (("/v1/route", "RouteResponse"), ("/v1/route/batch", "RouteBatchResponse")):
        schema = paths[path]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{model}"}


def test_route_evidence_terms_come_from_the_ticket(client: TestClient) -> None:
    body = client.post("/v1/route", json=SMOKE).json()
    ticket = combine(SMOKE["title"], SMOKE["text"])
    terms = [ev["term"] for ev in body["department"]["evidence"]]
    # Word n-grams may skip a stop word ("十二点营业" from "十二点还在营业"), so check characters.
    assert terms and all(set(t) <= set(ticket) for t in terms), terms
    assert any(t in ticket for t in terms)


def test_route_top_k_and_optional_fields(client: TestClient) -> None:
    body = client.post("/v1/route", json={"text": SMOKE["text"], "top_k": 1}).json()
    assert body["id"] is None
    assert len(body["department"]["candidates"]) == 1
    assert body["department"]["label"] == "执法"


def test_route_similar_titles_are_pii_masked(
    make_settings: Callable[..., Any], tmp_path: Path, tiny_config: Any
) -> None:
    from serve.app import create_app
    from tests.conftest import TINY_TICKETS
    from training.train import train

    phone, id_number = "13812345678", "110101199003071234"
    rows = [(f"{t} 电话{phone} 身份证{id_number}", x, d, c) for t, x, d, c in TINY_TICKETS]
    data = tmp_path / "pii.csv"
    data.write_text(
        "id,title,text,department,category\n"
        + "".join(f"P{i},{t},{x},{d},{c}\n" for i, (t, x, d, c) in enumerate(rows)),
        encoding="utf-8",
    )
    root = tmp_path / "models"
    model_dir = train([data], root / "pii", config=tiny_config).model_dir
    settings = make_settings(model_root=root, model_dir=model_dir)
    with TestClient(create_app(settings)) as client:
        similar = client.post("/v1/route", json=WAGE).json()["similar"]
    assert similar
    for s in similar:
        assert phone not in s["title"] and id_number not in s["title"]
        assert "[手机号]" in s["title"] and "[身份证号]" in s["title"]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(min_size=1, max_size=300), st.one_of(st.none(), st.text(max_size=50)))
def test_route_never_fails_on_odd_unicode(
    client: TestClient, ticket: str, title: str | None
) -> None:
    response = client.post("/v1/route", json={"text": ticket, "title": title})
    if not normalize(ticket):  # blank: what batch labelling and paidan predict refuse too
        assert_error(response, 422, "invalid_request")
        return
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["department"]["decision"] in {"auto", "review"}


# -- batch -----------------------------------------------------------------------------------------
def test_batch_keeps_order_and_reports_bad_items(client: TestClient) -> None:
    items: list[Any] = [
        SMOKE,
        {"id": "blank", "text": "   "},
        {"id": "nofield", "txt": "拖欠工资"},
        WAGE,
        "not an object",
        {"id": "long", "text": "长" * 20_001},
        {"text": "电梯故障困人，物业不维修", "top_k": 2},
    ]
    response = client.post("/v1/route/batch", json={"items": items})
    assert response.status_code == 200, response.text
    body = response.json()
    results = body["results"]
    assert [r["index"] for r in results] == list(range(len(items)))
    assert body["ok"] == 3 and body["failed"] == 4
    for r in results:
        assert (r["result"] is None) != (r["error"] is None), r
    assert results[0]["result"]["department"]["label"] == "执法"
    assert results[3]["result"]["department"]["label"] == "人社"
    assert results[3]["id"] == "A-1" and results[3]["result"]["id"] == "A-1"
    assert results[6]["result"]["department"]["label"] == "住建"
    assert len(results[6]["result"]["department"]["candidates"]) == 2
    assert results[1]["error"]["field"] == "items.1.text"
    assert results[1]["id"] == "blank"
    assert results[2]["error"]["field"] in {"items.2.text", "items.2.txt"}
    assert results[4]["error"]["code"] == "invalid_item"
    assert results[5]["error"]["field"] == "items.5.text"
    assert "20,000" in results[5]["error"]["message"]
    assert "长长长" not in json.dumps(results[5]), "the error must not echo the ticket"


def test_a_body_or_batch_item_that_is_no_json_object_says_so(client: TestClient) -> None:
    # Pydantic's words were Python's: "item 1: request: Input should be a valid dictionary or
    # instance of RouteRequest", and for a body "valid dictionary or object to extract fields from".
    items: list[Any] = [WAGE, "楼下烧烤油烟", ["a"], None, 7]
    results = client.post("/v1/route/batch", json={"items": items}).json()["results"]
    assert results[0]["result"] is not None
    kinds = {1: "a string", 2: "an array", 3: "null", 4: "a number"}
    for i, kind in kinds.items():
        error = results[i]["error"]
        assert error["field"] == f"items.{i}", error
        assert error["message"] == (
            f"item {i}: must be a JSON object shaped like the body of POST /v1/route, "
            f'such as {{"text": "…"}}, not {kind}'
        ), error
    error = assert_error(client.post("/v1/route", json=["x"]), 422, "invalid_request")
    assert error == {
        "code": "invalid_request",
        "message": "body: must be a JSON object, not an array",
        "field": "body",
    }
    # A batch sent as the bare array of its tickets (a common first try) is told the shape.
    error = assert_error(client.post("/v1/route/batch", json=[WAGE]), 422, "invalid_request")
    assert error["message"] == (
        'body: must be a JSON object, not an array; send the tickets as {"items": […]}'
    ), error
    error = assert_error(
        client.post(
            "/v1/feedback", json={"text": "某投诉", "department": "人社", "suggestion": []}
        ),
        422,
        "invalid_request",
    )
    assert error["message"] == "body.suggestion: must be a JSON object, not an array", error


def test_batch_matches_single_routes(client: TestClient) -> None:
    batch = client.post("/v1/route/batch", json={"items": [WAGE, SMOKE]}).json()["results"]
    for item, ticket in zip(batch, (WAGE, SMOKE), strict=True):
        single = client.post("/v1/route", json=ticket).json()
        for key in ("department", "category", "similar", "decision"):
            assert item["result"][key] == single[key]


def test_batch_limit_and_empty_batch(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_batch=3)
    error = assert_error(
        client.post("/v1/route/batch", json={"items": [SMOKE] * 4}), 413, "batch_too_large"
    )
    assert error["field"] == "body.items" and "at most 3" in error["message"]
    assert client.post("/v1/route/batch", json={"items": [SMOKE] * 3}).json()["ok"] == 3
    empty = client.post("/v1/route/batch", json={"items": []}).json()
    assert empty["results"] == [] and empty["ok"] == 0


def test_similar_k_and_top_k_settings_shape_every_answer(
    make_client: Callable[..., TestClient],
) -> None:
    # README and SECURITY.md give PAIDAN_SIMILAR_K=0 as the way to return no past tickets' titles
    # to anyone (and PAIDAN_TOP_K as the candidates a request without top_k gets).
    client = make_client(similar_k=0, top_k=1)
    single = client.post("/v1/route", json=WAGE).json()
    batch = client.post("/v1/route/batch", json={"items": [WAGE, SMOKE]}).json()["results"]
    for result in (single, *(item["result"] for item in batch)):
        assert result["similar"] == [] and result["co_departments"] == []
        assert len(result["department"]["candidates"]) == 1
    assert (
        len(client.post("/v1/route", json={**WAGE, "top_k": 2}).json()["category"]["candidates"])
        == 2
    )
    client = make_client(similar_k=2)
    assert 1 <= len(client.post("/v1/route", json=WAGE).json()["similar"]) <= 2


def test_similar_snippets_can_be_switched_off_alone(make_client: Callable[..., TestClient]) -> None:
    # A centre that does not want other citizens' words on the page could only set
    # PAIDAN_SIMILAR_K=0, which drops the similar tickets' ids and labels and the joint-dispatch
    # advice read from them too. PAIDAN_SIMILAR_SNIPPETS=false drops the snippets alone.
    shown = make_client().post("/v1/route", json=WAGE).json()
    client = make_client(similar_snippets=False)
    single = client.post("/v1/route", json=WAGE).json()
    batch = client.post("/v1/route/batch", json={"items": [WAGE]}).json()["results"]
    assert any(t["snippet"] for t in shown["similar"])
    for result in (single, batch[0]["result"]):
        assert result["similar"] and all(t["snippet"] is None for t in result["similar"])
        without = [{**t, "snippet": None} for t in shown["similar"]]
        assert result["similar"] == without  # ids, titles, labels and similarities stay
        assert result["co_departments"] == shown["co_departments"]


def test_top_k_written_as_a_whole_number_with_a_fraction_is_read(client: TestClient) -> None:
    # The schema says `integer`, which JSON Schema meets with 2.0 (a client whose numbers are all
    # doubles writes that), but the server refused it: "body.top_k: Input should be a valid
    # integer". A fraction, true or "3" stays refused (above and below).
    routed = client.post("/v1/route", json={**WAGE, "top_k": 2.0})
    assert routed.status_code == 200, routed.text
    assert len(routed.json()["department"]["candidates"]) == 2
    batch = client.post(
        "/v1/route/batch", json={"items": [WAGE, {**SMOKE, "top_k": 1.0}], "top_k": 2.0}
    )
    assert batch.status_code == 200, batch.text
    first, second = batch.json()["results"]
    assert len(first["result"]["department"]["candidates"]) == 2, first
    assert len(second["result"]["department"]["candidates"]) == 1, second
    error = assert_error(client.post("/v1/route", json={**WAGE, "top_k": 2.5}), 422)
    assert error["field"] == "body.top_k", error


# -- limits and errors -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"text": "长" * 20_001}, "body.text"),
        ({"text": "拖欠工资", "title": "题" * 201}, "body.title"),
        ({"text": "拖欠工资", "top_k": 0}, "body.top_k"),
        ({"text": "拖欠工资", "top_k": 21}, "body.top_k"),
        ({"text": "拖欠工资", "top_k": True}, "body.top_k"),
        ({"text": "拖欠工资", "top_k": "3"}, "body.top_k"),
        ({"text": "  \n "}, "body.text"),
        # Nothing left once normalised: zero-width space, Excel's carriage return, control bytes.
        ({"text": "\u200b_x000D_\ufeff"}, "body.text"),
        ({"text": "\x00\x07"}, "body.text"),
        ({"text": "拖欠工资", "id": "A-\x001"}, "body.id"),
        ({"title": "只有标题"}, "body.text"),
        ({"text": "拖欠工资", "colour": "red"}, "body.colour"),
        ({"text": 12}, "body.text"),
    ],
)
def test_route_refuses_bad_input_with_the_error_shape(
    client: TestClient, payload: dict[str, Any], field: str
) -> None:
    error = assert_error(client.post("/v1/route", json=payload), 422, "invalid_request")
    assert error["field"] == field
    assert "长长长" not in error["message"]


@pytest.mark.parametrize("depth", [480, 900])
def test_deeply_nested_json_is_a_422_naming_the_field(
    client: TestClient, caplog: pytest.LogCaptureFixture, depth: int
) -> None:
    # Under the JSON parser's own limit (~990 levels) these were a 500, a traceback of thousands
    # of lines in the log and, in a batch, the loss of every good item beside the deep one.
    deep = "[" * depth + "]" * depth
    headers = {"content-type": "application/json"}
    with caplog.at_level(logging.ERROR):
        deep_id = '{"text": "x", "id": ' + deep + "}"
        route = client.post("/v1/route", content=deep_id, headers=headers)
        assert assert_error(route, 422, "invalid_request")["field"] == "body.id"
        feedback = client.post(
            "/v1/feedback",
            content='{"text": "某投诉", "department": "人社", "suggestion": {"a": ' + deep + "}}",
            headers=headers,
        )
        assert assert_error(feedback, 422, "invalid_request")["field"] == "body.suggestion"
        items = [json.dumps(WAGE), deep_id, deep, json.dumps(SMOKE)]
        batch = client.post(
            "/v1/route/batch", content='{"items": [' + ",".join(items) + "]}", headers=headers
        )
    assert batch.status_code == 200, batch.text
    body = batch.json()
    assert body["ok"] == 2 and body["failed"] == 2
    results = body["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3]
    assert results[0]["result"]["id"] == "A-1" and results[3]["result"]["id"] == "A-2"
    assert results[1]["error"]["field"] == "items.1.id"
    assert results[2]["error"]["code"] == "invalid_item"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_batch_item_that_breaks_validation_gets_its_own_error(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import serve.schemas

    scrub = serve.schemas.scrub_surrogates

    def breaks_on_boom(value: Any, depth: int = 0) -> Any:
        if value == "boom":  # the item's id, scrubbed as each known field's value is
            raise RecursionError("maximum recursion depth exceeded")
        return scrub(value, depth)

    monkeypatch.setattr(serve.schemas, "scrub_surrogates", breaks_on_boom)
    items = [WAGE, {"id": "boom", "text": "x"}, SMOKE]
    response = client.post("/v1/route/batch", json={"items": items})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results[0]["result"]["id"] == "A-1" and results[2]["result"]["id"] == "A-2"
    assert results[1]["result"] is None and results[1]["id"] == "boom"
    assert results[1]["error"]["code"] == "invalid_item"
    assert results[1]["error"]["field"] == "items.1"
    assert "RecursionError" in results[1]["error"]["message"]


def test_batch_item_that_cannot_be_routed_says_which(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Its error named neither its index nor its field, unlike every invalid item's ("item 1: …",
    # items.1.text): the one message a client logs did not say which ticket to look at; and the
    # server logged nothing of a failure that can only be a bug.
    router = client.app.state.router  # type: ignore[attr-defined]
    real = router.predict

    def fails_on_boom(tickets: Any, *args: Any, **kwargs: Any) -> Any:
        if any("boom" in text for _, text in tickets):
            raise RuntimeError("cannot")
        return real(tickets, *args, **kwargs)

    monkeypatch.setattr(router, "predict", fails_on_boom)
    items = [WAGE, {"id": "B-1", "text": "boom"}, SMOKE]
    with caplog.at_level(logging.ERROR, logger="serve.routes"):
        body = client.post("/v1/route/batch", json={"items": items}).json()
    assert "batch item 1 could not be routed (RuntimeError)" in caplog.text
    assert "boom" not in caplog.text
    assert [r["result"] is not None for r in body["results"]] == [True, False, True]
    assert body["results"][1]["error"] == {
        "code": "prediction_failed",
        "message": "item 1: this ticket could not be routed (RuntimeError)",
        "field": "items.1",
    }


def test_limits_follow_the_settings(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_text_chars=100, max_title_chars=10)
    error = assert_error(client.post("/v1/route", json={"text": "字" * 101}), 422)
    assert error["field"] == "body.text" and "100 characters" in error["message"]
    assert client.post("/v1/route", json={"text": "字" * 100}).status_code == 200
    assert_error(client.post("/v1/route", json={"text": "字", "title": "题" * 11}), 422)


def test_oversized_body_is_refused_before_reading(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_text_chars=100, max_title_chars=10, max_batch=1)
    # Over the default limit (8 MiB); send 9 MiB.
    body = json.dumps({"items": [{"text": "x" * (9 << 20)}]})
    error = assert_error(
        client.post("/v1/route/batch", content=body, headers={"content-type": "application/json"}),
        413,
        "payload_too_large",
    )
    assert error["field"] == "body"


def test_a_wrong_method_or_path_is_told_what_to_send(client: TestClient) -> None:
    # Both were Starlette's bare "Method Not Allowed" / "Not Found": a client that routed with
    # GET /v1/route?text=… was not told the route takes POST, nor one with a wrong path where the
    # routes are listed.
    for method, path, allowed in (("GET", "/v1/route", "POST"), ("POST", "/v1/model", "GET, HEAD")):
        error = assert_error(client.request(method, path), 405, "method_not_allowed")
        assert error["message"] == f"{path} does not take {method}; send {allowed}", error
    error = assert_error(client.request("PROPFIND", "/v1/route"), 405, "method_not_allowed")
    assert error["message"] == "/v1/route does not take this method; send POST", error
    # Every method of the path, in the message and the Allow header: Starlette's Allow named the
    # first route matched alone, POST for /v1/feedback, which is exported with GET.
    answer = client.delete("/v1/feedback")
    error = assert_error(answer, 405, "method_not_allowed")
    assert error["message"] == "/v1/feedback does not take DELETE; send GET, HEAD, POST", error
    assert answer.headers["allow"] == "GET, HEAD, POST"
    assert client.post("/healthz").headers["allow"] == "GET, HEAD"
    error = assert_error(client.get("/v1/13812345678"), 404, "not_found")
    assert error["message"] == "no route has this path; the routes are listed at /docs", error
    behind = TestClient(client.app, root_path="/paidan")
    error = assert_error(behind.get("/paidan/v1/nothing"), 404, "not_found")
    assert error["message"].endswith("listed at /paidan/docs"), error


def test_malformed_json_and_unknown_paths(client: TestClient) -> None:
    bad = client.post(
        "/v1/route", content=b'{"text": "x"', headers={"content-type": "application/json"}
    )
    error = assert_error(bad, 400, "malformed_json")
    assert error["message"].startswith("the body is not valid JSON: Expecting"), error
    # Where: a batch of many items with one stray comma was "the body is not valid JSON" alone.
    items = ",\n".join(
        json.dumps({"text": f"第{i}条：路灯不亮"}, ensure_ascii=False) for i in range(50)
    )
    body = (
        '{"items": ['
        + items.replace('路灯不亮"}', '路灯不亮",}', 31).replace('路灯不亮",}', '路灯不亮"}', 30)
        + "]}"
    )
    error = assert_error(
        client.post(
            "/v1/route/batch", content=body.encode(), headers={"content-type": "application/json"}
        ),
        400,
        "malformed_json",
    )
    line = body.splitlines()[30]  # item 30, on line 31
    assert '",}' in line and body.count('",}') == 1
    column, character = line.index('",}') + 3, body.index('",}') + 3
    assert error["message"] == (
        "the body is not valid JSON: Expecting property name enclosed in double quotes at line 31,"
        f" column {column} (character {character})"
    ), error
    assert_error(client.get("/v1/nothing"), 404, "not_found")
    assert_error(client.get("/v1/route"), 405, "method_not_allowed")


def test_a_trailing_slash_is_a_404_naming_the_route_never_a_redirect(client: TestClient) -> None:
    # It was an empty 307 to a Location built from the Host header: behind a proxy, the upstream's
    # address; Java clients do not follow it for a POST, .NET followed it into a connection error.
    for method, path, route in [
        ("POST", "/v1/route/", "/v1/route"),
        ("POST", "/v1/route/batch//", "/v1/route/batch"),
        ("POST", "/v1/model/", "/v1/model"),
    ]:
        answer = client.request(method, path, json={"text": "x"}, follow_redirects=False)
        error = assert_error(answer, 404, "not_found")
        assert f"did you mean {route}," in error["message"], error
        assert "location" not in answer.headers
    # A GET or HEAD is answered as the route: probes and scrapes configured with the slash
    # (/healthz/, /metrics/) followed the redirect to a 200, and a 404 took the server out.
    for path in ("/healthz/", "/readyz/", "/metrics/", "/v1/model/"):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 200, (path, answer.text)
        assert "location" not in answer.headers
        if path != "/metrics/":
            assert answer.json() == client.get(path.rstrip("/")).json()
    assert client.head("/healthz/").status_code == 200
    # Under a root path (paidan serve --root-path) it names the path the client used.
    behind = TestClient(client.app, root_path="/paidan")
    answer = behind.post("/paidan/v1/route/", json={"text": "x"}, follow_redirects=False)
    assert "did you mean /paidan/v1/route," in assert_error(answer, 404, "not_found")["message"]
    # And that path is the route for every client that may get the hint: the proxy's (it strips
    # /paidan) as one calling the server's own address, whose path uvicorn prefixes with the root
    # path (/paidan/v1/route arrives as /paidan/paidan/v1/route). There it was itself a 404.
    for sent in ("/paidan/v1/route", "/paidan/paidan/v1/route"):
        assert behind.post(sent, json={"text": "油烟扰民"}).status_code == 200, sent
    # Other paths: the plain 404, quoting nothing of the request.
    for path in ("/v1/nothing/", "/static/app.js/", "/v1/13812345678/"):
        error = assert_error(client.get(path, follow_redirects=False), 404, "not_found")
        assert "did you mean" not in error["message"] and "1381" not in error["message"]


@pytest.mark.parametrize(
    ("path", "raw", "field"),
    [
        # Feedback rows are the next retraining's labels: the second department was stored.
        (
            "/v1/feedback",
            '{"text": "楼下烧烤店油烟扰民", "department": "生态环境", "department": "市场监管"}',
            "body.department",
        ),
        ("/v1/route", '{"text": "楼下烧烤店油烟扰民", "text": ""}', "body.text"),
        # Outside the items, a batch's key written twice is the whole batch's (even after an
        # item that writes one twice, which is that item's own error).
        (
            "/v1/route/batch",
            '{"items": [{"text": "拖欠工资"}, {"text": "油烟", "text": "噪音"}], "top_k": 1, '
            '"top_k": 2}',
            "body.top_k",
        ),
        ("/v1/route/batch", '{"items": [{"text": "油烟"}], "items": []}', "body.items"),
        (
            "/v1/feedback",
            '{"text": "油烟", "department": "人社", "suggestion": {"a": [{"k": 1, "k": 2}]}}',
            "body.suggestion.a.0.k",
        ),
        ("/v1/admin/reload", '{"model_dir": "a", "model_dir": "b"}', "body.model_dir"),
    ],
)
def test_a_key_written_twice_is_refused_naming_it(
    client: TestClient, path: str, raw: str, field: str
) -> None:
    # json.loads keeps the last value silently; the ticket-file readers refuse such an object.
    error = assert_error(
        client.post(path, content=raw.encode(), headers={"content-type": "application/json"}),
        400,
        "malformed_json",
    )
    key = field.rsplit(".", 1)[1]
    assert error["field"] == field
    assert f"the key '{key}' is written twice" in error["message"], error
    assert error["message"].startswith(field.rsplit(".", 1)[0] + ":")
    assert export(client) == []  # nothing stored


def test_a_batch_item_writing_a_key_twice_gets_its_own_error(client: TestClient) -> None:
    # It was a 400 for the whole batch: the body was refused before any item was looked at, so
    # the valid items were not routed, where every other bad item gets its own error.
    items = [
        json.dumps(WAGE, ensure_ascii=False),
        '{"id": "B", "text": "油烟", "text": "噪音"}',
        '{"id": "C", "id": "D", "text": "楼下烧烤店油烟扰民"}',
        '{"id": 7, "text": "a", "x": {"13812345678": [{"k": 1, "k": 2}]}}',
        json.dumps(SMOKE, ensure_ascii=False),
    ]
    response = client.post(
        "/v1/route/batch",
        content=('{"items": [' + ", ".join(items) + "]}").encode(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] == 2 and body["failed"] == 3, body
    results = body["results"]
    assert [r["index"] for r in results] == list(range(len(items)))
    assert results[0]["result"]["id"] == "A-1" and results[4]["result"]["id"] == "A-2"
    said = "is written twice (only one of the two values could be read); send it once"
    expected = [
        ("B", "items.1.text", "item 1: the key 'text' " + said),
        (None, "items.2.id", "item 2: the key 'id' " + said),  # which of the two is its id?
        # The first in the item, as in a body: its path, quoted PII-masked.
        ("7", "items.3.x.[手机号].0.k", "item 3: x.[手机号].0: the key 'k' " + said),
    ]
    for (ticket_id, field, message), r in zip(expected, results[1:4], strict=True):
        assert r["result"] is None and r["id"] == ticket_id, r
        assert r["error"] == {"code": "invalid_item", "field": field, "message": message}, r
    assert "13812345678" not in response.text


@pytest.mark.parametrize(
    ("method", "path", "raw", "headers", "status", "says"),
    [
        (
            "POST",
            "/v1/route",
            '{"text": "噪音", "手机13812345678": 1}',
            {},
            422,
            "body.手机[手机号]: is not a known field",
        ),
        (
            "POST",
            "/v1/route",
            '{"text": "噪音", "13812345678": 1, "13812345678": 2}',
            {},
            400,
            "body: the key '[手机号]' is written twice",
        ),
        (
            "POST",
            "/v1/route/batch",
            '{"items": [{"text": "a", "１３８１２３４５６７８": {"x": 1, "x": 2}}]}',
            {},
            200,
            "item 0: [手机号]: the key 'x' is written twice",
        ),
        (
            "POST",
            "/v1/route/batch",
            '{"items": [{"text": "a", "Tel 138 1234 5678": 1}]}',
            {},
            200,
            "item 0: tel [手机号]: is not a known field (an item takes id, title, text, top_k, masked)",
        ),
        (
            "POST",
            "/v1/feedback",
            '{"text": "a", "department": "人社", "suggestion": {"13812345678": NaN}}',
            {},
            422,
            "at [手机号]",
        ),
        ("GET", "/static/13812345678.js", "", {}, 404, "no such asset: '[手机号].js'"),
        (
            "POST",
            "/v1/route",
            "x",
            {"content-type": "text/手机13812345678"},
            415,
            "it was sent as text/手机[手机号]",
        ),
        (
            "POST",
            "/v1/route",
            "\xff",
            {"content-type": "application/json; charset=x13812345678"},
            400,
            "(it declares charset=x[手机号])",
        ),
    ],
)
def test_error_messages_quote_the_request_pii_masked(
    client: TestClient,
    method: str,
    path: str,
    raw: str,
    headers: dict[str, str],
    status: int,
    says: str,
) -> None:
    # Error bodies named the client's keys, the asset asked for and the Content-Type as sent:
    # gateways and API consoles that log error bodies kept the phone numbers in them.
    sent = {"content-type": "application/json", **headers}
    encoded = {k: v.encode() for k, v in sent.items()}  # UTF-8, as clients send it
    body = raw.encode("latin-1") if raw == "\xff" else raw.encode()
    response = client.request(method, path, content=body or None, headers=encoded)
    assert response.status_code == status, response.text
    answer = response.content.decode()
    assert "13812345678" not in answer and "１３８１２３４５６７８" not in answer, answer
    assert "1234 5678" not in answer, answer
    assert says in answer, answer


def test_a_key_with_control_characters_is_quoted_escaped(client: TestClient) -> None:
    # A key holding a line break or a terminal escape came back in the message and the field as
    # it was: an integrator's log that prints error messages took "\x1b[31m" as a colour and the
    # line break as a new log line. Quoted, each control character is written as its escape.
    sent = '{"text": "路灯不亮", "ti\\ntle\\u001b[31m": 1}'
    answer = client.post("/v1/route", content=sent, headers={"content-type": "application/json"})
    error = assert_error(answer, 422, "invalid_request")
    assert error["field"] == "body.ti\\x0atle\\x1b[31m", error
    assert error["message"].startswith("body.ti\\x0atle\\x1b[31m: is not a known field"), error
    batch = client.post(
        "/v1/route/batch",
        content='{"items": [{"text": "路灯", "a\\tb": 1}]}',
        headers={"content-type": "application/json"},
    )
    assert batch.json()["results"][0]["error"]["field"] == "items.0.a\\x09b", batch.text


def test_a_long_key_is_quoted_cut_short(client: TestClient) -> None:
    key = "k" * 30 + "13812345678" + "k" * 100
    error = assert_error(
        client.post(
            "/v1/route",
            content=f'{{"text": "a", "{key}": 1, "{key}": 2}}'.encode(),
            headers={"content-type": "application/json"},
        ),
        400,
        "malformed_json",
    )
    assert f"the key '{'k' * 30}[手机号]{'k' * 5}…' is written twice" in error["message"], error
    assert "13812345678" not in json.dumps(error)


@pytest.mark.parametrize(
    ("content_type", "says"),
    [
        ("application/json", "the body is not UTF-8; send JSON encoded as UTF-8"),
        ("application/json; charset=gbk", "the body is not UTF-8 (it declares charset=gbk)"),
        ("application/json; charset=UTF-8", "the body is not UTF-8; send JSON encoded as UTF-8"),
    ],
)
def test_a_body_that_is_not_utf8_says_so(client: TestClient, content_type: str, says: str) -> None:
    # Was 400 "There was an error parsing the body", with no field.
    body = json.dumps(WAGE, ensure_ascii=False).encode("gbk")
    error = assert_error(
        client.post("/v1/route", content=body, headers={"content-type": content_type}),
        400,
        "malformed_json",
    )
    assert error["field"] == "body" and says in error["message"]


def test_json_nested_beyond_the_parser_says_so(client: TestClient) -> None:
    deep = '{"text": "x", "id": ' + "[" * 100_000 + "]" * 100_000 + "}"
    error = assert_error(
        client.post("/v1/route", content=deep, headers={"content-type": "application/json"}),
        400,
        "malformed_json",
    )
    assert error["field"] == "body" and "nested too deeply" in error["message"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/route", '{"text": "x", "top_k": %s}', "body.top_k"),
        (
            "/v1/route/batch",
            '{"items": [{"text": "x"}, {"text": "y", "id": -%s}]}',
            "body.items.1.id",
        ),
        (
            "/v1/feedback",
            '{"text": "x", "department": "d", "suggestion": {"a": [1, %s]}}',
            "body.suggestion.a.1",
        ),
    ],
)
def test_an_integer_of_more_digits_than_python_reads_is_named(
    client: TestClient, path: str, body: str, field: str
) -> None:
    # json.loads refuses an integer of more than 4,300 digits with a ValueError: the answer was
    # "the body cannot be read; send JSON encoded as UTF-8", of a body that was UTF-8 JSON.
    error = assert_error(
        client.post(
            path, content=body % ("7" * 5_000), headers={"content-type": "application/json"}
        ),
        400,
        "malformed_json",
    )
    assert error["field"] == field, error
    assert error["message"] == (
        f"{field}: is a number of 5,000 digits; a number may have at most 4,300 (send a long id "
        "as a string)"
    )


def test_every_answer_names_the_servers_version(make_client: Callable[..., TestClient]) -> None:
    # No answer said which paidan gave it: an integrator comparing answers across a rolling
    # upgrade (or reporting a bug) could not tell an old server from a new one.
    import importlib.metadata

    from serve.security import BASE_HEADERS, VERSION_HEADER

    client = make_client(max_ticket_body_bytes=1_024)
    version = importlib.metadata.version("paidan")

    class Broken:
        version = "broken"

        def predict(self, tickets: Any, **_: Any) -> Any:
            raise ValueError("a bug")

    answers = {
        "route": client.post("/v1/route", json=WAGE),
        "probe": client.head("/healthz"),
        "page": client.get("/"),
        "invalid": client.post("/v1/route", json={"txt": "某投诉"}),
        "too large": client.post("/v1/route", json={"text": "长" * 1_024}),
        "no route": client.get("/v2/route"),
        "wrong method": client.delete("/v1/route"),
    }
    client.app.dependency_overrides[get_router] = lambda: Broken()  # type: ignore[attr-defined]
    answers["unexpected"] = client.post("/v1/route", json=WAGE)
    assert [a.status_code for a in answers.values()] == [200, 200, 200, 422, 413, 404, 405, 500]
    for what, answer in answers.items():
        assert answer.headers.get(VERSION_HEADER) == version, (what, dict(answer.headers))
        # The safe headers too: the 500 went out without them.
        assert answer.headers["x-content-type-options"] == "nosniff", what
    # And what `paidan serve`'s protocol answers before the app (431, 408) is built of them.
    assert (VERSION_HEADER.lower().encode(), version.encode()) in BASE_HEADERS
    # A page on another origin may read it.
    cors = make_client(cors_origins=("https://desk.example",))
    answer = cors.get("/healthz", headers={"Origin": "https://desk.example"})
    assert VERSION_HEADER in answer.headers["Access-Control-Expose-Headers"]


def test_the_schema_names_the_release_and_the_api_version_apart(client: TestClient) -> None:
    # info.version was "1" while X-Paidan-Version said 0.1.0: a generated client carried "1" as
    # the version it was built from, which matched no release. The release is info.version, as
    # the header names it; the API version is the /v1 of every path, and the document says so.
    from serve.security import VERSION_HEADER

    answer = client.get("/openapi.json")
    info = answer.json()["info"]
    assert info["version"] == answer.headers[VERSION_HEADER]
    assert info["version"] == client.get("/healthz").headers[VERSION_HEADER]
    assert "/v1" in info["description"] and VERSION_HEADER in info["description"]
    api_paths = [p for p in answer.json()["paths"] if p.startswith("/v")]
    assert api_paths and all(p.startswith("/v1/") for p in api_paths), api_paths


def test_the_schema_documents_the_headers_every_answer_carries(client: TestClient) -> None:
    # Every answer carries X-Request-ID and X-Paidan-Version (docs/api.md), but openapi.json named
    # no response header: a client generated from it had no accessor for the id to quote in a bug
    # report, and a contract test could not hold the server to them.
    from serve.requestid import REQUEST_ID_HEADER
    from serve.security import VERSION_HEADER

    spec = client.get("/openapi.json").json()
    headers = spec["components"]["headers"]
    for name in (REQUEST_ID_HEADER, VERSION_HEADER):
        assert headers[name]["schema"] == {"type": "string"}, headers[name]
    documented = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                named = response.get("headers", {})
                for name in (REQUEST_ID_HEADER, VERSION_HEADER):
                    ref = {"$ref": f"#/components/headers/{name}"}
                    assert named.get(name) == ref, (method, path, status, named)
                documented += 1
    assert documented > 20
    # And they are what the server sends, on an answer and on an error alike.
    for answer in (client.post("/v1/route", json=WAGE), client.post("/v1/route", json={})):
        assert answer.headers[REQUEST_ID_HEADER] and answer.headers[VERSION_HEADER], answer


def test_unexpected_errors_are_500_and_logged_without_ticket_text(
    make_client: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    secret = "投诉人张三电话13812345678"

    class Broken:
        version = "broken"

        def predict(self, tickets: Any, **_: Any) -> Any:
            raise ValueError(f"cannot route {tickets[0][1]}")

    # Raising server exceptions: the 500 is answered by the app, nothing is re-raised to the server
    # (uvicorn would log the exception with its message: tests/reliability/test_pii.py).
    client = make_client()
    client.app.dependency_overrides[get_router] = lambda: Broken()  # type: ignore[attr-defined]
    with caplog.at_level(logging.ERROR):
        response = client.post(
            "/v1/route", json={"text": secret}, headers={"X-Request-ID": "gw-7f3a"}
        )
    # The request id finds the error's log line: "it was logged" alone named no way to it.
    assert response.json() == {
        "error": {
            "code": "internal_error",
            "message": "an unexpected error occurred; it was logged with request id gw-7f3a",
            "field": None,
        }
    }
    assert response.headers["X-Request-ID"] == "gw-7f3a"
    assert "request_id=gw-7f3a" in caplog.text
    assert_error(response, 500, "internal_error")
    assert secret not in response.text
    assert "ValueError" in caplog.text
    assert "13812345678" not in caplog.text and "张三" not in caplog.text
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1, caplog.text
    metrics = client.get("/metrics").text
    assert 'paidan_http_requests_total{method="POST",route="/v1/route",status="500"} 1.0' in metrics


# -- model and probes --------------------------------------------------------------------------------
def test_model_info(client: TestClient) -> None:
    info = client.get("/v1/model").json()
    assert info["labels"] == {
        "department": ["人社", "住建", "执法"],
        "category": ["劳动保障", "城建", "环境"],
    }
    assert set(info["thresholds"]) == {"department", "category"}
    assert all(0 <= t <= 1 for t in info["thresholds"].values())
    assert "macro_f1" in info["metrics"]["department"]
    assert info["version"]
    # The page warns with these instead of cutting a longer paste (tests/serve/test_browser.py).
    assert info["limits"] == {
        "max_text_chars": 20_000,
        "max_title_chars": 200,
        "max_batch": 1_000,
        "max_body_bytes": 8 * 1024 * 1024,
        "max_ticket_body_bytes": 1024 * 1024,
        # Feedback's department: each name, and a joint dispatch's whole list (the column's width).
        "max_label_chars": 100,
        "max_departments_chars": 1_000,
    }


@pytest.mark.parametrize(
    "url",
    [
        # Refused at once: port 1 is closed; the host is an address, then a name resolving to it.
        "postgresql+psycopg://paidanuser:s3cret-pw@127.0.0.1:1/paidandb",
        "postgresql+psycopg://paidanuser:s3cret-pw@localhost:1/paidandb",
        # A socket directory with no server in it.
        "postgresql+psycopg://paidanuser:s3cret-pw@/paidandb?host=/nonexistent-pg-dir",
    ],
)
def test_readyz_says_why_the_database_is_unreachable_without_naming_where(
    make_client: Callable[..., TestClient], caplog: pytest.LogCaptureFixture, url: str
) -> None:
    # /readyz is open to load balancers without a key, and its reason was the driver's message:
    # 'connection to server at "127.0.0.1", port 1 failed: Connection refused'. Where the
    # database is (and who connects to it) stays in the server's log.
    with caplog.at_level(logging.WARNING):
        client = make_client(database_url=url)
    ready = client.get("/readyz").json()
    assert ready["status"] == "degraded" and ready["database"]["ok"] is False
    reason = ready["database"]["reason"]
    for secret in ("127.0.0.1", "localhost", "::1", "5432", "paidanuser", "s3cret", "paidandb"):
        assert secret not in reason, reason
    assert "nonexistent-pg-dir" not in reason and ":1" not in reason, reason
    assert "OperationalError" in reason and "server's log" in reason, reason
    said = {"127.0.0.1": "refused", "localhost": "refused"}.get(url.split("@")[1].split(":")[0])
    assert said is None or said in reason.lower(), reason
    # The log says where.
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "nonexistent-pg-dir" in logged or ", port 1 failed" in logged, logged


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://paidanuser:s3cret-pw@127.0.0.1:1/paidandb",
        "postgresql+psycopg://paidanuser:s3cret-pw@localhost:1/paidandb",
        "postgresql+psycopg://paidanuser:s3cret-pw@/paidandb?host=/nonexistent-pg-dir",
        "postgresql+psycopg://paidanuser:s3cret-pw@db-host.invalid:5433/paidandb",
        # A SQLite file whose directory cannot be made: its path names where, and maybe who.
        "sqlite:////proc/paidanuser/paidandb.db",
    ],
)
def test_feedback_says_the_database_is_unreachable_without_naming_where(
    make_client: Callable[..., TestClient], caplog: pytest.LogCaptureFixture, url: str
) -> None:
    # /readyz said the failure without where the database is; a save's and an export's 503 still
    # quoted the driver: 'connection to server at "127.0.0.1", port 1 failed', 'for user ...'. An
    # integrator's gateway logs error bodies, and a caller needs no map of the network.
    with caplog.at_level(logging.WARNING):
        client = make_client(database_url=url)
        answers = [
            client.post("/v1/feedback", json={"text": "某投诉", "department": "人社"}),
            client.get("/v1/feedback"),
            client.head("/v1/feedback"),
        ]
    secrets = ("127.0.0.1", "localhost", "paidanuser", "s3cret", "paidandb", "nonexistent-pg-dir")
    for answer in answers[:2]:
        message = assert_error(answer, 503, "database_unavailable")["message"]
        for secret in (*secrets, "db-host.invalid", "5433", "port 1"):
            assert secret not in message, message
        assert "routing still works" in message, message
    assert answers[2].status_code == 503 and answers[2].headers["retry-after"]
    # The log says where.
    logged = " ".join(r.getMessage() for r in caplog.records)
    wheres = ("port 1", "nonexistent-pg-dir", "db-host.invalid", "unable to open")
    assert any(where in logged for where in wheres), logged


def test_model_infos_department_limits_are_those_feedback_enforces(client: TestClient) -> None:
    # GET /v1/model gave no department limit: a client (the page) could not warn before sending a
    # joint dispatch POST /v1/feedback then refused. One over each limit is refused, naming it.
    limits = client.get("/v1/model").json()["limits"]
    name, joint = limits["max_label_chars"], limits["max_departments_chars"]

    def send(department: str) -> Any:
        return client.post(
            "/v1/feedback", json={"text": "工资拖欠三个月", "department": department}
        )

    assert send("住" * name).status_code == 201
    too_long = send("住" * (name + 1))
    assert too_long.status_code == 422
    assert f"at most {name} characters" in too_long.text
    listed = "；".join(["住" * (name - 1)] * (joint // name))  # each name within its limit
    assert len(listed) <= joint
    assert send(listed).status_code == 201
    over = "；".join([listed, "人社" * ((joint - len(listed)) // 2 + 1)])
    assert len(over) > joint and all(len(d) <= name for d in over.split("；"))
    refused = send(over)
    assert refused.status_code == 422
    assert f"longer than {joint:,} characters" in refused.text, refused.text


def test_probes_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready" and body["model_version"]
    assert body["database"] == {"ok": True, "backend": "sqlite"}
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/route", "/v1/route/batch", "/v1/feedback", "/v1/model"} <= set(paths)


@pytest.mark.parametrize("root_path", ["", "/paidan"], ids=["no-root-path", "root-path"])
def test_probes_metrics_and_schema_are_not_cached(client: TestClient, root_path: str) -> None:
    # Only /v1/ answers said no-store: a caching proxy in front of the server could answer a
    # load balancer's /readyz, or a scrape of /metrics, with an earlier answer.
    served = TestClient(client.app, root_path=root_path)
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/no-such-path"):
        for method in ("GET", "HEAD"):
            response = served.request(method, f"{root_path}{path}")
            assert response.headers.get("cache-control") == "no-store", (method, path)
    # The page and its assets keep their own header: revalidated by their ETag.
    assert served.get(f"{root_path}/").headers["cache-control"] == "no-cache"
    assert served.get(f"{root_path}/docs").headers["cache-control"] == "no-cache"


@pytest.mark.parametrize("root_path", ["", "/paidan"], ids=["no-root-path", "root-path"])
def test_docs_page_loads_swagger_ui_from_this_server(client: TestClient, root_path: str) -> None:
    # /docs loaded Swagger UI's script and stylesheet from cdn.jsdelivr.net and its icon from
    # fastapi.tiangolo.com: on an intranet without internet access (政务内网) it was a blank page,
    # and elsewhere third-party script ran beside the Authorize dialog where an API key is typed.
    served = TestClient(client.app, root_path=root_path)
    page = served.get(f"{root_path}/docs")
    assert page.status_code == 200
    assert served.head(f"{root_path}/docs").status_code == 200  # as FastAPI's own /docs
    assert "http://" not in page.text and "https://" not in page.text, page.text
    urls = re.findall(r'(?:src|href)="([^"]*)"', page.text)
    kinds = {"text/javascript", "text/css", "image/png"}
    found = set()
    for url in urls:
        assert url.startswith(f"{root_path}/docs/"), url  # under the proxy's prefix too
        asset = served.get(url)
        assert asset.status_code == 200, url
        found.add(asset.headers["content-type"].split(";")[0])
        assert asset.headers["x-content-type-options"] == "nosniff"
        # 1.5 MB of script: revalidated, not sent again.
        again = served.get(url, headers={"If-None-Match": asset.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
    assert found == kinds, urls
    # Only this server's scripts, and the page's own inline start-up script by its hash.
    policy = dict(
        p.strip().split(" ", 1) for p in page.headers["content-security-policy"].split(";")
    )
    script_src = policy["script-src"].split()
    assert len(script_src) == 2 and script_src[0] == "'self'", script_src
    assert script_src[1].startswith("'sha256-"), script_src
    assert "unsafe" not in page.headers["content-security-policy"]
    assert policy["style-src"] == "'self'" and policy["connect-src"] == "'self'"


def test_route_says_which_traditional_characters_the_model_read_as_simplified(
    client: TestClient,
) -> None:
    # The evidence is in simplified characters; the page marked nothing of 燒烤店 in a ticket
    # typed in traditional ones. The answer says how each was read, so a client can find it.
    sent = {"title": "油煙擾民", "text": "小區樓下燒烤店油煙很大，ＡＢ"}
    body = client.post("/v1/route", json=sent).json()
    assert body["simplified"] == {
        "區": "区", "擾": "扰", "樓": "楼", "煙": "烟", "燒": "烧",
    }  # fmt: skip
    evidence = [e["term"] for h in ("department", "category") for e in body[h]["evidence"]]
    read = "".join(body["simplified"].get(c, c) for c in sent["title"] + sent["text"])
    assert evidence and all(term in read for term in evidence), evidence
    batch = client.post("/v1/route/batch", json={"items": [sent, {"text": "路灯坏了"}]}).json()
    assert [r["result"]["simplified"] for r in batch["results"]] == [body["simplified"], {}]


def test_route_answers_the_ticket_as_read_with_personal_data_masked_when_asked(
    client: TestClient,
) -> None:
    # The page showed the ticket as typed, phone and ID numbers and all (issue #2: masked before
    # any text is shown): the answer held no masked text, and the page would have had to copy the
    # masking rules. Asked for, it carries the title and text as typed, what masking replaced in
    # what prediction read replaced in them too.
    phone, id_number, email = "13812345678", "110101199003071234", "zhang.san@example.com"
    sent = {
        "title": f"電話{phone}",
        "text": f"老板拖欠农民工工资三个月不发，联系 {phone}，身份证 {id_number}，邮箱 {email}",
        "masked": True,
    }
    body = client.post("/v1/route", json=sent).json()
    script = client.app.state.router.config.script  # type: ignore[attr-defined]
    assert body["masked"] == {
        "title": "電話[手机号]",
        "text": "老板拖欠农民工工资三个月不发，联系 [手机号]，身份证 [身份证号]，邮箱 [邮箱]",
    }
    shown = json.dumps(body["masked"], ensure_ascii=False)
    assert phone not in shown and id_number not in shown and email not in shown
    for placeholder in ("[手机号]", "[身份证号]", "[邮箱]"):
        assert placeholder in body["masked"]["text"], body["masked"]
    # The evidence is found in it as the model reads it (the page marks it so, as typed).
    evidence = [e["term"] for h in ("department", "category") for e in body[h]["evidence"]]
    read = clean(body["masked"]["title"] + " " + body["masked"]["text"], script)
    assert evidence and all(t in read for t in evidence), evidence
    # Not asked for, not answered; a batch's items ask each for itself.
    unasked = {k: v for k, v in sent.items() if k != "masked"}
    assert client.post("/v1/route", json=unasked).json()["masked"] is None
    batch = client.post("/v1/route/batch", json={"items": [sent, {"text": "路灯坏了"}]}).json()
    assert [r["result"]["masked"] for r in batch["results"]] == [body["masked"], None]
    no_title = client.post("/v1/route", json={"text": "路灯坏了", "masked": True}).json()
    assert no_title["masked"] == {"title": None, "text": "路灯坏了"}


@pytest.mark.parametrize("sent", ["yes", "true", "false", 1, 0, 1.0, None])
def test_a_flag_of_another_type_is_refused_naming_its_field(client: TestClient, sent: Any) -> None:
    # `"masked": "yes"` (or 1, or "false") was read as a boolean, pydantic's lax mode: an
    # integrator's typo went unseen, and "false" asked for the masked ticket. JSON true or false
    # only; the batch item's own error too. The page's rolling-upgrade retry (without `masked`
    # after an older server's 422 naming it) is untouched: the page sends true.
    error = assert_error(client.post("/v1/route", json={**WAGE, "masked": sent}), 422)
    assert error["field"] == "body.masked", error
    assert error["message"].startswith("body.masked: must be true or false, not "), error
    batch = client.post("/v1/route/batch", json={"items": [{**WAGE, "masked": sent}, SMOKE]})
    first, second = batch.json()["results"]
    assert first["error"]["field"] == "items.0.masked", first
    assert first["result"] is None and second["result"] is not None
    for flag in (True, False):  # JSON's own booleans are still read
        routed = client.post("/v1/route", json={**WAGE, "masked": flag})
        assert routed.status_code == 200, routed.text
        assert (routed.json()["masked"] is not None) is flag


@pytest.mark.parametrize(
    ("path", "body", "field", "expected"),
    [
        ("/v1/route", {"text": 123}, "body.text", "a string, not a number"),
        ("/v1/route", {**WAGE, "title": True}, "body.title", "a string, not true or false"),
        ("/v1/route", {**WAGE, "top_k": "3"}, "body.top_k", "a whole number, not a string"),
        ("/v1/route", {**WAGE, "top_k": 2.5}, "body.top_k", "a whole number, not a fraction"),
        ("/v1/route", {**WAGE, "id": 1e3}, "body.id", "a string, not a number"),
        # Python's json reads NaN and 1e400 (infinity) as numbers; neither is a fraction.
        (
            "/v1/route",
            {**WAGE, "top_k": float("inf")},
            "body.top_k",
            "a whole number, not an infinite number",
        ),
        ("/v1/route", {**WAGE, "top_k": float("nan")}, "body.top_k", "a whole number, not NaN"),
        ("/v1/feedback", {"text": "某投诉", "department": 7}, "body.department", "a string"),
        (
            "/v1/feedback",
            {"text": "某投诉", "department": "人社", "request_id": 5},
            "body.request_id",
            "a string",
        ),
    ],
)
def test_a_value_of_another_type_is_said_in_json_words(
    client: TestClient, path: str, body: dict[str, Any], field: str, expected: str
) -> None:
    # "Input should be a valid boolean / string / integer" named Python's types and not what was
    # sent; an integrator reads JSON's. Sent as json.dumps writes it: NaN and Infinity too.
    sent = client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
    error = assert_error(sent, 422, "invalid_request")
    assert error["field"] == field, error
    assert error["message"].startswith(f"{field}: must be {expected}"), error


@pytest.mark.parametrize(
    ("path", "body", "field", "expected"),
    [
        ("/v1/route", {"text": "某投诉", "top_k": 0}, "body.top_k", "must be at least 1"),
        ("/v1/route", {"text": "某投诉", "top_k": -5}, "body.top_k", "must be at least 1"),
        (
            "/v1/route",
            {"text": "某投诉", "top_k": MAX_TOP_K + 1},
            "body.top_k",
            f"must be at most {MAX_TOP_K}",
        ),
        (
            "/v1/route/batch",
            {"items": [{"text": "某投诉"}], "top_k": 99},
            "body.top_k",
            f"must be at most {MAX_TOP_K}",
        ),
    ],
)
def test_a_value_out_of_its_bounds_is_said_in_paidans_words(
    client: TestClient, path: str, body: dict[str, Any], field: str, expected: str
) -> None:
    # "body.top_k: Input should be greater than or equal to 1" was pydantic's English, beside
    # messages of paidan's own that name the field and the limit.
    error = assert_error(client.post(path, json=body), 422, "invalid_request")
    assert error["field"] == field, error
    assert error["message"] == f"{field}: {expected}", error


def test_a_batch_items_value_out_of_its_bounds_is_said_in_paidans_words(client: TestClient) -> None:
    items = [{"text": "某投诉", "top_k": 0}, {"text": "某投诉", "top_k": MAX_TOP_K + 1}]
    results = client.post("/v1/route/batch", json={"items": items}).json()["results"]
    assert [r["error"]["message"] for r in results] == [
        "item 0: top_k: must be at least 1",
        f"item 1: top_k: must be at most {MAX_TOP_K}",
    ]
    assert [r["error"]["field"] for r in results] == ["items.0.top_k", "items.1.top_k"]


def test_the_ticket_is_shown_as_typed_with_only_its_personal_data_masked(
    client: TestClient,
) -> None:
    # `masked` was the text as the model read it: half-width, lower-cased, on one line. The page
    # showed the dispatcher their ticket altered (ＡＢＣ小区 as abc小区, its paragraphs run
    # together, 联系电话：１３８ as 联系电话:). Only what masking replaces is replaced now; the
    # prediction reads what it read before.
    sent = {
        "title": "  ＡＢＣ小区　欠薪  ",
        "text": "老板拖欠农民工工资三个月不发。\n\n联系电话：１３８ １２３４ ５６７８，车牌 湘Ａ12345\nQQ号 12345678",
    }
    body = client.post("/v1/route", json={**sent, "masked": True}).json()
    assert body["masked"] == {
        "title": "  ＡＢＣ小区　欠薪  ",
        "text": "老板拖欠农民工工资三个月不发。\n\n联系电话：[手机号]，车牌 [车牌号]\nQQ号 [qq号]",
    }
    unmasked = client.post("/v1/route", json=sent).json()
    for head in ("department", "category"):
        assert body[head] == unmasked[head]
    assert body["similar"] == unmasked["similar"]


def test_probes_answer_head(client: TestClient) -> None:
    # Load balancers probe with HEAD; it was a 405.
    for path in ("/healthz", "/readyz"):
        response = client.head(path)
        assert response.status_code == 200, (path, response.status_code)
        assert response.content == b""
    # A scrape's liveness check with HEAD /metrics was a 405 too, while GET answered.
    head, get = client.head("/metrics"), client.get("/metrics")
    assert head.status_code == 200 and head.content == b"", head.status_code
    assert head.headers["content-type"] == get.headers["content-type"]
    assert client.head("/metrics/").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/healthz"]) == {"get"} and set(paths["/readyz"]) == {"get"}
    assert set(paths["/metrics"]) == {"get"}
    # An uptime check of the page with HEAD was a 405; the page's headers, no body.
    for path in ("/", "/static/app.js"):
        head, get = client.head(path), client.get(path)
        assert head.status_code == 200 and head.content == b"", (path, head.status_code)
        assert head.headers["etag"] == get.headers["etag"], path
    # GET /v1/model, which a client's start-up or an uptime check reads, was a 405 to HEAD
    # ("allow: GET"), though HTTP asks every GET resource to answer HEAD.
    head, get = client.head("/v1/model"), client.get("/v1/model")
    assert head.status_code == 200 and head.content == b"", head.status_code
    assert head.headers["content-type"] == get.headers["content-type"]
    assert set(paths["/v1/model"]) == {"get"}


def test_every_get_answers_head_as_get_without_a_body(
    make_client: Callable[..., TestClient],
) -> None:
    # HEAD /v1/feedback was a 405 ("allow: GET, POST") while GET exported: HTTP asks every GET
    # resource to answer HEAD, and a client checking the export (its key, the database) with HEAD
    # was told the method is wrong. The same for any GET route, the docs' assets too.
    client = make_client(api_keys=("head-test-key-0123456789",))
    key = {"X-API-Key": "head-test-key-0123456789"}
    client.post("/v1/feedback", json={"text": "某投诉", "department": "人社"}, headers=key)
    head, get = client.head("/v1/feedback", headers=key), client.get("/v1/feedback", headers=key)
    assert get.status_code == 200 and get.content, get.text
    assert head.status_code == 200 and head.content == b"", head.status_code
    assert head.headers["content-type"] == get.headers["content-type"]
    # Refused as GET is: no key, a parameter it does not take.
    assert client.head("/v1/feedback").status_code == client.get("/v1/feedback").status_code == 401
    assert client.head("/v1/feedback?sinse=2026", headers=key).status_code == 422
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/v1/feedback"]) == {"get", "post"}  # HEAD is not documented as its own
    for route in client.app.routes:  # type: ignore[attr-defined]
        path = getattr(route, "path", "")
        if "GET" in (getattr(route, "methods", None) or ()):
            shown = path.replace("{name}", "swagger-ui.css")
            assert client.head(shown, headers=key).status_code != 405, path


def test_probes_answer_while_the_shared_threadpool_is_taken(client: TestClient) -> None:
    # /readyz and /metrics ran in the threadpool that /v1/route/batch and /v1/feedback share: with
    # 40 batch requests running, a probe waited for one of them, and a load balancer took the busy
    # server out of rotation. Here the pool has one thread, held by a request until the probes
    # have answered; with the shared pool they could only answer after it (its wait ran out).
    import threading

    import anyio

    app = client.app
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    async def one_thread() -> None:
        anyio.to_thread.current_default_thread_limiter().total_tokens = 1

    def hold() -> None:  # a plain def: it takes the pool's only thread
        started.set()
        release.wait(20)
        finished.set()

    app.router.add_api_route("/test/one-thread", one_thread)  # type: ignore[attr-defined]
    app.router.add_api_route("/test/hold", hold)  # type: ignore[attr-defined]
    client.get("/test/one-thread")
    holder = threading.Thread(target=client.get, args=("/test/hold",))
    holder.start()
    try:
        assert started.wait(10)
        for path in ("/readyz", "/metrics"):
            assert client.get(path).status_code == 200, path
            assert not finished.is_set(), f"{path} answered only after the held request"
    finally:
        release.set()
        holder.join()


def test_model_outside_the_root_is_refused(
    make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    from model.artifact import ModelLoadError
    from serve.app import create_app

    settings = make_settings(model_root=tmp_path / "elsewhere")
    with (
        pytest.raises(ModelLoadError, match="outside the model root"),
        TestClient(create_app(settings)),
    ):
        pass


# -- feedback ----------------------------------------------------------------------------------------
def test_feedback_round_trip_and_export(client: TestClient) -> None:
    shown = client.post("/v1/route", json=WAGE).json()
    response = client.post(
        "/v1/feedback",
        json={
            "ticket_id": "A-1",
            "title": WAGE["title"],
            "text": WAGE["text"],
            "suggestion": shown,
            "department": "住建",
            "category": "城建",
            "dispatcher_id": "op-7",
        },
    )
    assert response.status_code == 201, response.text
    saved = response.json()
    assert saved["ticket_id"] == "A-1" and saved["department"] == "住建"
    assert saved["model_version"] == shown["model_version"]
    created = datetime.fromisoformat(saved["created_at"])
    assert created.tzinfo is not None
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=5)

    [row] = export(client)
    assert row["id"] == saved["id"]
    assert row["ticket_id"] == "A-1" and row["dispatcher_id"] == "op-7"
    assert row["department"] == "住建" and row["category"] == "城建"
    assert row["text"] == clean(WAGE["text"]) and row["title"] == clean(WAGE["title"])
    assert row["suggestion"]["department"]["label"] == shown["department"]["label"]
    assert row["suggestion"]["similar"] == shown["similar"]


def test_feedback_with_both_id_and_ticket_id(client: TestClient) -> None:
    # `id` is accepted for ticket_id; sent together (a client that adds ticket_id to the routed
    # body) the answer was "body.id: is not a known field", which the docs contradict.
    body = {"id": "A-1", "ticket_id": "A-1", "text": WAGE["text"], "department": "人社"}
    saved = client.post("/v1/feedback", json=body)
    assert saved.status_code == 201, saved.text
    assert saved.json()["ticket_id"] == "A-1"
    error = assert_error(
        client.post("/v1/feedback", json={**body, "id": "A-2"}), 422, "invalid_request"
    )
    # Named as every other 422 names a field: the key the client sent, not the whole body.
    assert error == {
        "code": "invalid_request",
        "message": "body.id: names another ticket than ticket_id; send the ticket's id once, "
        "as ticket_id (or as id)",
        "field": "body.id",
    }
    # A null one is a name not used.
    for ids in ({"id": None, "ticket_id": "A-3"}, {"id": "A-3", "ticket_id": None}):
        saved = client.post("/v1/feedback", json={**body, **ids})
        assert saved.status_code == 201 and saved.json()["ticket_id"] == "A-3", saved.text
    assert [r["ticket_id"] for r in export(client)] == ["A-1", "A-3", "A-3"]


def test_ticket_and_operator_numbers_are_read_as_ids(client: TestClient) -> None:
    # Many ticket systems number their tickets and operators and send the number: it was refused
    # ("body.id: Input should be a valid string"), a batch item lost to a client's JSON habit.
    routed = client.post("/v1/route", json={"id": 20261206001, "text": WAGE["text"]})
    assert routed.status_code == 200, routed.text
    assert routed.json()["id"] == "20261206001"
    items = [{"id": 7, "text": WAGE["text"]}, {"id": 8, "text": " "}]
    batch = client.post("/v1/route/batch", json={"items": items})
    assert batch.status_code == 200, batch.text
    routed, blank = batch.json()["results"]
    assert routed["id"] == "7" and routed["result"]["id"] == "7" and routed["error"] is None
    assert blank["id"] == "8" and blank["error"]["field"] == "items.1.text"
    body = {"text": WAGE["text"], "department": "人社"}
    for ids in ({"ticket_id": 20261206001}, {"id": 20261206001, "ticket_id": "20261206001"}):
        saved = client.post("/v1/feedback", json={**body, **ids, "dispatcher_id": 1024})
        assert saved.status_code == 201, saved.text
    assert [(r["ticket_id"], r["dispatcher_id"]) for r in export(client)] == [
        ("20261206001", "1024")
    ] * 2
    # A fraction or true is no id.
    for bad in (1.5, True):
        error = assert_error(
            client.post("/v1/route", json={"id": bad, "text": WAGE["text"]}), 422, "invalid_request"
        )
        assert error["field"] == "body.id", error


def test_the_schema_lets_ids_be_sent_as_the_integers_the_server_reads(client: TestClient) -> None:
    # The server reads an integer id as its digits (above), but the OpenAPI schema said
    # `string | null` only: a client generated from it could not send the ticket system's numbers,
    # and a request validator in front of the API refused what the server accepts.
    spec = client.get("/openapi.json").json()

    def body_schema(name: str) -> dict[str, Any]:
        # The spec's components under the root a $ref names, so that the validator finds them.
        return {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}

    sent = {
        "RouteRequest": {"id": 20261206001, "text": WAGE["text"]},
        "FeedbackRequest": {
            "ticket_id": 20261206001,
            "dispatcher_id": 1024,
            "text": WAGE["text"],
            "department": "人社",
        },
    }
    for name, body in sent.items():
        answer = client.post("/v1/route" if name == "RouteRequest" else "/v1/feedback", json=body)
        assert answer.status_code in (200, 201), answer.text
        errors = list(Draft202012Validator(body_schema(name)).iter_errors(body))
        assert not errors, (name, [e.message for e in errors])
        # A fraction is still no id, in the schema as on the server.
        bad = {**body, ("id" if name == "RouteRequest" else "ticket_id"): 1.5}
        assert list(Draft202012Validator(body_schema(name)).iter_errors(bad)), name


def test_the_schema_lists_body_errors_only_where_a_body_is_sent(
    make_client: Callable[..., TestClient],
) -> None:
    # GET /v1/feedback and GET /readyz listed 413 and 415, which only a request body can meet, and
    # POST /v1/admin/reload, which answers 415 to a body that is not JSON, did not list it: a
    # generated client had error types for answers that never come and none for one that does.
    client = make_client(api_keys=("schema-test-key-0123456789",))
    paths = client.get("/openapi.json").json()["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            documented = set(operation["responses"])
            takes_body = "requestBody" in operation
            if not takes_body:
                assert not documented & {"413", "415"}, (method, path, sorted(documented))
                continue
            assert {"413", "415"} <= documented, (method, path, sorted(documented))
            # And the 415 is what the server answers to a body that is not JSON.
            answer = client.request(
                method, path, content=b"text=x", headers={"Content-Type": "text/plain"}
            )
            assert_error(answer, 415, "unsupported_media_type")
    # A probe takes neither a body nor a query: it answers 200 or, before a model, 503.
    assert set(paths["/readyz"]["get"]["responses"]) == {"200", "500", "503"}


def test_the_schema_states_the_bounds_of_top_k_as_json_schema(client: TestClient) -> None:
    # top_k's bounds were written "ge": 1, "le": 20, which JSON Schema does not know: a request
    # validator or a generated client let 0 and 21 through, and the server refused them.
    spec = client.get("/openapi.json").json()
    for name, body in (("RouteRequest", WAGE), ("RouteBatchRequest", {"items": [WAGE]})):
        schema = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
        for top_k in (0, MAX_TOP_K + 1, 1, MAX_TOP_K):
            sent = {**body, "top_k": top_k}
            path = "/v1/route" if name == "RouteRequest" else "/v1/route/batch"
            served = client.post(path, json=sent).status_code
            valid = not list(Draft202012Validator(schema).iter_errors(sent))
            assert valid is (served == 200), (name, top_k, served)


def test_the_schema_states_the_batch_limit_and_the_shape_of_an_item(
    make_client: Callable[..., TestClient],
) -> None:
    # The batch's items were `{}` in openapi.json, with no maxItems: a client generated from it had
    # no type for an item (Swagger UI's "Try it out" filled in one the server refused), and neither
    # PAIDAN_MAX_BATCH nor an item's text limit was stated, though the server holds to both.
    client = make_client(max_batch=2, max_text_chars=100)
    spec = client.get("/openapi.json").json()
    schema = {"$ref": "#/components/schemas/RouteBatchRequest", "components": spec["components"]}

    def valid(body: dict[str, Any]) -> bool:
        return not list(Draft202012Validator(schema).iter_errors(body))

    two = {"items": [WAGE, {"id": 7, "text": "字" * 100, "top_k": 2}]}
    assert valid(two)
    assert client.post("/v1/route/batch", json=two).json()["ok"] == 2
    three = {"items": [WAGE] * 3}
    assert not valid(three)
    assert_error(client.post("/v1/route/batch", json=three), 413, "batch_too_large")
    # An item the server refuses (in its own error) is outside the item's schema too.
    for item in ({"text": "字" * 101}, {"title": "x"}, {"text": "x", "tilte": "x"}, "x"):
        assert not valid({"items": [item]}), item
        answer = client.post("/v1/route/batch", json={"items": [item]}).json()
        assert answer["failed"] == 1, (item, answer)
    # An item is described as the body of POST /v1/route is: the same component.
    items = spec["components"]["schemas"]["RouteBatchRequest"]["properties"]["items"]
    assert items["items"] == {"$ref": "#/components/schemas/RouteRequest"}, items


def test_the_schema_requires_every_field_an_answer_always_carries(client: TestClient) -> None:
    # Every answer carries each of its fields, null or not ("field": null in every error, "id",
    # "masked" and "simplified" in every route answer), but the schema marked those with a
    # default as optional: a client generated from it had `field?: string | null` to test for
    # absence where the server never leaves one out.
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    refs = re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(spec["paths"]))
    answers = {
        r for r in refs if not r.endswith(("Request", "RequestBase")) and r != "ReloadRequest"
    }
    seen: set[str] = set()
    while answers:
        name = answers.pop()
        seen.add(name)
        nested = re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(schemas[name]))
        answers |= set(nested) - seen
    assert {"RouteResponse", "HeadResult", "ErrorBody", "FeedbackRecord", "ModelInfo"} <= seen
    for name in sorted(seen):
        properties = set(schemas[name].get("properties", {}))
        assert set(schemas[name].get("required", [])) == properties, name
    # As answered: the fields a route answer and an error hold are the schema's, every one.
    answer = client.post("/v1/route", json=WAGE).json()
    assert set(answer) == set(schemas["RouteResponse"]["properties"]), answer
    assert set(answer["department"]) == set(schemas["HeadResult"]["properties"]), answer
    error = client.post("/v1/route", json={}).json()["error"]
    assert set(error) == set(schemas["ErrorBody"]["properties"]), error


def test_the_schema_says_when_to_retry_feedback(
    make_client: Callable[..., TestClient],
) -> None:
    # A save or an export the feedback database cannot take is a 503 with Retry-After (the page
    # waits that long), but the schema named no such header: a generated client had no accessor
    # for it, and its writer no hint that the wait is given.
    spec = make_client().get("/openapi.json").json()
    for method in ("post", "get"):
        unavailable = spec["paths"]["/v1/feedback"][method]["responses"]["503"]
        assert unavailable["headers"]["Retry-After"]["schema"] == {"type": "integer"}, unavailable
    client = make_client(database_url="sqlite:////proc/paidan-none/paidan.db")
    for answer in (
        client.post("/v1/feedback", json={"text": "某投诉", "department": "人社"}),
        client.get("/v1/feedback"),
    ):
        assert answer.status_code == 503 and int(answer.headers["Retry-After"]) > 0, answer


def test_the_schema_lists_the_reasons_a_head_gives(client: TestClient) -> None:
    # docs/api.md names the four reasons a head leaves a ticket to a person, but the schema said
    # `string | null`: a client generated from it could not switch on them, and a reason the
    # server invented would have met the schema.
    spec = client.get("/openapi.json").json()
    reason = spec["components"]["schemas"]["HeadResult"]["properties"]["reason"]
    said = [v for v in reason["anyOf"] if v.get("type") != "null"]
    assert said == [
        {"type": "string", "enum": ["below_threshold", "no_known_terms", "catch_all", "rule"]}
    ], reason
    validator = Draft202012Validator(
        {"$ref": "#/components/schemas/RouteResponse", "components": spec["components"]}
    )
    for body in (WAGE, {"text": "！！！"}):
        answer = client.post("/v1/route", json=body).json()
        assert not list(validator.iter_errors(answer)), answer


def test_the_schema_documents_what_model_and_metrics_answer(client: TestClient) -> None:
    # GET /v1/model answered 503 before a model was loaded, undocumented (its only response was
    # 200), and /metrics's 200 named no content type: a client generated from the schema had no
    # error type for the one and read the other as empty.
    paths = client.get("/openapi.json").json()["paths"]
    client.app.state.router = None  # type: ignore[attr-defined]  # as before the model loads
    for method, path, body in (
        ("get", "/v1/model", None),
        ("post", "/v1/route", WAGE),
        ("post", "/v1/route/batch", {"items": [WAGE]}),
    ):
        answer = client.request(method, path, json=body)
        assert_error(answer, 503, "model_not_loaded")
        documented = paths[path][method]["responses"]
        assert "503" in documented, (path, list(documented))
        schema = documented["503"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, path
    metrics = client.get("/metrics")
    media_type = metrics.headers["content-type"].split(";")[0]
    assert media_type in paths["/metrics"]["get"]["responses"]["200"].get("content", {})


def test_a_title_only_ticket_is_told_to_send_its_title_as_text(client: TestClient) -> None:
    # 12345 exports sometimes hold the whole complaint in the title: "body.text: is required"
    # named no way to route such a ticket.
    hint = (
        "; send the complaint in text (a ticket whose title holds it all: send the title as text "
        "too)"
    )
    error = assert_error(client.post("/v1/route", json={"title": "油烟扰民"}), 422)
    assert error == {
        "code": "invalid_request",
        "field": "body.text",
        "message": "body.text: is required" + hint,
    }
    # No title, or a blank one: nothing to send as text.
    for sent in ({"id": "T"}, {"title": " \u200b"}):
        error = assert_error(client.post("/v1/route", json=sent), 422)
        assert error["message"] == "body.text: is required", error
    batch = client.post(
        "/v1/route/batch", json={"items": [{"id": "T", "title": "油烟扰民"}, {"title": ""}, SMOKE]}
    )
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert results[0]["id"] == "T" and results[0]["error"] == {
        "code": "invalid_item",
        "field": "items.0.text",
        "message": "item 0: text: is required" + hint,
    }
    assert results[1]["error"]["message"] == "item 1: text: is required"
    assert results[2]["result"]["id"] == "A-2"
    # A text sent blank beside the title: the same advice, after what is wrong with the text.
    for blank in ("", " \u3000"):
        error = assert_error(
            client.post("/v1/route", json={"title": "油烟扰民", "text": blank}), 422
        )
        assert error["message"] == (
            "body.text: is empty (only whitespace or invisible characters)" + hint
        ), error
    error = assert_error(client.post("/v1/route", json={"title": " ", "text": ""}), 422)
    assert error["message"].endswith("; send the complaint text"), error
    # The advice routes it.
    answer = client.post("/v1/route", json={"title": "油烟扰民", "text": "油烟扰民"})
    assert answer.status_code == 200, answer.text


def test_feedback_errors_name_their_field_in_the_message(client: TestClient) -> None:
    # As every validation error does ("body.text: is required"); these began "is missing or
    # empty; …" or "was already used …", a sentence without its subject in a client's log.
    body = {"text": WAGE["text"], "department": "人社", "request_id": "r-1"}
    assert client.post("/v1/feedback", json=body).status_code == 201
    for sent in (
        {"text": WAGE["text"]},
        {**body, "department": "住建"},
        {"text": WAGE["text"], "department": "人社", "suggestion": {"x": "长" * 100_001}},
    ):
        error = client.post("/v1/feedback", json=sent).json()["error"]
        assert error["field"] and error["message"].startswith(f"{error['field']}: "), error


def test_a_suggestion_of_many_values_is_refused_before_it_is_walked(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Validated on the event loop, a 6 MB suggestion of two million numbers was walked value by
    # value three times (lone surrogates, depth, finite numbers), seconds in which the server
    # answered nothing else, before its size (over 100,000 characters of JSON) refused it.
    import serve.schemas

    visited = 0
    scrub = serve.schemas.scrub_surrogates

    def counted(value: Any, depth: int = 0) -> Any:
        nonlocal visited
        visited += 1
        return scrub(value, depth)

    monkeypatch.setattr(serve.schemas, "scrub_surrogates", counted)
    sent = {"text": WAGE["text"], "department": "人社", "suggestion": {"a": [[1] * 10] * 20_000}}
    error = assert_error(client.post("/v1/feedback", json=sent), 422, "invalid_request")
    assert error["field"] == "body.suggestion"
    assert error["message"] == (
        "body.suggestion: is larger than 100,000 characters of JSON; send the POST /v1/route "
        "answer as it was"
    )
    assert visited < 100, visited


@pytest.mark.parametrize(
    ("path", "fields"), [("/v1/route", {}), ("/v1/feedback", {"department": "人社"})]
)
def test_an_unknown_keys_value_is_not_walked(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, path: str, fields: dict[str, Any]
) -> None:
    # Validated on the event loop, the value of an unknown key (refused whatever it holds) was
    # walked value by value for lone surrogates: 0.2 s for a 1 MiB body of small numbers, in which
    # the server answered nothing else.
    import serve.schemas

    visited = 0
    scrub = serve.schemas.scrub_surrogates

    def counted(value: Any, depth: int = 0) -> Any:
        nonlocal visited
        visited += 1
        return scrub(value, depth)

    monkeypatch.setattr(serve.schemas, "scrub_surrogates", counted)
    sent = {"text": WAGE["text"], **fields, "junk": [[1] * 10] * 2_000}
    error = assert_error(client.post(path, json=sent), 422, "invalid_request")
    assert error["field"] == "body.junk"
    assert visited < 100, visited
    # An unknown key, and its value, holding a lone surrogate are still answered (not a 500).
    raw = json.dumps({"text": "x", **fields, "junk\ud800": ["\udfff"]})  # as \uXXXX escapes
    response = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert assert_error(response, 422, "invalid_request")["field"] == "body.junk\ufffd"


def test_feedback_department_sent_as_an_array_is_told_how_to_name_a_joint_dispatch(
    client: TestClient,
) -> None:
    # Ticket files may give a joint dispatch as a JSON array; the API answered an array with
    # "Input should be a valid string", naming no way to send one.
    sent = {"text": "某投诉", "department": ["人社", "住建"]}
    error = assert_error(client.post("/v1/feedback", json=sent), 422, "invalid_request")
    assert error == {
        "code": "invalid_request",
        "message": "body.department: must be a string, not an array; name a joint dispatch's "
        "departments in one, the lead first, separated by ；: 人社；住建",
        "field": "body.department",
    }
    # What it quotes is masked, as every error quotes the request.
    masked = {"text": "某投诉", "department": ["网格员张三13912345678", "住建"]}
    error = assert_error(client.post("/v1/feedback", json=masked), 422, "invalid_request")
    assert error["message"].endswith(": 网格员张三[手机号]；住建"), error
    # As told, it is stored.
    saved = client.post("/v1/feedback", json={**sent, "department": "人社；住建"})
    assert saved.status_code == 201 and saved.json()["department"] == "人社；住建"


def test_feedback_department_list_is_stored_without_its_empty_segments(
    client: TestClient,
) -> None:
    # "市住建局；；市公安局" (a separator typed twice) was stored and exported as sent, empty
    # segment and all, where retraining and ticket files read it as 市住建局 led, 市公安局 joint.
    for sent, stored in (
        ("市住建局；；市公安局", "市住建局；市公安局"),
        ("；市住建局; ；市公安局；", "市住建局；市公安局"),
        ("市住建局；", "市住建局"),
    ):
        r = client.post("/v1/feedback", json={"text": "某投诉", "department": sent})
        assert r.status_code == 201, r.text
        assert r.json()["department"] == stored
    assert [row["department"] for row in export(client)] == [
        "市住建局；市公安局",
        "市住建局；市公安局",
        "市住建局",
    ]
    # The same decision, sent again with its request_id and the list written either way, is one.
    body = {"text": "某投诉", "department": "市住建局；；市公安局", "request_id": "joint-1"}
    assert client.post("/v1/feedback", json=body).status_code == 201
    again = client.post("/v1/feedback", json={**body, "department": "市住建局；市公安局"})
    assert again.status_code == 201, again.text


# Departments of a city's joint dispatch, as a dispatcher may name them all (written for the test).
LONG_JOINT = [
    "市住房和城乡建设局",
    "市人力资源和社会保障局",
    "市城市管理综合执法局",
    "市自然资源和规划局",
    "市生态环境局",
    "市市场监督管理局",
    "市公安局交通警察支队",
    "市发展和改革委员会",
    "区人民政府办公室",
    "街道办事处",
    "市卫生健康委员会",
    "市教育局",
]


def test_feedback_stores_a_joint_dispatch_longer_than_one_department_name(
    client: TestClient,
) -> None:
    # The department field and its column were 100 characters wide, one name's width: a joint
    # dispatch of twelve departments (108 characters) was refused with 422 and could not be saved.
    department = "；".join(LONG_JOINT)
    assert len(department) > 100
    r = client.post("/v1/feedback", json={"text": "某投诉", "department": department})
    assert r.status_code == 201, r.text
    assert r.json()["department"] == department
    assert [row["department"] for row in export(client)] == [department]


def test_feedback_refuses_a_department_list_or_name_too_long_naming_the_limit(
    client: TestClient,
) -> None:
    too_many = "；".join(LONG_JOINT * 10)  # 1,089 characters
    error = assert_error(
        client.post("/v1/feedback", json={"text": "某投诉", "department": too_many}), 422
    )
    assert error["field"] == "body.department", error
    assert f"longer than {MAX_DEPARTMENTS_CHARS:,} characters" in error["message"], error
    # One name is a name's width, as a category is.
    one = "市" * 101
    for department in (one, f"市住建局；{one}"):
        sent = {"text": "某投诉", "department": department}
        error = assert_error(client.post("/v1/feedback", json=sent), 422)
        assert error["field"] == "body.department", error
        assert "is 101 characters long: each department is at most 100" in error["message"]
    # Names listed with 、 are names: a list longer than one name is told how to separate them.
    listed = {"text": "某投诉", "department": "人社、" + "某" * 100}
    error = assert_error(client.post("/v1/feedback", json=listed), 422)
    assert error["field"] == "body.department", error
    assert "separated by ；, the lead first" in error["message"], error
    assert export(client) == []  # nothing stored


def test_feedback_department_listing_several_with_commas_is_told_to_use_the_joint_separator(
    client: TestClient,
) -> None:
    # "人社、发改" was stored as given, and retraining learnt it as a department of its own, or
    # merged it into 其他, where "人社；发改" is a joint dispatch: 发改 is no department the model
    # knows, so the list cannot be told from a name.
    for department in ("人社、发改", "人社，发改", "人社,发改", "执法；人社、发改"):
        sent = {"text": "某投诉", "department": department}
        error = assert_error(client.post("/v1/feedback", json=sent), 422, "invalid_request")
        assert error["field"] == "body.department", error
        assert "separated by ；, the lead first" in error["message"], error
        assert department not in error["message"]
    assert export(client) == []  # nothing stored


def test_feedback_department_listing_known_departments_with_commas_is_a_joint_dispatch(
    client: TestClient,
) -> None:
    # Departments the model knows, listed with 、 or a comma, are a joint dispatch as retraining
    # reads it (model.tickets.comma_listed): stored so, where they were refused with a 422.
    for sent, stored in (
        ("人社、住建", "人社；住建"),
        ("人社，住建", "人社；住建"),
        ("人社,住建、执法", "人社；住建；执法"),
        ("执法；人社、住建", "执法；人社；住建"),
    ):
        r = client.post("/v1/feedback", json={"text": "某投诉", "department": sent})
        assert r.status_code == 201, r.text
        assert r.json()["department"] == stored


def test_a_department_the_model_learnt_with_a_comma_in_it_is_stored() -> None:
    from serve.errors import ApiError
    from serve.routes import _refuse_listed_with_commas

    metadata = {"heads": {"department": {"labels": ["发改、财政", "人社"]}}}
    _refuse_listed_with_commas("发改、财政", metadata)
    _refuse_listed_with_commas("人社；发改、财政", metadata)
    with pytest.raises(ApiError):
        _refuse_listed_with_commas("人社、发改", metadata)
    with pytest.raises(ApiError):  # a category-only model learnt no department
        _refuse_listed_with_commas("人社、发改", {"heads": {"category": {"labels": []}}})


def test_a_saved_feedback_export_read_as_tickets_is_named(
    client: TestClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # An administrator saved the export and gave it to train (or retrain --history) as the
    # dispatchers' corrections: its `id` numbers the decisions, so each decision was read as a
    # ticket of its own (a ticket corrected twice trained with both labels, none replacing its
    # history row), without a word.
    from model.tickets import named_paths, read_tickets

    for department in ("住建", "人社"):  # the same ticket decided twice
        body = {**WAGE, "ticket_id": "A-1", "department": department, "category": "劳动保障"}
        assert client.post("/v1/feedback", json=body).status_code == 201
    export = tmp_path / "feedback.jsonl"
    export.write_text(client.get("/v1/feedback").text, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="model.tickets"):
        tickets = read_tickets(named_paths([export]))
    assert tickets["id"].tolist() == ["1", "2"]  # the decisions' ids, as read
    said = [r.getMessage() for r in caplog.records if "feedback export" in r.getMessage()]
    assert len(said) == 1, caplog.text
    assert said[0].startswith(f"{export}: is paidan's feedback export (GET /v1/feedback"), said
    assert (
        "each row is a decision, read as a ticket of its own (its id numbers the decisions; the ticket's is ticket_id)"
        in said[0]
    )
    assert "paidan retrain reads the feedback database itself" in said[0]


def test_feedback_export_since(client: TestClient) -> None:
    ids = []
    for dept in ("人社", "执法", "住建"):
        r = client.post("/v1/feedback", json={"text": "某投诉", "department": dept})
        assert r.status_code == 201
        ids.append((r.json()["id"], r.json()["created_at"]))
    assert [row["id"] for row in export(client)] == [i for i, _ in ids]
    assert [row["id"] for row in export(client, since=ids[1][1])] == [ids[1][0], ids[2][0]]
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert export(client, since=later) == []
    # A time without a zone is UTC.
    naive = datetime.fromisoformat(ids[2][1]).astimezone(UTC).replace(tzinfo=None).isoformat()
    assert [row["id"] for row in export(client, since=naive)] == [ids[2][0]]
    assert_error(client.get("/v1/feedback", params={"since": "yesterday"}), 422, "invalid_request")
    # Times whose UTC form leaves the calendar were a 503 ("database unavailable").
    assert len(export(client, since="0001-01-01T00:00:00+08:00")) == 3
    assert export(client, since="9999-12-31T23:59:59-08:00") == []


def test_feedback_export_since_with_an_offset_typed_unencoded(client: TestClient) -> None:
    # `?since=…+08:00` typed as the README writes times: a URL reads the "+" as a space, and the
    # answer was 422 "unexpected extra characters at the end of the input".
    saved = client.post("/v1/feedback", json={"text": "某投诉", "department": "人社"})
    assert saved.status_code == 201
    created = datetime.fromisoformat(saved.json()["created_at"])
    for delta, rows in ((timedelta(minutes=-5), 1), (timedelta(minutes=5), 0)):
        local = (created + delta).astimezone(timezone(timedelta(hours=8)))
        typed = local.replace(microsecond=0).isoformat()
        assert "+08:00" in typed
        for written in (typed, typed.replace("+", "%2B"), typed.replace("T", " ")):
            response = client.get(f"/v1/feedback?since={written}")
            assert response.status_code == 200, (written, response.text)
            assert len(response.text.splitlines()) == rows, written
    # A space that cannot be a lost "+" is still refused.
    assert_error(client.get("/v1/feedback?since=2026-12-01+x"), 422, "invalid_request")


def test_feedback_export_since_is_read_as_paidan_reads_since(client: TestClient) -> None:
    # ISO 8601's compact date, since=20261207, was read as Unix seconds (1970-08-23): a 200 with
    # every row; since=13812345678 exported nothing (2407). It is now read as `paidan drift
    # --since` reads it.
    saved = client.post("/v1/feedback", json={"text": "某投诉", "department": "人社"})
    assert saved.status_code == 201
    created = datetime.fromisoformat(saved.json()["created_at"]).astimezone(UTC)
    tomorrow, yesterday = created + timedelta(days=1), created - timedelta(days=1)
    assert export(client, since=tomorrow.strftime("%Y%m%d")) == []
    for since in (
        yesterday.strftime("%Y%m%d"),
        yesterday.strftime("%Y%m%dT%H%M%SZ"),
        yesterday.strftime("%Y/%m/%d"),
        str(yesterday.year),  # the first of January
    ):
        assert len(export(client, since=since)) == 1, since
    assert export(client, since=str(tomorrow.year + 1)) == []
    for number in ("1733500000.5", "13812345678"):
        error = assert_error(
            client.get("/v1/feedback", params={"since": number}), 422, "invalid_request"
        )
        assert error["field"] == "query.since", error
        # Without the value: an error never quotes a value sent (a phone number typed there).
        assert error["message"].startswith("query.since: is no date or time; write e.g. 2026-06-01")
        assert number not in error["message"], error
        # The server's zone is a setting: the command line's --timezone is no part of an HTTP
        # request, and a client told of it had nothing to send.
        assert "--timezone" not in error["message"], error
        assert "the server's PAIDAN_TIMEZONE" in error["message"], error


def test_feedback_export_since_without_a_zone_is_in_paidan_timezone(
    make_client: Callable[..., TestClient],
) -> None:
    # A centre with PAIDAN_TIMEZONE=Asia/Shanghai exporting a day's decisions with
    # since=2026-12-07 got them from 08:00 Beijing time: the export read a bare time as UTC,
    # where `paidan drift --since`, which the docs say it reads as, reads it in PAIDAN_TIMEZONE.
    client = make_client(timezone="Asia/Shanghai")
    saved = client.post("/v1/feedback", json={"text": "某投诉", "department": "人社"})
    assert saved.status_code == 201
    created = datetime.fromisoformat(saved.json()["created_at"])
    beijing = created.astimezone(timezone(timedelta(hours=8))).replace(tzinfo=None)
    before, after = beijing - timedelta(minutes=5), beijing + timedelta(minutes=5)
    # Five minutes before the save in Beijing time; as UTC it would be 8 hours later.
    assert len(export(client, since=before.isoformat(timespec="seconds"))) == 1
    assert export(client, since=after.isoformat(timespec="seconds")) == []
    # A time with its zone is read as written.
    assert len(export(client, since=(created - timedelta(minutes=5)).isoformat())) == 1


def test_feedback_export_refuses_a_misspelt_or_repeated_since(client: TestClient) -> None:
    # ?sinse=… was ignored and the whole table exported, as if no time had been given; of two
    # since= the last was read, silently: an incremental export got rows it already had, or none.
    for i in range(2):
        saved = client.post("/v1/feedback", json={"text": f"某投诉{i}", "department": "人社"})
        assert saved.status_code == 201
    for query, field in (("sinse=2026-12-01", "query.sinse"), ("Since=2026-12-01", "query.Since")):
        error = assert_error(client.get(f"/v1/feedback?{query}"), 422, "invalid_request")
        assert error == {
            "code": "invalid_request",
            "message": f"{field}: is not a parameter of the export; it takes one, since",
            "field": field,
        }
    twice = client.get("/v1/feedback?since=2020-01-01&since=2999-01-01")
    assert assert_error(twice, 422, "invalid_request") == {
        "code": "invalid_request",
        "message": "query.since: is given 2 times; send it once",
        "field": "query.since",
    }
    assert len(client.get("/v1/feedback?since=2020-01-01").text.splitlines()) == 2
    # A cache-buster (jQuery's `cache: false` adds _=<time> to every GET) says nothing of the rows.
    busted = client.get("/v1/feedback?since=2020-01-01&_=1764986400000")
    assert busted.status_code == 200 and len(busted.text.splitlines()) == 2


def test_the_schema_lets_since_be_sent_as_the_export_reads_it(client: TestClient) -> None:
    # `since` was documented `format: date-time` (RFC 3339), though the export reads
    # 2026-12-01, 20261201 and 2026/12/1 8:00 as docs/api.md says: a request validator in front of
    # the API refused what the server takes, as the integer ids once were.
    rfc3339 = re.compile(
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", re.IGNORECASE
    )
    spec = client.get("/openapi.json").json()
    (since,) = spec["paths"]["/v1/feedback"]["get"]["parameters"]
    strings = [s for s in since["schema"]["anyOf"] if s.get("type") == "string"]
    assert strings, since
    for sent in ("2026-12-01T08:00:00+08:00", "2026-12-01", "20261201", "2026/12/1 8:00"):
        assert client.get("/v1/feedback", params={"since": sent}).status_code == 200, sent
        formats = {s.get("format") for s in strings}
        assert formats == {None} or (formats == {"date-time"} and rfc3339.match(sent)), sent


@pytest.mark.parametrize(
    ("path", "body", "query", "said"),
    [
        ("/v1/route", WAGE, "top_k=5", "send top_k in the JSON body"),
        ("/v1/route", WAGE, "masked=true", "send masked in the JSON body"),
        ("/v1/route/batch", {"items": [WAGE]}, "top_k=1", "send top_k in the JSON body"),
        (
            "/v1/feedback",
            {"text": "某投诉", "department": "人社"},
            "ticket_id=A-1",
            "send ticket_id in the JSON body",
        ),
        ("/v1/route", WAGE, "debug=1", "this request's fields go in its JSON body"),
    ],
)
def test_a_query_parameter_of_a_body_route_is_refused(
    client: TestClient, path: str, body: dict[str, Any], query: str, said: str
) -> None:
    # POST /v1/route?top_k=5 answered 3 candidates and ?masked=true no masked ticket, without a
    # word: the query was ignored, as the export's misspelt ?sinse= once was. Its field named.
    name = query.split("=")[0]
    error = assert_error(client.post(f"{path}?{query}", json=body), 422, "invalid_request")
    assert error["field"] == f"query.{name}", error
    assert error["message"] == (
        f"query.{name}: is not a parameter of POST {path}, which takes none; {said}"
    ), error
    assert client.post(path, json=body).status_code in (200, 201)
    assert client.get("/v1/feedback").text.count("某投诉") == (path == "/v1/feedback")


def test_feedback_export_pages_through_many_rows(
    client: TestClient, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("serve.routes.EXPORT_PAGE", 4)
    db: Database = app.state.db
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for i in range(11):  # three pages, rows sharing a timestamp across page boundaries
        db.add_feedback(
            text=f"t{i}", department="人社", created_at=start + timedelta(seconds=i // 3)
        )
    rows = export(client)
    assert [r["text"] for r in rows] == [f"t{i}" for i in range(11)]
    assert [
        r["text"] for r in export(client, since=(start + timedelta(seconds=2)).isoformat())
    ] == [f"t{i}" for i in range(6, 11)]


def test_a_blank_ticket_or_dispatcher_id_is_stored_as_none_sent(client: TestClient) -> None:
    # ticket_id "" was stored as "", where one not sent is null (a form's untouched input).
    for blank in ("", "  "):
        sent = {"text": "某投诉", "department": "人社", "ticket_id": blank, "dispatcher_id": blank}
        saved = client.post("/v1/feedback", json=sent)
        assert saved.status_code == 201, saved.text
        assert saved.json()["ticket_id"] is None and saved.json()["dispatcher_id"] is None
    assert [(r["ticket_id"], r["dispatcher_id"]) for r in export(client)] == [(None, None)] * 2


def test_feedback_is_stored_pii_masked(client: TestClient, app: Any) -> None:
    raw = "我叫李四，电话138-1234-5678，身份证110101199003071234，邮箱li4@example.com，工资被拖欠"
    suggestion = {"model_version": "v1", "note": "回电 13912345678"}
    r = client.post(
        "/v1/feedback",
        json={
            "id": "P-1",
            "title": "电话13812345678",
            "text": raw,
            "suggestion": suggestion,
            "department": "人社",
        },
    )
    assert r.status_code == 201, r.text
    db: Database = app.state.db
    with db.engine.connect() as conn:
        stored = conn.execute(text("SELECT title, text, suggestion FROM feedback")).one()
    dump = " ".join(str(v) for v in stored)
    for secret in ("1234-5678", "12345678", "110101199003071234", "li4@example.com", "13912345678"):
        assert secret not in dump, secret
    assert "[手机号]" in stored.text and "[身份证号]" in stored.text and "[邮箱]" in stored.text
    assert "拖欠" in stored.text
    [row] = export(client)
    assert row["ticket_id"] == "P-1" and row["model_version"] == "v1"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"text": "某投诉"}, "body.department"),
        ({"text": "某投诉", "department": ""}, "body.department"),
        ({"text": "某投诉", "department": " \u3000\n"}, "body.department"),
        ({"text": "某投诉", "department": "\u200b"}, "body.department"),
        # Retraining read each as a lead department "" (split_departments).
        ({"text": "某投诉", "department": "；"}, "body.department"),
        ({"text": "某投诉", "department": " ;; "}, "body.department"),
        ({"text": "某投诉", "department": "；\u200b；"}, "body.department"),
        ({"text": "某投诉", "department": "[]"}, "body.department"),
        ({"text": "某投诉", "department": '[""]'}, "body.department"),
        ({"text": "某投诉", "department": "人\x00社"}, "body.department"),
        ({"text": "某投诉", "department": "人社", "category": "劳动\x1b"}, "body.category"),
        ({"text": "某投诉", "department": "人社", "ticket_id": "P\x00"}, "body.ticket_id"),
        ({"text": "某投诉", "department": "人社", "dispatcher_id": "d\x07"}, "body.dispatcher_id"),
        ({"text": "某投诉", "department": "人社", "model_version": "v\x00"}, "body.model_version"),
        ({"department": "人社"}, "body.text"),
        ({"text": "  \u200b ", "department": "人社"}, "body.text"),
        (
            {"text": "某投诉", "department": "人社", "dispatcher_id": "x" * 101},
            "body.dispatcher_id",
        ),
        ({"text": "长" * 20_001, "department": "人社"}, "body.text"),
        ({"text": "某投诉", "department": "人社", "request_id": ""}, "body.request_id"),
        ({"text": "某投诉", "department": "人社", "request_id": "a" * 65}, "body.request_id"),
        ({"text": "某投诉", "department": "人社", "request_id": "a b"}, "body.request_id"),
        ({"text": "某投诉", "department": "人社", "request_id": "编号"}, "body.request_id"),
        ({"text": "某投诉", "department": "人社", "request_id": 7}, "body.request_id"),
    ],
)
def test_feedback_refuses_bad_input(
    client: TestClient, payload: dict[str, Any], field: str
) -> None:
    assert assert_error(client.post("/v1/feedback", json=payload), 422)["field"] == field


def test_a_save_sent_again_with_its_request_id_is_stored_once(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 503 at the commit (the watchdog cut a stalled COMMIT that the database then carried out)
    # told the page 没有保存, and the dispatcher's second save stored the decision twice: the
    # export and --if-new-feedback counted it twice.
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm import Session

    body = {
        "ticket_id": "A-1",
        "text": WAGE["text"],
        "department": "人社",
        "request_id": "0b7c6a1e-5d2f-4c1a-9e8b-3f2d1c0b9a87",
    }
    real_commit = Session.commit

    def committed_then_cut(self: Session) -> None:
        real_commit(self)  # the database carried the COMMIT out; its answer never came
        raise OperationalError("COMMIT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(Session, "commit", committed_then_cut)
    error = assert_error(client.post("/v1/feedback", json=body), 503, "database_unavailable")
    assert "same request_id" in error["message"]
    monkeypatch.undo()
    first = client.post("/v1/feedback", json=body)  # the dispatcher saves again
    assert first.status_code == 201, first.text
    again = client.post("/v1/feedback", json=body)  # and once more: the same answer
    assert again.status_code == 201 and again.json() == first.json()
    assert first.json()["request_id"] == body["request_id"]
    rows = export(client)
    assert [(r["ticket_id"], r["request_id"]) for r in rows] == [("A-1", body["request_id"])]
    # The id used for another decision is refused, not taken as the stored one.
    other = {**body, "department": "住建"}
    error = assert_error(client.post("/v1/feedback", json=other), 409, "request_id_conflict")
    assert error["field"] == "body.request_id"
    # Without a request_id every save is stored, as before; another id is another row.
    plain = {k: v for k, v in body.items() if k != "request_id"}
    for extra in ({"request_id": None}, {}, {"request_id": "second-decision"}):
        assert client.post("/v1/feedback", json={**plain, **extra}).status_code == 201
    assert len(export(client)) == 4


@pytest.mark.parametrize(
    ("first", "again"),
    [
        ("caf\u00e9-7", "cafe\u0301-7"),  # é as one code point, and e with a combining accent
        ("20261206001", "２０２６１２０６００１"),  # full-width digits
        ("20261206001", "20261206\u200b001"),  # a zero-width space
        ("20261206001", "\ufeff20261206001 "),  # a BOM and a trailing space
    ],
    ids=["nfd", "full-width", "zero-width-space", "bom-and-space"],
)
def test_a_save_sent_again_with_the_same_ticket_id_written_otherwise_is_the_same_decision(
    client: TestClient, first: str, again: str
) -> None:
    # The same ticket id written another way (a client that normalises its text to NFD, an input
    # method's full-width digits, a zero-width space pasted along) was "another ticket_id": the
    # repeated save was refused with 409 request_id_conflict.
    body = {
        "ticket_id": first,
        "dispatcher_id": first,
        "text": WAGE["text"],
        "department": "人社",
        "request_id": "same-decision-1",
    }
    stored = client.post("/v1/feedback", json=body)
    assert stored.status_code == 201, stored.text
    assert stored.json()["ticket_id"] == first  # echoed exactly as sent
    replayed = client.post(
        "/v1/feedback", json={**body, "ticket_id": again, "dispatcher_id": again}
    )
    assert replayed.status_code == 201, replayed.text
    assert replayed.json() == stored.json()
    # Sent as both names, it names one ticket; kept as sent under ticket_id.
    both = {k: v for k, v in body.items() if k != "request_id"}
    saved = client.post("/v1/feedback", json={**both, "ticket_id": again, "id": first})
    assert saved.status_code == 201, saved.text
    assert saved.json()["ticket_id"] == again
    rows = export(client)
    assert [r["ticket_id"] for r in rows] == [first, again]
    # Another ticket is still another decision.
    other = {**body, "ticket_id": first + "1"}
    assert_error(client.post("/v1/feedback", json=other), 409, "request_id_conflict")


def test_a_category_only_deployment_stores_feedback_without_a_department(
    make_client: Callable[..., TestClient], category_only_model_dir: Path, tmp_path: Path
) -> None:
    # FeedbackRequest.department was required: a category-only deployment could store no decision
    # at all, and the page answered every 采纳建议 with an English validation error.
    from model.tickets import read_tickets
    from tests.conftest import write_category_only_csv
    from training.retrain import feedback_frame

    client = make_client(
        model_dir=category_only_model_dir, model_root=category_only_model_dir.parent
    )
    shown = client.post("/v1/route", json=SMOKE).json()
    assert shown["department"] is None
    saved = []
    for i, extra in enumerate([{}, {"department": None}, {"department": " "}]):
        body = {"ticket_id": f"C-{i}", "text": SMOKE["text"], "suggestion": shown, **extra}
        r = client.post("/v1/feedback", json={**body, "category": "环境"})
        assert r.status_code == 201, r.text
        assert r.json()["department"] is None and r.json()["category"] == "环境"
        saved.append(r.json()["id"])
    # Without a department the category is the decision: one of the two is needed.
    error = assert_error(client.post("/v1/feedback", json={"text": "某投诉"}), 422)
    assert error["field"] == "body.category" and "no department head" in error["message"]
    assert error["message"].startswith("body.category: is missing;"), error
    # A department, when a client has one, is stored as before.
    r = client.post("/v1/feedback", json={"text": "某投诉", "department": "执法"})
    assert r.status_code == 201 and r.json()["department"] == "执法", r.text
    rows = export(client)
    assert [(row["department"], row["category"]) for row in rows] == [(None, "环境")] * 3 + [
        ("执法", None)
    ]
    # Retraining reads such a row as a history row whose department cell is empty.
    db: Database = client.app.state.db  # type: ignore[attr-defined]
    fb, _ = feedback_frame(row.to_dict() for row in db.iter_feedback())
    history = read_tickets([write_category_only_csv(tmp_path / "history.csv")])
    assert list(fb["department"][:3]) == [history["department"].iloc[0]] * 3 == [""] * 3
    assert list(fb["category"][:3]) == ["环境"] * 3
    # A model with a department head still needs one.
    error = assert_error(
        make_client().post("/v1/feedback", json={"text": "某投诉", "category": "环境"}), 422
    )
    assert error["field"] == "body.department" and "suggests departments" in error["message"]


@pytest.mark.parametrize(
    ("suggestion", "says"),
    [
        # The row's default model_version: PostgreSQL refused the NUL, answered as a 503.
        ({"model_version": "v\x00x"}, "model_version holds a control character (U+0000)"),
        ({"model_version": "v\x1b"}, "model_version holds a control character (U+001B)"),
        # Not JSON: PostgreSQL refused the column, answered as a 503 too.
        ({"department": {"score": float("nan")}}, "(nan) at department.score"),
        ({"similar": [{"similarity": 0.5}, {"similarity": float("-inf")}]}, "similar.1.similarity"),
        ({"x": float("inf")}, "(inf) at x"),
    ],
)
def test_feedback_refuses_a_suggestion_the_database_cannot_store(
    client: TestClient, suggestion: dict[str, Any], says: str
) -> None:
    body = {"text": "某投诉", "department": "人社", "suggestion": suggestion}
    response = client.post(  # json.dumps writes NaN and Infinity, as some clients do
        "/v1/feedback", content=json.dumps(body), headers={"content-type": "application/json"}
    )
    error = assert_error(response, 422, "invalid_request")
    assert error["field"] == "body.suggestion" and says in error["message"], error
    assert export(client) == []


def test_feedback_suggestion_is_stored_without_nul(client: TestClient) -> None:
    suggestion = {"note": "a\x00b", "k\x00": ["\x00"], "model_version": "v1"}
    r = client.post(
        "/v1/feedback", json={"text": "某投诉", "department": "人社", "suggestion": suggestion}
    )
    assert r.status_code == 201, r.text
    [row] = export(client)
    assert row["suggestion"] == {"note": "a b", "k ": [" "], "model_version": "v1"}


def test_feedback_department_and_category_are_stored_masked(client: TestClient, app: Any) -> None:
    # Stored and exported as sent, beside a title and text in which the same number was masked.
    body = {
        "ticket_id": "T1",
        "text": "请网格员张三处理",
        "department": "网格员张三13912345678",
        "category": "城乡建设 王五１３７００００１１１１",  # full-width digits, as an IME types them
        "request_id": "save-1",
    }
    r = client.post("/v1/feedback", json=body)
    assert r.status_code == 201, r.text
    assert (r.json()["department"], r.json()["category"]) == (
        "网格员张三[手机号]",
        "城乡建设 王五[手机号]",
    )
    db: Database = app.state.db
    with db.engine.connect() as conn:
        stored = conn.execute(text("SELECT department, category FROM feedback")).one()
    assert tuple(stored) == ("网格员张三[手机号]", "城乡建设 王五[手机号]")
    [row] = export(client)
    assert (row["department"], row["category"]) == tuple(stored)
    # The same save sent again with its request_id is the same decision: 201, stored once.
    again = client.post("/v1/feedback", json=body)
    assert again.status_code == 201, again.text
    assert len(export(client)) == 1
    # A label with nothing to mask keeps its exact spelling (its history's): not NFKC'd nor
    # lower-cased.
    r = client.post(
        "/v1/feedback", json={"text": "某投诉", "department": "市住建局（ABC）", "category": "Ｘ类"}
    )
    assert (r.json()["department"], r.json()["category"]) == ("市住建局（ABC）", "Ｘ类")


def test_feedback_suggestion_keys_are_stored_masked_and_none_is_lost(client: TestClient) -> None:
    # Values were masked, keys stored as sent: {"13812345678": "[手机号]"} in the database.
    suggestion = {
        "model_version": "v1",
        "Department": {"label": "人社"},  # nothing to mask: kept as written, case and all
        "contacts": {
            "13812345678": "甲",
            "13912345678": "乙",  # masks as the first does: stored beside it, not over it
            "[手机号] (2)": "丙",  # a key already written as a suffixed one
            "王五": {"手机１３７００００１１１１": 1},  # full-width digits
        },
    }
    r = client.post(
        "/v1/feedback", json={"text": "某投诉", "department": "人社", "suggestion": suggestion}
    )
    assert r.status_code == 201, r.text
    [row] = export(client)
    assert row["suggestion"] == {
        "model_version": "v1",
        "Department": {"label": "人社"},
        "contacts": {
            "[手机号]": "甲",
            "[手机号] (2)": "乙",
            "[手机号] (2) (2)": "丙",
            "王五": {"手机[手机号]": 1},
        },
    }


def test_feedback_stores_labels_trimmed_and_blank_optional_fields_as_absent(
    client: TestClient,
) -> None:
    r = client.post(
        "/v1/feedback",
        json={"text": "某投诉", "department": "\n人社局\t", "category": " \u3000", "title": " "},
    )
    assert r.status_code == 201, r.text
    assert r.json()["department"] == "人社局" and r.json()["category"] is None
    [row] = export(client)
    assert (row["department"], row["category"], row["title"]) == ("人社局", None, None)


def nested(depth: int) -> Any:
    """A JSON object ``depth`` levels deep: ``{"a": {"a": … 1}}``."""
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def test_feedback_refuses_a_suggestion_nested_too_deeply(client: TestClient) -> None:
    # 300 levels were stored (201), and then the export stopped at that row for good.
    for depth in (33, 300):
        error = assert_error(
            client.post(
                "/v1/feedback",
                json={"text": "某投诉", "department": "人社", "suggestion": nested(depth)},
            ),
            422,
            "invalid_request",
        )
        assert error["field"] == "body.suggestion" and "32 levels" in error["message"]
    ok = client.post(
        "/v1/feedback", json={"text": "某投诉", "department": "人社", "suggestion": nested(32)}
    )
    assert ok.status_code == 201, ok.text
    assert export(client)[0]["suggestion"] == nested(32)


def test_feedback_export_is_not_cut_by_an_unexportable_row(
    client: TestClient, app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    db: Database = app.state.db
    db.add_feedback(text="t0", department="人社", suggestion={"decision": "auto"})
    bad = db.add_feedback(text="t1", department="人社", suggestion=nested(300))
    db.add_feedback(text="t2", department="住建", suggestion={"decision": "review"})
    with caplog.at_level(logging.ERROR):
        rows = export(client)
    assert [r["text"] for r in rows] == ["t0", "t1", "t2"]
    assert rows[0]["suggestion"] == {"decision": "auto"}
    assert rows[2]["suggestion"] == {"decision": "review"}
    assert rows[1]["department"] == "人社" and rows[1]["id"] == bad.id
    assert set(rows[1]["suggestion"]) == {"export_error"}
    assert f"feedback row {bad.id}" in caplog.text
    validator = export_line_validator(client)
    for row in rows:
        validator.validate(row)


def test_an_export_cut_by_the_database_says_so_in_its_last_line_and_the_log(
    client: TestClient, app: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cut on a page boundary left only valid lines: a backup indistinguishable from a complete
    # one, and a log of "unhandled RuntimeError ... response already started".
    import serve.routes
    from serve.db import DatabaseUnavailable

    db: Database = app.state.db
    for i in range(3):
        db.add_feedback(text=f"t{i}", department="人社")
    monkeypatch.setattr(serve.routes, "EXPORT_PAGE", 2)
    real = db.feedback_page

    def dies_after_the_first_page(since: Any, after: Any, limit: int) -> Any:
        if after is not None:
            raise DatabaseUnavailable(
                'OperationalError: connection to server at "10.0.0.5", port 5432 failed: '
                "connection refused"
            )
        return real(since, after, limit)

    monkeypatch.setattr(db, "feedback_page", dies_after_the_first_page)
    with caplog.at_level(logging.WARNING):
        response = client.get("/v1/feedback")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [r["text"] for r in lines[:2]] == ["t0", "t1"]
    assert set(lines[2]) == {"export_error", "since"} and len(lines) == 3
    assert "incomplete" in lines[2]["export_error"] and "after 2 rows" in lines[2]["export_error"]
    assert "connection refused" in lines[2]["export_error"]
    # The line goes to the client: where the database is stays in the server's log.
    assert "10.0.0.5" not in lines[2]["export_error"] and "5432" not in lines[2]["export_error"]
    assert '"10.0.0.5", port 5432' in caplog.text
    assert lines[2]["since"] == lines[1]["created_at"]
    assert "feedback export stopped after 2 rows: the feedback database sqlite:///" in caplog.text
    assert "unhandled" not in caplog.text
    # The cut's line is one the published schema describes too.
    validator = export_line_validator(client)
    for line in lines:
        validator.validate(line)


@pytest.mark.parametrize(
    "sent",
    [
        "市住建局\u200b",
        "\ufeff市住建局",
        "市住\u00ad建局",
        "市住建局\u202c",
        "\u2066市住\u200d建局\u2069",
    ],
)
def test_feedback_labels_lose_invisible_characters(client: TestClient, sent: str) -> None:
    # Stored verbatim, each was a department of its own at retraining (merged into 其他).
    category = sent.replace("市住", "城").replace("建局", "建")  # the same characters around 城建
    r = client.post(
        "/v1/feedback",
        json={"text": "某投诉", "department": sent, "category": category},
    )
    assert r.status_code == 201, r.text
    assert (r.json()["department"], r.json()["category"]) == ("市住建局", "城建")
    [row] = export(client)
    assert (row["department"], row["category"]) == ("市住建局", "城建")


def test_feedback_labels_keep_their_written_form(client: TestClient) -> None:
    # Training reads the history's labels as written: no NFKC (（ to (, ； to ;) or lower-casing.
    label = "市残联；市住建局（人防办）ABC"
    r = client.post("/v1/feedback", json={"text": "某投诉", "department": label})
    assert r.status_code == 201, r.text
    assert r.json()["department"] == label


def test_sqlite_is_durable_and_migrated(app: Any) -> None:
    db: Database = app.state.db
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0003"
    db.ensure_schema()  # idempotent


# -- a dead database -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////proc/paidan-no-such-dir/paidan.db",
        "postgresql+psycopg://paidan:secret-pw@127.0.0.1:1/paidan",
    ],
    ids=["sqlite-unopenable", "postgres-refused"],
)
def test_dead_database_routing_works_feedback_503(
    make_client: Callable[..., TestClient], url: str
) -> None:
    client = make_client(database_url=url)
    assert client.post("/v1/route", json=WAGE).status_code == 200
    error = assert_error(
        client.post("/v1/feedback", json={"text": "某投诉", "department": "人社"}),
        503,
        "database_unavailable",
    )
    assert "routing still works" in error["message"]
    assert_error(client.get("/v1/feedback"), 503, "database_unavailable")
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "degraded"
    assert body["database"]["ok"] is False and body["database"]["reason"]
    assert "secret-pw" not in ready.text and "secret-pw" not in error["message"]


def test_a_downgrade_under_a_running_server_is_said_by_saves_and_readyz(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    # `paidan db downgrade 0001` while a server still ran on the database (an administrator's
    # slip): every save answered 503 "…(UndefinedColumn: column feedback.request_id does not
    # exist); … retry the feedback later", which retrying never fixed, while /readyz said
    # ready, database ok, until the server was restarted.
    import serve.db

    url = f"sqlite:///{tmp_path / 'paidan.db'}"
    client = make_client(database_url=url)
    saved = client.post("/v1/feedback", json={"text": "某投诉", "department": "人社"})
    assert saved.status_code == 201
    assert client.get("/readyz").json()["status"] == "ready"
    assert serve.db.downgrade(url, "0001") == "0003"
    for answer in (
        client.post("/v1/feedback", json={"text": "某投诉", "department": "人社"}),
        client.post(
            "/v1/feedback", json={"text": "某投诉", "department": "人社", "request_id": "r-1"}
        ),
        client.get("/v1/feedback"),
    ):
        error = assert_error(answer, 503, "database_schema_mismatch")
        message = error["message"]
        assert message.startswith(
            "the feedback database's schema is at revision 0001, older than the 0003 this "
            "paidan needs (taken back with `paidan db downgrade` while this server ran?)"
        ), message
        assert "`paidan db upgrade`" in message and "restarting this server" in message
        assert "routing still works" in message and "retry" not in message
        assert "request_id" not in message and "column" not in message  # no SQL's words
    ready = client.get("/readyz").json()
    assert ready["status"] == "degraded"
    assert ready["database"]["ok"] is False
    assert ready["database"]["reason"].startswith("the feedback database's schema is at revision")
    serve.db.upgrade(url)  # `paidan db upgrade`: works again without a restart
    assert client.get("/readyz").json()["status"] == "ready"
    again = client.post("/v1/feedback", json={"text": "某投诉", "department": "人社"})
    assert again.status_code == 201


def test_readyz_stays_ready_when_a_newer_paidan_migrates_the_database_in_a_rolling_upgrade(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    # A newer paidan's additive revision applied while this server ran: its saves and export kept
    # working (201, 200), but /readyz said degraded, advising to restore a backup.
    import sqlite3

    url = f"sqlite:///{tmp_path / 'paidan.db'}"
    client = make_client(database_url=url)
    assert (
        client.post("/v1/feedback", json={"text": "某投诉", "department": "人社"}).status_code
        == 201
    )
    conn = sqlite3.connect(tmp_path / "paidan.db")
    try:
        with conn:  # what a newer paidan's 0004 would do
            conn.execute("ALTER TABLE feedback ADD COLUMN channel TEXT")
            conn.execute("UPDATE alembic_version SET version_num = '0004'")
    finally:
        conn.close()
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready", ready
    assert ready["database"]["ok"] is True
    assert "'0004', which this paidan does not know" in ready["database"]["note"]
    assert (
        client.post("/v1/feedback", json={"text": "某投诉", "department": "人社"}).status_code
        == 201
    )
    assert client.get("/v1/feedback").status_code == 200


def test_readyz_is_degraded_when_a_newer_paidan_renamed_a_column_this_server_writes(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    # A newer paidan's revision that renames a column the older server writes: every save of the
    # older server answers 503, but /readyz said ready, so the load balancer kept it in rotation,
    # and the 503 advised restoring the database from a backup (the newer servers work on it).
    import sqlite3

    url = f"sqlite:///{tmp_path / 'paidan.db'}"
    client = make_client(database_url=url)
    assert (
        client.post("/v1/feedback", json={"text": "某投诉", "department": "人社"}).status_code
        == 201
    )
    conn = sqlite3.connect(tmp_path / "paidan.db")
    try:
        with conn:  # what a newer paidan's 0004 would do
            conn.execute("DROP INDEX ix_feedback_request_id")
            conn.execute("ALTER TABLE feedback RENAME COLUMN request_id TO client_request_id")
            conn.execute("UPDATE alembic_version SET version_num = '0004'")
    finally:
        conn.close()
    ready = client.get("/readyz").json()
    assert ready["status"] == "degraded", ready
    assert "'0004', which this paidan does not know" in ready["database"]["reason"]
    assert "upgrade this server to the newer paidan" in ready["database"]["reason"]
    saved = client.post("/v1/feedback", json={"text": "某投诉", "department": "人社"})
    assert saved.status_code == 503
    message = saved.json()["error"]["message"]
    assert "upgrade this server to the newer paidan" in message, message
    assert "backup" not in message, message


def test_readyz_is_degraded_when_a_newer_paidan_added_a_column_saves_must_fill(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    # A newer paidan's revision that adds a NOT NULL column without a default (a table rebuilt,
    # as Alembic's batch mode does on SQLite): every save of the older server broke the
    # constraint and answered 503 "temporarily unavailable, retry", while /readyz said ready.
    import sqlite3

    url = f"sqlite:///{tmp_path / 'paidan.db'}"
    client = make_client(database_url=url)
    assert (
        client.post("/v1/feedback", json={"text": "某投诉", "department": "人社"}).status_code
        == 201
    )
    conn = sqlite3.connect(tmp_path / "paidan.db")
    try:
        with conn:  # what a newer paidan's 0004 would do
            (sql,) = conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'feedback'"
            ).fetchone()
            indexes = [
                row[0]
                for row in conn.execute(
                    "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'feedback' "
                    "AND sql IS NOT NULL"
                )
            ]
            # Quoted once batch mode copied the table (revision 0003 on SQLite).
            rebuilt = re.sub(r'^CREATE TABLE "?feedback"?', "CREATE TABLE feedback_new", sql)
            assert "\n\tPRIMARY KEY" in rebuilt, rebuilt  # columns come before constraints
            rebuilt = rebuilt.replace("\n\tPRIMARY KEY", "\n\tchannel TEXT NOT NULL, PRIMARY KEY")
            conn.execute(rebuilt)
            conn.execute("INSERT INTO feedback_new SELECT *, 'phone' FROM feedback")
            conn.execute("DROP TABLE feedback")
            conn.execute("ALTER TABLE feedback_new RENAME TO feedback")
            for index in indexes:
                conn.execute(index)
            conn.execute("UPDATE alembic_version SET version_num = '0004'")
    finally:
        conn.close()
    ready = client.get("/readyz").json()
    assert ready["status"] == "degraded", ready
    reason = ready["database"]["reason"]
    assert "'0004', which this paidan does not know" in reason, reason
    assert "'channel'" in reason and "upgrade this server to the newer paidan" in reason, reason
    # Only the saves fail: saying the export fails too sent administrators to stop a working
    # nightly export.
    assert "cannot save feedback (its export still works)" in reason, reason
    assert "or export" not in reason, reason
    saved = client.post("/v1/feedback", json={"text": "某投诉", "department": "人社"})
    error = assert_error(saved, 503, "database_schema_mismatch")
    assert "upgrade this server to the newer paidan" in error["message"], error
    assert "its export still works" in error["message"], error
    assert "or export" not in error["message"], error
    assert "retry" not in error["message"] and "Retry-After" not in saved.headers
    assert client.get("/v1/feedback").status_code == 200  # the export reads only its columns


def test_readyz_stays_ready_when_a_newer_paidans_required_column_has_a_default(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    import sqlite3

    url = f"sqlite:///{tmp_path / 'paidan.db'}"
    client = make_client(database_url=url)
    assert client.get("/readyz").json()["status"] == "ready"
    conn = sqlite3.connect(tmp_path / "paidan.db")
    try:
        with conn:
            conn.execute("ALTER TABLE feedback ADD COLUMN channel TEXT NOT NULL DEFAULT 'web'")
            conn.execute("UPDATE alembic_version SET version_num = '0004'")
    finally:
        conn.close()
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready", ready
    assert (
        client.post("/v1/feedback", json={"text": "某投诉", "department": "人社"}).status_code
        == 201
    )


# -- metrics -----------------------------------------------------------------------------------------
def test_a_probe_with_a_trailing_slash_is_counted_under_its_route(client: TestClient) -> None:
    # /healthz/ is answered as /healthz; it was counted as "unmatched", where a probe or scrape
    # configured with the slash filled the series of paths that match no route with its 200s.
    client.get("/healthz/")
    client.head("/readyz/")
    text = client.get("/metrics").text
    assert 'paidan_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
    assert 'paidan_http_requests_total{method="HEAD",route="/readyz",status="200"} 1.0' in text
    assert 'route="unmatched"' not in text


def test_metrics_count_requests_predictions_and_review_share(client: TestClient) -> None:
    client.post("/v1/route", json=WAGE)
    client.post("/v1/route", json=SMOKE)
    client.post("/v1/route", json={"text": "zzzz qqqq"})  # no known terms: review
    client.post("/v1/route/batch", json={"items": [WAGE]})
    client.post("/v1/route", json={"text": ""})
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    lines = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.text.splitlines()
        if line and not line.startswith("#")
    }
    assert lines['paidan_http_requests_total{method="POST",route="/v1/route",status="200"}'] == 3
    assert lines['paidan_http_requests_total{method="POST",route="/v1/route",status="422"}'] == 1
    assert (
        lines['paidan_http_requests_total{method="POST",route="/v1/route/batch",status="200"}'] == 1
    )
    assert lines['paidan_http_request_duration_seconds_count{method="POST",route="/v1/route"}'] == 4
    assert lines['paidan_predictions_total{department="人社"}'] == 2
    assert lines['paidan_predictions_total{department="执法"}'] == 1
    auto = lines.get('paidan_route_decisions_total{decision="auto"}', 0.0)
    review = lines['paidan_route_decisions_total{decision="review"}']
    assert auto + review == 4 and review >= 1
    assert lines["paidan_review_share"] == pytest.approx(review / 4)


def test_a_route_request_whose_client_left_is_counted_as_499_not_as_routed(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    # uvicorn does not cancel a request whose client has gone: its ticket was predicted and
    # counted as routed, and the request as a 200 nobody received.
    body = json.dumps(WAGE).encode()
    with caplog.at_level(logging.INFO, logger="serve.access"):
        sent = call_with_messages(
            client,
            "/v1/route",
            [
                {"type": "http.request", "body": body, "more_body": False},
                {"type": "http.disconnect"},
            ],
        )
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 499
    assert json.loads(sent[1]["body"])["error"]["code"] == "client_closed_request"
    [line] = [r.getMessage() for r in caplog.records if r.name == "serve.access"]
    assert '"POST /v1/route HTTP/1.1" 499' in line
    text = client.get("/metrics").text
    assert 'paidan_http_requests_total{method="POST",route="/v1/route",status="499"} 1.0' in text
    assert 'route="/v1/route",status="200"' not in text
    assert "paidan_route_decisions_total{" not in text  # nothing routed
    assert "paidan_review_share 0.0" in text
    # A client that stays is answered as before.
    assert client.post("/v1/route", json=WAGE).status_code == 200


@pytest.mark.parametrize("path", ["/v1/route", "/v1/route/batch", "/v1/feedback"])
@pytest.mark.parametrize("length", ["declared", "chunked"])
def test_a_client_that_left_mid_body_is_counted_as_499_not_as_a_bad_request(
    client: TestClient, caplog: pytest.LogCaptureFixture, path: str, length: str
) -> None:
    # FastAPI turns Starlette's ClientDisconnect into a 400 "error parsing the body": logged and
    # counted as malformed JSON that no client sent.
    body = json.dumps({"text": "小区楼下烧烤店油烟很大" * 100}).encode()
    half = {"type": "http.request", "body": body[: len(body) // 2], "more_body": True}
    with caplog.at_level(logging.INFO, logger="serve.access"):
        sent = call_with_messages(
            client,
            path,
            [half, {"type": "http.disconnect"}],
            length=len(body) if length == "declared" else -1,
        )
    assert sent[0]["status"] == 499, sent
    assert json.loads(sent[1]["body"])["error"]["code"] == "client_closed_request"
    [line] = [r.getMessage() for r in caplog.records if r.name == "serve.access"]
    assert f'"POST {path} HTTP/1.1" 499' in line
    text = client.get("/metrics").text
    assert f'paidan_http_requests_total{{method="POST",route="{path}",status="499"}} 1.0' in text
    assert 'status="400"' not in text


def test_metrics_and_access_log_see_each_request_once(
    make_client: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    def access_lines(client: TestClient) -> list[str]:
        with caplog.at_level(logging.INFO, logger="serve.access"):
            caplog.clear()
            client.post("/v1/route", json=WAGE)
            client.get("/v1/tickets/13812345678")  # 404: no route template
        return [r.getMessage() for r in caplog.records if r.name == "serve.access"]

    logged = make_client()
    lines = access_lines(logged)
    assert len(lines) == 2, lines
    assert '"POST /v1/route HTTP/1.1" 200' in lines[0]
    assert '"GET /v1/tickets/[手机号] HTTP/1.1" 404' in lines[1]
    quiet = make_client(access_log=False)
    assert access_lines(quiet) == []
    for client in (logged, quiet):  # metrics are counted with the access log on or off
        text = client.get("/metrics").text
        assert (
            'paidan_http_requests_total{method="POST",route="/v1/route",status="200"} 1.0' in text
        )
        assert 'paidan_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text


def test_every_answer_carries_a_request_id_that_the_access_log_names(
    make_client: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()
    # No answer named its request: a client's report of a failed call (a 422 from a batch job, a
    # 503 at night) could not be matched with the server's access log line.
    with caplog.at_level(logging.INFO, logger="serve.access"):
        caplog.clear()
        routed = client.post("/v1/route", json=WAGE, headers={"X-Request-ID": "a1b2-C3.d4:e5"})
        refused = client.post("/v1/route", json={"txt": "x"}, headers={"x-request-id": "job-9/2"})
        lost = client.get("/v1/nowhere")
        unsafe = [
            client.get("/healthz", headers={"X-Request-ID": sent})
            for sent in ('a b"c', "13812345678", "x" * 129)
        ]
    assert routed.status_code == 200 and routed.headers["X-Request-ID"] == "a1b2-C3.d4:e5"
    assert refused.status_code == 422 and refused.headers["X-Request-ID"] == "job-9/2"
    # None sent, or one that would break a log line or put a phone number in it: a new one.
    made = [lost.headers["X-Request-ID"]] + [a.headers["X-Request-ID"] for a in unsafe]
    assert all(re.fullmatch("[0-9a-f]{32}", m) for m in made), made
    assert len(set(made)) == len(made)
    lines = [r.getMessage() for r in caplog.records if r.name == "serve.access"]
    ids = ["a1b2-C3.d4:e5", "job-9/2", *made]
    assert len(lines) == len(ids), lines
    for line, request_id in zip(lines, ids, strict=True):
        assert line.endswith(f" request_id={request_id}"), (line, request_id)
    assert "13812345678" not in caplog.text
    # A page on another origin may send one and read it.
    cors = make_client(cors_origins=("https://desk.example",))
    preflight = {
        "Origin": "https://desk.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, x-request-id",
    }
    assert cors.options("/v1/route", headers=preflight).status_code == 200
    answer = cors.get("/healthz", headers={"Origin": "https://desk.example"})
    assert "X-Request-ID" in answer.headers["Access-Control-Expose-Headers"]


def test_metrics_count_methods_the_app_does_not_serve_as_other(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    # Any method httptools accepts (35) was a label value of its own: 455 unauthenticated requests
    # with PROPFIND, MKCALENDAR, M-SEARCH… took /metrics from 19 series to 8,191.
    with caplog.at_level(logging.INFO, logger="serve.access"):
        for method in ("PROPFIND", "MKCALENDAR", "M-SEARCH", "PUT", "DELETE", "TRACE"):
            for path in ("/v1/route", "/healthz", "/no/such/path"):
                assert client.request(method, path).status_code in (404, 405), (method, path)
    assert client.get("/healthz").status_code == 200
    text = client.get("/metrics").text
    samples = [line for line in text.splitlines() if line.startswith("paidan_http_")]
    methods = {line.split('method="', 1)[1].split('"', 1)[0] for line in samples}
    assert methods == {"GET", "other"}, methods
    assert 'paidan_http_requests_total{method="other",route="/v1/route",status="405"} 6.0' in text
    assert 'paidan_http_requests_total{method="other",route="unmatched",status="404"} 6.0' in text
    # The access log keeps the method as sent.
    assert '"PROPFIND /v1/route HTTP/1.1" 405' in caplog.text


def test_every_method_the_app_serves_has_a_label_of_its_own(app: Any) -> None:
    # A route of a new method (PUT, DELETE) would be counted as "other" until it is added here.
    from serve.telemetry import SERVED_METHODS, _routes

    served = set()
    for route in _routes(app.routes):
        served |= set(getattr(getattr(route, "original_route", route), "methods", None) or ())
    assert served and served <= SERVED_METHODS, served - SERVED_METHODS
    assert "OPTIONS" in SERVED_METHODS  # CORS preflights


def test_metrics_count_a_body_refused_before_routing_under_its_route(
    make_client: Callable[..., TestClient],
) -> None:
    # The body limit answers 413 before the router puts the route in the request, so these were
    # all counted under "unmatched", whichever endpoint was sent the bodies.
    client = make_client(max_body_bytes=1024)
    big = json.dumps({"items": [{"text": "x" * 2048}]}).encode()
    headers = {"content-type": "application/json"}
    assert client.post("/v1/route/batch", content=big, headers=headers).status_code == 413
    # Without a Content-Length (chunked), refused while it is read.
    assert client.post("/v1/route", content=iter([big]), headers=headers).status_code == 413
    assert client.put("/v1/route", content=big, headers=headers).status_code == 413  # 405 route
    assert client.post("/v1/nothing", content=big, headers=headers).status_code == 413
    text = client.get("/metrics").text
    for route, method in (
        ("/v1/route/batch", "POST"),
        ("/v1/route", "POST"),
        ("/v1/route", "other"),  # a method the app does not serve (see the next test)
        ("unmatched", "POST"),
    ):
        sample = f'paidan_http_requests_total{{method="{method}",route="{route}",status="413"}} 1.0'
        assert sample in text, (route, method)
    # A CORS preflight, answered by its middleware, too.
    cors = make_client(cors_origins=("https://desk.example",))
    preflight = {"Origin": "https://desk.example", "Access-Control-Request-Method": "POST"}
    assert cors.options("/v1/route", headers=preflight).status_code == 200
    sample = 'paidan_http_requests_total{method="OPTIONS",route="/v1/route",status="200"} 1.0'
    assert sample in cors.get("/metrics").text


def test_a_required_field_sent_under_another_name_is_said_with_that_name(
    client: TestClient,
) -> None:
    # {"txt": …} was "body.text: is required (and 1 more problem)": the other problem, the key the
    # client did send, went unsaid.
    error = assert_error(client.post("/v1/route", json={"txt": "油烟扰民"}), 422)
    assert error["field"] == "body.text"
    assert error["message"] == (
        "body.text: is required; body.txt is not a known field (is body.txt text?)"
    )
    # Named as an export names it, the text is asked about too.
    error = assert_error(
        client.post("/v1/route", json={"标题": "油烟", "诉求内容": "油烟扰民"}), 422
    )
    assert error["message"] == (
        "body.text: is required; body.标题, body.诉求内容 are not known fields (is body.诉求内容 text?)"
    )
    error = assert_error(client.post("/v1/route/batch", json={"tickets": [SMOKE]}), 422)
    assert error["message"] == "body.items: is required; body.tickets is not a known field"
    response = client.post(
        "/v1/route/batch", json={"items": [{"Text": "噪音", "titel": "x", "手机13812345678": 1}]}
    )
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    assert result["error"]["message"] == (
        "item 0: text: is required; Text, titel, 手机[手机号] are not known fields (is Text text?)"
    )
    # Other problems are still counted, and an unknown key beside no missing field is said alone.
    error = assert_error(client.post("/v1/route", json={"txt": "油烟", "top_k": "x"}), 422)
    assert error["message"].endswith("(is body.txt text?) (and 1 more problem: body.top_k)"), error
    error = assert_error(client.post("/v1/route", json={"text": "油烟", "txt": "油烟"}), 422)
    assert error["message"] == (
        "body.txt: is not a known field (this body takes id, title, text, top_k, masked)"
    )


def test_an_unknown_key_is_said_with_the_keys_the_body_takes(client: TestClient) -> None:
    # {"modl_dir": "v2"} to the admin reload was "body.modl_dir: is not a known field", which
    # named neither model_dir nor any other key the endpoint takes.
    response = client.post("/v1/admin/reload", json={"modl_dir": "v2"})
    assert assert_error(response, 422, "invalid_request") == {
        "code": "invalid_request",
        "message": "body.modl_dir: is not a known field (this body takes model_dir)",
        "field": "body.modl_dir",
    }
    error = assert_error(client.post("/v1/route", json={"text": "油烟", "Top_k": 3}), 422)
    assert error["message"] == (
        "body.Top_k: is not a known field (this body takes id, title, text, top_k, masked)"
    )
    # The feedback body's ticket_id is sent as id too: it was listed as ticket_id alone.
    body = {"text": "油烟", "department": "执法", "tickt": "A1"}
    error = assert_error(client.post("/v1/feedback", json=body), 422)
    assert error["message"] == (
        "body.tickt: is not a known field (this body takes ticket_id (or id), title, text, "
        "suggestion, department, category, dispatcher_id, model_version, request_id)"
    )
    # An unknown key in a batch item named no key an item takes, though the body's did.
    response = client.post("/v1/route/batch", json={"items": [{"text": "油烟", "tilte": "x"}]})
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    assert result["error"] == {
        "code": "invalid_item",
        "message": "item 0: tilte: is not a known field (an item takes id, title, text, top_k, masked)",
        "field": "items.0.tilte",
    }
    # Two unknown keys: the first is the error, the other counted, as before.
    error = assert_error(client.post("/v1/admin/reload", json={"a": 1, "b": 2}), 422)
    assert error["message"] == (
        "body.a: is not a known field (this body takes model_dir) (and 1 more problem: body.b)"
    )


def test_a_422_counts_the_problems_after_the_first_in_the_singular_and_plural() -> None:
    from serve.errors import first_validation_error

    missing = {"type": "missing", "loc": ("body", "text")}
    assert first_validation_error([missing] * 2)[0] == "body.text: is required (and 1 more problem)"
    assert first_validation_error([missing] * 3)[0].endswith("(and 2 more problems)")
    # The others' fields are named, so that a client fixes them all at once.
    top_k = {"type": "less_than_equal", "loc": ("body", "top_k"), "msg": "x"}
    nested = {"type": "string_type", "loc": ("body", "suggestion", "手机13812345678")}
    message = first_validation_error([missing, top_k, nested, top_k])[0]
    assert message == (
        "body.text: is required (and 3 more problems: body.top_k, body.suggestion.手机[手机号])"
    ), message


def test_model_info_lists_the_departments_a_joint_dispatch_may_add(
    tmp_path: Path, tiny_config: Any, make_client: Callable[..., TestClient]
) -> None:
    # 残联 and 街道办 were only ever co-departments in the history (住建 led): the department head
    # never learnt them, so the page's 「加入会办部门」 list (GET /v1/model's department labels)
    # could not add the very departments the advice names.
    from tests.training.test_joint import write_joint_csv
    from training.train import train

    model_dir = tmp_path / "models" / "joint"
    train([write_joint_csv(tmp_path / "joint.csv")], model_dir, config=tiny_config)
    client = make_client(model_root=model_dir.parent, model_dir=model_dir)
    info = client.get("/v1/model").json()
    assert info["labels"]["department"] == ["人社", "住建", "执法"]
    assert info["co_departments"] == ["人社", "住建", "执法", "残联", "街道办"]


def test_model_info_co_departments_are_the_learnt_ones_without_joint_history(
    client: TestClient,
) -> None:
    assert client.get("/v1/model").json()["co_departments"] == ["人社", "住建", "执法"]
