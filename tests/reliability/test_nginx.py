"""The nginx rate limit and compression of docs/operations.md ("Rate limiting", "Compression"), run
by a real nginx in front of a real ``paidan serve``: the blocks as the page prints them, only the
upstream port changed.

It had never been run: its ``proxy_pass`` in a regex location forwarded ``/paidan/v1/route``
as it came (nginx allows no URI there, so nothing strips the prefix), and every rate-limited
ticket was a 404 from a server started without ``--root-path``.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest

from tests.docs_text import ROOT
from tests.reliability.live import LiveServer, free_port

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        NGINX is None,
        reason="nginx is not installed (apt-get install nginx): the rate limit of "
        "docs/operations.md is checked against a real nginx only",
    ),
]
SERVER_PART = "# In the server {} that publishes paidan:"
TICKET = {"text": "小区门口的路灯坏了一个月，晚上走路很危险，请尽快维修"}
BURST = 40  # the block's burst=40 nodelay


def documented_block(heading: str = "Rate limiting") -> str:
    """The ```nginx block of docs/operations.md's section ``heading``."""
    page = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert f"\n## {heading}\n" in page, f"docs/operations.md has no {heading} section"
    section = page.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```nginx\n(.*?)```", section, re.S)
    assert found, f"docs/operations.md's {heading} section has no nginx block"
    return found.group(1)


def nginx_config(tmp: Path, listen: int, upstream: int) -> str:
    """A whole nginx.conf around the documented block: its http part in ``http {}``, its server
    part in the ``server {}`` that publishes paidan under /paidan/ (the "Sub-paths" location)."""
    http_part, server_part = documented_block().split(SERVER_PART)
    assert "http://127.0.0.1:8000" in server_part
    server_part = server_part.replace("http://127.0.0.1:8000", f"http://127.0.0.1:{upstream}")
    return f"""
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{}}
http {{
    access_log off;
{http_part}
{documented_block("Compression")}
    server {{
        listen 127.0.0.1:{listen};
        location /paidan/ {{ proxy_pass http://127.0.0.1:{upstream}/; }}
{server_part}
    }}
}}
"""


@pytest.fixture
def paidan(live_server_factory: Callable[..., LiveServer], tiny_model_dir: Path) -> LiveServer:
    return live_server_factory(
        "--model",
        str(tiny_model_dir),
        "--no-access-log",
        env={"PAIDAN_MODEL_ROOT": str(tiny_model_dir.parent), "PAIDAN_RELOAD_INTERVAL": "0"},
    )


@pytest.fixture
def nginx(paidan: LiveServer, tmp_path: Path) -> Iterator[str]:
    """nginx with the documented block in front of ``paidan``; yields its URL."""
    assert NGINX is not None
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_config(tmp_path, port, int(paidan.url.rsplit(":", 1)[1])))
    command = [NGINX, "-c", str(conf), "-p", str(tmp_path)]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    proc = subprocess.Popen([*command, "-g", "daemon off;"], stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                httpx2.get(f"{url}/paidan/healthz", timeout=2)
                break
            except httpx2.TransportError:
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


async def burst(url: str, count: int, headers: dict[str, str]) -> list[httpx2.Response]:
    """``count`` requests at once (GET: answered 405 by paidan, and counted by the limit alike)."""
    limits = httpx2.Limits(max_connections=count)
    async with httpx2.AsyncClient(timeout=30, limits=limits) as client:
        return list(await asyncio.gather(*(client.get(url, headers=headers) for _ in range(count))))


def test_the_documented_limit_forwards_a_ticket_to_paidan_without_its_prefix(nginx: str) -> None:
    for path in ("/paidan/v1/route", "/paidan/v1/route/batch"):
        body = TICKET if path.endswith("route") else {"items": [TICKET]}
        answer = httpx2.post(
            nginx + path, json=body, headers={"X-API-Key": "client-key-0123456789"}, timeout=30
        )
        assert answer.status_code == 200, (path, answer.status_code, answer.text)
        assert "x-request-id" in answer.headers  # paidan's answer, not nginx's


def test_the_documented_limit_answers_429_in_paidans_error_shape_per_key(nginx: str) -> None:
    url = nginx + "/paidan/v1/route"
    said = asyncio.run(burst(url, 150, {"X-API-Key": "batch-job-key-0123456789"}))
    statuses = Counter(answer.status_code for answer in said)
    assert statuses[405] >= BURST, statuses  # the burst passed to paidan, at once
    assert statuses[429] > 0, statuses
    refused = next(answer for answer in said if answer.status_code == 429)
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["content-type"].startswith("application/json")
    assert refused.json()["error"]["code"] == "too_many_requests"
    # As paidan's own errors: no cache keeps it, and it names a request id a log can be searched
    # for (nginx's 429 carried neither).
    assert refused.headers["cache-control"] == "no-store"
    assert refused.headers["x-content-type-options"] == "nosniff"
    assert re.fullmatch(r"[0-9a-f]{32}", refused.headers["x-request-id"]), refused.headers
    # Counted per key: another client's key, and a Bearer key, pass meanwhile.
    other = httpx2.post(url, json=TICKET, headers={"X-API-Key": "other-key-0123456789"})
    assert other.status_code == 200, other.text
    bearer = httpx2.post(url, json=TICKET, headers={"Authorization": "Bearer bearer-0123456789"})
    assert bearer.status_code == 200, bearer.text


def test_the_documented_429_keeps_a_clients_request_id_as_paidan_does(nginx: str) -> None:
    url = nginx + "/paidan/v1/route"
    for sent, kept in (("trace-4f2a.9:b/c+d=e_0", True), ("x" * 129, False), ("a b", False)):
        headers = {"X-API-Key": f"id-key-{len(sent)}-0123456789", "X-Request-ID": sent}
        said = asyncio.run(burst(url, 100, headers))
        refused = [answer for answer in said if answer.status_code == 429]
        assert refused, Counter(answer.status_code for answer in said)
        for answer in refused:
            if kept:  # as paidan keeps it: 1 to 128 of A-Z a-z 0-9 . _ : / + = -
                assert answer.headers["x-request-id"] == sent
            else:  # else one of nginx's own, 32 hex digits like paidan's
                assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["x-request-id"])
        passed = next(answer for answer in said if answer.status_code == 405)
        assert (passed.headers["x-request-id"] == sent) is kept  # paidan's own rule, unchanged


def test_requests_without_a_key_are_not_counted(nginx: str) -> None:
    said = asyncio.run(burst(nginx + "/paidan/v1/route", 150, {}))
    assert Counter(answer.status_code for answer in said) == {405: 150}


def test_the_documented_compression_gzips_a_batch_and_the_export_not_a_single_ticket(
    nginx: str,
) -> None:
    # paidan sends its answers uncompressed (docs/operations.md, "Compression"): a batch of 100
    # tickets' answer is a few hundred kB of JSON, which the proxy compresses.
    gzip = {"Accept-Encoding": "gzip", "X-API-Key": "gzip-key-0123456789"}
    items = [{**TICKET, "id": f"T{i}"} for i in range(100)]
    with httpx2.Client(timeout=60) as client:
        batch = client.post(f"{nginx}/paidan/v1/route/batch", json={"items": items}, headers=gzip)
        assert batch.status_code == 200, batch.text
        assert batch.headers.get("content-encoding") == "gzip", batch.headers
        assert [r["id"] for r in batch.json()["results"]] == [i["id"] for i in items]
        assert batch.num_bytes_downloaded * 4 < len(batch.content)  # the JSON repeats itself
        assert "accept-encoding" in batch.headers.get("vary", "").lower()
        # A single ticket's answer (a few kB) is sent as it is: compressing it saves little.
        single = client.post(f"{nginx}/paidan/v1/route", json=TICKET, headers=gzip)
        assert single.status_code == 200, single.text
        assert "content-encoding" not in single.headers, single.headers
        # The feedback export, streamed without a length, is compressed too.
        for i in range(50):
            saved = client.post(
                f"{nginx}/paidan/v1/feedback",
                json={**TICKET, "ticket_id": f"T{i}", "department": "市住建局"},
            )
            assert saved.status_code == 201, saved.text
        export = client.get(f"{nginx}/paidan/v1/feedback", headers=gzip)
        assert export.status_code == 200, export.text
        assert export.headers.get("content-encoding") == "gzip", export.headers
        lines = export.text.splitlines()
        assert [json.loads(line)["ticket_id"] for line in lines] == [f"T{i}" for i in range(50)]
        # Not to a client that does not ask for it.
        plain = client.post(
            f"{nginx}/paidan/v1/route/batch",
            json={"items": items},
            headers={"Accept-Encoding": "identity", "X-API-Key": gzip["X-API-Key"]},
        )
        assert "content-encoding" not in plain.headers
        assert plain.num_bytes_downloaded == len(plain.content)


def test_the_documented_proxy_passes_a_batch_as_large_as_paidan_takes(nginx: str) -> None:
    # nginx's own limit, client_max_body_size 1m, is below paidan's batch limit (8 MiB): a batch
    # of 1,000 ordinary tickets as Python's json writes them (2 MiB, each Chinese character a
    # 6-byte \uXXXX) got nginx's HTML 413, not paidan's answer.
    text = "小区门口的路灯坏了一个月，晚上走路很危险，请尽快维修" * 60
    items = [{"id": f"T{i}", "text": text} for i in range(240)]
    body = json.dumps({"items": items}).encode()
    assert len(body) > 2 * 1024 * 1024  # twice nginx's 1 MiB
    answer = httpx2.post(
        f"{nginx}/paidan/v1/route/batch",
        content=body,
        headers={"Content-Type": "application/json", "X-API-Key": "batch-job-key-0123456789"},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text[:300]
    assert [r["id"] for r in answer.json()["results"]] == [i["id"] for i in items]
