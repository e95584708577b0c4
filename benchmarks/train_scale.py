"""Training on a large history: time, peak memory and model size of ``paidan train``.

The shared real tickets are too few (796 with a department) to show how training grows, so a
history of N tickets (default 30,000) is made, with a fixed seed, from ``department_train.csv``:
each synthetic ticket joins a random subset of one real ticket's sentences to the first two
sentences of another ticket of the same department, keeping the real title and category. The
vocabulary stays that of the real tickets; the labels are learnt almost perfectly, so the
accuracy figures mean nothing here and are not reported. Then, in the same run, each in its own
process, ``paidan train`` with:

* **default**: the default configuration (above ``select_max_rows`` department rows the input
  options are compared on a sample of that many, then the chosen one is cross-validated on
  every row);
* **cv_sample**: ``cv_max_rows`` = 20,000 (``--cv-max-rows``): each head is cross-validated on a
  sample of that many rows and fitted on every row;
* **every_row** (with ``--every-row``): ``select_max_rows`` above N, i.e. every input option
  cross-validated on every row (the behaviour before that setting).

Peak memory is the largest RSS of the process tree (the main process plus its joblib workers,
sampled with psutil every 0.5 s). Writes ``benchmarks/results/train_scale.json``. Run::

    .venv/bin/python benchmarks/train_scale.py [--rows 30000]

The history and the models live in a temporary directory and are deleted at the end; nothing of
the shared data is written into the repository.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "datasets" / "tipdm2020c"
OUT = ROOT / "benchmarks" / "results" / "train_scale.json"
_SENTENCE_END = re.compile(r"(?<=[。！？!?])")

sys.path.insert(0, str(ROOT))

from model.config import ConfigError, TrainingConfig  # noqa: E402

TRAIN = """
import json, sys
from model.config import TrainingConfig
from training.train import train
config = TrainingConfig.from_dict(json.loads(sys.argv[3]))
result = train([sys.argv[1]], sys.argv[2], config=config)
dept = result.metadata["cv_metrics"]["department"]
print(json.dumps({"inputs": result.metadata["heads"]["department"]["inputs"],
                  "cv_rows": dept["n"]}))
"""


def refuse(message: str) -> NoReturn:
    """Exit 2 with ``message`` on one line (a usage error, before any ticket is read)."""
    print(f"train_scale.py: {message}", file=sys.stderr)
    raise SystemExit(2)


def build_config(name: str, overrides: dict[str, Any]) -> TrainingConfig:
    """The defaults with ``overrides``; a value :class:`TrainingConfig` refuses exits 2 in one line.

    Each variant's config was built in its training process, after the history was written, and a
    refused value was a ``ConfigError`` there, reported as "training failed (exit 1)".
    """
    try:
        return TrainingConfig.from_dict(TrainingConfig().to_dict() | overrides)
    except ConfigError as e:
        refuse(f"{name}: {e}")


def history(rows: int, path: Path, seed: int = 0) -> None:
    """Write ``rows`` synthetic tickets made of real tickets' sentences (see the module doc)."""
    df = pd.read_csv(SHARED / "department_train.csv", dtype=str).fillna("")
    df = df[df["department"] != ""]
    by_dept: dict[str, list[tuple[str, list[str], str]]] = {}
    for r in df.itertuples():
        sentences = [s for s in _SENTENCE_END.split(r.text) if s.strip()] or [r.text]
        by_dept.setdefault(r.department, []).append((r.title, sentences, r.category))
    rng = random.Random(seed)
    departments = df["department"].tolist()  # drawn in the real proportions
    out = []
    for i in range(rows):
        dept = rng.choice(departments)
        title, sentences, category = rng.choice(by_dept[dept])
        _, other, _ = rng.choice(by_dept[dept])
        picked = rng.sample(sentences, rng.randint(1, len(sentences)))
        out.append((f"S{i}", title, "".join(picked + other[:2]), dept, category))
    pd.DataFrame(out, columns=["id", "title", "text", "department", "category"]).to_csv(
        path, index=False
    )


def run(
    data: Path, out_dir: Path, overrides: dict[str, Any], config: TrainingConfig
) -> dict[str, Any]:
    """Train with ``config`` in a subprocess; wall time, peak RSS of its process tree, model size."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", TRAIN, str(data), str(out_dir), json.dumps(config.to_dict())],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    parent = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [parent, *parent.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.5)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"training failed (exit {proc.returncode})")
    facts = json.loads(proc.stdout.read().strip().splitlines()[-1])  # type: ignore[union-attr]
    size = sum(f.stat().st_size for f in out_dir.iterdir())
    return {
        "config": overrides,
        "seconds": round(seconds, 1),
        "peak_rss_tree_mb": round(peak / 2**20, 1),
        "model_mb": round(size / 2**20, 1),
        **facts,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--every-row", action="store_true", help="also train with every option on every row"
    )
    args = parser.parse_args(argv)
    if args.rows < 1:
        refuse(f"--rows {args.rows}: must be at least 1")
    variants: dict[str, dict[str, Any]] = {"default": {}, "cv_sample": {"cv_max_rows": 20_000}}
    if args.every_row:
        variants["every_row"] = {"select_max_rows": args.rows + 1}
    configs = {name: build_config(name, o) for name, o in variants.items()}
    if not SHARED.is_dir():
        sys.exit(f"skipped: the real tickets are not here ({SHARED} is absent)")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "history.csv"
        history(args.rows, data)
        runs = {name: run(data, Path(tmp) / name, o, configs[name]) for name, o in variants.items()}
    result = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rows": args.rows,
        "cores": psutil.cpu_count(),
        **runs,
        "time_ratio_default_over_cv_sample": round(
            runs["default"]["seconds"] / runs["cv_sample"]["seconds"], 2
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
