"""How a head ranks and shows its labels: the prior shift and the suggestion's recalibration (model.router)."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from model.router import IDENTITY_MAP, recalibrate_suggestion, shift_prior

COUNTS = [90, 10]  # a common label and a rare one


def test_alpha_zero_leaves_the_probabilities_alone():
    proba = np.array([[0.55, 0.45], [0.2, 0.8]])
    assert shift_prior(proba, COUNTS, 0.0) is proba


def test_a_rare_label_close_behind_a_common_one_wins_under_a_shift():
    proba = np.array([[0.55, 0.45]])
    assert shift_prior(proba, COUNTS, 0.0).argmax() == 0
    shifted = shift_prior(proba, COUNTS, 0.5)
    assert shifted.argmax() == 1
    # share ** -0.5: 0.9 -> 1.054, 0.1 -> 3.162
    weighted = np.array([0.55 * 0.9**-0.5, 0.45 * 0.1**-0.5])
    np.testing.assert_allclose(shifted, [weighted / weighted.sum()])


def test_full_shift_divides_the_shares_out():
    # alpha 1 with probabilities equal to the shares: every label equally likely.
    proba = np.array([[0.9, 0.1]])
    np.testing.assert_allclose(shift_prior(proba, COUNTS, 1.0), [[0.5, 0.5]])


def test_a_clear_winner_stays_the_winner():
    proba = np.array([[0.95, 0.05]])
    assert shift_prior(proba, COUNTS, 1.0).argmax() == 0


@given(
    arrays(np.float64, (5, 4), elements=st.floats(0, 1)),
    st.lists(st.integers(1, 1000), min_size=4, max_size=4),
    st.sampled_from([0.25, 0.5, 0.75, 1.0]),
)
def test_rows_stay_probabilities_and_the_rare_labels_only_gain(raw, counts, alpha):
    proba = raw / np.where(raw.sum(axis=1, keepdims=True) > 0, raw.sum(axis=1, keepdims=True), 1)
    shifted = shift_prior(proba, counts, alpha)
    assert np.all(np.isfinite(shifted)) and np.all(shifted >= 0)
    live = proba.sum(axis=1) > 0
    np.testing.assert_allclose(shifted[live].sum(axis=1), 1.0)
    np.testing.assert_array_equal(shifted[~live], proba[~live])  # an all-zero row stays zero
    # The rarest label's share of each row never falls, the most common one's never rises.
    rare, common = int(np.argmin(counts)), int(np.argmax(counts))
    assert np.all(shifted[live, rare] >= proba[live, rare] - 1e-12)
    assert np.all(shifted[live, common] <= proba[live, common] + 1e-12)


def test_a_head_shifts_as_shift_prior_and_pickles_without_its_cached_weights(tiny_model_dir):
    from model.artifact import load_router

    router, _ = load_router(tiny_model_dir)
    head = router.heads["category"]
    proba = np.random.default_rng(0).dirichlet(np.ones(len(head.labels)), size=6)
    for alpha in (0.0, 0.5, 1.0):
        shifting = dataclasses.replace(head, prior_alpha=alpha)
        expected = shift_prior(proba, shifting.label_counts, alpha)
        np.testing.assert_array_equal(shifting.shift(proba), expected)
        assert "shift_weights" in shifting.__dict__  # computed once, then read
        assert "shift_weights" not in shifting.__getstate__()


# -- the suggested label's recalibrated probability (model.router.recalibrate_suggestion) ---------


def test_the_identity_map_leaves_the_probabilities_alone():
    proba = np.array([[0.55, 0.45], [0.2, 0.8]])
    assert recalibrate_suggestion(proba, np.array([0, 1]), IDENTITY_MAP) is proba


def test_the_suggestion_gets_the_mapped_probability_and_the_others_share_the_rest():
    proba = np.array([[0.5, 0.3, 0.2]])
    # slope 1, intercept log 3: odds 1:1 become 3:1, so 0.5 becomes 0.75.
    shown = recalibrate_suggestion(proba, np.array([0]), (1.0, float(np.log(3))))
    np.testing.assert_allclose(shown, [[0.75, 0.15, 0.10]])
    # The suggestion need not be the likeliest label (the prior shift may pick another).
    shown = recalibrate_suggestion(proba, np.array([2]), (1.0, float(np.log(3))))
    np.testing.assert_allclose(shown[0, 2], 0.2 * 3 / (0.2 * 3 + 0.8))
    np.testing.assert_allclose(shown[0, :2] / shown[0, :2].sum(), [0.625, 0.375])


@given(
    arrays(np.float64, (6, 4), elements=st.floats(0, 1)),
    st.lists(st.integers(0, 3), min_size=6, max_size=6),
    st.floats(0.2, 5.0),
    st.floats(-3.0, 3.0),
)
def test_recalibrated_rows_stay_probabilities_and_keep_their_order(raw, picks, slope, intercept):
    proba = raw / np.where(raw.sum(axis=1, keepdims=True) > 0, raw.sum(axis=1, keepdims=True), 1)
    suggested = np.array(picks)
    shown = recalibrate_suggestion(proba, suggested, (slope, intercept))
    for r in range(len(proba)):  # one row at a time (the single-ticket path) gives the same
        one = recalibrate_suggestion(proba[r : r + 1], suggested[r : r + 1], (slope, intercept))
        np.testing.assert_allclose(one[0], shown[r], rtol=1e-12, atol=1e-15)
    live = proba.sum(axis=1) > 0
    assert np.all(np.isfinite(shown)) and np.all(shown >= 0)
    np.testing.assert_allclose(shown[live].sum(axis=1), 1.0)
    np.testing.assert_array_equal(shown[~live], proba[~live])  # an all-zero row stays zero
    rows = np.flatnonzero(live)
    for r in rows:  # the other labels keep their order
        others = np.delete(np.arange(4), suggested[r])
        order = np.argsort(-proba[r, others], kind="stable")
        assert np.all(np.diff(shown[r, others][order]) <= 1e-12)
    # Across rows, a more probable suggestion stays at least as probable: thresholds pass the same rows.
    before, after = proba[rows, suggested[rows]], shown[rows, suggested[rows]]
    for i in range(len(rows)):
        for j in range(len(rows)):
            if before[i] > before[j]:
                assert after[i] >= after[j]


@pytest.mark.parametrize("rows", [1, 2])  # the single-ticket path and the batch path
def test_a_suggestion_within_rounding_of_one_still_leaves_a_row_that_sums_to_one(rows):
    # 1 - p is 2.1e-15 here, the other labels' sum 2.13e-15: scaling them by (1 - confidence) /
    # (1 - p) made the row sum to 1.00007 (found by Hypothesis). With subnormal others, 1 / rest
    # overflowed to inf.
    for raw in (
        [0.3125, 2.220446049250313e-16, 2.220446049250313e-16, 2.220446049250313e-16],
        [1.0, 5e-324, 5e-324, 5e-324],
    ):
        proba = np.tile(np.array(raw) / np.sum(raw), (rows, 1))
        shown = recalibrate_suggestion(proba, np.zeros(rows, dtype=int), (0.25, 0.0))
        assert np.all(np.isfinite(shown))
        np.testing.assert_allclose(shown.sum(axis=1), 1.0, rtol=1e-12)
