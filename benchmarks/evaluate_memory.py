"""Peak memory and time of ``paidan evaluate`` on a large labelled file (CSV, Parquet or JSONL).

A test file of N tickets (default 300,000) is made, with a fixed seed, from the bundled sample
``data/tickets.csv``: each ticket is a sample ticket with a new id and its text changed (a few
characters inserted, a part cut out, a number appended), so few are alike; 3 % repeat a recent
ticket exactly (id included), as overlapping exports do, a few have no text or an unknown
department. A model is trained on the sample (or ``--model`` is used), and ``paidan evaluate``
scores the file in its own process; so, in the same run, does the baseline: the same evaluation
with the file read whole (``chunk_rows=None``, as every CSV file was read before 2026-12-05, and
every file of another format until later that day). Both reports must be identical. With
``--format parquet`` or ``--format jsonl`` the test file is written in that format (the same
tickets, every value a string). Peak memory is each process's
maximum RSS (``getrusage`` of the children, Linux). The figures of the report mean nothing (the model saw the
sample); they are not the point. Run::

    .venv/bin/python benchmarks/evaluate_memory.py OUT.json [--rows 300000] [--model DIR]
        [--format csv|parquet|jsonl]

The test file, the model and the report live in a temporary directory and are deleted at the end.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "tickets.csv"
# Runs its arguments as a command and prints the command's peak RSS (KB, Linux).
# The baseline: the same evaluation with each file read whole (model, data, report path).
WHOLE_FILE = (
    "import sys; from training.evaluate import evaluate; "
    "evaluate(sys.argv[1], [sys.argv[2]], sys.argv[3], chunk_rows=None)"
)
PEAK_OF_CHILD = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
    "stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def test_file(rows: int, path: Path, seed: int = 7) -> None:
    """Write ``rows`` tickets made from the sample to ``path`` (see the module's docstring)."""
    rng = random.Random(seed)
    with open(SAMPLE, encoding="utf-8", newline="") as f:
        sample = list(csv.DictReader(f))
    fields = list(sample[0])
    recent: list[dict[str, str]] = []
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for i in range(rows):
            if recent and rng.random() < 0.03:
                w.writerow(rng.choice(recent[-5000:]))
                continue
            row = dict(rng.choice(sample))
            text = row["text"]
            at = rng.randrange(len(text) + 1)
            cut = rng.randrange(max(1, len(text) // 3))
            filler = rng.choice("的了是在有我和他这中大来上个国") * rng.randint(1, 3)
            row["text"] = f"{text[:at]}{filler}{text[at + cut :]} 编号{rng.randrange(10**6)}"
            row["id"] = f"X{i:07d}"
            if rng.random() < 0.002:
                row["text"] = row["title"] = ""
            if rng.random() < 0.001:
                row["department"] = "市某某局"
            if rng.random() < 0.05:
                row["category"] = ""
            recent.append(row)
            if len(recent) > 10_000:
                del recent[:5_000]
            w.writerow(row)


def converted(path: Path, fmt: str) -> Path:
    """The CSV test file ``path`` written as ``fmt`` beside it (``csv``: itself), every value a
    string, and the CSV removed."""
    if fmt == "csv":
        return path
    import pandas as pd

    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    out = path.with_suffix(f".{fmt}")
    if fmt == "parquet":
        df.to_parquet(out, index=False)
    else:
        df.to_json(out, orient="records", lines=True, force_ascii=False)
    path.unlink()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="Where to write the JSON figures")
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--model", type=Path, help="A model directory (default: train one)")
    parser.add_argument(
        "--format",
        choices=["csv", "parquet", "jsonl"],
        default="csv",
        help="The test file's format (default: csv)",
    )
    args = parser.parse_args(argv)
    if args.out.resolve().is_relative_to((ROOT / "benchmarks" / "results").resolve()):
        parser.error("write the figures outside benchmarks/results (give another OUT)")
    paidan = [sys.executable, "-m", "paidan"]
    # The code of this checkout, whatever the environment has installed.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "test.csv"
        test_file(args.rows, data)
        data = converted(data, args.format)
        model = args.model
        if model is None:
            model = Path(tmp) / "model"
            subprocess.run(
                [*paidan, "train", str(SAMPLE), "--out", str(model)],
                check=True,
                capture_output=True,
                cwd=tmp,
                env=env,
            )
        # Each through a process of its own whose only child is the evaluation: its peak, not
        # training's.
        runs = {
            "chunked": [*paidan, "evaluate", str(model), str(data), "--report"],
            "whole_file": [sys.executable, "-c", WHOLE_FILE, str(model), str(data)],
        }
        figures: dict[str, Any] = {
            "rows": args.rows,
            "format": args.format,
            "file_mb": round(data.stat().st_size / 2**20, 1),
        }
        reports = {}
        for name, command in runs.items():
            report_path = Path(tmp) / f"{name}.json"
            start = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-c", PEAK_OF_CHILD, *command, str(report_path)],
                check=True,
                capture_output=True,
                text=True,
                cwd=tmp,
                env=env,
            )
            seconds = time.monotonic() - start
            reports[name] = json.loads(report_path.read_text(encoding="utf-8"))
            figures[name] = {
                "seconds": round(seconds, 1),
                "peak_rss_mb": round(int(done.stdout.split()[-1]) / 1024, 1),
            }
        report = reports["chunked"]
        figures |= {
            "scored": report["n"],
            "duplicate_rows": report.get("duplicate_rows", 0),
            "reports_identical": reports["chunked"] == reports["whole_file"],
            "peak_ratio_whole_over_chunked": round(
                figures["whole_file"]["peak_rss_mb"] / figures["chunked"]["peak_rss_mb"], 2
            ),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(figures))
    if not figures["reports_identical"]:
        sys.exit("the chunked and whole-file reports differ")


if __name__ == "__main__":
    main()
