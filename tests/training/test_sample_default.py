"""The default model ``paidan serve`` trains from the bundled sample is a placeholder.

README's first day: ``paidan serve`` on an empty root trains the sample's model and makes it
current; the administrator's ``paidan train tickets.csv --out models/v1`` must then be what
``serve`` and ``label`` use, not the invented sample's model for good.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from model.artifact import read_metadata
from model.registry import current_version, versions
from model.resources import SAMPLE_MARKER, is_sample_default
from model.settings import Settings
from paidan.cli import app, ensure_model
from tests.conftest import TINY_TICKETS, write_tickets_csv, write_tiny_csv

runner = CliRunner()

# The city's own departments: none of them is in the stand-in sample.
CITY_TICKETS = [(t, x, f"城南区{d}局", c) for t, x, d, c in TINY_TICKETS]


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root holding only the default trained by ``paidan serve`` (the tiny corpus stands in
    for the bundled sample, which takes a minute)."""
    here = tmp_path_factory.mktemp("sample-default")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("model.resources.sample_path", lambda: write_tiny_csv(here / "s.csv"))
        ensure_model(Settings(model_root=here / "models"), None)
    return here / "models"


def fresh_root(sample_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "models"
    shutil.copytree(sample_root, root)
    return root


def test_the_default_model_is_marked_as_the_bundled_samples(sample_root: Path) -> None:
    version = current_version(sample_root)
    assert version is not None
    meta = read_metadata(sample_root / version)
    assert meta["training_data"][SAMPLE_MARKER] is True and is_sample_default(meta)


def test_train_into_the_root_replaces_the_sample_default_and_says_so(
    sample_root: Path, tmp_path: Path
) -> None:
    root = fresh_root(sample_root, tmp_path)
    default = current_version(root)
    data = write_tickets_csv(tmp_path / "city.csv", CITY_TICKETS)
    env = {"PAIDAN_MODEL_ROOT": str(root)}
    args = ["train", str(data), "--out", str(root / "v1"), "--min-examples", "3"]
    r = runner.invoke(app, args, env=env)
    assert r.exit_code == 0, r.output
    assert current_version(root) == "v1"
    text = " ".join(r.output.split())
    assert f"v1 is now the current model (it replaces {default}" in text
    assert not is_sample_default(read_metadata(root / "v1"))
    # The city's next model is not swapped in behind its back: train says how to promote it.
    args = ["train", str(data), "--out", str(root / "v2"), "--min-examples", "3"]
    r = runner.invoke(app, args, env=env)
    assert r.exit_code == 0, r.output
    assert current_version(root) == "v1"
    said = " ".join(r.output.split())
    assert "v2 is not the current model (v1 is)" in said
    assert "paidan models promote v2 --force" in said  # no frozen set to compare on yet
    listed = runner.invoke(app, ["models", "list", "--json"], env=env)
    marks = {v["version"]: v["bundled_sample"] for v in json.loads(listed.stdout)}
    assert marks == {default: True, "v1": False, "v2": False}
    table = runner.invoke(app, ["models", "list"], env={**env, "COLUMNS": "200"})
    assert "previous (bundled sample)" in table.output
    # Neither current nor previous, the default's mark began with a space.
    r = runner.invoke(app, ["models", "promote", "v2", "--force"], env=env)
    assert r.exit_code == 0, r.output
    table = runner.invoke(app, ["models", "list"], env={**env, "COLUMNS": "200"})
    assert "│ (bundled sample)" in table.output and "  (bundled sample)" not in table.output


def test_promote_replaces_the_sample_default_without_a_frozen_set_or_force(
    sample_root: Path, tmp_path: Path
) -> None:
    from training.train import train

    root = fresh_root(sample_root, tmp_path)
    default = current_version(root)
    data = write_tickets_csv(tmp_path / "city.csv", CITY_TICKETS)
    from model.config import TrainingConfig

    config = TrainingConfig(cv_folds=3, calibration_cv=2, min_examples=3, select_inputs=False)
    train([data], root / "v1", config=config)  # the library writes; only the CLI moves current
    assert current_version(root) == default
    # Every department is new to the champion (the lost-label rule) and nothing is frozen.
    r = runner.invoke(app, ["models", "promote", "v1"], env={"PAIDAN_MODEL_ROOT": str(root)})
    assert r.exit_code == 0, r.output
    assert current_version(root) == "v1"
    # Said in the order it happened: "promoted v1 to current" and then "the current model <the
    # default> is ..." read as if the default were still current.
    text = " ".join(r.output.split())
    assert (
        f"promoted v1 to current, replacing {default}, the default model trained from the "
        "bundled sample, without a comparison" in text
    ), text
    assert f"the current model {default}" not in text, text


def test_retrain_replaces_the_sample_default_and_inherits_nothing_from_it(
    sample_root: Path, tmp_path: Path
) -> None:
    # The nightly retrain on the city's history: every sample label "lost" refused it as worse.
    from model.config import TrainingConfig
    from training.retrain import retrain

    root = fresh_root(sample_root, tmp_path)
    default = current_version(root)
    again = [(t, x + "，至今没有解决", d, c) for t, x, d, c in CITY_TICKETS]
    history = write_tickets_csv(tmp_path / "history.csv", CITY_TICKETS + again)
    config = TrainingConfig(cv_folds=3, calibration_cv=2, min_examples=3, select_inputs=False)
    result = retrain([history], [], root, promote_if_better=True, config=config)
    decision = result.decision
    assert decision is not None and decision.promoted and not decision.refused
    assert decision.sample_champion and decision.champion == default
    assert current_version(root) == result.version
    assert result.inherited == {} and not result.new_labels  # nothing "new" against the sample


SAMPLE_NOTE = "is the bundled sample's default, trained on invented tickets; train the city's own"


def test_label_and_serve_say_when_they_use_the_sample_default(
    sample_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Staff read the sample's invented departments as the city's: label and serve said nothing.
    root = fresh_root(sample_root, tmp_path)
    default = current_version(root)
    env = {"PAIDAN_MODEL_ROOT": str(root)}
    backlog = write_tickets_csv(tmp_path / "backlog.csv", CITY_TICKETS[:3])
    args = ["label", str(backlog), "--out", str(tmp_path / "out.csv"), "--jobs", "1"]
    r = runner.invoke(app, args, env=env)
    assert r.exit_code == 0, r.output
    said = " ".join(r.stderr.split())
    # The model root, absolutely: `--out models/NAME` wrote wherever staff were, outside the root.
    hint = f"with paidan train FILE --out {root.resolve()}/NAME (the model root, PAIDAN_MODEL_ROOT)"
    assert f"note: model {default} {SAMPLE_NOTE} {hint}" in said
    monkeypatch.setattr("serve.server.run", lambda *a, announce, **k: announce())
    started = runner.invoke(app, ["serve"], env=env)
    assert started.exit_code == 0, started.output
    assert f"note: model {default} {SAMPLE_NOTE} {hint}" in " ".join(started.stderr.split())

    # The city's own model: not a word.
    data = write_tickets_csv(tmp_path / "city.csv", CITY_TICKETS)
    train = ["train", str(data), "--out", str(root / "v1"), "--min-examples", "3"]
    r = runner.invoke(app, train, env=env)
    assert r.exit_code == 0, r.output
    assert current_version(root) == "v1"
    r = runner.invoke(app, [*args, "--force"], env=env)
    assert r.exit_code == 0, r.output
    assert "bundled sample" not in r.output
    started = runner.invoke(app, ["serve"], env=env)
    assert started.exit_code == 0, started.output
    assert "serving" in started.output and "bundled sample" not in started.output


def test_the_notes_hint_followed_from_another_directory_puts_the_model_where_promote_finds_it(
    sample_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PAIDAN_MODEL_ROOT=/srv/paidan/models; staff work in their own directory. The note's
    # `--out models/NAME` wrote ./models/NAME, train said nothing, `models promote NAME` failed
    # and the invented sample's model stayed current.
    import shlex

    root = fresh_root(sample_root, tmp_path)
    staff = tmp_path / "staff"
    staff.mkdir()
    monkeypatch.chdir(staff)
    env = {"PAIDAN_MODEL_ROOT": str(root)}
    backlog = write_tickets_csv(staff / "backlog.csv", CITY_TICKETS[:3])
    r = runner.invoke(app, ["label", str(backlog), "--out", "out.csv", "--jobs", "1"], env=env)
    assert r.exit_code == 0, r.output
    note = " ".join(r.stderr.split())
    command = note.split("train the city's own with ")[1].split(" (the model root")[0]
    data = write_tickets_csv(staff / "city.csv", CITY_TICKETS)
    args = shlex.split(command.replace("FILE", str(data)).replace("NAME", "city1"))
    assert args[:2] == ["paidan", "train"]
    r = runner.invoke(app, [*args[1:], "--min-examples", "3"], env=env)
    assert r.exit_code == 0, r.output
    assert current_version(root) == "city1", r.output
    assert "city1 is now the current model" in " ".join(r.output.split())


def test_train_outside_the_model_root_says_it_is_not_in_the_registry_and_how_to_use_it(
    sample_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # README: "otherwise train says which model is current and how to promote this one". Written
    # outside the root, train said nothing but "written to models/city1".
    import shlex

    root = fresh_root(sample_root, tmp_path)
    default = current_version(root)
    staff = tmp_path / "staff"
    staff.mkdir()
    monkeypatch.chdir(staff)
    env = {"PAIDAN_MODEL_ROOT": str(root)}
    data = write_tickets_csv(staff / "city.csv", CITY_TICKETS)
    r = runner.invoke(
        app, ["train", str(data), "--out", "models/city1", "--min-examples", "3"], env=env
    )
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert (
        f"models/city1 is not under the model root {root.resolve()} (PAIDAN_MODEL_ROOT), so it is "
        f"not in the registry (the current model there is {default})"
    ) in said
    assert current_version(root) == default
    # The way it names works: move it under the root, then promote it.
    move = said.split("move it there and promote it: ")[1].split(" && ")[0]
    mv, src, dst = shlex.split(move)
    assert mv == "mv" and Path(dst) == root.resolve() / "city1"
    shutil.move(src, dst)
    r = runner.invoke(app, ["models", "promote", "city1"], env=env)
    assert r.exit_code == 0, r.output
    assert current_version(root) == "city1"
    # A root not made yet (the server never started): the way starts by making it.
    env = {"PAIDAN_MODEL_ROOT": str(tmp_path / "srv" / "models")}
    args = ["train", str(data), "--out", "models/city2", "--min-examples", "3"]
    r = runner.invoke(app, args, env=env)
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    move = said.split("move it there and promote it: ")[1].split(" && paidan models")[0]
    subprocess.run(move, shell=True, check=True, timeout=60)
    r = runner.invoke(app, ["models", "promote", "city2"], env=env)
    assert r.exit_code == 0, r.output
    assert current_version(tmp_path / "srv" / "models") == "city2"
    # Deeper inside the root: it was said to be "not under the model root".
    args = ["train", str(data), "--out", str(root / "sub" / "city3"), "--min-examples", "3"]
    r = runner.invoke(app, args, env={"PAIDAN_MODEL_ROOT": str(root)})
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert (
        f"is inside the model root {root.resolve()} (PAIDAN_MODEL_ROOT) but not directly in it, "
        "where its versions are, so it is not in the registry"
    ) in said, said


def test_a_retrain_on_the_sample_history_is_not_the_sample_default() -> None:
    # A model trained on data/tickets.csv alone, before the marker, is the sample's default; a
    # retrain with that history plus the centre's feedback was announced as "the bundled sample's
    # default, trained on invented tickets", and would have been replaced without a comparison.
    import hashlib

    from model.resources import SAMPLE_FILE, sample_path

    digest = hashlib.sha256(sample_path().read_bytes()).hexdigest()
    plain = {"training_data": {"files": [{"name": SAMPLE_FILE, "sha256": digest}]}}
    assert is_sample_default(plain)
    for extra in (
        {"feedback": {"records": 4}, "parent": "v0", "sources": {"history": 936, "feedback": 4}},
        {"parent": "v0"},
        {"feedback": {"records": 4}},
    ):
        meta = {"training_data": {**plain["training_data"], **extra}}
        assert not is_sample_default(meta), extra


SAMPLE_20261122 = "66e19d7521d0159ea4173ae1be0fc713a197f396aaeb5d3276889ddf3bd17ceb"


def test_a_default_an_older_paidan_trained_from_its_own_sample_is_still_the_placeholder(
    sample_root: Path, tmp_path: Path
) -> None:
    # The default `paidan serve` of 2026-11-22 trained from the sample shipped then (no marker;
    # its checksum is not today's sample's): after the upgrade the city's first `paidan train`
    # stayed behind it instead of becoming current as the README says.
    from model.artifact import METADATA_FILE
    from model.resources import SAMPLE_FILE

    root = fresh_root(sample_root, tmp_path)
    default = current_version(root)
    assert default is not None
    path = root / default / METADATA_FILE
    meta = json.loads(path.read_text(encoding="utf-8"))
    data = {k: v for k, v in meta["training_data"].items() if k != SAMPLE_MARKER}
    # data/tickets.csv as shipped on 2026-11-22 (889b2fc)
    old = {"name": SAMPLE_FILE, "sha256": SAMPLE_20261122}
    meta["training_data"] = data | {"files": [old]}
    path.chmod(0o644)
    path.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    assert is_sample_default(read_metadata(root / default))
    city = write_tickets_csv(tmp_path / "city.csv", CITY_TICKETS)
    args = ["train", str(city), "--out", str(root / "v1"), "--min-examples", "3"]
    r = runner.invoke(app, args, env={"PAIDAN_MODEL_ROOT": str(root)})
    assert r.exit_code == 0, r.output
    assert current_version(root) == "v1", r.output
    # A file of that name with another checksum is a city's own: not the placeholder.
    other = {"training_data": {"files": [{"name": SAMPLE_FILE, "sha256": "0" * 64}]}}
    assert not is_sample_default(other)


def test_the_earlier_sample_checksums_are_those_of_the_samples_in_git_history() -> None:
    import hashlib
    import subprocess

    from model.resources import EARLIER_SAMPLE_SHA256, sample_path

    repo = Path(__file__).resolve().parents[2]
    try:
        commits = subprocess.run(
            ["git", "-C", str(repo), "log", "--format=%H", "--", "data/tickets.csv"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        pytest.skip("no git history (a source archive)")
    shipped = set()
    for c in commits:
        blob = subprocess.run(
            ["git", "-C", str(repo), "show", f"{c}:data/tickets.csv"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
        shipped.add(hashlib.sha256(blob).hexdigest())
    today = hashlib.sha256(sample_path().read_bytes()).hexdigest()
    assert shipped - {today} <= set(EARLIER_SAMPLE_SHA256)


@pytest.mark.parametrize("out", ["x/my model", "-v2", "v(1);2"])
def test_the_way_train_names_to_serve_a_model_outside_the_root_works_when_pasted(
    sample_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, out: str
) -> None:
    # `--out "x/my model"` printed `paidan models promote my model`: pasted, the move ran and the
    # promotion failed on an extra argument, leaving the model under the root but not current.
    import shlex

    root = fresh_root(sample_root, tmp_path)
    staff = tmp_path / "staff"
    staff.mkdir()
    monkeypatch.chdir(staff)
    env = {"PAIDAN_MODEL_ROOT": str(root)}
    data = write_tickets_csv(staff / "city.csv", CITY_TICKETS)
    r = runner.invoke(app, ["train", str(data), "--out", out, "--min-examples", "3"], env=env)
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    way = said.split("move it there and promote it: ")[1].split("; or train with")[0]
    move, promote = way.split(" && paidan ")
    subprocess.run(move, shell=True, check=True, timeout=60, cwd=staff)
    r = runner.invoke(app, shlex.split(promote), env=env)
    assert r.exit_code == 0, r.output
    assert current_version(root) == Path(out).name


def test_train_into_an_empty_root_says_the_model_is_current(tmp_path: Path) -> None:
    # The city's first model on an empty root becomes current: train said nothing about it,
    # though it names the current model in every other case.
    root = tmp_path / "models"
    data = write_tickets_csv(tmp_path / "city.csv", CITY_TICKETS)
    args = ["train", str(data), "--out", str(root / "v1"), "--min-examples", "3"]
    r = runner.invoke(app, args, env={"PAIDAN_MODEL_ROOT": str(root)})
    assert r.exit_code == 0, r.output
    assert current_version(root) == "v1"
    assert "v1 is the current model (the first in the registry)" in " ".join(r.output.split())


def train_v1_and_v2(tmp_path: Path) -> tuple[Path, dict[str, str], Path, str]:
    """Two `paidan train --out ROOT/NAME` of the same city tickets: the root, its env, the data
    and what the second train said, its whitespace collapsed."""
    root = tmp_path / "models"
    env = {"PAIDAN_MODEL_ROOT": str(root)}
    data = write_tickets_csv(tmp_path / "city.csv", CITY_TICKETS)
    for name in ("v1", "v2"):
        args = ["train", str(data), "--out", str(root / name), "--min-examples", "3"]
        r = runner.invoke(app, args, env=env)
        assert r.exit_code == 0, r.output
    return root, env, data, " ".join(r.output.split())


def test_a_second_model_under_the_root_does_not_become_current_by_being_written(
    tmp_path: Path,
) -> None:
    # Without a pointer the newest version is current: the first model's train wrote none, so a
    # second train, an unpromoted retrain or set-rules became the served model on writing, and
    # train called the second "the first in the registry".
    root, env, data, said = train_v1_and_v2(tmp_path)
    assert "v2 is not the current model (v1 is)" in said
    assert "paidan models promote v2 --force" in said  # no frozen set to compare on yet
    assert current_version(root) == "v1"
    r = runner.invoke(app, ["train", str(data), "--min-examples", "3"], env=env)  # root/VERSION
    assert r.exit_code == 0, r.output
    rules = tmp_path / "rules.csv"
    rules.write_text("keywords,department\n噪音,城南区执法局\n", encoding="utf-8")
    r = runner.invoke(app, ["models", "set-rules", "v2", "--rules", str(rules)], env=env)
    assert r.exit_code == 0, r.output
    assert current_version(root) == "v1"
    assert len(versions(root)) == 4


def test_train_says_how_to_promote_a_second_model_when_no_set_is_frozen(tmp_path: Path) -> None:
    # A city's second model under the root: train said "make it current with paidan models
    # promote v2", and that command was refused at once, as promote compares on a frozen
    # evaluation set and none is frozen yet. The hint names both ways that work.
    root, env, data, said = train_v1_and_v2(tmp_path)
    assert "v2 is not the current model (v1 is)" in said
    assert "paidan models freeze-eval DATA" in said, said
    assert "paidan models promote v2 --force" in said, said
    # The plain promote it names after freeze-eval is refused without a frozen set, as it said.
    r = runner.invoke(app, ["models", "promote", "v2"], env=env)
    assert r.exit_code != 0 and current_version(root) == "v1"
    r = runner.invoke(app, ["models", "promote", "v2", "--force"], env=env)
    assert r.exit_code == 0, r.output
    assert current_version(root) == "v2"
    # With a frozen set, the plain promote compares the two: that is the command to give.
    frozen = write_tickets_csv(tmp_path / "eval.csv", CITY_TICKETS[::2])
    r = runner.invoke(app, ["models", "freeze-eval", str(frozen)], env=env)
    assert r.exit_code == 0, r.output
    args = ["train", str(data), "--out", str(root / "v3"), "--min-examples", "3"]
    r = runner.invoke(app, args, env=env)
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert "v3 is not the current model (v2 is): make it current with paidan models promote v3" in (
        said
    )
    assert "--force" not in said and "freeze-eval" not in said


def test_a_retrain_not_promoted_over_the_sample_default_says_nothing_moved(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # retrain without --promote-if-better over the placeholder said "<challenger> replaces it",
    # as if current had moved.
    from paidan.cli import _print_decision
    from training.compare import Decision

    decision = Decision("v2", "v1", promoted=False, refused=False, sample_champion=True)
    _print_decision(decision, applied=False)
    text = " ".join(capsys.readouterr().out.split())
    assert text == (
        "the current model v1 is the default trained from the bundled sample: v2 would replace "
        "it without a comparison (paidan models promote v2)"
    ), text


def test_a_rollback_onto_the_sample_default_asks_for_it_by_name(
    sample_root: Path, tmp_path: Path, tiny_model_dir: Path
) -> None:
    # After the city's v1 replaced the placeholder and v2 replaced v1, a second rollback went
    # back to the default trained on invented tickets without a word: every ticket of the city
    # was then routed by it.
    from model import registry
    from tests.conftest import as_registered

    root = fresh_root(sample_root, tmp_path)
    default = current_version(root)
    for name in ("v1", "v2"):
        as_registered(Path(shutil.copytree(tiny_model_dir, root / name)))
        registry.promote(root, name)
    env = {"PAIDAN_MODEL_ROOT": str(root)}
    r = runner.invoke(app, ["models", "rollback"], env=env)
    assert r.exit_code == 0, r.output
    assert current_version(root) == "v1"
    r = runner.invoke(app, ["models", "rollback"], env=env)
    text = " ".join(r.output.split())
    assert r.exit_code == 2, text
    assert current_version(root) == "v1"
    assert (
        f"the version before v1 is {default}, the default model trained from the bundled sample "
        "(invented tickets, none of the city's)" in text
    ), text
    assert "paidan models rollback --to-bundled-sample" in text and "current is still v1" in text
    r = runner.invoke(app, ["models", "rollback", "--to-bundled-sample"], env=env)
    assert r.exit_code == 0, r.output
    assert current_version(root) == default
    text = " ".join(r.output.split())
    assert f"current is {default} again (was v1), the default model trained from the bundled" in (
        text
    ), text
