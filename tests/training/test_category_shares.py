"""The category head's department shares in ranks 2..k (``TrainingConfig.category_shares_in_ranking``).

With the option, the department candidates after the suggestion are ordered by ``(1 - w) ×`` the
head's ranking score ``+ w × Σ_c P(c | ticket) × P(department | c)``; the suggestion, every
probability shown and every decision stay those of the model without it.
"""

import dataclasses

import numpy as np
import pytest

from model import resources
from model.artifact import load_router, read_metadata
from model.config import CATEGORY_SHARE_WEIGHTS, TrainingConfig
from model.router import Router, share_ranking
from model.tickets import read_tickets
from training.train import category_shares, train

pytestmark = pytest.mark.slow

ON = TrainingConfig(category_shares_in_ranking=True)
OFF = TrainingConfig(category_shares_in_ranking=False)


@pytest.fixture(scope="module")
def shares_model_dir(tmp_path_factory: pytest.TempPathFactory):
    """The bundled sample trained with the option on (the default)."""
    result = train([resources.sample_path()], tmp_path_factory.mktemp("shares") / "m", config=ON)
    assert result.model_dir is not None
    return result.model_dir, result


@pytest.fixture(scope="module")
def sample_off_dir(tmp_path_factory: pytest.TempPathFactory):
    """The bundled sample trained with the option off, as models before it were."""
    result = train([resources.sample_path()], tmp_path_factory.mktemp("off") / "m", config=OFF)
    assert result.model_dir is not None
    return result.model_dir


@pytest.fixture(scope="module")
def tickets() -> list[tuple[str, str]]:
    df = read_tickets([resources.sample_path()])
    return list(zip(df["title"], df["text"], strict=True))[:300]


def _with_weight(router: Router, weight: float | None) -> Router:
    """``router`` with its department head's share weight set (``None``: no shares at all)."""
    head = router.heads["department"]
    if weight is None:
        head = dataclasses.replace(head, category_shares=None, category_share_weight=0.0)
    else:
        head = dataclasses.replace(head, category_share_weight=weight)
    return dataclasses.replace(router, heads=router.heads | {"department": head})


def _dumps(router: Router, tickets: list) -> list[str]:
    """Every answer as JSON, without the model version (two models' versions differ)."""
    return [r.model_dump_json(exclude={"model_version"}) for r in router.predict(tickets, top_k=5)]


def test_the_suggestion_stays_first_and_the_others_follow_the_mix() -> None:
    rank = np.array([[0.40, 0.30, 0.20, 0.10], [0.25, 0.25, 0.3, 0.2]])
    shares = np.array([[0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    out = share_ranking(rank, shares, 0.5)
    order = np.argsort(-out, axis=1, kind="stable")
    # Row 0: column 3 (0.05 + 0.5) passes columns 1 (0.15) and 2 (0.10); column 0 stays first.
    assert order[0].tolist() == [0, 3, 1, 2]
    # Row 1: the suggestion is column 2, though the shares favour column 0 most.
    assert order[1].tolist() == [2, 0, 1, 3]
    assert share_ranking(rank, shares, 0.0) is rank
    two = np.array([[0.6, 0.4]])
    assert share_ranking(two, np.array([[0.0, 1.0]]), 0.5) is two  # nothing after the first


def test_shares_are_counted_per_category_with_add_one_smoothing() -> None:
    shares = category_shares(
        ["a", "a", "b", "c", "b"], ["x", "x", "x", "y", ""], ["a", "b", "c"], ["x", "y", "z"]
    )
    np.testing.assert_allclose(shares[0], [3 / 6, 2 / 6, 1 / 6])  # x: a twice, b once
    np.testing.assert_allclose(shares[1], [1 / 4, 1 / 4, 2 / 4])  # y: c once
    np.testing.assert_allclose(shares[2], [1 / 3] * 3)  # z: no ticket
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)


def test_off_the_model_has_no_shares_and_ranks_as_before(
    sample_off_dir, shares_model_dir, tickets
) -> None:
    off, meta = load_router(sample_off_dir)
    on, _ = load_router(shares_model_dir[0])
    assert TrainingConfig().category_shares_in_ranking is True  # the default since 2026-12-07
    assert off.heads["department"].category_shares is None
    assert "category_share_weight" not in meta["heads"]["department"]
    # The option changes nothing but the shares: the same fits, so without them the model
    # answers every ticket byte for byte as the model trained without the option.
    assert _dumps(_with_weight(on, None), tickets) == _dumps(off, tickets)
    assert _dumps(_with_weight(on, 0.0), tickets) == _dumps(off, tickets)


def test_on_the_suggestion_and_its_probability_never_move_and_later_ranks_can(
    sample_off_dir, shares_model_dir, tickets
) -> None:
    off, _ = load_router(sample_off_dir)
    on, _ = load_router(shares_model_dir[0])
    for weight in (on.heads["department"].category_share_weight, *CATEGORY_SHARE_WEIGHTS[1:]):
        mixed = _with_weight(on, weight)
        moved = 0
        for a, b in zip(
            mixed.predict(tickets, top_k=5), off.predict(tickets, top_k=5), strict=True
        ):
            assert a.department is not None and b.department is not None
            assert a.department.model_dump(exclude={"candidates"}) == b.department.model_dump(
                exclude={"candidates"}
            )
            assert a.department.candidates[0] == b.department.candidates[0]
            assert {c.label for c in a.department.candidates} <= set(on.heads["department"].labels)
            assert a.category == b.category
            moved += [c.label for c in a.department.candidates] != [
                c.label for c in b.department.candidates
            ]
        if weight >= 0.3:
            assert moved, f"w={weight} reordered no ticket's candidates"
    # Batch labelling ranks as the API does (the same rankings, with the shares).
    mixed = _with_weight(on, 0.5)
    ranking = mixed.rankings(tickets, top_k=5)["department"]
    labels = ranking.labels
    assert [[labels[j] for j in row] for row in ranking.order.tolist()] == [
        [c.label for c in r.department.candidates]  # type: ignore[union-attr]
        for r in mixed.predict(tickets, top_k=5)
    ]


def test_the_weight_is_chosen_out_of_fold_and_saved_with_the_shares(shares_model_dir) -> None:
    model_dir, result = shares_model_dir
    report = result.cv["department"].report
    tried = report["category_share_selection"]
    assert [t["weight"] for t in tried] == list(CATEGORY_SHARE_WEIGHTS)
    best = max(t["top3_accuracy"] for t in tried)
    weight = report["category_share_weight"]
    assert weight == next(t["weight"] for t in tried if t["top3_accuracy"] == best)
    # Cross-validation's top-3 is that of the ranking the model will offer.
    assert report["top3_accuracy"] == best
    live = result.router.heads["department"]
    assert live.category_share_weight == weight
    assert read_metadata(model_dir)["heads"]["department"]["category_share_weight"] == weight
    categories = result.router.heads["category"].labels
    assert live.category_shares is not None
    assert live.category_shares.shape == (len(categories), len(live.labels))
    for serving in (False, True):
        loaded, _ = load_router(model_dir, serving=serving)
        head = loaded.heads["department"]
        assert head.category_share_weight == weight
        np.testing.assert_array_equal(head.category_shares, live.category_shares)


def test_weight_0_is_the_cross_validated_ranking_without_the_option(
    shares_model_dir, sample_off_dir
) -> None:
    _, result = shares_model_dir
    plain = result.cv["department"].report["category_share_selection"][0]
    assert plain["weight"] == 0.0
    # The same out-of-fold fits as the model trained without the option, ranked as it ranks.
    off = read_metadata(sample_off_dir)["cv_metrics"]["department"]["top3_accuracy"]
    assert plain["top3_accuracy"] == pytest.approx(off, abs=1e-12)


def test_a_model_pickled_before_the_option_predicts_as_before(sample_off_dir, tickets) -> None:
    router, _ = load_router(sample_off_dir)
    before = _dumps(router, tickets)
    for serving in (False, True):
        # Loaded as a model pickled before the option: its heads' and config's state lack it.
        loaded, _ = load_router(sample_off_dir, serving=serving)
        for head in loaded.heads.values():
            del head.__dict__["category_shares"], head.__dict__["category_share_weight"]
        config = dict(loaded.config.__dict__)
        del config["category_shares_in_ranking"]
        old_config = TrainingConfig.__new__(TrainingConfig)
        object.__setattr__(old_config, "__dict__", config)
        object.__setattr__(loaded, "config", old_config)
        assert loaded.heads["department"].category_shares is None
        assert _dumps(loaded, tickets) == before


def test_paidan_train_category_shares_records_and_prints_the_weight(tmp_path) -> None:
    from typer.testing import CliRunner

    from paidan.cli import app
    from tests.conftest import write_tiny_csv

    data = write_tiny_csv(tmp_path / "tiny.csv")
    options = ["train", str(data), "--min-examples", "3"]
    runner = CliRunner()
    on = runner.invoke(app, [*options, "--out", str(tmp_path / "on"), "--category-shares"])
    assert on.exit_code == 0, on.output
    meta = read_metadata(tmp_path / "on")
    assert meta["config"]["category_shares_in_ranking"] is True
    weight = meta["heads"]["department"]["category_share_weight"]
    assert weight in CATEGORY_SHARE_WEIGHTS
    assert f"shares at weight {weight:g} (cross-validated top-3 by weight: 0 " in on.output
    off = runner.invoke(app, [*options, "--out", str(tmp_path / "off"), "--no-category-shares"])
    assert off.exit_code == 0, off.output
    assert "category_share_weight" not in read_metadata(tmp_path / "off")["heads"]["department"]
    assert "cross-validated top-3 by weight" not in off.output
