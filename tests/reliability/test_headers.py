"""The request head limit (``PAIDAN_MAX_HEADER_BYTES``, serve/protocol.py).

Without it, one request with a 64 MB header stalled every request of its worker for seconds and
was answered 200: httptools has no limit of its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from serve.protocol import MAX_HEADER_ENV, header_limit_options, loads_a_page, prefers_html
from serve.security import PACKAGE_VERSION
from serve.workers import listening_socket
from tests.reliability.live import LiveServer, port_of

LIMIT = 4096


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers 200 with the length of the body it read."""
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = str(size).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


@contextlib.contextmanager
def served(app: Any, **options: Any) -> Iterator[int]:
    """An in-process uvicorn serving ``app`` on a free loopback port with the head limit at
    :data:`LIMIT`; yields the port."""
    sock = listening_socket("127.0.0.1", 0, 128)
    config = uvicorn.Config(app, log_level="warning", **options, **header_limit_options(LIMIT))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def limited_port() -> Iterator[int]:
    """An in-process uvicorn on a free loopback port with the head limit at :data:`LIMIT`."""
    with served(echo_app, lifespan="off") as port:
        yield port


def exchange(port: int, *parts: bytes) -> bytes:
    """Send ``parts`` on a new connection (ignoring a reset once the server has closed it) and
    read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            for part in parts:
                sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
        return data


def request(headers: bytes = b"", body: bytes = b"", close: bool = True) -> bytes:
    return (
        b"POST /x HTTP/1.1\r\nHost: t\r\n"
        + (b"Connection: close\r\n" if close else b"")
        + headers
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def error_of(answer: bytes) -> dict[str, Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"connection: close" in head.lower()
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message", "field"}
    return error


def test_a_head_over_the_limit_is_refused_with_431_naming_the_limit(limited_port: int) -> None:
    big = b"X-Big: " + b"a" * (1 << 20) + b"\r\n"
    answer = exchange(limited_port, request(big)[: 1 << 16], request(big)[1 << 16 :])
    error = error_of(answer)
    assert error["code"] == "header_too_large"
    assert f"{LIMIT:,} bytes" in error["message"] and MAX_HEADER_ENV in error["message"]
    # Many headers count as one long one.
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 100) for i in range(100))
    assert error_of(exchange(limited_port, request(many)))["code"] == "header_too_large"
    # The server goes on serving.
    assert exchange(limited_port, request()).startswith(b"HTTP/1.1 200 ")


SAFE_HEADERS = (b"x-content-type-options: nosniff", b"referrer-policy: no-referrer")


def test_the_answers_the_protocol_writes_carry_the_shape_and_safe_headers(
    limited_port: int,
) -> None:
    # SECURITY.md: every error has the error shape, every answer nosniff and no-referrer. The 431
    # lacked Referrer-Policy; a request the parser refused got uvicorn's text/plain 400.
    big = request(b"X-Big: " + b"a" * (2 * LIMIT) + b"\r\n")
    unreadable = b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n"
    for raw, status, code in (
        (big, b"431", "header_too_large"),
        (unreadable, b"400", "bad_request"),
    ):
        answer = exchange(limited_port, raw)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 " + status + b" "), answer[:200]
        lines = head.lower().split(b"\r\n")
        for header in (*SAFE_HEADERS, b"cache-control: no-store", b"connection: close"):
            assert header in lines, (header, head)
        # Which paidan answered, as every answer of the app says (docs/api.md).
        assert b"x-paidan-version: " + PACKAGE_VERSION.encode() in lines, head
        error = json.loads(body)["error"]
        assert set(error) == {"code", "message", "field"} and error["code"] == code
    assert exchange(limited_port, request()).startswith(b"HTTP/1.1 200 ")


BROWSER_ACCEPT = (
    b"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    b"image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)


def page_load(
    accept: bytes | None,
    cookie_first: bool = False,
    fetch: bytes = b"",
    agent: bytes = b"Mozilla/5.0",
) -> bytes:
    """A browser's reload of the page with cookies over the limit, its headers in Chrome's order
    (``Sec-Fetch-*`` headers ``fetch`` after Accept, Cookie last) unless ``cookie_first``."""
    cookie = b"Cookie: portal_sso=" + b"c" * (2 * LIMIT) + b"\r\n"
    accepts = b"" if accept is None else b"Accept: " + accept + b"\r\n"
    headers = cookie + accepts + fetch if cookie_first else accepts + fetch + cookie
    return (
        b"GET / HTTP/1.1\r\nHost: localhost:8000\r\nUser-Agent: "
        + agent
        + b"\r\n"
        + headers
        + b"\r\n"
    )


# What Chrome sends to a page on https or localhost, after Accept (none over plain HTTP elsewhere).
NAVIGATE = (
    b"Sec-Fetch-Site: none\r\nSec-Fetch-Mode: navigate\r\n"
    b"Sec-Fetch-User: ?1\r\nSec-Fetch-Dest: document\r\n"
)
# Java's HttpURLConnection when its caller sets no Accept (JDK 17), sent before the Cookie header.
JAVA_ACCEPT = b"text/html, image/gif, image/jpeg, */*; q=0.2"


@pytest.mark.parametrize("fetch", [b"", NAVIGATE], ids=["plain-http", "fetch-metadata"])
def test_a_browser_loading_a_page_gets_the_431_as_a_chinese_page(
    limited_port: int, fetch: bytes
) -> None:
    # Reloading the dispatcher's page with a portal's cookies over the limit showed the raw JSON
    # error, in English, with nothing saying to clear the site's cookies.
    answer = exchange(limited_port, page_load(BROWSER_ACCEPT, fetch=fetch))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 "), answer[:200]
    lines = head.lower().split(b"\r\n")
    assert b"content-type: text/html; charset=utf-8" in lines, head
    for header in (*SAFE_HEADERS, b"cache-control: no-store", b"connection: close"):
        assert header in lines, (header, head)
    assert b"vary: accept, sec-fetch-mode, sec-fetch-dest" in lines, head
    assert b"x-frame-options: deny" in lines, head
    assert any(line.startswith(b"content-security-policy: default-src 'none'") for line in lines)
    assert int(dict(line.split(b": ", 1) for line in lines[1:])[b"content-length"]) == len(body)
    page = body.decode("utf-8")
    assert page.startswith("<!DOCTYPE html>") and '<html lang="zh-CN">' in page
    assert "Cookie" in page and "清除本站" in page and "刷新本页" in page
    assert f"{LIMIT:,}" in page and MAX_HEADER_ENV in page
    assert "<script" not in page and "c" * 100 not in page
    # A line break inside a paragraph shows as a space between two Chinese characters.
    paragraphs = [part.partition("</p>")[0] for part in page.split("<p>")[1:]]
    assert len(paragraphs) == 2 and all("\n" not in text for text in paragraphs), page
    assert exchange(limited_port, request()).startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize(
    "accept",
    [
        None,
        b"*/*",
        b"application/json",
        b"application/json, text/plain, */*",
        b"text/html, application/json",  # both alike: the API's shape
        b"text/html;q=0.5, application/json",
    ],
)
def test_an_api_client_keeps_the_431_error_shape(limited_port: int, accept: bytes | None) -> None:
    answer = exchange(limited_port, page_load(accept))
    assert b"\r\ncontent-type: application/json\r\n" in answer.lower(), answer[:300]
    assert error_of(answer)["code"] == "header_too_large"


def test_a_java_api_client_keeps_the_431_error_shape(limited_port: int) -> None:
    # Java's default Accept prefers HTML: a Java client whose cookie jar grew past the limit got
    # the Chinese page, and its JSON error handling failed on it.
    answer = exchange(limited_port, page_load(JAVA_ACCEPT, agent=b"Java/17.0.2"))
    assert b"\r\ncontent-type: application/json\r\n" in answer.lower(), answer[:300]
    assert b"\r\nvary: accept, sec-fetch-mode, sec-fetch-dest\r\n" in answer.lower()
    assert error_of(answer)["code"] == "header_too_large"


def test_a_browser_signal_decides_when_it_was_read() -> None:
    def headers(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
        return [(name.lower().encode(), value.encode()) for name, value in pairs]

    browser = ("Accept", BROWSER_ACCEPT.decode())
    # A page load: on https or localhost with fetch metadata, or over plain HTTP without it.
    assert loads_a_page(headers(browser, ("Sec-Fetch-Mode", "navigate")))
    assert loads_a_page(headers(("Accept", "*/*"), ("Sec-Fetch-Dest", "Document")))
    assert loads_a_page(headers(browser))
    # The page's own fetch(), an image or a stylesheet: fetch metadata says it is no page load.
    cors = ("Sec-Fetch-Mode", "cors")
    assert not loads_a_page(headers(browser, cors, ("Sec-Fetch-Dest", "empty")))
    assert not loads_a_page(headers(("Accept", "text/html"), ("Sec-Fetch-Dest", "image")))
    # Without it, an Accept that prefers HTML but names no XHTML is an API client's.
    assert not loads_a_page(headers(("Accept", JAVA_ACCEPT.decode())))
    assert not loads_a_page(headers(("Accept", "text/html")))
    assert not loads_a_page(headers(("Accept", "application/json, application/xhtml+xml")))
    assert not loads_a_page([])


def test_an_accept_after_the_oversized_header_is_not_read(limited_port: int) -> None:
    # The parser reads no further than the limit: the answer is the API's shape.
    answer = exchange(limited_port, page_load(BROWSER_ACCEPT, cookie_first=True))
    assert error_of(answer)["code"] == "header_too_large"


def test_prefers_html_follows_the_accept_qualities() -> None:
    assert prefers_html(BROWSER_ACCEPT.decode())
    assert prefers_html("text/html")
    assert prefers_html("text/*, application/json;q=0.5")
    assert prefers_html("TEXT/HTML;level=1;q=0.9, */*;q=0.1")
    assert not prefers_html("")
    assert not prefers_html("*/*")
    assert not prefers_html("application/json")
    assert not prefers_html("text/html;q=0, */*")
    assert not prefers_html("text/html, application/*")
    assert not prefers_html("text/html;q=abc, application/json;q=0.1")
    assert not prefers_html("text/plain, */*;q=0.5")


def test_only_the_start_of_a_huge_accept_is_read(limited_port: int) -> None:
    # Every range of a 64 KB Accept was parsed in Python on the event loop, for each 431: tens of
    # milliseconds a request, sent by anyone. A browser's Accept is a few hundred bytes.
    assert prefers_html(BROWSER_ACCEPT.decode())
    assert not prefers_html("," * 2000 + BROWSER_ACCEPT.decode())
    answer = exchange(limited_port, page_load(b"," * 2000 + BROWSER_ACCEPT))
    assert error_of(answer)["code"] == "header_too_large"


def test_a_head_within_the_limit_and_a_long_body_are_served(limited_port: int) -> None:
    near = b"X-Near: " + b"c" * (LIMIT - 200) + b"\r\n"
    assert exchange(limited_port, request(near)).startswith(b"HTTP/1.1 200 ")
    # Sent in one piece, the body (20 times the limit) arrives in the same reads as the head.
    body = b"d" * (20 * LIMIT)
    answer = exchange(limited_port, request(b"X-A: 1\r\n", body))
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(str(len(body)).encode())


def test_keep_alive_requests_each_get_their_own_limit(limited_port: int) -> None:
    # Five heads of 3/4 of the limit on one connection: each is within it, together they are not.
    near = b"X-Near: " + b"e" * (LIMIT * 3 // 4) + b"\r\n"
    with socket.create_connection(("127.0.0.1", limited_port), timeout=10) as sock:
        for _ in range(5):
            sock.sendall(request(near, b"f", close=False))
            answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]


def test_paidan_serve_refuses_a_huge_header_and_keeps_serving(
    live_server_factory: Callable[..., LiveServer], tiny_model_dir: Path
) -> None:
    env = {"PAIDAN_MODEL_ROOT": str(tiny_model_dir.parent), "PAIDAN_RELOAD_INTERVAL": "0"}
    server = live_server_factory("--model", str(tiny_model_dir), "--no-access-log", env=env)
    port = port_of(server)
    big = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
    error = error_of(exchange(port, big))
    assert "65,536 bytes" in error["message"], error  # the default, 64 KB
    ok = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    assert exchange(port, ok).startswith(b"HTTP/1.1 200 ")
    assert "431" in server.logs() and MAX_HEADER_ENV in server.logs()
    metrics = exchange(port, b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert b'paidan_http_requests_total{method="GET",route="/healthz",status="431"} 1.0' in metrics


def metric_samples(port: int) -> dict[str, float]:
    answer = exchange(
        port, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), answer[:300]
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in body.decode().splitlines()
        if line and not line.startswith("#")
    }


@pytest.mark.parametrize("root_path", ["", "/paidan"])
def test_a_431_is_counted_in_metrics_and_the_access_log_under_its_route(
    make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture, root_path: str
) -> None:
    # The protocol answers 431 before the app, so its metrics middleware never saw one: three
    # refused requests left /metrics as it was, while a 413 or an unknown path was counted.
    app = make_client(access_log=True, root_path=root_path).app
    cookie = b"Cookie: portal_sso=" + b"c" * (2 * LIMIT) + b"\r\n"
    with served(app, log_config=None, root_path=root_path) as port:
        refused = (
            # A proxy's prefix-stripped path and, under a root path, the server's own address.
            b"POST /v1/route?text=13812345678 HTTP/1.1\r\nHost: localhost\r\n" + cookie,
            b"POST " + root_path.encode() + b"/v1/route HTTP/1.1\r\nHost: localhost\r\n" + cookie,
            b"GET /no/such/path HTTP/1.1\r\nHost: localhost\r\n" + cookie,
            # A request line over the limit: no path was read, so no route.
            b"GET /v1/route?q=" + b"a" * (2 * LIMIT) + b" HTTP/1.1\r\n",
        )
        # Until the end: the last line may be written after its answer, while /metrics is read.
        caplog.set_level(logging.INFO, logger="serve.access")
        for raw in refused:
            assert exchange(port, raw).startswith(b"HTTP/1.1 431 ")
        samples = metric_samples(port)
    assert samples['paidan_http_requests_total{method="POST",route="/v1/route",status="431"}'] == 2
    assert samples['paidan_http_requests_total{method="GET",route="unmatched",status="431"}'] == 2
    timed = 'paidan_http_request_duration_seconds_count{method="POST",route="/v1/route"}'
    assert samples[timed] == 2
    lines = [r.getMessage() for r in caplog.records if r.name == "serve.access"]
    assert f'"GET {root_path}/metrics HTTP/1.1" 200' in lines.pop(), lines
    assert len(lines) == 4, lines
    # Logged as the app logs its answers (the path uvicorn gives, root path first), PII-free.
    assert f'"POST {root_path}/v1/route?text=… HTTP/1.1" 431' in lines[0]
    assert f'"GET {root_path}/no/such/path HTTP/1.1" 431' in lines[2]
    assert '"GET - HTTP/1.1" 431' in lines[3]
    assert "13812345678" not in caplog.text


def test_the_refusal_hook_is_found_through_the_servers_wrappers(
    make_client: Callable[..., Any],
) -> None:
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    from serve.telemetry import refusal_hook
    from serve.workers import _CloseWhenDraining

    app = make_client().app
    # `paidan serve`: uvicorn's proxy headers around the app, and paidan's drain under --workers N.
    assert refusal_hook(ProxyHeadersMiddleware(app)) is not None
    assert refusal_hook(_CloseWhenDraining(ProxyHeadersMiddleware(app), None)) is not None
    assert refusal_hook(echo_app) is None  # an app of its own: nothing to count in


def test_every_status_security_md_lists_has_its_code_in_http_codes() -> None:
    """SECURITY.md's list of error statuses and serve/errors.py's HTTP_CODES agree: 431, answered by
    the protocol before the app, was missing from HTTP_CODES."""
    import re

    from serve.errors import HTTP_CODES
    from serve.protocol import HEADER_TOO_LARGE

    text = (Path(__file__).resolve().parents[2] / "SECURITY.md").read_text(encoding="utf-8")
    listed = re.search(r"Every error, including ([\d/]+),", text)
    assert listed is not None
    statuses = {int(s) for s in listed.group(1).split("/")}
    assert 431 in statuses
    assert statuses <= set(HTTP_CODES), sorted(statuses - set(HTTP_CODES))
    assert HTTP_CODES[431] == HEADER_TOO_LARGE == "header_too_large"


@pytest.fixture
def impatient_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """An in-process uvicorn whose client timeout is 2 s (60 s in `paidan serve`)."""
    import serve.protocol

    monkeypatch.setattr(serve.protocol, "CLIENT_TIMEOUT_S", 2.0, raising=False)
    with served(echo_app, lifespan="off", timeout_keep_alive=2) as port:
        yield port


def timed_out(answer: bytes) -> dict[str, Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"connection: close" in head.lower()
    error: dict[str, Any] = json.loads(body)["error"]
    assert error["code"] == "request_timeout" and "2 s" in error["message"], error
    return error


def test_a_request_whose_head_stalls_is_answered_408_and_closed(impatient_port: int) -> None:
    # uvicorn has no header timeout: half a head kept its connection open for ever (slowloris).
    # exchange() reads until the server closes the connection, for 10 s at most.
    timed_out(exchange(impatient_port, b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Le"))


def test_a_request_whose_body_stalls_is_answered_408_and_closed(impatient_port: int) -> None:
    # A Content-Length and part of the body: the app waited for the rest for ever.
    timed_out(exchange(impatient_port, request(body=b"x" * 100)[:-60]))


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(impatient_port: int) -> None:
    # As an idle kept-alive connection is, after the keep-alive timeout.
    assert exchange(impatient_port) == b""


def test_a_slow_body_that_keeps_coming_is_read(impatient_port: int) -> None:
    # The body's timeout is a pause between two reads, not the whole upload: six pieces half a
    # second apart take longer than the timeout, and are read.
    whole = request(body=b"x" * 60)
    cut = len(whole) - 60
    pieces = [whole[:cut]] + [whole[cut + i * 10 : cut + (i + 1) * 10] for i in range(6)]
    with socket.create_connection(("127.0.0.1", impatient_port), timeout=10) as sock:
        for piece in pieces:
            sock.sendall(piece)
            time.sleep(0.5)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert answer.endswith(b"\r\n\r\n60")
