"""How the API reads a JSON request body: as FastAPI does, but a key written twice is refused, and
a body sent without ``Content-Type: application/json`` is a 415 naming the header.

``json.loads`` keeps the last of two values under one key without a word: a feedback body writing
``department`` twice stored the second, which the next retraining read as the label. The ticket-file
readers refuse such an object (:func:`model.tickets.refuse_same_names`); the API refuses it too,
naming the key and where it is (``body.suggestion.a.0.k``). Inside one item of a batch it
is that item's own error (:class:`RepeatedKeyItem`), as any other bad item's: the whole batch was
refused, the other items not routed.

FastAPI reads a body as JSON only when its Content-Type says JSON; any other body (``curl -d``
and Java's ``HttpURLConnection`` send ``application/x-www-form-urlencoded`` by default) reached
pydantic as bytes, and the answer was "body: Input should be a valid dictionary or object", false
of the JSON object sent. Such a body is not read as JSON either: a browser sends ``text/plain``,
or no type, cross-origin without asking (no CORS preflight), so a page on any site could then
store feedback in a server without keys on the dispatcher's own machine.
"""

from __future__ import annotations

import email.message
import json
import sys
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect

from serve.errors import ApiError, client_left, header_text, quoted


class _Repeated(dict[str, Any]):
    """A JSON object that wrote ``key`` more than once (the last value is kept, as json does)."""

    key: str = ""


class _KeyRepeated(Exception):
    """Raised by :func:`_refuse_repeats` to stop the parse at the first repeated key."""


def _refuse_repeats(items: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(items)
    if len(obj) != len(items):
        raise _KeyRepeated
    return obj  # one C call per object, no Python loop


def _mark_repeats(items: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(items)
    if len(obj) == len(items):
        return obj
    marked = _Repeated(obj)
    seen: set[str] = set()
    for key, _value in items:
        if key in seen:
            marked.key = key
            break
        seen.add(key)
    return marked


# A body larger than this is parsed in a worker thread. One up to it is parsed on the event loop
# in well under a millisecond, or about 3 ms if it is all small numbers (the slowest JSON to read).
PARSE_IN_THREAD_BYTES = 64 * 1024

# Made once: json.loads with any keyword builds a decoder (and its scanner) per call, which was
# most of the parse time of a single ticket's body.
_DECODER = json.JSONDecoder(object_pairs_hook=_refuse_repeats)


@dataclass(frozen=True)
class RepeatedKeyItem:
    """In place of an item of a batch's ``items`` that writes a key twice (in itself or in an object
    inside it), left by :func:`parse_json` for the batch route to answer as that item's error."""

    item: Any  # as json reads it, the last of two values kept: only its id is read, not for sure
    path: tuple[str, ...]  # inside the item, to the object writing ``key`` twice
    key: str

    def error(self, index: int) -> tuple[str, str]:
        """The item's error message and field (``items.3.text``), the key and path quoted."""
        where = [quoted(p) for p in self.path]
        message = f"item {index}: " + (f"{'.'.join(where)}: " if where else "") + _twice(self.key)
        return message, ".".join([f"items.{index}", *where, quoted(self.key)])


def _twice(key: str) -> str:
    return (
        f"the key {quoted(key)!r} is written twice (only one of the two values could be read); "
        "send it once"
    )


def parse_json(body: bytes | str, items_own_errors: bool = False) -> Any:
    """``json.loads(body)``, refusing an object that writes a key twice.

    ``items_own_errors``: a body of a batch, whose ``items`` are answered each on its own; an item
    that writes a key twice is replaced by a :class:`RepeatedKeyItem`, and only a key written twice
    outside the items is refused.

    Raises
    ------
    ApiError
        400 ``malformed_json`` naming the key and its path (``body.suggestion.a.0.k``), or an
        integer of more digits than Python converts (4,300) and its path.
    json.JSONDecodeError, UnicodeDecodeError, RecursionError
        As ``json.loads`` raises them (FastAPI answers those).
    """
    # As json.loads reads bytes (UTF-8, -16 or -32, a BOM allowed) and refuses a str with a BOM.
    text = (
        body if isinstance(body, str) else body.decode(json.detect_encoding(body), "surrogatepass")
    )
    if text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    try:
        return _DECODER.decode(text)
    except _KeyRepeated:
        pass  # read again, marking the objects, to say where
    except json.JSONDecodeError:
        raise
    except ValueError:  # "Exceeds the limit (4300 digits) for integer string conversion"
        _refuse_long_integers(text)
        raise
    value = json.loads(text, object_pairs_hook=_mark_repeats)
    items = value.get("items") if isinstance(value, dict) and items_own_errors else None
    for path, key in list(_repeats(value)):
        if isinstance(items, list) and len(path) > 1 and path[0] == "items":
            i = int(path[1])
            if not isinstance(items[i], RepeatedKeyItem):  # the item's first
                items[i] = RepeatedKeyItem(items[i], tuple(path[2:]), key)
            continue
        # Keys along the path are the client's: quoted PII-masked and cut short.
        where = [quoted(p) for p in path]
        raise ApiError(
            400,
            "malformed_json",
            f"{'.'.join(['body', *where])}: {_twice(key)}",
            ".".join(["body", *where, quoted(key)]),
        )
    return value


class _LongInteger(str):
    """The digits of a JSON integer longer than Python converts, in its place."""


def _long_integer(digits: str) -> int | str:
    try:
        return int(digits)
    except ValueError:
        return _LongInteger(digits)


def _refuse_long_integers(text: str) -> None:
    """Raise a 400 naming the first integer in ``text`` of more digits than ``int()`` converts
    (``sys.get_int_max_str_digits()``, 4,300), if there is one."""
    value = json.loads(text, parse_int=_long_integer)
    for path, node in _nodes(value):
        if isinstance(node, _LongInteger):
            field = ".".join(["body", *(quoted(p) for p in path)])
            digits = len(node.lstrip("-"))
            raise ApiError(
                400,
                "malformed_json",
                f"{field}: is a number of {digits:,} digits; a number may have at most "
                f"{sys.get_int_max_str_digits():,} (send a long id as a string)",
                field,
            )


def _nodes(value: Any) -> Iterator[tuple[list[str], Any]]:
    """Every value inside ``value`` (itself first) with its path, in document order.

    Walked without recursion: the body may nest as deeply as the parser allows.
    """
    stack: list[tuple[Any, list[str]]] = [(value, [])]
    while stack:
        node, path = stack.pop()
        yield path, node
        if isinstance(node, dict):
            children = [(v, [*path, str(k)]) for k, v in node.items()]
        elif isinstance(node, list):
            children = [(v, [*path, str(i)]) for i, v in enumerate(node)]
        else:
            continue
        stack.extend(reversed(children))


def _repeats(value: Any) -> Iterator[tuple[list[str], str]]:
    """The path of each object with a repeated key, in document order, and that key.

    Walked without recursion: the body may nest as deeply as the parser allows.
    """
    for path, node in _nodes(value):
        if isinstance(node, _Repeated):
            yield path, node.key


def is_json_type(content_type: str) -> bool:
    """Whether FastAPI reads a body of this Content-Type as JSON (``application/json``,
    ``application/*+json``, any parameters)."""
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


async def check_content_type(request: Request) -> None:
    """Raise a 415 for a non-empty body whose Content-Type is not JSON (or missing)."""
    content_type = request.headers.get("content-type", "").strip()
    if content_type and is_json_type(content_type):
        return
    try:
        if not await request.body():
            return  # no body: the route's own answer (a body that is required, or none needed)
    except ClientDisconnect:
        raise client_left() from None
    shown = quoted(header_text(content_type))
    raise ApiError(
        415,
        "unsupported_media_type",
        "send the body as JSON with the header Content-Type: application/json ("
        + (f"it was sent as {shown}" if content_type else "it was sent without a Content-Type")
        + ")",
        "Content-Type",
    )


class JsonBodyRequest(Request):
    """A request whose JSON body is read by :func:`parse_json`."""

    items_own_errors = False

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                if len(body) > PARSE_IN_THREAD_BYTES:
                    # A batch of a few MB takes 0.5-2 s to parse: on the event loop, every other
                    # request (/healthz too) waited behind it.
                    self._json = await anyio.to_thread.run_sync(
                        parse_json, body, self.items_own_errors
                    )
                else:  # a ticket's body parses in less time than a thread takes to hand over
                    self._json = parse_json(body, self.items_own_errors)
            except json.JSONDecodeError as e:
                raise not_json(e) from None
        return self._json


def not_json(error: json.JSONDecodeError) -> ApiError:
    """The 400 for a body that does not parse, saying what the parser found and where: "the body is
    not valid JSON" alone left a 500-item batch to be searched by hand for its stray comma. The
    parser's words never quote the body."""
    return ApiError(
        400,
        "malformed_json",
        f"the body is not valid JSON: {error.msg} at line {error.lineno:,}, column "
        f"{error.colno:,} (character {error.pos + 1:,})",
        "body",
    )


class BatchBodyRequest(JsonBodyRequest):
    """A request whose body's ``items`` are answered each on its own: a key written twice in an
    item is that item's error (:class:`RepeatedKeyItem`)."""

    items_own_errors = True


class JsonBodyRoute(APIRoute):
    """The route class of the API's routers: a body that is not JSON is a 415
    (:func:`check_content_type`), and FastAPI reads the body through :class:`JsonBodyRequest`. Its
    error (an :class:`ApiError`, which FastAPI wraps in a 400) is answered as it is by
    :func:`serve.errors.install_error_handlers`."""

    request_class: type[JsonBodyRequest] = JsonBodyRequest

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        takes_body = self.body_field is not None
        request_class = self.request_class

        async def handle(request: Request) -> Response:
            request = request_class(request.scope, request.receive, request._send)
            if takes_body:
                await check_content_type(request)
            return await handler(request)

        return handle


class BatchBodyRoute(JsonBodyRoute):
    """The route class of a batch: its body is read by :class:`BatchBodyRequest`."""

    request_class = BatchBodyRequest
