"""Starlette's CORS middleware, with a refused preflight answered in the API's one error shape.

Starlette answers a refused preflight ``400 text/plain`` "Disallowed CORS origin" (or "method",
"headers"): not the ``{"error": {"code", "message", "field"}}`` of every other error, and naming
neither the setting nor what was refused. The browser hides the answer from scripts either way;
whoever reads it (DevTools, curl) is the person setting up an integration.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from serve.errors import error_response, header_text, quoted

# A value from the request is quoted in the answer cut to this many characters.
MAX_SHOWN_CHARS = 100


def _shown(value: str) -> str:
    return quoted(header_text(value), MAX_SHOWN_CHARS)


class ErrorShapeCORSMiddleware(CORSMiddleware):
    """:class:`CORSMiddleware` whose refused preflight is a 400 ``cors_refused`` naming what was
    refused, and ``PAIDAN_CORS_ORIGINS`` for an origin."""

    def preflight_response(self, request_headers: Headers) -> Response:
        answer = super().preflight_response(request_headers)
        if answer.status_code != 400:
            return answer
        problems: list[tuple[str, str]] = []  # (header at fault, why)
        origin = request_headers.get("origin", "")
        if not self.is_allowed_origin(origin=origin):
            problems.append(
                ("Origin", f"the origin {_shown(origin)} is not in PAIDAN_CORS_ORIGINS")
            )
        method = request_headers.get("access-control-request-method", "")
        if method not in self.allow_methods:
            problems.append(
                (
                    "Access-Control-Request-Method",
                    f"the method {_shown(method)} is not allowed "
                    f"(allowed: {', '.join(sorted(self.allow_methods))})",
                )
            )
        requested = request_headers.get("access-control-request-headers")
        if requested is not None and not self.allow_all_headers:
            refused = [
                h.strip()
                for h in requested.lower().split(",")
                if h.strip() not in self.allow_headers
            ]
            if refused:
                problems.append(
                    (
                        "Access-Control-Request-Headers",
                        f"the header{'s' if len(refused) > 1 else ''} "
                        f"{_shown(', '.join(refused))} {'are' if len(refused) > 1 else 'is'} not "
                        f"allowed (allowed: {', '.join(sorted(self.allow_headers))})",
                    )
                )
        if request_headers.get("access-control-request-private-network") is not None:
            problems.append(
                ("Access-Control-Request-Private-Network", "private network access is not allowed")
            )
        if not problems:  # a refusal this class does not know: Starlette's reason, in the shape
            problems.append(("Origin", bytes(answer.body).decode("utf-8", "replace")))
        headers = {
            k: v for k, v in answer.headers.items() if k not in ("content-type", "content-length")
        }
        return error_response(
            400,
            "cors_refused",
            "CORS preflight refused: " + "; ".join(why for _, why in problems),
            problems[0][0],
            headers=headers,
        )
