"""A request id on every answer (``X-Request-ID``), and in the log lines of its request.

A client's own ``X-Request-ID`` is kept when it is a plain token, so that the client's log, a
gateway's and the server's name one request alike; any other request gets one made here. The
access log line (:mod:`serve.telemetry`) and an unexpected error's ERROR line
(:func:`serve.errors.log_unexpected`) name it, and so does the 500 answer, so that a client
reporting "an unexpected error occurred" hands over what finds its traceback.
"""

from __future__ import annotations

import contextvars
import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.db import masked_label

REQUEST_ID_HEADER = "X-Request-ID"
# What a client's id may be: a UUID, a gateway's trace id. Nothing that could break a log line
# (spaces, quotes, line breaks) or make it unreadable.
CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")

_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "paidan_request_id", default=None
)


def current_request_id() -> str | None:
    """The id of the request being answered in this context, ``None`` outside one."""
    return _REQUEST_ID.get()


def request_id_of(sent: str | None) -> str:
    """The id a request is answered and logged under: the client's ``sent`` if it is a plain
    token (:data:`CLIENT_REQUEST_ID`) with nothing to mask in it (a phone number as an id would
    put one in the log), else a new one."""
    if sent is not None and CLIENT_REQUEST_ID.fullmatch(sent) and masked_label(sent) == sent:
        return sent
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Gives each HTTP request its id (:func:`request_id_of`) and every answer the header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        name = REQUEST_ID_HEADER.lower().encode("ascii")
        sent = next((v for k, v in scope.get("headers", []) if k.lower() == name), None)
        request_id = request_id_of(sent.decode("latin-1") if sent is not None else None)
        token = _REQUEST_ID.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != name]
                headers.append((name, request_id.encode("ascii")))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _REQUEST_ID.reset(token)
