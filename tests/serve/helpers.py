"""Assertions shared by the API tests."""

from __future__ import annotations

from typing import Any


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The response has the one error shape; returns its ``error`` object."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "field"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def call_with_messages(
    client: Any, path: str, messages: list[dict[str, Any]], length: int | None = None
) -> list[Any]:
    """POST ``path`` to the started app of ``client`` (a ``TestClient``) straight over ASGI, its
    ``receive`` giving ``messages`` and then nothing more, as a server does for a client that
    neither sends more nor leaves; returns what the app sent.

    The Content-Length header says ``length`` (default: the bodies' total); ``-1`` sends none, as
    a chunked upload. The test client cannot send ``http.disconnect`` (a client that left).
    """
    import anyio

    sent: list[Any] = []
    if length is None:
        length = sum(len(m.get("body", b"")) for m in messages)

    async def call() -> None:
        queue = list(messages)

        async def receive() -> dict[str, Any]:
            if queue:
                return queue.pop(0)
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

        async def send(message: Any) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"testserver"),
                (b"content-type", b"application/json"),
                *([(b"content-length", str(length).encode())] if length >= 0 else []),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
            "state": dict(client.app_state),
        }
        await client.app(scope, receive, send)

    client.portal.call(call)
    return sent
