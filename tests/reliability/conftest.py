"""Fixtures for the reliability suite: the API fixtures of ``tests/serve`` (reused, not copied) and a
real ``paidan serve`` process on a loopback port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.reliability.live import LiveServer, live_servers
from tests.serve.conftest import cached_loader, client, make_client, make_settings

__all__ = ["cached_loader", "client", "live_server_factory", "make_client", "make_settings"]

# Two keys: one for the API (feedback, route when required), one for the admin endpoints.
API_KEY = "api-key-for-tests-0123456789"
ADMIN_KEY = "admin-key-for-tests-0123456789"


@pytest.fixture
def live_server_factory(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start ``paidan serve`` subprocesses; every one still running is stopped at the end."""
    with live_servers(tmp_path / "live-servers") as start:
        yield start
