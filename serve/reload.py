"""Hot model swap: load, verify and warm a model beside the running one, then swap one reference.

:func:`reload_model` is the one swap function. The pointer follower (:func:`follow_pointer`, started
by the app's lifespan) calls it when the model root's ``current`` pointer changes; an admin reload
endpoint or a SIGHUP handler can call it too. Requests in flight keep the router they started with;
new requests get the new one. A model that fails to load or verify is logged and the old one keeps
serving.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from model.artifact import ModelLoadError, load_serving_router
from model.registry import CURRENT_FILE, lease, pointer_version
from model.router import Router
from serve.workers import report_served

logger = logging.getLogger(__name__)

RouterLoader = Callable[[Path, Path | None], tuple[Router, dict[str, Any]]]
# One swap at a time per process: two reloads racing could install the older model last.
_SWAP_LOCK = threading.Lock()
# The last reason each model root's `current` could not be read, logged once (read_pointer).
_POINTER_PROBLEMS: dict[Path, str] = {}
# An absolute path in a message: a "/" that begins a word, up to a space or punctuation after it.
_OTHER_PATH = re.compile(r"(?<![\w.~-])/[^\s,;:'\"()`]+")


def freeze_heap() -> int:
    """Take every object alive now, the served model above all, out of the cyclic collector's scans.

    A loaded model is a heap of long-lived objects (vocabularies, the tokenizer's dictionary, the
    similar tickets' fields). Every full collection walked all of them with the GIL held: 40 ms
    each for the shared-data model, in the middle of whichever requests were running, which was
    most of the server's p99 at concurrency 32 (benchmarks/README.md). Frozen objects are still
    freed by reference counting as usual. The previous freeze is undone first and the heap
    collected once, so a replaced model's cyclic garbage is not kept for ever.

    Returns
    -------
    int
        How many objects are now frozen.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def reload_model(
    app: Any, model_dir: str | Path, loader: RouterLoader = load_serving_router
) -> str:
    """Load ``model_dir`` fully (verify, unpickle, warm up), then swap it into ``app.state``.

    Blocking; call it from a thread (:func:`starlette.concurrency.run_in_threadpool`).

    Parameters
    ----------
    app : FastAPI
        The app whose ``state.router`` / ``state.metadata`` / ``state.model_dir`` are replaced.
    model_dir : str or Path
        The model directory; it must lie under ``app.state.services.settings.model_root``.
    loader : callable
        ``(model_dir, root) -> (Router, metadata)``.

    Returns
    -------
    str
        The version now served.

    Raises
    ------
    ModelLoadError
        When the new model cannot be trusted or read; the old model keeps serving.
    """
    path = Path(model_dir)
    root = app.state.services.settings.model_root
    with _SWAP_LOCK:
        start = time.perf_counter()
        old = getattr(app.state.router, "version", None)
        held = lease(root, path)  # before the load: `paidan models gc` keeps it from now on
        try:
            router, metadata = loader(path, root)
            router.warm_up()
        except BaseException:
            held.release()
            raise
        # Python assigns references atomically: a request sees the old or the new router, whole.
        app.state.metadata = metadata
        app.state.router = router
        app.state.model_dir = path
        report_served(path)  # to the supervisor, for a worker that replaces this one
        previous, app.state.lease = getattr(app.state, "lease", None), held
        if previous is not None:
            previous.release()  # the old model may be deleted now; requests in flight keep it
        freeze_heap()
        logger.info(
            "model swapped: %s -> %s (loaded from %s in %.1f s)",
            old,
            router.version,
            path,
            time.perf_counter() - start,
        )
        return router.version


def read_pointer(root: Path) -> str | None:
    """The version named by ``root/current``, or ``None`` when it is absent or unreadable.

    An unreadable pointer (written 0600 by another account) was ignored without a word: the
    server kept its old model while ``models list`` named the new one current. Its reason is
    logged as an ERROR once, and again whenever it changes.
    """
    try:
        name = pointer_version(root)
    except ModelLoadError as e:
        if _POINTER_PROBLEMS.get(root) != str(e):
            _POINTER_PROBLEMS[root] = str(e)
            logger.error("cannot follow %s: %s", root / CURRENT_FILE, e)
        return None
    _POINTER_PROBLEMS.pop(root, None)
    return name


def files_stamp(model_dir: Path) -> tuple[tuple[str, int, int, int], ...] | None:
    """What changes when the files of ``model_dir`` do (names, sizes, modification and change
    times), or ``None`` when it is missing: cheap next to a load, which hashes every file."""
    try:
        top = model_dir.stat()
    except OSError:
        return None
    stamp = [("", top.st_size, top.st_mtime_ns, top.st_ctime_ns)]
    for dirpath, _, filenames in os.walk(model_dir):
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            stamp.append(
                (os.path.relpath(path, model_dir), st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            )
    return tuple(sorted(stamp))


def _is_served_dir(app: Any, model_dir: Path) -> bool:
    """Whether ``model_dir`` is the directory the app serves its model from."""
    served = getattr(app.state, "model_dir", None)
    try:
        return served is not None and Path(served).resolve() == model_dir.resolve()
    except (OSError, RuntimeError):  # a symlink loop: not the served directory
        return False


def _behind(
    root: Path,
    pointer: str | None,
    refused: tuple[str, Any] | None,
    reported: tuple[str, str] | None,
) -> str | None:
    """Why the server does not serve what ``root/current`` names, or ``None``.

    Said as ``paidan models`` names things, ``current`` and versions, with files relative to the
    model root: ``/readyz`` answers without a key, and it gave the server's absolute paths to
    anyone who could reach the port (its ``database`` names the backend, never a URL or a file).
    The ERROR line logged for the same refusal keeps the full paths.
    """
    if (problem := _POINTER_PROBLEMS.get(root)) is not None:
        return _within_root(f"{CURRENT_FILE} cannot be followed: {problem}", root)
    if pointer is not None and reported is not None and reported[0] == pointer:
        if not reported[1]:
            return f"{CURRENT_FILE} names {pointer!r}, which is not a version"
        if refused is not None and refused[0] == pointer:
            why = _within_root(reported[1], root)
            return f"{CURRENT_FILE} names {pointer}, which cannot be loaded: {why}"
    return None


def _within_root(message: str, root: Path) -> str:
    """``message`` with the model root's paths said relative to it (``v3/router.joblib``), the
    root itself as "the model root" (as given and resolved: the loader names both), and any other
    absolute path (a symlinked ``current``'s target) as "…"."""
    for base in sorted({str(root), str(root.resolve())}, key=len, reverse=True):
        message = message.replace(base + os.sep, "").replace(base, "the model root")
    return _OTHER_PATH.sub("…", message)


async def follow_pointer(
    app: Any,
    root: Path,
    interval: float,
    loader: RouterLoader = load_serving_router,
    seen: str | None = None,
) -> None:
    """Poll ``root/current`` every ``interval`` seconds and swap to the model it names.

    Runs until cancelled. ``seen`` is the pointer value already acted on (default: the pointer
    now). A model that fails to load is logged, once per distinct error, and the old model keeps
    serving; it is tried again whenever the files of its version change (``current`` written
    before the copy of the version had finished), until it loads or ``current`` moves on. It was
    never tried again: the old model served on until a restart, and with ``--workers N`` a worker
    started later loaded it, so the workers served two models.
    """
    if seen is None:
        seen = read_pointer(root)
    refused: tuple[str, Any] | None = None  # the pointer refused last, and its files' stamp then
    reported: tuple[str, str] | None = None  # the failure logged last
    while True:
        await asyncio.sleep(interval)
        # Re-read each time: an admin reload may have swapped the model meanwhile.
        served = getattr(app.state.router, "version", None)
        pointer = read_pointer(root)
        try:
            if pointer is None or pointer == seen:
                continue
            # The pointer names a directory; the router reports its model version, which differs
            # for `train --out models/v1`: the pointer retrain writes for the served v1 loaded it
            # again ("model swapped: X -> X"), two copies in memory in every worker meanwhile.
            # So the directories are compared, and the versions only when the served directory
            # is unknown: a backup copy `V.bak` reports V's version, and a server on it never
            # followed `current` to V.
            if _is_served_dir(app, root / pointer) or (
                getattr(app.state, "model_dir", None) is None and pointer == served
            ):
                seen = pointer
                continue
            if Path(pointer).name != pointer:
                if reported != (pointer, ""):
                    reported = (pointer, "")
                    logger.error(
                        "%s names %r, which is not a version; ignoring it",
                        root / CURRENT_FILE,
                        pointer,
                    )
                continue
            stamp = await run_in_threadpool(files_stamp, root / pointer)
            if refused == (pointer, stamp):
                continue  # nothing changed since it was refused
            try:
                await run_in_threadpool(reload_model, app, root / pointer, loader)
            except Exception as e:  # keep serving the old model, whatever went wrong
                refused = (pointer, stamp)
                if reported != (pointer, str(e)):
                    reported = (pointer, str(e))
                    logger.error(
                        "cannot switch to model %s (current pointer changed): %s; still serving %s "
                        "(tried again when its files change)",
                        pointer,
                        e,
                        served,
                    )
                continue
            seen, refused, reported = pointer, None, None
        finally:
            # What /readyz and /metrics say: the server kept its model while `current` could not
            # be read, named no version or a model that would not load, and said "ready" all the
            # while (only an ERROR line showed it).
            app.state.behind_current = _behind(root, pointer, refused, reported)
            app.state.services.metrics.behind_current.set(
                0 if app.state.behind_current is None else 1
            )
