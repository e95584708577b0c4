"""The HTTP edge: CORS (off unless configured), safe headers on every answer, 401/403 answers.

:func:`loggable_path` is the PII-safe path that the access log writes (``serve/telemetry.py``):
uvicorn's own access log prints the raw request line, query string included, so a
``GET /v1/route?text=…13812345678`` would put a phone number in the log.
"""

from __future__ import annotations

import importlib.metadata
from urllib.parse import parse_qsl, quote, unquote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model.settings import ROOT_PATH_SAFE, Settings
from model.text import clean
from serve.auth import KeyRefused
from serve.cors import ErrorShapeCORSMiddleware
from serve.errors import error_response
from serve.requestid import REQUEST_ID_HEADER


def _package_version() -> str:
    try:
        return importlib.metadata.version("paidan")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was not installed
        return "unknown"


# The paidan release that answered, on every answer: which server of a rolling upgrade (or of a
# bug report) gave it. The model's version is in the answers that depend on it (model_version).
VERSION_HEADER = "X-Paidan-Version"
PACKAGE_VERSION = _package_version()
# On every answer. The page adds its Content-Security-Policy itself (serve/page.py).
BASE_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (VERSION_HEADER.lower().encode("ascii"), PACKAGE_VERSION.encode("ascii", "replace")),
]
# API answers carry complaint texts (masked, but still personal): no cache may keep them. Nor any
# other answer that does not say otherwise (the page and its assets are revalidated by ETag): a
# caching proxy answered a load balancer's /readyz, or a scrape of /metrics, with an earlier one.
API_HEADERS: list[tuple[bytes, bytes]] = [(b"cache-control", b"no-store")]
CORS_HEADERS = ["Authorization", "X-API-Key", "Content-Type", REQUEST_ID_HEADER]
CORS_MAX_AGE_S = 600


def install_security(app: FastAPI, settings: Settings) -> None:
    """CORS when origins are configured and 401/403 answers; the safe headers are added by
    :class:`SecurityHeadersMiddleware`, outside every middleware that may answer (the 500)."""

    @app.exception_handler(KeyRefused)
    async def _refused(_request: Request, exc: KeyRefused) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Bearer realm="paidan"'} if exc.status == 401 else None
        return error_response(exc.status, exc.code, exc.message, exc.field, headers=headers)

    if settings.cors_origins:
        app.add_middleware(
            ErrorShapeCORSMiddleware,  # a refused preflight in the one error shape
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=CORS_HEADERS,
            expose_headers=[REQUEST_ID_HEADER, VERSION_HEADER],  # readable by a page elsewhere
            allow_credentials=False,  # keys travel in headers, never in cookies
            max_age=CORS_MAX_AGE_S,
        )


class SecurityHeadersMiddleware:
    """Adds :data:`BASE_HEADERS` and :data:`API_HEADERS` to every answer, unless already set."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = BASE_HEADERS + API_HEADERS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend((k, v) for k, v in extra if k not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RootPathAliasMiddleware:
    """Under a root path (``paidan serve --root-path /paidan``), serves ``/paidan/…`` on the
    server's own address too, as the proxy's prefix-stripped ``/…`` is.

    The page names its assets and API under the root path (``/paidan/static/app.js``, see
    :mod:`serve.page`), as it must where a proxy forwards ``/paidan`` itself (no slash) as ``/``:
    relative URLs resolved against ``/paidan`` left the prefix. Opened on the server's own address
    (``http://127.0.0.1:8000/``), those URLs reach the server with the prefix, which uvicorn puts
    in front once more; they are served here as the route they name, not a 404. A proxy that
    forwards the prefix without stripping it is served so too.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(aliased_scope(scope), receive, send)


def aliased_scope(scope: Scope) -> Scope:
    """``scope`` as :class:`RootPathAliasMiddleware` hands it on: its root path decoded, and a path
    that repeats the root path (``/paidan/paidan/…``) as the route it names (``/paidan/…``)."""
    root: str = scope.get("root_path", "")
    path: str = scope.get("path", "")
    if scope["type"] in ("http", "websocket") and "%" in root:
        # A root path beyond ASCII (/派单) is given percent-encoded, as uvicorn needs it, and
        # uvicorn puts it so in front of the path it has decoded: neither the alias below nor
        # the routes (Starlette compares root_path with path) matched, and the page opened on
        # the server's own address got 404 for its assets and API. Decoded, as the path is.
        encoded, root = root, unquote(root)
        if path.startswith(encoded):
            path = root + path[len(encoded) :]
        scope = {**scope, "root_path": root, "path": path}
    if scope["type"] in ("http", "websocket") and root and path.startswith(root + root):
        rest = path[len(root) :]  # the path the client sent, prefix included
        if rest[len(root) : len(root) + 1] in ("", "/"):
            scope = {**scope, "path": rest if rest != root else root + "/"}
            raw = scope.get("raw_path")
            prefix = quote(root, safe=ROOT_PATH_SAFE).encode("ascii")
            if isinstance(raw, bytes) and raw.startswith(prefix + prefix):
                scope["raw_path"] = raw[len(prefix) :] if raw != prefix + prefix else prefix + b"/"
    return scope


def route_path(scope: Scope) -> str:
    """The path the app routes by: without the root path (``paidan serve --root-path``), which
    uvicorn puts in front of ``scope["path"]``; under a root path every /v1/ answer went out
    without ``Cache-Control: no-store``."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :]
    return path


def loggable_path(path: str, query_string: bytes = b"") -> str:
    """The request path PII-masked, with query parameter names but never their values."""
    masked = clean(unquote(path))
    if not query_string:
        return masked
    names = sorted({clean(k) for k, _ in parse_qsl(query_string.decode("latin-1"), True)})
    return masked + "?" + "&".join(f"{n}=…" for n in names) if names else masked + "?…"
