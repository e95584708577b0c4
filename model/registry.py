"""The model root: one immutable directory per version and an atomically updated ``current`` pointer.

Layout::

    <root>/
        current                  the served version's name (replaced atomically, never edited)
        registry.json            pointer history (for rollback) and events; written atomically
        <version>/               one immutable model directory per version (see model.artifact)
        scores/<version>.json    that version's figures on the frozen evaluation set
        eval/frozen.parquet      the frozen evaluation set, and eval/frozen.json (its SHA-256)
        reports/                 champion/challenger comparison reports (JSON and Markdown)
        .leases/<version>        locked (shared) by each process serving or labelling with it

Facts learnt after a version was written (its scores, whether it was promoted) live beside it, never
inside it: a model directory is not modified once written.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from model.artifact import METADATA_FILE, ModelLoadError, library_versions, read_metadata, verify
from model.resources import is_sample_default

logger = logging.getLogger(__name__)

CURRENT_FILE = "current"
REGISTRY_FILE = "registry.json"
LOCK_FILE = ".registry.lock"
# Held by a running `paidan retrain` for the whole run (retrain_lock).
RETRAIN_LOCK_FILE = ".retrain.lock"
SCORES_DIR = "scores"
# The rule stored scores were computed by (training.compare.score_router stamps them, and
# ensure_scores computes again scores stamped otherwise): "lead+lists2", a joint dispatch's
# department read by its lead, one written with 、, a comma, a line break, a space or a slash
# between departments too ("lead+lists": 、 or a comma only, model.tickets.LIST_SEPARATORS); "known",
# macro-F1 over the true labels the model knows. ``models list`` shows scores
# stamped otherwise as stale, not beside figures of this rule.
SCORE_RULE = {"department_truth": "lead+lists2", "f1_labels": "known"}
EVAL_DIR = "eval"
EVAL_DATA_FILE = "frozen.parquet"
EVAL_META_FILE = "frozen.json"
REPORTS_DIR = "reports"
LEASES_DIR = ".leases"
# Pointer changes remembered for rollback (oldest are forgotten first).
MAX_HISTORY = 100


class CurrentChangedError(ModelLoadError):
    """``current`` is no longer the version a promotion was decided against."""


class RegistryWriteError(OSError):
    """A registry file could not be written (a full disk, a permission); ``str()`` names the file
    and the reason, without the ``[Errno N]`` of a plain ``OSError``."""

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


class _Unchecked(Enum):
    """:func:`set_current`'s ``expected`` beyond a version: whatever is current (the default), or
    a pointer that cannot be read (:data:`UNREADABLE_POINTER`), which a forced promotion
    replaces."""

    ANY = "any"
    UNREADABLE = "unreadable"


UNREADABLE_POINTER = _Unchecked.UNREADABLE
PointerCheck = _Unchecked  # the type of UNREADABLE_POINTER, for callers that pass it on


def versions(root: str | Path) -> list[str]:
    """Model versions under ``root`` (directories with a ``metadata.json``), oldest first.

    Versions are ordered by the ``created`` time in their ``metadata.json``, not by name: paidan's
    own names are UTC timestamps, but a directory written with ``paidan train --out models/v1``
    or copied in by hand (``baseline``) sorted after all of them, so it was taken for the newest
    (the implicit current, and one ``gc --keep`` kept in place of the real newest). A version
    whose metadata holds no readable time is placed by its directory's modification time (a model
    directory is not modified once written). Of equal times, one named as the model version its
    metadata names is the newer (the other is a copy of it, ``V.bak``); then one whose name
    another's contains, reporting the same model version, is the newer (the other is a copy of
    it named after it: ``v1.bak`` of ``train --out models/v1``); then they go by name.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _is_version(p)]
    keys = {p: _creation_key(p) for p in found}
    ties: dict[float, list[Path]] = {}
    for p, (created, named, _) in keys.items():
        if not named:
            ties.setdefault(created, []).append(p)
    # A backup of a `train --out` model sorted after it by name: it became the implicit current,
    # and the next train wrote it into `current`, which then named a backup.
    copies: set[Path] = set()
    for same in (t for t in ties.values() if len(t) > 1):
        reported = {p: reported_version(p) for p in same}
        copies.update(
            p
            for p in same
            if reported[p] is not None
            and any(o != p and o.name in p.name and reported[o] == reported[p] for o in same)
        )

    def key(p: Path) -> tuple[float, bool, bool, str]:
        created, named, name = keys[p]
        return created, named, p not in copies, name

    return [p.name for p in sorted(found, key=key)]


def registry_marker(path: str | Path) -> str | None:
    """The registry file or directory that makes ``path`` a model root, or ``None``.

    A root is recognised by what the registry writes into it: ``current`` (a promotion),
    ``registry.json`` (a rollback, a promotion that replaced a pointer), the lock every pointer
    change takes, the leases of each server and ``paidan label`` run, or a frozen evaluation set
    (``models freeze-eval``, ``retrain``). A root only ever trained into holds versions alone, as a
    directory of ``--out`` models does, and cannot be told from one; it gains a lease as soon as
    anything serves from it. ``current`` is a file (or a symlink, a rollback by hand): a
    directory of that name is a model, not the pointer. Only the names are read, so an unreadable
    pointer still marks the root.
    """
    path = Path(path)
    for name, kind in (
        (CURRENT_FILE, "file"),
        (REGISTRY_FILE, "file"),
        (LOCK_FILE, "file"),
        (LEASES_DIR, "dir"),
        (f"{EVAL_DIR}/{EVAL_META_FILE}", "file"),
        (f"{EVAL_DIR}/{EVAL_DATA_FILE}", "file"),
    ):
        entry = path / name
        try:
            found = entry.is_symlink() or (entry.is_file() if kind == "file" else entry.is_dir())
        except OSError:  # a parent that cannot be searched holds no registry we could harm
            found = False
        if found:
            return name
    return None


def _is_version(path: Path) -> bool:
    try:
        return (
            path.is_dir()
            and not path.is_symlink()
            and not path.name.startswith(".")
            and (path / METADATA_FILE).is_file()
        )
    except PermissionError as e:
        # A version directory another account wrote 0700 (before save_router gave it a normal
        # directory's mode): every command ended in a PermissionError traceback.
        raise _unreadable_version(path, e) from None


def _unreadable_version(path: Path, e: OSError) -> ModelLoadError:
    return ModelLoadError(
        f"{path} cannot be read: {e.strerror}; model versions must be readable by every user "
        f"that serves or manages them (chmod 755 {path})"
    )


def trained_alike(
    root: str | Path, data_sha: str, config: dict[str, Any], eval_sha: str | None
) -> list[str]:
    """The versions under ``root`` trained on the same data as a fit about to run would be.

    The same data fingerprint (``training_data.sha256``: the files, feedback, mapping, window,
    remits and rules it was computed from), the same config, the same frozen evaluation set left
    out (``training_data.eval_sha256``) and the same libraries (``libraries``, paidan's version
    among them): such a fit writes the same model again under a new name. Oldest first; a
    version whose metadata cannot be read is never one.
    """
    root = Path(root)
    config = json.loads(json.dumps(config))  # as metadata.json holds it (lists, not tuples)
    libraries = library_versions()
    found = []
    for version in versions(root):
        try:
            meta = read_metadata(root / version)
        except ModelLoadError:
            continue
        data = meta.get("training_data")
        if (
            isinstance(data, dict)
            and data.get("sha256") == data_sha
            and data.get("eval_sha256") == eval_sha
            and meta.get("config") == config
            and meta.get("libraries") == libraries
            # `models set-rules` keeps its source's fingerprint but applies other rules
            and not meta.get("derived_from")
        ):
            found.append(version)
    return found


def missing_files(model_dir: str | Path, meta: dict[str, Any] | None = None) -> list[str]:
    """The files ``model_dir``'s ``metadata.json`` lists that are not there (a copy cut short,
    ``cp -r`` having written the metadata first); only their presence is checked."""
    model_dir = Path(model_dir)
    if meta is None:
        try:
            meta = read_metadata(model_dir)
        except ModelLoadError:
            return []
    files = meta.get("files")
    if not isinstance(files, dict):
        return []
    return sorted(str(n) for n in files if not (model_dir / str(n)).is_file())


def not_written_by_registry(root: str | Path, version: str) -> str | None:
    """Why ``gc`` leaves the version directory ``version`` alone, or ``None`` when it may delete it.

    The registry writes a version under the model version its ``metadata.json`` names (``train``
    without ``--out``, ``retrain``, ``models set-rules``), whole. A directory named otherwise is
    someone's (a backup copy such as ``city1.bak``, a directory of ``train --out``), and one
    lacking a file its metadata lists is a copy cut short or still running.
    """
    path = Path(root) / version
    try:
        meta = read_metadata(path)
    except ModelLoadError as e:
        return f"its {METADATA_FILE} cannot be read: {e}"
    named = meta.get("version")
    if named != version:
        return (
            f"its {METADATA_FILE} names version {named}"
            if named
            else (f"its {METADATA_FILE} names no version")
        )
    if missing := missing_files(path, meta):
        return f"lacks {', '.join(missing)}"
    return None


def named_otherwise(root: str | Path, version: str) -> bool:
    """Whether the directory ``version`` is a whole model named otherwise than the model version
    its ``metadata.json`` names: a directory of ``train --out ROOT/NAME`` or a backup copy
    (``V.bak``), someone's model that ``gc`` never deletes, and no leftover to warn of."""
    path = Path(root) / version
    try:
        meta = read_metadata(path)
    except ModelLoadError:
        return False
    named = meta.get("version")
    return bool(named) and named != version and not missing_files(path, meta)


def named_models(root: str | Path) -> list[str]:
    """The whole models under ``root`` named otherwise than their model version
    (:func:`named_otherwise`) that :func:`gc` leaves alone, current and the version before it
    aside (never deleted anyway), oldest first."""
    root = Path(root)
    protected = {_pointer(root), previous_version(root)}
    return [v for v in versions(root) if v not in protected and named_otherwise(root, v)]


def pointer_version(root: str | Path) -> str | None:
    """The version ``root/current`` names, or ``None`` when there is no ``current``.

    ``current`` is a file holding a version's name, as :func:`set_current` writes it. A symlink to
    a version directory under ``root`` (``ln -sfn VERSION current``, a rollback by hand) names that
    version; the next promotion replaces it with a file.

    Raises
    ------
    ModelLoadError
        When ``current`` exists but cannot be read, or is a symlink to anything but a version
        under ``root``, naming it and why. Such a pointer was taken for no pointer: the server
        kept its old model without a word and the ``models`` commands and a restarted server used
        the newest version, or ended in a traceback.
    """
    pointer = Path(root) / CURRENT_FILE
    if pointer.is_symlink() and not pointer.is_file():
        return _linked_version(Path(root), pointer)
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except PermissionError as e:
        raise ModelLoadError(
            f"{pointer} cannot be read: {e.strerror}; it must be readable by every user that "
            f"serves or manages the models (chmod a+r {pointer})"
        ) from None
    except (OSError, ValueError) as e:  # ValueError: not UTF-8
        raise ModelLoadError(
            f"{pointer} cannot be read: {getattr(e, 'strerror', None) or e}"
        ) from None
    if not name:
        # Read as no pointer, it made the newest version current, never promoted (a challenger
        # the rule refused, a set-rules draft), with no word from the server or `models list`.
        raise ModelLoadError(
            f"{pointer} is empty (a write cut short, or a file truncated by hand): it names no "
            "version; make one current with `paidan models promote VERSION --force`"
        )
    return name


def _linked_version(root: Path, pointer: Path) -> str:
    """The version a symlinked ``current`` points at, or :class:`ModelLoadError`."""
    target = Path(os.path.realpath(pointer))
    if target.parent == root.resolve() and _is_version(target):
        return target.name
    raise ModelLoadError(
        f"{pointer} is a symlink to {os.readlink(pointer)}, which is not a model version under "
        f"{root}; `current` must be a file holding a version's name, or a symlink to a version "
        "directory under the root: use `paidan models promote VERSION`"
    )


def current_version(root: str | Path) -> str | None:
    """The version named by ``root/current``, or the newest version when no pointer was set yet.

    Raises
    ------
    ModelLoadError
        When ``current`` exists but cannot be read (:func:`pointer_version`).
    """
    root = Path(root)
    name = pointer_version(root)
    if name:
        return name
    found = versions(root)
    return found[-1] if found else None


def current_dir(root: str | Path) -> Path | None:
    """Directory of the current model under ``root``, or ``None`` when the root holds no model."""
    version = current_version(root)
    if version is None:
        return None
    path = Path(root) / version
    try:
        found = Path(version).name == version and (path / METADATA_FILE).is_file()
    except PermissionError as e:  # a version another account wrote 0700: a traceback at start
        raise _unreadable_version(path, e) from None
    if not found:
        raise ModelLoadError(
            f"{Path(root) / CURRENT_FILE} names {version!r}, which is not a model under {root}"
        )
    return path


def names_current(path: str | Path | None) -> bool:
    """Whether ``path`` is the name ``current``, the root's current model, and no path here.

    ``current`` is the pointer's own name (``root/current``), so no version is called so; a file
    or directory of that name where the command runs is that path, as any existing path is.
    """
    return path is not None and Path(path).parts == (CURRENT_FILE,) and not Path(path).exists()


def named_model(root: str | Path, path: str | Path) -> Path:
    """``path``, or the version of that name under ``root`` (as `paidan models list` names it).

    A bare name that is no file or directory here but a directory under ``root`` is that version;
    so is a bare name that is the model version one registered version reports (its
    ``model_version``, :func:`resolve_version`); ``current`` is the version the root's pointer
    names (:func:`current_dir`). ``ROOT/NAME`` that does not exist is read as the bare name, so
    that a version is found by its reported model version there too and a missing one is said
    with the versions there are; ``ROOT/current``, the pointer file, is ``current``. Anything
    else (a path that exists, another path of several parts) is ``path`` itself.

    Raises
    ------
    ModelLoadError
        When a bare name (or ``ROOT/NAME``) is none of these (it was refused later as "outside
        the model root", as if it existed elsewhere), listing the registered versions; when it
        is the model version of several registered versions, naming them; or for ``current``
        when the root holds no model or its pointer cannot be read.
    """
    path = Path(path)
    in_root = (
        len(path.parts) != 1
        and "\x00" not in str(path)
        and path.parent.resolve() == Path(root).resolve()
    )
    if (in_root and path.name == CURRENT_FILE and not path.is_dir()) or names_current(path):
        found = current_dir(root)  # the pointer (file): the model it names
        if found is None:
            raise ModelLoadError(
                f"'current' names no model: the model root {root} holds none yet; train one "
                "with `paidan train DATA --out ROOT/VERSION` or start `paidan serve`"
            )
        return found
    if path.exists():
        return path
    if len(path.parts) != 1:
        if not in_root:
            return path
        # ROOT/NAME that is no directory: README's `paidan predict models/v1` before any v1 was
        # "models/v1 is not a directory", naming neither the versions there nor the way to list
        # them, as a bare name's error does.
        try:
            return Path(root) / resolve_version(root, path.name)
        except UnknownVersionError as e:
            raise no_such_model(root, str(path), e, here=False) from None
    candidate = Path(root) / path
    if candidate.is_dir() or "\x00" in str(path):  # a NUL: the loader says it is no path
        return candidate if candidate.is_dir() else path
    try:
        return Path(root) / resolve_version(root, str(path))
    except UnknownVersionError as e:
        raise no_such_model(root, str(path), e, here=True) from None


def no_such_model(
    root: str | Path, name: str, e: UnknownVersionError, *, here: bool
) -> UnknownVersionError:
    """The error for a bare ``name`` that is no directory and no registered version's.

    One wording for the commands (:func:`named_model`, ``here``: no directory where the command
    runs either) and the admin reload (a name the root has no directory of), from the error
    :func:`resolve_version` raised for it: what was given, that no version under the root has it,
    the versions there are and where to list them.
    """
    where = "no directory here" if here else "no directory"
    return UnknownVersionError(
        f"{name!r} does not exist: it is {where} and no model version under the model root "
        f"{root}{e.registered}"
    )


class UnknownVersionError(ModelLoadError):
    """No registered version has that name (directory name or reported model version)."""

    def __init__(self, message: str, registered: str = "") -> None:
        super().__init__(message + registered)
        self.registered = registered  # "; registered versions: …", or ""


def reported_version(model_dir: str | Path) -> str | None:
    """The model version a model reports in its answers (its ``metadata.json`` ``version``).

    It is the directory's name unless the model was written with ``paidan train --out
    ROOT/NAME`` or renamed; ``None`` when the metadata cannot be read or names none.
    """
    try:
        return _version_string(read_metadata(Path(model_dir)).get("version"))
    except (ModelLoadError, OSError):
        return None


def resolve_version(root: str | Path, name: str) -> str:
    """The registered version (directory name under ``root``) that ``name`` names.

    ``name`` is a version's directory name (as `paidan models list` lists it), or the model
    version a version reports (``model_version`` in every answer, feedback row and on the page)
    when exactly one registered version reports it. A directory name wins over a reported one.
    A path to a version directly under ``root`` (``models/v1``, as ``train --out`` wrote it and
    ``evaluate`` takes it) names that version.

    Raises
    ------
    ModelLoadError
        When several registered versions report ``name`` (a copied model directory), naming
        them, or when ``name`` is a path to a directory elsewhere; :class:`UnknownVersionError`
        when none has that name, listing those there are.
    """
    root = Path(root)
    found = versions(root)
    if name in found:
        return name
    if len(Path(name).parts) > 1 and Path(name).is_dir():
        # `promote models/v1` was "no model version 'models/v1'", while evaluate, predict and
        # label take the model by that path.
        path = Path(name).resolve()
        if path.parent == root.resolve() and path.name in found:
            return path.name
        raise ModelLoadError(
            f"{name} is not a version under the model root {root}: name one of the root's "
            "versions (`paidan models list`), or set PAIDAN_MODEL_ROOT to the directory holding it"
        )
    reported = {v: reported_version(root / v) for v in found}
    matches = [v for v in found if reported[v] == name]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ModelLoadError(
            f"{len(matches)} versions under {root} report model version {name!r}: "
            f"{', '.join(matches)}; name one of them by its directory name"
        )
    raise UnknownVersionError(
        f"no model version {name!r} under {root}", _registered_names(found, reported)
    )


def _registered_names(found: list[str], reported: dict[str, str | None], most: int = 12) -> str:
    """ "; registered versions: v1 (model version 2026…), …", newest last, or "" for none."""
    if not found:
        return ""
    named = [
        f"{v} (model version {reported[v]})" if reported.get(v) not in (None, v) else v
        for v in found[-most:]
    ]
    more = len(found) - len(named)
    older = f" and {more} older" if more > 0 else ""
    return f"; registered versions: {', '.join(named)}{older} (see paidan models list)"


def set_current(
    root: str | Path,
    version: str,
    *,
    record: bool = True,
    expected: str | _Unchecked | None = _Unchecked.ANY,
) -> str | None:
    """Point ``root/current`` at ``version`` atomically (write a temporary file, then rename).

    Parameters
    ----------
    root : str or Path
        The model root.
    version : str
        A version under ``root``.
    record : bool, default True
        Remember the previous ``current`` in ``registry.json`` so :func:`rollback` can return to it.
    expected : str or None, optional
        Move the pointer only if ``current`` is still this version (compare-and-swap). A promotion
        compares the challenger with the champion before it takes the lock, which it does not
        hold through that slow evaluation; another promotion may have moved ``current`` meanwhile.

    Returns
    -------
    str or None
        The previous current version.

    Raises
    ------
    ModelLoadError
        If ``version`` is not a model under ``root``.
    CurrentChangedError
        If ``current`` is not ``expected``; nothing is changed.
    """
    root = Path(root)
    with _locked(root):
        if version not in versions(root):
            raise ModelLoadError(f"no model version {version!r} under {root}")
        try:
            previous = _pointer(root)
        except ModelLoadError:
            if expected is not _Unchecked.UNREADABLE:
                raise
            previous = None  # replaced, as a forced promotion asked; nothing to record
        else:
            if expected is _Unchecked.UNREADABLE:
                raise CurrentChangedError(
                    f"another promotion (or a rollback) repaired current meanwhile (it names "
                    f"{previous}); {version} was not made current"
                )
            if expected is not _Unchecked.ANY and previous != expected:
                raise CurrentChangedError(
                    f"another promotion (or a rollback) changed current from "
                    f"{expected or 'none'} to {previous} meanwhile; {version} was not made current"
                )
        if record and previous is not None and previous != version:
            state = read_state(root)
            state["history"] = [*state["history"], previous][-MAX_HISTORY:]
            _log_event(state, "promote", version, previous)
            _write_json(root / REGISTRY_FILE, state)
        _write_pointer(root, version)
    return previous


def keep_current(root: str | Path, target: str | Path) -> None:
    """Before a new version is written at ``target``: if it lies under ``root`` and no pointer
    names the current version yet, write one naming the version that is current now.

    Without a pointer the newest version is current (:func:`current_version`), so a second
    ``paidan train --out models/v2``, a retrain that was not promoted or a ``models set-rules``
    became the served model by being written, and ``train`` called it "the first in the
    registry". A root with no version needs no pointer: its first version is current either way.
    """
    root = Path(root)
    if Path(target).resolve().parent != root.resolve() or not root.is_dir():
        return
    with _locked(root):
        pointer = root / CURRENT_FILE
        if pointer.is_symlink() or pointer.exists():  # a broken one is for `models list` to report
            return
        found = versions(root)
        if found:
            _write_pointer(root, found[-1])


def promote(root: str | Path, version: str) -> str | None:
    """Make ``version`` current, remembering the old current for :func:`rollback`; returns it."""
    return set_current(root, version, record=True)


def rollback(root: str | Path, *, to_sample: bool = False) -> tuple[str, str]:
    """Point ``current`` back at the version that was current before it.

    Each rollback steps one further back through the recorded history; versions deleted since are
    skipped. The default model trained from the bundled sample (which the city's first model
    replaced) is rolled back to only with ``to_sample``: a second rollback landed on it without a
    word, and the city's tickets were routed by a model of invented ones.

    Returns
    -------
    (str, str)
        The version that was current, and the one that is current now.

    Raises
    ------
    ModelLoadError
        If there is no current model or no earlier version to go back to, or if that version's
        files no longer pass the server's check (:func:`model.artifact.verify`); ``current`` is
        then left unchanged.
    """
    root = Path(root)
    if _pointer(root) is None:  # checked again below; a mistyped root is not created
        raise ModelLoadError(f"no current model under {root}; nothing to roll back")
    with _locked(root):
        now = _pointer(root)
        if now is None:
            raise ModelLoadError(f"no current model under {root}; nothing to roll back")
        state = read_state(root)
        history = list(state["history"])
        present = set(versions(root))
        while history:
            candidate = history.pop()
            if candidate != now and candidate in present:
                # A pointer moved to a model the server refuses left running servers on the old
                # one while `models list` named it current, and the next `paidan serve` failed.
                try:
                    verify(root / candidate, root)
                except ModelLoadError as e:
                    raise ModelLoadError(
                        f"cannot roll back to {candidate}: {e}; current is still {now}"
                    ) from None
                if not to_sample and is_sample_default(read_metadata(root / candidate)):
                    raise ModelLoadError(
                        f"the version before {now} is {candidate}, the default model trained "
                        "from the bundled sample (invented tickets, none of the city's): to "
                        "serve it all the same, `paidan models rollback --to-bundled-sample`; "
                        f"or make another version current with `paidan models promote VERSION`; "
                        f"current is still {now}"
                    )
                _log_event(state, "rollback", candidate, now)
                state["history"] = history
                _write_json(root / REGISTRY_FILE, state)
                _write_pointer(root, candidate)
                return now, candidate
        raise ModelLoadError(
            f"no earlier current version recorded under {root} to roll back to "
            "(rollback returns to the version that was current before the last promote)"
        )


def record_refusal(
    root: str | Path, version: str, champion: str, feedback_until: str | None
) -> None:
    """Remember in ``registry.json`` that the promotion rule refused ``version`` against
    ``champion``, and the time of the last feedback decision it was trained on.

    ``paidan retrain --if-new-feedback N`` counts only decisions after that time as new while
    ``champion`` is current: counted as new, a refused challenger's decisions made the nightly job
    train on them again every night, to be refused again. They stay in the feedback, so the next
    retrain (once more decisions arrive) still trains on them.
    """
    root = Path(root)
    with _locked(root):
        state = read_state(root)
        _log_event(state, "refused", version, champion, feedback_until=feedback_until)
        _write_json(root / REGISTRY_FILE, state)


def previous_version(root: str | Path) -> str | None:
    """The version :func:`rollback` would return to, or ``None``."""
    root = Path(root)
    now = _pointer(root)
    present = set(versions(root))
    for candidate in reversed(read_state(root)["history"]):
        if candidate != now and candidate in present:
            return candidate
    return None


def gc(root: str | Path, keep: int) -> tuple[list[str], list[str]]:
    """Delete old versions, keeping the ``keep`` newest plus ``current`` and the one before it.

    A version that a running process holds a :func:`lease` on is kept too (``paidan serve --model``
    or ``PAIDAN_MODEL_DIR`` may serve any version, and its workers reload it from disk; ``paidan
    label`` and ``predict`` lease the model they read).

    Parameters
    ----------
    root : str or Path
        The model root.
    keep : int
        How many of the newest versions the registry wrote (by creation time, see
        :func:`versions`; :func:`not_written_by_registry`) to keep, at least 1. Directories it did
        not write are never deleted, and never counted among them.

    Returns
    -------
    (list of str, list of str)
        The deleted versions, and those kept only because a running process serves them.

    Raises
    ------
    ModelLoadError
        When ``root`` holds no version (a mistyped root, or a cron job run from the wrong
        directory): nothing is deleted, and no directory is created there.
    """
    if keep < 1:
        raise ValueError(f"--keep must be at least 1 (got {keep})")
    root = Path(root)
    if not versions(root):
        # A cron gc against a mistyped root created it and reported "deleted 0 version(s)" every
        # night, while the real root kept every version.
        raise ModelLoadError(f"no model versions under {root}; nothing to delete")
    removed: list[str] = []
    in_use: list[str] = []
    unknown: list[str] = []
    # Directories that look like versions but that the registry did not write (a backup copy, a
    # copy cut short): deleted as old versions, they were someone's data. A whole model named
    # otherwise (`train --out ROOT/NAME`, `V.bak`) is left alone without a warning (the command
    # sums them up, named_models): named with its reason on every run, they hid a copy cut short.
    alone: list[str] = []
    with _locked(root):
        found = versions(root)
        why = {v: not_written_by_registry(root, v) for v in found}
        protected = {v for v in (_pointer(root), previous_version(root)) if v}
        # The newest `keep` of the registry's own: a backup copy or a `train --out` directory
        # counted among them, left alone, and the real version it displaced was deleted.
        protected.update([v for v in found if not why[v]][-keep:])
        for version in found:
            if version in protected:
                continue
            if why[version]:
                if not named_otherwise(root, version):
                    alone.append(f"{version} ({why[version]})")
                continue
            with _unless_leased(root, version) as free:
                if free is None:  # a server may read it: keep it
                    unknown.append(version)
                    continue
                if not free:
                    in_use.append(version)
                    continue
                # Moved out of the way first: in a root this account cannot write, deleting in
                # place emptied the version's directory and then failed to remove it. A rename
                # fails before anything is lost; a deletion cut short leaves a hidden directory
                # that the next gc names (leftovers).
                doomed = root / f".{version}.{secrets.token_hex(6)}"
                with _writing(root):
                    (root / version).rename(doomed)
                _remove_tree(doomed)
                (root / SCORES_DIR / f"{version}.json").unlink(missing_ok=True)
                (root / LEASES_DIR / version).unlink(missing_ok=True)
            removed.append(version)
        if removed:
            state = read_state(root)
            gone = set(removed)
            state["history"] = [v for v in state["history"] if v not in gone]
            _log_event(state, "gc", None, None, removed=removed)
            _write_json(root / REGISTRY_FILE, state)
    for version in removed:
        logger.info("deleted model version %s", version)
    if alone:
        logger.warning(
            "left alone %d director%s that the registry did not write as a version: %s; "
            "delete one by hand (rm -r) if it is not needed",
            len(alone),
            "y" if len(alone) == 1 else "ies",
            ", ".join(alone),
        )
    if unknown:
        logger.warning(
            "kept %d version(s) that a running paidan serve, label or predict may be reading: "
            "the model root's file system takes no locks, so whether one is in use cannot be "
            "told (%s); delete one by hand once no process uses it",
            len(unknown),
            ", ".join(unknown),
        )
    return removed, in_use


# The name of a temporary write: a model's staging directory (model.artifact._staging_dir) or a
# registry file's temporary file (_temp_file), a dot, the final name, a dot and 12 hex digits.
_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{12}$")


def leftovers(root: str | Path) -> list[tuple[Path, int]]:
    """The temporary directories and files that a killed write left under ``root`` (its own
    level, ``scores/`` and ``eval/``), each with its size in bytes.

    A write that ends by an exception removes its own; ``kill -9``, the OOM killer or a power
    cut leave them, a model's staging directory as large as the model. A write in progress has
    one too, so they are named, never deleted.
    """
    root = Path(root)
    found: list[tuple[Path, int]] = []
    for directory in (root, root / SCORES_DIR, root / EVAL_DIR):
        try:
            entries = sorted(directory.iterdir())
        except OSError:
            continue
        for path in entries:
            if not _TEMPORARY.match(path.name) or path.is_symlink():
                continue
            try:
                files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
                found.append((path, sum(p.stat().st_size for p in files)))
            except OSError:
                found.append((path, 0))
    return found


class Lease:
    """A process's shared lock on the version it serves; :func:`gc` keeps leased versions.

    The lock is the kernel's (``flock``), so it ends with the process however the process ends: a
    lease is held only by a live process. Obtain one with :func:`lease`.
    """

    def __init__(self, version: str | None = None, fd: int | None = None) -> None:
        self.version = version
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (closing the file does); releasing twice is harmless."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def lease(root: str | Path, model_dir: str | Path) -> Lease:
    """Lease the version in ``model_dir`` until :meth:`Lease.release` or the process exits.

    Take it *before* loading the model: :func:`gc` deletes a version only while it holds the same
    file locked exclusively, so either it deleted the version first (and this refuses) or it will
    skip it. Several processes, and several leases in one process (a reload of the same version),
    share the lock. The lease file lives under ``<root>/.leases``, never in the model directory,
    which is not modified once written.

    Parameters
    ----------
    root : str or Path
        The model root.
    model_dir : str or Path
        The served model. Anything but a version directly under ``root`` (:func:`gc` never deletes
        it; a symlink, a missing directory: the loader refuses them, saying why) gets an empty
        lease; so does a version whose lease file cannot be made (a root the server may only
        read), with a warning.

    Raises
    ------
    ModelLoadError
        If the version was deleted by :func:`gc` while this waited for the lock.
    """
    root = Path(root)
    path = Path(os.path.normpath(Path(model_dir).absolute()))
    try:
        if (
            path.parent.resolve() != root.resolve()
            or path.is_symlink()
            or not (path / METADATA_FILE).is_file()
        ):
            return Lease()
    except PermissionError:  # a directory this user cannot read: the loader refuses it, saying so
        return Lease()
    version = path.name
    fd = None
    try:
        fd = _open_lease(root, version)
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits while gc deletes this very version
    except OSError as e:
        if fd is not None:
            os.close(fd)
        logger.warning(
            "cannot lease model version %s (%s); `paidan models gc` may delete it while it is "
            "served",
            version,
            e,
        )
        return Lease()
    if not (path / METADATA_FILE).is_file():
        os.close(fd)
        raise ModelLoadError(
            f"{path} is no longer a model under {root} (deleted by `paidan models gc` meanwhile?)"
        )
    return Lease(version, fd)


@dataclass
class VersionInfo:
    """One version as ``paidan models list`` shows it."""

    version: str
    created: str | None
    current: bool
    previous: bool
    rows: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, float | None] = field(default_factory=dict)
    eval_sha256: str | None = None
    labels: dict[str, int] = field(default_factory=dict)
    # Scored on the current frozen set by an older paidan's rule (SCORE_RULE): no metrics shown.
    stale: bool = False
    # The version its answers, feedback rows and the page report (metadata's ``version``): the
    # directory's name unless written with `train --out ROOT/NAME`; None when unreadable.
    model_version: str | None = None
    # Frozen tickets the version was trained on, of how many (its scores on the current set): a
    # version trained on them lists inflated figures. None: not scored on the current set, so not
    # known (a 0 read as "saw none" for a `train --out` model trained on every frozen ticket).
    seen_eval_rows: int | None = None
    eval_rows: int = 0
    # How many dispatch rules it applies (paidan train --rules), and the version it was written
    # from by `paidan models set-rules` (None: trained).
    rules: int = 0
    derived_from: str | None = None
    # The rows its fit used, of ``rows``: fewer when validation dropped repeated tickets or rows
    # without text (``training_data.validation.rows_used``); None when its metadata lacks it.
    rows_used: int | None = None
    # Files its metadata lists that are not there (a copy cut short): it cannot be served.
    missing_files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "model_version": self.model_version,
            "created": self.created,
            "current": self.current,
            "previous": self.previous,
            "rows": self.rows,
            "rows_used": self.rows_used,
            "labels": self.labels,
            "metrics": self.metrics,
            "eval_sha256": self.eval_sha256,
            "stale": self.stale,
            "seen_eval_rows": self.seen_eval_rows,
            "rules": self.rules,
            "derived_from": self.derived_from,
            "missing_files": self.missing_files,
        }


def list_versions(
    root: str | Path,
    same_truth: Callable[[list[str]], dict[str, dict[str, Any]]] | None = None,
) -> list[VersionInfo]:
    """Every version with its creation time, training rows per source and frozen-set macro-F1.

    Metrics are those stored in ``scores/<version>.json`` for the *current* frozen evaluation set;
    a version not yet scored on it has none, and neither has one scored on it by an older paidan's
    rule (``stale``, see :data:`SCORE_RULE`; ``paidan models list --rescore`` scores it again), so
    that figures of two rules are never listed side by side.

    The figures are comparable between versions (:func:`shared_macro_f1s`): each is averaged over
    the same labels, not over the labels that one version knows, which would flatter a version that
    never learnt a department of the frozen set.

    ``same_truth`` (``training.compare.same_truth_scores`` on this root, which ``paidan models
    list`` passes) scores the versions of one taxonomy on the same true labels, as a comparison
    scores its two, so that each version's figure is the comparison's; without it, each version's
    own stored scores are averaged so.
    """
    root = Path(root)
    now = current_version(root)
    before = previous_version(root)
    eval_sha = frozen_eval_sha(root)
    out = []
    fresh: dict[str, dict[str, Any]] = {}
    for version in versions(root):
        try:
            meta = read_metadata(root / version)
        except ModelLoadError as e:
            logger.warning("%s", e)
            meta = {}
        data = meta.get("training_data", {})
        rows = data.get("sources") or {"history": int(data.get("rows", 0))}
        used = (data.get("validation") or {}).get("rows_used")
        scores = read_scores(root, version)
        stale = False
        if scores is not None and eval_sha is not None and scores.get("eval_sha256") == eval_sha:
            stale = any(scores.get(k) != v for k, v in SCORE_RULE.items())
            if not stale:
                fresh[version] = scores
        out.append(
            VersionInfo(
                version=version,
                created=meta.get("created"),
                current=version == now,
                previous=version == before,
                rows={k: int(v) for k, v in rows.items()},
                metrics={},  # the shared macro-F1s, once every version is read
                eval_sha256=scores.get("eval_sha256") if scores else None,
                labels={h: len(v.get("labels", [])) for h, v in meta.get("heads", {}).items()},
                stale=stale,
                model_version=_version_string(meta.get("version")),
                seen_eval_rows=(
                    int(fresh[version].get("seen_eval_rows", 0) or 0) if version in fresh else None
                ),
                eval_rows=int(fresh.get(version, {}).get("n", 0) or 0),
                rules=int((data.get("rules") or {}).get("rows", 0) or 0),
                derived_from=_version_string((meta.get("derived_from") or {}).get("version")),
                rows_used=used if isinstance(used, int) else None,
                missing_files=missing_files(root / version, meta) if meta else [],
            )
        )
    shared = shared_macro_f1s(fresh, same_truth)
    for info in out:
        info.metrics = {f"{head}_macro_f1": f1 for head, f1 in shared.get(info.version, {}).items()}
    return out


def _version_string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def shared_macro_f1s(
    scores: dict[str, dict[str, Any]],
    same_truth: Callable[[list[str]], dict[str, dict[str, Any]]] | None = None,
) -> dict[str, dict[str, float | None]]:
    """Per version and head, macro-F1 on the frozen set over the same labels for every version.

    A version's stored ``macro_f1`` averages over the frozen set's true labels that version knows:
    one that never learnt a department (trained before it existed) had it left out and read
    higher than one that learnt it. Here every version of the same taxonomy (``mapping_sha256``)
    is averaged over the true labels (support on the frozen set) that any of them knows, a label a
    version does not know being an F1 of 0 for it, as the champion–challenger comparison reads two
    versions (``training.compare.shared_macro_f1``); a label none knows (a misspelling) is left
    out. Scores without per-class figures keep their own ``macro_f1``. A head none of whose true
    labels any version knows has no macro-F1 (``None``, as ``paidan evaluate`` reports it).
    ``same_truth``, given a taxonomy's versions, returns their scores on the same true labels
    (see :func:`list_versions`), averaged in place of ``scores``.
    """
    groups: dict[Any, list[str]] = {}
    for version, s in scores.items():
        groups.setdefault(s.get("mapping_sha256"), []).append(version)
    out: dict[str, dict[str, float | None]] = {}
    for members in groups.values():
        if same_truth is not None:
            scores = {**scores, **same_truth(members)}
        over: dict[str, list[str]] = {}  # per head
        for head in {h for v in members for h in scores[v].get("heads", {})}:
            over[head] = shared_labels(
                scores[v]["heads"][head] for v in members if head in scores[v]["heads"]
            )
        for v in members:
            out[v] = {}
            for head, r in scores[v].get("heads", {}).items():
                if not r.get("per_class"):
                    out[v][head] = own_macro_f1(r)
                    continue
                out[v][head] = mean_f1(r, over[head])
    return out


def shared_labels(head_scores: Iterable[dict[str, Any]]) -> list[str]:
    """The true labels (support on the frozen set) that any of these scores of a head knows, sorted.

    The one rule for the labels a macro-F1 is comparable over, for ``models list``
    (:func:`shared_macro_f1s`) and promotion (``training.compare.shared_macro_f1``) alike: a label
    none knows (a misspelling) is left out.
    """
    got = list(head_scores)
    knows = {label for r in got for label in r.get("labels") or []}
    return sorted(
        {
            label
            for r in got
            for label, m in (r.get("per_class") or {}).items()
            if label in knows and m.get("support")
        }
    )


def own_macro_f1(head_score: dict[str, Any]) -> float | None:
    """One head's stored ``macro_f1``: ``None`` when it is undefined (no true label the model
    knows, ``training.metrics.F1_UNDEFINED``)."""
    value = head_score.get("macro_f1")
    return None if value is None else float(value)


def mean_f1(head_score: dict[str, Any], over: Sequence[str]) -> float | None:
    """Macro-F1 of one head's scores over the labels ``over``, a label it does not know being 0.

    No labels to average over (no true label any model knows): its own stored ``macro_f1``
    (:func:`own_macro_f1`, ``None`` when undefined).
    """
    import numpy as np

    if not over:
        return own_macro_f1(head_score)
    per_class = head_score.get("per_class") or {}
    return float(np.mean([per_class.get(label, {}).get("f1", 0.0) for label in over]))


# -- registry-side facts -----------------------------------------------------------------------


def read_state(root: str | Path) -> dict[str, Any]:
    """``registry.json``: ``history`` (earlier current versions, oldest first) and ``events``."""
    path = Path(root) / REGISTRY_FILE
    state: dict[str, Any] = {"history": [], "events": []}
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"{path} cannot be read as JSON: {e}") from e
        # A hand-edited file of another shape was a TypeError later, or ("history": "v1") read
        # as one version per character, so that rollback lost its way and gc deleted a version.
        if not isinstance(data, dict):
            raise ModelLoadError(f"{path}: expected a JSON object with history and events")
        for key, kind in (("history", str), ("events", dict)):
            value = data.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, kind) for v in value):
                raise ModelLoadError(
                    f"{path}: {key!r} must be a list of "
                    + ("version names" if kind is str else "objects")
                )
        state.update(data)
    return state


def scores_path(root: str | Path, version: str) -> Path:
    """Where a version's frozen-set scores are kept."""
    return Path(root) / SCORES_DIR / f"{version}.json"


def read_scores(root: str | Path, version: str) -> dict[str, Any] | None:
    """A version's stored scores, or ``None``."""
    path = scores_path(root, version)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        logger.warning("ignoring unreadable scores %s: %s", path, e)
        return None


def write_scores(root: str | Path, version: str, scores: dict[str, Any]) -> Path:
    """Store a version's scores atomically."""
    path = scores_path(root, version)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_json(path, scores)
    return path


def frozen_eval_path(root: str | Path) -> Path:
    """Path of the frozen evaluation set (it may not exist yet)."""
    return Path(root) / EVAL_DIR / EVAL_DATA_FILE


def frozen_eval_info(root: str | Path) -> dict[str, Any] | None:
    """The frozen set's facts (``sha256``, ``rows``, ``created``, ``source``), or ``None``.

    Raises
    ------
    ModelLoadError
        When ``eval/frozen.json`` cannot be read as a JSON object holding the set's SHA-256 (a
        truncated or hand-edited file was a traceback in ``models list``, ``promote`` and
        ``retrain``); the message names the file and how to freeze the set again.
    """
    path = Path(root) / EVAL_DIR / EVAL_META_FILE
    data = frozen_eval_path(root)
    if not path.is_file() or not data.is_file():
        return None
    fix = (
        "freeze the evaluation set again with `paidan models freeze-eval DATA --force` "
        f"(DATA may be {data} itself, if you trust it)"
    )
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{path} cannot be read as JSON ({e}); {fix}") from None
    if not isinstance(info, dict) or not isinstance(info.get("sha256"), str) or not info["sha256"]:
        raise ModelLoadError(f"{path}: expected a JSON object with the set's sha256; {fix}")
    return info


def frozen_eval_sha(root: str | Path) -> str | None:
    """SHA-256 of the frozen evaluation set, or ``None`` when none is frozen."""
    info = frozen_eval_info(root)
    return info["sha256"] if info else None


class RetrainRunningError(RuntimeError):
    """Another ``paidan retrain`` holds the root's retrain lock."""


@contextmanager
def retrain_lock(root: str | Path) -> Iterator[None]:
    """Hold ``root``'s retrain lock for a whole retrain, or raise :class:`RetrainRunningError`.

    Two retrains at once (the nightly job and one run by hand) each trained the same challenger,
    minutes of every core, and registered it twice. The lock is the kernel's (``flock``): it ends
    with the process however it ends. The file holds the holder's pid and start time, for the
    refusal to name. On a root that does not exist yet, or a file system without locks, the run
    goes on unlocked (the first retrain creates the root; the registry's own lock still serialises
    the pointer).
    """
    root = Path(root)
    try:
        fd = os.open(root / RETRAIN_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # no root yet, or one this account cannot write: said where it writes
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = True
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
            named = f" (pid {holder[0]}, since {holder[1]})" if len(holder) >= 2 else ""
            raise RetrainRunningError(
                f"another paidan retrain is running on {root}{named}: wait for it to end (a "
                "nightly job may be the other), then run this one if it is still needed; two at "
                "once would each train the same challenger"
            ) from None
        except OSError:  # "No locks available" (some network file systems)
            held = False
        if held:
            started = datetime.now(UTC).isoformat(timespec="seconds")
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {started}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


@contextmanager
def locked(root: str | Path) -> Iterator[None]:
    """Hold the registry's lock (the one pointer and ``registry.json`` changes take); not re-entrant."""
    with _locked(Path(root)):
        yield


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file and a rename."""
    _write_json(Path(path), data)


# -- internals ---------------------------------------------------------------------------------


def _creation_key(path: Path) -> tuple[float, bool, str]:
    """When the version in ``path`` was created (seconds since the epoch), whether it is named as
    the model version its metadata names, then its name.

    Of two versions created at the same time, one named as its metadata says is the newer: the
    other is a copy of it (``cp -r V V.bak``), whose name sorted after V's, so that the backup
    was taken for the newest version (the implicit current, served and written into the pointer).
    """
    try:
        meta = json.loads((path / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = None
    named = isinstance(meta, dict) and meta.get("version") == path.name
    try:
        created = datetime.fromisoformat(meta["created"])
        if created.tzinfo is None:  # written by hand without a zone: taken as UTC, as paidan writes
            created = created.replace(tzinfo=UTC)
        return created.timestamp(), named, path.name
    except (ValueError, KeyError, TypeError):
        pass
    try:
        return path.stat().st_mtime, named, path.name
    except OSError:  # deleted meanwhile: first, so that nothing counts it among the newest
        return float("-inf"), named, path.name


def _pointer(root: Path) -> str | None:
    pointer = root / CURRENT_FILE
    if pointer.is_file():
        return pointer_version(root)
    return current_version(root)


def _temp_file(directory: Path, prefix: str) -> tuple[int, str]:
    """Like :func:`tempfile.mkstemp`, but the file gets a normal file's mode (0644 less the umask).

    mkstemp's 0600 was kept by the rename: ``current`` and ``registry.json`` written by another
    account (``sudo paidan models promote``, root's cron) could not be read by the server's user,
    which then ignored the promotion and failed at its next start.
    """
    for _ in range(100):
        path = directory / f"{prefix}{secrets.token_hex(6)}"
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), str(path)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name for {prefix}* in {directory}")


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Turn an ``OSError`` while writing ``path`` into a :class:`RegistryWriteError` naming it:
    a full disk ended `paidan models promote` in a traceback, the failing write or fsync naming
    no file at all."""
    try:
        yield
    except RegistryWriteError:
        raise
    except OSError as e:
        raise RegistryWriteError(e.errno, e.strerror or str(e), str(path)) from e


def _write_pointer(root: Path, version: str) -> None:
    with _writing(root / CURRENT_FILE):
        fd, tmp = _temp_file(root, ".current.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(version + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, root / CURRENT_FILE)
        except BaseException:  # a temporary pointer was left behind on a full disk
            Path(tmp).unlink(missing_ok=True)
            raise
    _fsync_dir(root)


def _write_json(path: Path, data: Any) -> None:
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _temp_file(path.parent, f".{path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, ensure_ascii=False, indent=2)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Serialise read-modify-write of the pointer and ``registry.json`` between processes."""
    root.mkdir(parents=True, exist_ok=True)
    # Read-only, as a lease: flock needs no write access, and the lock file another account made
    # (0644) stopped the service user's `models rollback` with a PermissionError.
    fd = os.open(root / LOCK_FILE, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            locked = True
        except OSError as e:  # a file system without locks (some network ones): ENOLCK, EOPNOTSUPP
            # It was "Error: [Errno 37] No locks available" for every promote, rollback and gc.
            logger.warning(
                "cannot lock %s (%s): the model root's file system takes no locks, so this "
                "command is not serialised with another one changing the registry at the same "
                "moment; a model root on a local disk has them serialised",
                root / LOCK_FILE,
                e.strerror or e,
            )
            locked = False
        try:
            yield
        finally:
            if locked:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _open_lease(root: Path, version: str) -> int:
    # Read-only: flock needs no write access, so a server may lock a lease file gc created.
    with _writing(root / LEASES_DIR):  # a root it cannot write: named, not a bare [Errno 13]
        (root / LEASES_DIR).mkdir(exist_ok=True)
    return os.open(root / LEASES_DIR / version, os.O_RDONLY | os.O_CREAT, 0o644)


@contextmanager
def _unless_leased(root: Path, version: str) -> Iterator[bool | None]:
    """Whether no process leases ``version``; while it is ``True``, none can take a lease.

    ``None`` when the lease cannot be tested: a file system without locks.
    """
    fd = _open_lease(root, version)
    try:
        free: bool | None = True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            free = False
        except OSError:
            free = None
        yield free
    finally:
        os.close(fd)  # drops the lock


def _log_event(
    state: dict[str, Any], action: str, version: str | None, previous: str | None, **extra: Any
) -> None:
    event = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "action": action,
        "version": version,
        "previous": previous,
        **extra,
    }
    state["events"] = [*state.get("events", []), event][-MAX_HISTORY:]


def _remove_tree(path: Path) -> None:
    # Model files are read-only; make them writable so rmtree can unlink them.
    for p in path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            p.chmod(stat.S_IWUSR | stat.S_IRUSR)
    shutil.rmtree(path)
