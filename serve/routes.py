"""The HTTP API under ``/v1`` plus the health probes and ``/metrics``.

Prediction is CPU work and never runs on the event loop: ``/v1/route`` hands the ticket to the
micro-batcher (:mod:`serve.batcher`), which predicts in the threadpool, and the other routes that
predict are plain ``def``, which FastAPI runs in its threadpool. Routes validate, call
:meth:`model.router.Router.predict` and shape.
"""

# No ``from __future__ import annotations``: the request bodies are built per app (their limits come
# from the settings), and FastAPI must see the real classes in the closures' signatures.

import functools
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, cast
from zoneinfo import ZoneInfo

import anyio
from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import (
    BaseModel,
    BeforeValidator,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)
from pydantic.json_schema import models_json_schema

from model.router import RouteResult, shown_threshold
from model.text import Script, clean, counted, id_key, ticket_simplified
from model.tickets import (
    JOINT_JOINER,
    LIST_COMMAS,
    comma_listed,
    joint_departments,
    split_departments,
)
from serve.auth import FEEDBACK_KEY, ROUTE_KEY
from serve.batcher import ClientLeft, trim
from serve.body import BatchBodyRoute, JsonBodyRoute, RepeatedKeyItem
from serve.db import (
    EXPORT_PAGE,
    MAX_DEPARTMENTS_CHARS,
    DatabaseUnavailable,
    Feedback,
    describe_url,
    mask_json,
    without_where,
)
from serve.deps import (
    DatabaseDep,
    MetadataDep,
    MetricsDep,
    RouterDep,
    ServicesDep,
    SettingsDep,
)
from serve.errors import (
    ApiError,
    StreamAborted,
    client_left,
    first_validation_error,
    json_kind,
    masked,
    model_keys,
    quoted,
)
from serve.head import HeadAnsweringRouter
from serve.schemas import (
    MAX_ID_CHARS,
    MAX_LABEL_CHARS,
    MAX_SUGGESTION_CHARS,
    NO_DEPARTMENT,
    TOO_LARGE_SUGGESTION,
    ErrorBody,
    ErrorResponse,
    ExportIncomplete,
    FeedbackRecord,
    FeedbackRequestBase,
    FeedbackResponse,
    Health,
    ModelInfo,
    Readiness,
    RequestModels,
    RouteBatchItem,
    RouteBatchRequest,
    RouteBatchResponse,
    RouteRequestBase,
    RouteResponse,
    integer_as_text,
    keys_of,
    scrub_surrogates,
)

logger = logging.getLogger(__name__)

JSONL_MEDIA_TYPE = "application/x-ndjson"
# Where the OpenAPI document keeps a model's schema, as FastAPI names it.
COMPONENT_REF = "#/components/schemas/{model}"
# Key of the note that replaces a stored suggestion the export cannot write (see _export_line).
EXPORT_ERROR_KEY = "export_error"


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse} for code in codes}


# What a route with a JSON body may answer: 400 (not JSON), 413 (too large) and 415 (not sent as
# JSON) only a body can meet, so a route without one does not list them.
ERRORS = _errors(400, 413, 415, 422, 500, 503)
# A route without a body (GET /v1/model, /readyz) answers these alone: before a model is loaded, a
# 503.
SERVER_ERRORS = _errors(500, 503)
# Endpoints behind an API key (serve/auth.py) may also answer 401 and 403.
KEY_ERRORS = _errors(401, 403)
AUTH_ERRORS = {**ERRORS, **KEY_ERRORS}
# The export: a key, and a query that may be refused (422); no body.
EXPORT_ERRORS = {**KEY_ERRORS, **_errors(422), **SERVER_ERRORS}
# Feedback's 503 when its database cannot take the request says how long to wait
# (serve.errors, database_unavailable), as the dispatcher's page does.
FEEDBACK_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {
        "model": ErrorResponse,
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before sending again, when the feedback "
                "database is unavailable (code database_unavailable)",
                "schema": {"type": "integer"},
            }
        },
    }
}


def api_router(models: RequestModels, route_needs_key: bool = True) -> APIRouter:
    """All routes, with request bodies carrying this app's limits.

    ``route_needs_key``: whether the routing endpoints check an API key (see
    :func:`serve.auth.route_needs_key`). Where no key could be refused they skip the check and
    document no 401/403: the check is three dependencies, and FastAPI's cost of solving them is a
    measurable share of a routing request (``benchmarks/README.md``).
    """
    api = HeadAnsweringRouter(route_class=JsonBodyRoute)  # a key written twice is refused
    RouteRequest = models.route
    BatchRequest = models.batch
    FeedbackRequest = models.feedback
    route_guard = [ROUTE_KEY] if route_needs_key else []
    route_errors = AUTH_ERRORS if route_needs_key else ERRORS

    @api.post(
        "/v1/route",
        response_model=RouteResponse,
        responses=route_errors,
        tags=["route"],
        dependencies=route_guard,
    )
    async def route(
        body: RouteRequest,  # type: ignore[valid-type]  # built per app
        router: RouterDep,
        services: ServicesDep,
        request: Request,
    ) -> Response:
        """Suggest a department and a category for one ticket, with evidence and similar tickets."""
        # async only to await the batcher: prediction itself runs in the threadpool, batched with
        # concurrent requests (see serve.batcher).
        body = cast(RouteRequestBase, body)
        _no_query(request, RouteRequest, "POST /v1/route")
        start = time.perf_counter()
        try:
            result = await services.batcher.predict(
                router,
                (body.title or "", body.text),
                body.top_k or services.settings.top_k,
                receive=request.receive,
                masked=body.masked,
            )
        except ClientLeft:
            # Nobody reads this answer: it is for the access log and the metrics, as nginx's 499.
            raise client_left() from None
        services.metrics.observe_results([result])
        return _written(_response(result, body, router.config.script, start))

    def route_batch(
        body: BatchRequest,  # type: ignore[valid-type]  # built per app
        router: RouterDep,
        services: ServicesDep,
        request: Request,
    ) -> Response:
        """Route up to `max_batch` tickets; results come back in input order, a bad item gets its own error."""
        body = cast(RouteBatchRequest, body)
        _no_query(request, BatchRequest, "POST /v1/route/batch")
        start = time.perf_counter()
        settings, metrics = services.settings, services.metrics
        if len(body.items) > settings.max_batch:
            raise ApiError(
                413,
                "batch_too_large",
                f"the batch holds {len(body.items):,} items; at most {settings.max_batch:,} are "
                "accepted per request",
                "body.items",
            )
        outcomes: list[RouteBatchItem] = []
        valid: list[tuple[int, RouteRequestBase]] = []
        item_keys = model_keys(RouteRequest)  # named after an unknown key, as the body's are
        for i, item in enumerate(body.items):
            if isinstance(item, RepeatedKeyItem):  # see serve.body
                said, where = item.error(i)
                outcomes.append(
                    RouteBatchItem(
                        index=i,
                        # Of an id written twice, neither is sure to be the ticket's.
                        id=None if item.key == "id" and not item.path else _item_id(item.item),
                        error=ErrorBody(code="invalid_item", message=said, field=where),
                    )
                )
                continue
            if not isinstance(item, dict):
                outcomes.append(
                    RouteBatchItem(
                        index=i,
                        error=ErrorBody(
                            code="invalid_item",
                            message=f"item {i}: must be a JSON object shaped like the body of "
                            f'POST /v1/route, such as {{"text": "…"}}, not {json_kind(item)}',
                            field=f"items.{i}",
                        ),
                    )
                )
                continue
            try:
                req = RouteRequest.model_validate(item)
            except Exception as e:  # one item must not sink the batch's others
                if isinstance(e, ValidationError):
                    message, field = first_validation_error(
                        list(e.errors()), prefix_body=False, body_fields=item_keys
                    )
                else:  # a bug: logged, by type only (the message may quote the ticket)
                    logger.error("batch item %d could not be checked (%s)", i, type(e).__name__)
                    message, field = f"could not be checked ({type(e).__name__})", None
                outcomes.append(
                    RouteBatchItem(
                        index=i,
                        id=_item_id(item),
                        error=ErrorBody(
                            code="invalid_item",
                            message=f"item {i}: {message}",
                            field=f"items.{i}" + (f".{field}" if field else ""),
                        ),
                    )
                )
                continue
            valid.append((i, req))
            outcomes.append(RouteBatchItem(index=i, id=req.id))
        default_k = body.top_k or settings.top_k
        results = _predict_each_safely(router, valid, default_k, settings)
        for (i, req), result in zip(valid, results, strict=True):
            if isinstance(result, ErrorBody):
                outcomes[i].error = result
                continue
            metrics.observe_results([result])
            outcomes[i].result = _response(
                trim(result, req.top_k or default_k), req, router.config.script, start
            )
        ok = sum(o.result is not None for o in outcomes)
        return _written(
            RouteBatchResponse(
                results=outcomes,
                ok=ok,
                failed=len(outcomes) - ok,
                model_version=router.version,
                elapsed_ms=_ms(start),
            )
        )

    # Its body's items are answered each on its own, a key written twice in one too.
    api.add_api_route(
        "/v1/route/batch",
        route_batch,
        methods=["POST"],
        response_model=RouteBatchResponse,
        responses=route_errors,
        tags=["route"],
        dependencies=route_guard,
        route_class_override=BatchBodyRoute,
    )

    @api.post(
        "/v1/feedback",
        response_model=FeedbackResponse,
        status_code=status.HTTP_201_CREATED,
        # 409: a request_id already stored with another decision
        responses={**AUTH_ERRORS, 409: {"model": ErrorResponse}, **FEEDBACK_UNAVAILABLE},
        tags=["feedback"],
        dependencies=[FEEDBACK_KEY],
    )
    def add_feedback(
        body: FeedbackRequest,  # type: ignore[valid-type]  # built per app
        db: DatabaseDep,
        metadata: MetadataDep,
        request: Request,
    ) -> FeedbackResponse:
        """Record what the dispatcher finally chose; texts are stored PII-masked."""
        body = cast(FeedbackRequestBase, body)
        _no_query(request, FeedbackRequest, "POST /v1/feedback")
        if body.department is None:
            heads = metadata.get("heads")
            if not isinstance(heads, dict) or "department" in heads:
                raise ApiError(
                    422,
                    "invalid_request",
                    "body.department: is missing or empty; the served model suggests "
                    "departments: send the department finally chosen",
                    "body.department",
                )
            if body.category is None:
                raise ApiError(
                    422,
                    "invalid_request",
                    "body.category: is missing; the served model has no department head, so the "
                    "category finally chosen is the decision: send it",
                    "body.category",
                )
        suggestion = mask_json(body.suggestion) if body.suggestion is not None else None
        if suggestion is not None and len(json.dumps(suggestion)) > MAX_SUGGESTION_CHARS:
            raise ApiError(
                422,
                "invalid_request",
                f"body.suggestion: {TOO_LARGE_SUGGESTION}",
                "body.suggestion",
            )
        shown_version = (suggestion or {}).get("model_version")
        # A dispatcher may type a department with a name and a number in it (网格员张三13912345678):
        # stored, exported and learnt by the next model as 网格员张三[手机号], as the CLI quotes such
        # a label; a label with nothing to mask is stored as written, to match its history.
        department = NO_DEPARTMENT if body.department is None else masked(body.department)
        category = None if body.category is None else masked(body.category)
        department = _listed_as_joint(department, metadata)
        _refuse_listed_with_commas(department, metadata)
        row = db.add_feedback(
            request_id=body.request_id,
            ticket_id=body.ticket_id,
            title=clean(body.title) if body.title is not None else None,
            text=clean(body.text),
            suggestion=suggestion,
            department=department,
            category=category,
            dispatcher_id=body.dispatcher_id,
            model_version=(
                body.model_version
                or (str(shown_version)[:MAX_ID_CHARS] if shown_version else None)
                or metadata.get("version")
            ),
        )
        request.app.state.feedback_failures.succeeded()  # says so if feedback was failing
        if body.request_id is not None:
            # The row stored with it, by this save or an earlier one (nothing was inserted then).
            return _replayed(row, body, department, category)
        return FeedbackResponse.model_validate(row, from_attributes=True)

    @api.get(
        "/v1/feedback",
        response_class=StreamingResponse,
        responses={
            200: {
                "content": {JSONL_MEDIA_TYPE: {}},
                "description": "One JSON object per line, oldest first: each a FeedbackRecord "
                "(`x-itemSchema`), and an ExportIncomplete last if the feedback database cut the "
                "export after it began",
            },
            **EXPORT_ERRORS,
            **FEEDBACK_UNAVAILABLE,
        },
        tags=["feedback"],
        # The key first: a request without one is told that, whatever its query.
        dependencies=[FEEDBACK_KEY, Depends(_export_query)],
    )
    def export_feedback(
        request: Request,
        db: DatabaseDep,
        settings: SettingsDep,
        since: Annotated[
            # A string, not `format: date-time`: that is RFC 3339 alone, and a request validator
            # in front of the API refused the dates the export reads (2026-12-01, 20261201).
            Annotated[datetime, WithJsonSchema({"type": "string"})] | None,
            BeforeValidator(_iso_time),
            Query(
                description="Only feedback created at or after this time: ISO 8601 "
                "(2026-12-01T08:00:00+08:00), a date (2026-12-01, 20261201) or 2026/12/1 8:00; "
                "without a zone in PAIDAN_TIMEZONE, UTC unless set; never a number of seconds"
            ),
        ] = None,
    ) -> StreamingResponse:
        """Export feedback as JSON Lines, oldest first."""
        if since is not None and since.tzinfo is None:
            # As `paidan drift --since` reads it: a centre's since=2026-12-07 is its own midnight.
            since = since.replace(tzinfo=ZoneInfo(settings.timezone))
        # The first page is read here, so an unreachable database answers 503, not a cut stream.
        first = db.feedback_page(since, None, EXPORT_PAGE)
        request.app.state.feedback_failures.succeeded()
        if request.method == "HEAD":  # the GET's answer without its body: no page beyond the first
            return StreamingResponse(iter(()), media_type=JSONL_MEDIA_TYPE)

        def lines() -> Iterator[bytes]:
            rows: list[Feedback] = first
            sent = 0
            while True:
                for row in rows:
                    yield _export_line(row)
                sent += len(rows)
                if len(rows) < EXPORT_PAGE:
                    return
                last = rows[-1].created_at
                try:
                    rows = db.feedback_page(since, (last, rows[-1].id), EXPORT_PAGE)
                except DatabaseUnavailable as e:
                    # The 200 has gone out: a cut that fell on a page boundary left a file of
                    # valid lines indistinguishable from a complete export, and the log said
                    # "unhandled RuntimeError … response already started".
                    yield _export_cut(db, sent, last, e)
                    raise StreamAborted from None

        return StreamingResponse(lines(), media_type=JSONL_MEDIA_TYPE)

    @api.get("/v1/model", response_model=ModelInfo, responses=SERVER_ERRORS, tags=["model"])
    def model_info(router: RouterDep, metadata: MetadataDep, settings: SettingsDep) -> ModelInfo:
        """The served model's version, labels, thresholds and cross-validated metrics, and the
        server's request limits."""
        return ModelInfo(
            version=router.version,
            created=metadata.get("created"),
            # Every label a head may suggest: those it learnt, then any only a dispatch rule gives.
            labels={name: list(router.labels_of(name)) for name in router.heads},
            co_departments=router.co_department_choices(),
            thresholds={
                name: shown_threshold(head.threshold) for name, head in router.heads.items()
            },
            metrics=metadata.get("cv_metrics", {}),
            config=metadata.get("config", {}),
            libraries=metadata.get("libraries", {}),
            limits={
                "max_text_chars": settings.max_text_chars,
                "max_title_chars": settings.max_title_chars,
                "max_batch": settings.max_batch,
                # A batch's size in bytes is limited too: a client sizes its batches by it.
                "max_body_bytes": settings.max_body_bytes,
                # Every other body's (one ticket, feedback), never more than a batch's.
                "max_ticket_body_bytes": min(
                    settings.max_ticket_body_bytes, settings.max_body_bytes
                ),
                # POST /v1/feedback's department: each name, and a joint dispatch's list (fixed:
                # the feedback table's column widths, not settings).
                "max_label_chars": MAX_LABEL_CHARS,
                "max_departments_chars": MAX_DEPARTMENTS_CHARS,
            },
        )

    @api.get("/healthz", response_model=Health, tags=["probes"])
    async def healthz() -> Health:
        """The process is alive."""
        return Health()

    @api.get("/readyz", response_model=Readiness, responses=SERVER_ERRORS, tags=["probes"])
    async def readyz(request: Request, router: RouterDep, db: DatabaseDep) -> Readiness:
        """A model is loaded; also reports whether feedback can be stored, and why not."""
        # Said without the database's host, port or user: anyone may ask (serve.db.without_where).
        database = await anyio.to_thread.run_sync(
            functools.partial(db.check, public=True), limiter=_probe_threads(request)
        )
        behind = getattr(request.app.state, "behind_current", None)
        return Readiness(
            status="ready" if database["ok"] and behind is None else "degraded",
            model_version=router.version,
            database=database,
            behind_current=behind,
        )

    @api.get(
        "/metrics",
        tags=["probes"],
        response_class=Response,
        # Prometheus' text format; its exact media type carries a version parameter.
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def metrics_endpoint(request: Request, metrics: MetricsDep) -> Response:
        """Prometheus metrics: requests and latency per route, predictions, share sent to review."""
        content, media_type = await anyio.to_thread.run_sync(
            metrics.exposition, limiter=_probe_threads(request)
        )
        return Response(content, media_type=media_type)

    # Every GET route answers HEAD too (serve.app._answer_head): load balancers probe with it, and
    # a client's start-up or an uptime check may ask so.
    return api


def _no_query(request: Request, body: type[BaseModel], route: str) -> None:
    """Refuse a query parameter of ``route``, which reads its JSON ``body`` alone: ignored,
    ``POST /v1/route?top_k=5`` answered 3 candidates and ``?masked=true`` no masked ticket, without
    a word (as the reload and the export refuse theirs)."""
    if not request.scope.get("query_string"):  # nearly every request: nothing parsed
        return
    name = next(iter(request.query_params), None)
    if name is None:  # "?&": no parameter
        return
    field = f"query.{quoted(name)}"
    how = (
        f"send {name} in the JSON body"
        if name in keys_of(body)
        else "this request's fields go in its JSON body"
    )
    raise ApiError(
        422,
        "invalid_request",
        f"{field}: is not a parameter of {route}, which takes none; {how}",
        field,
    )


EXPORT_PARAMETERS = ("since",)
# A cache-buster, ignored: jQuery's `cache: false` and some proxies add _=<time> to every GET.
CACHE_BUSTER = "_"


def _export_query(request: Request) -> None:
    """Refuse a query parameter the export does not take, or one given twice: ignored, a
    misspelt ``sinse=`` exported every row, and of two ``since=`` the last was read, silently."""
    counts = Counter(name for name, _ in request.query_params.multi_items())
    for name, count in counts.items():
        if name == CACHE_BUSTER:
            continue
        if name not in EXPORT_PARAMETERS:
            field = f"query.{quoted(name)}"
            raise ApiError(
                422,
                "invalid_request",
                f"{field}: is not a parameter of the export; it takes one, since",
                field,
            )
        if count > 1:
            raise ApiError(
                422,
                "invalid_request",
                f"query.{name}: is given {count} times; send it once",
                f"query.{name}",
            )


# An ISO time whose UTC offset lost its "+": typed into a URL unencoded
# (?since=2026-12-01T00:00:00+08:00), the "+" arrives as a space.
_SPACE_FOR_PLUS = re.compile(
    r"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?) (\d{2}(?::?\d{2})?)"
)


def _department_labels(metadata: dict[str, Any]) -> set[str]:
    """The departments the served model knows (none for a model without a department head)."""
    heads = metadata.get("heads")
    head = heads.get("department") if isinstance(heads, dict) else None
    return set(head.get("labels", [])) if isinstance(head, dict) else set()


def _listed_as_joint(department: str, metadata: dict[str, Any]) -> str:
    """``department`` with a list of departments the served model knows, written with 、 or a
    comma (市住建局、市残联), stored as the joint dispatch retraining reads it as (市住建局；市残联,
    :func:`model.tickets.comma_listed`); otherwise as sent."""
    if not LIST_COMMAS.search(department):
        return department
    lead, others = split_departments(department)
    listed = comma_listed([lead, *others], _department_labels(metadata))
    if not listed:
        return department
    return joint_departments(
        JOINT_JOINER.join(name for part in (lead, *others) for name in listed.get(part, [part]))
    )


def _refuse_listed_with_commas(department: str, metadata: dict[str, Any]) -> None:
    """A 422 for a department that lists several with 、 or a comma, unless the model learnt it so
    (or knows each of them: :func:`_listed_as_joint` stores such a list as a joint dispatch).

    Stored, "市住建局、发改" was learnt by the next model as a department of its own (or merged into
    其他 as too rare), where "市住建局；发改" is a joint dispatch led by 市住建局."""
    if not LIST_COMMAS.search(department):
        return
    labels = _department_labels(metadata)
    lead, others = split_departments(department)
    if all(part in labels or not LIST_COMMAS.search(part) for part in (lead, *others)):
        return
    raise ApiError(
        422,
        "invalid_request",
        "body.department: separates departments with 、 or a comma, which retraining reads as one "
        "department's name; name a joint dispatch's departments separated by ；, the lead first "
        "(市残联；市住建局)",
        "body.department",
    )


def _iso_time(value: Any) -> Any:
    """``since`` read as the command line reads ``--since`` (:func:`model.times.parse_bound`),
    never as a number of seconds.

    A time followed by a space and ``HH:MM`` can only be one whose "+" a URL read as a space, so
    the "+" is put back (it was a 422 "unexpected extra characters" that never said so). pydantic
    read digits as Unix seconds: ``since=20261207``, ISO 8601's compact date, exported every row as
    if asked for 1970-08-23, and ``since=2026`` did the same, both with a 200."""
    if not isinstance(value, str):
        return value
    from model.times import parse_bound

    text = value.strip()
    found = _SPACE_FOR_PLUS.fullmatch(text)
    bound = f"{found[1]}+{found[2]}" if found else text
    try:
        return parse_bound(bound, zone="the server's PAIDAN_TIMEZONE")
    except ValueError as e:  # said without the value: an error never quotes a value sent
        raise ValueError(str(e).removeprefix(f"{bound!r} ")) from None


# Threads of their own for the probes' blocking work (/readyz pings the database, /metrics reads
# the multiprocess files): in the threadpool that /v1/route/batch and /v1/feedback share (40
# threads), a probe waited behind 40 running batch requests, and a load balancer's probe timed out
# (and took the server out of rotation) exactly when it was busiest.
PROBE_THREADS = 2


def _probe_threads(request: Request) -> anyio.CapacityLimiter:
    state = request.app.state
    limiter = getattr(state, "probe_threads", None)
    if limiter is None:  # made in the event loop, on first use
        limiter = state.probe_threads = anyio.CapacityLimiter(PROBE_THREADS)
    return limiter


def _written(answer: RouteResponse | RouteBatchResponse) -> Response:
    """An answer, validated as it was built, written by pydantic's own serialiser.

    Handed the model, FastAPI validated it again, turned it into Python objects and Starlette then
    into JSON: 50-90 µs against 15 for one ticket's answer, 6.9 against 1.3 ms for 100 items. The
    bytes are the same (tests check); the route's ``response_model`` still documents them.
    """
    return Response(answer.model_dump_json(), media_type="application/json")


def _response(
    result: RouteResult,
    req: RouteRequestBase,
    script: Script,
    start: float,
) -> RouteResponse:
    return RouteResponse(
        id=req.id,
        department=result.department,
        category=result.category,
        decision=result.decision,
        similar=result.similar,
        co_departments=result.co_departments,
        masked=result.masked if req.masked else None,
        model_version=result.model_version,
        elapsed_ms=_ms(start),
        simplified=ticket_simplified(req.title, req.text, script),
    )


def _export_cut(db: Any, sent: int, last: datetime, exc: DatabaseUnavailable) -> bytes:
    """The last line of an export the feedback database cut, logged as a warning too; then the
    connection is closed without ending the chunked answer, so the transfer is incomplete."""
    resume = TypeAdapter(datetime).dump_python(last, mode="json")  # as the rows write it
    logger.warning(
        "feedback export stopped after %s: the feedback database %s is unavailable (%s); "
        "the client was told to export again with since=%s",
        counted(sent, "row"),
        describe_url(db.url),
        exc,
        resume,
    )
    note = ExportIncomplete(
        export_error=f"export incomplete: the feedback database became unavailable after "
        f"{counted(sent, 'row')} ({without_where(str(exc))}); export again with since={resume}",
        since=last,
    )
    return note.model_dump_json().encode() + b"\n"


def document_export_lines(spec: dict[str, Any]) -> None:
    """Publish in ``spec`` (the app's OpenAPI document) the schema of one line of
    ``GET /v1/feedback``: :class:`FeedbackRecord`, or :class:`ExportIncomplete` last.

    OpenAPI 3.1 has no per-line schema for JSON Lines (3.2's ``itemSchema``, which FastAPI writes
    for its own generator routes, fails a 3.1 validator), so the media type object names it
    under the extension ``x-itemSchema``, the models in ``components`` where a client generator
    finds them.
    """
    _, defs = models_json_schema(
        [(FeedbackRecord, "serialization"), (ExportIncomplete, "serialization")],
        ref_template=COMPONENT_REF,
    )
    spec.setdefault("components", {}).setdefault("schemas", {}).update(defs["$defs"])
    operation = spec["paths"]["/v1/feedback"]["get"]
    content = operation["responses"]["200"]["content"][JSONL_MEDIA_TYPE]
    content["x-itemSchema"] = {
        "anyOf": [
            {"$ref": COMPONENT_REF.format(model=model.__name__)}
            for model in (FeedbackRecord, ExportIncomplete)
        ]
    }


def _replayed(
    row: Feedback, body: FeedbackRequestBase, department: str, category: str | None
) -> FeedbackResponse:
    """The answer to a save whose request_id is stored: the stored row, as the first save was
    answered (201), if it is the same decision; a 409 if the id was used for another one, which
    would otherwise be dropped without a word. ``department`` and ``category`` as stored (masked)."""
    # Ids by their key: "２０２６１２０６００１" or é written as e and an accent is the ticket stored, in
    # a row stored before this rule too. The answer is the row, with the ids as first sent.
    sent = (_key(body.ticket_id), department, category, _key(body.dispatcher_id))
    if sent != (_key(row.ticket_id), row.department, row.category, _key(row.dispatcher_id)):
        raise ApiError(
            409,
            "request_id_conflict",
            f"body.request_id: was already used for another decision (feedback row {row.id}: "
            "another ticket_id, department, category or dispatcher_id); send a new request_id for "
            "each decision",
            "body.request_id",
        )
    return FeedbackResponse.model_validate(row, from_attributes=True)


def _key(ticket_id: str | None) -> str | None:
    """An id as ids are compared (:func:`model.text.id_key`); None stays None."""
    return None if ticket_id is None else id_key(ticket_id)


def _export_line(row: Feedback) -> bytes:
    """One JSON Lines line of the export. A stored suggestion that cannot be written as JSON (one
    stored before such suggestions were refused, e.g. nested too deeply) is replaced by a note
    saying so: one bad row must not cut the stream, and every later row with it."""
    try:
        line = FeedbackRecord.model_validate(row, from_attributes=True).model_dump_json()
    except Exception as e:  # the message may quote the row, so only the type is logged
        logger.error(
            "feedback row %s: its suggestion cannot be exported (%s); exported without it",
            row.id,
            type(e).__name__,
        )
        note = {EXPORT_ERROR_KEY: f"the stored suggestion cannot be exported ({type(e).__name__})"}
        line = FeedbackRecord.model_validate(
            {**row.to_dict(), "suggestion": note}
        ).model_dump_json()
    return line.encode() + b"\n"


def _predict_each_safely(
    router: Any, requests: list[tuple[int, RouteRequestBase]], default_k: int, settings: Any
) -> list[RouteResult | ErrorBody]:
    """One vectorised call; if it fails, item by item so one bad ticket cannot sink the batch.
    ``requests`` are the valid items with their indices in the batch."""
    if not requests:
        return []
    tickets = [(r.title or "", r.text) for _, r in requests]
    top_k = max(r.top_k or default_k for _, r in requests)
    masked = any(r.masked for _, r in requests)
    predict = functools.partial(
        router.predict,
        top_k=top_k,
        similar_k=settings.similar_k,
        masked=masked,
        snippets=settings.similar_snippets,
    )
    try:
        return list(predict(tickets))
    except Exception:
        out: list[RouteResult | ErrorBody] = []
        for (i, _), ticket in zip(requests, tickets, strict=True):
            try:
                out.append(predict([ticket])[0])
            except Exception as e:  # the message may quote the text, so only the type is used
                # A bug: logged (it was not: the client alone learnt of it), by type only.
                logger.error("batch item %d could not be routed (%s)", i, type(e).__name__)
                out.append(
                    ErrorBody(
                        code="prediction_failed",
                        field=f"items.{i}",
                        message=f"item {i}: this ticket could not be routed ({type(e).__name__})",
                    )
                )
        return out


def _item_id(item: Any) -> str | None:
    """The id an item that failed its check is answered with: as sent, a number as its digits."""
    given = integer_as_text(item.get("id")) if isinstance(item, dict) else None
    if isinstance(given, str):
        return scrub_surrogates(given[:MAX_ID_CHARS])
    return None


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
