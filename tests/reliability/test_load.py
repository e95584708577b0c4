"""A short version of ``benchmarks/load.py``: concurrency 64 against ``paidan serve``, zero errors.

The benchmark holds the load for 30 s and records latency and memory; this test holds it for a few
seconds and checks only that nothing failed (timings belong in the benchmark's JSON).
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import httpx2
import pytest

from tests.conftest import TINY_TICKETS
from tests.reliability.live import LiveServer

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "load.py"
CONCURRENCY = 64
HOLD_S = 5.0


def load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("paidan_benchmark_load", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_concurrency_64_for_a_few_seconds_has_zero_errors(
    live_server_factory: Callable[..., LiveServer], tiny_model_dir: Path, tmp_path: Path
) -> None:
    bench = load_benchmark()
    server = live_server_factory(
        "--model",
        str(tiny_model_dir),
        env={
            "PAIDAN_MODEL_ROOT": str(tiny_model_dir.parent),
            "PAIDAN_DATA_DIR": str(tmp_path / "var"),
        },
    )
    pool = [{"title": t, "text": x} for t, x, _, _ in TINY_TICKETS]
    result = asyncio.run(bench.hold_load(server.url, pool, CONCURRENCY, HOLD_S))
    assert result["errors"] == 0, result["error_samples"]
    assert result["requests"] >= CONCURRENCY, result  # at least one round from the 64
    assert result["p50_ms"] is not None and result["p99_ms"] >= result["p50_ms"]
    assert server.proc.poll() is None
    # The server is still healthy afterwards, and counted what it served.
    metrics = httpx2.get(server.url + "/metrics", timeout=10).text
    assert 'paidan_http_requests_total{method="POST",route="/v1/route",status="200"}' in metrics
    # The access log (on here) wrote one line per request, none about a failure.
    logs = server.logs()
    assert logs.count('"POST /v1/route HTTP/1.1" 200') >= result["requests"]
    assert '"POST /v1/route HTTP/1.1" 5' not in logs
