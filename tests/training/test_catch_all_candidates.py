"""A catch-all department offered third when the head is unsure (``TrainingConfig.catch_all_candidates``).

Labels such as 其他 or the local government (属地政府, the sample's 街道办事处) gather tickets of every
kind, so the head seldom ranks them high; the option puts the likeliest of them third where the
first two candidates hold less than ``catch_all_mass`` of the ranking, and changes nothing else.
"""

import dataclasses

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from model import resources
from model.config import TrainingConfig
from model.router import offer_catch_all, shift_prior
from model.tickets import read_tickets
from training.metrics import top_k_accuracy
from training.train import fit_router
from training.validate import validate

pytestmark = pytest.mark.slow

LOCAL = "街道办事处"  # the bundled sample's local government


def _order(rank: np.ndarray) -> np.ndarray:
    return np.argsort(-rank, axis=1, kind="stable")


def test_an_unsure_ranking_gets_its_likeliest_catch_all_third() -> None:
    rank = np.array([[0.2, 0.15, 0.12, 0.1, 0.05, 0.08, 0.25, 0.05]])  # first two: 0.45
    assert _order(rank)[0, :3].tolist() == [6, 0, 1]
    offered = offer_catch_all(rank, [4, 3], 0.5)
    # Column 3 (0.10) is likelier than column 4 (0.05): it takes third place, the first two stay.
    assert _order(offered)[0, :4].tolist() == [6, 0, 3, 1]
    np.testing.assert_array_equal(np.delete(offered, 3, axis=1), np.delete(rank, 3, axis=1))


@pytest.mark.parametrize(
    ("row", "why"),
    [
        ([0.5, 0.2, 0.1, 0.1, 0.1], "the first two hold 0.7"),
        ([0.3, 0.2, 0.15, 0.2, 0.15], "a catch-all (column 3) is second already"),
        ([0.3, 0.15, 0.15, 0.25, 0.15], "the second and third scores are equal"),
    ],
)
def test_a_ranking_is_left_alone(row: list[float], why: str) -> None:
    rank = np.array([row])
    assert offer_catch_all(rank, [3, 4], 0.5) is rank, why


def test_the_sample_model_offers_its_local_government_and_changes_nothing_else() -> None:
    df = read_tickets([resources.sample_path()])
    df["department"] = df["department"].str.split("；").str[0]  # a joint dispatch's lead
    train, test = train_test_split(
        np.arange(len(df)), train_size=200, stratify=df["department"], random_state=0
    )
    config = TrainingConfig(
        min_examples=3, cv_folds=3, select_inputs=False, catch_all_candidates=f"其他, {LOCAL}"
    )
    rows, _ = validate(df.iloc[train], config.min_examples)
    router, cv = fit_router(
        rows, config, resources.default_userdict(), resources.default_stopwords(), n_jobs=1
    )
    head = router.heads["department"]
    assert head.catch_alls == ("其他", LOCAL)  # 其他 is not one of the sample's labels: passed over
    assert head.catch_all_mass == 0.5
    assert router.heads["category"].catch_alls == ()
    plain = dataclasses.replace(head, catch_alls=())
    held_out = df.iloc[test]
    tickets = list(zip(held_out["title"], held_out["text"], strict=True))
    raw = router._all_proba(router.transform(tickets))["department"]
    rank, before = head.shift(raw), plain.shift(raw)
    order, order_before = _order(rank), _order(before)
    local = head.labels.index(LOCAL)
    top2 = np.take_along_axis(before, order_before[:, :2], axis=1).sum(axis=1)
    third = np.take_along_axis(before, order_before[:, 2:3], axis=1)[:, 0]
    second = np.take_along_axis(before, order_before[:, 1:2], axis=1)[:, 0]
    offered = (top2 < 0.5) & ~(order_before[:, :3] == local).any(axis=1) & (second > third)
    assert 10 <= offered.sum() < len(test), "the sample should have unsure tickets and sure ones"
    # Where it is unsure, the local government is third; the first two are the head's own.
    assert (order[offered, 2] == local).all()
    np.testing.assert_array_equal(order[:, :2], order_before[:, :2])
    np.testing.assert_array_equal(order[~offered, :3], order_before[~offered, :3])
    # The shown probabilities, and so every decision, are those of the head without the option.
    np.testing.assert_array_equal(head.scores(raw)[0], plain.scores(raw)[0])
    # The router ranks as its head does (the page, the API and batch labelling).
    ranking = router.rankings(tickets)["department"]
    np.testing.assert_array_equal(ranking.order, order[:, :3])
    # Cross-validation's top-3 counts the offered catch-all as the model will offer it.
    folds = cv["department"]
    shifted = shift_prior(folds.proba, head.label_counts, folds.prior_alpha)
    offered_cv = offer_catch_all(shifted, [local], 0.5)
    assert folds.report["top3_accuracy"] == pytest.approx(
        top_k_accuracy(folds.y, offered_cv, folds.labels)
    )


def test_by_default_no_catch_all_is_offered(tiny_model_dir) -> None:
    from model.artifact import load_router

    router, _ = load_router(tiny_model_dir)
    assert TrainingConfig().catch_all_labels() == ()
    assert router.heads["department"].catch_alls == ()
    assert router.heads["department"].catch_all_columns == []
