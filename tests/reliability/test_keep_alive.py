"""Idle keep-alive connections: the server must not close one a proxy or client pool still holds.

uvicorn closes an idle connection after 5 s by default. A reverse proxy keeps its upstream
connections for longer (nginx's ``keepalive_timeout``: 60 s), so it sometimes sends a request on a
connection the server is closing at that moment, and a dispatcher gets a 502. ``paidan serve``
keeps idle connections for ``PAIDAN_KEEP_ALIVE_S`` seconds (75 by default) instead.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.reliability.live import UVICORN_DEFAULT_S, LiveServer, answered, port_of


def idle_then_ask(servers: list[LiveServer], idle_s: float) -> list[tuple[bytes, bytes]]:
    """Per server: one request, ``idle_s`` seconds of silence (the same for all, waited once), a
    second request on the same connection."""
    with ExitStack() as stack:
        socks = [
            stack.enter_context(socket.create_connection(("127.0.0.1", port_of(s)), timeout=10))
            for s in servers
        ]
        firsts = [answered(sock) for sock in socks]
        time.sleep(idle_s)
        return [(first, answered(sock)) for first, sock in zip(firsts, socks, strict=True)]


@pytest.mark.slow
def test_an_idle_connection_outlives_uvicorns_default_and_the_setting_is_honoured(
    live_server_factory: Callable[..., LiveServer], tiny_model_dir: Path
) -> None:
    env = {"PAIDAN_MODEL_ROOT": str(tiny_model_dir.parent), "PAIDAN_RELOAD_INTERVAL": "0"}
    args = ("--model", str(tiny_model_dir), "--no-access-log")

    default = live_server_factory(*args, env=env)
    # The same wait on a server told to keep idle connections for 1 s: closed (so the check on
    # the default server can fail, and the setting reaches uvicorn). Both wait together.
    short = live_server_factory(*args, env={**env, "PAIDAN_KEEP_ALIVE_S": "1"})
    (first, second), (short_first, short_second) = idle_then_ask(
        [default, short], UVICORN_DEFAULT_S + 1.5
    )
    assert first.startswith(b"HTTP/1.1 200"), first
    assert second.startswith(b"HTTP/1.1 200"), f"idle connection closed: {second!r}"
    assert short_first.startswith(b"HTTP/1.1 200"), short_first
    assert short_second == b"", short_second
