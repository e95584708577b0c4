"""Batch labelling: stream a backlog of tickets through the router, in parallel, resumably.

The input is read in chunks of ``chunk_size`` rows. Each chunk's valid tickets go to a worker (a
process of a local pool, or a Dask worker), which loads the model once and labels them with
:meth:`model.router.Router.predict`; rows that cannot be labelled (empty, blank, over-long,
unreadable or malformed) keep an ``error`` instead. Finished chunks are written, in input order, as
Parquet parts under ``OUTPUT.parts/`` and recorded in an fsync'd manifest, so a run killed at any
moment continues from the last finished chunk with ``resume=True``. At the end the parts are joined
into ``OUTPUT`` (written under a temporary name and renamed), and the summary is written beside it.
"""

from __future__ import annotations

import ast
import errno
import fcntl
import functools
import gc
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import multiprocessing
import os
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from model.artifact import (
    METADATA_FILE,
    ROUTER_FILE,
    ModelLoadError,
    check_name_lengths,
    check_not_in_model_dir,
    check_not_input,
    check_utf8_name,
    check_writable,
    load_router,
    verify,
)
from model.router import HEADS, REASON_NO_KNOWN_TERMS, SIMILAR_K, Router, shown_scores
from model.settings import get_settings
from model.startup import signal_on_parent_death
from model.text import counted, is_blank, mask_label, quoted
from model.tickets import (
    HEADER_FORMATS,
    LABEL_OUTPUT_COLUMNS,
    LABEL_REASON_COLUMNS,
    ColumnMap,
    MissingColumnError,
    check_columns,
    display_name,
    file_format,
    from_partitions,
    id_column_note,
    json_object,
    labelled_output,
    mapped_columns,
    named_paths,
    partition_values,
    printable,
    repeats_header,
    scientific_ids,
    scientific_ids_message,
    title_column_note,
    totals_field,
)
from training.label_io import (
    XLSX_MAX_CELL_CHARS,
    XLSX_MAX_ROWS,
    OutputWriter,
    Record,
    declared_rows,
    estimate_rows,
    file_columns,
    fsync_dir,
    iter_records,
    json_column_type,
    parquet_types,
    read_part,
    write_json_atomic,
    write_part_atomic,
)

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 2_000
PRED_COLUMNS = LABEL_OUTPUT_COLUMNS
# With --evidence, before the error: for each head, the words that drove its suggestion, with
# their weights (JSON, as the API's evidence), the clause of its remit that names them, and the
# dispatch rule that gave the label (JSON, as the API's rule).
EVIDENCE_COLUMNS = (
    "department_evidence",
    "department_remit",
    "department_rule",
    "category_evidence",
    "category_remit",
    "category_rule",
)


def pred_columns(evidence: bool = False) -> tuple[str, ...]:
    """The columns label adds to its input's, in order: :data:`PRED_COLUMNS`, with
    :data:`EVIDENCE_COLUMNS` before the error when ``evidence``."""
    return (*PRED_COLUMNS[:-1], *EVIDENCE_COLUMNS, PRED_COLUMNS[-1]) if evidence else PRED_COLUMNS


SCORE_COLUMNS = ("pred_department_score", "pred_category_score")
OUTPUT_FORMATS = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".xlsx": "xlsx",
}
PARTS_SUFFIX = ".parts"
MANIFEST_FILE = "manifest.json"
# 5: the manifest records which paidan wrote the parts (:func:`parts_writer`): format 4's were
# written by paidans that read the same input into other cells (JSON booleans, zero-padded XLSX
# numbers, Parquet bytes) without saying so, and a resume after an upgrade mixed both in one output
# (4: a CSV line also ends at a lone "\r"; 3: parts hold co_departments; 2: Arrow IPC parts without
# it; 1: Parquet); a run of another format is not resumed.
# 6: JSON Lines and Parquet output keep the input's column types and nulls (5's parts hold every
# input column as text).
# 7: parts hold department_reason and category_reason (6's do not), and each input is recorded with
# a hash of its first and last SAMPLE_BYTES.
MANIFEST_FORMAT = 7
# The modules whose code decides what a part holds: they read the input, clean, cut and label its
# texts and write the parts and the output (model.pipeline is imported when a model is loaded).
# Parts written by other code (an upgrade between the interruption and --resume) are not
# continued: one output would hold two paidans' cells. Their code counts without comments,
# docstrings and layout (:func:`_code`): a reworded docstring refused every interrupted run.
# Left out: model.startup (process signals), the plots, and model.settings, whose values that
# shape cells (the text and title limits) the manifest records as they are; a test checks that
# every other paidan module a run imports is listed.
WRITER_MODULES = (
    "model.artifact",
    "model.compiled",
    "model.config",
    "model.pipeline",
    "model.router",
    "model.rules",
    "model.text",
    "model.tickets",
    "model.tokenizer",
    "training.label",
    "training.label_io",
)
# The libraries that read and write the files (Python's own unicodedata normalises the texts),
# and those that cut and score the texts: loading a model refuses only another major.minor
# release of them, and a patch release can cut a text otherwise (a fixed dictionary entry) or
# round a score otherwise (another bundled BLAS).
WRITER_LIBRARIES = (
    "openpyxl",
    "pandas",
    "pyarrow",
    "jieba",
    "rjieba",
    "numpy",
    "scipy",
    "scikit-learn",
)
# The bytes at each end of an input whose hash the manifest records (:func:`_sample_sha256`).
SAMPLE_BYTES = 64 * 1024
# Chunks in flight per worker: enough to keep workers busy, few enough to keep memory flat.
IN_FLIGHT_PER_WORKER = 2
# The CSV reader keeps fields up to this many times the text limit, and at least CSV_FIELD_MIN
# characters (an id or a notes column is not bound by the text limit); a longer field is read
# again by a scanner that keeps only its start (training.label_io._scan_record).
CSV_FIELD_FACTOR = 4
CSV_FIELD_MIN = 1 << 20
# The blank lines of a file the summary lists by number (all are counted).
BLANK_LINES_LISTED = 10

# Set while the Dask engine runs: no debugging log of past messages, which held every chunk.
DASK_CONFIG: dict[str, Any] = {"distributed.admin.low-level-log-length": 0}

# How long a run with --upload-model waits for a worker to join a --scheduler that has none, in
# seconds (the model is sent to running workers before any chunk is submitted).
DASK_WORKER_WAIT_SECONDS = 60

Engine = Literal["local", "dask"]
Progress = Callable[[str, int, int], None]
# What a worker returns per ticket: department, its score, category, its score, decision, top-3 JSON,
# joint-dispatch advice JSON (None when not asked for), each head's reason for review, and with
# --evidence each head's evidence JSON, remit clause and rule JSON, the department's first.
Prediction = tuple[Any, ...]


class LabelError(ValueError):
    """The labelling run cannot start or resume; the message says why and what to do."""


@dataclass
class LabelResult:
    """What a run produced."""

    output: Path
    summary: dict[str, Any]
    summary_path: Path
    plots: list[Path] = field(default_factory=list)
    resumed_chunks: int = 0
    # What the output could not hold as read (XLSX: cells over Excel's limit, cut), one line each.
    warnings: list[str] = field(default_factory=list)


# -- workers: load the model once per process --------------------------------------------------

_ROUTER: Router | None = None
_CACHE: dict[str, Router] = {}
_CACHE_LOCK = threading.Lock()


# How often a worker without prctl looks whether its parent is still there, in seconds.
PARENT_POLL_SECONDS = 1.0


def _die_with_parent(parent: int | None) -> None:
    """End this worker process when the process that started it ends.

    A worker blocks on the pool's call queue, whose write end it inherited itself, so it never
    saw the parent go: ``paidan label`` killed with SIGTERM or ``kill -9`` left its workers
    running for good, re-parented to PID 1 (each with the model in memory and the model's lease
    open, so ``paidan models gc`` kept that version as in use). On Linux the kernel sends SIGTERM
    when the parent dies (``PR_SET_PDEATHSIG``); elsewhere a daemon thread looks every second.

    Parameters
    ----------
    parent : int or None
        The pid of the process that started this one, to see whether it died before the signal
        was asked for; ``None`` when that is another process (a forkserver).
    """
    # The handler the parent may have installed (the CLI's SIGTERM → stop the run) is not this
    # process's: the default action ends it without a traceback.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # Ctrl-C is the run's, which stops the workers (a terminal sends it to them too). Caught here,
    # it came back as a chunk's result, killed a worker waiting for a chunk (reported as a worker
    # that "ended abruptly"), or cut a result in half in the pipe, and the run's shutdown waited
    # for the rest for ever. Started with it blocked (see _start_engine), so that a Ctrl-C before
    # this line is dropped rather than raised in the worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if signal_on_parent_death(signal.SIGTERM):
        if parent is not None and os.getppid() != parent:  # died before prctl was called
            os._exit(1)
        return
    watched = os.getppid()

    def watch() -> None:
        while os.getppid() == watched:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="paidan-parent-watch", daemon=True).start()


def _init_worker(model_dir: str, root: str | None, parent: int | None = None) -> None:
    """Process-pool initializer: load and warm the model once for this worker process."""
    global _ROUTER
    _die_with_parent(parent)
    _ROUTER, _ = load_router(model_dir, root, serving=True)
    _ROUTER.warm_up()


def _adopt_router(router: Router, parent: int | None = None) -> None:
    """Fork-pool initializer: the router loaded by the parent is already in this process."""
    global _ROUTER
    _die_with_parent(parent)
    _ROUTER = router
    gc.freeze()  # keep the collector from touching (and so copying) the inherited objects


def _label_in_worker(
    tickets: list[tuple[str, str]], joint: bool, similar_k: int, evidence: bool = False
) -> list[Prediction]:
    assert _ROUTER is not None, "worker started without its initializer"
    return predict_rows(_ROUTER, tickets, joint, similar_k, evidence)


def predict_rows(
    router: Router,
    tickets: Sequence[tuple[str, str]],
    joint: bool = True,
    similar_k: int = SIMILAR_K,
    evidence: bool = False,
) -> list[Prediction]:
    """Label ``(title, text)`` pairs and flatten each result to the output columns.

    Parameters
    ----------
    router : Router
        A loaded router.
    tickets : sequence of (str, str)
        Titles and texts, already checked by :func:`check_text`.
    joint : bool, default True
        Give each ticket the joint-dispatch advice :meth:`Router.predict` gives (a search of the
        similar past tickets, skipped when the model stored no joint dispatch).
    similar_k : int, default SIMILAR_K
        How many similar past tickets the advice reads, as the server's ``PAIDAN_SIMILAR_K``
        (0: none, and so no advice).
    evidence : bool, default False
        Add each head's evidence terms (JSON) and the clause of its remit that names them, as
        :meth:`Router.predict` explains them for the API.

    Returns
    -------
    list of tuple
        Per ticket: department, its score, category, its score, decision, the top-3 departments
        as JSON, the joint-dispatch advice as JSON (``None`` when ``joint`` is false), why the
        department and why the category head leave it to a person (the API's ``reason``), then,
        with ``evidence``, the department's evidence JSON and remit clause, then the category's
        (``None`` without one).
    """
    if not tickets:
        return []
    # The same ranking and decisions as Router.predict, read straight from its arrays: building
    # a RouteResult per ticket cost a quarter of a batch's time (measured, benchmarks/README.md).
    X, hits = router.features_and_hits(tickets)
    ranked = router.rank(X, 3, hits)
    if not ranked:
        return []
    n = X.shape[0]
    auto = np.logical_and.reduce([r.auto for r in ranked.values()])
    decisions = np.where(auto, "auto", "review").tolist()
    columns: list[list[Any]] = []
    for name in ("department", "category"):
        if name in ranked:
            r = ranked[name]
            columns.append([r.labels[j] for j in r.order[:, 0].tolist()])
            # As the API shows them: comparing with the threshold as the decision did.
            columns.append(shown_scores(r.scores[:, 0], r.head.threshold))
        else:
            columns += [[None] * n, [None] * n]
    if "department" in ranked:
        r = ranked["department"]
        labels = r.labels
        top3 = [
            json.dumps(
                [{"label": labels[j], "score": p} for j, p in zip(js, ps, strict=True)],
                ensure_ascii=False,
            )
            for js, ps in zip(
                r.order.tolist(), shown_scores(r.scores, r.head.threshold), strict=True
            )
        ]
    else:
        top3 = ["[]"] * n
    # Why each head leaves a row to a person, as the API says it (None for auto).
    reasons = [ranked[name].reasons() if name in ranked else [None] * n for name in HEADS]
    co: list[str | None] = [None] * n
    if joint:
        co = ["[]"] * n
        if router.advises_joint:  # a department head and stored joint dispatches
            leads = columns[0]  # the suggested departments
            co = [
                json.dumps([a.model_dump() for a in advice], ensure_ascii=False)
                for advice in router.joint_advice(X, leads, similar_k)
            ]
    if not evidence:
        return list(zip(*columns, decisions, top3, co, *reasons, strict=True))
    # The API's explanation of the suggestions above (the same rankings, so the words explain
    # the suggestions written). Per head, its evidence JSON, its remit clause and its rule JSON.
    explained = router.explanations(X, ranked)
    why: list[list[str | None]] = []
    for name in ("department", "category"):
        if name in explained:
            why.append(
                [
                    json.dumps([e.model_dump() for e in evidence], ensure_ascii=False)
                    for evidence, _, _ in explained[name]
                ]
            )
            why.append([remit for _, remit, _ in explained[name]])
            why.append(
                [
                    None if rule is None else json.dumps(rule.model_dump(), ensure_ascii=False)
                    for _, _, rule in explained[name]
                ]
            )
        else:
            why += [[None] * n, [None] * n, [None] * n]
    return list(zip(*columns, decisions, top3, co, *reasons, *why, strict=True))


@dataclass(frozen=True)
class ModelBundle:
    """A model directory's files as bytes, for workers that cannot see the directory."""

    version: str
    files: dict[str, bytes]

    @classmethod
    def read(cls, model_dir: Path, meta: dict[str, Any]) -> ModelBundle:
        names = [METADATA_FILE, *meta["files"]]
        return cls(
            version=str(meta.get("version", model_dir.name)),
            files={n: (model_dir / n).read_bytes() for n in names},
        )

    def key(self) -> str:
        meta = json.loads(self.files[METADATA_FILE])
        return f"{self.version}-{meta['files'][ROUTER_FILE][:16]}"

    def unpack(self) -> Path:
        """Write the files into a new private directory under the worker's temp dir; return it.

        A fresh ``mkdtemp`` directory (mode 0700, owned by the worker's user) each time, never a
        shared, predictable one: the worker reused any ``$TMPDIR/paidan-models/<version>-<sha>``
        that already existed, checked only against the ``metadata.json`` inside it, so a
        directory planted there by another user of the worker host (a pickle that runs code, or
        another model) was loaded instead of the files sent. The caller removes it once loaded.
        """
        target = Path(tempfile.mkdtemp(prefix="paidan-model-"))
        try:
            for name, data in self.files.items():
                if Path(name).name != name:  # verify() refuses it too; never write outside
                    raise ModelLoadError(f"the uploaded model names a file {name!r} outside it")
                (target / name).write_bytes(data)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        return target


def cached_router(model: str | ModelBundle, sha256: str) -> Router:
    """The router for a model directory (or an uploaded bundle), loaded once per process.

    Dask workers call this for every partition, and the in-process engine for every run; only the
    first call in a process loads (jieba's dictionary alone takes a second or two). The cache holds
    one model, keyed by its path and the SHA-256 of its pickle. The loaded model must carry
    ``sha256``, the checksum of the model the command verified: a worker whose copy of the path
    holds another model refuses it.
    """
    key = model.key() if isinstance(model, ModelBundle) else f"{Path(model).resolve()}#{sha256}"
    with _CACHE_LOCK:
        if key not in _CACHE:
            if isinstance(model, ModelBundle):
                path = model.unpack()
                try:  # the arrays are memory-mapped: they stay readable once the files are gone
                    router = _load_checked(path, sha256)
                finally:
                    shutil.rmtree(path, ignore_errors=True)
            else:
                router = _load_checked(Path(model), sha256)
            _CACHE.clear()
            _CACHE[key] = router
        return _CACHE[key]


def _load_checked(path: Path, sha256: str) -> Router:
    router, meta = load_router(path, serving=True)
    found = meta["files"][ROUTER_FILE]
    if found != sha256:
        raise ModelLoadError(
            f"{path} holds another model here ({ROUTER_FILE} {found[:12]}…) than the one the run "
            f"verified ({sha256[:12]}…)"
        )
    router.warm_up()
    return router


def _label_on_dask(
    model: str | ModelBundle,
    sha256: str,
    tickets: list[tuple[str, str]],
    joint: bool,
    similar_k: int,
    evidence: bool = False,
) -> list[Prediction]:
    try:
        router = cached_router(model, sha256)
    except ModelLoadError as e:
        # "error: /srv/models/v3 is not a directory", about a directory that exists where the
        # command was typed, named neither the worker nor the way out.
        raise ModelLoadError(_on_worker(model, e)) from None
    return predict_rows(router, tickets, joint, similar_k, evidence)


def _on_worker(model: str | ModelBundle, e: ModelLoadError) -> str:
    """``e`` said from the Dask worker that raised it, with the way out when it lacks the model."""
    try:
        from distributed import get_worker

        who = f"Dask worker {get_worker().address}"
    except (ImportError, ValueError):  # not on a worker
        who = "a Dask worker"
    if isinstance(model, ModelBundle):
        return f"{who} cannot load the uploaded model: {e}"
    said = f"{who} cannot load the model: {e}"
    if not Path(model).is_dir():
        said += (
            f" (the workers open the model at the path given here, and {model} is not there on "
            "that worker: put the model root on storage every worker mounts at the same path, or "
            "pass --upload-model to send them its files)"
        )
    return said


# -- rows ----------------------------------------------------------------------------------------


def check_text(text: str, max_chars: int) -> str | None:
    """Why a ticket text cannot be labelled, or ``None`` when it can.

    Parameters
    ----------
    text : str
        The raw text.
    max_chars : int
        The length limit (``PAIDAN_MAX_TEXT_CHARS``).

    Returns
    -------
    str or None
        ``"empty text: ..."``, ``"blank text: ..."`` or ``"text too long: ..."``.
    """
    if not text:
        return "empty text: the text column is empty"
    if len(text) > max_chars:
        return _too_long(len(text), max_chars)
    # Most texts hold an ideograph and are answered without normalising; only the rest (rare) is
    # normalised here, in the process that reads the input, which the workers would otherwise wait
    # for (measured: 7 % of a batch's samples).
    if is_blank(text):
        return "blank text: the text holds only whitespace or invisible characters"
    return None


def check_title(title: str, max_chars: int) -> str | None:
    """Why a ticket title cannot be labelled (over ``PAIDAN_MAX_TITLE_CHARS``), or ``None``.

    The HTTP API refuses the same titles; a title has no other condition (it may be empty).
    """
    if len(title) > max_chars:
        return (
            f"title too long: {len(title):,} characters, over the limit of {max_chars:,} "
            "(PAIDAN_MAX_TITLE_CHARS)"
        )
    return None


def _too_long(length: int, max_chars: int) -> str:
    return (
        f"text too long: {length:,} characters, over the limit of {max_chars:,} "
        "(PAIDAN_MAX_TEXT_CHARS)"
    )


@dataclass
class _Chunk:
    index: int
    records: list[Record]
    errors: list[str | None]
    tickets: list[tuple[str, str]]
    # The last chunk of the last input: reading is over, and the rows are known.
    last: bool = False


def _chunks(
    files: Sequence[Path],
    names: Sequence[str],
    columns: list[str],
    file_headers: dict[Path, list[str]],
    partitions: dict[Path, dict[str, str]],
    blank_lines: dict[str, set[int]],
    cmap: ColumnMap,
    chunk_size: int,
    max_chars: int,
    max_title_chars: int,
    extra_fields: dict[str, dict[str, Any]] | None = None,
    read: Callable[[Path], None] | None = None,
) -> Iterator[_Chunk]:
    """Chunks of at most ``chunk_size`` rows; a chunk never spans two files. ``names``: each
    file's name, as its rows' errors give it (:func:`model.tickets.named_paths`);
    ``file_headers``: each file's own columns (:func:`_input_columns`); ``partitions``: each
    file's partition values (:func:`model.tickets.partition_values`), its rows' values of the
    columns it lacks; ``blank_lines`` is filled with each file's blank lines, by its name, and
    ``extra_fields``, when given, by the name of each CSV file with rows refused for one more,
    empty, field than its header (:func:`_extra_fields_warning`): how many, of how many rows,
    the first's place and the header's width. ``read``, when given, is called with each file
    before each of its chunks is yielded, once its rows are read, and when reading it fails."""
    index = 0
    all_columns = columns
    for number, (path, name) in enumerate(zip(files, names, strict=True), 1):
        buf: list[Record] = []
        # Read from the names of its columns this file has (--text-col 留言详情 --text-col 详情).
        own = cmap.for_header(path, [*file_headers[path], *partitions[path]])
        title_col = own.title if own.title in all_columns else None
        limit = max(CSV_FIELD_FACTOR * max_chars, CSV_FIELD_MIN)
        # The header line again (files joined with `copy a.csv+b.csv`) is no ticket: an error
        # row, as train and evaluate leave it out. Only the columns this file has count.
        names = (
            mapped_columns(file_headers[path], own) if file_format(path) in HEADER_FORMATS else []
        )
        # The id and title columns this file has, whose cell may say a row is a totals line.
        totals_names = [c for c in (own.id, own.title) if c and c in file_headers[path]]
        blank = blank_lines.setdefault(name, set())
        records = iter_records(
            path, columns, limit, own.delimiter, own.text, own.title, name, blank, own.id
        )
        if read is not None:
            records = _read_checked(records, path, read)
        given = {k: v for k, v in partitions[path].items() if k not in file_headers[path]}
        rows = extra = 0
        first = ""
        for record in records:
            # A full chunk goes once the next record is read, so that the file's last chunk is
            # yielded after its end is found, and the last input's says reading is over.
            if len(buf) == chunk_size:
                if read is not None:
                    # Each chunk, not only at the end: a backlog of a million rows changed in its
                    # first minutes was found changed hours later, once all of it was labelled.
                    read(path)
                yield _prepare(index, buf, own.text, title_col, max_chars, max_title_chars)
                index += 1
                buf = []
            rows += 1
            if record.extra_empty_field:
                extra += 1
                first = first or record.where
            record.values.update(given)
            if record.typed is not None:
                record.typed.update(given)
            if record.error is None and repeats_header(record.values.__getitem__, names):
                record.error = (
                    f"repeated header: {record.where} repeats the header line (files joined with "
                    "`copy a.csv+b.csv` or `cat` keep each part's header); it is not a ticket"
                )
            if record.error is None and (column := totals_field(record.values.get, totals_names)):
                record.error = (
                    f"totals row: {record.where} reads "
                    f"{quoted(record.values[column].strip(), cell=True)} in column "
                    f"{quoted(column)} (a spreadsheet's 合计/总计/小计 line sums the tickets "
                    "above it); it is not a ticket"
                )
            buf.append(record)
        if read is not None:
            read(path)
        if extra and extra_fields is not None:
            extra_fields[name] = {
                "rows": extra,
                "of": rows,
                "where": first,
                "header_fields": len(file_headers[path]),
            }
        if buf:
            chunk = _prepare(index, buf, own.text, title_col, max_chars, max_title_chars)
            chunk.last = number == len(files)
            yield chunk
            index += 1


def _read_checked(
    records: Iterator[Record], path: Path, read: Callable[[Path], None]
) -> Iterator[Record]:
    """``records``, with ``read(path)`` called first when reading them fails: a file replaced
    while it is read (a Parquet file's next row group, at the offsets of the file read at the
    start) ended the run in the reader's traceback, ``OSError: Corrupt snappy compressed data``."""
    try:
        yield from records
    except Exception:
        read(path)
        raise


def _prepare(
    index: int,
    records: list[Record],
    text_col: str,
    title_col: str | None,
    max_chars: int,
    max_title_chars: int,
) -> _Chunk:
    errors: list[str | None] = []
    tickets: list[tuple[str, str]] = []
    for r in records:
        error = r.error
        if error is None:
            if text_col in r.cut:  # too long for the CSV reader to keep
                problem: str | None = _too_long(r.cut[text_col], max_chars)
            elif r.cut:
                problem = "field too long: " + ", ".join(
                    f"{quoted(name)} has {n:,} characters" for name, n in r.cut.items()
                )
            else:
                problem = check_text(r.values.get(text_col, ""), max_chars)
            for field, column in (("text", text_col), ("title", title_col)):
                if problem is None and column and (found := json_object(r.values[column])):
                    # An API export nesting the text: labelled, its keys were read as its words.
                    problem = (
                        f"JSON object {field}: the {field} column holds a JSON object, not text "
                        f"({quoted(json.dumps(found, ensure_ascii=False), cell=True)}); flatten "
                        f"it to the {field} first, as paidan train asks"
                    )
            if problem is None and title_col:
                problem = check_title(r.values.get(title_col, ""), max_title_chars)
            if problem:
                error = f"{problem} ({r.where})"
        errors.append(error)
        if error is None:
            tickets.append((r.values.get(title_col, "") if title_col else "", r.values[text_col]))
    return _Chunk(index, records, errors, tickets)


def _part_table(
    chunk: _Chunk, preds: list[Prediction], schema: pa.Schema, added: Sequence[str] = PRED_COLUMNS
) -> pa.Table:
    """A chunk's rows as the output's table: their input columns, then ``added``
    (:func:`pred_columns`), from ``preds`` or, for an error row, its error."""
    data: dict[str, list[Any]] = {}
    for i in range(len(schema) - len(added)):
        f = schema.field(i)
        c = f.name
        if f.metadata and f.metadata.get(TEXT_KEY) == b"1":  # CSV and XLSX output: the text
            data[c] = [r.values[c] for r in chunk.records]
        elif pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
            # A CSV or XLSX row's text, whose file has no nulls; a JSON or Parquet value's text
            # (a text, or each value of a column of mixed kinds), null kept.
            data[c] = [
                r.values[c] if r.typed is None or r.typed.get(c) is not None else None
                for r in chunk.records
            ]
        else:  # typed: only JSON and Parquet rows have its values (a CSV row lacks the column)
            data[c] = [None if r.typed is None else r.typed.get(c) for r in chunk.records]
    pred_iter = iter(preds)
    filled: list[list[Any]] = [[] for _ in added]
    for error in chunk.errors:
        row: tuple[Any, ...] = (
            (None,) * (len(added) - 1) + (error,) if error else (*next(pred_iter), None)
        )
        for col, value in zip(filled, row, strict=True):
            col.append(value)
    data.update(zip(added, filled, strict=True))
    return pa.Table.from_pydict(data, schema=schema)


# Field metadata of an input column written as text with "" for a missing value (CSV, XLSX output).
TEXT_KEY = b"paidan_text"
# The Arrow types JSON Lines holds as JSON values; an input column of another type (a Parquet
# timestamp, date, decimal, binary, list) is written to it as text, as before.
_JSON_TYPES = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean, pa.types.is_string)


def output_schema(
    input_columns: Sequence[str],
    types: dict[str, pa.DataType] | None = None,
    added: Sequence[str] = PRED_COLUMNS,
) -> pa.Schema:
    """The input columns, then the prediction columns ``added`` (:func:`pred_columns`).

    Without ``types`` (CSV and XLSX output) every input column is text, a missing value ``""``;
    with them (:func:`_column_types`, JSON Lines and Parquet output) each column has its type,
    nulls kept."""
    if types is None:
        fields = [pa.field(c, pa.string(), metadata={TEXT_KEY: b"1"}) for c in input_columns]
    else:
        fields = [pa.field(c, types.get(c, pa.string())) for c in input_columns]
    fields += [pa.field(c, pa.float64() if c in SCORE_COLUMNS else pa.string()) for c in added]
    return pa.schema(fields)


# -- the run -------------------------------------------------------------------------------------


def _refuse_files_read_twice(files: Sequence[Path]) -> None:
    """Refuse a file among the inputs twice (``label exports/ exports/2024-03.csv``, or a
    ``latest.csv`` link beside the file it points to): its rows were labelled twice, each ticket
    coming back twice under its id, without a word."""
    first: dict[Path, Path] = {}  # by the file, the path it was first reached by
    twice: dict[Path, tuple[Path, Path]] = {}
    for p in files:
        resolved = p.resolve()
        if resolved not in first:
            first[resolved] = p
        else:
            twice.setdefault(resolved, (first[resolved], p))
    if twice:
        names = ", ".join(
            str(a) if str(a) == str(b) else f"{a} (again as {b})" for a, b in twice.values()
        )
        raise LabelError(
            f"{names} {'is' if len(twice) == 1 else 'are'} among the inputs twice (given twice, "
            "given and in a directory given, or through a symbolic link): each of its rows would "
            "come back twice; name each file once"
        )


def label(
    inputs: Sequence[str | Path],
    model_dir: str | Path,
    output: str | Path,
    columns: ColumnMap = ColumnMap(),
    jobs: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    resume: bool = False,
    force: bool = False,
    engine: Engine = "local",
    scheduler: str | None = None,
    upload_model: bool = False,
    model_root: str | Path | None = None,
    progress: Progress | None = None,
    joint: bool = True,
    escape_formulas: bool = True,
    evidence: bool = False,
) -> LabelResult:
    """Label every row of ticket files and write them, with their labels or errors, to ``output``.

    Parameters
    ----------
    inputs : sequence of str or Path
        Files (CSV, XLSX, JSONL, a JSON array, Parquet) or directories of parts, read in order.
    model_dir : str or Path
        The model directory.
    output : str or Path
        The labelled file; its extension (``.csv``, ``.jsonl``, ``.parquet``, ``.xlsx``) sets the
        format. ``OUTPUT.summary.json`` and two PNGs are written beside it.
    columns : ColumnMap
        Which input columns hold the text, title and id, and the delimiter of CSV files.
    jobs : int, optional
        Worker processes for the local engine (default: the number of cores; 1 labels in this
        process). With Dask, the number of workers of a started ``LocalCluster`` (default 2);
        not used with ``scheduler``.
    chunk_size : int, default 2000
        Rows per chunk: the unit of work, of checkpointing and of resuming.
    resume : bool, default False
        Continue the interrupted run whose parts are in ``OUTPUT.parts/``.
    force : bool, default False
        Replace an existing ``output`` and discard the parts of an interrupted run.
    engine : {"local", "dask"}
        A local process pool, or a Dask distributed cluster.
    scheduler : str, optional
        Address of an existing Dask scheduler (``tcp://host:8786``); without it a ``LocalCluster``
        is started. Only with ``engine="dask"``.
    upload_model : bool, default False
        Send the model files to the Dask workers instead of having them read ``model_dir``. Only
        with ``engine="dask"``.
    model_root : str or Path, optional
        When given, models outside it are refused.
    progress : callable, optional
        Called as ``progress("labelling", rows_done, rows_estimated)`` after every chunk (the
        estimate at least one more row until the end), then ``(rows, rows)`` when all are done.
    joint : bool, default True
        Fill ``co_departments`` with the joint-dispatch advice the API gives (a similar-ticket
        search per ticket when the model stored joint dispatches); false leaves it empty.
    escape_formulas : bool, default True
        In CSV output, write a text cell that a spreadsheet would run as a formula (one that
        begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return, …) with a leading
        ``'``, as OWASP recommends against CSV injection; false writes every cell as read (a file
        for programs). Other formats are never changed: an XLSX text is a text cell either way.
    evidence : bool, default False
        Add :data:`EVIDENCE_COLUMNS`: the words that drove each suggestion, department and
        category, with their weights, and the clause of its remit that names them, as the API
        explains them.

    Returns
    -------
    LabelResult
        The output path, the summary and the files written beside it.

    Raises
    ------
    LabelError
        Bad arguments, an existing output, or a resume that does not match the interrupted run.
    TicketFileError
        An input file cannot be read at all (missing, unknown type, no text column).
    ModelLoadError
        The model directory cannot be trusted or read.
    OutputPathError
        The output is a directory, cannot be created where it goes, or it (or a file written
        beside it) is an input or lies inside an input directory.
    """
    started = time.perf_counter()
    output = Path(output)
    fmt = OUTPUT_FORMATS.get(output.suffix.lower())
    if fmt is None:
        raise LabelError(
            f"{output}: unsupported output type {output.suffix!r}; use "
            f"{', '.join(sorted(set(OUTPUT_FORMATS)))}"
        )
    # Refused up front: the run stopped at its first chunk with a traceback.
    why = "the run's manifest and summary, UTF-8 JSON, name it"
    check_utf8_name(output, "--out", why)
    # --force replaced an input workbook named as its own output (and its other sheets with it),
    # and an output inside an input directory was read back as input by the next run.
    check_not_input(written_files(output), inputs, "--out")
    # And the temporary names they are first written under: .OUTPUT.tmp (in the parts
    # directory) and .OUTPUT.summary.json.tmp, the longest.
    temporary = [
        output.with_name(output.name + PARTS_SUFFIX) / f".{output.name}.tmp",
        output.with_name(f".{output.name}.summary.json.tmp"),
        _lock_path(output),
    ]
    check_name_lengths(output, [*written_files(output), *temporary], "--out")
    check_writable(output, "--out")  # a directory, or a place no file can be made
    check_not_in_model_dir(output, "--out")
    if chunk_size < 1:
        raise LabelError(f"--chunk-size must be at least 1, got {chunk_size}")
    if jobs is not None and jobs < 1:
        raise LabelError(f"--jobs must be at least 1, got {jobs}")
    if engine not in ("local", "dask"):
        raise LabelError(f"unknown engine {engine!r}; use 'local' or 'dask'")
    if engine == "dask" and importlib.util.find_spec("distributed") is None:
        raise LabelError("the Dask engine needs dask[distributed]: pip install 'paidan[dask]'")
    if engine != "dask":
        # Ignored without a word: the backlog was labelled on this machine, on all its cores.
        given = [o for o, v in (("--scheduler", scheduler), ("--upload-model", upload_model)) if v]
        if given:
            raise LabelError(
                f"{' and '.join(given)} {'needs' if len(given) == 1 else 'need'} --engine dask "
                "(without it the backlog is labelled on this machine)"
            )
    elif scheduler and jobs is not None:
        # Ignored without a word: the cluster's workers labelled, however many --jobs asked for.
        raise LabelError(
            "--jobs sets the workers of the LocalCluster paidan starts; with --scheduler the "
            "cluster's own workers label (give them processes with `dask worker --nworkers N`)"
        )
    # Held until the run ends: a second run into the same --out is refused here, before it
    # looks at (and deletes, or writes beside) the parts this one is writing.
    lock = _OutputLock(output)
    try:
        model_dir = Path(model_dir)
        meta = verify(model_dir, model_root)
        named = named_paths(inputs)
        files = [p for p, _ in named]
        _refuse_files_read_twice(files)
        typed = fmt in ("jsonl", "parquet")
        kinds: dict[str, set[str]] | None = {} if typed else None
        # A Spark or Hive partition's value in a directory name (district=龙华区/): a column of
        # the rows in it, written back with them.
        partitions = {path: partition_values(name) for path, name in named}
        blank_lines: dict[str, set[int]] = {}
        extra_fields: dict[str, dict[str, Any]] = {}
        added = pred_columns(evidence)
        input_columns, file_headers = _input_columns(
            files, columns, kinds, partitions, added, {p: display_name(n) for p, n in named}
        )
        headers = {name: file_headers[path] for path, name in named}
        if note := title_column_note(headers, columns, "labelled"):
            logger.warning("%s", note)
        with_partitions = {name: [*file_headers[path], *partitions[path]] for path, name in named}
        # An input without the id among inputs with it, else the id left under another name
        # (工单编号): either way, ids on more than one row went uncounted without a word.
        if note := _id_column_note(with_partitions, columns) or id_column_note(
            with_partitions, columns, LABEL_ID_NOTE
        ):
            logger.warning("%s", note)
        schema = output_schema(
            input_columns,
            _column_types(files, file_headers, kinds or {}, fmt, partitions) if typed else None,
            added,
        )
        max_chars = get_settings().max_text_chars
        max_title_chars = get_settings().max_title_chars
        # The joint-dispatch advice reads as many similar tickets as the server's does.
        similar_k = get_settings().similar_k
        estimated = None  # the inputs' estimated rows, for the progress bar
        if fmt == "xlsx":  # before a row is labelled: it was found at the end, hours later
            estimated = _check_one_sheet(
                files, input_columns, columns, max_chars, output, progress, file_headers
            )
        stats = {p: p.stat() for p in files}
        fingerprint = {
            "format": MANIFEST_FORMAT,
            "inputs": [
                # printable: a name of GBK bytes (a Windows zip unzipped here) is kept with \xNN
                # escapes, which JSON can hold; as is, writing the manifest ended in a traceback.
                {
                    "path": printable(str(p.resolve())),
                    "size": stats[p].st_size,
                    "mtime_ns": stats[p].st_mtime_ns,
                    # As _how_changed sees a change during the run: the next export written at
                    # the same size with its modification time set back (cp -p, rsync -t,
                    # touch -r) was resumed, one export's first chunks joined to the other's
                    # rest. Not the inode: a file system may number its files otherwise after a
                    # remount (overlayfs), and a file put in its place has a new change time.
                    "ctime_ns": stats[p].st_ctime_ns,
                    # A file system whose clock ticks coarsely (a second, two on FAT) leaves the
                    # change time of a rewrite within the tick where it was: its bytes tell.
                    "sample_sha256": _sample_sha256(p, stats[p].st_size),
                }
                for p in files
            ],
            "columns": input_columns,
            "text_col": _named(columns, "text"),
            "title_col": _named(columns, "title"),
            # The ids' column decides which rows repeat the header and which ids the summary
            # counts on more than one row: a resume without --id-col dropped the warning.
            "id_col": _named(columns, "id"),
            "delimiter": columns.delimiter,
            "chunk_size": chunk_size,
            "max_text_chars": max_chars,
            "max_title_chars": max_title_chars,
            "model_version": meta.get("version"),
            "model_sha256": meta["files"][ROUTER_FILE],
            "output_format": fmt,
            "joint": joint,
            "evidence": evidence,
            "similar_k": similar_k,
            "paidan": parts_writer(),
        }
        parts = output.with_name(output.name + PARTS_SUFFIX)
        resuming = resume and (parts / MANIFEST_FILE).is_file()
        done = _open_parts(parts, output, fingerprint, resume, force, model_dir)

        def drop_unused_parts() -> None:
            # A run refused before its first chunk (an unreachable scheduler, a cluster without
            # workers) left an empty OUTPUT.parts/ behind; one it resumed stays as it was.
            if not resuming and _chunks_done(parts) == 0:
                shutil.rmtree(parts, ignore_errors=True)

        rows_done = 0
        counts = _Counts()
        # The labelled file is written as the run goes, chunk after chunk in input order, while the
        # workers label the next ones; joining the parts at the end made every run wait for it
        # (measured: a second of a 15-second run of 100,000 rows). The parts stay for --resume.
        # Inside the parts directory, so a run killed outright (no cleanup) leaves nothing beside
        # the output that a finished --resume would not remove with the parts.
        tmp = parts / f".{output.name}.tmp"
        try:
            total = estimated if estimated is not None else sum(estimate_rows(p) for p in files)
            with _writing(tmp, parts):
                writer = OutputWriter(tmp, fmt, schema, formulas_escaped=escape_formulas)
        except BaseException:
            drop_unused_parts()
            raise
        scores: list[np.ndarray] = []
        # The id column as written, kept to count ids on more than one row at the end (a few bytes
        # a row as Arrow holds them, where a set of Python strings took ten times that).
        id_column = next((c for c in columns.names("id") if c in input_columns), None)
        ids: list[pa.ChunkedArray] = []

        def emit(table: pa.Table) -> None:
            if fmt == "xlsx" and writer.rows + table.num_rows > XLSX_MAX_ROWS - 1:
                # An input counted low before the run (a workbook's stale declared size).
                raise _SheetFull(_too_many_rows(output, f"more than {XLSX_MAX_ROWS - 1:,}", True))
            with _writing(tmp, parts):
                writer.write(table)
            scores.append(counts.add(table))
            if id_column is not None:
                ids.append(table.column(id_column))

        try:
            for index in range(done):  # what the interrupted run finished
                emit(_resumed_part(parts, index, done, output, schema))
            resumed_rows = counts.rows
            submit, window, closer, failure = _start_engine(
                engine,
                model_dir,
                model_root,
                meta,
                jobs,
                scheduler,
                upload_model,
                joint,
                similar_k,
                evidence,
            )
            try:
                pending: deque[tuple[_Chunk, _Pending | None]] = deque()

                def finish(chunk: _Chunk, future: _Pending | None) -> None:
                    nonlocal rows_done
                    preds = future.result() if future is not None else []
                    table = _part_table(chunk, preds, schema, added)
                    part = parts / _part_name(chunk.index)
                    with _writing(part, parts):
                        write_part_atomic(table, part)
                    with _writing(parts / MANIFEST_FILE, parts):
                        _commit(parts, fingerprint, chunk.index + 1)
                    emit(table)
                    rows_done += len(chunk.records)
                    if progress and rows_done != total:
                        # The estimate (physical lines, a sheet's declared size) may be reached
                        # before the end, exactly at it, or never: the stage is done when the input
                        # is (below), never before.
                        progress("labelling", rows_done, max(total, rows_done + 1))

                try:
                    for chunk in _chunks(
                        files,
                        [name for _, name in named],
                        input_columns,
                        file_headers,
                        partitions,
                        blank_lines,
                        columns,
                        chunk_size,
                        max_chars,
                        max_title_chars,
                        extra_fields,
                        functools.partial(_check_unchanged, stats),
                    ):
                        if chunk.last:
                            # Reading is over: the rows are known, where the total was an estimate
                            # (a CSV file's lines, more than its rows when texts span several; a
                            # sheet's declared size), so the chunks still to finish count against
                            # them and the progress ends at its total, not short of the estimate.
                            total = rows_done + len(chunk.records)
                            total += sum(len(c.records) for c, _ in pending)
                        if chunk.index < done:
                            rows_done += len(chunk.records)
                            continue
                        pending.append((chunk, submit(chunk.tickets) if chunk.tickets else None))
                        while len(pending) >= window:
                            finish(*pending.popleft())
                    while pending:
                        finish(*pending.popleft())
                    if progress:
                        progress("labelling", rows_done, rows_done)
                except Exception as e:
                    # A worker killed (the OOM killer), the scheduler lost: a traceback ended the
                    # run, with no word that the finished chunks are kept.
                    what = failure(e)
                    if what is None:
                        raise
                    raise LabelError(what + _kept(parts, "rerun the same command")) from None
            finally:
                closer()
            # Each input was read to its end as it was at the start; one changed since (the next
            # export written over it while the last chunks were labelled) made an output that
            # nothing told apart from the file beside it.
            changed = _changed_since(stats)
            with _writing(tmp, parts):
                writer.close()
        except BaseException as e:
            writer.abort()
            tmp.unlink(missing_ok=True)
            if isinstance(e, _SheetFull | _InputChanged):  # no run into it can ever use them
                shutil.rmtree(parts, ignore_errors=True)
            drop_unused_parts()
            raise
        with _writing(output, parts):
            os.replace(tmp, output)
            fsync_dir(output.parent)
        summary = _summary(counts)
        dept_scores = np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)
        summary.update(
            {
                "input": [printable(str(p)) for p in files],
                # A CSV or JSON Lines file's blank lines, which are no rows (as in pandas): said,
                # so that its line count and the rows written back can be reconciled.
                "blank_lines": {
                    name: {"count": len(lines), "first": sorted(lines)[:BLANK_LINES_LISTED]}
                    for name, lines in blank_lines.items()
                    if lines
                },
                # By CSV file, its rows refused for one more, empty, field than its header (a
                # trailing separator): the warning below says it once for the file.
                "extra_empty_fields": extra_fields,
                "output": str(output),
                "model_version": meta.get("version"),
                "engine": engine,
                "chunk_size": chunk_size,
                "resumed_chunks": done,
                "resumed_rows": resumed_rows,
                # CSV: the cells written with a leading ' so that a spreadsheet shows them as text.
                **({"formulas_escaped": writer.escaped} if fmt == "csv" else {}),
                # XLSX: cells over the 32,767 characters Excel holds, cut (their rows' error says
                # so).
                # and cells whose control characters (a NUL, \x1c …) XML cannot hold, removed.
                **(
                    {
                        "cells_cut": writer.cells_cut,
                        "rows_with_cells_cut": writer.rows_cut,
                        "cells_with_control_characters_removed": writer.cells_stripped,
                    }
                    if fmt == "xlsx"
                    else {}
                ),
                "seconds": round(time.perf_counter() - started, 2),
            }
        )
        warnings = []
        summary["inputs_changed_after_read"] = [str(path) for path, _ in changed]
        for path, how in changed:
            warnings.append(
                f"{path} changed after its rows were read ({how}): {output} labels its rows as "
                "they were when the run started; label it again (a copy that nothing writes to) "
                "for the rows it holds now"
            )
        if extra_fields:
            warnings.append(_extra_fields_warning(extra_fields, summary_path_name(output)))
        if counts.no_known_terms:
            warnings.append(_no_known_terms_warning(counts, output))
        if id_column is not None:
            summary["repeated_ids"] = repeated = _repeated_ids(ids)
            if repeated["ids"]:
                warnings.append(_repeated_ids_warning(repeated, output))
            rounded, first = _scientific_ids(ids)
            summary["ids_in_scientific_notation"] = {
                "rows": rounded,
                "first_row": first[0] if first else None,
            }
            if first:
                warnings.append(
                    scientific_ids_message(rounded, first[1], f"row {first[0]} of {output.name}")
                )
        if writer.cells_cut:
            cells = counted(writer.cells_cut, "cell", thousands=True)
            rows = counted(writer.rows_cut, "row", thousands=True)
            warnings.append(
                f"{cells} in {rows} held more than the {XLSX_MAX_CELL_CHARS:,} characters an Excel "
                f"cell holds and {'is' if writer.cells_cut == 1 else 'are'} cut in {output} (the "
                f"first: {writer.first_cut}); each such row's error says so: write .csv, .jsonl or "
                ".parquet to keep every character"
            )
        if writer.cells_stripped:
            cells = counted(writer.cells_stripped, "cell", thousands=True)
            warnings.append(
                f"{cells} held control characters (U+0000–U+001F other than a tab or a line end) "
                f"that an XLSX file cannot hold; they are removed in {output} (the first: "
                f"{writer.first_stripped}): write .csv, .jsonl or .parquet to keep every character"
            )
        # Over the rows this run labelled: those of the resumed chunks took the interrupted run's
        # time (counted in, a resume near the end reported several times the machine's speed).
        summary["rows_per_second"] = round(
            (summary["rows"] - resumed_rows) / max(summary["seconds"], 1e-9), 1
        )
        summary_path = output.with_name(summary_path_name(output))
        with _writing(f"the plots beside {output}", parts):
            plots = _plots(summary, dept_scores, output)
        summary["plots"] = [str(p) for p in plots]
        if "department_chart_key" in summary:
            warnings.append(
                f"no font that draws Chinese was found, so {plots[0].name} numbers its bars; "
                f"{summary_path.name} keys them (department_chart_key). Install one "
                "(fonts-noto-cjk or fonts-wqy-microhei) to see the names"
            )
        with _writing(summary_path, parts):
            write_json_atomic(summary, summary_path)
        # The manifest first: a run killed while it removed the parts left it naming chunks gone,
        # and the --resume it advised ended in a traceback.
        with suppress(OSError):
            (parts / MANIFEST_FILE).unlink()
        shutil.rmtree(parts, ignore_errors=True)
        logger.info("labelled %s rows into %s", summary["rows"], output)
        return LabelResult(output, summary, summary_path, plots, done, warnings)
    finally:
        lock.release()


def _resumed_part(parts: Path, index: int, done: int, output: Path, schema: pa.Schema) -> pa.Table:
    """Chunk ``index`` of the ``done`` an interrupted run finished, or a :class:`LabelError`
    naming it: one removed or damaged ended the resume in a traceback."""
    part = parts / _part_name(index)
    try:
        return read_part(part, schema)
    except (OSError, pa.ArrowInvalid) as e:
        which = "the finished chunk" if done == 1 else f"one of the {done:,} finished chunks"
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise LabelError(
            f"cannot resume into {output}: {part}, {which} recorded in {parts / MANIFEST_FILE}, "
            f"cannot be read ({reason}); rerun without --resume and with --force to start over"
        ) from None


def _lock_path(output: Path) -> Path:
    return output.with_name(f".{output.name}.lock")


class _OutputLock:
    """An exclusive lock (``flock``) on ``.OUTPUT.lock`` beside the output, held while a run
    writes ``OUTPUT`` and its parts; the kernel's, so it ends with the process however it ends
    (``kill -9`` too), and the file holds the holder's pid for the message.

    Two runs into one ``--out`` (a nightly cron job and the same command typed by hand) took each
    other's parts for an interrupted run's: the second deleted them, silently or with the
    ``--force`` it was advised to use, and the first then renamed the second's half-written file
    into place and said it had labelled every row; with ``--resume`` both wrote the same parts.

    A file of its own, not the parts directory, which ``--force`` deletes and recreates and a
    finished run removes. Taken in ``__init__`` (so there is nothing to release if it is refused)
    and removed, while still held, by :meth:`release`; a run that opened the name before it was
    removed finds its lock on a deleted file and takes the lock again on the new one.

    Raises
    ------
    LabelError
        When another run holds it: naming the output and that run's pid.
    """

    def __init__(self, output: Path) -> None:
        self.path = _lock_path(output)
        while True:
            with _writing(self.path, None):
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode("ascii", "replace").strip()
                os.close(fd)
                pid = f" (pid {holder})" if holder.isdigit() else ""
                raise LabelError(
                    f"{output} is being written by another paidan label run{pid}, which is "
                    "still running; wait for it to finish (or stop it, then continue it with "
                    "--resume)"
                ) from None
            except OSError:  # a file system without locks (some network ones): run as before
                pass
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # removed by the run that held it, meanwhile: lock the new file
        self._fd: int | None = fd
        try:
            with _writing(self.path, None):
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        if self._fd is not None:
            with suppress(OSError):
                self.path.unlink()
            os.close(self._fd)
            self._fd = None


class _SheetFull(LabelError):
    """The rows do not fit in one Excel sheet: the run's parts can continue no run."""


class _InputChanged(LabelError):
    """An input changed while it was read: a resume refuses it, so its parts continue no run."""


def _sample_sha256(path: Path, size: int) -> str:
    """The SHA-256 of ``path``'s first and last :data:`SAMPLE_BYTES` (all of a smaller file), which
    ``size`` bytes long: what tells a rewritten input at the same size and times from the file an
    interrupted run read, for a resume, in a millisecond however large the file is."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        sha.update(f.read(SAMPLE_BYTES))
        if size > SAMPLE_BYTES:
            f.seek(max(SAMPLE_BYTES, size - SAMPLE_BYTES))
            sha.update(f.read(SAMPLE_BYTES))
    return sha.hexdigest()


def _how_changed(before: os.stat_result, path: Path) -> str | None:
    """How ``path`` differs from ``before`` (its size, its modification time, another file at
    its name, or its inode changed), or ``None``.

    Size and modification time alone missed a file rewritten at the same size whose modification
    time was set back (``cp -p``, ``rsync -t``, ``touch -r``, a script's ``os.utime``): the change
    time (``st_ctime_ns``), which no program can set back, and the inode (a file renamed over
    it) catch those; a ``chmod`` of the file while it is read is taken for a change too.
    """
    try:
        now = path.stat()
    except FileNotFoundError:  # read to its end all the same, through the open file
        return None
    if now.st_size != before.st_size:
        return f"size {before.st_size:,} bytes at the start, {now.st_size:,} now"
    if now.st_mtime_ns != before.st_mtime_ns:
        return "modified since the start, at the same size"
    if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
        return "another file was put in its place, at the same size and modification time"
    if now.st_ctime_ns != before.st_ctime_ns:
        return (
            "rewritten or its attributes changed since the start (its change time moved), at "
            "the same size and modification time"
        )
    return None


def _changed_since(stats: dict[Path, os.stat_result]) -> list[tuple[Path, str]]:
    """The inputs no longer as ``stats`` found them at the start, with how they changed."""
    return [(path, how) for path, before in stats.items() if (how := _how_changed(before, path))]


def _check_unchanged(stats: dict[Path, os.stat_result], path: Path) -> None:
    """Raise :class:`_InputChanged` if ``path`` is no longer as ``stats`` found it at the start.

    An export still being written (rows appended as the run read them, the last line half
    written) or replaced in place by the next one was read on into the new bytes, and the
    mixture written as one file's rows, every row reported done.
    """
    how = _how_changed(stats[path], path)
    if how is None:
        return
    raise _InputChanged(
        f"{path} changed while it was being read ({how}): its rows would not be one version of "
        "the file's; nothing is written. Label a copy that nothing writes to (or wait until the "
        "export is finished), then run again"
    )


# Inputs whose estimated rows (exact for Parquet, records for CSV and lines not blank for JSON
# Lines, at least the rows) pass this share of Excel's limit are counted before an .xlsx run: a JSON array's
# estimate is extrapolated from its first elements, and may be low.
XLSX_COUNT_FROM = 0.9
# Rows counted between two progress updates.
_COUNT_PROGRESS_ROWS = 50_000


def _check_one_sheet(
    files: Sequence[Path],
    columns: list[str],
    cmap: ColumnMap,
    max_chars: int,
    output: Path,
    progress: Progress | None,
    file_headers: Mapping[Path, Sequence[str]] | None = None,
) -> int:
    """Refuse an ``.xlsx`` output for input rows that one Excel sheet cannot hold, before any
    is labelled: counted exactly (read through once, as the run reads them) when the cheap
    estimate comes near the limit, since a CSV text of several lines makes the lines more than
    the rows. Returns the cheap estimate (:func:`estimate_rows` summed), which the run's
    progress would otherwise read the inputs again for."""
    limit = XLSX_MAX_ROWS - 1
    declared = {p: declared_rows(p) for p in files if file_format(p) == "xlsx"}
    estimates = [declared[p] or 0 if p in declared else estimate_rows(p) for p in files]
    # A workbook that declares no size (or A1) is counted too: estimated at 0 rows, several of
    # them were labelled up to the limit, then refused and their chunks removed.
    if sum(estimates) <= limit * XLSX_COUNT_FROM and None not in declared.values():
        return sum(estimates)
    field_limit = max(CSV_FIELD_FACTOR * max_chars, CSV_FIELD_MIN)
    rows = 0
    for path, estimate in zip(files, estimates, strict=True):
        if file_format(path) == "parquet":  # exact
            rows += estimate
        else:
            own = cmap.for_header(path, (file_headers or {}).get(path, ()))
            records = iter_records(path, columns, field_limit, own.delimiter, own.text, own.title)
            for _ in records:
                rows += 1
                if rows > limit:
                    break
                if progress and rows % _COUNT_PROGRESS_ROWS == 0:
                    progress("counting rows (.xlsx)", rows, max(sum(estimates), rows + 1))
        if rows > limit:
            exact = all(file_format(p) == "parquet" for p in files)
            raise LabelError(
                _too_many_rows(output, f"{rows:,}" if exact else f"more than {limit:,}", False)
            )
    if progress and rows >= _COUNT_PROGRESS_ROWS:  # the stage was said: it is done
        progress("counting rows (.xlsx)", rows, rows)
    return sum(estimates)


def _too_many_rows(output: Path, rows: str, late: bool) -> str:
    """The one line that refuses an ``.xlsx`` output for ``rows`` input rows."""
    said = (
        f"--out {output}: the input has {rows} rows, and one Excel sheet holds "
        f"{XLSX_MAX_ROWS - 1:,} (under its header); write .csv, .jsonl or .parquet instead "
        f"(--out {output.with_suffix('.csv')})"
    )
    if late:
        said += (
            "; the labelled chunks are removed, since they could only continue this .xlsx run, "
            "which would stop here again"
        )
    else:
        said += "; nothing was labelled"
    return said


def written_files(output: Path) -> list[Path]:
    """``output`` and what a run writes beside it: the parts, the summary and the plots."""
    return [
        output,
        output.with_name(output.name + PARTS_SUFFIX),
        output.with_name(summary_path_name(output)),
        output.with_name(output.name + ".departments.png"),
        output.with_name(output.name + ".confidence.png"),
    ]


def _named(columns: ColumnMap, field: str) -> str | list[str] | None:
    """The column ``field`` is read from, as a run's manifest records it: a list of its names
    when the option was given several (:meth:`model.tickets.ColumnMap.names`)."""
    names = list(columns.names(field))
    return names if len(names) > 1 else columns.source_for(field)


# What goes wrong when the inputs are read without ids (model.tickets.id_column_note).
LABEL_ID_NOTE = (
    "an id on more than one row goes uncounted (joining the output back by it pairs labels with "
    "the wrong rows)"
)


def _id_column_note(headers: Mapping[str, Sequence[str]], columns: ColumnMap) -> str | None:
    """A warning for inputs without the id column that another input has, or ``None``.

    Two exports labelled together, one naming its ids otherwise (编号): its rows came back with
    an empty id, which joins back to no ticket, without a word. No input with the column: the
    output is joined back by row, as the summary's repeated ids (none counted) say.
    """
    names = columns.names("id")  # (--id-col 编号 --id-col 工单号: a file may have either)
    if not names:
        return None
    has = [name for name, have in headers.items() if any(n in have for n in names)]
    lacks = [name for name, have in headers.items() if not any(n in have for n in names)]
    if not has or not lacks:
        return None
    who = lacks[0] if len(lacks) == 1 else f"{lacks[0]} and {counted(len(lacks) - 1, 'other file')}"
    one = len(lacks) == 1
    return (
        f"{who} {'has' if one else 'have'} no column {quoted(columns.id)} for the ticket id, "
        f"which {has[0]} has, so {'its' if one else 'their'} rows come back with an empty id and "
        f"cannot be joined back by it; if {'its' if one else 'their'} ids are under another name, "
        "give that name as a further --id-col (each file is read from the name it has)"
    )


def _input_columns(
    files: Sequence[Path],
    cmap: ColumnMap,
    kinds: dict[str, set[str]] | None = None,
    partitions: dict[Path, dict[str, str]] | None = None,
    added: Sequence[str] = PRED_COLUMNS,
    names: Mapping[Path, str] | None = None,
) -> tuple[list[str], dict[Path, list[str]]]:
    """The output's input columns (every file's, in order of first appearance, a file's
    partition columns after its own), and each file's own; a file lacking a column label reads
    (which a partition may give), or holding an output column (of ``added``), is refused. ``kinds``, when
    given, collects the kinds of the JSON files' values (:func:`training.label_io.file_columns`).
    ``names``: each file's name as messages give it (by default its path), so that a file lacking a
    column the files before it have is told which of them has it (:class:`MissingColumnError`).
    """
    seen: dict[str, None] = {}
    per_file: dict[Path, list[str]] = {}
    for path in files:
        own = per_file[path] = file_columns(path, cmap.delimiter, cmap.text, kinds)
        parts = (partitions or {}).get(path, {})
        have = [*own, *(k for k in parts if k not in own)]
        # The columns label reads: the text, and a title or id named other than the default.
        reads = replace(cmap, department=None, category=None, time=None)
        try:
            check_columns(path, have, from_partitions(reads, parts))
        except MissingColumnError as e:
            if len(per_file) < 2:  # the first file read: no other has the column yet
                raise
            first = next(iter(per_file))
            raise e.beside(path, (names or {}).get(first, str(first))) from None
        seen.update(dict.fromkeys(have))
        clash = [c for c in have if c in added]
        if said := labelled_output(path, have):
            # An earlier run's output, kept in a directory of tickets (backlog/done/): reading it
            # would label its tickets a second time, and it may be the only copy of them, so it
            # is neither read nor skipped without a word.
            raise LabelError(
                f"{said}: its tickets were labelled before; move it out of the input directory, "
                "or leave it out of the files to label"
            )
        if clash:
            raise LabelError(
                f"{path}: already has output column(s) "
                f"{', '.join(map(repr, clash))}; rename or drop them (is this a file that was "
                "labelled before?)"
            )
    return list(seen), per_file


def _column_types(
    files: Sequence[Path],
    file_headers: dict[Path, list[str]],
    kinds: dict[str, set[str]],
    fmt: str,
    partitions: dict[Path, dict[str, str]] | None = None,
) -> dict[str, pa.DataType]:
    """Each input column's type in JSON Lines or Parquet output: a Parquet file's own type, a JSON
    file's values' (:func:`training.label_io.json_column_type`, over every JSON file), text for a
    CSV or XLSX file's column. Where the files disagree (an int64 id in one, a text in another),
    and for a column null throughout, string; in JSON Lines, a type JSON has no value for (a
    timestamp) is text too."""
    found: dict[str, list[pa.DataType]] = {}
    for path in files:
        fmt_in = file_format(path)
        if fmt_in == "parquet":
            for name, t in parquet_types(path).items():
                found.setdefault(name, []).append(t.value_type if pa.types.is_dictionary(t) else t)
        elif fmt_in != "jsonl":  # CSV, XLSX: text
            for name in file_headers[path]:
                found.setdefault(name, []).append(pa.string())
        for name in (partitions or {}).get(path, {}):  # a partition's value: text
            if name not in file_headers[path]:
                found.setdefault(name, []).append(pa.string())
    for name, seen in kinds.items():
        t = json_column_type(seen)
        if t is not None:
            found.setdefault(name, []).append(t)
    types = {}
    for name, ts in found.items():
        distinct = {t for t in ts if not pa.types.is_null(t)}
        t = distinct.pop() if len(distinct) == 1 else pa.string()
        if fmt == "jsonl" and not any(is_type(t) for is_type in _JSON_TYPES):
            t = pa.string()
        types[name] = t
    return types


def _part_name(index: int) -> str:
    return f"part-{index:06d}.arrow"


@functools.cache
def parts_writer() -> dict[str, str]:
    """Which paidan writes a run's parts, as its manifest records it.

    Its version, a SHA-256 of the code of :data:`WRITER_MODULES` (:func:`_code`: the same for
    an editable install, a wheel or a clone on ``PYTHONPATH`` of the same code, in every process,
    and after an edit of comments or docstrings only), and the versions of Python and of
    :data:`WRITER_LIBRARIES`. Read without importing the modules, once per process (0.1-0.4 s,
    mostly parsing them). A module without source (installed as ``.pyc`` only) counts by its compiled
    file, which differs between installs: such parts are not continued by another install.
    """
    sha = hashlib.sha256()
    for name in WRITER_MODULES:
        data = b""  # neither source nor file (frozen): the version tells such paidans apart
        with suppress(ImportError, OSError, AttributeError, TypeError, ValueError):
            # Found, not imported: importing model.pipeline to read it loaded scikit-learn and
            # pandas into every run of a serving model (0.7 s and 60 MB more, for a hash).
            spec = importlib.util.find_spec(name)
            # Decoded with universal newlines: a checkout with CRLF line ends hashes the same.
            source = spec.loader.get_source(name)  # type: ignore[union-attr]
            origin = spec.origin or ""  # type: ignore[union-attr]
            data = _code(source) if source else Path(origin).read_bytes()
        sha.update(f"{name}\0{len(data)}\0".encode())
        sha.update(data)
    found = {"version": _version("paidan"), "code": sha.hexdigest()[:16]}
    found["python"] = "{}.{}".format(*sys.version_info[:2])
    for library in WRITER_LIBRARIES:
        found[library] = _version(library)
    return found


def _code(source: str) -> bytes:
    """What of a module's ``source`` decides what it does: its syntax tree, without docstrings.

    Comments, blank lines and line breaks are not in the tree, nor its line numbers; a string
    that stands as a statement of its own (a docstring) does nothing that reaches a row, so it is
    dropped. ``ast.dump`` is the same across a Python minor version's releases (the manifest
    records the minor version). Source that does not parse counts as it is.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return source.encode()
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):
            statements = getattr(node, name, None)
            if isinstance(statements, list):
                kept = [s for s in statements if not _is_string_statement(s)]
                setattr(node, name, kept)
    return ast.dump(tree).encode()


def _is_string_statement(node: Any) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _manifest(parts: Path) -> dict[str, Any]:
    return json.loads((parts / MANIFEST_FILE).read_text(encoding="utf-8"))


def _chunks_done(parts: Path) -> int:
    try:
        return int(_manifest(parts)["done"])
    except (OSError, ValueError, KeyError):
        return 0


def kept_chunks(output: str | Path) -> int:
    """How many finished chunks of an interrupted run into ``output`` are kept for ``--resume``."""
    output = Path(output)
    return _chunks_done(output.with_name(output.name + PARTS_SUFFIX))


def _commit(parts: Path, fingerprint: dict[str, Any], done: int) -> None:
    write_json_atomic({"fingerprint": fingerprint, "done": done}, parts / MANIFEST_FILE)


def _open_parts(
    parts: Path,
    output: Path,
    fingerprint: dict[str, Any],
    resume: bool,
    force: bool,
    model_dir: Path,
) -> int:
    """Prepare ``OUTPUT.parts/``; return how many chunks an interrupted run already finished."""
    if resume and (parts / MANIFEST_FILE).is_file():
        previous = _manifest(parts)
        if previous.get("fingerprint") != fingerprint:
            old = previous.get("fingerprint", {})
            raise LabelError(_resume_mismatch(old, fingerprint, output, model_dir))
        done = int(previous["done"])
        logger.info("resuming after %s finished chunks", done)
        return done
    if resume and not force and output.exists():
        raise LabelError(
            f"{output} already exists and no run into it was interrupted (there is no "
            f"{parts.name} to resume): it finished; use --force to label again"
        )
    if resume:
        logger.warning("nothing to resume in %s; starting from the first row", parts)
    if not force:
        if output.exists():
            raise LabelError(f"{output} already exists; use --force to replace it")
        if parts.exists() and _chunks_done(parts) > 0:
            raise LabelError(
                f"{parts} holds an interrupted run; continue it with --resume, or use --force to "
                "start over"
            )
    shutil.rmtree(parts, ignore_errors=True)
    with _writing(parts, None):
        parts.mkdir(parents=True)
        _commit(parts, fingerprint, 0)
    return 0


def _resume_mismatch(
    old: dict[str, Any], new: dict[str, Any], output: Path, model_dir: Path
) -> str:
    """Why an interrupted run cannot be resumed as asked, and the options that continue it.

    It said only "used a different model_version; rerun ... with --force to start over", so a
    resume the morning after a nightly promotion, or without the run's --chunk-size, threw away
    every finished chunk, though the manifest holds what the run used.
    """
    found = old.get("format")
    if found != new["format"]:
        # Another format records other options (one from before --joint and the PAIDAN_MAX_*
        # limits has neither): compared, they named options such a run never had.
        older = found is None or (isinstance(found, int) and found < new["format"])
        who = "an older paidan" if older else "another version of paidan"
        return (
            f"cannot resume into {output}: its partial output was written by {who} (parts format "
            f"{found}, this one writes {new['format']}; the options it was run with are not "
            "recorded as this one records them), so it cannot be continued; rerun without "
            "--resume and with --force to start over"
        )
    if old.get("paidan") != new["paidan"]:
        return _another_paidan(old.get("paidan"), new["paidan"], output)
    used: list[str] = []  # what the interrupted run used, and what this one uses
    flags: list[str] = []  # the options that continue it
    env: list[str] = []  # and the settings
    cannot: list[str] = []  # what no option changes back
    blocked = False
    if (
        old.get("model_version") != new["model_version"]
        or old.get("model_sha256") != new["model_sha256"]
    ):
        version = old.get("model_version")
        if version == new["model_version"]:
            used.append(f"model {version} with another {ROUTER_FILE} (it was replaced)")
            blocked = True
        else:
            used.append(f"model {version} (now {new['model_version']})")
            found = _find_model(model_dir.parent, version, old.get("model_sha256"))
            if found is None:
                cannot.append(
                    f"model {version} is no longer in {model_dir.parent} (`paidan models gc` "
                    "deletes old versions); if you have it elsewhere, pass its directory as --model"
                )
            else:
                flags.append(f"--model {shlex.quote(str(found))}")
    for key, option in (
        ("chunk_size", "--chunk-size"),
        ("text_col", "--text-col"),
        ("title_col", "--title-col"),
        ("id_col", "--id-col"),
        ("delimiter", "--delimiter"),
        ("joint", "--joint"),
        ("evidence", "--evidence"),
    ):
        if old.get(key) != new[key]:
            was, now = _as_option(option, old.get(key)), _as_option(option, new[key])
            used.append(f"{was} (now {now.removeprefix(option + ' ')})")
            flags.append(was)
    for key, variable in (
        ("max_text_chars", "PAIDAN_MAX_TEXT_CHARS"),
        ("max_title_chars", "PAIDAN_MAX_TITLE_CHARS"),
    ):
        if old.get(key) != new[key]:
            used.append(f"{variable}={old.get(key)} (now {new[key]})")
            env.append(f"{variable}={old.get(key)}")
    # Parts written before it was recorded read SIMILAR_K tickets; without advice it shapes no cell.
    was_k = old.get("similar_k", SIMILAR_K)
    if new["joint"] and old.get("joint") and was_k != new["similar_k"]:
        used.append(f"PAIDAN_SIMILAR_K={was_k} (now {new['similar_k']})")
        env.append(f"PAIDAN_SIMILAR_K={was_k}")
    if old.get("inputs") != new["inputs"]:
        cannot.append(_inputs_differ(old.get("inputs"), new["inputs"]))
    if old.get("columns") != new["columns"]:
        cannot.append(_columns_differ(old.get("columns"), new["columns"]))
    # A key none of the above names (one recorded by only one of the two paidans, or one added
    # since): "it was started otherwise" named no reason at all.
    named = {"format", "paidan", "model_version", "model_sha256", "chunk_size", "text_col"}
    named |= {"title_col", "delimiter", "joint", "max_text_chars", "max_title_chars", "inputs"}
    named |= {"columns", "similar_k", "evidence", "id_col"}
    missing = object()
    other = [
        key
        for key in [*new, *(k for k in old if k not in new)]
        if key not in named and old.get(key, missing) != new.get(key, missing)
    ]
    unrecorded = [key for key in [*new, *old] if key in named and (key in old) != (key in new)]
    if other or unrecorded:
        keys = ", ".join(
            f"{k!r} (not recorded {'there' if k not in old else 'by this paidan'})"
            if k not in old or k not in new
            else repr(k)
            for k in [*unrecorded, *other]
        )
        cannot.append(
            f"its manifest differs from this paidan's in {keys}, so its parts were written by "
            "another version of paidan"
        )
    said = [f"the interrupted run used {', '.join(used)}"] if used else []
    said += cannot
    head = f"cannot resume into {output}: " + "; ".join(said)
    start_over = "rerun without --resume and with --force to start over"
    if blocked or cannot or not used:
        return f"{head}; {start_over}"
    setting = f"{' '.join(env)} set and " if env else ""
    without = " and without --delimiter" if "no --delimiter" in flags else ""
    options = " ".join(f for f in ["--resume", *flags] if f != "no --delimiter")
    return f"{head}; to continue it, rerun with {setting}{options}{without}, or {start_over}"


def _inputs_differ(old: Any, new: list[dict[str, Any]]) -> str:
    """How the input files differ from those of the interrupted run (their paths, as given)."""
    listed = old if isinstance(old, list) else []
    was = {str(i.get("path")): i for i in listed if isinstance(i, dict)}
    now = {str(i["path"]): i for i in new}
    said = []
    gone = [path for path in was if path not in now]
    if gone:
        said.append(f"{_some(gone)} {'is' if len(gone) == 1 else 'are'} not among them now")
    added = [path for path in now if path not in was]
    if added:
        said.append(f"{_some(added)} {'was' if len(added) == 1 else 'were'} not among them")
    changed = [path for path in now if path in was and was[path] != now[path]]
    if changed:
        what = [
            name
            for key, name in (("size", "size"), ("mtime_ns", "modification time"))
            if any(was[path].get(key) != now[path][key] for path in changed)
        ]
        how = ", ".join(what)
        if not how and any(was[p].get("ctime_ns") != now[p]["ctime_ns"] for p in changed):
            how = (
                "rewritten or replaced: the change time moved, at the same size and modification "
                "time"
            )
        elif not how:  # the change time within its tick: the bytes sampled (_sample_sha256) tell
            how = (
                f"rewritten: its first or last {SAMPLE_BYTES // 1024} KiB differ, at the same "
                "size, modification time and change time"
            )
        said.append(f"{_some(changed)} changed since ({how})")
    return "the input files are not the same: " + (", ".join(said) or "given in another order")


def _columns_differ(old: Any, new: list[str]) -> str:
    """How the input's columns differ from the interrupted run's, quoted masked."""
    was = [str(c) for c in old] if isinstance(old, list) else []
    gone = [c for c in was if c not in new]
    added = [c for c in new if c not in was]
    said = []
    if gone:
        said.append(f"{_some([quoted(c) for c in gone])} {'is' if len(gone) == 1 else 'are'} gone")
    if added:
        said.append(f"{_some([quoted(c) for c in added])} {'is' if len(added) == 1 else 'are'} new")
    return "the input's columns are not the same: " + (", ".join(said) or "in another order")


def _some(names: list[str], shown: int = 3) -> str:
    """The first ``shown`` of ``names``, and how many more."""
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


def _another_paidan(old: Any, new: dict[str, str], output: Path) -> str:
    """Refuse parts another paidan (:func:`parts_writer`) wrote, naming what differs."""
    was = old if isinstance(old, dict) else {}
    names = {"python": "Python"}
    differ = [
        f"{names.get(key, key)} {was.get(key, 'unrecorded')} (now {new.get(key, 'unrecorded')})"
        for key in [*new, *(k for k in was if k not in new)]
        if was.get(key) != new.get(key)
    ]
    listed = ", ".join(differ[:-1]) + " and " + differ[-1] if len(differ) > 1 else differ[0]
    return (
        f"cannot resume into {output}: its partial output was written by another paidan, whose "
        f"{listed} may read or write rows otherwise, so it cannot be continued; rerun without "
        "--resume and with --force to start over"
    )


def _as_option(option: str, value: Any) -> str:
    """``value`` as the command-line option that gives it (``--delimiter tab``, ``--no-joint``,
    ``--evidence``)."""
    if option in ("--joint", "--evidence"):
        return option if value else "--no-" + option.removeprefix("--")
    if option == "--delimiter":
        if value is None:
            return "no --delimiter"
        if value == "\t":
            return "--delimiter tab"
        return f"--delimiter '{value}'" if value != "'" else '--delimiter "\'"'  # for a shell
    return f"{option} {shlex.quote(str(value))}"


def _find_model(parent: Path, version: Any, sha256: Any) -> Path | None:
    """The model directory beside ``parent``'s others that holds ``version`` with ``sha256``."""
    if not isinstance(version, str) or not version:
        return None
    named = parent / version
    candidates = [named] if named.is_dir() else []
    with suppress(OSError):
        candidates += sorted(d for d in parent.iterdir() if d.is_dir() and d != named)
    for candidate in candidates:
        try:
            meta = json.loads((candidate / METADATA_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (
            isinstance(meta, dict)
            and meta.get("version", candidate.name) == version
            and meta.get("files", {}).get(ROUTER_FILE) == sha256
        ):
            return candidate
    return None


@contextmanager
def _writing(what: str | Path, parts: Path | None) -> Iterator[None]:
    """Turn an ``OSError`` while writing ``what`` into a :class:`LabelError` saying what is kept.

    A full disk (ENOSPC), a file-size limit or quota (EFBIG, EDQUOT) or a permission ended the run
    in a Python traceback that named neither the file nor ``--resume``. ``parts`` is the run's
    parts directory, whose finished chunks ``--resume`` continues from (``None``: none yet).
    """
    try:
        yield
    except OSError as e:
        message = f"cannot write {e.filename or what}: {e.strerror or e}"
        # A name too long stays too long: --resume fails the same way (the up-front check
        # knows the names label writes; this one is the file system's own word).
        if parts is not None and e.errno != errno.ENAMETOOLONG:
            message += _kept(parts, "once it can be written, rerun the same command")
        raise LabelError(message) from None


def _kept(parts: Path, rerun: str) -> str:
    """What an interrupted run keeps in ``parts`` and how ``--resume`` continues it, or ``""``."""
    done = _chunks_done(parts)
    if not done:
        return ""
    chunks = counted(done, "finished chunk is", "finished chunks are", thousands=True)
    return f"; the {chunks} kept in {parts}: {rerun} with --resume to continue from there"


class _Pending(Protocol):
    """A chunk being labelled: a ``concurrent.futures`` or a Dask future."""

    def result(self) -> list[Prediction]: ...


Submit = Callable[[list[tuple[str, str]]], _Pending]
# What went wrong with the engine itself (not with a chunk), said in a line, or None.
Failure = Callable[[Exception], str | None]


def _local_failure(e: Exception) -> str | None:
    if isinstance(e, BrokenProcessPool):
        return (
            "a labelling worker process ended abruptly (killed by a signal: by the out-of-memory "
            "killer if `dmesg` says so, and then fewer --jobs or a smaller --chunk-size use less "
            "memory)"
        )
    return None


def _no_failure(e: Exception) -> str | None:
    return None


def _start_engine(
    engine: Engine,
    model_dir: Path,
    model_root: str | Path | None,
    meta: dict[str, Any],
    jobs: int | None,
    scheduler: str | None,
    upload_model: bool,
    joint: bool,
    similar_k: int,
    evidence: bool = False,
) -> tuple[Submit, int, Callable[[], None], Failure]:
    """How to submit a chunk's tickets, how many chunks may be in flight, how to stop, and how
    to tell a failure of the engine itself."""
    root = str(model_root) if model_root is not None else None
    sha256 = meta["files"][ROUTER_FILE]
    if engine == "local":
        n = jobs or os.cpu_count() or 1
        if n == 1:
            # Verified against the root by the caller already.
            router = cached_router(str(model_dir), sha256)
            return (
                (lambda tickets: _done(predict_rows, router, tickets, joint, similar_k, evidence)),
                1,
                lambda: None,
                _no_failure,
            )
        context = multiprocessing.get_context()
        # The workers' parent, unless a forkserver starts them. The kernel's parent-death signal
        # follows the thread that started a worker: this one (ProcessPoolExecutor starts them
        # all from the submitting thread), which runs the pool until it is shut down.
        parent = os.getpid() if context.get_start_method() != "forkserver" else None
        if context.get_start_method() == "fork":
            # Load once, here, before the workers fork: they share its pages copy-on-write, and
            # the bulk of a model (the classifiers' coefficient arrays) is never written, so N
            # workers cost little more memory than one.
            router = cached_router(str(model_dir), sha256)
            pool = ProcessPoolExecutor(
                max_workers=n,
                mp_context=context,
                initializer=_adopt_router,
                initargs=(router, parent),
            )
        else:  # spawn / forkserver: each worker loads the model once
            pool = ProcessPoolExecutor(
                max_workers=n,
                mp_context=context,
                initializer=_init_worker,
                initargs=(str(model_dir), root, parent),
            )

        def submit_local(tickets: list[tuple[str, str]]) -> _Pending:
            # The first submit starts the workers: they start with Ctrl-C blocked (and ignore it
            # once started), as does the pool's manager thread.
            with _signals_deferred():
                return pool.submit(_label_in_worker, tickets, joint, similar_k, evidence)

        def shut_down() -> None:
            # Not cut short by a second Ctrl-C or a SIGTERM (either acted on once the pool is
            # shut down): a Ctrl-C that interrupted the wait for the pool's manager thread made
            # Python (3.9-3.11, CPython issue 90882) take that thread for ended, and exit past
            # it, closing the queue its stop messages to the workers go through; it then waited
            # for ever for the workers. The CLI's SIGTERM (stop_on_sigterm) left them running.
            with _signals_deferred(signal.SIGINT, signal.SIGTERM):
                pool.shutdown(cancel_futures=True)

        return submit_local, n * IN_FLIGHT_PER_WORKER, shut_down, _local_failure
    if engine != "dask":
        raise LabelError(f"unknown engine {engine!r}; use 'local' or 'dask'")
    try:
        import dask
        from distributed import Client, LocalCluster
        from distributed.client import FutureCancelledError
        from distributed.comm import CommClosedError
        from distributed.scheduler import KilledWorker
    except ImportError:
        raise LabelError(
            "the Dask engine needs dask[distributed]: pip install 'paidan[dask]'"
        ) from None
    # For the engine's life (read when the client, the in-process scheduler and the workers are
    # created): Dask keeps its last `low-level-log-length` (1000) messages per connection for
    # debugging, and every chunk's tickets are in one: the process running `paidan label` grew
    # by about 1.5 KB per row for the first 1000 chunks (1.16 GB at 600,000 rows).
    config = dask.config.set(DASK_CONFIG)
    # Dask logs at INFO (~33 lines a run: scheduler, nannies, connections) where paidan logs only
    # warnings unless --verbose; and closing a cluster after a failure or Ctrl-C adds its own
    # errors and warnings (lost tasks, a cancelled reconnect) to the one line that says it all.
    quiet = logging.getLogger().getEffectiveLevel() > logging.INFO
    dask_levels = _dask_log_levels()
    if quiet:
        _set_dask_log_levels(
            {name: max(level, logging.WARNING) for name, level in dask_levels.items()}
        )
    cluster: LocalCluster | None = None
    client: Client | None = None

    def close() -> None:
        try:
            if quiet:
                _set_dask_log_levels(dict.fromkeys(dask_levels, logging.CRITICAL))
            # Not cut short by a Ctrl-C or a SIGTERM meanwhile (acted on once it is closed), as
            # the local pool's shutdown: the CLI's Terminated left the cluster's workers running.
            with _signals_deferred(signal.SIGINT, signal.SIGTERM):
                if client is not None:
                    client.close()
                if cluster is not None:
                    cluster.close()
        finally:
            _set_dask_log_levels(dask_levels)
            config.__exit__(None, None, None)

    try:
        if scheduler:
            try:
                client = Client(scheduler)
            except OSError as e:  # refused, timed out, unknown host
                raise LabelError(
                    f"cannot reach the Dask scheduler at {scheduler}: {e} (is `dask scheduler` "
                    "running there? Without --scheduler a local cluster is started)"
                ) from None
        else:
            # The workers never see Ctrl-C: the terminal sends it to the whole process group,
            # and each worker printed a KeyboardInterrupt traceback around paidan's one line
            # (this process alone stops the run and closes the cluster). They are started, and
            # restarted, from threads made here, which inherit the blocked signal, as do the
            # processes they start. A Ctrl-C meanwhile is raised once the cluster is up (and
            # closed at once): in the middle of its start it left a worker running.
            with _signals_deferred():
                cluster = LocalCluster(
                    n_workers=jobs or 2,
                    threads_per_worker=1,
                    processes=True,
                    # No dashboard, and the HTTP server the scheduler always starts on a free
                    # port of this machine only ("Port 8787 is already in use" for a second run).
                    dashboard_address="127.0.0.1:0",
                    scheduler_kwargs={"dashboard": False},
                )
            client = Client(cluster)
        workers = len(client.scheduler_info().get("workers", {}))
        if not workers:
            # It waited for ever, silently, on the first chunk (not started yet after a reboot,
            # all stopped or crashed). The chunks are still submitted: an adaptive cluster
            # (dask-kubernetes, dask-gateway, dask-jobqueue scaled to zero) starts workers only
            # for submitted work, and refusing it after a wait failed every run on one.
            address = scheduler or client.scheduler.address
            if not upload_model:
                logger.warning(
                    "the Dask scheduler at %s has no workers yet: the chunks wait for one to join "
                    "(an adaptive cluster starts them for submitted work; otherwise start some: "
                    "`dask worker %s`)",
                    address,
                    address,
                )
            else:
                # The model is sent to the running workers before any chunk: there must be one.
                logger.warning(
                    "the Dask scheduler at %s has no workers; --upload-model sends the model to "
                    "running workers, waiting up to %d s for one to join",
                    address,
                    DASK_WORKER_WAIT_SECONDS,
                )
                try:
                    client.wait_for_workers(1, timeout=DASK_WORKER_WAIT_SECONDS)
                except TimeoutError:
                    raise LabelError(
                        f"the Dask scheduler at {address} has no workers (none joined in "
                        f"{DASK_WORKER_WAIT_SECONDS} s), and --upload-model sends the model to "
                        f"running workers; start some (`dask worker {address}`) and rerun the "
                        "command"
                    ) from None
                workers = len(client.scheduler_info().get("workers", {}))
        workers = max(1, workers)
        model: Any
        if upload_model:
            # Every worker gets the files once; each writes them to a private temp dir and
            # verifies them.
            model = client.scatter(
                ModelBundle.read(model_dir.resolve(), meta), broadcast=True, hash=False
            )
        else:
            # The workers read the same path: it must be on storage they all see.
            model = str(model_dir.resolve())
    except BaseException:
        close()
        raise
    submit = client.submit
    cluster_name = f"the Dask cluster at {scheduler}" if scheduler else "the local Dask cluster"

    def failure(e: Exception) -> str | None:
        if isinstance(e, KilledWorker):
            died = counted(e.allowed_failures + 1, "time")
            why = (
                f"the workers running a chunk died {died} in a row "
                "(killed, or out of memory: see the workers' logs)"
            )
        elif isinstance(e, FutureCancelledError):
            if e.reason == "scheduler-connection-lost":
                why = "the connection to the scheduler was lost"
            elif upload_model:
                # The sent model lives in the workers' memory only: a worker that held it left
                # (killed, out of memory, scaled down) and the tasks needing it were cancelled.
                why = (
                    "a worker holding the model sent by --upload-model left the cluster (killed, "
                    "out of memory or scaled down) and the model went with it; the chunks' tasks "
                    f"were cancelled ({e.reason})"
                )
            else:
                why = f"a chunk's task was cancelled ({e.reason})"
        elif isinstance(e, CommClosedError):
            why = f"a connection was closed ({e})"
        else:
            return None
        return f"{cluster_name} failed: {why}"

    return (
        # pure=False: two chunks with the same texts are still two tasks.
        lambda tickets: submit(
            _label_on_dask, model, sha256, tickets, joint, similar_k, evidence, pure=False
        ),
        workers * IN_FLIGHT_PER_WORKER,
        close,
        failure,
    )


def _dask_log_levels() -> dict[str, int]:
    """The level of Dask's logger and of its children given their own (``distributed.client``)."""
    levels = {"distributed": logging.getLogger("distributed").level}
    for name, child in list(logging.Logger.manager.loggerDict.items()):
        if name.startswith("distributed.") and isinstance(child, logging.Logger) and child.level:
            levels[name] = child.level
    return levels


def _set_dask_log_levels(levels: dict[str, int]) -> None:
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@contextmanager
def _signals_deferred(*signums: int) -> Iterator[None]:
    """Hold the signals ``signums`` (default: Ctrl-C's SIGINT) back while the body runs (and from
    the processes it starts), then act on the first that came, as its handler would have.

    They are blocked in this thread, so the threads it starts meanwhile and the processes they
    start inherit the block; one that another thread receives is noted by the handler put in its
    place, and delivered again once the body is done, not halfway through it. A signal without a
    Python handler is left alone: ignored, or SIGTERM after the CLI's handler took the first
    (:func:`paidan.cli.stop_on_sigterm`), so that a second ends the process at once.
    """
    if (
        not hasattr(signal, "pthread_sigmask")
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return
    # Started now, or its start would unblock SIGINT again in this thread (multiprocessing
    # blocks SIGINT and SIGTERM while it starts the tracker, then unblocks both).
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    held = [s for s in signums or (signal.SIGINT,) if callable(signal.getsignal(s))]
    came: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: came.append(signum)) for s in held}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if came:
        # Its handler runs before raise_signal returns: Ctrl-C's raises KeyboardInterrupt here.
        signal.raise_signal(came[0])


def _done(fn: Callable[..., Any], *args: Any) -> Future[Any]:
    """Run ``fn`` now and wrap its outcome in a finished future (the in-process engine)."""
    future: Future[Any] = Future()
    try:
        future.set_result(fn(*args))
    except Exception as e:
        future.set_exception(e)
    return future


# -- finishing -----------------------------------------------------------------------------------


@dataclass
class _Counts:
    rows: int = 0
    labelled: int = 0
    errors: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    departments: Counter[str] = field(default_factory=Counter)
    categories: Counter[str] = field(default_factory=Counter)
    error_kinds: Counter[str] = field(default_factory=Counter)
    # Rows given joint-dispatch advice, and how often each department was advised beside the lead.
    joint: int = 0
    co_departments: Counter[str] = field(default_factory=Counter)
    # Rows that hold no word the model knows (punctuation, digits, a masked number alone), and the
    # first (its data row, counted from 1): their labels are guesses from characters.
    no_known_terms: int = 0
    first_no_known_terms: int | None = None

    def add(self, table: pa.Table) -> np.ndarray:
        cols = table.select(list(PRED_COLUMNS)).to_pydict()
        for i, reasons in enumerate(zip(*(cols[c] for c in LABEL_REASON_COLUMNS), strict=True)):
            if REASON_NO_KNOWN_TERMS in reasons:
                self.no_known_terms += 1
                if self.first_no_known_terms is None:
                    self.first_no_known_terms = self.rows + i + 1
        self.rows += table.num_rows
        for error in cols["error"]:
            if error is not None:
                self.errors += 1
                self.error_kinds[error.split(":", 1)[0]] += 1
        self.decisions.update(d for d in cols["decision"] if d is not None)
        self.departments.update(d for d in cols["pred_department"] if d is not None)
        self.categories.update(c for c in cols["pred_category"] if c is not None)
        for advice in cols["co_departments"]:
            if advice and advice != "[]":
                self.joint += 1
                self.co_departments.update(a["label"] for a in json.loads(advice))
        self.labelled = sum(self.decisions.values())
        return np.asarray(
            [s for s in cols["pred_department_score"] if s is not None], dtype=np.float32
        )


# Repeated ids a summary lists, each with the rows it is on (at most REPEATED_ROWS_LISTED of them).
REPEATED_IDS_LISTED = 10
REPEATED_ROWS_LISTED = 10
# What model.text.id_key drops from an id, as an RE2 pattern: invisible format characters.
ID_FORMAT_CHARACTER = r"\p{Cf}"


def summary_path_name(output: Path) -> str:
    """The name of the summary ``paidan label`` writes beside ``output``."""
    return output.name + ".summary.json"


def _repeated_ids(ids: Sequence[pa.ChunkedArray]) -> dict[str, Any]:
    """How many ids of the output's id column are on more than one row, on how many rows in all,
    and the first few (in the order they first occur) with the rows they are on, counted from 1
    as the output's data rows, which are the input's in its order. An empty or missing id is no
    id. Ids are compared by their key (:func:`model.text.id_key`, vectorised); each is shown as
    written on its first row, as messages quote a cell (masked)."""
    none: dict[str, Any] = {"ids": 0, "rows": 0, "examples": []}
    chunks = [c for column in ids for c in column.chunks]
    if not chunks:
        return none
    written = pa.chunked_array(chunks, type=chunks[0].type)
    column = written
    present = pc.is_valid(column)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        # Compared by their key (model.text.id_key): "２０２６１２０６００１" and "20261206001\u200b" are
        # one id; one of spaces or invisible characters alone is none.
        column = pc.utf8_trim_whitespace(
            pc.utf8_normalize(pc.replace_substring_regex(column, ID_FORMAT_CHARACTER, ""), "NFKC")
        )
        present = pc.and_(present, pc.greater(pc.utf8_length(column), 0))
    counts = pc.value_counts(column.filter(present))
    repeated = counts.filter(pc.greater(counts.field("counts"), 1))
    if not len(repeated):
        return none
    examples = []
    for value in repeated.field("values")[:REPEATED_IDS_LISTED]:
        rows = pc.indices_nonzero(pc.equal(column, value))[:REPEATED_ROWS_LISTED].to_pylist()
        first = written[rows[0]].as_py()  # as written on its first row
        examples.append({"id": mask_label(str(first)), "rows": [r + 1 for r in rows]})
    return {
        "ids": len(repeated),
        "rows": int(pc.sum(repeated.field("counts")).as_py()),
        "examples": examples,
    }


def _extra_fields_warning(extra: dict[str, dict[str, Any]], summary_name: str) -> str:
    """The one warning for the CSV files whose rows have one more, empty, field than the header.

    An export that ends every line with a separator (``1,a,路灯不亮,`` under ``id,title,text``)
    gave every row its own ``malformed CSV`` error, 0 labelled and exit 0, with nothing that
    said why for the file: on a million rows the run was wasted. Each row keeps its error; the
    header is not read as having the empty column, since which of its columns the rows' cells
    belong to cannot be told from here (pandas takes the first for an index)."""
    name, first = next(iter(extra.items()))
    n, rows = first["rows"], first["of"]
    unnamed = f"'Unnamed: {first['header_fields']}'"
    said = (
        f"every row of {name} ({counted(rows, 'row', thousands=True)}) has"
        if n == rows
        else f"{n:,} of the {rows:,} rows of {name} {'has' if n == 1 else 'have'}"
    )
    more = (
        f"; {counted(len(extra) - 1, 'more file')} alike ({summary_name}: extra_empty_fields)"
        if len(extra) > 1
        else ""
    )
    return (
        f"{said} one more, empty, field than the header (the first on {first['where']}, "
        f"{first['header_fields'] + 1} fields, the header has {first['header_fields']}): a "
        f"trailing separator? {'They are' if n > 1 else 'It is'} not labelled, each with its "
        "error; end the header line with the separator too (in a copy of the file: the empty "
        f"column is then read as {unnamed}) and label again{more}"
    )


def _scientific_ids(ids: Sequence[pa.ChunkedArray]) -> tuple[int, tuple[int, str] | None]:
    """How many ids of the output's id column are numbers in scientific notation
    (:func:`model.tickets.scientific_ids`), and the first (its data row, counted from 1, and
    its value)."""
    chunks = [c for column in ids for c in column.chunks]
    text = [c for c in chunks if pa.types.is_string(c.type) or pa.types.is_large_string(c.type)]
    if not text or len(text) < len(chunks):
        return 0, None  # (a column of numbers, or of mixed kinds, is read as it is)
    if any(c.type != text[0].type for c in text):
        text = [c.cast(pa.large_string()) for c in text]
    column = pa.chunked_array(text, type=text[0].type)
    n, row = scientific_ids(column)
    if row is None:
        return 0, None
    return n, (row + 1, str(column[row].as_py()))


def _no_known_terms_warning(counts: _Counts, output: Path) -> str:
    """The warning for the rows that hold no word the model knows (or placeholders alone): each
    came back as an ordinary low-confidence review, a guess that nothing told from a ticket the
    model read and was unsure of."""
    n = counts.no_known_terms
    return (
        f"{counted(n, 'row', thousands=True)} {'holds' if n == 1 else 'hold'} no word the model "
        f"knows (punctuation, digits, a masked phone number or emoji alone, or a placeholder "
        f"such as 见附件 or 如题 whose content is in an attachment; the first on row "
        f"{counts.first_no_known_terms} of {output.name}): {'its' if n == 1 else 'their'} labels "
        "are guesses, marked no_known_terms in department_reason and category_reason, for a "
        "person to read (with any attachment)"
    )


def _repeated_ids_warning(repeated: dict[str, Any], output: Path) -> str:
    """The warning for :func:`_repeated_ids`' count when an id is on more than one row."""
    first = repeated["examples"][0]
    where = ", ".join(map(str, first["rows"][:-1])) + f" and {first['rows'][-1]}"
    more = repeated["ids"] > 1 or len(first["rows"]) < repeated["rows"]
    return (
        f"{counted(repeated['ids'], 'ticket id', thousands=True)} "
        f"{'is' if repeated['ids'] == 1 else 'are'} on more than one row "
        f"({repeated['rows']:,} rows in all; {quoted(first['id'], cell=True)} on rows {where} of "
        f"{output.name}{f'; {summary_path_name(output)} lists more' if more else ''}): every row "
        "is labelled, so join the output back by row, not by id, or check the input for a ticket "
        "exported twice"
    )


def _summary(counts: _Counts) -> dict[str, Any]:
    """What the labelled file holds, counted as it was written."""
    if counts.rows != counts.labelled + counts.errors:  # a bug, never bad input
        raise RuntimeError(
            f"row counts do not add up: {counted(counts.rows, 'row')}, {counts.labelled} labelled, "
            f"{counted(counts.errors, 'error')}"
        )
    return {
        "rows": counts.rows,
        "labelled": counts.labelled,
        "errors": counts.errors,
        "auto": counts.decisions.get("auto", 0),
        "review": counts.decisions.get("review", 0),
        "errors_by_kind": dict(counts.error_kinds.most_common()),
        "departments": dict(counts.departments.most_common()),
        "categories": dict(counts.categories.most_common()),
        "joint_advice": counts.joint,
        "co_departments": dict(counts.co_departments.most_common()),
        "no_known_terms": {"rows": counts.no_known_terms, "first_row": counts.first_no_known_terms},
    }


def _plots(summary: dict[str, Any], dept_scores: np.ndarray, output: Path) -> list[Path]:
    from training.plots import bar_png, cjk_font, histogram_png

    written = []
    if summary["departments"]:
        if cjk_font() is None and not all(d.isascii() for d in summary["departments"]):
            # The chart numbers the departments (no font draws Chinese): the key, in the summary.
            summary["department_chart_key"] = {
                str(i): d for i, d in enumerate(summary["departments"]) if not d.isascii()
            }
        written.append(
            bar_png(
                summary["departments"],
                "Tickets per predicted department",
                output.with_name(output.name + ".departments.png"),
                # No file name: one in Chinese is drawn as boxes without the font.
                "(no font draws Chinese: the numbers are keyed in department_chart_key of the "
                "summary JSON)",
            )
        )
    if dept_scores.size:
        written.append(
            histogram_png(
                dept_scores,
                "Department confidence",
                output.with_name(output.name + ".confidence.png"),
            )
        )
    # A chart this run does not draw (it labelled no row) is not left from an earlier run into
    # the same --out (--force): it showed that run's departments and scores beside this output.
    for name in (".departments.png", ".confidence.png"):
        chart = output.with_name(output.name + name)
        if chart not in written:
            chart.unlink(missing_ok=True)
    return written
