"""The dispatcher's web page: ``GET /`` and its local assets under ``/static``.

Government networks are often closed, so everything the page needs is served from here: no CDN, no
external fonts. The Content-Security-Policy allows only same-origin scripts and styles and no inline
code at all, so even if some text slipped past the page's escaping it could not run.

The assets are a fixed whitelist rather than a ``StaticFiles`` mount: ``include_router`` does not carry
mounts over, and a whitelist cannot be talked into serving anything else from the package.
"""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request, Response

from model.settings import ROOT_PATH_SAFE
from serve.errors import quoted

STATIC_DIR = Path(__file__).resolve().parent / "static"
INDEX_FILE = "index.html"
# name -> media type; nothing outside this list is ever served.
ASSETS: dict[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "check.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

page_router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class _Asset:
    body: bytes
    media_type: str
    etag: str


@cache
def _asset(name: str, media_type: str) -> _Asset:
    # Read on first request, not at import; the files are part of the installed package.
    body = (STATIC_DIR / name).read_bytes()
    return _Asset(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def _respond(request: Request, asset: _Asset) -> Response:
    # "no-cache" means revalidate every time: one cheap 304 instead of a stale page after an upgrade.
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache", "ETag": asset.etag}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@cache
def _index(root_path: str) -> _Asset:
    """The page, its assets named under ``root_path`` when there is one.

    Relative URLs (``static/app.js``) work under a proxy's sub-path only when the page is opened
    with the trailing slash: a proxy that forwards ``/paidan`` itself as ``/`` (Traefik
    StripPrefix, Caddy ``handle_path``, Apache ``ProxyPass``) gave a page whose stylesheet and
    scripts, resolved against ``/paidan``, were ``/static/…`` outside the prefix, so it was dead
    and blamed the browser. Under a root path they are ``/paidan/static/…`` wherever the page is
    opened; the server's own address serves those too (:class:`serve.security.
    RootPathAliasMiddleware`). The CSP's ``base-uri 'none'`` stays: no ``<base>`` is needed.
    """
    page = _asset(INDEX_FILE, "text/html; charset=utf-8")
    if not root_path:
        return page
    # The app sees a root path beyond ASCII decoded (RootPathAliasMiddleware): named encoded.
    url = quote(root_path, safe=ROOT_PATH_SAFE)
    prefix = html.escape(url, quote=True).encode("ascii") + b"/static/"
    body = page.body.replace(b'"static/', b'"' + prefix)
    return _Asset(body, page.media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


# HEAD too: an uptime check of the page with HEAD was a 405, read as the site being down.
@page_router.api_route("/", methods=["GET", "HEAD"])
def index(request: Request) -> Response:
    """The dispatcher's page."""
    return _respond(request, _index(str(request.scope.get("root_path", ""))))


@page_router.api_route("/static/{name}", methods=["GET", "HEAD"])
def static_asset(name: str, request: Request) -> Response:
    """One of the page's local assets."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status_code=404, detail=f"no such asset: {quoted(name)!r}")
    return _respond(request, _asset(name, media_type))
