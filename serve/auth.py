"""API keys: who may store feedback, export it, reload the model and (optionally) route.

Keys arrive as ``Authorization: Bearer <key>`` (the scheme in any case, as RFC 7235 has it) or
``X-API-Key: <key>``; a request carrying both
(a gateway's own Bearer token beside the client's key) passes if either is a valid key. The
settings hold only the SHA-256 of each key (:func:`model.settings.hash_key_entry`); a presented
key is hashed and compared with every stored hash in constant time (:func:`hmac.compare_digest`),
so neither the key nor the timing of the comparison tells a caller how close a guess was. Keys are never logged or echoed.

Without any key configured the protected endpoints are open: that is the single-user mode of a
server bound to loopback, and ``paidan serve`` refuses to bind anything else without keys (see
:func:`check_bind_allowed` and SECURITY.md).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from model.settings import Settings, SettingsError
from serve.errors import ApiError

Scope = Literal["route", "feedback", "admin"]
# Only used so that OpenAPI documents the two ways to send a key; the check itself is below.
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")
_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="The API key (same keys as the bearer token)"
)


class KeyRefused(ApiError):
    """401 (no key, or not a key we know) or 403 (a known key without the right)."""


# Authentication schemes a client may send by mistake, named back to it: none can be a key (a key
# has at least MIN_KEY_CHARS characters), so naming the scheme sent never echoes a key.
KNOWN_SCHEMES = frozenset(
    {"apikey", "api-key", "basic", "digest", "dpop", "hoba", "key", "negotiate", "ntlm", "token"}
)


def authorization_problem(header: str | None) -> str | None:
    """What is wrong with an ``Authorization`` header that is not ``Bearer <key>``, or ``None``.

    FastAPI's :class:`HTTPBearer` reads such a header as no key at all, so a client that sent its
    key bare (``Authorization: <key>``) or as ``Token <key>`` was told that the endpoint needs
    one. The answer never quotes the header: only a known scheme's name is named back.
    """
    if not header or not header.strip():
        return None
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() == "bearer":
        return (
            None
            if credentials.strip()
            else "the Authorization header has `Bearer` but no key after it"
        )
    if not credentials.strip():
        return "the Authorization header has no `Bearer ` before the key"
    if scheme.lower() in KNOWN_SCHEMES:
        return f"the Authorization header's scheme is `{scheme}`, not `Bearer`"
    return "the Authorization header's scheme is not `Bearer`"


def _digest(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def matches(presented: str, hashes: tuple[str, ...]) -> bool:
    """Whether ``presented`` is one of the keys whose hashes are given; constant time per hash."""
    digest = _digest(presented).encode()
    found = False
    for stored in hashes:  # no early exit: the time does not depend on which key matched
        found |= hmac.compare_digest(digest, stored.encode())
    return found


def presented_keys(
    bearer: HTTPAuthorizationCredentials | None, header_key: str | None
) -> tuple[str, ...]:
    """The keys a request presents: its Bearer token and its ``X-API-Key``, those it sends.

    Both are kept: an API gateway or SSO proxy in front forwards its own ``Authorization: Bearer
    <JWT>``, and a client behind it sends its paidan key as ``X-API-Key``; reading the Bearer
    token alone refused that valid key as "not valid".
    """
    keys = []
    if bearer is not None and bearer.credentials:
        keys.append(bearer.credentials)
    if header_key:
        keys.append(header_key)
    return tuple(keys)


def authorize(
    settings: Settings,
    key: str | tuple[str, ...] | None,
    scope: Scope,
    header_problem: str | None = None,
    header_key: str | None = None,
) -> None:
    """Raise :class:`KeyRefused` unless ``key`` (or one of several presented) may use ``scope``.

    ``route`` needs a key only when ``require_key_for_route`` is set; admin endpoints take the admin
    keys, or the API keys when no admin key is configured. Of several keys the one with the most
    rights counts; each is compared with every hash (no early exit). ``header_problem``
    (:func:`authorization_problem`) is said in the 401 when no presented key is valid;
    ``header_key`` is the ``X-API-Key`` sent, so that a refusal of it names that header.
    """
    if not settings.keys_configured:
        return  # loopback single-user mode; `paidan serve` enforces the loopback part
    if scope == "route" and not settings.require_key_for_route:
        return
    keys = (key,) if isinstance(key, str) else tuple(key or ())
    keys = tuple(k for k in keys if k)
    if not keys and header_problem:
        raise KeyRefused(
            401,
            "unauthorized",
            f"{header_problem}: it must read `Authorization: Bearer <key>` (or send the key as "
            "`X-API-Key: <key>`)",
            "Authorization",
        )
    if not keys:
        raise KeyRefused(
            401,
            "unauthorized",
            "this endpoint needs an API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`",
            "Authorization",
        )
    admin_hashes = settings.admin_keys or settings.api_keys
    is_admin = is_user = False
    for presented in keys:
        is_admin |= matches(presented, admin_hashes)
        is_user |= matches(presented, settings.api_keys)
    is_user |= is_admin
    if not is_user and keys == (header_key,) and not header_problem:
        # The one key presented came in X-API-Key: named as such, not as the Authorization the
        # client never sent; a `Bearer ` copied from that header's form is said (never the key).
        scheme, _, rest = (header_key or "").partition(" ")
        bearer_form = scheme.lower() == "bearer" and bool(rest.strip())
        raise KeyRefused(
            401,
            "unauthorized",
            "X-API-Key is not a valid API key"
            + (
                ": it holds `Bearer ` before the key; send the key alone, `X-API-Key: <key>`"
                if bearer_form
                else ""
            ),
            "X-API-Key",
        )
    if not is_user:
        raise KeyRefused(
            401,
            "unauthorized",
            # The one key presented is then the X-API-Key, and the Authorization header held none
            # (it may be a gateway's own credentials: said as what a key there must read).
            f"X-API-Key is not a valid API key, and {header_problem} (a key sent in it must read "
            "`Authorization: Bearer <key>`)"
            if header_problem
            else "the API key is not valid"
            if len(keys) == 1
            else "neither the Bearer token in Authorization nor X-API-Key is a valid API key",
            "Authorization",
        )
    if scope == "admin" and not is_admin:
        # Named as the header it came in: a key sent only as X-API-Key was refused naming the
        # Authorization header the client never sent.
        raise KeyRefused(
            403,
            "forbidden",
            "this API key may not use the admin endpoints",
            "X-API-Key" if keys == (header_key,) else "Authorization",
        )


def route_needs_key(settings: Settings) -> bool:
    """Whether :func:`authorize` can refuse a request to the routing endpoints under ``settings``."""
    return settings.keys_configured and settings.require_key_for_route


def require(scope: Scope) -> Callable[..., Awaitable[None]]:
    """A dependency that checks the request's key for ``scope``."""

    # async: FastAPI would run a plain def in the threadpool; hashing a key does not block.
    async def check(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        header_key: Annotated[str | None, Depends(_api_key_header)],
    ) -> None:
        authorize(
            request.app.state.services.settings,
            presented_keys(bearer, header_key),
            scope,
            authorization_problem(request.headers.get("Authorization")),
            header_key,
        )

    return check


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only accepts local connections."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


class UnsafeBind(SettingsError):
    """Serving on a non-loopback interface without API keys (a settings problem: one line, exit 2)."""


def check_bind_allowed(settings: Settings, host: str) -> None:
    """Refuse to serve feedback without keys anywhere but loopback (see SECURITY.md)."""
    if settings.require_key_for_route and not settings.keys_configured:
        raise UnsafeBind(
            "PAIDAN_REQUIRE_KEY_FOR_ROUTE is set but PAIDAN_API_KEYS is empty: no request could "
            "be routed; set PAIDAN_API_KEYS"
        )
    if not settings.keys_configured and not is_loopback(host):
        raise UnsafeBind(
            f"refusing to listen on {host} without API keys: anyone on the network could read and "
            "write feedback and reload the model; set PAIDAN_API_KEYS (see SECURITY.md) or bind "
            "127.0.0.1"
        )


ROUTE_KEY = Depends(require("route"))
FEEDBACK_KEY = Depends(require("feedback"))
ADMIN_KEY = Depends(require("admin"))
