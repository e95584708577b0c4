import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from training.metrics import (
    auto_stats,
    choose_threshold,
    expected_calibration_error,
    format_auto_precision,
    no_auto_note,
    top_k_accuracy,
    wilson_lower_bound,
)


def test_threshold_keeps_the_most_rows_whose_precision_bound_reaches_the_target():
    # 100 confident correct rows, then a mixed tail.
    conf = np.r_[np.linspace(0.99, 0.80, 100), np.linspace(0.79, 0.30, 100)]
    correct = np.r_[np.ones(100, bool), np.arange(100) % 2 == 0]
    t = choose_threshold(conf, correct, 0.95)
    stats = auto_stats(conf, correct, t)
    assert t <= 0.80  # all 100 clean rows are in
    assert stats["coverage"] >= 0.5 and stats["precision"] >= 0.95
    # With the plain observed precision the cut goes deeper into the mixed tail.
    assert choose_threshold(conf, correct, 0.95, z=0) <= t


def test_no_cut_reaches_the_target_means_everyone_to_review():
    conf = np.array([0.9, 0.8, 0.7])
    correct = np.array([False, True, False])
    assert choose_threshold(conf, correct, 0.95) == 1.0
    assert choose_threshold(np.array([]), np.array([], bool), 0.95) == 1.0


def test_ties_are_all_in_or_all_out():
    conf = np.array([0.9] * 30 + [0.5] * 10)
    correct = np.array([True] * 30 + [True] * 5 + [False] * 5)
    t = choose_threshold(conf, correct, 0.9)
    assert t == 0.9  # including the 0.5 block would bring in its errors


@given(st.integers(0, 200), st.integers(1, 200))
def test_wilson_bound_is_below_the_observed_share(k, n):
    k = min(k, n)
    lb = wilson_lower_bound(np.array([k]), np.array([n]))[0]
    assert 0 <= lb <= k / n + 1e-12


def test_wilson_bound_of_no_successes_is_zero_not_a_rounding_error_below():
    # Hypothesis found 0 of 87 giving -1.7e-18.
    assert wilson_lower_bound(np.array([0]), np.array([87]))[0] == 0.0


def test_top_k_and_ece():
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    assert top_k_accuracy(np.array(["a", "a"]), proba, ["a", "b", "c"], 1) == 0.5
    assert (
        top_k_accuracy(np.array(["a", "z"]), proba, ["a", "b", "c"], 3) == 0.5
    )  # unseen label: a miss
    assert expected_calibration_error(np.array([1.0, 1.0]), np.array([True, True])) == 0.0
    assert (
        abs(expected_calibration_error(np.array([0.9, 0.9]), np.array([False, False])) - 0.9) < 1e-9
    )


def test_the_precision_of_an_empty_auto_set_is_undefined():
    # Nothing reaches the threshold: every ticket goes to a person. Its precision was 1.0, which
    # the training table printed and benchmark averages counted as a perfect fold.
    stats = auto_stats(np.array([0.5, 0.6]), np.array([False, True]), 1.0)
    assert stats == {"threshold": 1.0, "precision": None, "coverage": 0.0}
    assert format_auto_precision(stats["precision"]) == "–"
    assert (
        format_auto_precision(
            auto_stats(np.array([0.5, 0.6]), np.array([False, True]), 0.55)["precision"]
        )
        == "1.000"
    )
    empty = auto_stats(np.array([]), np.array([], bool), 1.0)
    assert empty["precision"] is None and empty["coverage"] == 0.0


def test_tickets_held_for_lack_of_a_known_word_are_not_said_to_miss_the_threshold():
    # Both tickets reach the threshold, but hold no word the model knows (Ranking.auto): the
    # router sends them to a person. evaluate and train said "no ticket reaches the auto threshold
    # 0.919", blaming the threshold for what the text (a mis-mapped column of numbers, say) did.
    conf, correct = np.array([0.92, 0.95, 0.5]), np.array([True, True, False])
    stats = auto_stats(conf, correct, 0.919, auto=np.array([False, False, False]))
    assert stats["precision"] is None and stats["coverage"] == 0.0
    assert stats["without_known_terms"] == 2
    note = no_auto_note(stats)
    assert "no ticket reaches" not in note
    assert "2 tickets reach the auto threshold 0.919" in note
    assert "no word the model knows" in note
    # Without such rows the report and the note are as before.
    plain = auto_stats(conf[2:], correct[2:], 0.919, auto=np.array([False]))
    assert plain == {"threshold": 0.919, "precision": None, "coverage": 0.0}
    assert no_auto_note(plain).startswith("no ticket reaches the auto threshold 0.919")


def _one_hot(y, labels, answer=None):
    """Probabilities that answer ``answer`` (default the true label) for each row."""
    answer = y if answer is None else answer
    proba = np.full((len(y), len(labels)), 0.1)
    proba[np.arange(len(y)), [labels.index(v) for v in answer]] = 0.8
    return proba


def test_a_true_label_the_model_does_not_know_is_no_class_of_macro_f1():
    # 200 rows of two departments, all answered right, and 4 rows whose department is misspelt
    # four ways (answered 住建): each spelling was a class of F1 0, and macro-F1 read 0.33.
    from sklearn.metrics import confusion_matrix, f1_score

    from training.metrics import head_report, unknown_label_rows

    labels = ["人社", "住建"]
    typos = ["住建局2", "住建局3", "人社 局", "住建局2"]
    y = np.array(["人社"] * 100 + ["住建"] * 100 + typos)
    answer = ["人社"] * 100 + ["住建"] * 104
    report = head_report(y, _one_hot(y, labels, answer), labels, 0.5)
    assert report["n"] == 204
    # Scored wrong: in accuracy, top-3 and, answered 住建, in 住建's precision.
    assert report["accuracy"] == report["top3_accuracy"] == 200 / 204
    assert report["per_class"]["住建"]["precision"] == 100 / 104
    known = y[:200], np.array(answer)[:200]
    want = f1_score(y, np.array(answer), labels=labels, average="macro")
    assert report["macro_f1"] == want and want > 0.98
    assert report["weighted_f1"] == f1_score(y, np.array(answer), labels=labels, average="weighted")
    assert f1_score(*known, average="macro") == 1.0  # the typos' rows do cost something
    assert sorted(report["per_class"]) == labels
    assert report["confusion"]["labels"] == labels
    assert report["confusion"]["matrix"] == confusion_matrix(y, answer, labels=labels).tolist()
    assert np.asarray(report["confusion"]["matrix"]).sum() == 200
    assert unknown_label_rows(y, labels) == {"住建局2": 2, "人社 局": 1, "住建局3": 1}
    assert unknown_label_rows(np.array(["", "人社"]), labels) == {}
    # A benchmark comparing with a model that knows them passes the truth's labels: as before.
    truth = head_report(y, _one_hot(y, labels, answer), labels, 0.5, scored=set(y))
    assert truth["macro_f1"] == f1_score(
        y, np.array(answer), labels=sorted(set(y)), average="macro"
    )
    assert truth["macro_f1"] < 0.5
    assert sorted(truth["per_class"]) == sorted(set(y))
    # No true label the model knows: every row wrong, and no class to average F1 over. It read
    # 0.0, a measurement of a model that is always wrong, where there is nothing to measure.
    none = head_report(
        np.array(typos), _one_hot(np.array(typos), labels, ["住建"] * 4), labels, 0.5
    )
    assert none["accuracy"] == 0.0
    assert none["macro_f1"] is None and none["weighted_f1"] is None
    assert none["f1_undefined"] == "no row's true label is one the model knows"
    assert "f1_undefined" not in report


def test_each_label_says_how_often_it_is_among_the_top_three():
    # Where a label is lost: a dispatcher picks from the three offered, so a label that is rarely
    # first but always offered costs a click, one never offered costs a wrong dispatch.
    from training.metrics import head_report

    labels = ["人社", "住建", "公安", "医保", "教育"]
    y = np.array(["人社"] * 4 + ["住建"] * 2)
    proba = np.array(
        [
            [0.6, 0.1, 0.1, 0.1, 0.1],  # 人社 first
            [0.15, 0.5, 0.2, 0.1, 0.05],  # 人社 third
            [0.05, 0.5, 0.2, 0.15, 0.1],  # 人社 fifth: not offered
            [0.05, 0.5, 0.2, 0.1, 0.15],  # 人社 fifth: not offered
            [0.1, 0.6, 0.1, 0.1, 0.1],  # 住建 first
            [0.3, 0.05, 0.3, 0.3, 0.05],  # 住建 fourth or fifth: not offered
        ]
    )
    report = head_report(y, proba, labels, 0.5)
    assert report["per_class"]["人社"]["top3"] == 0.5
    assert report["per_class"]["住建"]["top3"] == 0.5
    assert (
        report["per_class"]["公安"]["top3"] == 0.0 and report["per_class"]["公安"]["support"] == 0
    )
    assert report["top3_accuracy"] == 3 / 6
