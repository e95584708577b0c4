"""The Host check: the server answers only to its own names, so DNS rebinding cannot reach it.

A web page on an attacker's domain whose DNS record is switched to the server's address (TTL 0,
then 127.0.0.1) is *same-origin* with the server: its scripts read every answer, the feedback
export of a keyless loopback server included. The browser still sends the attacker's name in
``Host``; refusing names the server was not told about stops it, as Jupyter, webpack-dev-server
(``allowedHosts: 'auto'``) and Django (``ALLOWED_HOSTS``) do.

Accepted, when the check is on: ``localhost`` and the names under it (``app.localhost``: RFC 6761
reserves them for loopback, browsers resolve them to it without asking DNS, and no one can register
one), ``127.0.0.1``, ``[::1]``, any IP address (a page reaches an address by its literal only as
that address's own origin, so there is nothing to rebind), any name without a dot, and the names of
``PAIDAN_ALLOWED_HOSTS`` (``*.example.gov.cn`` and ``*`` allowed). A name without a dot
(``paidan_backend``, the name of the nginx ``upstream`` block a proxy on this machine sends by
default; an intranet short name the organisation's own search domain resolves) is no domain an
attacker can register and point at this machine: a rebinding page's domain always has a dot. A
request without a Host, or with an empty one (HTTP/1.0 makes it optional), is answered too: a
browser always names the host of the page's URL. A refusal is answered in the API's error shape,
naming the host and the setting. The probes (``/healthz``, ``/readyz``) answer whatever the Host:
an orchestrator may probe by any name.

``paidan serve`` turns the check on when it binds a loopback address; elsewhere (keys required
there, see :func:`serve.auth.check_bind_allowed`) only when ``PAIDAN_ALLOWED_HOSTS`` is set, so
that clients and load balancers reaching it by names of their own keep working. An app built by
:func:`serve.app.create_app` checks iff ``settings.allowed_hosts`` is not empty.
"""

from __future__ import annotations

import ipaddress
import re

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

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
# A Host header: a host (an IPv6 address in brackets) and an optional port.
_HOST_PORT = re.compile(r"^(?P<host>\[[^\]]*\]|[^:\[\]]+)(?::[0-9]*)?$")
_SINGLE_LABEL = re.compile(r"^[a-z0-9_-]+$")


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


def host_name(header: str) -> str | None:
    """The host a Host header names, in lower case, without the port and without a fully-qualified
    name's trailing dot (``localhost.`` is ``localhost``, as settings drop it from
    ``PAIDAN_ALLOWED_HOSTS``); ``None`` if none."""
    found = _HOST_PORT.match(header)
    if found is None:
        return None
    host = found["host"].lower()
    return host if host.startswith("[") else host.removesuffix(".") or None


def host_matches(host: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``host`` is one of ``patterns``: a name, ``*.example.gov.cn`` for the domain's
    hosts (not the domain itself), or ``*`` for any."""
    return any(
        pattern in ("*", host) or (pattern.startswith("*.") and host.endswith(pattern[1:]))
        for pattern in patterns
    )


def host_allowed(header: str, patterns: tuple[str, ...]) -> bool:
    """Whether a request with this Host header is answered (see the module's docstring)."""
    if is_ip_host(header):
        return True
    host = host_name(header)
    if host is None:
        return False
    return (
        bool(_SINGLE_LABEL.match(host))
        or host.endswith(".localhost")
        or host_matches(host, patterns)
    )


class HostCheckMiddleware:
    """Answers 400 ``host_not_allowed`` to a request whose Host this server does not answer to."""

    def __init__(self, app: ASGIApp, allowed_hosts: tuple[str, ...]) -> None:
        self.app = app
        # The loopback names need no listing here: host_allowed answers localhost (a name without
        # a dot) and IP addresses whatever the patterns. served_hosts adds them only to turn the
        # check on for a loopback bind.
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or route_path(scope) in PROBE_PATHS:
            await self.app(scope, receive, send)
            return
        host = Headers(scope=scope).get("host")
        # No Host (HTTP/1.0: an old monitoring check, a socket script) or an empty one names no
        # page's domain: a browser always sends the host of the page's URL.
        if not host or host_allowed(host, self.allowed_hosts):
            await self.app(scope, receive, send)
            return
        response = error_response(
            400,
            "host_not_allowed",
            f"this server does not answer to the host {_shown(clean(host))}: it answers to "
            "localhost and *.localhost, IP addresses, names without a dot (such as an "
            f"nginx upstream's) and the names in {ALLOWED_HOSTS_ENV}, so that no web page can "
            "reach it by DNS rebinding. A reverse proxy that forwards the public Host (nginx "
            "proxy_set_header Host $host; Caddy and Traefik by default) needs that name in "
            f"{ALLOWED_HOSTS_ENV} (comma-separated; *.example.gov.cn for a domain)",
            "Host",
        )
        await response(scope, receive, send)
