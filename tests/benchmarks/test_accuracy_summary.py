"""``benchmarks/accuracy.py``'s summary: per-label figures are averaged where the label was tested."""

from __future__ import annotations

import pytest

from tests.benchmarks.scripts import load_benchmark


def run(macro_f1: float, per_class: dict[str, tuple[float, float, float, int]]) -> dict:
    scores = {"macro_f1": macro_f1, "accuracy": 0.5, "top3_accuracy": 0.8, "fit_seconds": 1.0}
    return {
        "baseline": dict(scores),
        "paidan": scores
        | {
            "ece": 0.1,
            "auto": {"precision": 0.95, "coverage": 0.2},
            "per_class": {
                label: {"f1": f, "recall": r, "top3": t, "support": n}
                for label, (f, r, t, n) in per_class.items()
            },
        },
    }


def test_per_label_figures_average_only_the_runs_that_tested_the_label():
    accuracy = load_benchmark("accuracy")
    runs = [
        run(0.6, {"住建": (0.8, 0.7, 1.0, 10), "发改财政税务": (0.0, 0.0, 0.0, 2)}),
        run(0.5, {"住建": (0.6, 0.5, 0.9, 12)}),
    ]
    summary = accuracy.summarise(runs)
    per_class = summary["paidan_per_class"]
    assert per_class["住建"] == pytest.approx(
        {"f1": 0.7, "recall": 0.6, "top3": 0.95, "support": 11.0}
    )
    # Tested in one run only: its figures are that run's, not halved by the other.
    assert per_class["发改财政税务"] == pytest.approx(
        {"f1": 0.0, "recall": 0.0, "top3": 0.0, "support": 2.0}
    )
    assert summary["paidan"]["macro_f1"]["mean"] == pytest.approx(0.55)

    table = accuracy.markdown(
        {
            "folds": 5,
            "seeds": [42],
            "date": "2026-12-01",
            "machine": "test",
            "tasks": {"department": {"rows": 24, "summary": summary}},
        }
    )
    rows = [line for line in table.splitlines() if line.startswith(("| 住建", "| 发改"))]
    assert rows == [
        "| 发改财政税务 | 0.00 | 0.00 | 0.00 | 2.0 |",
        "| 住建 | 0.70 | 0.60 | 0.95 | 11.0 |",
    ]


def test_auto_precision_is_averaged_over_the_runs_that_dispatched_something():
    # A run whose threshold no test row reached (coverage 0) has no auto precision: null now, 1.0
    # in results written before. Counted as 1.0, eight such folds of fifteen made
    # accuracy_cv_sample.json's mean 0.982 where the folds that dispatched anything gave 0.960.
    accuracy = load_benchmark("accuracy")
    runs = [run(0.5, {"住建": (0.5, 0.5, 1.0, 100)}) for _ in range(4)]
    autos = [(0.9, 0.5), (0.96, 0.25), (1.0, 0.0), (None, 0.0)]
    for r, (precision, coverage) in zip(runs, autos, strict=True):
        r["paidan"]["auto"] = {"threshold": 0.9, "precision": precision, "coverage": coverage}
    summary = accuracy.summarise(runs)["paidan"]
    assert summary["auto_precision"] == pytest.approx({"mean": 0.93, "std": 0.03})
    # Pooled over the auto rows: 45 right of 50 and 24 of 25.
    assert summary["auto_precision_pooled"] == pytest.approx(69 / 75)
    assert summary["auto_empty_runs"] == 2 and summary["runs"] == 4
    assert summary["auto_coverage"]["mean"] == pytest.approx(0.1875)
    table = accuracy.markdown(
        {
            "folds": 2,
            "seeds": [42, 0],
            "date": "2026-12-04",
            "machine": "test",
            "tasks": {"department": {"rows": 400, "summary": {"baseline": {}, "paidan": summary}}},
        }
    )
    assert (
        "| 0.930 ± 0.030 (pooled 0.920; 2 of 4 runs dispatched nothing) | 0.188 ± 0.207 |" in table
    )

    for r in runs:
        r["paidan"]["auto"] = {"threshold": 1.0, "precision": None, "coverage": 0.0}
    nothing = accuracy.summarise(runs)["paidan"]
    assert nothing["auto_precision"] == {"mean": None, "std": None}
    assert nothing["auto_precision_pooled"] is None and nothing["auto_empty_runs"] == 4


def test_a_category_shares_run_reports_both_arms_of_the_same_fits():
    accuracy = load_benchmark("accuracy")

    def arms(seed: int, with_: float, without: float, gained: int, lost: int, w: float) -> dict:
        r = run(0.5, {"住建": (0.8, 0.7, with_, 10)}) | {"seed": seed, "fold": 0}
        r["paidan"] |= {
            "top3_accuracy": with_,
            "top3_accuracy_without_category_shares": without,
            "top3_gained": gained,
            "top3_lost": lost,
            "suggestions_changed": 0,
            "category_share_weight": w,
        }
        return r

    runs = [
        arms(42, 0.90, 0.89, 3, 1, 0.1),
        arms(42, 0.80, 0.80, 1, 1, 0.0),
        arms(0, 0.7, 0.72, 0, 2, 0.3),
    ]
    summary = accuracy.summarise(runs)["paidan"]
    assert summary["top3_accuracy_without_category_shares"]["mean"] == pytest.approx(0.8033333)
    shares = summary["category_shares"]
    assert (shares["folds_better"], shares["folds_worse"], shares["folds_same"]) == (1, 1, 1)
    assert (shares["tickets_gained"], shares["tickets_lost"]) == (4, 4)
    assert shares["weights"] == [0.1, 0.0, 0.3]
    assert shares["per_seed"]["42"] == pytest.approx({"with": 0.85, "without": 0.845})
    assert shares["per_seed"]["0"] == pytest.approx({"with": 0.7, "without": 0.72})
    # A run without the option has no second arm.
    assert "category_shares" not in accuracy.summarise([run(0.5, {})])["paidan"]
