"""The heads' prior shift (probability × training share ** -alpha) and temperature (model.router)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from model.router import Head, scale_temperature, shift_prior

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


# -- the temperature of the shown probabilities (model.router.scale_temperature, Head.shift) ------


def test_temperature_one_leaves_the_probabilities_alone():
    proba = np.array([[0.55, 0.45], [0.2, 0.8]])
    assert scale_temperature(proba, 1.0) is proba


def test_a_temperature_below_one_sharpens_and_above_one_softens():
    proba = np.array([[0.6, 0.3, 0.1]])
    # T = 0.5 squares the probabilities: 0.36, 0.09, 0.01, over 0.46.
    np.testing.assert_allclose(
        scale_temperature(proba, 0.5), [[0.36, 0.09, 0.01]] / np.float64(0.46)
    )
    soft = scale_temperature(proba, 2.0)
    assert soft[0, 0] < 0.6 and soft[0, 2] > 0.1


def test_a_temperature_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        scale_temperature(np.array([[0.5, 0.5]]), 0.0)


@given(
    arrays(np.float64, (5, 4), elements=st.floats(0, 1)),
    st.lists(st.integers(1, 1000), min_size=4, max_size=4),
    st.sampled_from([0.0, 0.25, 0.5, 1.0]),
    st.floats(0.5, 2.0),
)
def test_a_head_ranks_its_shown_probabilities_as_alpha_ranked_the_classifiers(
    raw, counts, alpha, temperature
):
    """Temperature never reorders labels: shifting the shown scores by alpha / T ranks them as before."""
    proba = raw / np.where(raw.sum(axis=1, keepdims=True) > 0, raw.sum(axis=1, keepdims=True), 1)
    labels = [f"l{i}" for i in range(4)]
    head = Head(
        name="h",
        classifier=None,  # type: ignore[arg-type]  # labels are given below, never read from it
        threshold=0.5,
        counts=dict(zip(labels, counts, strict=True)),
        prior_alpha=alpha,
        temperature=temperature,
    )
    head.__dict__["labels"] = labels  # the cached property, without a fitted classifier
    shown = head.temper(proba)
    live = proba.sum(axis=1) > 0
    np.testing.assert_allclose(shown[live].sum(axis=1), 1.0)
    np.testing.assert_array_equal(shown[~live], proba[~live])
    np.testing.assert_array_equal(shown[proba == 0], 0.0)  # a label at 0 stays at 0
    before = shift_prior(proba, counts, alpha)
    after = head.shift(shown)
    # Same order in every row, up to floating-point near-ties.
    for b, a in zip(before[live], after[live], strict=True):
        order = np.argsort(-b, kind="stable")
        assert np.all(np.diff(a[order]) <= 1e-9)
