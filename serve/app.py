"""The app factory: one FastAPI app whose lifespan loads the model once and opens the feedback database.

``uvicorn serve.app:create_app --factory`` builds it from the ``PAIDAN_*`` environment (that is how
``paidan serve --workers N`` starts each worker); tests and the CLI pass settings and a model
directory explicitly.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import logging
import time
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model.artifact import ModelLoadError, load_serving_router
from model.registry import CURRENT_FILE, Lease, current_dir, lease, named_model, names_current
from model.router import Router
from model.settings import Settings, load_settings
from model.startup import startup
from serve.admin import admin_router, install_sighup
from serve.apidocs import docs_router
from serve.auth import route_needs_key
from serve.batcher import MicroBatcher
from serve.db import SCHEMA_RETRY_S, Database
from serve.deps import Services
from serve.errors import (
    UnexpectedErrorMiddleware,
    error_response,
    header_text,
    install_cut_filter,
    install_error_handlers,
    quoted,
    summarise_when_due,
)
from serve.hosts import HostCheckMiddleware
from serve.metrics import Metrics
from serve.reload import follow_pointer
from serve.requestid import REQUEST_ID_HEADER, RequestIdMiddleware
from serve.routes import api_router, document_export_lines
from serve.schemas import make_request_models
from serve.security import (
    PACKAGE_VERSION,
    VERSION_HEADER,
    RootPathAliasMiddleware,
    SecurityHeadersMiddleware,
    install_security,
    route_path,
)
from serve.telemetry import TelemetryMiddleware, install_refusal_hook
from serve.workers import (
    replacement_start,
    report_served,
    speaks_for_the_workers,
    supervisor_of_this_process,
)

logger = logging.getLogger(__name__)

RouterLoader = Callable[[Path, Path | None], tuple[Router, dict[str, Any]]]


def resolve_model_dir(settings: Settings, model_dir: str | Path | None = None) -> Path:
    """The model directory to serve: the explicit one, ``PAIDAN_MODEL_DIR``, or the root's current."""
    chosen = model_dir or settings.model_dir
    if chosen is not None:
        return named_model(settings.model_root, chosen)  # a version name, as `--model` takes
    current = current_dir(settings.model_root)
    if current is None:
        raise ModelLoadError(
            f"no model under the model root {settings.model_root.resolve()}; train one with "
            "`paidan train` or start `paidan serve`, which trains the default"
        )
    return current


def max_body_bytes(settings: Settings) -> int:
    """Largest batch body accepted (``PAIDAN_MAX_BODY_BYTES``, 8 MiB by default)."""
    return settings.max_body_bytes


def max_ticket_body_bytes(settings: Settings) -> int:
    """Largest body of any other request (``PAIDAN_MAX_TICKET_BODY_BYTES``, 1 MiB by default),
    never more than the batch's."""
    return min(settings.max_ticket_body_bytes, settings.max_body_bytes)


def create_app(
    settings: Settings | None = None,
    model_dir: str | Path | None = None,
    router_loader: RouterLoader = load_serving_router,
    migrate: bool = True,
    pinned: bool | None = None,
) -> FastAPI:
    """Build the app.

    Parameters
    ----------
    settings : Settings, optional
        Runtime settings; default: read from the ``PAIDAN_*`` environment.
    model_dir : str or Path, optional
        The model directory; default: ``settings.model_dir`` or the current model under
        ``settings.model_root``. It must lie under the model root.
    router_loader : callable, optional
        ``(model_dir, root) -> (Router, metadata)``; tests may replace it.
    migrate : bool, default True
        Apply the database migrations at start-up (idempotent).
    pinned : bool, optional
        Whether the model was chosen (``paidan serve --model``, ``PAIDAN_MODEL_DIR``): a chosen
        model is not switched for ``current``, by the pointer follower, a reload naming no model
        or SIGHUP. Default: whether ``model_dir`` or ``settings.model_dir`` is given.
    """
    settings = settings or load_settings()
    if names_current(model_dir):
        model_dir = None
    if names_current(settings.model_dir):  # PAIDAN_MODEL_DIR=current: follow it, unpinned
        settings = settings.model_copy(update={"model_dir": None})
    if pinned is None:
        pinned = model_dir is not None or settings.model_dir is not None
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        start = time.perf_counter()
        # A worker replacing a dead one under --workers N starts from the model the others serve
        # (a `current` they refused failed its every start) and follows `current` from there.
        start_from = None if pinned else replacement_start()

        def lease_and_load(path: Path) -> tuple[Path, Lease, tuple[Router, dict[str, Any]]]:
            # Leased first, so that `paidan models gc` does not delete it while it is served (each
            # worker holds its own lease; serve.reload moves it with the model).
            held = lease(settings.model_root, path)
            try:
                # The model lives as long as the process: startup() freezes it once it is loaded,
                # so that no full collection walks it (serve.reload.freeze_heap).
                with startup():
                    router, metadata = router_loader(path, settings.model_root)
                    router.warm_up()  # jieba's dictionary and the feature names, once per worker
            except BaseException:
                held.release()
                raise
            return path, held, (router, metadata)

        def load() -> tuple[Path, Lease, tuple[Router, dict[str, Any]]]:
            if start_from is None:
                return lease_and_load(resolve_model_dir(settings, model_dir))
            try:
                return lease_and_load(start_from)
            except Exception as e:
                # The others' model gone (deleted by hand, or by gc while no process leased it)
                # or unreadable: every successor failed on it, for ever, whatever `current` named.
                current = resolve_model_dir(settings, model_dir)
                if current.resolve() == start_from.resolve():
                    raise
                logger.warning(
                    "replacement worker: cannot load %s, the model the other workers serve (%s); "
                    "starting from %s, which %s names",
                    start_from,
                    e,
                    current,
                    settings.model_root / CURRENT_FILE,
                )
            return lease_and_load(current)

        db = Database(
            settings.resolved_database_url,
            migrate=migrate,
            retry_interval=SCHEMA_RETRY_S,
            # Under --workers N the supervisor says it, once (serve.server.run): every worker
            # saying it read as N failures.
            warn_directory=app.state.supervisor is None,
            # And one worker says whether the database is reachable (and when it is again).
            speak=speaks_for_the_workers(),
        )
        # The model and the database (migrations included) are made ready side by side; both
        # finish before a failure of either is raised, so the database can be closed cleanly.
        loaded, database = await asyncio.gather(
            run_in_threadpool(load), run_in_threadpool(db.check), return_exceptions=True
        )
        for outcome in (loaded, database):
            if isinstance(outcome, BaseException):
                db.dispose()
                if not isinstance(loaded, BaseException):
                    loaded[1].release()
                raise outcome
        path, app.state.lease, (app.state.router, app.state.metadata) = cast(
            tuple[Path, Lease, tuple[Router, dict[str, Any]]], loaded
        )
        # app.state is the one place the model is kept: this frame lives as long as the app
        # (suspended at the yield below), and a local here kept the start-up model in memory, and
        # its files open, after a reload had replaced it.
        del loaded
        database = cast(dict[str, Any], database)
        app.state.model_dir = path
        report_served(path)
        # A chosen model (--model DIR, PAIDAN_MODEL_DIR): SIGHUP and a reload naming no model load
        # this one again, as the replacement workers of --workers N do. Not `follow_current`,
        # which only turns the polling off: a server serving `current` with the polling off was
        # pinned, and neither SIGHUP nor a reload reached a promoted model.
        app.state.pinned_dir = path if pinned else None
        app.state.db = db
        if not database["ok"]:
            # Routing does not need the database; feedback answers 503 until it is back. Not
            # "feedback will not work": the database is tried again every SCHEMA_RETRY_S, and a
            # line that read as permanent invited a restart (or a call to the DBA at night).
            # Said with where (host, port), so the first /readyz does not say it again.
            db.told(database["reason"])
            logger.log(
                logging.WARNING if speaks_for_the_workers() else logging.DEBUG,
                "feedback database unavailable (%s); routing works, and feedback answers 503 "
                "until the database is reached (tried again every %g s, no restart needed)",
                database["reason"],
                SCHEMA_RETRY_S,
            )
        logger.info(
            "model %s loaded from %s in %.1f s",
            app.state.router.version,
            path,
            time.perf_counter() - start,
        )
        follower = (
            None
            if pinned
            else _start_follower(app, settings, path, router_loader, path == start_from)
        )
        remove_sighup = install_sighup(app)  # SIGHUP: reload current or the pinned model (admin)
        # A feedback outage's summary is said when due, not when the next request comes.
        failures = app.state.feedback_failures
        summariser = asyncio.create_task(summarise_when_due(failures))
        try:
            yield
        finally:
            remove_sighup()
            # Awaited, not only cancelled: the lifespan returned with both still pending, and a
            # follower in the middle of a reload swapped a model (and its lease) in after the
            # database was disposed and the lease released. A reload's thread is waited for.
            background = [summariser] + ([follower] if follower is not None else [])
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            failures.flush()  # what was counted since the last line, before the worker stops
            db.dispose()
            app.state.lease.release()
            gc.unfreeze()  # this app's model may now be collected like anything else

    app = FastAPI(
        title="paidan",
        summary="派单: route citizen complaints to the responsible department and a category",
        # The release, as every answer's X-Paidan-Version names it: "1" matched no release, and
        # a client generated from the document carried it as the version it was built from.
        version=PACKAGE_VERSION,
        description=API_DESCRIPTION,
        lifespan=lifespan,
        # Starlette answered /v1/route/ with an empty 307 to a Location built from the Host the
        # server saw (behind a proxy: the upstream's address, without the public prefix), which
        # Java clients do not follow for a POST and .NET followed into a connection error. The
        # 404 of _not_found_naming_the_route says what to call instead.
        redirect_slashes=False,
        # FastAPI's /docs loads Swagger UI from a CDN; serve/apidocs.py serves it from here.
        docs_url=None,
        redoc_url=None,
    )
    # Settings, metrics and the batcher live as long as the app: the one place they are kept.
    app.state.services = Services(
        settings,
        metrics,
        MicroBatcher(similar_k=settings.similar_k, snippets=settings.similar_snippets),
    )
    app.state.router = None
    app.state.metadata = {}
    app.state.db = None
    app.state.lease = None
    app.state.pinned_dir = None
    # Under `paidan serve --workers N` an admin reload would switch this worker only (serve/admin.py).
    app.state.supervisor = supervisor_of_this_process()
    app.state.router_loader = router_loader  # the admin reload loads through the same function
    install_error_handlers(app)
    install_cut_filter()
    app.include_router(api_router(make_request_models(settings), route_needs_key(settings)))
    _publish_export_lines(app)
    app.include_router(admin_router)
    app.include_router(docs_router)
    _include_page(app)
    app.router.default = _not_found_naming_the_route(app)
    app.add_middleware(
        BodyLimitMiddleware,
        limit=max_body_bytes(settings),
        ticket_limit=max_ticket_body_bytes(settings),
    )
    if settings.allowed_hosts:  # DNS rebinding: on loopback `paidan serve` always sets it
        app.add_middleware(HostCheckMiddleware, allowed_hosts=settings.allowed_hosts)
    install_security(app, settings)  # CORS, 401/403 answers
    # Outermost but one: metrics and the PII-free access log see every answer.
    app.add_middleware(TelemetryMiddleware, metrics=metrics, access_log=settings.access_log)
    # And what `paidan serve`'s protocol answers before any middleware (431), counted alike.
    install_refusal_hook(app, metrics, settings.access_log)
    # Outside even that: an unexpected error is answered and logged here, never re-raised to the
    # server, whose log line would quote its message (and so, maybe, the ticket).
    app.add_middleware(UnexpectedErrorMiddleware)
    # The safe headers and the version on every answer, that 500 too (it went out without them).
    app.add_middleware(SecurityHeadersMiddleware)
    # Outside that: every answer, the 500 too, carries its request's X-Request-ID, which the
    # access log and the error's log line name.
    app.add_middleware(RequestIdMiddleware)
    # Outermost: /paidan/… on the server's own address under --root-path /paidan, which the page
    # names its assets and API by, is the route it names from the first middleware on.
    app.add_middleware(RootPathAliasMiddleware)
    return app


def _start_follower(
    app: FastAPI, settings: Settings, served: Path, loader: RouterLoader, replacing: bool = False
) -> asyncio.Task[None] | None:
    """Follow the root's ``current`` pointer when the served model is the current one, or when
    ``replacing`` (a replacement worker started from the model the other workers serve)."""
    if not settings.follow_current or settings.reload_interval <= 0:
        return None
    if replacing:
        return asyncio.create_task(
            follow_pointer(app, settings.model_root, settings.reload_interval, loader, served.name)
        )
    try:
        current = current_dir(settings.model_root)
    except ModelLoadError:
        current = None
    if current is None or current.resolve() != served.resolve():
        return None  # an explicitly chosen model stays put
    logger.info(
        "following %s every %.1f s", settings.model_root / "current", settings.reload_interval
    )
    return asyncio.create_task(
        follow_pointer(app, settings.model_root, settings.reload_interval, loader)
    )


def _not_found_naming_the_route(app: FastAPI) -> ASGIApp:
    """The router's 404 for a path matching no route; for one that is a route but for its
    trailing slash (``/v1/route/``), its message names the route to call instead, and a GET or
    HEAD of it (``/healthz/``) is answered as the route without the slash."""

    from serve.telemetry import _routes as flat_routes  # included routers, opened

    async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope)
        if scope["type"] == "http" and path != "/" and path.endswith("/"):
            probe = {**scope, "path": scope["path"].rstrip("/") or "/"}
            for candidate in flat_routes(app.router.routes):
                template = getattr(getattr(candidate, "original_route", candidate), "path", "")
                # A template only: a path with a parameter (/static/{name}) would echo input.
                if "{" not in template and candidate.matches(probe)[0] is not Match.NONE:
                    if scope.get("method") in ("GET", "HEAD"):
                        # Served as the route: a probe or scrape configured with the slash
                        # (/healthz/, /metrics/) followed the redirect this replaced to a 200.
                        try:
                            await app.router(probe, receive, send)
                        finally:
                            # Counted under the route it was answered as, not as "unmatched":
                            # routing named it in the copy of the scope.
                            if "route" in probe:
                                scope["route"] = probe["route"]
                        return
                    shown = scope.get("root_path", "") + template
                    raise HTTPException(
                        404, f"{shown}/ is not a route; did you mean {shown}, without the slash?"
                    )
        await app.router.not_found(scope, receive, send)

    return not_found


# What info.version is, and where the API's own version is: the two were easily confused.
API_DESCRIPTION = (
    "API version 1: the `/v1` of its paths (`/v1/route`, `/v1/feedback`, …). `info.version` is "
    f"the paidan release that serves this document, which every answer names in its "
    f"`{VERSION_HEADER}` header; the model that answered is the `model_version` of the answers "
    "that depend on it."
)


# The headers every answer carries, an error or not (serve.requestid, serve.security).
ANSWER_HEADERS = {
    REQUEST_ID_HEADER: "This request's id, as the server's log names it: the client's own "
    "X-Request-ID when it is 1 to 128 characters among A-Z a-z 0-9 . _ : / + = - with nothing to "
    "mask, else one the server made (32 hex digits)",
    VERSION_HEADER: "The paidan release that answered (info.version)",
}


def document_answer_headers(spec: dict[str, Any]) -> None:
    """Name in ``spec`` (the app's OpenAPI document) the headers of :data:`ANSWER_HEADERS` on
    every response of every operation, each a ``$ref`` to ``components.headers``."""
    spec.setdefault("components", {})["headers"] = {
        name: {"description": about, "schema": {"type": "string"}}
        for name, about in ANSWER_HEADERS.items()
    }
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                response.setdefault("headers", {}).update(
                    {name: {"$ref": f"#/components/headers/{name}"} for name in ANSWER_HEADERS}
                )


def _publish_export_lines(app: FastAPI) -> None:
    """``app.openapi()`` with the schema of one line of the feedback export, which FastAPI cannot
    write for a streamed answer (:func:`serve.routes.document_export_lines`), and the headers
    every answer carries (:func:`document_answer_headers`)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = build()  # FastAPI keeps what it built as app.openapi_schema
            document_export_lines(spec)
            document_answer_headers(spec)
        return build()

    app.openapi = openapi  # type: ignore[method-assign]


def _include_page(app: FastAPI) -> None:
    """The dispatcher's page (``serve/page.py``), when it is installed."""
    if importlib.util.find_spec("serve.page") is None:
        return
    from serve import page

    if hasattr(page, "page_router"):
        app.include_router(page.page_router)
    elif hasattr(page, "mount_page"):
        page.mount_page(app)


class BodyLimitMiddleware:
    """Refuses bodies larger than ``limit`` bytes (a batch's) or ``ticket_limit`` (any other
    request's) with 413, before they are read into memory."""

    def __init__(self, app: ASGIApp, limit: int, ticket_limit: int | None = None) -> None:
        self.app = app
        self.batch_limit = limit
        self.ticket_limit = limit if ticket_limit is None else min(ticket_limit, limit)

    def _what_to_do(self, scope: Scope) -> str:
        ticket = not _is_batch(scope) and self.ticket_limit < self.batch_limit
        return _what_to_do(
            scope, "PAIDAN_MAX_TICKET_BODY_BYTES" if ticket else "PAIDAN_MAX_BODY_BYTES"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.batch_limit if _is_batch(scope) else self.ticket_limit
        encoding = _content_encoding(scope)
        compressed = bool(encoding) and _has_body(scope)
        if compressed and not _decodable(scope):
            response = error_response(
                415,
                "unsupported_media_type",
                f"the body is sent with Content-Encoding: {encoding}, which is not accepted; send "
                "it uncompressed or compressed with gzip or deflate (JSON encoded as UTF-8)",
                "Content-Encoding",
            )
            await response(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    size = -1
                if size > limit or size < 0:
                    response = error_response(
                        413 if size > limit else 400,
                        "payload_too_large" if size > limit else "bad_request",
                        f"the request body is {size:,} bytes; at most {limit:,} are accepted"
                        + self._what_to_do(scope)
                        if size > limit
                        else "the Content-Length header is not a number",
                        "body",
                    )
                    await response(scope, receive, send)
                    return
                if not compressed:
                    await self.app(scope, receive, send)  # the server stops at Content-Length
                    return
                break
        # No Content-Length (chunked), or a compressed body: read up to the limit here and hand
        # the app the whole body, decompressed.
        # Raising from inside receive() would not do: FastAPI turns any error while it reads the
        # body into a 400.
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([], message, receive), send)
                return
            received += len(message.get("body", b""))
            if received > limit:
                response = error_response(
                    413,
                    "payload_too_large",
                    f"the request body exceeds {limit:,} bytes" + self._what_to_do(scope),
                    "body",
                )
                await response(scope, receive, send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        data = b"".join(chunks)
        if compressed:
            try:
                data = _decompress(data, limit)
            except _TooLarge as e:
                too_large = error_response(
                    413, "payload_too_large", f"{e}{self._what_to_do(scope)}", "body"
                )
                await too_large(scope, receive, send)
                return
            except _Damaged as e:
                damaged = error_response(400, "bad_request", str(e), "Content-Encoding")
                await damaged(scope, receive, send)
                return
            scope = _decoded_scope(scope, len(data))
        body = {"type": "http.request", "body": data, "more_body": False}
        await self.app(scope, _replay([body], None, receive), send)


# The compression codings of the HTTP registry (and their x- aliases): what a client that compresses
# its bodies writes in Content-Encoding.
_COMPRESSION = frozenset({"gzip", "x-gzip", "deflate", "br", "compress", "x-compress", "zstd"})


def _content_encoding(scope: Scope) -> str:
    """The request's ``Content-Encoding`` when it names a compression (cut short), or ``""``.

    A gzip body (Apache HttpClient's GzipCompressingEntity, OkHttp and .NET compression) was
    answered "the body is not UTF-8", which sent the integrator to their charset settings; one of
    gzip or deflate is decompressed (:func:`_decompress`, under the body limit), another
    compression refused by name. Any other value (a charset written in the wrong header,
    ``Content-Encoding: UTF-8``, as some clients send on every request) is left alone: the body is
    read as JSON and refused only if it is not.
    """
    for name, value in scope.get("headers", ()):
        if name == b"content-encoding":
            encoding = value.decode("latin-1").strip()
            codings = {c.strip().lower() for c in encoding.split(",")}
            if codings & _COMPRESSION:
                return quoted(header_text(encoding))
    return ""


# The codings decompressed (one of them alone; "deflate" is zlib's format, as HTTP defines it).
_DECODABLE = frozenset({"gzip", "x-gzip", "deflate"})


def _decodable(scope: Scope) -> bool:
    """Whether the request's ``Content-Encoding`` is one coding that :func:`_decompress` reads."""
    for name, value in scope.get("headers", ()):
        if name == b"content-encoding":
            return value.decode("latin-1").strip().lower() in _DECODABLE
    return False


class _TooLarge(ValueError):
    """A compressed body that decompresses to more than the body limit."""


class _Damaged(ValueError):
    """A compressed body that cannot be decompressed."""


def _decompress(data: bytes, limit: int) -> bytes:
    """``data`` (gzip, possibly of several members, or zlib) decompressed.

    Never more than ``limit`` + 1 bytes are produced: a few kilobytes that would expand to
    gigabytes are refused at the limit, not after.

    Raises
    ------
    _TooLarge
        If it decompresses to more than ``limit`` bytes.
    _Damaged
        If it is not gzip or zlib data, or is cut short.
    """
    out: list[bytes] = []
    size = 0
    rest = data
    while rest:
        inflate = zlib.decompressobj(zlib.MAX_WBITS | 32)  # a gzip or a zlib header, either
        try:
            while True:
                piece = inflate.decompress(rest, limit + 1 - size)
                size += len(piece)
                out.append(piece)
                if size > limit:
                    raise _TooLarge(
                        f"the request body decompresses to more than {limit:,} bytes; at most "
                        f"{limit:,} are accepted"
                    )
                rest = inflate.unconsumed_tail
                if inflate.eof or not rest:
                    break
        except zlib.error as e:
            raise _Damaged(
                f"the compressed body cannot be decompressed ({e}); send it again, or uncompressed"
            ) from None
        if not inflate.eof:
            raise _Damaged(
                "the compressed body is cut short: it ends inside the compressed data; send it "
                "again"
            )
        rest = inflate.unused_data  # a further gzip member, as gzip itself writes them
    return b"".join(out)


def _decoded_scope(scope: Scope, length: int) -> Scope:
    """``scope`` of a request whose body is now the decompressed one, ``length`` bytes long."""
    headers = [
        (name, value)
        for name, value in scope.get("headers", ())
        if name not in (b"content-encoding", b"content-length", b"transfer-encoding")
    ]
    return {**scope, "headers": [*headers, (b"content-length", str(length).encode())]}


def _has_body(scope: Scope) -> bool:
    """Whether the request says it has a body: a Content-Length over 0 (or not a number, refused
    below), or a Transfer-Encoding. A probe or a GET that a client sends with its default headers
    (Content-Encoding among them) has none, and nothing to refuse."""
    for name, value in scope.get("headers", ()):
        if name == b"transfer-encoding":
            return True
        if name == b"content-length":
            return value.strip() not in (b"", b"0")
    return False


def _is_batch(scope: Scope) -> bool:
    """Whether the request is to the batch route, whose body may be up to the larger limit."""
    return str(scope.get("path", "")).rstrip("/").endswith("/v1/route/batch")


def _what_to_do(scope: Scope, setting: str) -> str:
    """The end of a 413 for a body over the limit that ``setting`` sets: what the client, or its
    administrator, can do.

    A batch refused whole said only its size in bytes: its sender did not learn that fewer items
    per request would pass, nor which setting the server's administrator could raise.
    """
    if _is_batch(scope):
        return (
            "; send fewer items per request (GET /v1/model gives limits.max_body_bytes), or have "
            f"the server's {setting} raised"
        )
    return f" (the server's {setting})"


def _replay(messages: list[Message], last: Message | None, receive: Receive) -> Receive:
    """A receive() that first returns ``messages`` (then ``last``), then reads on."""
    queue = [*messages, *([last] if last is not None else [])]

    async def replay() -> Message:
        if queue:
            return queue.pop(0)
        return await receive()

    return replay
