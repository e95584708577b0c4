"""Joint-dispatch advice (会办): how often the suggested co-departments are right, held out.

Neither shared real file records a joint dispatch, so this runs on the bundled sample, whose 36
joint tickets (six kinds, see ``data/README.md``) were written for it. Stratified 5-fold
cross-validation by lead department, repeated with seeds 0 and 1 (``--seeds``): each fold trains
the default model on the other four fifths exactly as ``paidan train`` does, routes the held-out
tickets with ``Router.predict`` (5 similar tickets), and compares the advice of
:func:`model.router.co_dispatch` with each ticket's own co-departments, for the minimums 1, 2 (the
default, ``MIN_CO_TICKETS``) and 3. Per minimum:

* ``precision`` and ``recall`` over (ticket, co-department) pairs
  (:func:`training.evaluate.joint_advice_report`, as ``paidan evaluate`` reports them), on the
  held-out tickets whose suggested lead was right (the advice is for the suggested lead; the
  others are counted as ``wrong_lead_rows``, ``joint_wrong_lead`` of them joint);
* ``joint_any`` / ``joint_exact``: held-out joint tickets whose advice holds at least one of
  their co-departments / exactly their co-departments;
* ``single_with_advice``: held-out single-department tickets that got any advice (false alarms,
  though some of the sample's single tickets are of the same kinds as the joint ones).

Writes ``benchmarks/results/joint.json`` (``--out`` elsewhere, for a trial run). Run::

    .venv/bin/python benchmarks/joint.py      # about 3 minutes on 2 cores
    .venv/bin/python benchmarks/joint.py --out /tmp/joint.json --seeds 0
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from sklearn.model_selection import StratifiedKFold

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model import resources  # noqa: E402
from model.router import MIN_CO_TICKETS  # noqa: E402
from model.tickets import CO_COL, read_tickets  # noqa: E402
from training.evaluate import joint_advice_report  # noqa: E402
from training.train import train_frame  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "joint.json"
SEEDS = (0, 1)
MINIMUMS = (1, 2, 3)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; ``--help`` and a usage error exit before any work."""
    parser = argparse.ArgumentParser(
        prog="joint.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=OUT,
        help=f"where to write the JSON (default: {OUT.relative_to(ROOT)})",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=list(SEEDS),
        help="seeds of the repeated 5-fold splits (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    negative = [s for s in args.seeds if s < 0]
    if negative:
        parser.error(f"--seeds {negative[0]}: must be at least 0")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    df = read_tickets([resources.sample_path()])
    co: list[str] = []
    leads: list[str] = []
    similar: list = []
    true_leads: list[str] = []
    start = time.perf_counter()
    for seed in args.seeds:
        folds = StratifiedKFold(5, shuffle=True, random_state=seed)
        for train_idx, test_idx in folds.split(df, df["department"]):
            router = train_frame(df.iloc[train_idx].reset_index(drop=True), None).router
            test = df.iloc[test_idx]
            for result in router.predict(list(zip(test["title"], test["text"], strict=True))):
                assert result.department is not None
                leads.append(result.department.label)
                similar.append(result.similar)
            co += test[CO_COL].tolist()
            true_leads += test["department"].tolist()
    by_min = {
        str(m): joint_advice_report(co, leads, similar, m, true_leads=true_leads) for m in MINIMUMS
    }
    report = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "data": "data/tickets.csv (bundled sample)",
        "folds": 5,
        "seeds": list(args.seeds),
        "default_minimum": MIN_CO_TICKETS,
        "by_minimum": by_min,
        "seconds": round(time.perf_counter() - start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    for m, c in by_min.items():
        print(
            f"minimum {m}: precision {c['precision']:.3f}, recall {c['recall']:.3f}, "
            f"joint tickets with a right co-department {c['joint_any']}/{c['joint_rows']}, "
            f"exactly right {c['joint_exact']}/{c['joint_rows']}, single tickets with advice "
            f"{c['single_with_advice']}/{c['single_rows']}"
        )
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
