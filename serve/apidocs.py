"""The OpenAPI docs at ``GET /docs``: Swagger UI served from this server, under ``/docs/assets``.

FastAPI's own ``/docs`` loads Swagger UI from cdn.jsdelivr.net and its icon from
fastapi.tiangolo.com: on a government intranet without internet access (政务内网) it was a blank
page, and elsewhere it ran third-party script beside the "Authorize" dialog where an integrator
types an API key. The files come from the installed ``fastapi-offline`` package (Swagger UI 5,
which reads the OpenAPI 3.1 schema FastAPI writes; Swagger UI 4 cannot).

As for the dispatcher's page (``serve/page.py``): a fixed whitelist rather than a ``StaticFiles``
mount, URLs under the root path (``paidan serve --root-path``), and a Content-Security-Policy that
allows this server's scripts and styles only. The page's one inline script, which starts Swagger UI
with the schema's URL, is allowed by its hash, not by ``'unsafe-inline'``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib.resources import files
from urllib.parse import quote

from fastapi import HTTPException, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html

from model.settings import ROOT_PATH_SAFE
from serve.errors import quoted
from serve.head import HeadAnsweringRouter

DOCS_PATH = "/docs"
ASSETS_PATH = DOCS_PATH + "/assets"
# name -> media type; nothing outside this list is ever served.
ASSETS: dict[str, str] = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)

docs_router = HeadAnsweringRouter(include_in_schema=False)


def _policy(script_hashes: list[str]) -> str:
    return "; ".join(
        [
            "default-src 'self'",
            " ".join(["script-src 'self'", *script_hashes]),
            "style-src 'self'",
            "img-src 'self' data:",  # Swagger UI's stylesheet draws its icons as data: URLs
            "connect-src 'self'",  # the schema, and "Try it out" against this server
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


@cache
def _asset(name: str) -> tuple[bytes, str]:
    """The file and its ETag. Read on first request, not at import; the files are part of the
    installed package."""
    body = (files("fastapi_offline") / "static" / name).read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


@cache
def _page(root_path: str, title: str) -> tuple[bytes, str]:
    """The docs page for ``root_path`` and its Content-Security-Policy."""
    # The app sees a root path beyond ASCII decoded (RootPathAliasMiddleware): named encoded.
    assets = quote(root_path, safe=ROOT_PATH_SAFE) + ASSETS_PATH
    body = bytes(
        get_swagger_ui_html(
            # Written into the inline script inside '…' as it is: a root path may hold a quote
            # (/o'neil), which ended the string there, and Swagger UI never started.
            openapi_url=root_path.replace("'", "%27") + "/openapi.json",
            title=f"{title} - Swagger UI",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon.png",
            oauth2_redirect_url=None,  # the API takes keys, not OAuth2: no redirect page
        ).body
    )
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode("ascii") + "'"
        for script in _INLINE_SCRIPT.findall(body)
    ]
    return body, _policy(hashes)


def _headers(policy: str) -> dict[str, str]:
    # "no-cache" means revalidate every time: one cheap 304 instead of a stale page after an upgrade.
    return {
        "Content-Security-Policy": policy,
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-cache",
    }


# HEAD too, as FastAPI's own /docs answered it.
@docs_router.api_route(DOCS_PATH, methods=["GET", "HEAD"])
def docs(request: Request) -> Response:
    """The OpenAPI docs (Swagger UI)."""
    root_path = str(request.scope.get("root_path", "")).rstrip("/")
    body, policy = _page(root_path, request.app.title)
    return Response(body, media_type="text/html; charset=utf-8", headers=_headers(policy))


@docs_router.get(ASSETS_PATH + "/{name}")
def docs_asset(name: str, request: Request) -> Response:
    """One of Swagger UI's files (1.5 MB of script: sent again only when it changed)."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status_code=404, detail=f"no such asset: {quoted(name)!r}")
    body, etag = _asset(name)
    headers = {**_headers(_policy([])), "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)
