"""The sources of a head's suggestion: how much of its linear score each input it reads gave."""

from pathlib import Path

import numpy as np
import pytest

from model import resources
from model.artifact import load_router, load_serving_router
from model.compiled import TicketLike
from model.config import TrainingConfig
from model.router import Router

# Invented tickets, of the kinds the bundled sample holds.
TICKETS = [
    "小区楼下烧烤店每天晚上油烟很大，家里没法开窗",
    "公司拖欠三个月工资不发，老板电话也打不通",
    "路口的红绿灯坏了好几天，早高峰特别堵",
]


@pytest.fixture(scope="module")
def stacked_sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled sample's model with every extra input: the department head reads the latent
    view and the category head's probabilities (the sample's own choice is the words alone)."""
    from training.train import train

    config = TrainingConfig(cv_folds=3, select_inputs=False)
    result = train(
        [resources.sample_path()], tmp_path_factory.mktemp("stacked") / "m", config=config
    )
    assert result.model_dir is not None
    return result.model_dir


def decision_scores(router: Router, ticket: TicketLike, head: str) -> np.ndarray:
    """The head's linear scores of every label, from scikit-learn's own decision functions: the
    calibration folds' mean, blended as the head's probabilities are."""
    X = router.transform([ticket])
    upstream: dict[str, np.ndarray] = {}
    for name in router.head_order():
        classifier = router.heads[name].classifier
        assert classifier is not None
        inputs = router.head_input(name, X, upstream)
        upstream[name] = classifier.predict_proba(inputs)
        if name == head:
            folds = classifier.calibrated_classifiers_
            mean = sum(f.estimator.decision_function(inputs)[0] for f in folds) / len(folds)
            multinomial = getattr(classifier, "multinomial_", None)
            if multinomial is None:
                return np.asarray(mean)
            w = classifier.multinomial_weight
            return np.asarray((1 - w) * mean + w * multinomial.decision_function(inputs)[0])
    raise AssertionError(f"no head {head!r}")


def test_sources_sum_to_the_heads_decision_score_for_its_label(stacked_sample_dir: Path) -> None:
    whole, _ = load_router(stacked_sample_dir)
    serving, _ = load_serving_router(stacked_sample_dir)
    assert whole.head_inputs("department") == ["tfidf", "latent", "category"]
    for router in (serving, whole):  # the compiled path alone, and scikit-learn's where it can
        for ticket in TICKETS:
            result = router.predict([ticket])[0]
            department = result.department
            assert department is not None and department.sources is not None
            inputs = [s.input for s in department.sources]
            assert inputs == ["words", "latent", "category", "intercept"]
            scores = decision_scores(whole, ticket, "department")
            label = whole.heads["department"].labels.index(department.label)
            total = sum(s.weight for s in department.sources)
            assert total == pytest.approx(scores[label], abs=1e-3), (ticket, department.sources)
            # Not any number would do: the next label's score is another.
            assert abs(total - np.delete(scores, label)).min() > 1e-3
            category = next(s for s in department.sources if s.input == "category")
            assert category.label in whole.heads["category"].labels
            assert all(s.label is None for s in department.sources if s.input != "category")


def test_a_head_reading_only_the_words_has_no_sources(
    stacked_sample_dir: Path, sample_model_dir: Path
) -> None:
    stacked, _ = load_serving_router(stacked_sample_dir)
    result = stacked.predict(TICKETS[:1])[0]
    assert result.category is not None and result.category.sources is None
    assert result.department is not None and result.department.sources is not None
    # As the bundled sample trains by default: neither head reads more than the words.
    plain, _ = load_serving_router(sample_model_dir)
    assert plain.head_inputs("department") == ["tfidf"]
    for head in (r := plain.predict(TICKETS[:1])[0]).department, r.category:
        assert head is not None and head.sources is None


def test_batch_labelling_leaves_the_sources_out(stacked_sample_dir: Path) -> None:
    router, _ = load_serving_router(stacked_sample_dir)
    (result,) = router.predict(TICKETS[:1], explain=False)
    assert result.department is not None and result.department.sources is None


@pytest.fixture(scope="module")
def isotonic_tiny_dir(
    tmp_path_factory: pytest.TempPathFactory, tiny_config: TrainingConfig
) -> Path:
    """TINY_TICKETS' model calibrated isotonically: its heads have no compiled path."""
    import dataclasses

    from tests.conftest import train_tiny

    config = dataclasses.replace(tiny_config, calibration="isotonic")
    return train_tiny(tmp_path_factory, "isotonic-models", config)


@pytest.mark.parametrize("model", ["blended_model_dir", "isotonic_tiny_dir"])
def test_sources_sum_to_the_score_of_a_blended_or_uncompiled_head(
    model: str, request: pytest.FixtureRequest
) -> None:
    from tests.conftest import TINY_TICKETS

    router, _ = load_router(request.getfixturevalue(model))
    compiled = "department" in router.compiled()[1]
    assert compiled == (model == "blended_model_dir")
    for title, text, *_ in TINY_TICKETS[::7]:
        department = router.predict([(title, text)])[0].department
        assert department is not None and department.sources is not None
        scores = decision_scores(router, (title, text), "department")
        label = router.heads["department"].labels.index(department.label)
        total = sum(s.weight for s in department.sources)
        assert total == pytest.approx(scores[label], abs=1e-3), (text, department.sources)


def test_the_extra_columns_weights_are_computed_once_and_not_pickled(
    stacked_sample_dir: Path,
) -> None:
    # A head's weights of its extra columns and its intercept are the same for every ticket:
    # read once per process (CompiledHeads.class_extras), they must still be what class_weights
    # and class_intercept give, bit for bit, and stay out of a pickled model.
    import pickle

    router, _ = load_serving_router(stacked_sample_dir)
    fast = router.compiled()[1]
    n = len(
        router.extras(
            "department", router.transform(TICKETS[:1]), router.predict_proba(TICKETS[:1])
        )[0]
    )
    for label in range(len(router.heads["department"].labels)):
        weights, intercept = fast.class_extras("department", label, n)
        rows = fast.weights[fast.width : fast.width + n]
        assert weights.tobytes() == fast.class_weights("department", label, rows).tobytes()
        assert intercept == fast.class_intercept("department", label)
        assert fast.class_extras("department", label, n)[0] is weights
    assert "_extras_of_class" not in pickle.loads(pickle.dumps(fast)).__dict__
    for ticket in TICKETS:  # with every constant cached, the same sources as before any was
        fresh, _ = load_serving_router(stacked_sample_dir)
        assert fresh.predict([ticket]) == router.predict([ticket])
