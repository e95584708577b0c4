"""Dependencies the routes receive; tests override them with ``app.dependency_overrides``.

They are ``async def`` although they never await: FastAPI runs a plain ``def`` dependency in the
threadpool, and a thread hop for each of a request's few attribute reads cost more than routing the
ticket (``benchmarks/README.md``). Nothing here may block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from model.router import Router
from model.settings import Settings
from serve.batcher import MicroBatcher
from serve.db import Database
from serve.errors import ApiError
from serve.metrics import Metrics


async def get_settings(request: Request) -> Settings:
    return request.app.state.services.settings


async def get_router(request: Request) -> Router:
    router = getattr(request.app.state, "router", None)
    if router is None:
        raise ApiError(503, "model_not_loaded", "no model is loaded yet")
    return router


async def get_model_metadata(request: Request) -> dict[str, Any]:
    return getattr(request.app.state, "metadata", None) or {}


async def get_db(request: Request) -> Database:
    db = getattr(request.app.state, "db", None)
    if db is None:
        raise ApiError(503, "database_unavailable", "the feedback database is not configured")
    return db


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.services.metrics


@dataclass(frozen=True)
class Services:
    """What the routing endpoints need besides the model, fixed for the app's lifetime.

    One dependency instead of three: FastAPI spends about 12 µs solving each dependency of a
    request, and the eight a routing request had took a quarter of the server's own cost of it,
    prediction aside (``benchmarks/README.md``, eleventh round).
    """

    settings: Settings
    metrics: Metrics
    batcher: MicroBatcher


async def get_services(request: Request) -> Services:
    return request.app.state.services


SettingsDep = Annotated[Settings, Depends(get_settings)]
RouterDep = Annotated[Router, Depends(get_router)]
MetadataDep = Annotated[dict[str, Any], Depends(get_model_metadata)]
DatabaseDep = Annotated[Database, Depends(get_db)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ServicesDep = Annotated[Services, Depends(get_services)]
