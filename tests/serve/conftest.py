"""Fixtures for the HTTP API: an app over the tiny model with its own SQLite file per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from model.artifact import load_router
from model.router import Router
from model.settings import Settings
from serve.app import create_app


@pytest.fixture
def make_settings(tmp_path: Path, tiny_model_dir: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "model_root": tiny_model_dir.parent,
            "model_dir": tiny_model_dir,
            "data_dir": tmp_path / "var",
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture(scope="session")
def cached_loader() -> Callable[[Path, Path | None], tuple[Router, dict[str, Any]]]:
    """``load_router`` once per model directory: loading and warming jieba takes a second or two."""
    cache: dict[Path, tuple[Router, dict[str, Any]]] = {}

    def load(model_dir: Path, root: Path | None) -> tuple[Router, dict[str, Any]]:
        key = Path(model_dir).resolve()
        if key not in cache:
            cache[key] = load_router(model_dir, root)
        return cache[key]

    return load


@pytest.fixture
def make_client(
    make_settings: Callable[..., Settings],
    cached_loader: Callable[[Path, Path | None], tuple[Router, dict[str, Any]]],
) -> Iterator[Callable[..., TestClient]]:
    """Start an app (lifespan included) with setting overrides; closed at the end of the test."""
    clients: list[TestClient] = []

    def make(raise_server_exceptions: bool = True, **overrides: Any) -> TestClient:
        app = create_app(make_settings(**overrides), router_loader=cached_loader)
        client = TestClient(app, raise_server_exceptions=raise_server_exceptions)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@pytest.fixture
def app(client: TestClient) -> FastAPI:
    return client.app  # type: ignore[return-value]
