"""--resume across paidans: parts another paidan wrote are refused, naming what differs.

A run interrupted under one paidan and resumed by an upgraded one gave one output holding both
paidans' cells (JSON booleans ``True`` then ``true``, an .xlsx's ids ``1`` then ``00501``), since
the manifest recorded nothing about the code that wrote its parts.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

import training.label
from model.tickets import ColumnMap
from paidan.cli import app
from tests.conftest import TINY_TICKETS
from tests.training.test_label import Interrupt, ticket_rows, write_csv
from training.label import MANIFEST_FORMAT, WRITER_MODULES, LabelError, label, parts_writer

ROOT = Path(training.label.__file__).resolve().parents[1]

# Run by another install's Python: label into OUT, stopped after its first finished chunk.
INTERRUPTED_RUN = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import training.label
    from training.label import label

    src, model, out, install = map(Path, sys.argv[1:])
    assert Path(training.label.__file__).resolve().is_relative_to(install.resolve())

    class Stop(Exception):
        pass

    def stop(stage, done, total):
        raise Stop

    try:
        label([src], model, out, jobs=1, chunk_size=7, progress=stop)
    except Stop:
        pass
    """
)


def _install(where: Path, change: str | None = None) -> Path:
    """A copy of paidan's modules at another place (as a wheel installs them), ``change`` added
    to training/label_io.py (an upgrade that changed how a cell is read)."""
    for package in ("model", "training"):
        shutil.copytree(
            ROOT / package, where / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    if change is not None:
        io = where / "training" / "label_io.py"
        io.write_text(io.read_text(encoding="utf-8") + change, encoding="utf-8")
    return where


def _interrupt_with(install: Path, src: Path, model: Path, out: Path) -> None:
    """Start a run of ``install``'s paidan into ``out`` and stop it after one finished chunk."""
    env = {**os.environ, "PYTHONPATH": str(install), "PYTHONDONTWRITEBYTECODE": "1"}
    args = [sys.executable, "-c", INTERRUPTED_RUN, str(src), str(model), str(out), str(install)]
    proc = subprocess.run(args, cwd=install, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out.parent / f"{out.name}.parts" / "manifest.json").read_text())
    assert manifest["done"] == 1


def _manifest(out: Path) -> Path:
    return out.with_name(out.name + ".parts") / "manifest.json"


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_parts_the_same_code_wrote_elsewhere_are_resumed(
    tiny_model_dir: Path, tmp_path: Path, engine: str
) -> None:
    # Another process, another place (an editable install against a wheel of the same code): the
    # parts are continued, into the same bytes as an uninterrupted run.
    src = write_csv(tmp_path / "in.csv", ticket_rows(30))
    whole = tmp_path / "whole.csv"
    label([src], tiny_model_dir, whole, jobs=1, chunk_size=7)
    out = tmp_path / "out.csv"
    _interrupt_with(_install(tmp_path / "same"), src, tiny_model_dir, out)

    if engine == "dask":
        pytest.importorskip("distributed")
        from distributed import LocalCluster

        with LocalCluster(
            n_workers=1, processes=False, threads_per_worker=1, dashboard_address=None
        ) as cluster:
            result = label(
                [src],
                tiny_model_dir,
                out,
                engine="dask",
                scheduler=cluster.scheduler_address,
                chunk_size=7,
                resume=True,
            )
    else:
        result = label([src], tiny_model_dir, out, jobs=1, chunk_size=7, resume=True)
    assert result.resumed_chunks == 1
    assert out.read_bytes() == whole.read_bytes()


def test_parts_another_paidans_code_wrote_are_refused_naming_it(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    src = write_csv(tmp_path / "in.csv", ticket_rows(30))
    whole = tmp_path / "whole.csv"
    label([src], tiny_model_dir, whole, jobs=1, chunk_size=7)
    out = tmp_path / "out.csv"
    _interrupt_with(
        _install(tmp_path / "old", "\nCELL_READER = 2  # read a cell otherwise\n"),
        src,
        tiny_model_dir,
        out,
    )
    theirs = json.loads(_manifest(out).read_text())["fingerprint"]["paidan"]["code"]
    ours = parts_writer()["code"]
    assert theirs != ours

    args = ["label", str(src), "--model", str(tiny_model_dir), "--out", str(out), "--jobs", "1"]
    res = CliRunner().invoke(app, [*args, "--chunk-size", "7", "--resume"])
    assert res.exit_code == 2, res.output
    assert " ".join(res.output.split()) == (
        f"error: cannot resume into {out}: its partial output was written by another paidan, "
        f"whose code {theirs} (now {ours}) may read or write rows otherwise, so it cannot be "
        "continued; rerun without --resume and with --force to start over"
    )
    assert json.loads(_manifest(out).read_text())["done"] == 1  # kept, as refused

    res = CliRunner().invoke(app, [*args, "--chunk-size", "7", "--force"])
    assert res.exit_code == 0, res.output
    assert out.read_bytes() == whole.read_bytes()


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_parts_code_only_commented_otherwise_wrote_are_resumed(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # The hash covered the modules' whole text and the server's settings: a commit that reworded
    # a docstring, a comment or a setting's description refused every interrupted run.
    src = write_csv(tmp_path / "in.csv", ticket_rows(30))
    whole = tmp_path / "whole.csv"
    label([src], tiny_model_dir, whole, jobs=1, chunk_size=7)
    old = _install(tmp_path / "old")
    io = old / "training" / "label_io.py"
    _edit(io, '"""', '# A comment the new paidan dropped.\n\n"""An older wording. ')
    _edit(io, "\ndef ", "\n\n\ndef ")  # other blank lines: other line numbers
    _edit(io, '    """', '    """An older wording of this docstring. ')
    _edit(
        old / "model" / "settings.py",
        'description="Directory for the embedded SQLite feedback database"',
        'description="Where the feedback database lives"',
    )
    out = tmp_path / "out.csv"
    _interrupt_with(old, src, tiny_model_dir, out)
    assert json.loads(_manifest(out).read_text())["fingerprint"]["paidan"] == parts_writer()

    args = ["label", str(src), "--model", str(tiny_model_dir), "--out", str(out), "--jobs", "1"]
    res = CliRunner().invoke(app, [*args, "--chunk-size", "7", "--resume"])
    assert res.exit_code == 0, res.output
    assert out.read_bytes() == whole.read_bytes()


def test_every_setting_a_run_reads_is_recorded(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # model.settings is not in the hash: the settings that shape cells are recorded as values.
    import model.settings

    settings = model.settings.get_settings()
    read: set[str] = set()

    class Recording:
        def __getattr__(self, name: str) -> object:
            read.add(name)
            return getattr(settings, name)

    def get_settings() -> Recording:
        return Recording()

    monkeypatch.setattr(model.settings, "get_settings", get_settings)
    for name in WRITER_MODULES:
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "get_settings"):
            monkeypatch.setattr(module, "get_settings", get_settings)
    src = write_csv(tmp_path / "in.csv", ticket_rows(30))
    out = tmp_path / "out.csv"
    with pytest.raises(Interrupt):
        label([src], tiny_model_dir, out, jobs=1, chunk_size=7, progress=_stop)
    recorded = json.loads(_manifest(out).read_text())["fingerprint"]
    assert read
    assert {name: recorded.get(name) for name in read} == {
        name: getattr(settings, name) for name in read
    }


def _stop(stage: str, done: int, total: int) -> None:
    raise Interrupt


def _interrupted(tiny_model_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    src = write_csv(tmp_path / "in.csv", ticket_rows(30))

    def stop(stage: str, done: int, total: int) -> None:
        raise Interrupt

    out = tmp_path / "out.csv"
    with pytest.raises(Interrupt):
        label([src], tiny_model_dir, out, jobs=1, chunk_size=7, progress=stop)
    return src, out


def test_parts_written_with_another_reading_library_are_refused_naming_it(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    src, out = _interrupted(tiny_model_dir, tmp_path)
    data = json.loads(_manifest(out).read_text())
    data["fingerprint"]["paidan"] |= {"version": "0.0.9", "pyarrow": "15.0.0"}
    _manifest(out).write_text(json.dumps(data))
    with pytest.raises(LabelError) as e:
        label([src], tiny_model_dir, out, jobs=1, chunk_size=7, resume=True)
    now = parts_writer()
    assert (
        f"written by another paidan, whose version 0.0.9 (now {now['version']}) and pyarrow "
        f"15.0.0 (now {now['pyarrow']}) may read or write rows otherwise, so it cannot be"
    ) in str(e.value)


@pytest.mark.parametrize("library", ["jieba", "rjieba", "numpy", "scipy", "scikit-learn"])
def test_parts_cut_or_scored_by_another_library_release_are_refused_naming_it(
    tiny_model_dir: Path, tmp_path: Path, library: str
) -> None:
    # A patch release of the tokenizer or of the numerics (which loading a model lets pass) was
    # not recorded: a resume after one labelled the rest of the file otherwise, unsaid.
    src, out = _interrupted(tiny_model_dir, tmp_path)
    now = parts_writer()
    assert now[library] == importlib.metadata.version(library)
    data = json.loads(_manifest(out).read_text())
    assert data["fingerprint"]["paidan"] == now
    data["fingerprint"]["paidan"][library] = "0.0.1"
    _manifest(out).write_text(json.dumps(data))
    message = " ".join(_refusal(src, tiny_model_dir, out).split())
    assert f"whose {library} 0.0.1 (now {now[library]}) may read or write rows otherwise" in message


def test_parts_of_format_4_are_refused_as_an_older_paidans(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Format 4's parts were written by paidans that read the same input into other cells: a
    # resume by this one mixed them, however the options matched.
    src, out = _interrupted(tiny_model_dir, tmp_path)
    data = json.loads(_manifest(out).read_text())
    data["fingerprint"] = {k: v for k, v in data["fingerprint"].items() if k != "paidan"}
    data["fingerprint"]["format"] = 4
    _manifest(out).write_text(json.dumps(data))
    args = ["label", str(src), "--model", str(tiny_model_dir), "--out", str(out), "--jobs", "1"]
    res = CliRunner().invoke(app, [*args, "--chunk-size", "7", "--resume"])
    assert res.exit_code == 2, res.output
    said = " ".join(res.output.split())
    assert (
        f"its partial output was written by an older paidan (parts format 4, this one writes "
        f"{MANIFEST_FORMAT};"
    ) in said, said
    assert said.endswith("rerun without --resume and with --force to start over")


def _modules_a_run_imports(model_dir: Path, *, before: str = "") -> list[str]:
    """The paidan modules a process that labels with ``model_dir`` (as a worker does) imports,
    after ``before`` ran."""
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path

        import training.label
        from model.artifact import load_router

        {before}
        router, _ = load_router(Path(sys.argv[1]), None, serving=True)
        router.warm_up()
        training.label.predict_rows(router, [("路灯不亮", "小区路灯坏了一个月")], True)
        ours = ("model", "training", "paidan", "serve", "sklearn", "pandas")
        print("\\n".join(m for m in sys.modules if m.split(".")[0] in ours))
        """
    ).format(before=before)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(model_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_the_recorded_code_covers_every_module_a_run_uses(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A paidan module that reads, cleans or labels rows but is left out of the hash would let an
    # upgrade of it continue another paidan's parts again. A model with a serving file labels
    # without model.pipeline; one without (older, or with a head that cannot be compiled) loads
    # its scikit-learn router, and model.pipeline with it.
    from model.artifact import load_router, save_router
    from model.router import Router

    router, meta = load_router(tiny_model_dir)
    monkeypatch.setattr(Router, "for_serving", lambda self: None)
    whole = save_router(router, tmp_path / "whole", {"heads": meta["heads"]})
    used = {*_modules_a_run_imports(tiny_model_dir), *_modules_a_run_imports(whole)}
    # model.settings: its values that shape cells are in the manifest (the test above).
    unhashed = {"model", "training", "model.startup", "model.settings"}
    assert {m for m in used if m.split(".")[0] in ("model", "training")} - unhashed == set(
        WRITER_MODULES
    )


def test_recording_the_code_imports_nothing(tiny_model_dir: Path) -> None:
    # parts_writer() imported every module it hashes, model.pipeline with scikit-learn and pandas
    # among them: every run of a serving model loaded them (0.7 s and 60 MB) for a hash.
    plain = _modules_a_run_imports(tiny_model_dir)
    assert "sklearn" not in plain
    assert "model.pipeline" not in plain
    recorded = _modules_a_run_imports(tiny_model_dir, before="training.label.parts_writer()")
    assert sorted(recorded) == sorted(plain)


# -- every refusal says why -------------------------------------------------------------------


def _refusal(src: Path | list[Path], model: Path, out: Path) -> str:
    inputs = src if isinstance(src, list) else [src]
    with pytest.raises(LabelError) as e:
        label(inputs, model, out, jobs=1, chunk_size=7, resume=True)
    message = " ".join(str(e.value).split())
    assert message.startswith(f"cannot resume into {out}: ")
    assert message.endswith("; rerun without --resume and with --force to start over")
    assert "it was started otherwise" not in message
    return message


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        # The paidans of 2026-12-04 00:55-01:12 wrote format 4 without "delimiter": refused with
        # "it was started otherwise", naming no reason.
        (
            lambda f: f.pop("delimiter"),
            "its manifest differs from this paidan's in 'delimiter' (not recorded there), so its "
            "parts were written by another version of paidan",
        ),
        (
            lambda f: f.update(reader=2),
            "its manifest differs from this paidan's in 'reader' (not recorded by this paidan), "
            "so its parts were written by another version of paidan",
        ),
        (
            lambda f: f.update(output_format="jsonl"),
            "its manifest differs from this paidan's in 'output_format', so its parts were "
            "written by another version of paidan",
        ),
    ],
    ids=["a key not recorded", "a key this paidan does not record", "another value"],
)
def test_a_manifest_recorded_otherwise_is_refused_naming_the_key(
    tiny_model_dir: Path, tmp_path: Path, edit: object, said: str
) -> None:
    src, out = _interrupted(tiny_model_dir, tmp_path)
    data = json.loads(_manifest(out).read_text())
    edit(data["fingerprint"])  # type: ignore[operator]
    _manifest(out).write_text(json.dumps(data))
    assert said in _refusal(src, tiny_model_dir, out)


def test_inputs_changed_since_are_named(tiny_model_dir: Path, tmp_path: Path) -> None:
    src, out = _interrupted(tiny_model_dir, tmp_path)
    with open(src, "a", encoding="utf-8") as f:
        f.write("R99999,路灯,路灯不亮\n")
    assert f"the input files are not the same: {src} changed since (size, modification time)" in (
        _refusal(src, tiny_model_dir, out)
    )
    more = write_csv(tmp_path / "more.csv", ticket_rows(3))
    assert f"{more} was not among them" in _refusal([src, more], tiny_model_dir, out)
    src.rename(tmp_path / "moved.csv")
    said = _refusal([tmp_path / "moved.csv"], tiny_model_dir, out)
    assert f"{src} is not among them now, {tmp_path / 'moved.csv'} was not among them" in said


@pytest.mark.parametrize("how", ["in place", "renamed over it"])
def test_an_input_replaced_at_the_same_size_and_modification_time_is_not_resumed(
    tiny_model_dir: Path, tmp_path: Path, how: str
) -> None:
    # The next export written at the same size, its modification time set back (cp -p, rsync
    # -t, touch -r) between the interruption and --resume: the manifest held size and
    # modification time alone, so the resume went on, and the output held the first chunks'
    # rows of one export and the rest of the other's, as one file's rows.
    import time

    src, out = _interrupted(tiny_model_dir, tmp_path)
    before = src.stat()
    time.sleep(0.05)  # past the filesystem clock's tick, so that the change time moves
    rows = [["S" + r[0][1:], *r[1:]] for r in ticket_rows(30)]  # other ids, the same size
    target = src if how == "in place" else tmp_path / "next.csv"
    write_csv(target, rows)
    if target != src:
        os.replace(target, src)
    os.utime(src, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (src.stat().st_size, src.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    said = _refusal(src, tiny_model_dir, out)
    assert (
        f"the input files are not the same: {src} changed since (rewritten or replaced: the "
        "change time moved, at the same size and modification time)"
    ) in said


def test_an_input_rewritten_within_one_tick_of_the_file_systems_clock_is_not_resumed(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # On a file system whose times tick coarsely (a second on ext3 and some network ones, two on
    # FAT), a script that rewrites the export within the tick leaves its change time where it
    # was: size, modification time and change time all matched, and the resume joined one
    # export's first chunks to the other's rest. The manifest is given the change time the
    # rewritten file has, as such a file system would show it.
    src, out = _interrupted(tiny_model_dir, tmp_path)
    before = src.stat()
    rows = [["S" + r[0][1:], *r[1:]] for r in ticket_rows(30)]  # other ids, the same size
    write_csv(src, rows)
    os.utime(src, ns=(before.st_atime_ns, before.st_mtime_ns))
    data = json.loads(_manifest(out).read_text())
    recorded = data["fingerprint"]["inputs"][0]
    assert (recorded["size"], recorded["mtime_ns"]) == (src.stat().st_size, before.st_mtime_ns)
    recorded["ctime_ns"] = src.stat().st_ctime_ns
    _manifest(out).write_text(json.dumps(data))
    said = _refusal(src, tiny_model_dir, out)
    assert (
        f"the input files are not the same: {src} changed since (rewritten: its first or last "
        "64 KiB differ, at the same size, modification time and change time)"
    ) in said


def test_an_input_only_read_again_is_resumed(tiny_model_dir: Path, tmp_path: Path) -> None:
    # Its bytes sampled again at the resume: the same file is continued, as before.
    src, out = _interrupted(tiny_model_dir, tmp_path)
    src.read_bytes()
    assert label([src], tiny_model_dir, out, jobs=1, chunk_size=7, resume=True).resumed_chunks


def test_input_columns_changed_since_are_named_masked(tiny_model_dir: Path, tmp_path: Path) -> None:
    # A column an export named by the caller's number: quoted masked, as every message does.
    from tests.training.test_quoted_input import ID_NUMBER, PHONE, assert_masked

    src = tmp_path / "in.csv"
    rows = "".join(f"{i},路灯,{text},x\n" for i, (_, text, *_) in enumerate(TINY_TICKETS))
    src.write_text(f"id,title,text,{PHONE}\n{rows}", encoding="utf-8")

    def stop(stage: str, done: int, total: int) -> None:
        raise Interrupt

    out = tmp_path / "out.csv"
    with pytest.raises(Interrupt):
        label([src], tiny_model_dir, out, jobs=1, chunk_size=7, progress=stop)
    src.write_text(f"id,title,text,{ID_NUMBER}\n{rows}", encoding="utf-8")
    said = _refusal(src, tiny_model_dir, out)
    assert "the input's columns are not the same: '[手机号]' is gone, '[身份证号]' is new" in said
    assert_masked(said)


def test_a_resume_with_another_similar_k_is_refused_naming_the_setting(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The joint-dispatch advice reads PAIDAN_SIMILAR_K similar tickets, as the server's: the rest
    # of a file labelled with another value would hold other advice than its first chunks.
    from model.settings import get_settings

    src, out = _interrupted(tiny_model_dir, tmp_path)
    assert json.loads(_manifest(out).read_text())["fingerprint"]["similar_k"] == 5
    monkeypatch.setenv("PAIDAN_SIMILAR_K", "3")
    get_settings.cache_clear()
    try:
        with pytest.raises(LabelError) as e:
            label([src], tiny_model_dir, out, jobs=1, chunk_size=7, resume=True)
    finally:
        get_settings.cache_clear()
    message = " ".join(str(e.value).split())
    assert "PAIDAN_SIMILAR_K=5 (now 3)" in message
    assert "rerun with PAIDAN_SIMILAR_K=5 set and --resume" in message


def test_a_resume_with_another_id_column_is_refused_naming_the_option(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # The fingerprint held the text and title columns but not the id's: a run started with
    # --id-col 编号 and resumed without it was continued, and its repeated ids went unsaid (no
    # warning, no repeated_ids in the summary), the id column also deciding which rows repeat
    # the header.
    src = tmp_path / "in.csv"
    rows = "".join(f"A{i % 3},{title},{text}\n" for i, (title, text, *_) in enumerate(TINY_TICKETS))
    src.write_text(f"编号,标题,内容\n{rows}", encoding="utf-8")
    started = ColumnMap(id="编号", title="标题", text="内容")
    out = tmp_path / "out.csv"
    with pytest.raises(Interrupt):
        label([src], tiny_model_dir, out, started, jobs=1, chunk_size=7, progress=_stop)
    with pytest.raises(LabelError) as e:
        label(
            [src],
            tiny_model_dir,
            out,
            ColumnMap(title="标题", text="内容"),
            jobs=1,
            chunk_size=7,
            resume=True,
        )
    message = " ".join(str(e.value).split())
    assert "the interrupted run used --id-col '编号' (now id)" in message
    assert "to continue it, rerun with --resume --id-col '编号', or rerun" in message
    result = label([src], tiny_model_dir, out, started, jobs=1, chunk_size=7, resume=True)
    assert result.resumed_chunks == 1
    assert result.summary["repeated_ids"]["ids"] == 3


def test_a_resume_of_a_finished_run_says_it_finished(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # `paidan label b.csv --out l.csv --resume` after the run had finished warned "nothing to
    # resume in l.csv.parts; starting from the first row", then refused: "l.csv already exists".
    src = write_csv(tmp_path / "in.csv", ticket_rows(5))
    out = tmp_path / "out.csv"
    label([src], tiny_model_dir, out, jobs=1)
    written = out.read_bytes()
    with pytest.raises(LabelError) as e:
        label([src], tiny_model_dir, out, jobs=1, resume=True)
    assert str(e.value) == (
        f"{out} already exists and no run into it was interrupted (there is no "
        f"{out.name}.parts to resume): it finished; use --force to label again"
    )
    assert "starting from the first row" not in caplog.text
    assert out.read_bytes() == written


@pytest.mark.parametrize("writer", ["write_part_atomic", "write_json_atomic"])
def test_a_part_that_cannot_be_written_leaves_no_half_written_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    # A full disk stopped the run with its finished chunks kept for --resume, and the chunk being
    # written left beside them under its temporary name, half written: space taken on the full
    # disk, until a resume wrote that chunk again.
    import errno

    import pyarrow as pa

    from training import label_io

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(label_io.os, "fsync", full)
    target = tmp_path / "part-000003.arrow"
    value: object = pa.table({"text": ["路灯不亮"] * 100}) if writer == "write_part_atomic" else {}
    with pytest.raises(OSError, match="No space left"):
        getattr(label_io, writer)(value, target)
    assert list(tmp_path.iterdir()) == []
