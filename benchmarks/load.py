"""Sustained load: concurrency 64 against ``paidan serve`` on loopback, errors and memory over time.

Starts ``paidan serve`` as a second process on 127.0.0.1 and sends ``POST /v1/route`` from 64
concurrent connections (``httpx2.AsyncClient`` in this process) for ``--duration`` seconds (30 by
default), then keeps going, if needed, until ``--target-requests`` (50,000) have been answered or
``--max-duration`` has passed. It records every request's latency and outcome, and the server's
resident memory (RSS, the whole process tree) after 5,000 requests and at the end.

Reports requests, errors (any non-2xx answer or transport error), p50/p99 latency, throughput and the
RSS figures, and says honestly how many requests were actually measured. The client shares the
machine's cores with the server.

Model: ``--model DIR`` or one trained on the bundled sample (``data/tickets.csv``) into a temporary
model root. Request bodies are the sample's titles and texts (invented tickets).

Writes ``benchmarks/results/load.json``. Run::

    .venv/bin/python benchmarks/load.py [--model DIR] [--concurrency 64] [--duration 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _server import (  # noqa: E402  # benchmarks/_server.py
    base_url,
    free_port,
    paidan_serve,
    server_env,
    start_server,
    stop_server,
)

RESULTS = ROOT / "benchmarks" / "results"
REQUEST_TIMEOUT_S = 30
RSS_EARLY_AT = 5_000  # requests answered when the first RSS reading is taken
ERROR_SAMPLES = 5


def request_pool(path: Path) -> list[dict[str, str]]:
    """Titles and texts of a ticket CSV with ``title`` and ``text`` columns."""
    with open(path, encoding="utf-8", newline="") as f:
        return [
            {"title": row.get("title") or "", "text": row["text"]}
            for row in csv.DictReader(f)
            if (row.get("text") or "").strip()
        ]


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its children (uvicorn workers), in bytes."""
    import psutil

    proc = psutil.Process(pid)
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return total


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[k], 2)


async def hold_load(
    url: str,
    pool: list[dict[str, str]],
    concurrency: int,
    duration_s: float,
    target_requests: int = 0,
    max_duration_s: float | None = None,
    on_count: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """``concurrency`` connections posting tickets for ``duration_s`` seconds, then on until
    ``target_requests`` answers or ``max_duration_s``; every request has a timeout."""
    import httpx2

    latencies: list[float] = []
    errors: list[str] = []
    done = 0
    start = time.perf_counter()
    hold_until = start + duration_s
    stop_at = start + max(duration_s, max_duration_s or duration_s)
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    def more() -> bool:
        now = time.perf_counter()
        return now < hold_until or (done < target_requests and now < stop_at)

    async def worker(offset: int, client: httpx2.AsyncClient) -> None:
        nonlocal done
        i = offset
        while more():
            ticket = pool[i % len(pool)]
            i += concurrency
            t = time.perf_counter()
            try:
                r = await client.post("/v1/route", json=ticket)
                ok = r.status_code == 200
                problem = "" if ok else f"HTTP {r.status_code}: {r.text[:200]}"
            except httpx2.HTTPError as e:
                ok, problem = False, f"{type(e).__name__}: {e}"
            latencies.append((time.perf_counter() - t) * 1000)
            done += 1
            if not ok:
                errors.append(problem)
            if on_count is not None:
                on_count(done)

    async with httpx2.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
        await asyncio.gather(*(worker(k, client) for k in range(concurrency)))
    elapsed = time.perf_counter() - start
    return {
        "concurrency": concurrency,
        "held_s": round(elapsed, 1),
        "requests": done,
        "errors": len(errors),
        "error_samples": errors[:ERROR_SAMPLES],
        "throughput_rps": round(done / elapsed, 1) if elapsed else None,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": round(max(latencies), 2) if latencies else None,
    }


def measure(
    model_dir: Path,
    pool: list[dict[str, str]],
    data_dir: Path,
    concurrency: int,
    duration_s: float,
    target_requests: int,
    max_duration_s: float,
) -> dict[str, Any]:
    """Start the server, hold the load, read its RSS before, after 5,000 and at the end."""
    port = free_port()
    env = server_env(model_dir.parent, data_dir)
    proc, _ = start_server(paidan_serve(model_dir, port), env, port)
    url = base_url(port)
    rss: dict[str, int] = {"before_load": rss_bytes(proc.pid)}

    def on_count(done: int) -> None:
        if done == RSS_EARLY_AT:
            rss[f"after_{RSS_EARLY_AT}"] = rss_bytes(proc.pid)

    try:
        result = asyncio.run(
            hold_load(url, pool, concurrency, duration_s, target_requests, max_duration_s, on_count)
        )
        rss[f"after_{result['requests']}"] = rss_bytes(proc.pid)
        alive = proc.poll() is None
    finally:
        stop_server(proc)
    mib = {k: round(v / 2**20, 1) for k, v in rss.items()}
    early = rss.get(f"after_{RSS_EARLY_AT}")
    end = rss[f"after_{result['requests']}"]
    result["server_alive_at_end"] = alive
    result["rss_mib"] = mib
    result["rss_growth_after_5000"] = round(end / early - 1, 4) if early else None
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="Model directory (default: train the sample)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=30.0, help="Seconds to hold the load")
    parser.add_argument(
        "--target-requests", type=int, default=50_000, help="Keep going until this many answers"
    )
    parser.add_argument(
        "--max-duration",
        type=float,
        default=420.0,
        help="Hard stop, in seconds of load (50,000 answers need ~120 req/s on average)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "load.json")
    args = parser.parse_args()

    from model import resources

    sample = resources.sample_path()
    with tempfile.TemporaryDirectory(prefix="paidan-bench-load-") as tmp_name:
        tmp = Path(tmp_name)
        if args.model:
            model_dir = args.model.resolve()
        else:
            from training.train import train

            print(f"training a model on {sample.name} …", file=sys.stderr)
            model_dir = train([sample], None, model_root=tmp / "models").model_dir
            assert model_dir is not None
        pool = request_pool(sample)
        print(
            f"holding concurrency {args.concurrency} for {args.duration:.0f} s "
            f"(then up to {args.target_requests:,} requests or {args.max_duration:.0f} s) …",
            file=sys.stderr,
        )
        load = measure(
            model_dir,
            pool,
            tmp / "var",
            args.concurrency,
            args.duration,
            args.target_requests,
            args.max_duration,
        )
    growth = load["rss_growth_after_5000"]
    note = None
    if load["requests"] < args.target_requests:
        note = (
            f"only {load['requests']:,} requests fitted in the bounded run of "
            f"{args.max_duration:.0f} s, so RSS is compared after {RSS_EARLY_AT:,} and after "
            f"{load['requests']:,} requests, not after 50,000"
        )
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "server": "paidan serve --workers 1 --no-access-log on 127.0.0.1",
        "client": "httpx2.AsyncClient in the benchmark process, on the same machine",
        "model": {"trained_on": args.model.name if args.model else sample.name},
        "requested": {
            "concurrency": args.concurrency,
            "duration_s": args.duration,
            "target_requests": args.target_requests,
            "max_duration_s": args.max_duration,
        },
        "load": load,
        "checks": {
            "zero_errors": load["errors"] == 0,
            "held_full_duration": load["held_s"] >= args.duration,
            "reached_target_requests": load["requests"] >= args.target_requests,
            "rss_within_10pct_of_rss_after_5000": (
                abs(growth) <= 0.10 if growth is not None else None
            ),
            "rss_compared": f"after {RSS_EARLY_AT:,} vs after {load['requests']:,} requests",
        },
        "note": note,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
