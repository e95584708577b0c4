"""One error shape for every answer that is not a success: ``{"error": {"code", "message", "field"}}``."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import difflib
import email.message
import logging
import math
import threading
import time
import traceback
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AliasChoices, BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model.text import CONTROL, counted, is_blank, value_problem
from model.tickets import looks_like
from serve.db import DatabaseUnavailable, SchemaMismatch, masked_label, without_where
from serve.requestid import current_request_id

logger = logging.getLogger(__name__)

# nginx's status for a request whose client closed the connection before the answer: what the
# access log and the metrics record for it; nothing is sent.
CLIENT_CLOSED_REQUEST = 499

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",  # answered by serve/protocol.py, to a client that stalls
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    431: "header_too_large",  # answered by serve/protocol.py, before the app sees the request
    CLIENT_CLOSED_REQUEST: "client_closed_request",
    500: "internal_error",
    503: "unavailable",
}


# FastAPI's detail when json.loads fails with anything but a JSONDecodeError (bytes that are not
# UTF-8, nesting beyond the parser's depth); the cause says which.
BODY_UNREADABLE = "There was an error parsing the body"


def _unreadable_body(request: Request, cause: BaseException) -> str:
    """Why FastAPI could not read a JSON body, in the words of :func:`error_response`."""
    if isinstance(cause, UnicodeDecodeError):
        message = email.message.Message()
        message["content-type"] = request.headers.get("content-type", "")
        charset = message.get_content_charset() or ""
        declared = (
            f" (it declares charset={quoted(header_text(charset))})"
            if charset not in ("", "utf-8")
            else ""
        )
        return f"the body is not UTF-8{declared}; send JSON encoded as UTF-8"
    if isinstance(cause, RecursionError):
        return "the body's JSON is nested too deeply to read"
    return "the body cannot be read; send JSON encoded as UTF-8"


def masked(value: str) -> str:
    """``value`` with its PII masked, kept as written (case, width, spaces) where nothing is.

    A string that :func:`model.text.clean` would mask (also a number in full-width digits, or
    written with two spaces, a tab or a zero-width space inside) comes back as ``clean`` writes
    it, ``网格员张三[手机号]``; any other unchanged, so a key such as ``model_version`` or
    ``Text``, or a department's name, keeps its spelling. The rule by which the CLI quotes a
    label (:func:`model.text.mask_label`), as :func:`serve.db.masked_label` stores it.
    """
    return masked_label(value)


# A key, a path segment or a header value is quoted in an error message cut to this many characters.
MAX_QUOTED_CHARS = 40


def quoted(value: str, limit: int = MAX_QUOTED_CHARS) -> str:
    """A part of the request as an error message may quote it: PII-masked (:func:`masked`), then
    cut to ``limit`` characters. Error messages name a key, an asset or a header the client sent,
    which helps whoever sets up an integration, but gateways and API consoles log error bodies:
    a phone number in a key (a map keyed by phone number) must not come back in one. A control
    character is written as its escape (``\\x1b``): a line break or a terminal escape in a key
    came back as it was, into the logs that print error messages."""
    shown = CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", masked(value))
    return shown if len(shown) <= limit else shown[:limit] + "…"


def header_text(value: str) -> str:
    """A header value as the client wrote it: Starlette decodes headers as Latin-1, so a UTF-8 one
    (``text/手机``) read as mojibake."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


class ApiError(Exception):
    """An error the API answers with on purpose."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def client_left() -> ApiError:
    """The error of a request whose client has gone (before its answer, or while it sent its
    body): counted and logged as 499, read by no one."""
    return ApiError(
        CLIENT_CLOSED_REQUEST,
        HTTP_CODES[CLIENT_CLOSED_REQUEST],
        "the client closed the connection before the answer",
    )


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


def error_response(
    status: int, code: str, message: str, field: str | None = None, headers: Any = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message, field), status_code=status, headers=headers)


def json_kind(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words (never the value itself)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else "another value"


# Pydantic's errors for a value of the wrong container type, in Python's words ("a valid
# dictionary or instance of RouteRequest"), and what JSON calls the container expected.
_CONTAINER_ERRORS = {
    "model_type": "a JSON object",
    "model_attributes_type": "a JSON object",
    "dict_type": "a JSON object",
    "list_type": "a JSON array",
}

# Pydantic's errors for a value of another type than the field's (the request bodies are strict), in
# Python's words ("Input should be a valid boolean"), and what JSON calls the type expected.
_TYPE_ERRORS = {
    "bool_type": "true or false",
    "string_type": "a string",
    "int_type": "a whole number",
}

# Told to a ticket sent with a title and no text: 12345 exports sometimes hold the whole complaint
# in the title, and "is required" alone named no way to route one.
TITLE_ONLY = (
    "; send the complaint in text (a ticket whose title holds it all: send the title as text too)"
)


def _holds_title(body: Any) -> bool:
    title = body.get("title") if isinstance(body, Mapping) else None
    return isinstance(title, str) and not is_blank(title)


def first_validation_error(
    errors: list[Any], prefix_body: bool = True, body_fields: Sequence[str] = ()
) -> tuple[str, str | None]:
    """A message and a dotted field path from pydantic errors, never echoing the input.

    ``body_fields``: the keys the request body takes (:func:`model_keys`), named after an unknown
    key at its top; without ``prefix_body``, the keys of the object validated (a batch item).
    """
    if not errors:
        return "the request is invalid", None
    err = errors[0]
    # A location may hold the client's own keys (an unknown field, a key inside a map).
    raw = tuple(err.get("loc", ()))
    loc = _error_loc(err, prefix_body)
    field = ".".join(loc) or None
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    ctx = err.get("ctx") or {}
    if err.get("type") == "string_too_long" and "max_length" in ctx:
        msg = f"is longer than {ctx['max_length']:,} characters"
    elif err.get("type") == "missing":
        msg = "is required"
        if loc[-1:] == ["text"] and _holds_title(err.get("input")):
            msg += TITLE_ONLY
        # A required field left out beside a key that is not a field is nearly always that
        # field, named otherwise ({"txt": …}, {"tickets": [...]}): both are said, not "1 more".
        unknown = [
            e
            for e in errors[1:]
            if e.get("type") == "extra_forbidden" and tuple(e.get("loc", ()))[:-1] == raw[:-1]
        ]
        if unknown:
            errors = [e for e in errors if e not in unknown]
            msg += f"; {_unknown_keys(unknown, loc[-1] if loc else '', prefix_body)}"
    elif err.get("type") == "extra_forbidden":
        msg = "is not a known field"
        # Which keys are, or the client guesses ({"modl_dir": …} to the admin reload was
        # answered so, naming neither model_dir nor any other key it takes).
        top = raw[:1] == ("body",) and len(raw) == 2 if prefix_body else len(raw) == 1
        if body_fields and top:
            takes = "this body takes" if prefix_body else "an item takes"
            msg += f" ({takes} {', '.join(body_fields)})"
    elif err.get("type") in _CONTAINER_ERRORS and "input" in err:
        msg = f"must be {_CONTAINER_ERRORS[err['type']]}, not {json_kind(err['input'])}"
        if loc == ["body"] and isinstance(err["input"], list) and "items" in body_fields:
            # The batch's tickets sent as a bare array, as a first try often sends them.
            msg += '; send the tickets as {"items": […]}'
    elif err.get("type") in _TYPE_ERRORS and "input" in err:
        kind = _number_kind(err["input"])
        msg = f"must be {_TYPE_ERRORS[err['type']]}, not {kind}"
    elif (problem := value_problem(err)) is not None:  # "must be at least 1", as settings say it
        msg = problem
    message = f"{field or 'request'}: {msg}"
    if len(errors) > 1:
        # Which fields, so that a client fixes them all at once, not one per round trip.
        others = [".".join(_error_loc(e, prefix_body)) for e in errors[1:]]
        named = ", ".join(dict.fromkeys(p for p in others if p and p != field))
        shown = f": {named}" if named and len(named) <= MAX_QUOTED_CHARS * 3 else ""
        message += f" (and {counted(len(errors) - 1, 'more problem')}{shown})"
    return message, field


def _number_kind(value: Any) -> str:
    """What a value of the wrong type is (:func:`json_kind`), a number said more closely: Python's
    json reads ``NaN`` and ``1e400`` (infinity) as numbers, and ``2.5`` is a fraction."""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "an infinite number"
        if not value.is_integer():
            return "a fraction"
    return json_kind(value)


def _error_loc(error: Any, prefix_body: bool) -> list[str]:
    """The location of one pydantic error as a message names it: its keys quoted masked (they may
    be the client's own), without ``body`` unless ``prefix_body``."""
    loc = [quoted(str(p)) for p in error.get("loc", ())]
    return loc[1:] if not prefix_body and loc[:1] == ["body"] else loc


def _unknown_keys(unknown: list[Any], wanted: str, prefix_body: bool) -> str:
    """What a message says of the keys ``unknown`` (pydantic's ``extra_forbidden`` errors) sent
    where the field ``wanted`` was required: their paths, and the one whose name is close to it."""
    paths = []
    close = None
    for e in unknown[:3]:
        loc = _error_loc(e, prefix_body)
        paths.append(".".join(loc))
        key = loc[-1]
        # Misspelt (txt, titel), or named as an export names it (内容, 诉求内容, content).
        if close is None and (
            difflib.SequenceMatcher(None, key.lower(), wanted).ratio() >= 0.7
            or looks_like(wanted, key)
        ):
            close = paths[-1]
    more = f" and {counted(len(unknown) - 3, 'other')}" if len(unknown) > 3 else ""
    if len(unknown) == 1:
        said = f"{paths[0]} is not a known field"
    else:
        said = f"{', '.join(paths)}{more} are not known fields"
    return said if close is None else f"{said} (is {close} {wanted}?)"


def _body_fields(request: Request) -> list[str]:
    """The keys the JSON body of ``request``'s route takes, as the client writes them; none when
    the route reads no body model."""
    field = getattr(request.scope.get("route"), "body_field", None)
    annotation = getattr(getattr(field, "field_info", None), "annotation", None)
    for model in (annotation, *typing.get_args(annotation)):  # ReloadRequest | None: either
        if isinstance(model, type) and issubclass(model, BaseModel):
            return model_keys(model)
    return []


def model_keys(model: type[BaseModel]) -> list[str]:
    """The keys ``model`` takes, as the client writes them, a key's other names beside it
    (``ticket_id (or id)``: the feedback body's, listed as ``ticket_id`` alone)."""
    keys = []
    for name, info in model.model_fields.items():
        alias = info.validation_alias
        names = (
            [c for c in alias.choices if isinstance(c, str)]
            if isinstance(alias, AliasChoices)
            else [alias if isinstance(alias, str) else info.alias or name]
        )
        first, *others = list(dict.fromkeys(names)) or [name]
        keys.append(first + (f" (or {', '.join(others)})" if others else ""))
    return keys


class StreamAborted(Exception):
    """A streamed answer that must end as incomplete (the connection is closed without the last
    chunk, so the client sees a cut transfer); the reason was logged and written in the stream."""


# Set in a request's task when UnexpectedErrorMiddleware ends an answer without its last chunk on
# purpose, the reason logged already; uvicorn's line for that, logged in the same task once the
# app returns, is then left out (CutOnPurposeFilter).
_CUT_ON_PURPOSE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "paidan_cut_on_purpose", default=False
)
UNCOMPLETED_LINE = "ASGI callable returned without completing response."


class CutOnPurposeFilter(logging.Filter):
    """Leaves out uvicorn's ``ERROR: ASGI callable returned without completing response.`` for an
    answer paidan cut on purpose (an export the feedback database cut, an unexpected error after
    the answer began), whose reason paidan logged: the bare line names no request, and a database
    restarted during an export paged whoever alerts on ERROR lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_CUT_ON_PURPOSE.get() and record.msg == UNCOMPLETED_LINE)


def install_cut_filter() -> None:
    """Add :class:`CutOnPurposeFilter` to uvicorn's error logger, once per process."""
    uvicorn_error = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, CutOnPurposeFilter) for f in uvicorn_error.filters):
        uvicorn_error.addFilter(CutOnPurposeFilter())


# Longest a worker keeps quiet about feedback requests failing on the feedback database.
FAILURE_SUMMARY_S = 60.0
# How often each worker looks whether a summary of such failures is due (seconds): it is said then,
# not when the next feedback request comes, which at night may be hours later.
SUMMARY_CHECK_S = 1.0


class FeedbackFailures:
    """The log lines of feedback requests that fail on the feedback database, in one worker.

    Each such request wrote its own WARNING: a few minutes' outage at a busy centre filled the log
    with identical lines. Now the first is said at once, with its reason; those that follow within
    ``FAILURE_SUMMARY_S`` are counted (each one's reason at DEBUG) and said in one line, at most
    once per ``FAILURE_SUMMARY_S``: when it is due (:meth:`tick`, which the app calls every
    ``SUMMARY_CHECK_S``, request or none), or before the next line, and at shutdown
    (:meth:`flush`) what is still counted. The first request that succeeds afterwards says so, with
    how many failed. A failure after ``FAILURE_SUMMARY_S`` without one, or of another kind
    (unusable, not unavailable), is said at once again.
    """

    def __init__(self) -> None:
        self.clock = time.monotonic
        self._lock = threading.Lock()
        self._headline: str | None = None  # the kind of the failures being counted; None: none
        self._reason = ""  # the last one's
        self._began = 0.0  # when the first failed since one succeeded
        self._said = 0.0  # when the last line was written
        self._last = 0.0  # when the last one failed
        self._pending = 0  # failed since the last line
        self._failed = 0  # in all since one succeeded

    def failed(self, headline: str, reason: str) -> None:
        """A request failed: ``headline`` says how (``feedback database unavailable``)."""
        with self._lock:
            now = self.clock()
            if self._headline != headline or now - self._last >= FAILURE_SUMMARY_S:
                self._summarise(now)
                logger.warning("%s: %s", headline, reason)
                if self._headline is None:  # the first since one succeeded
                    self._began, self._failed = now, 0
                self._headline, self._said = headline, now
            else:
                logger.debug("%s: %s", headline, reason)
                self._pending += 1
                if now - self._said >= FAILURE_SUMMARY_S:
                    self._reason = reason
                    self._summarise(now)
            self._reason, self._last = reason, now
            self._failed += 1

    def succeeded(self) -> None:
        """A request reached the feedback database."""
        if self._headline is None:  # the usual case, without the lock
            return
        with self._lock:
            if self._headline is None:
                return
            now = self.clock()
            self._summarise(now)
            logger.info(
                "feedback requests succeed again: %d failed in the %.0f s before",
                self._failed,
                now - self._began,
            )
            self._headline = None

    def tick(self) -> None:
        """Say the failures counted since the last line if ``FAILURE_SUMMARY_S`` has passed."""
        if not self._pending:  # the usual case, without the lock
            return
        # Called on the event loop: never waits for the lock. A request's thread holding it is
        # writing a line (a slow log destination held the whole worker, /healthz too, meanwhile);
        # what is due is said by that thread or at the next check.
        if not self._lock.acquire(blocking=False):
            return
        try:
            now = self.clock()
            if now - self._said >= FAILURE_SUMMARY_S:
                self._summarise(now)
        finally:
            self._lock.release()

    def flush(self) -> None:
        """Say the failures counted since the last line, due or not (the worker stops)."""
        with self._lock:
            self._summarise(self.clock())

    def _summarise(self, now: float) -> None:
        if self._pending:
            logger.warning(
                "%d more feedback request%s failed in the last %.0f s: %s (%s)",
                self._pending,
                "" if self._pending == 1 else "s",
                now - self._said,
                self._headline,
                self._reason,
            )
            self._pending, self._said = 0, now


async def summarise_when_due(failures: FeedbackFailures) -> None:
    """Every ``SUMMARY_CHECK_S``, say ``failures``' summary if it is due; until cancelled (the
    app's lifespan runs it, in each worker)."""
    while True:
        await asyncio.sleep(SUMMARY_CHECK_S)
        try:
            failures.tick()
        except Exception:
            # A log handler that fails once must not end the summaries for the worker's life.
            logger.exception("could not say the feedback failures' summary; trying again")


def install_error_handlers(app: FastAPI) -> None:
    """Route every failure through :func:`error_response`."""
    failures = app.state.feedback_failures = FeedbackFailures()

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.field)

    # These two are plain functions, which Starlette runs in its threadpool: counting a failure
    # takes the lock a request's thread holds while its line goes out, and on the event loop
    # every request of the worker, /healthz too, waited for that line.
    @app.exception_handler(DatabaseUnavailable)
    def _db_down(_request: Request, exc: DatabaseUnavailable) -> JSONResponse:
        failures.failed("feedback database unavailable", str(exc))
        # Said without the database's host, port or user, as /readyz says it: gateways and API
        # consoles log error bodies, and the log line above has them.
        return error_response(
            503,
            "database_unavailable",
            f"the feedback database is unavailable ({without_where(str(exc))}); routing still "
            "works, retry the feedback later",
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(SchemaMismatch)
    def _db_schema(_request: Request, exc: SchemaMismatch) -> JSONResponse:
        # Not "retry later": retrying does not help until an administrator acts, and the
        # reason it had (UndefinedColumn: column feedback.request_id ...) named no way out.
        failures.failed("feedback database unusable", str(exc))
        # Its own code: a client (the dispatcher's page) must not say "try again later".
        return error_response(
            503, "database_schema_mismatch", f"{without_where(str(exc))}; routing still works"
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, field = first_validation_error(
            list(exc.errors()), body_fields=_body_fields(request)
        )
        # JSON that does not parse is a malformed request, not a bad field.
        if exc.errors() and exc.errors()[0].get("type") == "json_invalid":
            return error_response(400, "malformed_json", "the body is not valid JSON", "body")
        return error_response(422, "invalid_request", message, field)

    @app.exception_handler(ValidationError)
    async def _response_invalid(request: Request, exc: ValidationError) -> JSONResponse:
        log_unexpected(request.method, request.url.path, exc)
        return unexpected_response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, ClientDisconnect):
            # The client left while sending its body: FastAPI calls that a 400, a bad request no
            # one made, which misled 4xx alerts and readers of the access log.
            left = client_left()
            return error_response(left.status, left.code, left.message)
        if exc.status_code == 400 and isinstance(exc.__cause__, ApiError):
            # Raised while FastAPI read the body (serve.body: a key written twice), which wraps
            # any such error in a 400 "There was an error parsing the body".
            cause = exc.__cause__
            return error_response(cause.status, cause.code, cause.message, cause.field)
        if exc.status_code == 400 and exc.detail == BODY_UNREADABLE and exc.__cause__ is not None:
            return error_response(
                400, "malformed_json", _unreadable_body(request, exc.__cause__), "body"
            )
        code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        detail = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        headers = exc.headers
        if exc.status_code == 405 and detail == "Method Not Allowed":
            detail, headers = _method_not_allowed(request, exc)
        elif exc.status_code == 404 and detail == "Not Found":
            # Never the path itself: it may hold what a client put in it (a phone number).
            docs = request.scope.get("root_path", "") + "/docs"
            detail = f"no route has this path; the routes are listed at {docs}"
        return error_response(exc.status_code, code, detail, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The last resort of Starlette's ServerErrorMiddleware, which re-raises to the server
        # after it: UnexpectedErrorMiddleware answers every unexpected error before it gets there.
        log_unexpected(request.method, request.url.path, exc)
        return unexpected_response()


# Methods named back in a 405, in the order an Allow header lists them: those HTTP defines (any
# other token a client sends is not quoted).
_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_NAMED_METHODS = frozenset(_METHOD_ORDER)


def _method_not_allowed(
    request: Request, exc: StarletteHTTPException
) -> tuple[str, Mapping[str, str] | None]:
    """Starlette's bare "Method Not Allowed", told as what the path takes instead, and an
    ``Allow`` header listing every method of it: Starlette's names only the first route that
    matched (``POST`` for ``/v1/feedback``, which takes ``GET`` too)."""
    from serve.telemetry import _routes  # serve.telemetry imports this module

    methods: set[str] = set()
    for candidate in _routes(getattr(request.app, "routes", ())):
        if candidate.matches(request.scope)[0] is not Match.NONE:
            methods |= set(getattr(candidate, "methods", None) or ())
    allowed = ", ".join(m for m in _METHOD_ORDER if m in methods)
    headers = {**(exc.headers or {}), "Allow": allowed} if allowed else exc.headers
    route = request.scope.get("route")
    template = getattr(route, "path", None)
    # A template with a parameter (/static/{name}) would be no help; the path itself may hold PII.
    if isinstance(template, str) and "{" not in template:
        where = request.scope.get("root_path", "") + template
    else:
        where = "this path"
    method = request.method if request.method in _NAMED_METHODS else "this method"
    message = f"{where} does not take {method}" + (f"; send {allowed}" if allowed else "")
    return message, headers


def log_unexpected(method: str, path: str, exc: BaseException) -> None:
    """Log an unexpected error: its type and code frames, never its message (it may quote the
    ticket), and the path PII-masked as the access log writes it."""
    from serve.security import loggable_path  # serve.security imports this module

    logger.error(
        "unhandled %s on %s %s (request_id=%s)\n%s",
        type(exc).__name__,
        method,
        loggable_path(path),
        current_request_id() or "-",
        "".join(traceback.format_tb(exc.__traceback__)),
    )


def unexpected_response() -> JSONResponse:
    # The request id finds the error's log line (its traceback) among a busy server's.
    request_id = current_request_id()
    logged = f" with request id {request_id}" if request_id else ""
    return error_response(
        500, "internal_error", f"an unexpected error occurred; it was logged{logged}"
    )


class UnexpectedErrorMiddleware:
    """Answers any unexpected error with the JSON 500 and logs it by :func:`log_unexpected` only.

    Starlette's ``ServerErrorMiddleware`` (outside every middleware of the app) answers with the
    app's ``Exception`` handler and then re-raises, "so that the server can log it": uvicorn logs
    ``Exception in ASGI application`` with the traceback, whose last line is the exception's
    message, which may quote the ticket unmasked. Added last, so outermost of paidan's
    middlewares, this one sees the exception first and does not re-raise it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True  # before sending: a start that failed is not sent again
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except StreamAborted:
            _CUT_ON_PURPOSE.set(True)
            return  # logged where it happened; the server closes the connection
        except Exception as exc:
            log_unexpected(scope.get("method", ""), scope.get("path", ""), exc)
            if started:
                _CUT_ON_PURPOSE.set(True)
                return  # the answer has begun: the server closes the connection
            # If the client is gone there is no one to answer, and an error raised here would
            # carry this one (message included) to the server's log as its context.
            with contextlib.suppress(Exception):
                await unexpected_response()(scope, receive, send)
