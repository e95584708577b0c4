"""Run every benchmark in one go and write ``benchmarks/results/summary.json`` and ``summary.md``.

Steps, each a subprocess with its own JSON in ``benchmarks/results/`` (a step whose script does not
exist, or that ends with a ``skipped: …`` line, e.g. without ``../shared``, is skipped, and the
summary says so):

==============  ====================================================================================
accuracy-jieba  ``accuracy.py --set tokenizer=jieba``: paidan and the plain baseline, same folds
accuracy-rjieba ``accuracy.py --set tokenizer=rjieba``: the compiled tokenizer backend, same folds
fasttext-f1     ``peers.py fasttext-f1``: fastText on the same folds
agreement       ``peers.py agreement``: rjieba's tokens against jieba's
search          ``peers.py search``: similar-ticket search at 100,000 stored tickets
peers           ``peers.py speed``: training time, latency, throughput, RSS and size of every peer
serve           ``serve.py``: HTTP latency/throughput against the naive FastAPI app, cold start
batch           ``batch.py``: ``paidan label`` against the naive loop, peak memory
load            ``load.py``: sustained concurrency-64 load
==============  ====================================================================================

``--quick`` runs fewer folds, calls and rows (the summary records it); ``--skip`` leaves steps out
(their earlier JSON, if any, is reported with its own date and marked as not from this run).
Run::

    .venv/bin/python benchmarks/run_all.py [--quick] [--skip batch load]    # or: make bench
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
RESULTS = BENCH / "results"
PY = sys.executable
LENGTHS = ("50", "400", "2000")
DEFAULT_BACKEND = "rjieba"  # TrainingConfig().tokenizer; read again below when importable


def steps(quick: bool) -> dict[str, tuple[str, list[str], Path]]:
    """name -> (script, arguments, result file)."""
    folds = ["--folds", "3"] if quick else []
    r = RESULTS
    return {
        "accuracy-jieba": (
            "accuracy.py",
            [*folds, "--set", "tokenizer=jieba", "--out", str(r / "accuracy_jieba.json")],
            r / "accuracy_jieba.json",
        ),
        "accuracy-rjieba": (
            "accuracy.py",
            [*folds, "--set", "tokenizer=rjieba", "--out", str(r / "accuracy_rjieba.json")],
            r / "accuracy_rjieba.json",
        ),
        "fasttext-f1": ("peers.py", ["fasttext-f1", *folds], r / "fasttext_accuracy.json"),
        "agreement": ("peers.py", ["agreement"], r / "tokenizer_agreement.json"),
        "search": (
            "peers.py",
            ["search", *(["--queries", "50"] if quick else [])],
            r / "search.json",
        ),
        "peers": (
            "peers.py",
            ["speed", *(["--calls", "100", "--batch", "2000", "--repeats", "1"] if quick else [])],
            r / "peers.json",
        ),
        "serve": (
            "serve.py",
            ["--requests", "300", "--cold-starts", "3"] if quick else [],
            r / "serve.json",
        ),
        "batch": (
            "batch.py",
            ["--rows", "10000", "--naive-sample", "500"] if quick else [],
            r / "batch.json",
        ),
        "load": ("load.py", ["--duration", "10"] if quick else [], r / "load.json"),
    }


def run_step(name: str, script: str, args: list[str], out: Path, log_dir: Path) -> dict[str, Any]:
    path = BENCH / script
    if not path.is_file():
        return {"status": "skipped", "note": f"benchmarks/{script} does not exist yet"}
    cmd = [PY, str(path), *args]
    t0 = time.perf_counter()
    log = log_dir / f"{name}.log"
    with open(log, "w", encoding="utf-8") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, check=False)
    seconds = round(time.perf_counter() - t0, 1)
    rel = " ".join(["python", str(path.relative_to(ROOT)), *args]).replace(str(ROOT) + "/", "")
    status = "ok" if proc.returncode == 0 and out.is_file() else f"failed (exit {proc.returncode})"
    skipped = skip_reason(log) if proc.returncode != 0 else None
    print(f"[{name}] {skipped or status} in {seconds} s", file=sys.stderr)
    if skipped:
        # A step whose data is absent (../shared beside a fresh clone) did not fail.
        return {"status": "skipped", "note": skipped, "seconds": seconds, "command": rel}
    return {"status": status, "seconds": seconds, "command": rel, "log": str(log)}


def skip_reason(log: Path) -> str | None:
    """The step's own "skipped: …" line (its last; e.g. the real tickets are absent), if any."""
    try:
        lines = [x.strip() for x in log.read_text(encoding="utf-8").splitlines() if x.strip()]
    except OSError:
        return None
    return lines[-1] if lines and lines[-1].startswith("skipped: ") else None


def load_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def get(d: Any, *keys: Any) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def comparison(res: dict[str, Any]) -> dict[str, Any]:
    """One row per peer: accuracy on both tasks, training time, latency, throughput, RSS, size."""
    acc = {b: res.get(f"accuracy-{b}") for b in ("jieba", "rjieba")}
    ft = res.get("fasttext-f1")
    peers = get(res.get("peers"), "peers") or {}
    rows: dict[str, Any] = {}
    for peer in ("paidan-jieba", "paidan-rjieba", "baseline", "fasttext"):
        f1: dict[str, Any] = {}
        for task in ("category", "department"):
            if peer.startswith("paidan"):
                f1[task] = get(
                    acc[peer.split("-")[1]], "tasks", task, "summary", "paidan", "macro_f1"
                )
            elif peer == "baseline":
                # The baseline is identical in both accuracy runs; take the jieba run's.
                f1[task] = get(acc["jieba"], "tasks", task, "summary", "baseline", "macro_f1")
            else:
                f1[task] = get(ft, "tasks", task, "macro_f1")
        p = peers.get(peer, {})
        rows[peer] = {
            "macro_f1": f1,
            "train_seconds": p.get("train_seconds"),
            "latency": p.get("latency"),
            **(
                {"latency_labels_only": p["latency_labels_only"]}
                if "latency_labels_only" in p
                else {}
            ),
            "batch_tickets_per_s": p.get("batch_tickets_per_s"),
            "peak_rss_mb": p.get("peak_rss_mb"),
            "rss_before_model_mb": p.get("rss_before_model_mb"),
            "size_mb": p.get("size_mb"),
            "load_and_warm_up_s": p.get("load_and_warm_up_s"),
        }
    return rows


def targets(res: dict[str, Any], rows: dict[str, Any], backend: str) -> list[dict[str, Any]]:
    out = []
    ours, base = rows.get(f"paidan-{backend}", {}), rows.get("baseline", {})
    for length in LENGTHS:
        a = get(ours, "latency", length, "p50_ms")
        b = get(base, "latency", length, "p50_ms")
        ratio = round(b / a, 2) if a and b else None
        out.append(
            {
                "figure": f"single-ticket in-process p50, {length} chars: baseline ÷ paidan",
                "target": ">= 3",
                "measured": ratio,
                "met": ratio is not None and ratio >= 3,
            }
        )
    c32 = get(res.get("serve"), "vs_naive")
    if c32:
        best = max(
            (
                (v.get("c32", {}).get("throughput_x_naive") or 0, k)
                for k, v in c32.items()
                if isinstance(v, dict)
            ),
            default=(None, None),
        )
        p99 = None
        for lvl in get(res.get("serve"), "servers", best[1], "levels") or []:
            if lvl.get("concurrency") == 32:
                p99 = lvl.get("p99_ms")
        # httpx in the benchmark's own process saturates a core before the servers do (serve.py):
        # the figure names its client, so a run without wrk cannot pass for one with it.
        client = str(get(res.get("serve"), "client") or "unknown client").split(",")[0]
        client = client.split(".")[0]  # "wrk" or "httpx"
        out.append(
            {
                "figure": f"HTTP throughput at concurrency 32 ÷ naive app ({best[1]}, client "
                f"{client}), and its p99",
                "target": ">= 2, p99 < 50 ms",
                "measured": {"throughput_x_naive": best[0], "p99_ms": p99},
                "met": bool(best[0] and best[0] >= 2 and p99 is not None and p99 < 50),
            }
        )
    batch = res.get("batch")
    if batch:
        speedup = batch.get("speedup_vs_naive")
        peak = get(batch, "batch", "peak_pss_mb")
        out.append(
            {
                "figure": "batch labelling ÷ naive loop, and peak memory (PSS, process tree)",
                "target": ">= 5, < 1024 MB",
                "measured": {"speedup": speedup, "peak_pss_mb": peak},
                "met": bool(speedup and speedup >= 5 and peak is not None and peak < 1024),
            }
        )
    for task in ("category", "department"):
        a = get(ours, "macro_f1", task, "mean")
        b = get(base, "macro_f1", task, "mean")
        c = get(rows.get("fasttext"), "macro_f1", task, "mean")
        out.append(
            {
                "figure": f"macro-F1, {task}: paidan vs baseline (and fastText)",
                "target": ">= baseline",
                "measured": {"paidan": a, "baseline": b, "fasttext": c},
                "met": a is not None and b is not None and a >= b,
            }
        )
    cold = get(res.get("serve"), "cold_start")
    if cold:
        ready, what = cold.get("median_s"), f"median of {len(cold.get('runs_s') or [])} starts"
    else:  # serve.json written before the repeated starts: the first start of the servers
        first = get(res.get("serve"), "servers", "paidan_serve_workers_1", "startup_to_ready_s")
        ready, what = first, "one start"
    if ready is not None:
        out.append(
            {
                "figure": f"cold start of paidan serve to /readyz (seconds, one worker, {what})",
                "target": "< 3",
                "measured": ready,
                "met": ready < 3,
            }
        )
    return out


def fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, dict) and "mean" in v:
        return f"{v['mean']:.{digits}f} ± {v['std']:.{digits}f}"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1 else f"{v:.1f}"
    return str(v)


def like_for_like(rows: dict[str, Any], backend: str) -> dict[str, float | None]:
    """Baseline ÷ paidan p50 per length for paidan's labels alone (``latency_labels_only``): what
    the baseline's one label compares with, beside the targets' whole answer; ``{}`` without it."""
    ours, base = rows.get(f"paidan-{backend}", {}), rows.get("baseline", {})
    if not ours.get("latency_labels_only"):
        return {}
    out: dict[str, float | None] = {}
    for length in LENGTHS:
        a = get(ours, "latency_labels_only", length, "p50_ms")
        b = get(base, "latency", length, "p50_ms")
        out[length] = round(b / a, 2) if a and b else None
    return out


def markdown(summary: dict[str, Any]) -> str:
    m = summary["machine"]
    lines = [
        f"# Benchmarks, {summary['date']}",
        "",
        f"{m['cpus']} CPUs ({m['cpu']}), Python {m['python']}, {m['platform']}; load average "
        f"{summary['load_average_start']} at the start, {summary['load_average_end']} at the end. "
        f"{'Quick run (fewer folds, calls and rows). ' if summary['quick'] else ''}"
        f"Default tokenizer backend: {summary['default_backend']}.",
        "",
        "| peer | macro-F1 category | macro-F1 department | train s | p50/p99 ms @50 | @400 | @2000 "
        "| batch tickets/s | peak RSS MB | size MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for peer, r in summary["comparison"].items():
        lat = [
            f"{fmt(get(r, 'latency', n, 'p50_ms'))} / {fmt(get(r, 'latency', n, 'p99_ms'))}"
            for n in LENGTHS
        ]
        lines.append(
            f"| {peer} | {fmt(r['macro_f1']['category'])} | {fmt(r['macro_f1']['department'])} "
            f"| {fmt(r['train_seconds'])} | {' | '.join(lat)} | {fmt(r['batch_tickets_per_s'])} "
            f"| {fmt(r['peak_rss_mb'])} | {fmt(r['size_mb'])} |"
        )
    like = like_for_like(summary["comparison"], summary["default_backend"])
    if like:
        lines += [
            "",
            "For comparison, not a target: baseline ÷ paidan's labels alone (`Router.predict` "
            "with `similar_k=0, explain=False`: both heads' labels, scores and decisions, without "
            "evidence or similar tickets), p50 at "
            + " / ".join(LENGTHS)
            + " chars: "
            + " / ".join(fmt(like[n]) for n in LENGTHS)
            + ".",
        ]
    lines += ["", "| target | goal | measured | met |", "|---|---|---|---|"]
    for t in summary["targets"]:
        measured = t["measured"]
        if isinstance(measured, dict):
            measured = ", ".join(f"{k} {fmt(v)}" for k, v in measured.items())
        lines.append(
            f"| {t['figure']} | {t['target']} | {fmt(measured)} | {'yes' if t['met'] else 'no'} |"
        )
    lines += ["", "| step | status | seconds |", "|---|---|---|"]
    for name, s in summary["steps"].items():
        lines.append(
            f"| {name} | {s['status']}{' — ' + s['note'] if s.get('note') else ''} | {fmt(s.get('seconds'))} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer folds, calls and rows")
    all_steps = list(steps(False))
    parser.add_argument("--skip", nargs="*", default=[], choices=all_steps, metavar="STEP")
    parser.add_argument("--only", nargs="*", default=None, choices=all_steps, metavar="STEP")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    try:
        from model.config import TrainingConfig

        backend = TrainingConfig().tokenizer
    except ImportError:
        backend = DEFAULT_BACKEND
    serving = "serve" not in args.skip and (args.only is None or "serve" in args.only)
    if serving and shutil.which("wrk") is None:
        # Found out at the start, not 20 minutes in: the fallback client measures itself.
        print(
            "warning: wrk is not installed (apt-get install wrk): the serve step falls back to "
            "an httpx client in its own process, which saturates a core before the servers do",
            file=sys.stderr,
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    # Step logs stay out of the repository (they are for debugging a failed step).
    log_dir = Path(tempfile.gettempdir()) / "paidan-bench-logs"
    log_dir.mkdir(exist_ok=True)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    load_start = [round(x, 2) for x in os.getloadavg()]
    run_info: dict[str, Any] = {}
    results: dict[str, Any] = {}
    previous = (load_json(RESULTS / "summary.json") or {}).get("steps", {})
    for name, (script, step_args, out) in steps(args.quick).items():
        if name in args.skip or (args.only is not None and name not in args.only):
            old = load_json(out)
            when = (old or {}).get("date") or (old or {}).get("when")
            before = previous.get(name, {})
            if old and before.get("status") == "ok" and before.get("result_date") == when:
                # Same result file as an earlier run_all reported: keep that run's record.
                run_info[name] = before | {"note": f"from the run_all of {before.get('run')}"}
            else:
                run_info[name] = {
                    "status": "not run",
                    "note": f"reusing the result of {when}" if old else "no earlier result",
                }
            results[name] = old
            continue
        run_info[name] = run_step(name, script, step_args, out, log_dir)
        results[name] = load_json(out) if run_info[name]["status"] == "ok" else None
        run_info[name]["run"] = started
        run_info[name]["result_date"] = (results[name] or {}).get("date") or (
            results[name] or {}
        ).get("when")
    rows = comparison(results)
    summary = {
        "date": started,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average_start": load_start,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "quick": args.quick,
        "default_backend": backend,
        "steps": run_info,
        "comparison": rows,
        "tokenizer_agreement": results.get("agreement"),
        "similar_search": results.get("search"),
        "targets": targets(results, rows, backend),
        "labels_only_x_baseline": like_for_like(rows, backend),
    }
    (RESULTS / "summary.json").write_text(
        json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    md = markdown(summary)
    (RESULTS / "summary.md").write_text(md, encoding="utf-8")
    print(md)


if __name__ == "__main__":
    main()
