"""Registry operations on hand-made version directories: atomic pointer, rollback history, gc rules."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from model import registry
from model.artifact import METADATA_FILE, ROUTER_FILE, ModelLoadError, sha256_file

VERSIONS = [f"2026010{i}T000000Z-0000000{i}" for i in range(1, 6)]


def make_root(tmp_path: Path, names: list[str] = VERSIONS) -> Path:
    root = tmp_path / "models"
    for i, name in enumerate(names):
        d = root / name
        d.mkdir(parents=True)
        (d / ROUTER_FILE).write_bytes(name.encode())  # never unpickled here, only checksummed
        meta = {
            "version": name,
            "files": {ROUTER_FILE: sha256_file(d / ROUTER_FILE)},
            "created": f"2026-01-0{i + 1}T00:00:00+00:00",
            "heads": {"department": {"labels": ["a", "b"]}},
            "training_data": {"rows": 10 + i, "sources": {"history": 10, "feedback": i}},
        }
        (d / METADATA_FILE).write_text(json.dumps(meta), encoding="utf-8")
    return root


def test_promote_writes_pointer_atomically_and_records_history(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    assert registry.promote(root, VERSIONS[0]) == VERSIONS[-1]  # implicit current: the newest
    registry.promote(root, VERSIONS[1])
    registry.promote(root, VERSIONS[2])
    assert (root / registry.CURRENT_FILE).read_text().strip() == VERSIONS[2]
    assert registry.read_state(root)["history"][-2:] == [VERSIONS[0], VERSIONS[1]]
    # No temporary pointer files are left behind.
    assert not [p for p in root.iterdir() if p.name.startswith(".current.")]


def test_promote_unknown_version_is_refused_and_pointer_unchanged(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    registry.promote(root, VERSIONS[1])
    with pytest.raises(ModelLoadError, match="no model version"):
        registry.promote(root, "20990101T000000Z-nope")
    assert registry.current_version(root) == VERSIONS[1]


def test_set_current_with_expected_moves_the_pointer_only_from_that_version(tmp_path: Path) -> None:
    # Compare-and-swap: a promotion decided against VERSIONS[0] must not replace VERSIONS[2].
    root = make_root(tmp_path)
    registry.set_current(root, VERSIONS[0], record=False)
    registry.promote(root, VERSIONS[2])
    state = registry.read_state(root)
    with pytest.raises(registry.CurrentChangedError, match=f"from {VERSIONS[0]} to {VERSIONS[2]}"):
        registry.set_current(root, VERSIONS[1], expected=VERSIONS[0])
    assert registry.current_version(root) == VERSIONS[2]
    assert registry.read_state(root) == state  # no history entry, no event
    assert registry.set_current(root, VERSIONS[1], expected=VERSIONS[2]) == VERSIONS[2]
    assert registry.current_version(root) == VERSIONS[1]


def test_rollback_walks_back_through_previous_currents(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    registry.set_current(root, VERSIONS[0], record=False)
    for v in (VERSIONS[3], VERSIONS[1]):
        registry.promote(root, v)
    assert registry.rollback(root) == (VERSIONS[1], VERSIONS[3])
    assert registry.current_version(root) == VERSIONS[3]
    assert registry.rollback(root) == (VERSIONS[3], VERSIONS[0])
    with pytest.raises(ModelLoadError, match="no earlier current version"):
        registry.rollback(root)
    assert registry.current_version(root) == VERSIONS[0]


def test_rollback_skips_deleted_versions(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    for v in (VERSIONS[0], VERSIONS[1], VERSIONS[2]):
        registry.promote(root, v)
    registry._remove_tree(root / VERSIONS[1])
    assert registry.rollback(root) == (VERSIONS[2], VERSIONS[0])


def test_rollback_refuses_a_version_whose_files_no_longer_verify(tmp_path: Path) -> None:
    # The server refuses such a model: running servers kept the old one while `models list`
    # named the broken one current, and the next `paidan serve` did not start.
    from typer.testing import CliRunner

    from paidan.cli import app

    root = make_root(tmp_path)
    registry.promote(root, VERSIONS[0])
    registry.promote(root, VERSIONS[1])
    with open(root / VERSIONS[0] / ROUTER_FILE, "ab") as f:  # a disk error, a bad restore
        f.write(b"x")
    before = registry.read_state(root)
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    r = CliRunner().invoke(app, ["models", "rollback"], env=env)
    assert r.exit_code == 2, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert f"cannot roll back to {VERSIONS[0]}" in r.output, r.output
    assert "does not match its checksum" in r.output and ROUTER_FILE in r.output, r.output
    assert f"current is still {VERSIONS[1]}" in r.output, r.output
    assert registry.current_version(root) == VERSIONS[1]
    assert registry.read_state(root) == before  # the history still leads back to it


def test_gc_keeps_newest_current_and_previous(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    registry.promote(root, VERSIONS[0])
    registry.promote(root, VERSIONS[1])  # current = 1, previous = 0
    registry.write_scores(root, VERSIONS[2], {"eval_sha256": "x"})
    removed, in_use = registry.gc(root, keep=1)
    assert in_use == []
    assert sorted(removed) == [VERSIONS[2], VERSIONS[3]]
    assert registry.versions(root) == [VERSIONS[0], VERSIONS[1], VERSIONS[4]]
    assert not registry.scores_path(root, VERSIONS[2]).exists()
    # Rollback still works after gc: the version before current was protected.
    assert registry.rollback(root) == (VERSIONS[1], VERSIONS[0])


def test_versions_are_ordered_by_creation_time_not_by_name(tmp_path: Path) -> None:
    # `paidan train --out models/baseline` (or a copied-in directory) sorted after paidan's
    # timestamp names: it was the implicit current, and gc --keep 1 deleted the real newest.
    root = make_root(tmp_path, VERSIONS[:3])
    old = root / "baseline"
    old.mkdir()
    meta = {"version": "baseline", "created": "2025-06-01T00:00:00+00:00"}
    (old / METADATA_FILE).write_text(json.dumps(meta), encoding="utf-8")
    assert registry.versions(root) == ["baseline", *VERSIONS[:3]]
    assert registry.current_version(root) == VERSIONS[2]
    assert [i.version for i in registry.list_versions(root)] == ["baseline", *VERSIONS[:3]]
    registry.promote(root, VERSIONS[0])
    registry.promote(root, VERSIONS[1])  # current = 1, previous = 0; the newest is 2
    assert registry.gc(root, keep=1) == (["baseline"], [])
    assert registry.versions(root) == VERSIONS[:3]


@pytest.mark.parametrize(
    "metadata",
    ['{"version": "x"}', '{"created": "yesterday"}', '{"created": 5}', "[1]", "not json"],
)
def test_a_version_without_a_readable_creation_time_is_placed_by_its_mtime(
    tmp_path: Path, metadata: str
) -> None:
    root = make_root(tmp_path, VERSIONS[:2])  # created on 1 and 2 January 2026
    odd = root / "copied"
    odd.mkdir()
    (odd / METADATA_FILE).write_text(metadata, encoding="utf-8")
    between = datetime(2026, 1, 1, 12, tzinfo=UTC).timestamp()
    os.utime(odd, (between, between))
    assert registry.versions(root) == [VERSIONS[0], "copied", VERSIONS[1]]
    # A creation time without a zone is UTC, as paidan writes it.
    (odd / METADATA_FILE).write_text('{"created": "2026-01-03T00:00:00"}', encoding="utf-8")
    assert registry.versions(root) == [*VERSIONS[:2], "copied"]


def test_gc_keeps_a_version_a_process_leases_and_says_so(tmp_path: Path) -> None:
    # `paidan serve --model DIR` (or PAIDAN_MODEL_DIR) may serve any version, not only current.
    root = make_root(tmp_path)
    registry.promote(root, VERSIONS[4])
    served = registry.lease(root, root / VERSIONS[0])
    again = registry.lease(root, root / VERSIONS[0])  # a reload of the same version: shared
    assert registry.gc(root, keep=1) == ([VERSIONS[1], VERSIONS[2], VERSIONS[3]], [VERSIONS[0]])
    served.release()
    assert registry.gc(root, keep=1) == ([], [VERSIONS[0]])
    again.release()
    again.release()  # harmless
    assert registry.gc(root, keep=1) == ([VERSIONS[0]], [])
    assert registry.versions(root) == [VERSIONS[4]]
    assert list((root / registry.LEASES_DIR).iterdir()) == []  # no lease file left for the gone


def test_a_lease_ends_with_the_process_that_holds_it(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    registry.promote(root, VERSIONS[4])
    script = (
        "import sys, time; from model import registry; "
        f"lease = registry.lease({str(root)!r}, {str(root / VERSIONS[0])!r}); "
        "print('leased', flush=True); time.sleep(600)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "leased\n"
        assert registry.gc(root, keep=4) == ([], [VERSIONS[0]])
    finally:
        proc.kill()  # no clean-up runs: the kernel drops the lock
        proc.wait()
    assert registry.gc(root, keep=4) == ([VERSIONS[0]], [])


def test_a_lease_refuses_a_deleted_version_and_ignores_directories_gc_never_deletes(
    tmp_path: Path,
) -> None:
    root = make_root(tmp_path)
    registry.promote(root, VERSIONS[4])
    # gc deletes VERSIONS[0] while a server waits to lease it (gc holds its lock meanwhile):
    # the server starts as gc moves the version out of the way, the deletion's first step.
    real_rename = Path.rename
    errors: list[Exception] = []

    def serve() -> None:
        try:
            registry.lease(root, root / VERSIONS[0])
        except ModelLoadError as e:
            errors.append(e)

    server = threading.Thread(target=serve)

    def remove_while_a_server_waits(path: Path, target: Path) -> Path:
        if path == root / VERSIONS[0]:
            server.start()
            server.join(0.5)
            assert server.is_alive()  # blocked on gc's lock
        return real_rename(path, target)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(Path, "rename", remove_while_a_server_waits)
        assert registry.gc(root, keep=4) == ([VERSIONS[0]], [])
    server.join(10)
    [error] = errors
    assert "is no longer a model under" in str(error)
    # Not versions gc knows: no lease, and the loader says what is wrong with them.
    elsewhere = make_root(tmp_path / "other", VERSIONS[:1]) / VERSIONS[0]
    (root / "link").symlink_to(root / VERSIONS[4], target_is_directory=True)
    for path in (elsewhere, root / "link", root / "nothing-here", root / VERSIONS[4] / ".."):
        assert registry.lease(root, path).version is None, path
    assert registry.lease(root, root / VERSIONS[4]).version == VERSIONS[4]
    assert sorted(p.name for p in (root / registry.LEASES_DIR).iterdir()) == [VERSIONS[4]]


def test_a_server_that_cannot_lock_a_lease_warns_and_serves_unprotected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_root(tmp_path)

    def read_only(*_: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(registry, "_open_lease", read_only)
    with caplog.at_level("WARNING", logger="model.registry"):
        assert registry.lease(root, root / VERSIONS[0]).version is None
    assert f"cannot lease model version {VERSIONS[0]}" in caplog.text


def _no_locks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system that takes no locks (some network ones): every flock fails with ENOLCK."""

    def flock(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(registry.fcntl, "flock", flock)


def test_without_locks_promote_and_rollback_work_and_warn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # It was "Error: [Errno 37] No locks available" for every command changing the registry.
    root = make_root(tmp_path)
    _no_locks(monkeypatch)
    with caplog.at_level("WARNING", logger="model.registry"):
        registry.promote(root, VERSIONS[1])
        registry.promote(root, VERSIONS[2])
        assert registry.rollback(root) == (VERSIONS[2], VERSIONS[1])
    assert registry.current_version(root) == VERSIONS[1]
    assert f"cannot lock {root / registry.LOCK_FILE} (No locks available)" in caplog.text
    assert "not serialised" in caplog.text


def test_without_locks_gc_keeps_what_it_cannot_tell_is_unused_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A server's lease cannot be taken there either, so a version it serves holds no lock that
    # gc could test: deleting would take the files from under it.
    root = make_root(tmp_path)
    registry.promote(root, VERSIONS[4])
    _no_locks(monkeypatch)
    with caplog.at_level("WARNING", logger="model.registry"):
        assert registry.gc(root, keep=1) == ([], [])
    assert registry.versions(root) == VERSIONS
    kept = ", ".join(VERSIONS[:4])  # all but current, the newest
    assert "kept 4 version(s) that a running paidan serve, label or predict may be reading" in (
        caplog.text
    )
    assert f"whether one is in use cannot be told ({kept})" in caplog.text


@pytest.mark.parametrize(
    "content",
    [
        "null",
        "[1]",
        '{"history": 5}',
        '{"history": "v1"}',
        '{"history": [["x"]]}',
        '{"events": [1]}',
    ],
)
def test_a_registry_file_of_another_shape_is_refused_naming_it(
    tmp_path: Path, content: str
) -> None:
    root = make_root(tmp_path)
    (root / registry.REGISTRY_FILE).write_text(content, encoding="utf-8")
    for action in (lambda: registry.rollback(root), lambda: registry.gc(root, keep=1)):
        with pytest.raises(ModelLoadError, match=r"registry\.json"):
            action()
    assert registry.versions(root) == VERSIONS  # nothing deleted


def test_gc_rejects_keep_below_one(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    with pytest.raises(ValueError, match="at least 1"):
        registry.gc(root, keep=0)


def test_models_commands_on_a_root_without_models_say_so_and_create_nothing(
    tmp_path: Path,
) -> None:
    # A cron `models gc` with a mistyped PAIDAN_MODEL_ROOT created the directory and printed
    # "deleted 0 version(s)" with exit 0 every night; rollback created it too.
    from typer.testing import CliRunner

    from paidan.cli import app

    runner = CliRunner()
    typo = tmp_path / "modles"
    empty = tmp_path / "empty"
    empty.mkdir()
    for root in (typo, empty):
        env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
        for args, says in (
            (["models", "gc", "--keep", "3"], "nothing to delete"),
            (["models", "rollback"], "nothing to roll back"),
            (["models", "promote", "v1"], "no model version 'v1'"),
        ):
            r = runner.invoke(app, args, env=env)
            assert r.exit_code == 2, (args, r.output)
            assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
            assert str(root) in r.output and says in r.output, (args, r.output)
    assert not typo.exists()
    assert list(empty.iterdir()) == []  # not even a lock file


def test_gc_removes_read_only_model_files(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    registry.promote(root, VERSIONS[4])
    f = root / VERSIONS[0] / "router.joblib"
    f.write_bytes(b"x")
    f.chmod(0o444)
    assert VERSIONS[0] in registry.gc(root, keep=1)[0]
    assert not (root / VERSIONS[0]).exists()


def test_list_versions_reports_rows_metrics_and_current(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    registry.promote(root, VERSIONS[2])
    (root / registry.EVAL_DIR).mkdir()
    registry.frozen_eval_path(root).write_bytes(b"frozen")
    registry.write_json_atomic(root / registry.EVAL_DIR / registry.EVAL_META_FILE, {"sha256": "e1"})
    rule = registry.SCORE_RULE
    registry.write_scores(
        root,
        VERSIONS[2],
        {"eval_sha256": "e1", "heads": {"department": {"macro_f1": 0.8}}} | rule,
    )
    # Scores on another (older) frozen set are not shown.
    registry.write_scores(
        root, VERSIONS[1], {"eval_sha256": "old", "heads": {"department": {"macro_f1": 0.9}}} | rule
    )
    # Nor are those an older paidan computed on this one by another rule: they are stale.
    registry.write_scores(
        root, VERSIONS[0], {"eval_sha256": "e1", "heads": {"department": {"macro_f1": 0.7}}}
    )
    infos = {i.version: i for i in registry.list_versions(root)}
    assert infos[VERSIONS[2]].current and not infos[VERSIONS[1]].current
    assert infos[VERSIONS[2]].metrics == {"department_macro_f1": 0.8}
    assert infos[VERSIONS[1]].metrics == {}
    assert infos[VERSIONS[0]].metrics == {} and infos[VERSIONS[0]].stale
    assert not infos[VERSIONS[1]].stale and not infos[VERSIONS[2]].stale
    assert infos[VERSIONS[3]].rows == {"history": 10, "feedback": 3}
    assert set(infos[VERSIONS[0]].to_dict()) >= {"version", "created", "current", "metrics"}


def _head(f1: dict[str, float], support: dict[str, int]) -> dict:
    """One head of stored scores: macro-F1 over the true labels this version knows."""
    own = [v for k, v in f1.items() if support.get(k)]
    return {
        "macro_f1": sum(own) / len(own),
        "labels": sorted(f1),
        "per_class": {k: {"f1": v, "support": support.get(k, 0)} for k, v in f1.items()},
    }


def test_models_list_figures_are_over_the_same_labels_for_every_version(tmp_path: Path) -> None:
    # Each version's own figure averages over the frozen set's labels it knows: one that never
    # learnt department z read 0.9 against 0.8 for one that did, where the comparison of promote
    # reads 0.6 against 0.8 (z an F1 of 0 for the one that cannot answer it).
    root = make_root(tmp_path)
    (root / registry.EVAL_DIR).mkdir()
    registry.frozen_eval_path(root).write_bytes(b"frozen")
    registry.write_json_atomic(root / registry.EVAL_DIR / registry.EVAL_META_FILE, {"sha256": "e1"})
    support = {"a": 5, "b": 5, "z": 2}
    stamp = {"eval_sha256": "e1", "mapping_sha256": "m"} | registry.SCORE_RULE
    without_z = _head({"a": 0.9, "b": 0.9}, support)
    with_z = _head({"a": 0.9, "b": 0.9, "z": 0.6, "x": 1.0}, support)  # x: none in the frozen set
    registry.write_scores(root, VERSIONS[0], stamp | {"heads": {"department": without_z}})
    registry.write_scores(root, VERSIONS[1], stamp | {"heads": {"department": with_z}})
    # Another taxonomy (retrained with --mapping) is in other labels: compared with its own kind.
    other = _head({"a": 0.7, "b": 0.7}, support)
    registry.write_scores(
        root, VERSIONS[2], stamp | {"mapping_sha256": "n", "heads": {"department": other}}
    )
    infos = {i.version: i.metrics for i in registry.list_versions(root)}
    assert infos[VERSIONS[0]]["department_macro_f1"] == pytest.approx(0.6)
    assert infos[VERSIONS[1]]["department_macro_f1"] == pytest.approx(0.8)
    assert infos[VERSIONS[2]]["department_macro_f1"] == pytest.approx(0.7)


CORRUPT_FROZEN_JSON = ['{"sha256": "ab', "not json", "[1]", "{}", '{"sha256": 5}', b"\xff\xfe"]


@pytest.mark.parametrize("content", CORRUPT_FROZEN_JSON)
def test_a_corrupt_frozen_json_is_refused_naming_it_and_the_fix(
    tmp_path: Path, content: str | bytes
) -> None:
    root = make_root(tmp_path)
    (root / registry.EVAL_DIR).mkdir()
    registry.frozen_eval_path(root).write_bytes(b"frozen")
    meta = root / registry.EVAL_DIR / registry.EVAL_META_FILE
    meta.write_bytes(content if isinstance(content, bytes) else content.encode())
    for action in (registry.frozen_eval_info, registry.list_versions):
        with pytest.raises(ModelLoadError, match=r"frozen\.json.*freeze-eval DATA --force"):
            action(root)


def test_models_commands_name_a_corrupt_frozen_json_and_freeze_eval_force_replaces_it(
    tmp_path: Path,
) -> None:
    from typer.testing import CliRunner

    from paidan.cli import app

    root = make_root(tmp_path)
    registry.promote(root, VERSIONS[0])
    data = tmp_path / "eval.csv"
    data.write_text("id,title,text,department,category\n1,,拖欠工资,人社,劳动\n", encoding="utf-8")
    runner = CliRunner()
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    assert runner.invoke(app, ["models", "freeze-eval", str(data)], env=env).exit_code == 0
    meta = root / registry.EVAL_DIR / registry.EVAL_META_FILE
    meta.write_text('{"sha256": "12', encoding="utf-8")  # truncated
    for args, code in (
        (["models", "list"], 2),
        # An error, not a rule refusal: cron's --promote-if-better read exit 3 as "worse".
        (["models", "promote", VERSIONS[1]], 2),
        (["models", "promote", VERSIONS[1], "--force"], 2),  # --force promoted past it
        (["retrain", "--history", str(data)], 2),
        (["models", "freeze-eval", str(data)], 2),  # without --force: say how
    ):
        r = runner.invoke(app, args, env=env)
        assert r.exit_code == code, (args, r.output)
        assert r.exception is None or isinstance(r.exception, SystemExit), (args, r.exception)
        assert str(meta) in r.output, (args, r.output)
        assert "freeze-eval DATA --force" in r.output, (args, r.output)
    assert registry.current_version(root) == VERSIONS[0]
    assert registry.versions(root) == VERSIONS  # retrain trained nothing
    r = runner.invoke(app, ["models", "freeze-eval", str(data), "--force"], env=env)
    assert r.exit_code == 0, r.output
    assert registry.frozen_eval_info(root)["rows"] == 1
    assert runner.invoke(app, ["models", "list"], env=env).exit_code == 0
    # A frozen set changed after it was frozen: retrain says so in one line too (was a traceback).
    with open(registry.frozen_eval_path(root), "ab") as f:
        f.write(b"\n")
    r = runner.invoke(app, ["retrain", "--history", str(data)], env=env)
    assert r.exit_code == 2 and "does not match its recorded SHA-256" in r.output, r.output
    assert "freeze-eval DATA --force" in r.output


def test_models_list_piped_keeps_whole_versions_and_figures(tmp_path: Path) -> None:
    # Piped (cron, a log), rich used to cut the table at 80 columns: "20260103T0000…", "0.8…".
    root = make_root(tmp_path)
    registry.promote(root, VERSIONS[2])
    (root / registry.EVAL_DIR).mkdir()
    registry.frozen_eval_path(root).write_bytes(b"frozen")
    registry.write_json_atomic(
        root / registry.EVAL_DIR / registry.EVAL_META_FILE,
        {"sha256": "e1", "rows": 40, "source": "20% of tickets.csv"},
    )
    registry.write_scores(
        root,
        VERSIONS[2],
        {"eval_sha256": "e1", "heads": {"department": {"macro_f1": 0.8125}}} | registry.SCORE_RULE,
    )
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | {"PAIDAN_MODEL_ROOT": str(root)}
    cmd = [sys.executable, "-m", "paidan", "models", "list"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=True)
    for version in VERSIONS:
        assert version in proc.stdout
    # The newest was current implicitly (no pointer yet), so it is the one rollback returns to.
    assert "0.812" in proc.stdout and "current" in proc.stdout and "previous" in proc.stdout
    empty = subprocess.run(
        cmd,
        env=env | {"PAIDAN_MODEL_ROOT": str(tmp_path / "none")},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "no model versions under" in empty.stdout


def test_pointer_replacement_never_exposes_a_partial_file(tmp_path: Path) -> None:
    """A reader polling the pointer during many promotions only ever sees a whole version name."""
    import threading

    root = make_root(tmp_path)
    registry.promote(root, VERSIONS[0])
    seen: set[str] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.add((root / registry.CURRENT_FILE).read_text(encoding="utf-8"))

    t = threading.Thread(target=reader)
    t.start()
    for i in range(200):
        registry.set_current(root, VERSIONS[i % len(VERSIONS)], record=False)
    stop.set()
    t.join()
    assert seen <= {v + "\n" for v in VERSIONS}
    assert os.listdir(root).count(registry.CURRENT_FILE) == 1


def test_set_current_with_expected_reads_an_implicit_current_as_current_version_does(
    tmp_path: Path,
) -> None:
    # No pointer yet: the newest version is current, and a promotion (or retrain's pin) compared
    # against it must not be refused as if another promotion had moved it.
    root = make_root(tmp_path)
    implicit = registry.current_version(root)
    assert implicit is not None and not (root / registry.CURRENT_FILE).exists()
    registry.set_current(root, implicit, record=False, expected=implicit)
    assert registry.current_version(root) == implicit
    other = next(v for v in VERSIONS if v != implicit)
    assert registry.set_current(root, other, expected=implicit) == implicit
    assert registry.current_version(root) == other


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_pointer_and_registry_files_get_a_normal_files_mode(
    tmp_path: Path, umask: int, mode: int
) -> None:
    # mkstemp's 0600 was kept: `current` and registry.json written by `sudo paidan models
    # promote` or root's nightly retrain could not be read by the server's user.
    root = make_root(tmp_path)
    old = os.umask(umask)
    try:
        registry.promote(root, VERSIONS[0])
        registry.promote(root, VERSIONS[1])
    finally:
        os.umask(old)
    for name in (registry.CURRENT_FILE, registry.REGISTRY_FILE):
        assert (root / name).stat().st_mode & 0o777 == mode, name


def _unreadable_pointer(monkeypatch: pytest.MonkeyPatch) -> None:
    """``current`` raises PermissionError when read, as one written 0600 by root does (the tests
    may run as root, which chmod does not stop)."""
    read_text = Path.read_text

    def refuse(self: Path, *args: object, **kwargs: object) -> str:
        if self.name == registry.CURRENT_FILE:
            raise PermissionError(13, "Permission denied", str(self))
        return read_text(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", refuse)


def test_an_unreadable_pointer_is_one_line_naming_it_not_no_pointer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from paidan.cli import app

    root = make_root(tmp_path)
    registry.promote(root, VERSIONS[0])
    registry.promote(root, VERSIONS[1])
    _unreadable_pointer(monkeypatch)
    pointer = root / registry.CURRENT_FILE
    with pytest.raises(ModelLoadError, match=rf"{pointer} cannot be read: Permission denied"):
        registry.current_version(root)  # was a PermissionError (or the newest version)
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    for args in (["models", "list"], ["models", "rollback"]):
        r = CliRunner().invoke(app, args, env=env)
        assert r.exit_code == 2, (args, r.output)
        assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
        lines = [line for line in r.output.splitlines() if line.strip()]
        assert len(lines) == 1 and "cannot be read: Permission denied" in lines[0], r.output


def test_an_empty_pointer_is_refused_and_a_forced_promotion_replaces_it(tmp_path: Path) -> None:
    # An empty `current` (a write cut short, `: > current`) was read as no pointer: the newest
    # version, never promoted, was current without a word, and `models promote` failed every time
    # ("changed current from X to None meanwhile"); only `rm current` let one through.
    from typer.testing import CliRunner

    from paidan.cli import app

    root = make_root(tmp_path)
    registry.promote(root, VERSIONS[0])
    registry.promote(root, VERSIONS[1])
    history = registry.read_state(root)["history"]
    assert history[-1] == VERSIONS[0]
    pointer = root / registry.CURRENT_FILE
    pointer.write_text("\n", encoding="utf-8")
    with pytest.raises(ModelLoadError, match=rf"{pointer} is empty .*promote VERSION --force"):
        registry.current_version(root)
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    listed = CliRunner().invoke(app, ["models", "list"], env=env)
    assert listed.exit_code == 2 and "is empty" in listed.output, listed.output
    refused = CliRunner().invoke(app, ["models", "promote", VERSIONS[2]], env=env)
    assert refused.exit_code == 2, refused.output
    assert f"promote {VERSIONS[2]} --force` replaces the pointer" in " ".join(
        refused.output.split()
    )
    assert pointer.read_text(encoding="utf-8") == "\n"
    forced = CliRunner().invoke(app, ["models", "promote", VERSIONS[2], "--force"], env=env)
    assert forced.exit_code == 0, forced.output
    assert registry.current_version(root) == VERSIONS[2]
    # Nothing is recorded for the unreadable pointer: the history is as it was before it.
    assert registry.read_state(root)["history"] == history


def test_the_follower_logs_an_unreadable_pointer_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # It was taken for "no pointer": the server ignored the promotion without a log line.
    from serve.reload import read_pointer

    root = make_root(tmp_path)
    registry.promote(root, VERSIONS[0])
    _unreadable_pointer(monkeypatch)
    with caplog.at_level("ERROR", logger="serve.reload"):
        assert read_pointer(root) is None
        assert read_pointer(root) is None
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "Permission denied" in errors[0], errors
    monkeypatch.undo()
    assert read_pointer(root) == VERSIONS[0]


def test_an_unreadable_version_directory_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A version another account wrote 0700: every command (and the server's lease, so its reload
    # answered 500) ended in a PermissionError traceback.
    root = make_root(tmp_path)
    locked = root / VERSIONS[2]
    is_file = Path.is_file

    def refuse(self: Path) -> bool:
        if self.parent == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return is_file(self)

    monkeypatch.setattr(Path, "is_file", refuse)
    with pytest.raises(ModelLoadError, match=rf"{locked} cannot be read: Permission denied"):
        registry.versions(root)
    (root / registry.CURRENT_FILE).write_text(VERSIONS[2] + "\n", encoding="utf-8")
    with pytest.raises(ModelLoadError, match=rf"{locked} cannot be read: .*chmod 755"):
        registry.current_dir(root)  # what serve, a reload and SIGHUP load
    assert registry.lease(root, locked).version is None  # the loader says why it cannot load it


def test_a_full_disk_stops_the_models_commands_in_one_line_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 68-line OSError traceback, whose failing fsync named no file; `current` unchanged.
    from typer.testing import CliRunner

    from paidan.cli import app

    root = make_root(tmp_path)
    registry.promote(root, VERSIONS[0])

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    for args, file in (
        (["models", "promote", VERSIONS[1], "--force"], registry.REGISTRY_FILE),
        (["models", "rollback"], registry.REGISTRY_FILE),
    ):
        r = CliRunner().invoke(app, args, env=env)
        assert r.exit_code == 2, (args, r.output)
        assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
        lines = [line for line in r.output.splitlines() if line.strip()]
        assert lines[-1] == f"error: cannot write {root / file}: No space left on device", r.output
    with pytest.raises(registry.RegistryWriteError, match=r"cannot write .*current: No space"):
        registry.set_current(root, VERSIONS[2], record=False)
    assert registry.current_version(root) == VERSIONS[0]
    assert not [
        p.name for p in root.iterdir() if p.name.startswith((".current.", ".registry.json."))
    ]


@pytest.mark.parametrize("absolute", [False, True])
def test_a_current_symlinked_to_a_version_names_that_version(
    tmp_path: Path, absolute: bool
) -> None:
    # `ln -sfn OLD current`, a rollback by hand, was taken for "no pointer": the newest version
    # was served and listed as current, without a word.
    from serve.reload import read_pointer

    root = make_root(tmp_path)
    registry.promote(root, VERSIONS[3])
    (root / registry.CURRENT_FILE).unlink()
    (root / registry.CURRENT_FILE).symlink_to(root / VERSIONS[1] if absolute else VERSIONS[1])
    assert registry.current_version(root) == VERSIONS[1]
    assert registry.current_dir(root) == root / VERSIONS[1]
    assert read_pointer(root) == VERSIONS[1]  # the running server's follower
    assert [i.version for i in registry.list_versions(root) if i.current] == [VERSIONS[1]]
    assert registry.promote(root, VERSIONS[2]) == VERSIONS[1]
    assert (root / registry.CURRENT_FILE).is_file() and not (
        root / registry.CURRENT_FILE
    ).is_symlink()
    assert registry.rollback(root) == (VERSIONS[2], VERSIONS[1])


def test_a_current_symlinked_elsewhere_is_refused_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from paidan.cli import app

    root = make_root(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    pointer = root / registry.CURRENT_FILE
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    for target in (elsewhere, root / "missing", root):
        pointer.unlink(missing_ok=True)
        pointer.symlink_to(target)
        with pytest.raises(ModelLoadError, match=rf"{pointer} is a symlink to {target}, which is"):
            registry.current_version(root)
        r = CliRunner().invoke(app, ["models", "list"], env=env)
        assert r.exit_code == 2, r.output
        assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
        lines = [line for line in r.output.splitlines() if line.strip()]
        assert len(lines) == 1 and "paidan models promote VERSION" in lines[0], r.output


def test_the_registry_lock_is_taken_on_a_read_only_lock_file(tmp_path: Path) -> None:
    # The lock file another account made (0644) stopped the service user's rollback: it was
    # opened for appending. flock needs no write access.
    root = make_root(tmp_path)
    registry.promote(root, VERSIONS[0])
    registry.promote(root, VERSIONS[1])
    lock = root / registry.LOCK_FILE
    lock.chmod(0o444)
    flags: list[int] = []
    real_open = os.open

    def spy(path: object, flag: int, *args: object, **kwargs: object) -> int:
        if Path(str(path)) == lock:
            flags.append(flag)
        return real_open(path, flag, *args, **kwargs)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as m:
        m.setattr(os, "open", spy)
        assert registry.rollback(root) == (VERSIONS[1], VERSIONS[0])
    assert flags and all(f & (os.O_WRONLY | os.O_RDWR | os.O_APPEND) == 0 for f in flags)


# `paidan train --out ROOT/v1` names the directory v1, while every answer, the page, label's
# summary and each feedback row report the model's own version (metadata.json `version`).
REPORTED = {"v1": "20261205T072304Z-bf90f80f", "v2": "20261205T072611Z-6f1d69b4"}


def renamed_root(tmp_path: Path) -> Path:
    """A root of v1 and v2 as `train --out ROOT/v1` writes them, and one paidan named itself."""
    root = make_root(tmp_path, ["v1", "v2", VERSIONS[2]])
    for name, reported in REPORTED.items():
        meta = json.loads((root / name / METADATA_FILE).read_text(encoding="utf-8"))
        (root / name / METADATA_FILE).write_text(
            json.dumps({**meta, "version": reported}), encoding="utf-8"
        )
    return root


def test_a_version_is_found_by_the_model_version_its_answers_report(tmp_path: Path) -> None:
    # A version seen in a feedback row could not be found, promoted or served by that name.
    root = renamed_root(tmp_path)
    assert registry.resolve_version(root, "v1") == "v1"
    assert registry.resolve_version(root, REPORTED["v2"]) == "v2"
    assert registry.resolve_version(root, VERSIONS[2]) == VERSIONS[2]
    assert [i.model_version for i in registry.list_versions(root)] == [
        *REPORTED.values(),
        VERSIONS[2],
    ]
    # A copied directory reports the same version: which one is meant is the administrator's call.
    # (The copy, named after v1, is listed as the older of the two.)
    shutil.copytree(root / "v1", root / "v1-copy")
    with pytest.raises(
        ModelLoadError, match=rf"2 versions .* report .*{REPORTED['v1']}.*: v1-copy, v1"
    ):
        registry.resolve_version(root, REPORTED["v1"])
    with pytest.raises(registry.UnknownVersionError) as unknown:
        registry.resolve_version(root, "v3")
    assert str(unknown.value) == (
        f"no model version 'v3' under {root}; registered versions: "
        f"v1-copy (model version {REPORTED['v1']}), v1 (model version {REPORTED['v1']}), "
        f"v2 (model version {REPORTED['v2']}), {VERSIONS[2]} (see paidan models list)"
    )


def test_a_model_named_by_its_reported_version_or_by_no_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What `serve --model`, PAIDAN_MODEL_DIR, `label --model`, `predict` and `evaluate` read. An
    # unknown name was handed on as a path and refused as "… is outside the model root".
    root = renamed_root(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert registry.named_model(root, REPORTED["v1"]) == root / "v1"
    assert registry.named_model(root, "v2") == root / "v2"
    with pytest.raises(registry.UnknownVersionError) as unknown:
        registry.named_model(root, "v3")
    message = str(unknown.value)
    assert message.startswith("'v3' does not exist: it is no directory here and no model version")
    assert f"registered versions: v1 (model version {REPORTED['v1']})" in message


def test_a_missing_model_under_the_root_written_as_a_path_lists_the_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # README's `paidan predict models/v1 "…"` after `paidan serve` trained the default under
    # models/<timestamp>: predict, evaluate and serve --model said only "models/v1 is not a
    # directory", where `label --model v1` named the versions there are.
    root = renamed_root(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(registry.UnknownVersionError) as unknown:
        registry.named_model(Path("models"), "models/v3")
    message = str(unknown.value)
    assert message.startswith("'models/v3' does not exist: it is no directory and no model version")
    assert f"registered versions: v1 (model version {REPORTED['v1']})" in message
    # Written as a path, a version is still found by the model version its answers report, and
    # an existing directory, or a path elsewhere, is the path itself as before.
    found = registry.named_model(Path("models"), f"models/{REPORTED['v2']}")
    assert found.resolve() == root / "v2"
    assert registry.named_model(Path("models"), "models/v1") == Path("models/v1")
    assert registry.named_model(Path("models"), "elsewhere/v1") == Path("elsewhere/v1")
    # ROOT/current is the pointer file, no model directory: it names the current model, as
    # `current` does ("models/current is not a directory" before).
    registry.set_current(root, "v1")
    assert registry.named_model(Path("models"), "models/current").resolve() == root / "v1"
    # What the commands say, as README types them.
    from typer.testing import CliRunner

    from paidan.cli import app

    env = {"PAIDAN_MODEL_ROOT": "models"}
    data = tmp_path / "t.csv"
    data.write_text("text\n路灯不亮\n", encoding="utf-8")
    for args in (
        ["predict", "models/v3", "小区楼下烧烤店油烟很大"],
        ["evaluate", "models/v3", str(data)],
        ["label", str(data), "--model", "models/v3", "--out", str(tmp_path / "out.csv")],
    ):
        r = CliRunner().invoke(app, args, env=env)
        said = " ".join(r.output.split())
        assert r.exit_code != 0, (args, said)
        assert "'models/v3' does not exist" in said and "registered versions: v1" in said, said
    # The pointer file, as a path: the model it names is loaded (this stand-in cannot be).
    r = CliRunner().invoke(app, ["predict", "models/current", "路灯不亮"], env=env)
    said = " ".join(r.output.split())
    assert "is not a directory" not in said and "v1" in said, said


def test_current_names_the_model_the_pointer_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `paidan predict current "…"` said "'current' does not exist": the pointer file is no
    # version, so the one name every administrator knows was the one no command took.
    root = renamed_root(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert registry.named_model(root, "current") == root / VERSIONS[2]  # the newest, no pointer yet
    registry.set_current(root, "v1")
    assert registry.named_model(root, "current") == root / "v1"
    assert registry.names_current("current") and registry.names_current(Path("current"))
    # A file or directory called current where the command runs is itself, as any existing path.
    (tmp_path / "current").mkdir()
    assert registry.named_model(root, "current") == Path("current")
    assert not registry.names_current("current")
    assert not registry.names_current("other/current") and not registry.names_current(None)


def test_current_under_an_empty_root_says_there_is_no_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "models"
    root.mkdir()
    with pytest.raises(ModelLoadError) as e:
        registry.named_model(root, "current")
    assert str(e.value) == (
        f"'current' names no model: the model root {root} holds none yet; train one with "
        "`paidan train DATA --out ROOT/VERSION` or start `paidan serve`"
    )


def test_models_list_shows_and_promote_takes_the_reported_version(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from paidan.cli import app

    root = renamed_root(tmp_path)
    env = {
        "PAIDAN_MODEL_ROOT": str(root),
        "PAIDAN_DATA_DIR": str(tmp_path / "var"),
        "COLUMNS": "200",
    }
    runner = CliRunner()
    r = runner.invoke(app, ["models", "list"], env=env)
    assert r.exit_code == 0, r.output
    [row] = [line for line in r.output.splitlines() if " v1 " in line]
    assert REPORTED["v1"] in row, r.output
    assert "model version" in r.output
    r = runner.invoke(app, ["models", "list", "--json"], env=env)
    listed = {m["version"]: m["model_version"] for m in json.loads(r.output)}
    assert listed == {**REPORTED, VERSIONS[2]: VERSIONS[2]}
    r = runner.invoke(app, ["models", "promote", REPORTED["v1"], "--force"], env=env)
    assert r.exit_code == 0, r.output
    assert f"model version {REPORTED['v1']} is version v1" in r.output
    assert registry.pointer_version(root) == "v1"
    r = runner.invoke(app, ["models", "promote", "v3", "--force"], env=env)
    assert r.exit_code == 2 and "registered versions: v1 (model version" in r.output, r.output
    assert registry.pointer_version(root) == "v1"


def test_models_list_adds_no_column_when_every_version_reports_its_name(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from paidan.cli import app

    root = make_root(tmp_path)
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    r = CliRunner().invoke(app, ["models", "list"], env={**env, "COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "model version" not in r.output


def test_models_list_says_the_rows_a_version_used_when_validation_dropped_some(
    tmp_path: Path,
) -> None:
    # "history 606" of a version whose fit used 600 (6 repeated tickets dropped) read as 606
    # trained; the rows used are in its metadata (training_data.validation.rows_used).
    from typer.testing import CliRunner

    from paidan.cli import app

    root = make_root(tmp_path, VERSIONS[:2])
    meta_path = root / VERSIONS[1] / METADATA_FILE
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["training_data"]["validation"] = {"rows_in": 11, "rows_used": 8}  # 10 history + 1 feedback
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    runner = CliRunner()
    r = runner.invoke(app, ["models", "list"], env={**env, "COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    [header] = [line for line in r.output.splitlines() if "version" in line and "history" in line]
    assert "used" in header.split()
    [row] = [line for line in r.output.splitlines() if VERSIONS[1] in line]
    assert [c for c in row.split() if c.isdigit()][-3:] == ["10", "1", "8"], row
    [older] = [line for line in r.output.splitlines() if VERSIONS[0] in line]
    assert "?" in older.split()  # its metadata does not say
    r = runner.invoke(app, ["models", "list", "--json"], env=env)
    assert [m["rows_used"] for m in json.loads(r.output)] == [None, 8]


def _scored_root(tmp_path: Path, names: list[str]) -> Path:
    """make_root's versions scored on a frozen set (two heads), the last current."""
    root = make_root(tmp_path, names)
    (root / registry.EVAL_DIR).mkdir()
    registry.frozen_eval_path(root).write_bytes(b"frozen")
    registry.write_json_atomic(
        root / registry.EVAL_DIR / registry.EVAL_META_FILE,
        {"sha256": "e1", "rows": 40, "source": "20% of tickets.csv"},
    )
    for i, name in enumerate(names):
        heads = {
            "department": {"macro_f1": 0.8125 + i / 100},
            "category": {"macro_f1": 0.6 + i / 100},
        }
        registry.write_scores(
            root, name, {"eval_sha256": "e1", "heads": heads} | registry.SCORE_RULE
        )
    registry.promote(root, names[-2])
    registry.promote(root, names[-1])
    return root


@pytest.mark.parametrize("renamed", [False, True], ids=["own-names", "renamed"])
def test_models_list_reads_one_line_per_version_in_an_80_column_terminal(
    tmp_path: Path, renamed: bool
) -> None:
    # At 80 columns the table folded every column but the version's: "creat|ed", "curren|t", a
    # version's created time over four lines, and its figures beside none of them.
    names = ["v1", "v2", VERSIONS[2]] if renamed else VERSIONS[:3]
    root = _scored_root(tmp_path, names)
    if renamed:
        for name, reported in REPORTED.items():
            meta = json.loads((root / name / METADATA_FILE).read_text(encoding="utf-8"))
            meta["version"] = reported
            (root / name / METADATA_FILE).write_text(json.dumps(meta), encoding="utf-8")
    env = {k: v for k, v in os.environ.items()} | {"PAIDAN_MODEL_ROOT": str(root), "COLUMNS": "80"}
    cmd = [sys.executable, "-m", "paidan", "models", "list"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=True)
    lines = proc.stdout.splitlines()
    infos = {i.version: i for i in registry.list_versions(root)}
    for name in names:
        info = infos[name]
        [row] = [line for line in lines if f" {name} " in f" {line} "]
        assert len(row) <= 80, proc.stdout
        words = row.split()
        assert f"{info.metrics['department_macro_f1']:.3f}" in words, proc.stdout
        assert f"{info.metrics['category_macro_f1']:.3f}" in words, proc.stdout
        assert str(info.rows["history"]) in words, proc.stdout
        assert info.model_version in row, proc.stdout
        # Versions paidan names are their creation time: the created column goes first.
        if renamed:
            assert "not shown at this width: created" in proc.stdout
        else:
            assert (info.created or "")[:10] in words, proc.stdout
        status = "current" if info.current else "previous" if info.previous else None
        assert status is None or status in words, proc.stdout


def test_models_list_does_not_import_scikit_learn(tiny_model_dir: Path, tmp_path: Path) -> None:
    # sklearn.metrics, with scipy.stats, was imported by every command reaching training.compare:
    # `paidan models list` took 1.6 s, two thirds of it importing what listing never runs.
    from tests.conftest import three_versions

    root = three_versions(tiny_model_dir, tmp_path)
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from paidan.cli import app\n"
        "r = CliRunner().invoke(app, ['models', 'list', '--json'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(len(__import__('json').loads(r.stdout)))\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy'}))\n"
    )
    env = {**os.environ, "PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    listed, imported = proc.stdout.splitlines()[-2:]
    assert listed == "3"
    # scipy.sparse is the model's (its router); scipy.stats and scikit-learn are not needed.
    assert "sklearn" not in imported, imported


def test_keep_current_names_the_version_current_now_before_another_is_written(
    tmp_path: Path,
) -> None:
    root = make_root(tmp_path, VERSIONS[:2])
    registry.keep_current(root, tmp_path / "elsewhere" / "v9")  # not under the root: nothing
    assert not (root / registry.CURRENT_FILE).exists()
    registry.keep_current(root, root / VERSIONS[2])
    assert registry.pointer_version(root) == VERSIONS[1]  # the newest, current without a pointer
    shutil.copytree(root / VERSIONS[1], root / VERSIONS[2])  # the new version, written
    meta = json.loads((root / VERSIONS[2] / METADATA_FILE).read_text(encoding="utf-8"))
    meta["created"] = "2026-01-03T00:00:00+00:00"  # the newest
    (root / VERSIONS[2] / METADATA_FILE).write_text(json.dumps(meta), encoding="utf-8")
    assert registry.versions(root)[-1] == VERSIONS[2]
    assert registry.current_version(root) == VERSIONS[1]
    registry.promote(root, VERSIONS[0])
    registry.keep_current(root, root / VERSIONS[3])  # a pointer names one already: kept
    assert registry.current_version(root) == VERSIONS[0]


def test_keep_current_leaves_a_broken_pointer_for_models_list_to_report(tmp_path: Path) -> None:
    root = make_root(tmp_path, VERSIONS[:2])
    (root / registry.CURRENT_FILE).symlink_to("gone")
    registry.keep_current(root, root / VERSIONS[2])
    assert os.readlink(root / registry.CURRENT_FILE) == "gone"


def test_keep_current_writes_nothing_on_an_empty_root(tmp_path: Path) -> None:
    root = tmp_path / "models"
    root.mkdir()
    registry.keep_current(root, root / "v1")  # the first version is current either way
    assert not (root / registry.CURRENT_FILE).exists()


def test_models_list_gives_created_times_in_utc_and_says_so(tmp_path: Path) -> None:
    # The created column read "2026-12-07 09:16", a UTC time unlabelled: at a centre in UTC+8 the
    # nightly retrain of 02:30 was listed as created the evening before. A time recorded with
    # another offset was shown in that offset, beside UTC ones.
    from typer.testing import CliRunner

    from paidan.cli import app

    root = make_root(tmp_path)
    path = root / VERSIONS[0] / METADATA_FILE
    meta = json.loads(path.read_text(encoding="utf-8"))
    meta["created"] = "2026-01-01T08:30:00+08:00"
    path.write_text(json.dumps(meta), encoding="utf-8")
    env = {"PAIDAN_MODEL_ROOT": str(root), "COLUMNS": "200"}
    result = CliRunner().invoke(app, ["models", "list"], env=env)
    assert result.exit_code == 0, result.output
    assert "created (UTC)" in result.output
    [row] = [line for line in result.output.splitlines() if VERSIONS[0] in line]
    assert "2026-01-01 00:30" in row, result.output


def test_models_list_on_an_empty_root_says_a_whole_command_to_train_the_first(
    tmp_path: Path,
) -> None:
    # It said "(paidan train --out, or paidan retrain)": neither runs as written (train needs its
    # data, --out a directory; retrain its --history), and without --out train writes under the
    # root, where models list looks.
    from typer.testing import CliRunner

    from paidan.cli import app

    root = tmp_path / "none"
    r = CliRunner().invoke(app, ["models", "list"], env={"PAIDAN_MODEL_ROOT": str(root)})
    assert r.exit_code == 0, r.output
    assert (
        f"no model versions under {root} yet: train the first with paidan train FILE (FILE: "
        "your labelled tickets; it becomes the current model), or paidan retrain --history FILE"
    ) in " ".join(r.output.split())


def test_gc_names_what_a_killed_model_write_left_in_the_root_and_keeps_it(tmp_path: Path) -> None:
    # A train or retrain killed while writing its model (kill -9, the OOM killer, a power cut)
    # leaves its hidden staging directory, a whole model's size, in the root: gc, run to free the
    # disk, neither deleted nor named it, and nothing else ever did. It is named with the command
    # that deletes it (not deleted: a write in progress has one too), beside a temporary pointer.
    from typer.testing import CliRunner

    from paidan.cli import app

    root = make_root(tmp_path, VERSIONS[:2])
    staging = root / f".{VERSIONS[1][:-1]}9.0123456789ab"
    staging.mkdir()
    (staging / ROUTER_FILE).write_bytes(b"x" * 3_000_000)
    pointer = root / ".current.a1b2c3d4e5f6"
    pointer.write_text(VERSIONS[0], encoding="utf-8")
    (root / ".leases").mkdir()  # paidan's own, never named
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    r = CliRunner().invoke(app, ["models", "gc", "--keep", "5"], env=env)
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert (
        f"2 leftovers of a model or registry write that was killed (kill -9, out of memory, a "
        f"power cut): {staging} (3 MB), {pointer}; once no paidan train, retrain or models "
        f"command is running, delete them: rm -r {staging} {pointer}"
    ) in said, r.output
    assert staging.is_dir() and pointer.is_file()
    assert registry.versions(root) == VERSIONS[:2]


def test_gc_leaves_alone_and_names_directories_the_registry_did_not_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A backup copy of a version (`cp -r VERSION VERSION.bak`, a metadata.json and all) and a
    # copy cut short (its router.joblib not copied yet) were taken for old versions and deleted.
    from typer.testing import CliRunner

    from paidan.cli import app

    root = make_root(tmp_path, VERSIONS[:3])
    backup = root / f"{VERSIONS[0]}.bak"
    shutil.copytree(root / VERSIONS[0], backup)
    half = root / VERSIONS[1]
    (half / ROUTER_FILE).unlink()  # as a copy that had written metadata.json only
    registry.promote(root, VERSIONS[2])
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    r = CliRunner().invoke(app, ["models", "list"], env=env)
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert f"{VERSIONS[1]} lacks {ROUTER_FILE}" in said, said
    with caplog.at_level("WARNING", logger="model.registry"):
        assert registry.gc(root, keep=1) == ([VERSIONS[0]], [])
    said = " ".join(caplog.text.split())
    assert "left alone 1 directory that the registry did not write as a version" in said, said
    assert f"{VERSIONS[1]} (lacks {ROUTER_FILE})" in said, said
    assert backup.name not in said, said  # a whole model: summed up by the command instead
    assert registry.named_models(root) == [backup.name]
    assert backup.is_dir() and half.is_dir()


def test_gc_keep_counts_only_the_versions_the_registry_wrote(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A backup copy of the newest version (as new as it) and a directory of `train --out
    # ROOT/city1` (newer still) were counted among the --keep newest: gc left them alone, as it
    # must, and deleted the real versions they had taken the places of.
    root = make_root(tmp_path, VERSIONS[:4])
    registry.promote(root, VERSIONS[3])  # current: the newest; no previous
    backup = root / f"{VERSIONS[3]}.bak"
    shutil.copytree(root / VERSIONS[3], backup)
    out = root / "city1"
    shutil.copytree(root / VERSIONS[3], out)
    meta = json.loads((out / METADATA_FILE).read_text(encoding="utf-8"))
    meta.update(version="20260106T000000Z-00000006", created="2026-01-06T00:00:00+00:00")
    (out / METADATA_FILE).write_text(json.dumps(meta), encoding="utf-8")
    # The newest three by time: two of them directories gc leaves alone.
    assert registry.versions(root)[-3:] == [backup.name, VERSIONS[3], out.name]
    with caplog.at_level("WARNING", logger="model.registry"):
        removed, in_use = registry.gc(root, keep=3)
    assert (removed, in_use) == ([VERSIONS[0]], [])
    assert registry.versions(root) == [VERSIONS[1], VERSIONS[2], backup.name, VERSIONS[3], out.name]
    assert "left alone" not in caplog.text, caplog.text  # whole models: no warning
    assert registry.named_models(root) == [backup.name, out.name]


def test_a_backup_copy_of_the_newest_version_is_not_taken_for_the_current_one(
    tmp_path: Path,
) -> None:
    # With no pointer yet (a root trained into once), the newest version is current. A backup
    # copy (`cp -r V V.bak`) is as new as V and its name sorted after V's, so the copy became the
    # current model: served, and named in the pointer the next train wrote, which then named
    # nothing once the backup was deleted.
    root = make_root(tmp_path, VERSIONS[:2])
    backup = root / f"{VERSIONS[1]}.bak"
    shutil.copytree(root / VERSIONS[1], backup)
    assert registry.versions(root) == [VERSIONS[0], backup.name, VERSIONS[1]]
    assert registry.current_version(root) == VERSIONS[1]
    registry.keep_current(root, root / "20260109T000000Z-00000009")
    assert registry.pointer_version(root) == VERSIONS[1]


def test_gc_sums_up_the_models_of_train_out_in_one_line_and_warns_of_real_leftovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Every `train --out ROOT/NAME` directory (a whole model, the README's first command) and
    # every backup copy was named in a warning with its reason on every gc: noise after the
    # first night, among which a copy cut short went unseen. They are summed up in one line with
    # the command that deletes one; a directory that lacks a file is still a warning.
    from typer.testing import CliRunner

    from paidan.cli import app

    root = make_root(tmp_path, VERSIONS[:4])
    registry.promote(root, VERSIONS[3])
    for name in ("city1", "city2"):
        out = root / name
        shutil.copytree(root / VERSIONS[0], out)  # a whole model, named otherwise
    shutil.copytree(root / VERSIONS[1], root / f"{VERSIONS[1]}.bak")
    half = root / VERSIONS[2]
    (half / ROUTER_FILE).unlink()  # a copy cut short
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    with caplog.at_level("WARNING", logger="model.registry"):
        r = CliRunner().invoke(app, ["models", "gc", "--keep", "1"], env=env)
    assert r.exit_code == 0, r.output
    warned = " ".join(caplog.text.split())
    assert (
        f"left alone 1 directory that the registry did not write as a version: {VERSIONS[2]} "
        f"(lacks {ROUTER_FILE})"
    ) in warned, warned
    assert "city1" not in warned and ".bak" not in warned, warned
    said = [line for line in r.stdout.splitlines() if "city1" in line]
    assert len(said) == 1, r.stdout
    line = " ".join(said[0].split())
    assert f"3 models that train --out or a copy wrote: city1, city2, {VERSIONS[1]}.bak" in line
    assert f"rm -r {root}/NAME" in line, line
    assert "metadata.json names" not in r.stdout, r.stdout
    assert (root / "city1").is_dir() and (root / f"{VERSIONS[1]}.bak").is_dir() and half.is_dir()


def test_promote_takes_the_path_of_a_version_under_the_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `paidan train tickets.csv --out models/v1` (the README's first command), then `paidan
    # models promote models/v1`, as evaluate, predict and label take the model: refused as "no
    # model version 'models/v1'". A path to a version directly under the root names it; a model
    # directory elsewhere is refused saying that it is not under the root.
    from typer.testing import CliRunner

    from paidan.cli import app

    root = make_root(tmp_path, VERSIONS[:3])
    registry.promote(root, VERSIONS[2])
    monkeypatch.chdir(tmp_path)
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    r = CliRunner().invoke(app, ["models", "promote", f"models/{VERSIONS[0]}", "--force"], env=env)
    assert r.exit_code == 0, r.output
    assert registry.pointer_version(root) == VERSIONS[0]
    assert "is version" not in r.output, r.output  # no model version was named
    assert registry.resolve_version(root, f"{root}/{VERSIONS[1]}/") == VERSIONS[1]
    elsewhere = tmp_path / "other" / "v9"
    shutil.copytree(root / VERSIONS[1], elsewhere)
    r = CliRunner().invoke(app, ["models", "promote", "other/v9"], env=env)
    assert r.exit_code == 2, r.output
    said = " ".join(r.output.split())
    assert f"other/v9 is not a version under the model root {root}" in said, said
    assert registry.pointer_version(root) == VERSIONS[0]


def test_a_backup_copy_of_a_train_out_model_is_not_taken_for_the_current_one(
    tmp_path: Path,
) -> None:
    # `paidan train tickets.csv --out models/v1` writes no pointer (its first model is current),
    # then `cp -r models/v1 models/v1.bak`: the copy is as new as v1, neither is named as the
    # model version they report, and by name the backup was the newest, so it became current
    # and the next train wrote it into `current`, which named nothing once it was deleted.
    root = make_root(tmp_path, VERSIONS[:1])
    (root / VERSIONS[0]).rename(root / "v1")  # as `train --out ROOT/v1` names it
    for copy in ("v1.bak", "backup-v1"):
        shutil.copytree(root / "v1", root / copy)
    assert registry.versions(root)[-1] == "v1"
    assert registry.current_version(root) == "v1"
    registry.keep_current(root, root / "v2")
    assert registry.pointer_version(root) == "v1"
    # Copies named otherwise than after one another are still ordered by name.
    other = make_root(tmp_path / "other", VERSIONS[:1])
    for name in ("a", "b"):
        shutil.copytree(other / VERSIONS[0], other / name)
    shutil.rmtree(other / VERSIONS[0])
    assert registry.versions(other) == ["a", "b"]


def test_gc_in_a_root_it_cannot_write_deletes_nothing_and_names_the_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A root another account owns (or mounted read-only): gc emptied the first old version's
    # directory, failed to remove the directory itself, and ended with a bare "[Errno 13]
    # Permission denied: '…/V'", the version's files gone and the registry not told.
    root = make_root(tmp_path)
    registry.promote(root, VERSIONS[3])
    (root / registry.LEASES_DIR).mkdir()  # as a running server made it
    denied = OSError(errno.EACCES, "Permission denied")

    def no_entry_of_root(real):  # the root's own entries cannot be removed, renamed or made
        def call(path, *args, **kwargs):
            if kwargs.get("dir_fd") is None and Path(path).parent == root:
                raise OSError(denied.errno, denied.strerror, str(path))
            return real(path, *args, **kwargs)

        return call

    monkeypatch.setattr(os, "rmdir", no_entry_of_root(os.rmdir))
    monkeypatch.setattr(os, "rename", no_entry_of_root(os.rename))
    with pytest.raises(OSError) as e:
        registry.gc(root, keep=1)
    assert str(e.value) == f"cannot write {root}: Permission denied"
    for version in VERSIONS:  # every version whole
        assert (root / version / ROUTER_FILE).read_bytes() == version.encode()
    # Nor can gc make its lease files there: said so, naming the directory.
    monkeypatch.undo()
    shutil.rmtree(root / registry.LEASES_DIR)
    real_mkdir = Path.mkdir

    def no_mkdir(self: Path, *args, **kwargs) -> None:
        if self.parent == root:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", no_mkdir)
    with pytest.raises(OSError) as e:
        registry.gc(root, keep=1)
    assert str(e.value) == f"cannot write {root / registry.LEASES_DIR}: Permission denied"
    assert registry.versions(root) == VERSIONS
