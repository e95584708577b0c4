"""The Host check: the server answers only to its own names, so DNS rebinding cannot reach it.

A web page on an attacker's domain whose DNS record is switched to the server's address (TTL 0,
then 127.0.0.1) is *same-origin* with the server: its scripts read every answer, the feedback
export of a keyless loopback server included. The browser still sends the attacker's name in
``Host``; refusing names the server was not told about stops it, as Jupyter, webpack-dev-server
(``allowedHosts: 'auto'``) and Django (``ALLOWED_HOSTS``) do.

Accepted, when the check is on: ``localhost``, ``127.0.0.1``, ``[::1]``, any IP address (a page
reaches an address by its literal only as that address's own origin, so there is nothing to
rebind), and the names of ``PAIDAN_ALLOWED_HOSTS`` (``*.example.gov.cn`` and ``*`` allowed).
Starlette's :class:`TrustedHostMiddleware` parses the header and matches the names; a refusal is
answered here, in the API's error shape, naming the host and the setting. The probes
(``/healthz``, ``/readyz``) answer whatever the Host: an orchestrator may probe by any name.

``paidan serve`` turns the check on when it binds a loopback address; elsewhere (keys required
there, see :func:`serve.auth.check_bind_allowed`) only when ``PAIDAN_ALLOWED_HOSTS`` is set, so
that clients and load balancers reaching it by names of their own keep working. An app built by
:func:`serve.app.create_app` checks iff ``settings.allowed_hosts`` is not empty.
"""

from __future__ import annotations

import ipaddress
import re

from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model.settings import Settings
from model.text import clean
from serve.auth import is_loopback
from serve.cors import _shown
from serve.errors import error_response
from serve.security import route_path

ALLOWED_HOSTS_ENV = "PAIDAN_ALLOWED_HOSTS"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
# The probes answer any Host: nothing in them is worth a rebinding attack, and an orchestrator
# or a load balancer may probe by a name of its own. With the slash, as app.py serves them.
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/healthz/", "/readyz/"})
_IP_HOST = re.compile(r"^(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<v4>[0-9.]+))(?::[0-9]{1,5})?$")
_TRUSTED = "paidan.host_trusted"  # set in a copy of the scope by the library's check


def served_hosts(settings: Settings, bind_host: str) -> tuple[str, ...]:
    """``settings.allowed_hosts`` as ``paidan serve`` on ``bind_host`` applies it: with the
    loopback names on a loopback address (which turns the check on), as set elsewhere."""
    if is_loopback(bind_host):
        return tuple(dict.fromkeys((*LOOPBACK_HOSTS, *settings.allowed_hosts)))
    return settings.allowed_hosts


def is_ip_host(host: str) -> bool:
    """Whether a Host header names an IP address (with or without a port)."""
    found = _IP_HOST.match(host)
    if found is None:
        return False
    try:
        ipaddress.ip_address(found["v6"] or found["v4"])
    except ValueError:
        return False
    return True


async def _trusted(scope: Scope, _receive: Receive, _send: Send) -> None:
    scope[_TRUSTED] = True


async def _nothing() -> Message:
    return {"type": "http.disconnect"}


async def _discard(_message: Message) -> None:
    return None


class HostCheckMiddleware:
    """Answers 400 ``host_not_allowed`` to a request whose Host this server does not answer to."""

    def __init__(self, app: ASGIApp, allowed_hosts: tuple[str, ...]) -> None:
        self.app = app
        self.check = TrustedHostMiddleware(
            _trusted,
            allowed_hosts=list(dict.fromkeys((*LOOPBACK_HOSTS, *allowed_hosts))),
            www_redirect=False,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or route_path(scope) in PROBE_PATHS:
            await self.app(scope, receive, send)
            return
        host = Headers(scope=scope).get("host")
        if host is not None and is_ip_host(host):
            await self.app(scope, receive, send)
            return
        checked = dict(scope)  # the library marks it when it would pass the request on
        await self.check(checked, _nothing, _discard)
        if checked.get(_TRUSTED):
            await self.app(scope, receive, send)
            return
        named = (
            "the request has no Host header"
            if host is None
            else f"this server does not answer to the host {_shown(clean(host))}"
        )
        response = error_response(
            400,
            "host_not_allowed",
            f"{named}: it answers to localhost, 127.0.0.1, [::1], IP addresses and the names in "
            f"{ALLOWED_HOSTS_ENV}, so that no web page can reach it by DNS rebinding. A reverse "
            "proxy that forwards the public Host (nginx: proxy_set_header Host $host) needs that "
            f"name in {ALLOWED_HOSTS_ENV} (comma-separated; *.example.gov.cn for a domain)",
            "Host",
        )
        await response(scope, receive, send)
