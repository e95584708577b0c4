"""The confidence a model of a small history shows, against how often it is right on tickets it never saw.

A model of 60 bundled tickets (3 per department) is scored on the other 978, for several seeds. Its
confidence map is fitted on the cross-validation of fold models trained on 48 of the 60 tickets,
whose probabilities are lower than those of the model trained on all 60: a map fitted on them
alone showed held-out department suggestions at 0.68 on average among those shown at 0.5 or more,
right 50 times in 100 (seeds 0–5, before the fix).
"""

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from model import resources
from model.config import TrainingConfig
from model.tickets import read_tickets
from training.metrics import wilson_lower_bound
from training.train import fit_router
from training.validate import validate

pytestmark = pytest.mark.slow

TRAIN_ROWS = 60
SEEDS = (10, 11, 12)  # not the seeds the prior's strength was measured on (0–5)


def _held_out_department_suggestions(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shown confidence of each held-out department suggestion, and whether it was right."""
    df = read_tickets([resources.sample_path()])
    df["department"] = df["department"].str.split("；").str[0]  # a joint dispatch's lead
    train, test = train_test_split(
        np.arange(len(df)), train_size=TRAIN_ROWS, stratify=df["department"], random_state=seed
    )
    config = TrainingConfig(min_examples=3, seed=seed)
    rows, _ = validate(df.iloc[train], config.min_examples)
    router, _ = fit_router(
        rows, config, resources.default_userdict(), resources.default_stopwords(), n_jobs=1
    )
    held_out = df.iloc[test]
    ranking = router.rankings(list(zip(held_out["title"], held_out["text"], strict=True)))[
        "department"
    ]
    suggested = np.asarray(ranking.labels)[ranking.order[:, 0]]
    return ranking.scores[:, 0], suggested == held_out["department"].to_numpy(dtype=str)


def _no_significant_over_claim(shown: np.ndarray, correct: np.ndarray) -> tuple[float, float]:
    """Mean shown confidence, and the upper end of the one-sided 95 % Wilson interval of accuracy."""
    wrong = np.array(np.count_nonzero(~correct))
    upper = 1.0 - float(wilson_lower_bound(wrong, np.array(len(correct))))
    return float(shown.mean()), upper


def test_a_small_history_does_not_over_claim_on_tickets_it_never_saw():
    runs = [_held_out_department_suggestions(seed) for seed in SEEDS]
    shown = np.concatenate([s for s, _ in runs])
    correct = np.concatenate([c for _, c in runs])
    # All suggestions: on average shown no higher than they are right, within sampling error.
    mean, upper = _no_significant_over_claim(shown, correct)
    assert mean <= upper, f"shown at {mean:.3f} on average, right at most {upper:.3f}"
    # Those a dispatcher reads as probably right (shown at 0.5 or more) likewise.
    sure = shown >= 0.5
    assert sure.sum() >= 30, "too few confident suggestions to measure"
    mean, upper = _no_significant_over_claim(shown[sure], correct[sure])
    assert mean <= upper, f"shown at {mean:.3f} (≥ 0.5), right at most {upper:.3f}"
