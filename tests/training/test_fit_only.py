"""Fit-only rows (``paidan train --fit-only``): learnt from, never scored."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from model.artifact import sha256_file
from model.config import TrainingConfig
from model.pipeline import build_classifier
from paidan.cli import app
from training.metrics import choose_threshold
from training.train import cross_validate_heads, cv_sample, fit_router
from training.validate import TrainingDataError, usable_fit_only, validate

from ..conftest import TINY_TICKETS

# Written for these tests: tickets another centre might lend, in the tiny corpus's departments,
# one of a department the tiny corpus lacks (气象局) and one with a text the tiny corpus has.
BORROWED = [
    ("拖欠劳务费", "建筑队拖欠我们劳务费两个月，包工头联系不上", "人社", "劳动保障"),
    ("辞退不给补偿", "公司无故辞退员工，不给经济补偿金", "人社", "劳动保障"),
    ("夜市噪音", "夜市摊贩音响太吵，凌晨一点还在放歌", "执法", "环境"),
    ("车库漏水", "地下车库长期漏水，物业说要找开发商", "住建", "城建"),
    ("防雷检测", "防雷检测收费标准不清楚，想问问气象部门", "气象局", "环境"),
    ("欠薪三个月", TINY_TICKETS[1][1], "人社", "劳动保障"),
]


def write_borrowed(path: Path, rows: list[tuple[str, str, str, str]] = BORROWED) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "title", "text", "department", "category"])
        for i, row in enumerate(rows, 1):
            w.writerow([f"B{i:03d}", *row])
    return path


def test_the_threshold_and_metrics_read_the_own_rows_only(tiny_config):
    # Rows 0-29 are the own, hard tickets (their features barely tell a from b); rows 30-89 are
    # borrowed, easy ones. Scored together, the easy rows carry the threshold; fit-only, they do
    # not, and the threshold is the one the own rows' held-out suggestions reach the target with.
    rng = np.random.default_rng(3)
    own_y = np.array(["a", "b"] * 15)
    borrowed_y = np.array(["a", "b"] * 30)
    own_X = rng.random((30, 6))
    own_X[own_y == "a", 0] += 0.3
    borrowed_X = rng.random((60, 6))
    borrowed_X[borrowed_y == "a", 0] += 3
    borrowed_X[borrowed_y == "b", 1] += 3
    X = sp.csr_matrix(np.vstack([own_X, borrowed_X]))
    y = np.concatenate([own_y, borrowed_y])
    config = dataclasses.replace(
        tiny_config, prior_alpha=0.0, calibrate_confidence=False, target_precision=0.8
    )
    fit_only = np.arange(30, 90)
    [mixed] = cross_validate_heads([("department", X, y)], config, n_jobs=1)
    [own] = cross_validate_heads([("department", X, y)], config, n_jobs=1, unscored=fit_only)
    # The same folds and fits: fit-only rows are held out like the others, and get real
    # out-of-fold probabilities (a head stacked on this one trains on them).
    np.testing.assert_array_equal(own.proba, mixed.proba)
    assert np.all(own.proba[fit_only].sum(axis=1) > 0.99)
    assert own.report["n"] == 30 and mixed.report["n"] == 90
    assert own.report["fit_only_rows"] == 60 and "fit_only_rows" not in mixed.report
    confidence = own.proba.max(axis=1)
    correct = own.proba.argmax(axis=1) == (y == "b")
    assert own.threshold == choose_threshold(confidence[:30], correct[:30], 0.8)
    assert mixed.threshold == choose_threshold(confidence, correct, 0.8)
    # The case the rows were made for: the mix reaches 0.8, the own tickets do not.
    assert mixed.threshold < 1.0 and own.threshold == 1.0
    assert own.report["accuracy"] == pytest.approx(correct[:30].mean())


def test_the_folds_are_as_many_as_the_own_rows_of_the_rarest_label_allow(tiny_config):
    # The fold count was read from every row cross-validated, fit-only ones too: 3 own rows of
    # "a" beside 20 borrowed ones were cut into 5 folds, and the summary's reason, when it gave
    # one, counted the borrowed rows as the label's. The rows scored decide, as they are counted.
    rng = np.random.default_rng(5)
    y = np.array(["a"] * 3 + ["b"] * 12 + ["a"] * 20 + ["b"] * 20)
    X = rng.random((len(y), 6))
    X[y == "a", 0] += 1
    config = dataclasses.replace(tiny_config, cv_folds=5)
    fit_only = np.arange(15, len(y))
    [own] = cross_validate_heads(
        [("department", sp.csr_matrix(X), y)], config, n_jobs=1, unscored=fit_only
    )
    assert own.report["folds"] == 3
    assert own.report["folds_reason"] == ("its rarest label, 'a', has 3 rows, fit-only rows aside")
    assert own.report["n"] == 15 and own.report["fit_only_rows"] == 40
    [mixed] = cross_validate_heads([("department", sp.csr_matrix(X), y)], config, n_jobs=1)
    assert mixed.report["folds"] == 5 and "folds_reason" not in mixed.report


def test_usable_fit_only_keeps_the_labels_the_own_rows_teach(tmp_path):
    own, _ = validate(
        pd.DataFrame(TINY_TICKETS, columns=["title", "text", "department", "category"]).assign(
            id=[f"T{i}" for i in range(len(TINY_TICKETS))]
        ),
        3,
    )
    raw = pd.DataFrame(BORROWED, columns=["title", "text", "department", "category"])
    raw["id"] = [f"B{i}" for i in range(len(raw))]
    rows, info = usable_fit_only(raw, own)
    assert info["rows_in"] == 6 and info["same_text_rows"] == 1
    assert info["left_out_labels"] == {"department": {"气象局": 1}}
    # The 气象局 row keeps its category, which the own rows teach; the repeated text is gone.
    assert info["rows"] == len(rows) == 5
    assert set(rows["department"]) == {"人社", "执法", "住建", ""}
    assert TINY_TICKETS[1][1] not in set(rows["text"])


def test_usable_fit_only_names_the_option_when_nothing_is_usable():
    own, _ = validate(
        pd.DataFrame(TINY_TICKETS, columns=["title", "text", "department", "category"]).assign(
            id="x"
        ),
        3,
    )
    raw = pd.DataFrame(
        [("标题", " ", "人社", "劳动保障")], columns=["title", "text", "department", "category"]
    )
    raw["id"] = "B1"
    with pytest.raises(TrainingDataError, match=r"^--fit-only: no row has any text"):
        usable_fit_only(raw, own)


def test_train_records_the_fit_only_rows_and_scores_the_own_rows_only(tmp_path, tiny_csv):
    borrowed = write_borrowed(tmp_path / "borrowed.csv")
    common = ["--min-examples", "3", "--seed", "1"]
    plain = CliRunner().invoke(
        app, ["train", str(tiny_csv), "--out", str(tmp_path / "m0"), *common]
    )
    assert plain.exit_code == 0, plain.output
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(tiny_csv),
            "--out",
            str(tmp_path / "m1"),
            "--fit-only",
            str(borrowed),
            *common,
        ],
    )
    assert result.exit_code == 0, result.output
    before = json.loads((tmp_path / "m0" / "metadata.json").read_text(encoding="utf-8"))
    meta = json.loads((tmp_path / "m1" / "metadata.json").read_text(encoding="utf-8"))
    fit_only = meta["training_data"]["fit_only"]
    assert fit_only["files"] == [{"name": "borrowed.csv", "sha256": sha256_file(borrowed)}]
    assert fit_only["rows"] == 5 and fit_only["rows_in"] == 6
    assert fit_only["left_out_labels"] == {"department": {"气象局": 1}}
    # The department head learnt from the 4 rows of its labels, the category head from all 5.
    assert meta["heads"]["department"]["fit_only_rows"] == 4
    assert meta["heads"]["category"]["fit_only_rows"] == 5
    for head in ("department", "category"):
        # The label counts and the cross-validated figures are the own file's tickets'.
        assert meta["heads"][head]["counts"] == before["heads"][head]["counts"]
        assert meta["cv_metrics"][head]["n"] == before["cv_metrics"][head]["n"] == 18
    assert meta["training_data"]["sha256"] != before["training_data"]["sha256"]
    assert "learnt from 5 fit-only rows (department 4, category 5); not scored" in result.output
    # Not shown as the centre's own similar tickets.
    from model.artifact import load_router

    router, _ = load_router(tmp_path / "m1")
    assert router.index is not None
    assert list(router.index.ids) == [f"T{i:03d}" for i in range(1, len(TINY_TICKETS) + 1)]


def test_train_refuses_a_fit_only_file_that_is_not_there(tmp_path, tiny_csv):
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(tiny_csv),
            "--out",
            str(tmp_path / "m"),
            "--fit-only",
            str(tmp_path / "no.csv"),
        ],
    )
    assert result.exit_code == 2
    assert "no.csv" in result.output
    assert not (tmp_path / "m").exists()


def _retrain_root(tmp_path: Path, tiny_csv: Path, *train_args: str) -> tuple[Path, dict[str, str]]:
    """A registry whose current model ``paidan train`` wrote with ``train_args``."""
    root = tmp_path / "models"
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    r = CliRunner().invoke(
        app, ["train", str(tiny_csv), "--min-examples", "3", *train_args], env=env
    )
    assert r.exit_code == 0, r.output
    return root, env


def test_retrain_names_the_current_models_fit_only_files_it_was_not_given(tmp_path, tiny_csv):
    # retrain ignored the current model's --fit-only files without a word: the challenger lost
    # what they taught, and the comparison alone could hint at why.
    borrowed = write_borrowed(tmp_path / "borrowed.csv")
    root, env = _retrain_root(tmp_path, tiny_csv, "--fit-only", str(borrowed))
    r = CliRunner().invoke(app, ["retrain", "--history", str(tiny_csv)], env=env)
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert "was trained with 5 fit-only rows (--fit-only)" in said, said
    assert "borrowed.csv" in said and "pass the same --fit-only files" in said, said
    from model import registry

    (challenger,) = [v for v in registry.versions(root) if v != registry.current_version(root)]
    meta = json.loads((root / challenger / "metadata.json").read_text(encoding="utf-8"))
    assert "fit_only" not in meta["training_data"]  # as the warning says: not learnt from


def test_retrain_learns_from_fit_only_files_as_train_does(tmp_path, tiny_csv):
    borrowed = write_borrowed(tmp_path / "borrowed.csv")
    root, env = _retrain_root(tmp_path, tiny_csv, "--fit-only", str(borrowed))
    r = CliRunner().invoke(
        app, ["retrain", "--history", str(tiny_csv), "--fit-only", str(borrowed)], env=env
    )
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert "pass the same --fit-only files" not in said, said
    assert "learnt from 5 fit-only rows (department 4, category 5); not scored" in said, said
    from model import registry

    challenger = [v for v in registry.versions(root) if v != registry.current_version(root)]
    assert len(challenger) == 1
    meta = json.loads((root / challenger[0] / "metadata.json").read_text(encoding="utf-8"))
    assert meta["training_data"]["fit_only"]["files"] == [
        {"name": "borrowed.csv", "sha256": sha256_file(borrowed)}
    ]
    assert meta["heads"]["department"]["fit_only_rows"] == 4
    # Without them, the data differ: another version, not the one just written.
    r = CliRunner().invoke(app, ["retrain", "--history", str(tiny_csv)], env=env)
    assert r.exit_code == 0, r.output
    assert len(registry.versions(root)) == 3


def _borrowed_frame(per_label: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tiny corpus validated, and ``per_label`` fit-only rows of each of its departments (and
    categories), each text distinct."""
    rows = []
    for i in range(per_label):
        for title, text, department, category in BORROWED[:4]:
            rows.append((f"{title}{i}", f"{text}，这是第{i + 1}次反映了", department, category))
    raw = pd.DataFrame(rows, columns=["title", "text", "department", "category"])
    raw["id"] = [f"B{i:03d}" for i in range(len(raw))]
    own, _ = validate(
        pd.DataFrame(TINY_TICKETS, columns=["title", "text", "department", "category"]).assign(
            id=[f"T{i:03d}" for i in range(len(TINY_TICKETS))]
        ),
        3,
    )
    usable, _ = usable_fit_only(raw, own)
    return own, usable


def test_cv_sample_caps_the_own_rows_and_draws_fit_only_rows_at_their_share():
    config = dataclasses.replace(TrainingConfig(), cv_folds=2)
    y = np.array(["a"] * 60 + ["b"] * 12 + ["a"] * 300 + ["b"] * 30)
    fit_only = np.arange(len(y)) >= 72
    sample = cv_sample(y, 36, config, unscored=fit_only)
    assert sample is not None
    own = sample[~fit_only[sample]]
    # The own rows are what is capped, each label at its share (and at least 2 * cv_folds), and
    # drawn as without the fit-only rows; fit-only rows join at the same share (36 / 72).
    np.testing.assert_array_equal(own, cv_sample(y[:72], 36, config))
    assert {k: int((y[own] == k).sum()) for k in "ab"} == {"a": 30, "b": 6}
    borrowed = sample[fit_only[sample]]
    assert {k: int((y[borrowed] == k).sum()) for k in "ab"} == {"a": 150, "b": 15}
    # No sample while the own rows are within the cap, however many rows are fit-only.
    assert cv_sample(y[:90], 72, config, unscored=fit_only[:90]) is None


def test_cv_max_rows_scores_as_many_own_rows_with_fit_only_rows(tiny_config):
    # Above the cap, the sample was drawn over own and fit-only rows together: fewer own rows were
    # scored than the cap promises, some labels' by chance only one or two.
    own, borrowed = _borrowed_frame(6)
    config = dataclasses.replace(tiny_config, cv_folds=2, cv_max_rows=12)
    _, plain = fit_router(own, config, None, None, n_jobs=1)
    _, cv = fit_router(own, config, None, None, n_jobs=1, fit_only=borrowed)
    for head in ("department", "category"):
        report = cv[head].report
        assert report["rows"] == 18 and report["fit_only_rows"] == len(
            borrowed[borrowed[head] != ""]
        )
        # The own rows scored are those scored without the fit-only rows (department: 4 of each
        # label's 6, the cap's 12; category: each label's share, at least 4).
        assert report["n"] == plain[head].report["n"] == {"department": 12, "category": 13}[head]
        support = {k: v["support"] for k, v in report["per_class"].items()}
        assert support == {k: v["support"] for k, v in plain[head].report["per_class"].items()}
    # Every fit-only row, in the sample or not, has the probabilities the stacked department head
    # reads: out of fold, or the mean of the folds' classifiers, none of which learnt from it.
    category_rows = np.flatnonzero(np.concatenate([own["category"], borrowed["category"]]) != "")
    fit_only_rows = np.flatnonzero(category_rows >= len(own))
    assert np.allclose(cv["category"].proba[fit_only_rows].sum(axis=1), 1.0)


def test_the_final_fit_calibrates_on_as_many_folds_as_cross_validation(tiny_config, monkeypatch):
    # The calibration's folds are bounded by each label's rows. Cross-validation's fits counted
    # every row they learnt from; the final fit counted the own rows only, so a label with few own
    # rows and many fit-only ones was calibrated on fewer folds than cross-validation measured
    # (环境: 4 own and 6 fit-only rows, 4 folds instead of 5).
    import training.train as train_module

    folds: list[tuple[str, int]] = []

    def recorded(config, class_counts, head=""):
        clf = build_classifier(config, class_counts, head)
        folds.append((head, clf.cv))
        return clf

    monkeypatch.setattr(train_module, "build_classifier", recorded)
    own, borrowed = _borrowed_frame(6)
    config = dataclasses.replace(tiny_config, calibration_cv=5, min_examples=3)
    router, _ = fit_router(own, config, None, None, n_jobs=1, fit_only=borrowed)
    assert {cv for head, cv in folds if head == "category"} == {5}  # every fold's fit
    head = router.heads["category"]
    assert head.counts == {"劳动保障": 6, "城建": 8, "环境": 4}  # still the own rows'
    assert getattr(head.classifier, "cv", None) == 5
