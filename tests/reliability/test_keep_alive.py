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
from pathlib import Path

import pytest

from tests.reliability.live import UVICORN_DEFAULT_S, LiveServer, answered, port_of


def idle_then_ask(server: LiveServer, idle_s: float) -> tuple[bytes, bytes]:
    """One request, ``idle_s`` seconds of silence, a second request on the same connection."""
    with socket.create_connection(("127.0.0.1", port_of(server)), timeout=10) as sock:
        first = answered(sock)
        time.sleep(idle_s)
        return first, answered(sock)


@pytest.mark.slow
def test_an_idle_connection_outlives_uvicorns_default_and_the_setting_is_honoured(
    live_server_factory: Callable[..., LiveServer], tiny_model_dir: Path
) -> None:
    env = {"PAIDAN_MODEL_ROOT": str(tiny_model_dir.parent), "PAIDAN_RELOAD_INTERVAL": "0"}
    args = ("--model", str(tiny_model_dir), "--no-access-log")

    default = live_server_factory(*args, env=env)
    first, second = idle_then_ask(default, UVICORN_DEFAULT_S + 1.5)
    assert first.startswith(b"HTTP/1.1 200"), first
    assert second.startswith(b"HTTP/1.1 200"), f"idle connection closed: {second!r}"
    default.kill()

    # The same wait on a server told to keep idle connections for 1 s: closed (so the check above
    # can fail, and the setting reaches uvicorn).
    short = live_server_factory(*args, env={**env, "PAIDAN_KEEP_ALIVE_S": "1"})
    first, second = idle_then_ask(short, UVICORN_DEFAULT_S + 1.5)
    assert first.startswith(b"HTTP/1.1 200"), first
    assert second == b"", second
