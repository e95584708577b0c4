"""uvicorn's HTTP protocol with a limit on the request line and headers (``PAIDAN_MAX_HEADER_BYTES``).

uvicorn's default parser, httptools, accepts a header of any size and builds its value by appending
each chunk received to the value so far, on the event loop: one request with a 64 MB header stalled
every request of its worker, ``/healthz`` included, for about 9 s, and was then answered 200. The
app cannot help, since ASGI middleware runs only once the headers are complete. So the protocol
counts the bytes of each request's head as they arrive and, beyond the limit, answers
``431 Request Header Fields Too Large`` in the API's error shape and closes the connection, without
handing the parser any more of it. To a browser loading a page (:func:`loads_a_page`, from the
headers read before the limit: browsers send ``Cookie``, the usual culprit, last) the 431 is a
short Chinese page saying what to do instead: the dispatcher reloading the page saw raw JSON.
Each 431 is counted in the app's ``/metrics`` and access log, under the route its path names, as
the app counts its own answers (:func:`serve.telemetry.install_refusal_hook`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import urllib.parse
from typing import Any, cast

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serve.errors import HTTP_CODES, error_body
from serve.security import API_HEADERS, BASE_HEADERS
from serve.telemetry import refusal_hook

logger = logging.getLogger(__name__)

MAX_HEADER_ENV = "PAIDAN_MAX_HEADER_BYTES"
HEADER_TOO_LARGE = HTTP_CODES[431]
# After the 431, what the client still sends is read and dropped for at most this long before the
# connection closes (nginx's "lingering close"): closed at once with unread bytes, the kernel sends
# a reset, and the client may lose the answer before it reads it.
LINGER_S = 2.0
# Seconds a client has to send a request's line and headers (from the connection's start, or from
# the first byte of a later request on it), and, while it sends a body, between two reads of it:
# nginx's client_header_timeout and client_body_timeout. uvicorn has neither: a connection that sent
# half a head, or a Content-Length and part of its body, stayed open for ever, and a few thousand
# such connections held every file descriptor of the worker (slowloris).
CLIENT_TIMEOUT_S = 60.0
# Only this many characters of a refused request's Accept are looked at: a browser's is under 300,
# and parsing a 64 KB one in Python took tens of milliseconds of the event loop on every 431.
MAX_ACCEPT_CHARS = 1024


def header_limit_options(
    max_header_bytes: int, client_timeout: float | None = None
) -> dict[str, Any]:
    """uvicorn's options for a server that refuses a request head over ``max_header_bytes``, and
    a request whose head or body stalls for ``client_timeout`` seconds (default
    ``CLIENT_TIMEOUT_S``): :class:`HeaderLimitedProtocol`, on httptools (the parser
    ``uvicorn[standard]`` installs and uvicorn picks by default)."""
    # A partial of a module-level class: picklable, so it reaches the --workers N processes.
    protocol = functools.partial(
        HeaderLimitedProtocol,
        max_header_bytes=max_header_bytes,
        client_timeout=CLIENT_TIMEOUT_S if client_timeout is None else client_timeout,
    )
    return {"http": cast(type[asyncio.Protocol], protocol)}


# The 431 page's own policy: it has no script, style, image or form of its own.
PAGE_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", b"default-src 'none'; base-uri 'none'; frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
]


def _whole_answer(
    status: bytes,
    content_type: bytes,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    default_headers: list[tuple[bytes, bytes]],
) -> bytes:
    """A whole answer with the safe headers of the app's API answers (nosniff, no-referrer,
    no-store) and ``headers``, then close."""
    head = [b"HTTP/1.1 " + status + b"\r\n"]
    head += [name + b": " + value + b"\r\n" for name, value in default_headers]
    head += [
        b"content-type: " + content_type + b"\r\n",
        b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
        *(name + b": " + value + b"\r\n" for name, value in BASE_HEADERS + API_HEADERS + headers),
        b"connection: close\r\n",
        b"\r\n",
    ]
    return b"".join(head) + body


def edge_answer(
    status: bytes,
    code: str,
    message: str,
    field: str | None,
    default_headers: list[tuple[bytes, bytes]],
    headers: list[tuple[bytes, bytes]] | None = None,
) -> bytes:
    """A whole answer written by the protocol, before the app sees the request: the error shape
    with the headers :class:`serve.security.SecurityHeadersMiddleware` puts on the app's API
    answers (nosniff, no-referrer, no-store), then close."""
    body = json.dumps(error_body(code, message, field), ensure_ascii=False).encode("utf-8")
    return _whole_answer(status, b"application/json", body, headers or [], default_headers)


def _quality(ranges: list[tuple[str, float]], media_type: str) -> float:
    """The quality an Accept header's ranges give ``media_type``: the most specific range that
    matches it decides (``text/html`` over ``text/*`` over ``*/*``); 0 if none does."""
    kind = media_type.split("/")[0] + "/*"
    for candidate in (media_type, kind, "*/*"):
        found = [q for name, q in ranges if name == candidate]
        if found:
            return max(found)
    return 0.0


def prefers_html(accept: str) -> bool:
    """Whether an ``Accept`` header prefers ``text/html`` to ``application/json``: as a browser
    loading a page does (``text/html,…,*/*;q=0.8``), and most API clients do not
    (``application/json``, ``*/*``, none, or both alike; :func:`loads_a_page` tells the rest). Only its first ``MAX_ACCEPT_CHARS`` characters are
    read, so a refused request cannot make the answer cost more than the refusal."""
    ranges: list[tuple[str, float]] = []
    for part in accept[:MAX_ACCEPT_CHARS].split(","):
        name, *params = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0
        if name and 0.0 <= quality <= 1.0:
            ranges.append((name.lower(), quality))
    html = _quality(ranges, "text/html")
    return html > 0 and html > _quality(ranges, "application/json")


def loads_a_page(request_headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a request is a browser loading a page, from the headers read before the limit.

    A browser's own signal decides when it was read: ``Sec-Fetch-Mode: navigate`` or
    ``Sec-Fetch-Dest: document`` (Chrome, Edge and 360 send them after ``Accept`` and before
    ``Cookie``). Browsers send no ``Sec-Fetch-*`` to a page served over plain HTTP on a name
    other than localhost (an intranet address: the common case), older ones none at all, and a
    browser may send them after ``Cookie`` (Firefox is said to), so without them the ``Accept``
    decides: it must prefer HTML
    (:func:`prefers_html`) and name ``application/xhtml+xml``, as every browser's page load does
    and an API client's does not (Java's ``HttpURLConnection`` sends ``text/html, image/gif,
    image/jpeg, */*; q=0.2``, which prefers HTML).
    """
    accepts: list[bytes] = []
    mode = dest = None
    for name, value in request_headers:
        if name == b"accept":
            accepts.append(value)
        elif name == b"sec-fetch-mode":
            mode = value.strip().lower()
        elif name == b"sec-fetch-dest":
            dest = value.strip().lower()
    if mode is not None or dest is not None:
        return mode == b"navigate" or dest == b"document"
    accept = b",".join(accepts)[:MAX_ACCEPT_CHARS].decode("latin-1")
    return "application/xhtml+xml" in accept.lower() and prefers_html(accept)


def header_too_large_answer(
    limit: int,
    default_headers: list[tuple[bytes, bytes]],
    request_headers: list[tuple[bytes, bytes]] | None = None,
) -> bytes:
    """The whole 431 answer, then close: to a browser loading a page (:func:`loads_a_page` of
    ``request_headers``, those read before the limit) a short Chinese page saying what to do; to
    anything else the error shape naming the limit and its setting."""
    # The answer depends on these headers: no cache may give one in place of the other.
    vary = [(b"vary", b"Accept, Sec-Fetch-Mode, Sec-Fetch-Dest")]
    if loads_a_page(request_headers or []):
        return _whole_answer(
            b"431 Request Header Fields Too Large",
            b"text/html; charset=utf-8",
            header_too_large_page(limit),
            vary + PAGE_HEADERS,
            default_headers,
        )
    return edge_answer(
        b"431 Request Header Fields Too Large",
        HEADER_TOO_LARGE,
        f"the request line and headers exceed {limit:,} bytes ({MAX_HEADER_ENV}); "
        "send smaller headers (a runaway cookie or a header repeated by a client?)",
        "headers",
        default_headers,
        vary,
    )


def header_too_large_page(limit: int) -> bytes:
    """The 431 page a browser shows: the cookies are too large; clear this site's, then reload."""
    # No line break inside a paragraph: a browser shows one between two Chinese characters as a space.
    return (
        '<!DOCTYPE html>\n<html lang="zh-CN">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>请求头过大（431）</title>\n</head>\n<body>\n<h1>请求头过大（431）</h1>\n"
        "<p>浏览器随本次请求发送的 Cookie 过多、过大（请求行和请求头共超过服务器允许的 "
        f"{limit:,} 字节），服务器没有处理这次请求。"
        "通常是同一网站（域名）上的其他应用在浏览器中保存了大量 Cookie。</p>\n"
        "<p>处理方法：在浏览器中清除本站（地址栏中的网址）的 Cookie，然后刷新本页。"
        f"如果清除后仍然出现本页，请联系系统管理员（服务器设置 {MAX_HEADER_ENV}）。</p>\n"
        "</body>\n</html>\n"
    ).encode()


def timed_out_answer(client_timeout: float, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The whole 408 answer to a request whose head or body stalled, in the error shape."""
    return edge_answer(
        b"408 Request Timeout",
        HTTP_CODES[408],
        f"the request was not received in time: its headers must arrive within {client_timeout:g} "
        f"s, and its body without a pause of {client_timeout:g} s; send it again",
        None,
        default_headers,
    )


def unreadable_request_answer(default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The whole 400 answer to a request the HTTP parser refuses, in the error shape."""
    return edge_answer(
        b"400 Bad Request",
        HTTP_CODES[400],
        "the request cannot be read as HTTP (a malformed request line or header, or a "
        "Content-Length or chunk size that is not a number)",
        None,
        default_headers,
    )


class HeaderLimitedProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` that refuses a request whose head exceeds ``max_header_bytes``.

    Bytes are counted from the end of one request (the start of the connection) until its
    successor's headers are complete. A read that also holds the start of the body is cut where
    the limit falls: the parser gets the part within the limit and, if the head ended there, the
    rest as usual. The bytes of a pipelined request that arrived in the same read as the end of
    the previous one are not counted, so a head may exceed the limit by at most one read.
    """

    def __init__(
        self,
        *args: Any,
        max_header_bytes: int,
        client_timeout: float = CLIENT_TIMEOUT_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.max_header_bytes = max_header_bytes
        self.client_timeout = client_timeout
        self._stall: asyncio.TimerHandle | None = None  # the head's deadline, or the body's pause
        self._head_bytes = 0
        self._reading_head = True
        self._refused = False
        self._line_read = False  # the request line of the head being read has been fed whole
        self._head_started = time.perf_counter()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # One that sends nothing is closed as an idle kept-alive one is (PAIDAN_KEEP_ALIVE_S): a
        # proxy's or client's pool may open it a while before its first request.
        self._wait_for_client(self.timeout_keep_alive)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def _wait_for_client(self, seconds: float | None = None) -> None:
        self._stop_waiting()
        wait = self.client_timeout if seconds is None else seconds
        self._stall = self.loop.call_later(wait, self._client_stalled)

    def _stop_waiting(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def _client_stalled(self) -> None:
        """The head did not arrive within ``client_timeout``, or the body paused as long: a 408
        (nothing to a connection that sent nothing yet), then close."""
        self._stall = None
        if self.transport.is_closing():
            return
        if not self._reading_head and self.flow.read_paused:
            self._wait_for_client()  # the app has not read what came: not the client's pause
            return
        started = self._head_bytes > 0 or not self._reading_head
        if started and (self.cycle is None or not self.cycle.response_started):
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
            logger.warning(
                "%s - request refused with 408: its %s stalled for %g s",
                client,
                "headers" if self._reading_head else "body",
                self.client_timeout,
            )
            self.transport.write(
                timed_out_answer(self.client_timeout, self.server_state.default_headers)
            )
        self.transport.close()  # the app, waiting for the body, is told the client left

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # dropped, unparsed, until the connection closes
        if not self._reading_head:
            self._wait_for_client()  # the body goes on: its pause starts again
            super().data_received(data)
            return
        if self._head_bytes == 0:
            self._wait_for_client()  # a request's first bytes: its head has client_timeout
        room = self.max_header_bytes - self._head_bytes
        if not self._line_read:
            self._line_read = data.find(b"\n", 0, max(room, 0)) >= 0
        if len(data) <= room:
            self._head_bytes += len(data)
            super().data_received(data)
            return
        if room > 0:
            self._head_bytes += room
            super().data_received(data[:room])
            if self.transport.is_closing():  # the parser refused what fits (400)
                return
            if not self._reading_head:  # the head ended within the limit: the rest is its body
                self.data_received(data[room:])
                return
        self._refuse()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_started = time.perf_counter()

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._wait_for_client()  # now for the body, if any
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._stop_waiting()  # all received; the keep-alive timeout takes over once answered
        super().on_message_complete()
        self._reading_head = True
        self._head_bytes = 0
        self._line_read = False

    def send_400_response(self, msg: str) -> None:
        # uvicorn's own answer was text/plain "Invalid HTTP request received.", without the
        # error shape or the safe headers of every other answer (it has logged the warning).
        self.transport.write(unreadable_request_answer(self.server_state.default_headers))
        self.transport.close()

    def _refuse(self) -> None:
        self._refused = True  # nothing more is parsed; the connection closes
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
        logger.warning(
            "%s - request refused with 431: its request line and headers exceed %s bytes (%s)",
            client,
            f"{self.max_header_bytes:,}",
            MAX_HEADER_ENV,
        )
        if self.cycle is None or self.cycle.response_complete:
            # The headers read so far (the request's, once the parser began it): a browser
            # sends Accept (and Chrome its Sec-Fetch-*) before Cookie.
            answer = header_too_large_answer(
                self.max_header_bytes, self.server_state.default_headers, self.headers
            )
            self.transport.write(answer)
            self._count_refusal(431)
            if self.transport.can_write_eof():
                self.transport.write_eof()  # the answer is complete; what follows is dropped
                self.loop.call_later(LINGER_S, self.transport.close)
                return
        # else: an earlier pipelined request is still being answered; an answer written now
        # would land inside it, so the connection is only closed.
        self.transport.close()

    def _count_refusal(self, status: int) -> None:
        """Count an answer given here, before the app, in the app's ``/metrics`` and access log
        (:func:`serve.telemetry.install_refusal_hook`), as the app counts its own."""
        hook = refusal_hook(self.app)
        if hook is None:  # not a paidan app (an app started with uvicorn yourself)
            return
        try:
            hook(self._refused_scope(), status, time.perf_counter() - self._head_started)
        except Exception as e:  # the answer is written; a metrics failure must not lose it
            logger.error("could not count a %d answer in /metrics: %s", status, type(e).__name__)

    def _refused_scope(self) -> dict[str, Any]:
        """The ASGI scope of the request being refused, from the part of its head that was read.

        The method is the first word of the request line; the path is known once the line was
        read whole (a request line over the limit has none: its route is ``unmatched``)."""
        path, query = "", b""
        if self._line_read:
            try:
                url = httptools.parse_url(getattr(self, "url", b""))
            except httptools.HttpParserInvalidURLError:
                url = None
            if url is not None and url.path:
                path = url.path.decode("ascii", "replace")
                if "%" in path:
                    path = urllib.parse.unquote(path)
                query = url.query or b""
        return {
            "type": "http",
            "method": self.parser.get_method().decode("ascii", "replace"),
            "path": self.root_path + path if path else "",
            "root_path": self.root_path,
            "query_string": query,
            "client": self.client,
            "http_version": self.parser.get_http_version() if self._line_read else "1.1",
            "headers": list(self.headers or []),
        }
