"""Champion against challenger on the frozen evaluation set, and the rule that guards promotion.

A challenger is refused when a head's macro-F1 is worse than the champion's beyond noise (a paired
bootstrap over the frozen tickets, :func:`paired_bootstrap`; one within noise on every head is
promoted, as it has learnt the newer tickets the frozen set cannot test;
the ``"margin"`` rule refuses one more than :data:`MAX_DROP_POINTS` points worse on either head
instead), when it no longer predicts a label the champion had, or when it was trained on more than
:data:`training.evaluate.SEEN_SHARE_LIMIT` of the frozen tickets. Both models are
scored on the same frozen set (``<root>/eval/frozen.parquet``), with the challenger's taxonomy
mapping applied to the true labels and to the champion's predictions, so a renamed department is
neither a loss nor a gain, and with the same true labels: a rare label that both models' training
merged into 其他 is scored as 其他 for both, one that either model learnt under its own name for both
(:func:`shared_merged`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model import registry
from model.artifact import ModelLoadError, load_router, read_metadata, sha256_file, verify
from model.config import OTHER_LABEL
from model.resources import is_sample_default
from model.router import SIMILAR_K, Router
from model.text import counted, mask_label
from model.tickets import (
    CO_COL,
    JOINT_JOINER,
    JOINT_SEPARATOR,
    LABELS,
    comma_listed,
    has_text,
    label_value,
    split_comma_listed,
    split_departments,
)
from training.evaluate import SEEN_SHARE_LIMIT, JointCounts, joint_summary, seen_rows
from training.markdown import md_text
from training.metrics import format_f1, head_report, unknown_label_rows
from training.validate import find_merged, masked_counts, merged_mapping, rows_of

logger = logging.getLogger(__name__)

# Largest macro-F1 drop tolerated on either head, in points (1 point = 0.01), by the "margin" rule.
MAX_DROP_POINTS = 1.0
# The promotion rules: "bootstrap" (the default) tells a gain or a loss from noise with a paired
# bootstrap over the frozen tickets; "margin" is the fixed MAX_DROP_POINTS rule of before.
RULES = ("bootstrap", "margin")
DEFAULT_RULE = "bootstrap"
# The paired bootstrap: resamples of the frozen tickets (the same ones for both models), the seed
# that makes them the same in every run, and the interval's confidence level.
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
BOOTSTRAP_LEVEL = 0.95
# How many labels a note lists before it says "and N more".
MAX_NOTED = 20
EVAL_COLUMNS = ("id", "title", "text", "department", "category")
# How scores read department labels: "lead" = a joint dispatch's lead department, on both the true
# labels and an old model's combined ones (model.tickets.label_value); "+lists2": one written with
# 、, a comma, a line break, a space or a slash between departments of the frozen set too
# (model.tickets.comma_listed). Scores stored otherwise were computed with whole "主办；会办"
# strings (a set frozen, or a model trained, before joint dispatch), "主办、会办" ones, or
# ("+lists") "主办\n会办" ones, and are computed again.
DEPARTMENT_TRUTH = registry.SCORE_RULE["department_truth"]
# Which true labels macro-F1 is over: "known", those the model knows (training.metrics.head_report).
# Scores stored without it counted each label it does not know (a misspelt department in the frozen
# set) as a class of F1 0, and are computed again; a comparison reads both models over the same
# labels all the same (shared_macro_f1).
F1_LABELS = registry.SCORE_RULE["f1_labels"]
# Key of a version's stored scores under which its scores on other versions' true labels are kept
# (same_truth_scores), by the checksum of the labels merged into 其他.
SAME_TRUTH_KEY = "same_truth"

# Per head, old label -> new label.
Mapping = dict[str, dict[str, str]]


class PromotionError(RuntimeError):
    """A promotion cannot be decided (no frozen evaluation set, unknown version, ...)."""


@dataclass
class Decision:
    """The outcome of :func:`promote_checked`."""

    version: str
    champion: str | None
    promoted: bool
    refused: bool
    reasons: list[str] = field(default_factory=list)
    comparison: dict[str, Any] | None = None
    report_paths: list[Path] = field(default_factory=list)
    forced: bool = False
    # The champion was the default trained from the bundled sample: replaced without a comparison.
    sample_champion: bool = False


def mapping_sha(mapping: Mapping | None) -> str:
    """A stable digest of a mapping (empty mapping → digest of ``{}``)."""
    text = json.dumps(mapping or {}, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def merged_sha(merged: Mapping) -> str:
    """The checksum of the merged labels scores were computed with (see :func:`ensure_scores`).

    Tagged with how they are looked up: scores stored when a label holding a number, recorded
    masked, was missed (and scored under its own name, always wrong) are computed again.
    """
    if not merged:
        return mapping_sha({})
    text = json.dumps({"lookup": "masked", "merged": merged}, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def map_label(label: str, head: str, mapping: Mapping | None) -> str:
    """``label`` renamed by ``mapping`` for ``head`` (unchanged when not mapped)."""
    return (mapping or {}).get(head, {}).get(label, label)


def merged_into_other(meta: dict[str, Any], mapping: Mapping | None = None) -> Mapping:
    """The labels a model's training merged into 其他, as renames to 其他 after ``mapping``.

    :func:`training.validate.merged_mapping` (what ``paidan evaluate`` applies) on the labels
    its ``metadata.json`` records, named as ``mapping`` renames them; a label the model learnt
    under ``mapping`` is left out.
    """
    learnt = {h: list(v.get("labels") or []) for h, v in (meta.get("heads") or {}).items()}
    known_by = learnt_labels(meta, mapping)
    out: Mapping = {}
    for head, renames in merged_mapping(meta, learnt).items():
        known = known_by.get(head, set())
        other = map_label(OTHER_LABEL, head, mapping)
        moved = {map_label(label_value(head, k), head, mapping) for k in renames} - known
        if moved:
            out[head] = {label: other for label in sorted(moved)}
    return out


def learnt_labels(meta: dict[str, Any], mapping: Mapping | None = None) -> dict[str, set[str]]:
    """Per head, the labels a model learnt (its ``metadata.json``'s), named as ``mapping`` renames
    them."""
    out = {}
    for head, info in (meta.get("heads") or {}).items():
        labels = (info.get("labels") or []) if isinstance(info, dict) else []
        # Read by their lead department, as scores read the labels (an old model's "主办；会办").
        out[head] = {map_label(label_value(head, label), head, mapping) for label in labels}
    return out


def joint_only_other(meta: dict[str, Any]) -> list[str]:
    """The heads whose 其他 a model learnt only from joint dispatches merged into it.

    A paidan from before joint dispatch learnt each "主办；会办" combination as a label, and merged
    the rare ones into 其他: a model trained now learns their lead, so it has no 其他 for them,
    and lacking that 其他 is no label lost.
    """
    data = meta.get("training_data")
    validation = data.get("validation") if isinstance(data, dict) else None
    merged = validation.get("merged_into_other") if isinstance(validation, dict) else None
    out = []
    for head, info in (meta.get("heads") or {}).items():
        labels = merged.get(head) if isinstance(merged, dict) else None
        counts = info.get("counts") if isinstance(info, dict) else None
        if (
            not isinstance(labels, dict)
            or not isinstance(counts, dict)
            or OTHER_LABEL not in counts
        ):
            continue
        joint = sum(int(n) for k, n in labels.items() if JOINT_SEPARATOR.search(str(k)))
        if 0 < int(counts[OTHER_LABEL]) <= joint:
            out.append(head)
    return out


def shared_merged(a: Mapping, b: Mapping) -> Mapping:
    """The labels both ``a`` and ``b`` (see :func:`merged_into_other`) merge into 其他.

    A comparison scores both models on these true labels. Scored with each model's own merged
    labels, a challenger that learnt a department the champion had merged (its history had grown
    past ``--min-examples``) was judged on a harder task: the same 其他 answer to the same ticket
    counted right for the champion and wrong for the challenger, and the promotion was refused.
    """
    out: Mapping = {}
    for head in sorted(set(a) & set(b)):
        # Compared masked, as metadata.json records them now: a model trained before recorded a
        # label holding a number as written (:func:`training.validate.find_merged`).
        theirs = {mask_label(label): other for label, other in b[head].items()}
        both = {
            mask_label(label): other
            for label, other in a[head].items()
            if theirs.get(mask_label(label)) == other
        }
        if both:
            out[head] = both
    return out


def read_frozen_eval(root: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The frozen evaluation set and its facts, after checking its SHA-256.

    Raises
    ------
    PromotionError
        When none is frozen, or the file no longer matches its recorded checksum.
    ModelLoadError
        When its ``frozen.json`` is unreadable: an error (exit 2), not a refusal that ``--force``
        overrides (it promoted past it, and cron's ``--promote-if-better`` took the exit 3 for
        the rule refusing the challenger).
    """
    info = registry.frozen_eval_info(root)
    path = registry.frozen_eval_path(root)
    if info is None:
        raise PromotionError(
            f"no frozen evaluation set under {root}; run `paidan models freeze-eval DATA` "
            "(or `paidan retrain`, which freezes one from the history the first time)"
        )
    actual = sha256_file(path)
    if actual != info["sha256"]:
        raise PromotionError(
            f"{path} does not match its recorded SHA-256 ({info['sha256'][:12]}…, found "
            f"{actual[:12]}…): the frozen evaluation set was changed; freeze it again with "
            "`paidan models freeze-eval DATA --force`"
        )
    with open(path, "rb") as f:  # by Python, which encodes the name as the file system does
        df = pd.read_parquet(f)
    for col in EVAL_COLUMNS:
        df[col] = df[col].fillna("").astype(str) if col in df.columns else ""
    # A joint dispatch is frozen as "主办；会办" (freeze_eval): scored by its lead, as training
    # reads it, and its co-departments score the joint-dispatch advice (sets frozen before they
    # were kept have none).
    parts = df["department"].map(split_departments)
    df["department"] = parts.map(lambda p: p[0])
    df[CO_COL] = parts.map(lambda p: JOINT_JOINER.join(p[1]))
    return df, info


def score_router(
    router: Router,
    eval_df: pd.DataFrame,
    mapping: Mapping | None = None,
    merged: Mapping | None = None,
) -> dict[str, Any]:
    """Score a router on evaluation rows, in the label space after ``mapping``.

    The model's probabilities of labels that map to the same new label are added up, and the
    true labels are mapped too, so an old model is judged on the new taxonomy. Then the true
    labels its training merged into 其他 (``merged``, see :func:`merged_into_other`) are scored
    as 其他, as ``paidan evaluate`` scores them: the model answers 其他 for them by design.

    Parameters
    ----------
    router : Router
        A fitted router.
    eval_df : DataFrame
        Canonical evaluation rows (``title``, ``text``, ``department``, ``category``).
    mapping : dict, optional
        Per head, old label → new label.
    merged : dict, optional
        Per head, label (after ``mapping``) → 其他, applied to the true labels after ``mapping``.

    Returns
    -------
    dict
        ``n`` and ``heads``: per head ``macro_f1``, ``accuracy``, ``labels`` and ``per_class``;
        ``merged_into_other`` (per head, label → rows scored as 其他) when any was.
    """
    with_text = has_text(eval_df)
    df = eval_df[with_text].copy()
    # A joint dispatch written 人社、住建 is led by 人社, as training reads it (DEPARTMENT_TRUTH).
    split_comma_listed(df)
    tickets = list(zip(df["title"], df["text"], strict=True))
    X = router.transform(tickets) if tickets else None  # once, for the scores and seen_rows
    scores = router.feature_scores(X) if X is not None else {}
    heads: dict[str, Any] = {}
    merged_rows: dict[str, dict[str, int]] = {}
    for name, head in router.heads.items():
        if name not in LABELS or name not in scores:
            continue
        # Masked, as the ticket readers give a label (a frozen set written before they did holds
        # a number typed into a label as written), and so is a label an older model learnt as
        # written: it is the label the rows now spell, not one lost, and is quoted masked.
        masked = {v: mask_label(label_value(name, v)) for v in {*df[name], *head.labels}}
        named = [map_label(masked[t], name, mapping) for t in df[name]]
        # A model trained before joint dispatch learnt "主办；会办" strings: its answer is their lead.
        mapped = [map_label(masked[label], name, mapping) for label in head.labels]
        # Scored under their own names, the model's 其他 for them (by design) counted as wrong.
        # Recorded masked (a number typed into a label), they are looked up as the rows spell them.
        into_other = find_merged((merged or {}).get(name, {}), named, mapped)
        hits = masked_counts(Counter(t for t in named if t in into_other))
        if hits:
            merged_rows[name] = dict(sorted(hits.items()))
        truth = np.asarray([into_other.get(t, t) for t in named], dtype=str)
        known = truth != ""
        if not known.any():
            continue
        merged_labels = sorted(set(mapped))
        index = {label: i for i, label in enumerate(merged_labels)}
        shown, shifted = scores[name]
        p = np.zeros((len(truth), len(merged_labels)))
        rank = np.zeros_like(p)
        for j, label in enumerate(mapped):
            p[:, index[label]] += shown[:, j]
            rank[:, index[label]] += shifted[:, j]
        report = head_report(
            truth[known], p[known], merged_labels, head.threshold, rank=rank[known]
        )
        heads[name] = {
            "n": report["n"],
            "macro_f1": report["macro_f1"],
            "accuracy": report["accuracy"],
            "labels": merged_labels,
            # Each scored ticket's true and predicted label, in the frozen set's order: the paired
            # bootstrap (paired_bootstrap) resamples the same tickets for both models.
            "truth": truth[known].tolist(),
            "predicted": [merged_labels[j] for j in rank[known].argmax(axis=1)],
            "per_class": {
                label: {k: m[k] for k in ("precision", "recall", "f1", "support")}
                for label, m in report["per_class"].items()
            },
            # Masked, as the report quotes them (a number typed into a department cell).
            "unknown_labels": masked_counts(unknown_label_rows(truth[known], merged_labels)),
        }
    out = {
        "n": len(df),
        "model_version": router.version,
        "seen_eval_rows": seen_rows(router, X) if X is not None else 0,
        "heads": heads,
        **(
            {"joint": joint}
            if X is not None and (joint := joint_scores(router, X, df, mapping))
            else {}
        ),
        "department_truth": DEPARTMENT_TRUTH,
        "f1_labels": F1_LABELS,
    }
    if merged_rows:
        out["merged_into_other"] = merged_rows
    return out


def joint_scores(
    router: Router, X: Any, df: pd.DataFrame, mapping: Mapping | None = None
) -> dict[str, Any] | None:
    """The joint-dispatch advice's figures (:func:`training.evaluate.joint_advice_report`) on the
    frozen tickets with a department label, as ``paidan evaluate`` gives them; ``None`` when no
    ticket has co-departments, or the router has no department head or no similar tickets.

    The advice follows the model's own lead department (dispatch rules aside, as the scores are
    the model's), from the server's default number of similar tickets; the true co-departments
    are renamed by ``mapping``, as the true labels are.
    """
    co = df[CO_COL].fillna("").astype(str) if CO_COL in df else None
    if co is None or not (co != "").any():
        return None
    if "department" not in router.heads or router.index is None:
        return None
    ranking = router.rank(X, 1)["department"]
    learnt = router.labels_of("department")
    found = router.index.query(X, SIMILAR_K)
    counts = JointCounts()
    given = df["department"].fillna("").astype(str).str.strip().tolist()
    for i, similar in enumerate(found):
        if given[i]:
            # As Router.predict: no similar ticket, so no advice, without a known word.
            advised = [] if ranking.no_terms[i] else similar[:SIMILAR_K]
            truth = JOINT_JOINER.join(
                map_label(d, "department", mapping) for d in co.iloc[i].split(JOINT_JOINER) if d
            )
            # The advice is scored only where the suggested lead is the true one, both read by
            # the mapping as the department head's scores read them.
            lead = learnt[ranking.order[i, 0]]
            true_lead = map_label(label_value("department", given[i]), "department", mapping)
            right = map_label(label_value("department", lead), "department", mapping) == true_lead
            counts.add(truth, lead, advised, lead if right else true_lead)
    return {**counts.report(), "similar_k": SIMILAR_K}


def version_mapping(root: str | Path, version: str) -> Mapping:
    """The taxonomy mapping a version was trained with (empty when none)."""
    meta = read_metadata(Path(root) / version)
    return meta.get("training_data", {}).get("mapping") or {}


def model_heads(root: str | Path, version: str) -> list[str]:
    """The heads a version has, as its ``metadata.json`` records them."""
    return list(read_metadata(Path(root) / version).get("heads") or {})


def ensure_scores(
    root: str | Path,
    version: str,
    mapping: Mapping | None = None,
    eval_set: tuple[pd.DataFrame, dict[str, Any]] | None = None,
    merged: Mapping | None = None,
    paired: bool = False,
) -> dict[str, Any]:
    """A version's scores on the frozen set under ``mapping``, computed once and stored.

    With ``mapping=None`` the version's own training mapping is used, and with ``merged=None``
    the labels its own training merged into 其他 are scored as 其他; those scores are stored in
    ``scores/<version>.json`` (they are what ``paidan models list`` shows). Scores under any other
    mapping or merged labels (a comparison's, :func:`shared_merged`) are computed and returned
    without being stored. With ``paired``, scores stored without each ticket's predictions (by an
    older paidan), which the paired bootstrap needs, are computed again.
    """
    root = Path(root)
    meta = read_metadata(root / version)
    own = meta.get("training_data", {}).get("mapping") or {}
    use = own if mapping is None else mapping
    own_merged = merged_into_other(meta, use)
    merged = own_merged if merged is None else merged
    eval_df, info = eval_set or read_frozen_eval(root)
    if use == own and merged_sha(merged) != merged_sha(own_merged):
        # Its own taxonomy, on the true labels of several versions (same_truth_scores, what
        # `models list` shows): kept beside its own scores, by the merged labels' checksum, so the
        # list loads no model once each has been scored so.
        base = ensure_scores(root, version, eval_set=(eval_df, info))
        cached = (base.get(SAME_TRUTH_KEY) or {}).get(merged_sha(merged))
        if cached is not None and (not paired or has_predictions(cached)):
            return cached
        scores = _scored(root, version, (eval_df, info), use, merged)
        base.setdefault(SAME_TRUTH_KEY, {})[merged_sha(merged)] = scores
        registry.write_scores(root, version, base)
        return scores
    stored = registry.read_scores(root, version)
    if (
        stored
        and stored.get("eval_sha256") == info["sha256"]
        and stored.get("mapping_sha256") == mapping_sha(use)
        # Scores stored before the merged labels were scored as 其他 are computed again.
        and stored.get("merged_sha256", mapping_sha({})) == merged_sha(merged)
        and stored.get("department_truth") == DEPARTMENT_TRUTH
        and stored.get("f1_labels") == F1_LABELS
        and (not paired or has_predictions(stored))
    ):
        return stored
    scores = _scored(root, version, (eval_df, info), use, merged)
    if use == own and merged == own_merged:
        registry.write_scores(root, version, scores)
    return scores


def has_predictions(scores: dict[str, Any]) -> bool:
    """Whether ``scores`` keep each ticket's true and predicted label on every head scored."""
    return all("predicted" in h and "truth" in h for h in (scores.get("heads") or {}).values())


def _scored(
    root: Path,
    version: str,
    eval_set: tuple[pd.DataFrame, dict[str, Any]],
    use: Mapping,
    merged: Mapping,
) -> dict[str, Any]:
    """``version``'s scores on the frozen set, with the checksums they were computed under."""
    eval_df, info = eval_set
    router, _ = load_router(root / version, root)
    scores = score_router(router, eval_df, use, merged)
    scores.update(
        eval_sha256=info["sha256"],
        mapping_sha256=mapping_sha(use),
        merged_sha256=merged_sha(merged),
    )
    return scores


def same_truth_scores(
    root: str | Path,
    versions: Sequence[str],
    eval_set: tuple[pd.DataFrame, dict[str, Any]] | None = None,
    mapping: Mapping | None = None,
    paired: bool = False,
) -> dict[str, dict[str, Any]]:
    """Scores of ``versions`` on the frozen set with the same true labels, for figures that can
    stand side by side: the one scoring of promotion's comparison (two versions) and of ``paidan
    models list`` (each taxonomy's versions).

    A label every one of them merged into 其他 is scored as 其他 for all, one that any learnt
    under its own name for all (:func:`shared_merged`); their macro-F1 is then taken over the
    same labels (:func:`model.registry.shared_macro_f1s`, :func:`shared_macro_f1`). Listed with
    each version's own merged labels, a champion's 其他 answers to tickets of a department the
    challenger learnt were counted right in the list and wrong in the comparison, so one model had
    two figures.

    Parameters
    ----------
    root : str or Path
        The model root.
    versions : sequence of str
        Versions trained with one taxonomy mapping, unless ``mapping`` is given.
    eval_set : (DataFrame, dict), optional
        The frozen set, as :func:`read_frozen_eval` returns it.
    mapping : dict, optional
        Score all under this mapping (a comparison: the challenger's); default, each its own.
    paired : bool
        Keep each ticket's predictions, for the paired bootstrap (see :func:`ensure_scores`).

    Returns
    -------
    dict
        Per version, its :func:`score_router` scores.
    """
    root = Path(root)
    eval_set = eval_set or read_frozen_eval(root)
    merged = [
        merged_into_other(
            read_metadata(root / v), version_mapping(root, v) if mapping is None else mapping
        )
        for v in versions
    ]
    common = merged[0] if merged else {}
    for other in merged[1:]:
        common = shared_merged(common, other)
    return {
        v: ensure_scores(root, v, mapping=mapping, eval_set=eval_set, merged=common, paired=paired)
        for v in versions
    }


def compare(
    champion: dict[str, Any],
    challenger: dict[str, Any],
    max_drop_points: float = MAX_DROP_POINTS,
    *,
    champion_heads: Collection[str] | None = None,
    challenger_heads: Collection[str] | None = None,
    champion_name: str | None = None,
    challenger_name: str | None = None,
    champion_joint_other: Collection[str] = (),
    rule: str = DEFAULT_RULE,
) -> dict[str, Any]:
    """Side-by-side figures and the promotion verdict.

    Each head's macro-F1 difference comes with a paired bootstrap interval
    (:func:`paired_bootstrap`) when both scores keep each ticket's predictions. By the
    ``"bootstrap"`` rule the challenger is refused when a head is worse beyond noise (the whole
    interval below 0); a challenger within noise on every head is promoted (``within_noise``,
    with a note), as it has learnt the newer tickets the frozen set cannot test; a head without predictions to resample (scores stored by
    an older paidan) is held to the fixed margin, with a note. By the ``"margin"`` rule a head
    may drop at most ``max_drop_points``, as before; the intervals are reported all the same.

    Parameters
    ----------
    champion, challenger : dict
        Scores from :func:`score_router` on the same set, in the same label space.
    max_drop_points : float
        Largest tolerated macro-F1 drop per head, in points, by the ``"margin"`` rule.
    champion_heads, challenger_heads : collection of str, optional
        The heads each model has (its ``metadata.json``). A head either has that the frozen set
        cannot score (it has no label for it) is a reason to refuse: the rule cannot check it.
    champion_name, challenger_name : str, optional
        The versions' names under the model root, which the report names them by (default: the
        models' metadata ids, which a copied model shares with its original).
    champion_joint_other : collection of str
        Heads whose 其他 the champion learnt only from joint dispatches (:func:`joint_only_other`):
        a challenger without 其他 there lost no label.
    rule : str
        ``"bootstrap"`` (default) or ``"margin"``, see above (:data:`RULES`).

    Returns
    -------
    dict
        ``heads`` (per head: overall figures of both, ``macro_f1_delta_interval`` and
        ``per_class`` rows side by side), ``rule``, ``within_noise``,
        ``lost_labels``, ``refused``, ``reasons``, ``notes`` and how many frozen tickets each model
        was trained on (``champion_seen_eval_rows``, ``challenger_seen_eval_rows``).
    """
    if rule not in RULES:
        raise ValueError(f"unknown promotion rule {rule!r}; one of {', '.join(RULES)}")
    reasons: list[str] = []
    notes: list[str] = []
    unscored: list[str] = []
    # Per head, the interval the bootstrap rule judged it by.
    judged: dict[str, dict[str, Any]] = {}
    heads: dict[str, Any] = {}
    lost: dict[str, list[str]] = {}
    # A champion trained on the frozen tickets (e.g. trained before the set was frozen out of the
    # same history) is flattered by them: its macro-F1 is no fair bar, only the label rule applies.
    seen = int(champion.get("seen_eval_rows", 0) or 0)
    n_champion, n_challenger = (int(m.get("n", 0) or 0) for m in (champion, challenger))
    of_frozen = "frozen evaluation ticket"
    # A few exact repeats are normal (the same complaint filed twice); a large share is leakage.
    comparable = seen <= SEEN_SHARE_LIMIT * max(1, n_champion)
    if not comparable:
        notes.append(
            f"the champion was trained on {seen} of the {counted(n_champion, of_frozen)}, so its "
            "figures are inflated; the macro-F1 rule is not applied this time (it applies "
            "between models trained without the frozen set)"
        )
    # A challenger trained on them (`paidan train` on the history the set was frozen from) is
    # flattered the same way, and it would be promoted on those figures: refused (--force may).
    trained_on = int(challenger.get("seen_eval_rows", 0) or 0)
    if trained_on > SEEN_SHARE_LIMIT * max(1, n_challenger):
        reasons.append(
            f"the challenger was trained on {trained_on} of the "
            f"{counted(n_challenger, of_frozen)}, so its figures are inflated and say nothing of "
            "tickets it has not seen; train it without them (`paidan retrain` leaves them out)"
        )
    for head in LABELS:
        a = champion["heads"].get(head)
        b = challenger["heads"].get(head)
        if a is None and b is None:
            has = [
                who
                for who, names in (("champion", champion_heads), ("challenger", challenger_heads))
                if names is not None and head in names
            ]
            if has == ["champion"]:
                reasons.append(f"{head}: the challenger has no {head} head; the champion has one")
            elif has:
                # Skipped, a challenger with a useless department head was promoted on its
                # category figures alone, without --force.
                who = "both models have" if len(has) == 2 else f"the {has[0]} has"
                reasons.append(
                    f"{head}: not compared: the frozen evaluation set has no {head} labels, but "
                    f"{who} a {head} head, which the rule cannot check; freeze a set with "
                    f"{head} labels (`paidan models freeze-eval DATA --force`) or pass --force"
                )
                unscored.append(head)
            continue
        if b is None:
            reasons.append(f"{head}: the challenger has no {head} head; the champion has one")
            continue
        if a is None:
            heads[head] = {"champion": None, "challenger": _overall(b), "per_class": []}
            continue
        # Over the same labels for both: each model's own figure leaves out the labels it does not
        # know, so a challenger that lost a label would not be marked down for it.
        macro_a, macro_b, scored, neither = shared_macro_f1(a, b)
        a, b = {**a, "macro_f1": macro_a}, {**b, "macro_f1": macro_b}
        if neither:
            notes.append(neither_known_note(head, neither))
        # None: no frozen ticket's true label is one either model knows, so no macro-F1 (the
        # rule's macro-F1 check has nothing to compare; the lost-label check still applies).
        delta = None if macro_a is None or macro_b is None else (macro_b - macro_a) * 100
        if delta is None:
            notes.append(
                f"{head}: macro-F1 is undefined: no frozen ticket's true label is one either "
                "model knows, so the macro-F1 rule is not applied to this head"
            )
        # The labels either model knows (scores stored before had rows for every true label).
        labels = sorted(
            (set(a["per_class"]) | set(b["per_class"])) & (set(a["labels"]) | set(b["labels"]))
        )
        rows = []
        for label in labels:
            pa, pb = a["per_class"].get(label), b["per_class"].get(label)
            # A true label a model does not know: it answers none of them right (F1 0).
            unknown = 0.0 if label in scored else None
            fa = pa["f1"] if pa else unknown
            fb = pb["f1"] if pb else unknown
            rows.append(
                {
                    "label": label,
                    "support": (pa or pb or {}).get("support", 0),
                    "champion_f1": fa,
                    "challenger_f1": fb,
                    "delta_points": None if fa is None or fb is None else (fb - fa) * 100,
                }
            )
        rows.sort(key=lambda r: (r["delta_points"] is None, r["delta_points"] or 0.0))
        interval = None
        if delta is not None and scored and _paired(a, b):
            interval = paired_bootstrap(a["truth"], a["predicted"], b["predicted"], scored)
        heads[head] = {
            "champion": _overall(a),
            "challenger": _overall(b),
            "macro_f1_delta_points": delta,
            "macro_f1_delta_interval": interval,
            "per_class": rows,
        }
        worst = [r for r in rows if r["delta_points"] is not None and r["delta_points"] < 0][:3]
        detail = ", ".join(f"{r['label']} {r['delta_points']:+.1f}" for r in worst)
        if comparable and interval is not None and rule == "bootstrap":
            judged[head] = interval
            if interval["verdict"] == "worse":
                reasons.append(
                    f"{head} macro-F1 is worse beyond noise: {interval_text(interval)}, paired "
                    f"bootstrap over {counted(interval['n'], of_frozen)}"
                    + (f"; largest per-class drops: {detail}" if detail else "")
                )
        elif comparable and delta is not None and rule == "bootstrap":
            notes.append(
                f"{head}: the scores keep no per-ticket predictions to tell a change from noise "
                f"(`paidan models list --rescore` scores them again), so the fixed margin "
                f"applies: at most {max_drop_points:g} macro-F1 point lost"
            )
        # By the margin, what the default rule reads in the same difference, for the
        # administrator to judge: a refusal said the drop alone, not that it was noise.
        bootstrap = (
            _by_default_rule(interval)
            if comparable and interval is not None and rule == "margin"
            else ""
        )
        if comparable and delta is not None and head not in judged and delta < -max_drop_points:
            # As many decimals as show it over the limit: "drops 1.0 points (…; at most 1
            # allowed)" was a drop of 1.02, refused, read as one the rule allows.
            places = next((p for p in (1, 2, 3) if round(-delta, p) > max_drop_points), 4)
            reasons.append(
                f"{head} macro-F1 drops {-delta:.{places}f} points ({a['macro_f1']:.{places + 2}f}"
                f" → {b['macro_f1']:.{places + 2}f}; at most {max_drop_points:g} allowed)"
                + (f"; largest per-class drops: {detail}" if detail else "")
                + (
                    f"; {bootstrap}, which "
                    + (
                        "refuses it too"
                        if interval and interval["verdict"] == "worse"
                        else "alone would not refuse it"
                    )
                    if bootstrap
                    else ""
                )
            )
        elif bootstrap and interval is not None and interval["verdict"] == "worse":
            notes.append(f"{head}: accepted by the margin, but {bootstrap}, which would refuse it")
        missing = sorted(set(a["labels"]) - set(b["labels"]))
        if head in champion_joint_other and OTHER_LABEL in missing:
            missing.remove(OTHER_LABEL)
            notes.append(
                f"{head}: the champion's {OTHER_LABEL} held only joint dispatches (主办；会办) that "
                f"a paidan from before joint dispatch merged into it; the challenger learns their "
                f"lead department, so lacking {OTHER_LABEL} is no label lost"
            )
        # A champion trained before lists written 人社、住建 were read as joint dispatches learnt
        # them as departments; the challenger learns their lead, so they are no label lost.
        if head == "department" and (listed := comma_listed(missing, set(b["labels"]))):
            missing = [m for m in missing if m not in listed]
            notes.append(
                f"{head}: the champion learnt {', '.join(map(repr, listed))} as "
                f"department{'s' if len(listed) > 1 else ''} of {'their' if len(listed) > 1 else 'its'} own, lists of "
                "departments the challenger knows that it reads as joint dispatches, so lacking "
                f"{'them' if len(listed) > 1 else 'it'} is no label lost"
            )
        if missing:
            lost[head] = missing
            reasons.append(
                f"{head}: the challenger lost label(s) the champion had: {', '.join(missing)}"
            )
    # No head differs beyond noise: promoted all the same, as the challenger has learnt the newer
    # tickets and corrections the frozen set cannot test; said, so no one reads it as a gain.
    within_noise = (
        bool(judged) and not reasons and all(i["verdict"] == "noise" for i in judged.values())
    )
    if within_noise:
        said = "; ".join(f"{head} {interval_text(i)}" for head, i in judged.items())
        notes.append(
            f"within noise: no head differs from the champion beyond noise ({said}, paired "
            "bootstrap over the frozen tickets); accepted as no head is worse, not as a gain; "
            "a larger frozen set tells smaller differences apart"
        )
    return {
        "champion": champion_name or champion.get("model_version"),
        "challenger": challenger_name or challenger.get("model_version"),
        "champion_model_version": champion.get("model_version"),
        "challenger_model_version": challenger.get("model_version"),
        "eval_sha256": challenger.get("eval_sha256"),
        "eval_rows": challenger.get("n"),
        "rule": rule,
        "max_drop_points": max_drop_points,
        "within_noise": within_noise,
        "heads": heads,
        "lost_labels": lost,
        "unscored_heads": unscored,
        "refused": bool(reasons),
        "reasons": reasons,
        "champion_seen_eval_rows": seen,
        "challenger_seen_eval_rows": trained_on,
        "notes": notes,
        # Figures of the joint-dispatch advice, per model, when the frozen set has joint tickets:
        # told, not part of the rule.
        **(
            {"joint": {"champion": champion.get("joint"), "challenger": challenger["joint"]}}
            if challenger.get("joint")
            else {}
        ),
    }


def _paired(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two heads' scores keep predictions for the same tickets with the same truth."""
    return (
        "predicted" in a
        and "predicted" in b
        and a.get("truth") is not None
        and a.get("truth") == b.get("truth")
        and len(a["predicted"]) == len(b["predicted"]) == len(a["truth"]) > 0
    )


def shared_macro_f1(
    a: dict[str, Any], b: dict[str, Any]
) -> tuple[float | None, float | None, list[str], dict[str, int]]:
    """Champion's and challenger's macro-F1 over the same labels, and the labels neither knows.

    Both are scored on the same frozen rows with the same true labels; macro-F1 averages the
    per-class F1 over the true labels that either model knows: one only the champion knows is an
    F1 of 0 for the challenger (it cannot answer it), and the other way round. A true label neither
    knows (a misspelling in the frozen set) is scored wrong for both in accuracy, and left out.

    Parameters
    ----------
    a, b : dict
        One head of each model's :func:`score_router` scores (``labels``, ``per_class``).

    Returns
    -------
    (float or None, float or None, list of str, dict)
        ``a``'s and ``b``'s macro-F1 (``None`` when no true label is one either knows and the
        stored figure is undefined), the labels they are over, and the labels neither knows with
        their rows, most first.
    """
    knows = set(a["labels"]) | set(b["labels"])
    # The same rule as models list's (registry.shared_macro_f1s); no true label either knows:
    # both are wrong throughout, and each keeps its own macro_f1.
    over = registry.shared_labels((a, b))
    # Scores stored before unknown_labels have them as per-class rows outside the labels.
    neither = dict(b.get("unknown_labels") or {})
    for label, m in b["per_class"].items():
        if label not in knows and m.get("support"):
            neither.setdefault(mask_label(label), int(m["support"]))
    neither = {k: n for k, n in neither.items() if k not in knows}
    ranked = dict(sorted(neither.items(), key=lambda kv: (-kv[1], kv[0])))
    return registry.mean_f1(a, over), registry.mean_f1(b, over), over, ranked


def paired_bootstrap(
    truth: Sequence[str],
    champion: Sequence[str],
    challenger: Sequence[str],
    labels: Sequence[str],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = BOOTSTRAP_LEVEL,
) -> dict[str, Any]:
    """The challenger's macro-F1 minus the champion's, with a paired bootstrap interval.

    Each resample draws as many tickets as the set has, with replacement, and scores both models
    on the same draw, so what the two get right together cancels out and only where they differ
    counts: on 152 tickets one ticket is 0.66 points of accuracy, and a class of 5 tickets moves
    its F1 by 10 points or more, which a fixed margin read as a gain or a loss. Macro-F1 is averaged
    over ``labels`` (the labels either model knows, :func:`shared_macro_f1`) that the resample
    has tickets of; a label neither predicts nor has is no class of it, as in the full set.

    Parameters
    ----------
    truth : sequence of str
        Each ticket's true label.
    champion, challenger : sequence of str
        Each model's predicted label for the same tickets.
    labels : sequence of str
        The labels macro-F1 averages over.
    resamples, seed, level : int, int, float
        How many resamples, the seed that draws them (the same figures in every run), and the
        confidence level of the percentile interval.

    Returns
    -------
    dict
        ``delta_points`` (on the whole set), ``low`` and ``high`` (the interval, in points),
        ``level``, ``resamples``, ``seed``, ``n`` and ``verdict``: ``"better"`` when the whole
        interval is above 0, ``"worse"`` when it is below, else ``"noise"``.
    """
    y = np.asarray(truth, dtype=str)
    n = len(y)
    if n == 0 or len(champion) != n or len(challenger) != n or not labels:
        raise ValueError("paired bootstrap needs the same tickets for both models and labels")
    index = {label: i for i, label in enumerate(labels)}
    # One column per label (a row of zeros for a label outside them): true, predicted, right.
    onehot = np.eye(len(labels) + 1)[:, : len(labels)]
    t = onehot[[index.get(v, len(labels)) for v in y]]
    counts = {}
    for who, predicted in (("champion", champion), ("challenger", challenger)):
        p = onehot[[index.get(v, len(labels)) for v in np.asarray(predicted, dtype=str)]]
        counts[who] = (t * p, p)

    def macro(weights: np.ndarray) -> np.ndarray:
        support = weights @ t
        present = support > 0
        out = []
        for who in ("champion", "challenger"):
            right, p = counts[who]
            tp, predicted_n = weights @ right, weights @ p
            denominator = support + predicted_n
            f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
            out.append((f1 * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1))
        return (out[1] - out[0]) * 100

    delta = float(macro(np.ones((1, n)))[0])
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, 4_000_000 // n))  # a few MB of weights at a time
    deltas = []
    for start in range(0, resamples, chunk):
        k = min(chunk, resamples - start)
        draws = rng.integers(0, n, size=(k, n))
        weights = np.bincount((np.arange(k)[:, None] * n + draws).ravel(), minlength=k * n).reshape(
            k, n
        )
        deltas.append(macro(weights.astype(float)))
    tail = (1 - level) / 2 * 100
    low, high = (float(x) for x in np.percentile(np.concatenate(deltas), [tail, 100 - tail]))
    verdict = "better" if low > 0 else "worse" if high < 0 else "noise"
    return {
        "delta_points": delta,
        "low": low,
        "high": high,
        "level": level,
        "resamples": resamples,
        "seed": seed,
        "n": n,
        "verdict": verdict,
    }


def paired_intervals(
    root: str | Path,
    champion: str,
    challenger: str,
    eval_set: tuple[pd.DataFrame, dict[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per head both have, ``challenger``'s macro-F1 minus ``champion``'s on the frozen set with
    its paired bootstrap interval (:func:`paired_bootstrap`), scored as a comparison scores them
    (the same true labels, the challenger's mapping, macro-F1 over the same labels).

    ``paidan models list --rescore`` gives each version's against the current model, so an
    administrator can tell which versions differ from it beyond noise before promoting by hand.
    """
    pair = same_truth_scores(
        root, [champion, challenger], eval_set, version_mapping(root, challenger), paired=True
    )
    out: dict[str, dict[str, Any]] = {}
    for head in LABELS:
        a, b = (pair[v]["heads"].get(head) for v in (champion, challenger))
        if a is None or b is None or not _paired(a, b):
            continue
        over = registry.shared_labels((a, b))
        if over:
            out[head] = paired_bootstrap(a["truth"], a["predicted"], b["predicted"], over)
    return out


def _by_default_rule(interval: dict[str, Any]) -> str:
    """What the default (bootstrap) rule reads in a head's difference, for a ``"margin"``
    verdict: ``by the default rule (bootstrap) it is within noise: -1.9 points (95% interval -6.7
    to +0.0), paired bootstrap over 50 frozen evaluation tickets``."""
    verdict = {"noise": "within noise", "worse": "worse beyond noise"}.get(
        interval["verdict"], "better beyond noise"
    )
    return (
        f"by the default rule ({DEFAULT_RULE}) it is {verdict}: {interval_text(interval)}, "
        f"paired bootstrap over {counted(interval['n'], 'frozen evaluation ticket')}"
    )


def interval_text(interval: dict[str, Any]) -> str:
    """``+2.2 points (95% interval -3.1 to +7.5)``: a difference and its interval, in points."""
    return (
        f"{interval['delta_points']:+.1f} points ({interval['level']:.0%} interval "
        f"{interval['low']:+.1f} to {interval['high']:+.1f})"
    )


def neither_known_note(head: str, labels: dict[str, int]) -> str:
    """The note for the frozen set's true labels that neither model knows (see shared_macro_f1)."""
    listed = ", ".join(f"{k!r} ({rows_of(n)})" for k, n in list(labels.items())[:MAX_NOTED])
    more = f" and {len(labels) - MAX_NOTED} more" if len(labels) > MAX_NOTED else ""
    return (
        f"{head}: {counted(sum(labels.values()), 'frozen ticket has', 'frozen tickets have')} "
        f"{counted(len(labels), 'label')} neither model "
        f"knows, scored wrong for both in accuracy and left out of macro-F1: {listed}{more}"
    )


def _overall(scores: dict[str, Any]) -> dict[str, Any]:
    return {
        "macro_f1": scores["macro_f1"],
        "accuracy": scores["accuracy"],
        "n": scores["n"],
        "labels": len(scores["labels"]),
    }


# The report's own code spans: the commands its reasons advise (`paidan retrain`).
_OWN_CODE = re.compile(r"(`paidan [^`\n]*`)")


def _md_sentence(text: str) -> str:
    """A reason or note as Markdown: composed here around labels from the data, which are escaped
    (:func:`~training.markdown.md_text`), while the commands it advises stay code spans (escaped
    whole, they were shown with their backticks and backslashes)."""
    parts = _OWN_CODE.split(str(text))
    return "".join(part if i % 2 else md_text(part) for i, part in enumerate(parts))


def markdown_comparison(report: dict[str, Any]) -> str:
    """The comparison as a readable page: verdict, overall table, per-class tables."""
    # What was done, not only what the rule says: a refused challenger forced current read
    # "Promotion REFUSED.", and one `retrain` only compared read "Promotion accepted.".
    challenger = md_text(report["challenger"])
    if report.get("forced"):
        verdict = (
            "**Promotion REFUSED by the rule, and forced past it (--force): "
            f"{challenger} was made current.**"
        )
    elif report.get("applied", True):
        verdict = f"**Promotion {'REFUSED' if report['refused'] else 'accepted'}.**"
    elif report["refused"]:
        verdict = "**Promotion would be REFUSED** (nothing was promoted)."
    else:
        verdict = (
            "**Promotion accepted by the rule** (not promoted: "
            f"`paidan models promote {report['challenger']}` makes it current)."
        )
    lines = [
        f"# Challenger {md_text(report['challenger'])} against champion "
        f"{md_text(report['champion'])}",
        "",
    ]
    ids = (report.get("challenger_model_version"), report.get("champion_model_version"))
    if ids != (report["challenger"], report["champion"]) and all(ids):
        lines += [
            f"Model ids (metadata.json): challenger {md_text(ids[0])}, champion {md_text(ids[1])}.",
            "",
        ]
    if report.get("rule", "margin") == "margin":
        rule = f"at most {report['max_drop_points']:g} macro-F1 point lost per head"
    else:
        rule = "no head worse beyond noise (paired bootstrap interval of the macro-F1 difference)"
    lines += [
        f"Frozen evaluation set: {counted(report['eval_rows'], 'ticket')} "
        f"(SHA-256 {str(report['eval_sha256'])[:12]}…). Rule: {rule}, and no label lost.",
        "",
        verdict,
        "",
    ]
    # Reasons quote labels (a lost one, the largest per-class drops), which come from the data.
    lines += [f"- {_md_sentence(r)}" for r in report["reasons"]]
    lines += [f"- note: {_md_sentence(n)}" for n in report.get("notes", [])]
    lines += [
        "",
        "| head | champion macro-F1 | challenger macro-F1 | Δ points | 95% interval | champion accuracy | challenger accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for head, h in report["heads"].items():
        a, b = h["champion"], h["challenger"]
        lines.append(
            f"| {head} | {format_f1(a['macro_f1']) if a else '–'} | {format_f1(b['macro_f1'])} | "
            f"{_d(h.get('macro_f1_delta_points'))} | {interval_cell(h.get('macro_f1_delta_interval'))} | "
            f"{_f(a and a['accuracy'])} | {_f(b['accuracy'])} |"
        )
    if joint := report.get("joint"):
        lines += ["", "## Joint dispatch (会办)", ""]
        for who in ("champion", "challenger"):
            said = joint_summary(joint[who]) if joint.get(who) else "not scored on joint tickets."
            lines.append(f"- {who}: {said}")
    for head, h in report["heads"].items():
        lines += [
            "",
            f"## {head}, per class (largest drop first)",
            "",
            "| label | support | champion F1 | challenger F1 | Δ points |",
            "|---|---|---|---|---|",
        ]
        for r in h["per_class"]:
            lines.append(
                f"| {md_text(r['label'])} | {r['support']} | {_f(r['champion_f1'])} | "
                f"{_f(r['challenger_f1'])} | {_d(r['delta_points'])} |"
            )
    return "\n".join(lines) + "\n"


def interval_cell(interval: dict[str, Any] | None) -> str:
    """``-3.1 to +7.5 (noise)``: a table cell for a difference's interval; ``–`` without one."""
    if not interval:
        return "–"
    return f"{interval['low']:+.1f} to {interval['high']:+.1f} ({interval['verdict']})"


def _f(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def _d(x: float | None) -> str:
    return "–" if x is None else f"{x:+.1f}"


def write_comparison(report: dict[str, Any], json_path: Path) -> list[Path]:
    """Write the comparison as JSON and, beside it, Markdown."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    registry.write_json_atomic(json_path, report)
    md = json_path.with_suffix(".md")
    md.write_text(markdown_comparison(report), encoding="utf-8")
    return [json_path, md]


def promote_checked(
    root: str | Path,
    version: str,
    force: bool = False,
    report_dir: str | Path | None = None,
    max_drop_points: float = MAX_DROP_POINTS,
    apply: bool = True,
    rule: str = DEFAULT_RULE,
) -> Decision:
    """Promote ``version`` unless it is worse than the current champion; write the comparison.

    Parameters
    ----------
    root : str or Path
        The model root.
    version : str
        The challenger.
    force : bool
        Promote even when the rule refuses (the report still says why it would have).
    report_dir : str or Path, optional
        Where ``<challenger>-vs-<champion>.json``/``.md`` go; default ``<root>/reports``.
    max_drop_points : float
        See :func:`compare`.
    rule : str
        ``"bootstrap"`` or ``"margin"``, see :func:`compare`.
    apply : bool, default True
        Move the pointer when allowed; ``False`` only writes the comparison (what ``paidan
        retrain`` does without ``--promote-if-better``).

    Returns
    -------
    Decision

    Raises
    ------
    ModelLoadError
        With ``apply``, when ``version``'s files no longer pass the server's check
        (:func:`model.artifact.verify`), ``--force`` or not: ``current`` is left unchanged. The
        same when the frozen set's ``frozen.json`` cannot be read.
    CurrentChangedError
        When another promotion or a rollback moved ``current`` while the challenger was compared
        with the champion: the pointer is left as that one set it, and the promotion must be run
        again against the new champion.
    """
    root = Path(root)
    if version not in registry.versions(root):
        raise ModelLoadError(f"no model version {version!r} under {root}")
    if apply:
        # Its scores may be cached, so nothing below need load it: a damaged file was promoted,
        # running servers kept the old model while `models list` named it current, and the next
        # `paidan serve` failed. The server's check, before the pointer moves (no unpickling).
        try:
            verify(root / version, root)
        except ModelLoadError as e:
            raise ModelLoadError(f"{version} cannot be made current: {e}") from None
    # The evaluation below runs outside the registry lock (it takes a while); the pointer is
    # moved only if it still names this champion (compare-and-swap), see _commit.
    try:
        seen = registry.current_version(root)
    except ModelLoadError as e:
        # A pointer that cannot be read (empty, not UTF-8, a symlink elsewhere) names no champion
        # to compare with; it was "changed from X to None meanwhile", every time, and only
        # `rm current` let a promotion through. --force replaces it.
        if not (force and apply):
            raise ModelLoadError(
                f"{e}; with no current model to compare {version} with, `paidan models promote "
                f"{version} --force` replaces the pointer"
            ) from None
        _commit(root, version, registry.UNREADABLE_POINTER, record=False)
        return Decision(
            version, None, promoted=True, refused=False, reasons=[f"replaced: {e}"], forced=True
        )
    champion = seen if seen in registry.versions(root) else None
    if champion == version:
        if apply and not (root / registry.CURRENT_FILE).is_file():
            # Current only implicitly (the newest version): write the pointer so it stays current.
            _commit(root, version, seen, record=False)
        return Decision(
            version, champion, promoted=False, refused=False, reasons=["already current"]
        )
    if champion is None:
        if apply:
            _commit(root, version, seen)
        return Decision(version, None, promoted=apply, refused=False)
    if sample_default(root, champion):
        # The bundled sample's placeholder holds nothing of the city's: no frozen set, --force or
        # lost-label rule stands between it and the city's own model.
        if apply:
            _commit(root, version, seen)
        return Decision(version, champion, promoted=apply, refused=False, sample_champion=True)
    try:
        eval_set = read_frozen_eval(root)
    except PromotionError as e:
        if not force or not apply:
            return Decision(version, champion, promoted=False, refused=True, reasons=[str(e)])
        _commit(root, version, seen)
        return Decision(version, champion, True, True, [str(e)], forced=True)
    mapping = version_mapping(root, version)
    ensure_scores(root, version, eval_set=eval_set)  # their own figures, for `models list`
    ensure_scores(root, champion, eval_set=eval_set)
    # One task for both: the same true labels (see shared_merged).
    merged_by = {
        who: merged_into_other(read_metadata(root / name), mapping)
        for who, name in (("champion", champion), ("challenger", version))
    }
    shared = shared_merged(merged_by["champion"], merged_by["challenger"])
    # As `models list` scores them (same_truth_scores), both under the challenger's mapping.
    pair = same_truth_scores(root, [champion, version], eval_set, mapping, paired=True)
    challenger_scores, champion_scores = pair[version], pair[champion]
    report = compare(
        champion_scores,
        challenger_scores,
        max_drop_points,
        champion_heads=model_heads(root, champion),
        challenger_heads=model_heads(root, version),
        champion_name=champion,
        challenger_name=version,
        champion_joint_other=joint_only_other(read_metadata(root / champion)),
        rule=rule,
    )
    learnt_by = {
        who: learnt_labels(read_metadata(root / name), mapping)
        for who, name in (("champion", champion), ("challenger", version))
    }
    # The frozen set's true labels, as scored: a merged label no frozen ticket has (one only the
    # dispatchers' decisions name) was said to be "scored under its own name", where none was.
    frozen = eval_set[0]
    scored = {
        head: {
            mask_label(map_label(label_value(head, v), head, mapping))
            for v in frozen[head].fillna("")
        }
        for head in LABELS
        if head in frozen
    }
    for who, other in (("champion", "challenger"), ("challenger", "champion")):
        for head, labels in merged_by[who].items():
            alone = sorted(
                ({mask_label(label) for label in labels} - set(shared.get(head, {})))
                & scored.get(head, set())
            )
            # A label the other model did not learn either (it merged it with no 其他 left to
            # hold it, or never saw it) was said to be learnt by it.
            theirs = {mask_label(label) for label in learnt_by[other].get(head, set())}
            learnt = [label for label in alone if label in theirs]
            if learnt:
                report["notes"].append(
                    f"{head}: merged into {OTHER_LABEL} by the {who}'s training but learnt by "
                    f"the {other}, so scored under their own names for both: {', '.join(learnt)}"
                )
            if neither := [label for label in alone if label not in theirs]:
                report["notes"].append(
                    f"{head}: merged into {OTHER_LABEL} by the {who}'s training and learnt by "
                    f"neither model, so scored under their own names for both: {', '.join(neither)}"
                )
    report["forced"] = bool(apply and force and report["refused"])
    report["applied"] = apply  # False: compared only (`retrain` without --promote-if-better)
    out_dir = Path(report_dir) if report_dir else root / registry.REPORTS_DIR
    paths = write_comparison(report, out_dir / f"{version}-vs-{champion}.json")
    promoted = False
    if apply and (not report["refused"] or force):
        _commit(root, version, seen)
        promoted = True
    elif report["refused"]:
        # Its decisions are then not new to the nightly --if-new-feedback (retrain.feedback_cutoff).
        data = read_metadata(root / version).get("training_data") or {}
        try:
            registry.record_refusal(root, version, champion, data.get("feedback_until"))
        except OSError as e:  # the refusal stands; only its feedback counts as new again
            logger.warning("%s: the refused challenger's feedback will count as new", e)
    logger.info(
        "challenger %s vs champion %s: %s", version, champion, "; ".join(report["reasons"]) or "ok"
    )
    return Decision(
        version,
        champion,
        promoted=promoted,
        refused=report["refused"],
        reasons=report["reasons"],
        comparison=report,
        report_paths=paths,
        forced=report["forced"],
    )


def sample_default(root: str | Path, version: str) -> bool:
    """Whether ``version`` under ``root`` is the default trained from the bundled sample alone."""
    try:
        return is_sample_default(read_metadata(Path(root) / version))
    except ModelLoadError:
        return False


def replace_sample_default(root: str | Path, version: str) -> str | None:
    """Make ``version`` current when the current model is the bundled sample's default.

    ``paidan serve`` on an empty root trains that default and makes it current; the first model
    the administrator then trains into the root replaces it, as it would have become current on a
    root without it. Returns the replaced version, or ``None`` when nothing changed.
    """
    root = Path(root)
    seen = registry.current_version(root)
    if seen is None or seen == version or version not in registry.versions(root):
        return None
    if not sample_default(root, seen) or sample_default(root, version):
        return None
    _commit(root, version, seen)
    return seen


def _commit(
    root: Path,
    version: str,
    champion: str | registry.PointerCheck | None,
    record: bool = True,
) -> None:
    """Make ``version`` current if ``champion`` still is, else say what changed and what to do."""
    try:
        registry.set_current(root, version, record=record, expected=champion)
    except registry.CurrentChangedError as e:
        raise registry.CurrentChangedError(
            f"{e}: run `paidan models promote {version}` again to compare it with the model that "
            "is current now"
        ) from None
