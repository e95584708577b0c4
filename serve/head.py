"""Routers whose every GET route answers HEAD too, as the GET without a body."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter


class HeadAnsweringRouter(APIRouter):
    """An :class:`~fastapi.APIRouter` that adds a HEAD route beside each GET route it is given.

    FastAPI, unlike Starlette, gives a GET route no HEAD: ``/v1/model``, the probes and
    ``/metrics`` each had one added by hand, and one left out (``GET /v1/feedback``, the docs'
    assets) answered HEAD with a 405, though HTTP asks every GET resource to answer it. The HEAD
    route is not documented as an operation of its own: the GET's documentation is its.
    """

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().add_api_route(path, endpoint, **kwargs)
        methods = {m.upper() for m in kwargs.get("methods") or ("GET",)}  # FastAPI's default
        if "GET" in methods and "HEAD" not in methods:
            head = {**kwargs, "methods": ["HEAD"], "include_in_schema": False}
            super().add_api_route(path, endpoint, **head)
