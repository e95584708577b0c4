"""Hot reload on request: ``POST /v1/admin/reload`` and SIGHUP.

Both load the new model beside the running one through :func:`serve.reload.reload_model` (verify
the SHA-256s, refuse symlinks and paths outside the model root, unpickle, warm up) and only then
swap one reference, so requests in flight finish on the old model and none fails. A model that is
refused leaves the old one serving, with one ERROR log line saying why.

Without a model named, both reload the *default* model: the one the model root's ``current`` pointer
names, or, on a server pinned to a model (``paidan serve --model DIR`` or ``PAIDAN_MODEL_DIR``),
that pinned model again, as the replacement workers of ``--workers N`` load it. ``follow_current``
off only stops the polling of ``current``: it pins nothing.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool

from model.artifact import ModelLoadError, load_serving_router
from model.registry import (
    CURRENT_FILE,
    UnknownVersionError,
    current_dir,
    no_such_model,
    resolve_version,
)
from model.router import Answer
from model.text import mask_label
from serve.auth import ADMIN_KEY
from serve.body import JsonBodyRoute
from serve.errors import ApiError, quoted
from serve.reload import reload_model
from serve.schemas import ErrorResponse, no_control

logger = logging.getLogger(__name__)

MAX_PATH_CHARS = 4096
ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 409, 413, 415, 422, 500)
}


class ReloadRequest(BaseModel):
    """Which model to switch to; empty: the pinned model of a server started with one, else the one
    the model root's ``current`` pointer names."""

    model_config = ConfigDict(extra="forbid", strict=True)  # as the API's other bodies

    model_dir: str | None = Field(
        None,
        max_length=MAX_PATH_CHARS,
        description="A version under the model root (as `paidan models list` lists it, or the "
        "model version its answers report), or a path (relative paths are taken under the root); "
        "it must be a real directory inside the root",
    )

    _printable = field_validator("model_dir")(no_control)


class ReloadResponse(Answer):
    """The swap that happened."""

    previous: str | None = Field(description="The version served before")
    version: str = Field(description="The version served now")
    model_dir: str


admin_router = APIRouter(tags=["admin"], route_class=JsonBodyRoute)


def _no_query(request: Request) -> None:
    """Refuse a query parameter: ``?model_dir=v2`` was ignored, and the reload answered 200
    having reloaded the default model, not the one named."""
    for name in request.query_params:
        field = f"query.{quoted(name)}"
        raise ApiError(
            422,
            "invalid_request",
            f"{field}: is not a parameter of the reload, which takes none; name the model in "
            'the body, {"model_dir": "VERSION"}',
            field,
        )


@admin_router.post(
    "/v1/admin/reload",
    response_model=ReloadResponse,
    responses=ADMIN_ERRORS,
    dependencies=[ADMIN_KEY, Depends(_no_query)],
)
async def reload(request: Request, body: ReloadRequest | None = None) -> ReloadResponse:
    """Verify and load a model, then swap it in atomically; a refused model leaves the old one serving.

    Under ``paidan serve --workers N`` it answers 409: it would switch only the worker process that
    took the request, while the others kept the old model.
    """
    app = request.app
    supervisor = getattr(app.state, "supervisor", None)
    if supervisor is not None:
        raise _one_worker_only(app, *supervisor)
    root = Path(app.state.services.settings.model_root)
    target: Path | None
    # `current`, as the commands take it: the model the pointer names, even on a pinned server.
    named_current = body is not None and body.model_dir == CURRENT_FILE
    if body is not None and body.model_dir and not named_current:
        target = root / body.model_dir  # an absolute model_dir replaces the root
        if Path(body.model_dir).name == body.model_dir and not target.is_dir():
            # The model version the answers and feedback rows report, as `paidan serve --model`
            # takes it. A name nothing under the root has is refused as the commands refuse it
            # (it said "<root>/<name> is not a directory", naming neither the versions nor how to
            # list them); a file or a symlink of that name is refused below for what it is.
            try:
                target = root / await run_in_threadpool(resolve_version, root, body.model_dir)
            except UnknownVersionError as e:
                if not (target.exists() or target.is_symlink()):
                    unknown = no_such_model(root, body.model_dir, e, here=False)
                    raise _refused(app, body.model_dir, unknown) from e
            except ModelLoadError as e:  # several versions report it
                raise _refused(app, body.model_dir, e) from e
    elif not named_current and (target := pinned_dir(app)) is not None:
        logger.info("reload: the server is pinned to %s; reloading it, not `current`", target)
    else:
        try:
            target = current_dir(root)
        except ModelLoadError as e:
            raise _refused(app, "current", e) from e
        if target is None:
            raise ApiError(
                422,
                "model_refused",
                f"the model root {root} has no current model; name one in model_dir",
                "body.model_dir",
            )
    previous = getattr(app.state.router, "version", None)
    try:
        version = await run_in_threadpool(reload_model, app, target, _loader(app))
    except ModelLoadError as e:
        raise _refused(app, str(target), e) from e
    return ReloadResponse(previous=previous, version=version, model_dir=str(target))


def pinned_dir(app: Any) -> Path | None:
    """The model a server started with ``--model DIR`` or ``PAIDAN_MODEL_DIR`` is pinned to, if any."""
    pinned = getattr(app.state, "pinned_dir", None)
    return Path(pinned) if pinned is not None else None


def _one_worker_only(app: Any, pid: int, workers: int) -> ApiError:
    """The 409 of a reload under the supervisor, saying how to switch every worker instead."""
    settings = app.state.services.settings
    why = (
        f"this server runs {workers} worker processes and a reload here would switch only the "
        "one that took this request"
    )
    pinned = pinned_dir(app)
    if pinned is not None:
        how = (
            f"it is pinned to {pinned.name} (--model or PAIDAN_MODEL_DIR): restart it with the "
            "model to serve"
        )
    elif settings.follow_current and settings.reload_interval > 0:
        how = (
            "promote the model (`paidan models promote VERSION`): every worker follows `current` "
            f"and switches within {settings.reload_interval:g} s"
        )
    else:
        how = (
            "promote the model (`paidan models promote VERSION`), then send SIGHUP to the "
            f"supervisor (`kill -HUP {pid}`): it replaces every worker with one on `current`"
        )
    return ApiError(409, "conflict", f"{why}; {how}")


def _loader(app: Any) -> Callable[..., Any]:
    return getattr(app.state, "router_loader", None) or load_serving_router


def _refused(app: Any, target: str, e: ModelLoadError) -> ApiError:
    served = getattr(app.state.router, "version", None)
    # The directory is a value sent, and the reason quotes it: masked, as a stored text is (a
    # name with nothing to mask keeps its spelling, so the message still names the directory).
    target, reason = mask_label(target), mask_label(str(e))
    logger.error("model reload refused (%s): %s; still serving %s", target, reason, served)
    return ApiError(
        422, "model_refused", f"{reason}; still serving model {served}", "body.model_dir"
    )


async def reload_default(app: Any) -> str | None:
    """Reload the default model (what SIGHUP does): the pinned one, else the one ``current`` names.

    A server pinned to a model keeps it, as ``--workers N`` replacement workers do: a SIGHUP after
    a promotion switched a single-worker ``paidan serve --model DIR`` to ``current``.
    """
    root = Path(app.state.services.settings.model_root)
    try:
        target = pinned_dir(app)
        if target is not None:
            logger.info("SIGHUP: reloading the pinned model %s (`current` is not followed)", target)
        else:
            logger.info("SIGHUP: reloading the current model")
            target = current_dir(root)
            if target is None:
                raise ModelLoadError(f"the model root {root} has no current model")
        return await run_in_threadpool(reload_model, app, target, _loader(app))
    except ModelLoadError as e:
        _refused(app, "SIGHUP", e)
    except Exception as e:  # the signal must never take the server down
        logger.error(
            "model reload on SIGHUP failed: %s; still serving %s",
            type(e).__name__,
            getattr(app.state.router, "version", None),
        )
    return None


def install_sighup(app: Any) -> Callable[[], None]:
    """Reload on SIGHUP; returns the function that removes the handler.

    Only the main thread's event loop can handle signals: in tests (the app runs in a worker
    thread) this does nothing. With ``--workers N`` uvicorn's supervisor takes SIGHUP itself and
    replaces the workers, which load the current model, or the pinned one (serve/server.py).
    """
    tasks: set[asyncio.Task[Any]] = set()
    try:
        loop = asyncio.get_running_loop()

        def on_hup() -> None:
            task = loop.create_task(reload_default(app))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hup)
    except (RuntimeError, ValueError, NotImplementedError, AttributeError):
        return lambda: None

    def remove() -> None:
        loop.remove_signal_handler(signal.SIGHUP)

    return remove
