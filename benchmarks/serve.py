"""Serving latency and throughput: ``paidan serve`` against a naive FastAPI app, in one run.

Measures, on this machine:

* **in-process**: ``router.predict([ticket])`` for one ticket at a time (p50/p99 in ms), the floor
  that any server adds to;
* **paidan serve** started as a second process on 127.0.0.1 (with ``--workers 1`` and with
  ``--workers`` = the number of cores), loaded over HTTP with ``POST /v1/route`` at concurrency 1, 8
  and 32: p50/p99 latency seen by the client and requests per second;
* **naive**: a FastAPI app, also a second process with one worker, that calls the same
  ``router.predict`` inside ``async def`` (the event loop blocks during every prediction), under the
  same load;
* **cold start**: seconds from starting ``paidan serve --workers 1`` to its first 200 from
  ``/readyz``, over ``--cold-starts`` fresh processes (5), reported with their median. One start
  is not a measurement on a shared VM: consecutive starts of the same server have differed by
  1.7×.

The load client is `wrk <https://github.com/wg/wrk>`_ (Debian's ``wrk`` package) with
``benchmarks/wrk_route.lua``: one thread, ``concurrency`` keep-alive connections, a bounded number of
seconds per level (``--seconds``) and a timeout on every request, so the run always ends. It shares
the machine's cores with the server but takes about 3% of one at 2,000 requests/s. Without wrk the
client is ``httpx2.AsyncClient`` in this process, which at concurrency 32 needs a whole core of its
own (its CPU time per request grows with the number of connections), so the servers are then
measured through a client that is itself the bottleneck; the JSON names the client used. Each level
starts with a warm-up run at the same concurrency that is not measured.

Model: trained on the shared real tickets (``../shared/datasets/tipdm2020c``) into a temporary model
root, or on the bundled sample when the shared data is absent; or ``--model DIR``. Request bodies are
the titles and texts of those tickets (never printed or written out).

Writes ``benchmarks/results/serve.json``. Run::

    .venv/bin/python benchmarks/serve.py [--model DIR] [--requests 1200]
"""

from __future__ import annotations

import argparse
import asyncio
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

import numpy as np
import pandas as pd

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

from model import resources  # noqa: E402

SHARED = ROOT.parent / "shared" / "datasets" / "tipdm2020c"
SHARED_TRAIN = ("department_train.csv", "category_train.csv")
RESULTS = ROOT / "benchmarks" / "results"
CONCURRENCY = (1, 8, 32)
REQUEST_TIMEOUT_S = 30
LEVEL_TIMEOUT_S = 120  # wrk's -d: no level runs longer, whatever the request count
WRK_SCRIPT = ROOT / "benchmarks" / "wrk_route.lua"
IN_PROCESS_CALLS = 500
WARMUP_REQUESTS = 30


# -- the naive app (run as a child process with --naive-server) --------------------------------------
def naive_app(model_dir: Path) -> Any:
    """What the issue warns against: the model called inside ``async def`` on the event loop."""
    from fastapi import FastAPI

    from model.artifact import load_router

    router, _ = load_router(model_dir)
    router.warm_up()
    app = FastAPI()

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/v1/route")
    async def route(body: dict[str, Any]) -> dict[str, Any]:
        start = time.perf_counter()
        result = router.predict([(body.get("title") or "", body["text"])])[0]
        return {**result.model_dump(), "elapsed_ms": (time.perf_counter() - start) * 1000}

    return app


def run_naive_server(model_dir: Path, port: int) -> None:
    import uvicorn

    uvicorn.run(
        naive_app(model_dir), host="127.0.0.1", port=port, access_log=False, log_level="warning"
    )


# -- helpers -------------------------------------------------------------------------------------------
def training_files() -> list[Path]:
    shared = [SHARED / f for f in SHARED_TRAIN if (SHARED / f).is_file()]
    return shared or [resources.sample_path()]


def request_pool(files: list[Path]) -> list[dict[str, str]]:
    frames = [pd.read_csv(p, dtype=str, keep_default_na=False)[["title", "text"]] for p in files]
    df = pd.concat(frames, ignore_index=True)
    df = df[df["text"].str.strip() != ""]
    return [{"title": t, "text": x} for t, x in zip(df["title"], df["text"], strict=True)]


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p90_ms": round(float(np.percentile(a, 90)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2),
        "max_ms": round(float(a.max()), 2),
    }


def in_process(model_dir: Path, pool: list[dict[str, str]]) -> dict[str, Any]:
    from model.artifact import load_router

    t0 = time.perf_counter()
    router, _ = load_router(model_dir)
    router.warm_up()
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(pool), size=IN_PROCESS_CALLS)
    times = []
    for i in picks:
        t = time.perf_counter()
        router.predict([(pool[i]["title"], pool[i]["text"])])
        times.append((time.perf_counter() - t) * 1000)
    return {"calls": IN_PROCESS_CALLS, "load_and_warm_up_s": round(load_s, 2), **percentiles(times)}


async def load(port: int, pool: list[dict[str, str]], concurrency: int, n: int) -> dict[str, Any]:
    """``n`` requests by ``concurrency`` concurrent clients; latency per request and throughput."""
    import httpx2

    rng = np.random.default_rng(concurrency)
    bodies = [pool[i] for i in rng.integers(0, len(pool), size=n + WARMUP_REQUESTS)]
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx2.Timeout(REQUEST_TIMEOUT_S)
    async with httpx2.AsyncClient(
        base_url=base_url(port), limits=limits, timeout=timeout
    ) as client:
        for body in bodies[:WARMUP_REQUESTS]:
            await client.post("/v1/route", json=body)
        queue = iter(bodies[WARMUP_REQUESTS:])
        times: list[float] = []
        errors: dict[str, int] = {}

        async def worker() -> None:
            for body in queue:  # shared iterator: each body is sent once
                t = time.perf_counter()
                try:
                    r = await client.post("/v1/route", json=body)
                    ok = r.status_code == 200
                    key = str(r.status_code)
                except httpx2.HTTPError as e:
                    ok, key = False, type(e).__name__
                if ok:
                    times.append((time.perf_counter() - t) * 1000)
                else:
                    errors[key] = errors.get(key, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {
        "concurrency": concurrency,
        "requests": n,
        "ok": len(times),
        "errors": errors,
        "wall_s": round(wall, 3),
        "throughput_rps": round(len(times) / wall, 1),
        **(percentiles(times) if times else {}),
    }


def load_wrk(port: int, bodies: Path, concurrency: int, seconds: float) -> dict[str, Any]:
    """The same measurement as :func:`load`, with wrk as the client, for ``seconds``.

    wrk runs for a fixed time rather than a fixed number of requests (its threads can stop early,
    but the run still lasts its full duration), so the request count is whatever the server
    answered in that time.
    """

    def run(duration: float) -> dict[str, Any]:
        env = {**os.environ, "PAIDAN_WRK_BODIES": str(bodies)}
        cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(duration))}s",
               f"--timeout={REQUEST_TIMEOUT_S}s", "-s", str(WRK_SCRIPT), base_url(port)]  # fmt: skip
        proc = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=duration + 60, check=True
        )
        return json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1])

    run(max(1.0, seconds / 5))  # not measured: page faults of a fresh worker, caches
    out = run(seconds)
    failed = {k: v for k, v in out["errors"].items() if v}
    ok = out["requests"] - out["errors"]["non_2xx_3xx"]
    return {
        "concurrency": concurrency,
        "requests": out["requests"],
        "ok": ok,
        "errors": failed,
        "wall_s": round(out["duration_s"], 3),
        "throughput_rps": round(ok / out["duration_s"], 1),
        **{k: round(out[k], 2) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")},
    }


def measure_server(
    name: str,
    cmd: list[str],
    env: dict[str, str],
    port: int,
    pool: list[dict[str, str]],
    n: int,
    bodies: Path | None,
    seconds: float,
) -> dict[str, Any]:
    """Start a server and load it at each concurrency, then stop it.

    With ``bodies`` (a file of request bodies) the client is wrk, for ``seconds`` a level;
    otherwise httpx, for ``n`` requests a level (a quarter of them at concurrency 1).
    """
    proc, ready_s = start_server(cmd, env, port)
    try:
        levels = []
        for c in CONCURRENCY:
            if bodies is not None:
                levels.append(load_wrk(port, bodies, c, seconds))
            else:
                levels.append(asyncio.run(load(port, pool, c, n if c > 1 else max(n // 4, 100))))
            print(f"  {name} c={c}: {levels[-1]}", file=sys.stderr)
    finally:
        stop_server(proc)
    return {"startup_to_ready_s": round(ready_s, 2), "levels": levels}


def cold_starts(model_dir: Path, env: dict[str, str], n: int) -> dict[str, Any]:
    """Start ``paidan serve --workers 1`` ``n`` times, each time until ``/readyz`` answers 200."""
    runs = []
    for _ in range(n):
        port = free_port()
        proc, ready_s = start_server(paidan_serve(model_dir, port, "--workers", "1"), env, port)
        stop_server(proc)
        runs.append(round(ready_s, 2))
    return {
        "command": "paidan serve --workers 1",
        "runs_s": runs,
        "median_s": round(float(np.median(runs)), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="Model directory (default: train one)")
    parser.add_argument(
        "--requests", type=int, default=1_200, help="Requests per level (c>1) with httpx"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="Seconds per level with wrk")
    parser.add_argument(
        "--client",
        choices=["wrk", "httpx"],
        default="wrk" if shutil.which("wrk") else "httpx",
        help="Load client (default: wrk when installed; apt-get install wrk); httpx: the httpx2 package",
    )
    parser.add_argument(
        "--cold-starts", type=int, default=5, help="Fresh starts timed to /readyz (median reported)"
    )
    parser.add_argument("--naive-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS / "serve.json")
    args = parser.parse_args()
    if args.naive_server:
        run_naive_server(args.model, args.port)
        return

    tmp = Path(tempfile.mkdtemp(prefix="paidan-bench-serve-"))
    try:
        files = training_files()
        if args.model:
            model_dir = args.model.resolve()
            model_root = model_dir.parent
        else:
            from training.train import train

            model_root = tmp / "models"
            print(f"training a model on {[p.name for p in files]} …", file=sys.stderr)
            t0 = time.perf_counter()
            model_dir = train(files, None, model_root=model_root).model_dir
            assert model_dir is not None
            print(f"  trained in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        pool = request_pool(files)
        bodies = None
        if args.client == "wrk":
            bodies = tmp / "bodies.jsonl"  # real tickets: in the temporary directory only
            bodies.write_text(
                "".join(json.dumps(b, ensure_ascii=False) + "\n" for b in pool), encoding="utf-8"
            )
        cores = os.cpu_count() or 1
        env = server_env(model_root, tmp / "var")

        result: dict[str, Any] = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "cores": cores,
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "model": {"trained_on": [p.name for p in files], "pool_size": len(pool)},
            "client": (
                "wrk, one thread, on the same machine (benchmarks/wrk_route.lua)"
                if bodies is not None
                else "httpx2.AsyncClient in the benchmark process, on the same machine"
            ),
            "in_process": in_process(model_dir, pool),
        }
        print(f"in-process: {result['in_process']}", file=sys.stderr)
        servers: dict[str, Any] = {}
        for workers in sorted({1, cores}):
            port = free_port()
            cmd = paidan_serve(model_dir, port, "--workers", str(workers))
            servers[f"paidan_serve_workers_{workers}"] = measure_server(
                f"paidan serve --workers {workers}",
                cmd,
                env,
                port,
                pool,
                args.requests,
                bodies,
                args.seconds,
            )
        port = free_port()
        cmd = [sys.executable, str(Path(__file__).resolve()), "--naive-server",
               "--model", str(model_dir), "--port", str(port)]  # fmt: skip
        servers["naive_async_def"] = measure_server(
            "naive", cmd, env, port, pool, args.requests, bodies, args.seconds
        )
        result["servers"] = servers
        result["cold_start"] = cold_starts(model_dir, env, args.cold_starts)
        print(f"cold start: {result['cold_start']}", file=sys.stderr)

        naive = {lv["concurrency"]: lv for lv in servers["naive_async_def"]["levels"]}
        ratios: dict[str, Any] = {}
        for name, server in servers.items():
            if name == "naive_async_def":
                continue
            ratios[name] = {
                f"c{lv['concurrency']}": {
                    "throughput_x_naive": round(
                        lv["throughput_rps"] / naive[lv["concurrency"]]["throughput_rps"], 2
                    ),
                    "p99_naive_over_this": round(
                        naive[lv["concurrency"]]["p99_ms"] / lv["p99_ms"], 2
                    ),
                }
                for lv in server["levels"]
                if lv.get("p99_ms") and naive[lv["concurrency"]].get("p99_ms")
            }
        result["vs_naive"] = ratios
        best = servers[f"paidan_serve_workers_{cores}"]["levels"][-1]
        result["target"] = {
            "c32_p99_under_50ms": bool(best.get("p99_ms", 1e9) < 50),
            "c32_throughput_at_least_2x_naive": bool(
                ratios[f"paidan_serve_workers_{cores}"].get("c32", {}).get("throughput_x_naive", 0)
                >= 2
            ),
            "measured_with": f"paidan serve --workers {cores}",
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        print(json.dumps({"vs_naive": ratios, "target": result["target"]}, indent=2))
        print(f"written to {args.out}", file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
