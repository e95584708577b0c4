"""Accuracy on the real tickets: paidan's router against the plain baseline, on the same folds.

Stratified 5-fold cross-validation with fixed seeds on ``../shared/datasets/tipdm2020c``:

* category head, trained and scored on ``category_train.csv``;
* department head, trained on ``department_train.csv`` (which also carries categories) and scored
  on its departments.

Each outer fold trains the product exactly as ``paidan train`` does (validation, rare-label merge,
inner cross-validation that picks the auto threshold on the training part only), then scores the
held-out part. The baseline is jieba tokens → ``TfidfVectorizer()`` → ``LinearSVC()``.

``--remits`` also teaches the department head the departments' remits (``paidan train
--remits``): the 20 department definitions of the data's annotation guide (``annotation-guide.md``,
mostly English, read at run time), in place of the 权责清单 a city would give. ``--taxonomy``
teaches the category head the competition's taxonomy (``taxonomy.csv``) the same way, as category
remits: each third-level entry under one of the seven categories, in place of a centre's 分类目录.
``--remits-file FILE`` (repeatable) teaches both heads the remits of a file as ``paidan train
--remits FILE`` reads it, e.g. ``benchmarks/remits/tipdm_departments_zh.csv``, a 权责清单 in Chinese
written for this data's 20 department labels.

The other file's rows are fit-only (``paidan train --fit-only``): each training part learns from
them, but its inner cross-validation scores its own file's tickets only, as the threshold is then
chosen for the tickets the fold is scored on; ``--no-fit-only`` scores them too, as before
2026-12-07 (``accuracy.json`` and the results before ``accuracy_fit_only.json``).

Writes ``benchmarks/results/accuracy.json`` and ``accuracy.md``. Run::

    .venv/bin/python benchmarks/accuracy.py [--seeds 42 0 7] [--folds 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
import types
import typing
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model import resources  # noqa: E402
from model.config import OTHER_LABEL, ConfigError, TrainingConfig  # noqa: E402
from model.router import Router  # noqa: E402
from model.text import normalize  # noqa: E402
from model.tickets import TicketFileError, read_tickets  # noqa: E402
from training.markdown import md_text  # noqa: E402
from training.metrics import head_report, top_hits, top_k, top_k_accuracy  # noqa: E402
from training.remits import read_remits, usable_remits  # noqa: E402
from training.train import fit_router  # noqa: E402
from training.validate import usable_fit_only, validate  # noqa: E402

SHARED = ROOT.parent / "shared" / "datasets" / "tipdm2020c"
RESULTS = ROOT / "benchmarks" / "results"
TASKS = {"category": "category_train.csv", "department": "department_train.csv"}


def baseline_tokens(titles: list[str], texts: list[str]) -> list[list[str]]:
    """The plain baseline's input: jieba's default cut of title + text."""
    import jieba

    return [jieba.lcut(normalize(f"{t} {x}")) for t, x in zip(titles, texts, strict=True)]


def guide_remits() -> pd.DataFrame:
    """The annotation guide's department definitions as remits (``department``, ``title``,
    ``text``): each ``- 住建: housing …, 物业, …`` item of its list of departments, with the lines
    that continue it."""
    guide = (SHARED / "annotation-guide.md").read_text(encoding="utf-8")
    section = guide.split("functional_department", 1)[1].split("\n\n", 1)[0]
    remits: dict[str, str] = {}
    current = None
    for line in section.splitlines():
        item = re.match(r"\s+- ([^:\s]+): (.*)", line)
        if item:
            current = item.group(1)
            remits[current] = item.group(2)
        elif current and line.startswith(" " * 5):
            remits[current] += " " + line.strip()
    if len(remits) < 2:
        sys.exit(f"{SHARED / 'annotation-guide.md'}: its list of departments was not found")
    return pd.DataFrame(
        {
            "department": list(remits),
            "category": "",
            "title": list(remits),
            "text": list(remits.values()),
        }
    )


def taxonomy_remits(categories: set[str]) -> pd.DataFrame:
    """The competition's taxonomy (``taxonomy.csv``: ``l1``, ``l2``, ``l3``) as category remits,
    as a centre's 分类目录 would be given: one per third-level entry under a first-level category
    of ``categories``, titled by the entry and saying its second- and third-level names."""
    t = pd.read_csv(SHARED / "taxonomy.csv", dtype=str, keep_default_na=False)
    t = t[t["l1"].isin(categories)]
    if t.empty:
        sys.exit(f"{SHARED / 'taxonomy.csv'}: no entry under the categories {sorted(categories)}")
    return pd.DataFrame(
        {
            "department": "",
            "category": t["l1"].to_numpy(),
            "title": t["l3"].to_numpy(),
            "text": (t["l2"] + "，" + t["l3"]).to_numpy(),
        }
    )


def run_baseline(
    tokens: list[list[str]], y: np.ndarray, train: np.ndarray, test: np.ndarray
) -> dict:
    vec = TfidfVectorizer(analyzer=lambda toks: toks)  # defaults, on pre-cut tokens
    t0 = time.perf_counter()
    clf = LinearSVC().fit(vec.fit_transform([tokens[i] for i in train]), y[train])
    fit_s = time.perf_counter() - t0
    scores = clf.decision_function(vec.transform([tokens[i] for i in test]))
    pred = clf.classes_[scores.argmax(axis=1)]
    from sklearn.metrics import f1_score

    return {
        "macro_f1": float(
            f1_score(y[test], pred, labels=sorted(set(y[test])), average="macro", zero_division=0)
        ),
        "accuracy": float((pred == y[test]).mean()),
        "top3_accuracy": top_k_accuracy(y[test], scores, clf.classes_.tolist(), 3),
        "fit_seconds": fit_s,
    }


def run_product(
    df: pd.DataFrame,
    head: str,
    train: np.ndarray,
    test: np.ndarray,
    config: TrainingConfig,
    extra: list[tuple[str, str]],
    extra_labelled: pd.DataFrame | None = None,
    remits: pd.DataFrame | None = None,
    fit_only: bool = True,
) -> dict:
    t0 = time.perf_counter()
    borrowed = None
    if extra_labelled is None or fit_only:  # as paidan train own.csv --fit-only other.csv
        train_df, _ = validate(df.iloc[train], config.min_examples)
        if extra_labelled is not None:
            borrowed, _ = usable_fit_only(extra_labelled, train_df)
    else:  # the other file's rows trained and scored as the fold's own (before --fit-only)
        train_df, _ = validate(pd.concat([df.iloc[train], extra_labelled]), config.min_examples)
    if remits is not None:  # as paidan train --remits: those of the training part's labels
        labels = {h: sorted(set(train_df[h]) - {""}) for h in ("department", "category")}
        remits, _ = usable_remits(remits, labels)
    router, _ = fit_router(
        train_df,
        config,
        resources.default_userdict(),
        resources.default_stopwords(),
        extra,
        remits=remits,
        fit_only=borrowed,
    )
    fit_s = time.perf_counter() - t0
    test_df = df.iloc[test]
    tickets = list(zip(test_df["title"], test_df["text"], strict=True))
    proba, rank = router.scores(tickets)[head]
    y_test = test_df[head].to_numpy(dtype=str)
    h = router.heads[head]
    both_arms = both_rankings(router, head, tickets, rank, y_test)
    # Auto as the router decides it (Ranking.auto): a ticket with no known word, or whose
    # department is the catch-all 其他, goes to a person whatever its confidence.
    ranking = router.rankings(tickets)[head]
    # Macro-F1 over the test part's labels, as the baseline's: a label this fold's training merged
    # into 其他 (too rare in it) is a class the model scores 0 on, for both models alike.
    rep = head_report(
        y_test,
        proba,
        h.labels,
        h.threshold,
        rank=rank,
        scored=set(y_test),
        auto=ranking.auto,
        catch_all=ranking.catch_all,
    )
    per_class = {
        label: {k: c[k] for k in ("f1", "recall", "top3", "support")}
        for label, c in rep["per_class"].items()
        if c["support"]  # a label of the model that this test part lacks says nothing here
    }
    return {k: rep[k] for k in ("n", "macro_f1", "accuracy", "top3_accuracy", "ece", "auto")} | {
        "fit_seconds": fit_s,
        "inputs": router.head_inputs(head),
        "per_class": per_class,
        **both_arms,
    }


def both_rankings(
    router: Router, head: str, tickets: list, rank: np.ndarray, y_test: np.ndarray
) -> dict:
    """With ``category_shares_in_ranking`` on: the fold's top-3 without the category head's
    department shares in ranks 2..k (the same fit, its weight set to 0 for a second scoring),
    the weight chosen, and the test tickets each ranking alone has in its top 3; ``{}`` when the
    head has no shares. ``suggestions_changed`` counts the tickets whose first label differs
    between the two rankings (0: the option moves no suggestion, so no other figure).
    """
    h = router.heads[head]
    if h.category_shares is None:
        return {}
    weight = h.category_share_weight
    h.category_share_weight = 0.0
    try:
        _, plain = router.scores(tickets)[head]
    finally:
        h.category_share_weight = weight
    with_hits = top_hits(y_test, top_k(rank, 3), h.labels)
    plain_hits = top_hits(y_test, top_k(plain, 3), h.labels)
    return {
        "category_share_weight": weight,
        "top3_accuracy_without_category_shares": float(plain_hits.mean()),
        "top3_gained": int((with_hits & ~plain_hits).sum()),
        "top3_lost": int((plain_hits & ~with_hits).sum()),
        "suggestions_changed": int((rank.argmax(axis=1) != plain.argmax(axis=1)).sum()),
    }


def merge_rare(df: pd.DataFrame, head: str, min_examples: int) -> pd.DataFrame:
    """Merge labels too rare to split into folds into 其他, for both models alike."""
    counts = df[head].value_counts()
    rare = counts[counts < min_examples].index
    df = df.copy()
    df.loc[df[head].isin(rare), head] = OTHER_LABEL
    return df


def extra_labelled_rows(task: str, own: pd.DataFrame) -> pd.DataFrame:
    """Categorised rows of the *other* file, added to every training part, their departments blanked.

    They train the category head only: the category task gains the department file's annotated
    categories, and the department task gains the category file's categories, which the category
    head learns from and the department head reads (``stack_category``). Test rows always come
    from the task's own file, and a message that also appears in it is left out, so no test text
    can leak into training. They are fit-only rows (``paidan train --fit-only``): learnt from,
    never scored in the inner cross-validation that chooses the threshold, the prior shift and
    the confidence map; ``--no-fit-only`` scores them as the fold's own rows, as before.
    """
    other = read_tickets([SHARED / TASKS["department" if task == "category" else "category"]])
    other["department"] = ""
    seen = set(own["text"].map(normalize))
    keep = (other["category"].str.strip() != "") & ~other["text"].map(normalize).isin(seen)
    return other[keep]


def evaluate_task(
    task: str,
    seeds: list[int],
    config: TrainingConfig,
    extra: list[tuple[str, str]],
    folds: int,
    use_extra_labels: bool = True,
    remits: pd.DataFrame | None = None,
    fit_only: bool = True,
) -> dict:
    df = read_tickets([SHARED / TASKS[task]])
    extra_labelled = extra_labelled_rows(task, df) if use_extra_labels else None
    df = merge_rare(
        df[df[task].str.strip() != ""].reset_index(drop=True), task, config.min_examples
    )
    y = df[task].to_numpy(dtype=str)
    tokens = baseline_tokens(df["title"].tolist(), df["text"].tolist())
    runs = []
    for seed in seeds:
        skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        for k, (train, test) in enumerate(skf.split(df, y)):
            base = run_baseline(tokens, y, train, test)
            prod = run_product(
                df,
                task,
                train,
                test,
                config,
                extra,
                extra_labelled,
                remits,
                fit_only,
            )
            runs.append({"seed": seed, "fold": k, "baseline": base, "paidan": prod})
            # With category_shares_in_ranking, both arms' top-3 as each fold ends (a long run's
            # figures so far, should it be stopped).
            arms = (
                f"; top-3 {prod['top3_accuracy']:.4f} with the category shares (w "
                f"{prod['category_share_weight']:g}), {prod['top3_accuracy_without_category_shares']:.4f}"
                f" without, +{prod['top3_gained']} -{prod['top3_lost']} tickets, suggestions "
                f"changed {prod['suggestions_changed']}"
                if "top3_accuracy_without_category_shares" in prod
                else ""
            )
            print(
                f"{task} seed {seed} fold {k}: paidan {prod['macro_f1']:.3f} baseline {base['macro_f1']:.3f}"
                f" (paidan reads {'+'.join(prod['inputs'])}){arms}",
                file=sys.stderr,
            )
    return {
        "rows": len(df),
        "labels": len(set(y)),
        "extra_training_rows": 0 if extra_labelled is None else len(extra_labelled),
        **({"extra_rows_fit_only": fit_only} if extra_labelled is not None else {}),
        "runs": runs,
        "summary": summarise(runs),
    }


def summarise(runs: list[dict]) -> dict:
    out: dict = {}
    for model in ("baseline", "paidan"):
        keys = ["macro_f1", "accuracy", "top3_accuracy", "fit_seconds"] + (
            ["ece"] if model == "paidan" else []
        )
        out[model] = {k: _mean_std([r[model][k] for r in runs]) for k in keys}
        if model == "paidan":
            out[model] |= auto_summary(runs) | shares_summary(runs)
    out["gain_macro_f1"] = out["paidan"]["macro_f1"]["mean"] - out["baseline"]["macro_f1"]["mean"]
    # paidan's per-label figures, averaged over the runs whose test part holds the label.
    per_run = [r["paidan"]["per_class"] for r in runs]
    out["paidan_per_class"] = {}
    for label in sorted({label for classes in per_run for label in classes}):
        tested = [classes[label] for classes in per_run if label in classes]
        out["paidan_per_class"][label] = {
            key: float(np.mean([c[key] for c in tested]))
            for key in ("f1", "recall", "top3", "support")
        }
    return out


def shares_summary(runs: list[dict]) -> dict:
    """The two arms of a ``category_shares_in_ranking`` run (:func:`both_rankings`): top-3
    without the shares, per seed and overall, the folds where the shares did better, worse or the
    same, tickets gained and lost, the weights chosen; ``{}`` for a run without them."""
    if not runs or any("top3_accuracy_without_category_shares" not in r["paidan"] for r in runs):
        return {}
    p = [r["paidan"] for r in runs]
    with_, without = (
        [x["top3_accuracy"] for x in p],
        [x["top3_accuracy_without_category_shares"] for x in p],
    )
    seeds = sorted({r["seed"] for r in runs}, key=[r["seed"] for r in runs].index)
    return {
        "top3_accuracy_without_category_shares": _mean_std(without),
        "category_shares": {
            "folds_better": sum(a > b for a, b in zip(with_, without, strict=True)),
            "folds_worse": sum(a < b for a, b in zip(with_, without, strict=True)),
            "folds_same": sum(a == b for a, b in zip(with_, without, strict=True)),
            "tickets_gained": sum(x["top3_gained"] for x in p),
            "tickets_lost": sum(x["top3_lost"] for x in p),
            "suggestions_changed": sum(x["suggestions_changed"] for x in p),
            "weights": [x["category_share_weight"] for x in p],
            "per_seed": {
                str(seed): {
                    "with": float(
                        np.mean(
                            [
                                x["top3_accuracy"]
                                for r, x in zip(runs, p, strict=True)
                                if r["seed"] == seed
                            ]
                        )
                    ),
                    "without": float(
                        np.mean(
                            [
                                x["top3_accuracy_without_category_shares"]
                                for r, x in zip(runs, p, strict=True)
                                if r["seed"] == seed
                            ]
                        )
                    ),
                }
                for seed in seeds
            },
        },
    }


def auto_summary(runs: list[dict]) -> dict:
    """paidan's auto precision and coverage over the runs.

    A run whose threshold no test row reached dispatched nothing automatically: its auto precision
    is undefined (``None``; results written before that was so hold 1.0 at coverage 0). The mean
    precision is over the runs that dispatched something, ``auto_precision_pooled`` is the share
    of right decisions among all their auto rows, and ``auto_empty_runs`` counts the others (of
    ``runs``), so an option that leaves nothing to automate on most folds cannot pass for a
    precise one.
    """
    autos = [r["paidan"]["auto"] for r in runs]
    dispatched = [
        (a, _test_rows(r))
        for a, r in zip(autos, runs, strict=True)
        if a["coverage"] > 0 and a["precision"] is not None
    ]
    auto_rows = sum(a["coverage"] * n for a, n in dispatched)
    return {
        "auto_precision": _mean_std([a["precision"] for a, _ in dispatched]),
        "auto_precision_pooled": (
            sum(a["precision"] * a["coverage"] * n for a, n in dispatched) / auto_rows
            if auto_rows
            else None
        ),
        "auto_empty_runs": len(runs) - len(dispatched),
        "runs": len(runs),
        "auto_coverage": _mean_std([a["coverage"] for a in autos]),
    }


def _test_rows(run: dict) -> float:
    """Test rows of a run: its ``n``; for older results the sum of its per-label supports, or 1
    (folds of one split differ by a row at most) where those were not kept either."""
    p = run["paidan"]
    if "n" in p:
        return p["n"]
    return sum(c["support"] for c in p["per_class"].values()) if "per_class" in p else 1


def _mean_std(values: list[float]) -> dict:
    if not values:
        return {"mean": None, "std": None}
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def markdown(result: dict) -> str:
    lines = [
        f"Stratified {result['folds']}-fold CV, seeds {result['seeds']}, {result['date']}, {result['machine']}.",
        "",
        "| task | rows | model | macro-F1 | accuracy | top-3 | ECE | auto precision | auto coverage |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task, r in result["tasks"].items():
        for model in ("baseline", "paidan"):
            s = r["summary"][model]

            def f(key: str, s: dict = s) -> str:
                if key not in s or s[key]["mean"] is None:
                    return "–"
                return f"{s[key]['mean']:.3f} ± {s[key]['std']:.3f}"

            auto = f("auto_precision")
            if s.get("auto_empty_runs"):
                pooled = s["auto_precision_pooled"]
                auto += (
                    f" ({'' if pooled is None else f'pooled {pooled:.3f}; '}"
                    f"{s['auto_empty_runs']} of {s['runs']} runs dispatched nothing)"
                )
            lines.append(
                f"| {task} | {r['rows']} | {model} | {f('macro_f1')} | {f('accuracy')} | {f('top3_accuracy')} "
                f"| {f('ece')} | {auto} | {f('auto_coverage')} |"
            )
    for task, r in result["tasks"].items():
        s = r["summary"]["paidan"]
        if "category_shares" not in s:
            continue
        c, w = s["category_shares"], s["top3_accuracy_without_category_shares"]
        lines += [
            "",
            f"{task} top-3 with the category head's department shares in ranks 2..k "
            f"{s['top3_accuracy']['mean']:.4f}, without {w['mean']:.4f} (same fits); better on "
            f"{c['folds_better']} folds, worse on {c['folds_worse']}, the same on "
            f"{c['folds_same']}; {c['tickets_gained']} tickets gained, {c['tickets_lost']} lost; "
            f"suggestions changed {c['suggestions_changed']}; weights chosen {c['weights']}; per "
            "seed (with, without): "
            + ", ".join(
                f"{seed} {v['with']:.4f} {v['without']:.4f}" for seed, v in c["per_seed"].items()
            )
            + ".",
        ]
    for task, r in result["tasks"].items():
        per_class = r["summary"].get("paidan_per_class", {})
        if not per_class:
            continue
        lines += [
            "",
            f"paidan per {task}, mean over the runs (test rows per run in `support`), worst F1 first:",
            "",
            "| label | F1 | recall | in top 3 | support |",
            "|---|---|---|---|---|",
        ]
        for label, c in sorted(per_class.items(), key=lambda kv: kv[1]["f1"]):
            lines.append(
                f"| {md_text(label)} | {c['f1']:.2f} | {c['recall']:.2f} | {c['top3']:.2f} | {c['support']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def remits_file(path: Path) -> pd.DataFrame:
    """A ``--remits-file``, read as ``paidan train --remits`` reads it, or exit 2 saying why."""
    try:
        return read_remits(path)
    except TicketFileError as e:
        refuse(f"--remits-file: {e}")


def refuse(message: str) -> typing.NoReturn:
    """Exit 2 with ``message`` on one line: a usage error, as argparse's own (before any work)."""
    print(f"accuracy.py: {message}", file=sys.stderr)
    raise SystemExit(2)


def parse_override(key: str, value: str, defaults: dict) -> object:
    """A ``--set KEY=VALUE`` value, typed like the field (``bool("False")`` would be True)."""
    if key not in defaults:
        refuse(f"--set {key}: not a TrainingConfig field ({', '.join(defaults)})")
    hint = typing.get_type_hints(TrainingConfig)[key]
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    members = typing.get_args(hint) if union else (hint,)
    if value.lower() == "none":
        if type(None) not in members:
            refuse(f"--set {key}=None: {key} cannot be None")
        return None
    kind = next(k for k in members if k is not type(None))
    if typing.get_origin(kind) is typing.Literal:
        choices = typing.get_args(kind)
        if value not in choices:
            refuse(f"--set {key}={value}: expected one of {', '.join(map(str, choices))}")
        return value
    if kind is bool:
        if value.lower() not in ("true", "false"):
            refuse(f"--set {key}={value}: expected true or false")
        return value.lower() == "true"
    try:
        return kind(value)
    except ValueError:
        refuse(f"--set {key}={value}: expected {kind.__name__} (default {defaults[key]!r})")


def build_config(items: list[str]) -> TrainingConfig:
    """The configuration of ``--set KEY=VALUE …``: the defaults with those fields replaced.

    An item without ``=``, a key given twice and a value :class:`TrainingConfig` refuses exit
    with one line naming it (they were a traceback, the last of the two, and a silent adjustment
    or a scikit-learn traceback after the tickets were read).
    """
    defaults = TrainingConfig().to_dict()
    overrides: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            refuse(f"--set {item}: expected KEY=VALUE, e.g. --set C=0.5")
        if key in overrides:
            refuse(f"--set {item}: {key} is already set ({key}={overrides[key]})")
        overrides[key] = value
    typed = {k: parse_override(k, v, defaults) for k, v in overrides.items()}
    try:
        return TrainingConfig.from_dict(defaults | typed)
    except ConfigError as e:
        refuse(f"--set: {e}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument(
        "--no-unlabelled",
        action="store_true",
        help="do not widen the vocabulary with unlabelled.csv",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "accuracy.json")
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument(
        "--no-extra-labels",
        action="store_true",
        help="train each task on its own file only (no labels borrowed from the other file)",
    )
    parser.add_argument(
        "--no-fit-only",
        action="store_true",
        help="score the rows borrowed from the other file in the inner cross-validation too, as "
        "the fold's own (before paidan train --fit-only): the threshold, prior shift and "
        "confidence map are then chosen on both files' tickets",
    )
    parser.add_argument(
        "--remits",
        action="store_true",
        help="teach the department head the annotation guide's department definitions, as "
        "paidan train --remits does",
    )
    parser.add_argument(
        "--taxonomy",
        action="store_true",
        help="teach the category head taxonomy.csv's entries under each category as remits, as "
        "paidan train --remits does with a row of category and text",
    )
    parser.add_argument(
        "--remits-file",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="teach the heads the remits of FILE, read as paidan train --remits reads it "
        "(repeatable)",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other tasks already in --out (same seeds, folds and configuration), so "
        "tasks can run in separate processes",
    )
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="override a TrainingConfig field, e.g. --set C=1.0 word_ngram_max=1",
    )
    args = parser.parse_args()
    config = build_config(args.set)
    files = [remits_file(path) for path in args.remits_file]  # refused before any work
    if not SHARED.is_dir():
        sys.exit(f"skipped: the real tickets are not here ({SHARED} is absent)")
    extra: list[tuple[str, str]] = []
    if not args.no_unlabelled:
        u = read_tickets([SHARED / "unlabelled.csv"])
        extra = list(zip(u["title"], u["text"], strict=True))
    parts = [guide_remits()] if args.remits else []
    if args.taxonomy:
        categories = set(read_tickets([SHARED / TASKS["category"]])["category"]) - {""}
        parts.append(taxonomy_remits(categories))
    parts.extend(files)
    remits = pd.concat(parts, ignore_index=True) if parts else None
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}",
        "seeds": args.seeds,
        "folds": args.folds,
        "config": config.to_dict(),
        "unlabelled_rows": len(extra),
        # The other file's rows, where borrowed: learnt from but not scored in the inner
        # cross-validation (paidan train --fit-only), or scored as the fold's own (False).
        **({} if args.no_extra_labels else {"extra_rows_fit_only": not args.no_fit_only}),
        **({"remits": len(remits)} if remits is not None else {}),
        **(
            {
                "remit_sources": ["guide"] * args.remits
                + ["taxonomy"] * args.taxonomy
                + [p.name for p in args.remits_file]
            }
            if parts
            else {}
        ),
        "tasks": {
            task: evaluate_task(
                task,
                args.seeds,
                config,
                extra,
                args.folds,
                not args.no_extra_labels,
                remits,
                not args.no_fit_only,
            )
            for task in args.tasks
        },
    }
    if args.merge and args.out.exists():
        stored = json.loads(args.out.read_text(encoding="utf-8"))
        same = (
            "seeds",
            "folds",
            "config",
            "unlabelled_rows",
            "extra_rows_fit_only",
            "remits",
            "remit_sources",
        )
        if any(stored.get(k) != result.get(k) for k in same):
            sys.exit(f"--merge: {args.out} was run with other seeds, folds or configuration")
        result["tasks"] = stored["tasks"] | result["tasks"]
        result["tasks"] = {t: result["tasks"][t] for t in TASKS if t in result["tasks"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))


if __name__ == "__main__":
    main()
