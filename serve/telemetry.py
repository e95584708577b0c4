"""Every HTTP request timed once: its Prometheus metrics and, when on, its access log line.

uvicorn's own access log prints the raw request line, query string included, so a
``GET /v1/route?text=…13812345678`` would put a phone number in the log; ``paidan serve`` turns it
off and :class:`TelemetryMiddleware` logs instead, on the ``serve.access`` logger: method,
PII-masked path (:func:`serve.security.loggable_path`), the names (never the values) of query
parameters, status, time and request id (:mod:`serve.requestid`). Other headers, and so API keys,
are never logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import fastapi.routing
from starlette.applications import Starlette
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.metrics import Metrics
from serve.requestid import current_request_id
from serve.security import aliased_scope, loggable_path

ACCESS_LOGGER = "serve.access"
access_logger = logging.getLogger(ACCESS_LOGGER)


class TelemetryMiddleware:
    """Counts and times every HTTP request by its route template and, if ``access_log``, writes one
    INFO line for it (pure ASGI: no per-request task).

    Installed outermost, so it also sees the answers of the other middlewares (CORS preflights,
    413 for a body too large).
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, access_log: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            record(
                self.metrics, self.access_log, scope, status["code"], time.perf_counter() - start
            )


# The methods the app serves (CORS preflights are OPTIONS): the only values of the metrics' method
# label besides "other". httptools accepts 35 methods, and each (method, route) pair made a counter
# per status and a 14-series histogram: 455 unauthenticated PROPFIND, MKCALENDAR, M-SEARCH…
# requests took /metrics from 19 series to 8,191 until the server restarted.
SERVED_METHODS = frozenset({"GET", "HEAD", "POST", "OPTIONS"})
OTHER_METHOD = "other"


def method_label(method: str) -> str:
    """The metrics' ``method`` label of a request's method: itself if the app serves it, else
    ``other`` (the access log keeps the method as sent)."""
    return method if method in SERVED_METHODS else OTHER_METHOD


def record(metrics: Metrics, access_log: bool, scope: Scope, status: int, elapsed: float) -> None:
    """Count and time one answered request and, if ``access_log``, write its access log line."""
    route = _route_template(scope)
    method = scope.get("method", "")
    metrics.requests.labels(route, method_label(method), str(status)).inc()
    metrics.latency.labels(route, method_label(method)).observe(elapsed)
    if access_log and access_logger.isEnabledFor(logging.INFO):
        client = scope.get("client")
        access_logger.info(
            '%s - "%s %s HTTP/%s" %d %.1fms request_id=%s',
            f"{client[0]}:{client[1]}" if client else "-",
            method,
            # A request refused before its request line was read whole has no path.
            loggable_path(scope.get("path", ""), scope.get("query_string", b"")) or "-",
            scope.get("http_version", "1.1"),
            status,
            elapsed * 1000,
            current_request_id() or "-",  # none for the protocol's own 431
        )


# The name, on an app's ``state``, of the function that counts an answer the server's protocol
# gave before the app saw the request (serve/protocol.py's 431).
REFUSAL_HOOK = "record_refusal"
RefusalHook = Callable[[Scope, int, float], None]


def install_refusal_hook(app: Starlette, metrics: Metrics, access_log: bool) -> None:
    """Let the server's protocol count the answers it gives itself (the 431 of a request head
    over ``PAIDAN_MAX_HEADER_BYTES``) as :class:`TelemetryMiddleware` counts the app's: under the
    route template the path names, with the access log line.

    The protocol answers before the app, so the middleware never saw these: three 431s left
    ``/metrics`` as it was while a dispatcher behind a portal's cookies could do nothing.
    """

    def record_refusal(scope: Scope, status: int, elapsed: float) -> None:
        # As the app's outermost middleware hands it on, and with the app its routes are read from.
        record(metrics, access_log, {**aliased_scope(scope), "app": app}, status, elapsed)

    setattr(app.state, REFUSAL_HOOK, record_refusal)


def refusal_hook(app: Any) -> RefusalHook | None:
    """The refusal hook of the paidan app inside ``app``, the ASGI app uvicorn calls (the paidan
    app wrapped in uvicorn's proxy-headers middleware, and under ``--workers N`` in paidan's own
    wrapper: each wraps the next as ``.app``); ``None`` for any other app."""
    for _ in range(16):  # a bound, not a depth any server reaches
        if app is None:
            return None
        hook = getattr(getattr(app, "state", None), REFUSAL_HOOK, None)
        if callable(hook):
            return cast(RefusalHook, hook)
        app = getattr(app, "app", None)
    return None


def _route_template(scope: Scope) -> str:
    # The template, not the raw path: unmatched paths would otherwise make one series each.
    route = scope.get("route") or _matching_route(scope)
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


def _matching_route(scope: Scope) -> Any:
    """The route the app's router would put in the scope of a request answered before routing.

    The body limit's 413 and a CORS preflight are answered by middleware, so the router never saw
    them; matched here as the router matches (a route of another method, whose answer would be
    405, when none has this one), they are counted under their endpoint, not as ``unmatched``.
    """
    partial = None
    for candidate in _routes(getattr(scope.get("app"), "routes", ())):
        match, _ = candidate.matches(scope)
        if match == Match.FULL:
            return getattr(candidate, "original_route", candidate)
        if match == Match.PARTIAL and partial is None:
            partial = getattr(candidate, "original_route", candidate)
    return partial


def _routes(routes: Sequence[Any]) -> Iterable[Any]:
    """An app's routes, each router it included opened into its routes.

    FastAPI 0.137.2 and later keep an included router as one entry of ``app.routes``, opened by
    ``iter_route_contexts`` (whose contexts match as the routes do, and name the route routing
    puts in the scope as ``original_route``); before, ``app.routes`` held the routes themselves.
    """
    flatten = getattr(fastapi.routing, "iter_route_contexts", None)
    return flatten(routes) if flatten is not None else routes
