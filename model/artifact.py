"""A trained model is a directory, written once and never modified, and loaded by one verified loader.

Layout (file names are constants)::

    <version>/
        metadata.json     version, labels, thresholds, metrics, config, library versions, file hashes
        serving.joblib    the router's prediction path without scikit-learn (Router.for_serving):
                          the compiled features and heads, the fused weights, the latent view and
                          the similar-ticket index
        router.joblib     the rest of the fitted :class:`model.router.Router`: its scikit-learn
                          objects (Router.detached), which training tools read
        userdict.txt      the jieba user dictionary it was trained with
        stopwords.txt     the stopword list it was trained with
        remits.csv        the remits (departments' and categories') it was trained with, if any

A server loads ``serving.joblib`` alone (``load_router(..., serving=True)``), so it never imports
scikit-learn, whose import took about 1.8 s of a cold start; every other caller gets the whole
router, both files joined. A model whose heads cannot all be compiled, and every model written
before the serving file existed, has ``router.joblib`` alone, holding the whole router; both kinds
of caller then load that.

A pickle is code. :func:`load_router` therefore checks every file's SHA-256 and the library versions
before it unpickles anything, and refuses symlinks and paths outside the configured model root.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import platform
import secrets
import shutil
import stat
import tempfile
import warnings
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.text import counted
from model.tokenizer import BACKENDS, BackendMissingError, find_backend, import_backend

# joblib (and numpy) and the router (SciPy) are imported where a model is written or read, not
# with this module: the supervisor of `paidan serve --workers N` checks a model, reads none.
if TYPE_CHECKING:
    from model.router import Router

logger = logging.getLogger(__name__)

METADATA_FILE = "metadata.json"
ROUTER_FILE = "router.joblib"
SERVING_FILE = "serving.joblib"
USERDICT_FILE = "userdict.txt"
STOPWORDS_FILE = "stopwords.txt"
REMITS_FILE = "remits.csv"  # the remits it was trained with (training/remits.py)
RULES_FILE = "rules.csv"  # the dispatch rules it was trained with (training/rules.py)
# Format 2: the similar-ticket index stores snippets (model.router.PackedTexts), a class a paidan
# before it cannot unpickle; it refuses such a model in one line (_check_format) instead.
FORMAT_VERSION = 2
# Libraries whose pickles must match the running versions (major.minor) to be trusted to unpickle.
PINNED_LIBRARIES = ("scikit-learn", "numpy", "scipy", "jieba", "rjieba")


class ModelLoadError(RuntimeError):
    """A model directory cannot be trusted or read; the message says which file and why."""


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries a model's pickle depends on."""
    versions = {"python": platform.python_version()}
    for name in (*PINNED_LIBRARIES, "joblib", "opencc", "paidan"):
        versions[name] = _library_version(name)
    return versions


def _library_version(name: str) -> str:
    from importlib.metadata import version

    try:
        return version(name)
    except Exception:  # not installed as a distribution (e.g. running from a checkout)
        return "unknown"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# How check_not_input ends for an output that is an input file, and for one inside an input
# directory (which replaces nothing, but is read back as a ticket file by the next run).
REPLACED_INPUT_ADVICE = "name another file (the input would be replaced)"
INSIDE_INPUT_ADVICE = "name a file outside it (the next run would read it as input)"


class ModelWriteError(OSError):
    """A model directory could not be written (a full disk, a quota, a permission); ``str()``
    names the directory and the reason, without the ``[Errno N]`` of a plain ``OSError``, which
    named no file at all when ``joblib`` or a ``write`` failed."""

    def __str__(self) -> str:
        advice = (
            "; free space on that disk and run the command again"
            if self.errno in (errno.ENOSPC, errno.EDQUOT)
            else ""
        )
        return f"cannot write the model {self.filename}: {self.strerror} (nothing of it was kept{advice})"


class OutputPathError(ValueError):
    """An output path that cannot be written; the message names the option and why."""


def probe_writable(directory: Path) -> None:
    """Create ``directory`` if missing and a probe file in it, so that what cannot be written is
    found by trying rather than guessed from permission bits (root passes those everywhere,
    ``/proc`` or a read-only mount still refuses).

    Raises
    ------
    OSError
        As creating the directory or the file raised it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".paidan-probe-"):
        pass


def check_writable(path: str | Path, option: str, directory: bool = False) -> None:
    """Refuse, before any long work, an output that cannot be written.

    A file output must not be a directory; a directory output must not be a file. In both cases a
    file must be creatable where the output goes (its parent, created if missing), which is tried
    with a probe file rather than guessed from permission bits (root passes those everywhere,
    ``/proc`` still refuses).

    Raises
    ------
    OutputPathError
        Naming ``option``, the path and the reason.
    """
    path = Path(path)
    if directory and path.exists() and not path.is_dir():
        raise OutputPathError(f"{option} {path} is a file, not a directory")
    if not directory and path.is_dir():
        raise OutputPathError(f"{option} {path} is a directory; name a file")
    parent = path.parent
    try:
        probe_writable(parent)
    except OSError as e:
        # A file where a directory of the path must be (a file typed for the directory, `--out
        # export.csv/out.csv`): mkdir says "File exists" or "Not a directory", naming neither.
        if isinstance(e, (FileExistsError, NotADirectoryError)):
            found = next((p for p in (parent, *parent.parents) if p.exists()), None)
            if found is not None and not found.is_dir():
                raise OutputPathError(
                    f"{option} {path} cannot be written: {found} is a file, not a directory"
                ) from None
        raise OutputPathError(
            f"{option} {path} cannot be written: {e.strerror or e} ({parent})"
        ) from None


def check_model_root(root: str | Path) -> None:
    """Refuse, before any long work, a model root in which no version can be written (``train``
    without ``--out``, ``retrain``, ``models set-rules``), naming ``PAIDAN_MODEL_ROOT``: a root
    another account owns was found once the fit was done, as "--out ROOT/V cannot be written",
    an option never given. Tried with a probe file, as :func:`check_writable` does.

    Raises
    ------
    OutputPathError
        Naming the root, the variable and the reason.
    """
    try:
        probe_writable(Path(root))
    except OSError as e:
        raise OutputPathError(
            f"the model root {root} (PAIDAN_MODEL_ROOT) cannot be written: {e.strerror or e}; "
            "nothing was trained: make it writable for this user, or name another with "
            "PAIDAN_MODEL_ROOT"
        ) from None


def check_not_in_model_dir(path: str | Path, option: str) -> None:
    """Refuse a report or output file ``path`` inside a model directory (one holding
    ``metadata.json`` and a model file), which is never modified once written.

    `paidan drift --out models/v1/drift.json` wrote into a version other than the one it compared
    (that one is refused as its input), and `label --out` and `evaluate --report` likewise.

    Raises
    ------
    OutputPathError
        Naming ``option``, the path and the model directory.
    """
    path = Path(path)
    for place in (path.resolve(), *path.resolve().parents):
        if (place / METADATA_FILE).is_file() and (
            (place / SERVING_FILE).is_file() or (place / ROUTER_FILE).is_file()
        ):
            raise OutputPathError(
                f"{option} {path} is inside the model directory {place}, which is never "
                "modified once written; name a place outside it"
            )


# A file name's limit where the file system does not say (Linux's ext4, xfs, btrfs: 255 bytes).
NAME_MAX = 255


def _name_max(directory: Path) -> int:
    """The bytes a file name may have in ``directory`` (or the nearest existing one above it)."""
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    try:
        return int(os.pathconf(directory, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # not said; Windows has no pathconf
        return NAME_MAX


def check_name_lengths(given: str | Path, files: Iterable[str | Path], option: str) -> None:
    """Refuse, before the work, an output one of whose files' names is longer than a file name
    may be where it goes.

    An output writes files named after it (``OUTPUT.departments.png``, ``REPORT.confusion-
    department.png``): a name of 80 Chinese characters is a valid 244-byte name, but some of these
    were over the 255 bytes Linux allows, and the command failed after all its work (evaluate in a
    traceback; label advising a ``--resume`` that failed the same way every time).

    Raises
    ------
    OutputPathError
        Naming ``option``, ``given``, the longest such name, its bytes and the limit.
    """
    longest = max((Path(f) for f in files), key=lambda f: len(os.fsencode(f.name)))
    size = len(os.fsencode(longest.name))
    limit = _name_max(longest.parent)
    if size > limit:
        # As text, the bytes of a name that is not UTF-8 as \xNN (model.tickets.printable); a GBK
        # locale's Chinese names are text, shown as typed.
        shown, name = (
            str(n).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            for n in (given, longest.name)
        )
        what = "it" if longest.name == Path(given).name else f"{name}, written beside it,"
        try:
            chinese = f" (a Chinese character is {len(os.fsencode('中'))} bytes)"
        except UnicodeError:
            chinese = ""
        cut = size - limit
        raise OutputPathError(
            f"{option} {shown}: the name is too long: {what} is {size} bytes, over the {limit} "
            f"bytes a file name may have here; give a name at least {counted(cut, 'byte')} "
            f"shorter{chinese}"
        )


def check_not_input(
    outputs: Iterable[str | Path],
    inputs: Iterable[str | Path],
    option: str,
    advice: str | None = None,
    inside_advice: str | None = None,
) -> None:
    """Refuse an output that is one of the inputs, or a file inside an input directory.

    ``outputs`` are the path the user gave, then the files written beside it. The message ends with
    ``advice`` when the output is an input file (default :data:`REPLACED_INPUT_ADVICE`), and with
    ``inside_advice`` when it is an input directory or inside one (default ``advice`` when given,
    else :data:`INSIDE_INPUT_ADVICE`).

    ``paidan evaluate DATA --report DATA`` read the labelled set and then replaced it with the
    JSON report; the reports' siblings (Markdown, PNGs) could do the same to another input. A
    report written into an input directory replaces nothing: it was said to, while the next run
    reads it back as a ticket file.

    Raises
    ------
    OutputPathError
        Naming ``option``, the output and the input it would overwrite or be written into.
    """
    inside_advice = inside_advice or advice or INSIDE_INPUT_ADVICE
    advice = advice or REPLACED_INPUT_ADVICE
    resolved = [(Path(p), Path(p).resolve()) for p in inputs]
    files = [Path(p) for p in outputs]
    for output in files:
        target = output.resolve()
        for given, source in resolved:
            # os.path.isdir: an input that cannot be looked at (in a directory that cannot be
            # entered) is no directory here; reading it says so (model.tickets.named_paths).
            if target == source or (os.path.isdir(given) and target.is_relative_to(source)):
                where = "is" if target == source else "is inside"
                what = (
                    f"{files[0]}"
                    if output == files[0]
                    else f"{files[0]} would write {output}, which"
                )
                end = inside_advice if os.path.isdir(given) else advice
                raise OutputPathError(f"{option} {what} {where} the input {given}; {end}")


def check_utf8_name(
    path: str | Path,
    option: str,
    why: str = "the report names its files in UTF-8 text",
) -> None:
    """Refuse an output whose name is not UTF-8 (a GBK name typed or pasted on Linux).

    A report names its files inside its text (the Markdown links its plots), which is UTF-8:
    such a name wrote the JSON and the plots and then failed on the Markdown with a traceback.
    ``why`` says what cannot hold the name.

    Raises
    ------
    OutputPathError
        Naming ``option`` and the path, its undecodable bytes as ``\\xNN``.
    """
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise OutputPathError(
            f"{option} {shown}: the file name is not UTF-8, and {why}; give a UTF-8 name"
        ) from None


def check_not_directory_name(path: str | Path, option: str, example: str) -> None:
    """Refuse an output file given with a trailing path separator (``reports/``).

    The separator says "a directory", but :class:`~pathlib.Path` drops it, and a file named
    ``reports`` was written (with ``reports.md`` and the plots beside it).

    Raises
    ------
    OutputPathError
        Naming ``option``, the path and a file name to give instead.
    """
    text = str(path)
    if text.endswith(("/", os.sep)):
        raise OutputPathError(
            f"{option} {text} names a directory; name the file to write, e.g. "
            f"{text.rstrip('/' + os.sep) or '.'}/{example}"
        )


# Every file a model directory holds (save_router writes these and nothing else).
MODEL_FILES = frozenset(
    {
        METADATA_FILE,
        ROUTER_FILE,
        SERVING_FILE,
        USERDICT_FILE,
        STOPWORDS_FILE,
        REMITS_FILE,
        RULES_FILE,
    }
)


def not_a_model_directory(path: str | Path) -> str | None:
    """Why the existing directory ``path`` is not a model directory, or ``None`` when it is one.

    A model directory has a ``metadata.json`` at its top and holds nothing but :data:`MODEL_FILES`,
    as regular files: no subdirectory, no symlink, no file of another name.
    """
    path = Path(path)
    others = sorted(
        (
            p
            for p in path.iterdir()
            if p.name not in MODEL_FILES or p.is_symlink() or not p.is_file()
        ),
        key=lambda p: p.name,
    )
    if others:
        shown = [p.name + ("/" if p.is_dir() and not p.is_symlink() else "") for p in others]
        more = f" and {len(shown) - 3} more" if len(shown) > 3 else ""
        return f"it holds {', '.join(shown[:3])}{more}, which no model directory holds"
    if not (path / METADATA_FILE).is_file():
        return f"it has no {METADATA_FILE}"
    return None


def check_out_dir(out_dir: str | Path, force: bool = False) -> None:
    """Refuse ``out_dir`` unless it is absent, empty, or an earlier model directory ``force`` replaces.

    Replacing deletes the directory whole, so ``force`` replaces only what :func:`save_router` wrote
    (:func:`not_a_model_directory`): ``paidan train --out models --force`` deleted the model root
    with every version and the registry, and ``--out history --force`` the training data just read.
    A symlink is refused too: a model directory is a real directory.

    :func:`save_router` checks it; training checks it first too, so that a long training run is
    not wasted on a directory it may not write.

    Raises
    ------
    FileExistsError
        If ``out_dir`` is an earlier model directory and ``force`` is false.
    OutputPathError
        If ``out_dir`` is a file or a symlink, no directory can be made where it goes, or it is a
        non-empty directory that is not a model directory (whatever ``force`` says).
    """
    out = Path(out_dir)
    if out.is_symlink():
        raise OutputPathError(
            f"--out {out} is a symlink; a model directory is a real directory: name a new one"
        )
    check_writable(out, "--out", directory=True)
    if not (out.exists() and any(out.iterdir())):
        return
    why = not_a_model_directory(out)
    if why is not None:
        raise OutputPathError(
            f"--out {out} already exists and is not a model directory ({why}); only an earlier "
            "model directory is ever replaced, and this one is left as it is: name a new or "
            "empty directory for the model"
        )
    if not force:
        raise FileExistsError(
            f"{out} already exists and is not empty; a model directory is never overwritten "
            "(choose another --out, or pass --force to replace it)"
        )


# What save_router writes into metadata.json itself, whatever the metadata it is given says.
SAVE_WRITTEN = ("format_version", "version", "created", "libraries", "files")


def save_router(
    router: Router,
    out_dir: str | Path,
    metadata: dict[str, Any],
    resources: dict[str, str | Path | bytes | None] | None = None,
    force: bool = False,
) -> Path:
    """Write a model directory atomically and make its files read-only.

    Parameters
    ----------
    router : Router
        The fitted router.
    out_dir : str or Path
        The model directory itself; ``metadata.json`` will sit at its top.
    metadata : dict
        Training facts (labels, counts, data hash, metrics, thresholds, config). Version, creation
        time, library versions and file hashes are added here (:data:`SAVE_WRITTEN`, replacing any
        given).
    resources : dict, optional
        Files to copy into the directory, by their constant name (``USERDICT_FILE``,
        ``STOPWORDS_FILE``), or the bytes to write there; ``None`` values are skipped.
    force : bool, default False
        Replace an earlier model directory at ``out_dir``. Without it such a directory is refused;
        any other non-empty directory is refused either way (:func:`check_out_dir`).

    Returns
    -------
    Path
        The written directory.

    Raises
    ------
    FileExistsError
        If ``out_dir`` is an earlier model directory and ``force`` is false.
    OutputPathError
        If ``out_dir`` is a non-empty directory that is not a model directory (see
        :func:`check_out_dir`).
    ValueError
        If ``router`` was loaded for serving (it has no scikit-learn objects to write).
    """
    if router.features is None:
        raise ValueError(
            "this router was loaded for serving and lacks its scikit-learn objects; load the model "
            "whole (load_router without serving=True) to save it"
        )
    out = Path(out_dir)
    check_out_dir(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = _staging_dir(out)
    import joblib

    try:
        # Uncompressed, so that load_router can memory-map the weights (see there).
        serving = router.for_serving()
        if serving is None:
            joblib.dump(router, staging / ROUTER_FILE, compress=0)
        else:
            joblib.dump(serving, staging / SERVING_FILE, compress=0)
            joblib.dump(router.detached(), staging / ROUTER_FILE, compress=0)
        for name, src in (resources or {}).items():
            if isinstance(src, bytes):
                (staging / name).write_bytes(src)
            elif src is not None:
                shutil.copyfile(src, staging / name)
        meta = {
            "format_version": FORMAT_VERSION,
            "version": router.version,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "libraries": library_versions(),
            # These facts are this write's: a model's metadata passed on (a version derived from
            # another, `paidan models set-rules`) does not carry the other's.
            **{k: v for k, v in metadata.items() if k not in SAVE_WRITTEN},
            "files": {p.name: sha256_file(p) for p in sorted(staging.iterdir()) if p.is_file()},
        }
        (staging / METADATA_FILE).write_text(
            json.dumps(meta, ensure_ascii=False, indent=2, default=_json_default) + "\n",
            encoding="utf-8",
        )
        for p in staging.iterdir():
            p.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        if out.exists():
            _remove_tree(out)
        os.replace(staging, out)
    except BaseException as e:
        _remove_tree(staging)
        if isinstance(e, OSError) and not isinstance(e, ModelWriteError):
            raise ModelWriteError(e.errno, e.strerror or str(e), str(out)) from e
        raise
    logger.info("model %s written to %s", router.version, out)
    return out


def _staging_dir(out: Path) -> Path:
    """A new, empty directory beside ``out`` with a normal directory's mode (0755 less the umask).

    :func:`tempfile.mkdtemp`'s 0700 was kept by the rename: a model trained by another account
    (root's nightly retrain) could not be read by the server's user, although its files are 0444.
    """
    for _ in range(100):
        staging = out.parent / f".{out.name}.{secrets.token_hex(6)}"
        try:
            staging.mkdir(0o755)
        except FileExistsError:
            continue
        return staging
    raise FileExistsError(f"no free temporary name for .{out.name}.* in {out.parent}")


def read_metadata(model_dir: str | Path) -> dict[str, Any]:
    """Read a model's ``metadata.json`` (no unpickling, safe on any directory)."""
    path = Path(model_dir) / METADATA_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ModelLoadError(
            f"{model_dir} is not a model directory: it has no {METADATA_FILE}"
        ) from e
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{path} cannot be read as JSON: {e}") from e
    # JSON of another kind ([], null: a bad restore, a hand edit) was an AttributeError traceback
    # in `paidan serve` and `models list`, which read it with .get().
    if not isinstance(data, dict):
        raise ModelLoadError(
            f"{path} holds a JSON {type(data).__name__}, not the object paidan writes: "
            "restore the file from a backup or retrain the model"
        )
    return data


def verify(
    model_dir: str | Path, root: str | Path | None = None, *, import_tokenizer: bool = True
) -> dict[str, Any]:
    """Check a model directory before anything in it is unpickled.

    Parameters
    ----------
    model_dir : str or Path
        The directory to check.
    root : str or Path, optional
        The configured model root. When given, a directory outside it is refused.
    import_tokenizer : bool, default True
        Import the tokenizer the model cuts with; False only looks whether its package is
        installed, for a process that loads no model (the supervisor of ``--workers N``).

    Returns
    -------
    dict
        The verified metadata.

    Raises
    ------
    ModelLoadError
        If the directory is a symlink or outside ``root``, a listed file is missing, altered or
        truncated, an unlisted pickle is present, the pickle was made by other library versions,
        or the tokenizer the model cuts with cannot be imported.
    """
    path = Path(model_dir)
    if "\x00" in str(path):  # the file system would raise ValueError: "embedded null byte"
        raise ModelLoadError(f"{str(path)!r} is not a path: it holds a NUL character")
    if path.is_symlink():
        raise ModelLoadError(f"{path} is a symlink; model directories must be real directories")
    resolved = path.resolve()
    if root is not None:
        root_resolved = Path(root).resolve()
        if not resolved.is_relative_to(root_resolved):
            raise ModelLoadError(
                f"{path} is outside the model root {root_resolved}; only models under the root are loaded"
            )
    if not resolved.is_dir():
        raise ModelLoadError(f"{path} is not a directory")
    meta = read_metadata(resolved)
    files = meta.get("files")
    if not isinstance(files, dict) or ROUTER_FILE not in files:
        raise ModelLoadError(f"{resolved / METADATA_FILE} lists no checksum for {ROUTER_FILE}")
    for name, expected in files.items():
        f = resolved / name
        if Path(name).name != name:
            raise ModelLoadError(
                f"{METADATA_FILE} names a file outside the model directory: {name!r}"
            )
        if f.is_symlink():
            raise ModelLoadError(f"{f} is a symlink; refusing to read it")
        if not f.is_file():
            raise ModelLoadError(f"{f} is missing")
        actual = sha256_file(f)
        if actual != expected:
            raise ModelLoadError(
                f"{f} does not match its checksum in {METADATA_FILE} (expected {expected[:12]}…, "
                f"found {actual[:12]}…): the file was changed or truncated after training"
            )
    _check_versions(meta, resolved)
    _check_tokenizer(meta, resolved, import_tokenizer)
    return meta


def load_router(
    model_dir: str | Path, root: str | Path | None = None, *, serving: bool = False
) -> tuple[Router, dict[str, Any]]:
    """The one loader: verify, then unpickle.

    Parameters
    ----------
    model_dir : str or Path
        A directory written by :func:`save_router`.
    root : str or Path, optional
        The configured model root; directories outside it are refused.
    serving : bool, default False
        Load only what predicting needs (the serving file, when the model has one): a router
        without scikit-learn objects (:meth:`Router.for_serving`), loaded without importing
        scikit-learn. Otherwise the whole router.

    Returns
    -------
    (Router, dict)
        The router and its metadata.

    Raises
    ------
    ModelLoadError
        See :func:`verify`; also if a verified pickle still cannot be read.
    """
    meta = verify(model_dir, root)
    resolved = Path(model_dir).resolve()
    _check_format(meta, resolved)
    _warn_other_opencc(meta, resolved)
    if SERVING_FILE not in meta["files"]:
        return _unpickle(resolved / ROUTER_FILE), meta
    fast = _unpickle(resolved / SERVING_FILE)
    if serving:
        return fast, meta
    router = _unpickle(resolved / ROUTER_FILE)
    try:
        router.join(fast)
    except (ValueError, KeyError, AttributeError) as e:
        raise ModelLoadError(
            f"{resolved / ROUTER_FILE} and {SERVING_FILE} passed their checksums but do not "
            f"belong together: {type(e).__name__}: {e}"
        ) from e
    return router, meta


def load_serving_router(
    model_dir: str | Path, root: str | Path | None = None
) -> tuple[Router, dict[str, Any]]:
    """:func:`load_router` with ``serving=True``: the loader of the server and of batch labelling."""
    return load_router(model_dir, root, serving=True)


def _unpickle(path: Path) -> Router:
    """One verified pickle of a router, its numpy arrays memory-mapped."""
    import joblib

    from model.router import Router

    try:
        with warnings.catch_warnings():
            # Models written compressed (by earlier versions) cannot be mapped; they load normally.
            warnings.filterwarnings("ignore", message=r'mmap_mode "r" is not compatible')
            # Read-only memory map of the numpy arrays (the weights): no copy and no decompression,
            # and processes serving the same model share its pages. Arrays are plain numbers: the
            # pickle's code-bearing part was read, after the checksum, in this call.
            router = joblib.load(path, mmap_mode="r")
    except Exception as e:  # a verified file that fails to unpickle: say so, not pickle's traceback
        raise ModelLoadError(
            f"{path} passed its checksum but cannot be loaded: {type(e).__name__}: {e}"
        ) from e
    if not isinstance(router, Router):
        raise ModelLoadError(f"{path} holds a {type(router).__name__}, not a paidan Router")
    return router


def _check_format(meta: dict[str, Any], path: Path) -> None:
    """Refuse a model whose ``format_version`` this paidan does not know (a newer paidan's).

    A model without one (the oldest) is format 1. Unpickled anyway, a newer layout failed deep
    in the code with a traceback, or loaded and predicted wrongly without a word.
    """
    found = meta.get("format_version", 1)
    if isinstance(found, int) and not isinstance(found, bool) and 1 <= found <= FORMAT_VERSION:
        return
    raise ModelLoadError(
        f"{path} is a model of format {found!r}, written by a newer paidan (this one reads "
        f"format {FORMAT_VERSION} and older): upgrade paidan to use it, or make a model this "
        "paidan wrote current (`paidan models rollback`)"
    )


def _check_versions(meta: dict[str, Any], path: Path) -> None:
    saved = meta.get("libraries", {})
    running = library_versions()
    for lib in PINNED_LIBRARIES:
        have, want = running.get(lib, "unknown"), saved.get(lib, "unknown")
        if "unknown" in (have, want):
            continue
        if have.split(".")[:2] != want.split(".")[:2]:
            raise ModelLoadError(
                f"{path} was trained with {lib} {want}, but {lib} {have} is installed; "
                "retrain the model with this installation (pickles are not portable across versions)"
            )


def _warn_other_opencc(meta: dict[str, Any], path: Path) -> None:
    """Warn when a model that reads tickets in simplified characters was trained with another
    OpenCC than the one installed. Not refused: nothing of OpenCC's is pickled, but another
    version's phrase tables may convert a rare traditional word differently from the training
    data's, so such a ticket's words (and suggestion) may differ from what cross-validation saw.
    """
    config = meta.get("config")
    if not isinstance(config, dict) or config.get("script") != "simplified":
        return
    want = meta.get("libraries", {}).get("opencc", "unknown")
    have = _library_version("opencc")
    if "unknown" in (want, have) or want == have:
        return
    logger.warning(
        "%s was trained with OpenCC %s, but OpenCC %s is installed: a ticket in traditional "
        "characters may be converted to other words than in training; retrain the model with "
        "this installation, or install opencc==%s",
        path,
        want,
        have,
        want,
    )


def _check_tokenizer(meta: dict[str, Any], path: Path, import_it: bool = True) -> None:
    """Refuse a model whose tokenizer backend cannot be imported here, before it is loaded: it
    cuts every text with that backend (models from before the setting cut with jieba). Without
    ``import_it``, whether its package is installed (:func:`model.tokenizer.find_backend`)."""
    config = meta.get("config")
    backend = config.get("tokenizer", "jieba") if isinstance(config, dict) else "jieba"
    if backend not in BACKENDS:
        return
    try:
        (import_backend if import_it else find_backend)(backend)
    except BackendMissingError as e:
        other = next(b for b in BACKENDS if b != backend)
        raise ModelLoadError(
            f"{path} was trained with the {backend} tokenizer, and the {backend} package cannot "
            f"be imported ({e.__cause__}): pip install {backend} (or retrain the model with "
            f"--tokenizer {other})"
        ) from e


def _remove_tree(path: Path) -> None:
    if not path.exists():
        return
    for p in path.rglob("*"):
        if p.is_file():
            p.chmod(stat.S_IWUSR | stat.S_IRUSR)
    shutil.rmtree(path, ignore_errors=True)


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
