"""Who gets in: API keys (hashed, constant-time), 401/403 in the error format, CORS, safe headers."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx2
import psutil
import pytest
from fastapi.testclient import TestClient
from starlette.responses import PlainTextResponse
from starlette.types import Message, Receive, Scope, Send
from typer.testing import CliRunner

from model.settings import Settings, SettingsError, load_settings
from paidan.cli import app as cli
from serve.auth import UnsafeBind, check_bind_allowed, matches
from serve.hosts import HostCheckMiddleware, served_hosts
from tests.reliability.conftest import ADMIN_KEY, API_KEY
from tests.reliability.live import LiveServer, port_of
from tests.serve.helpers import assert_error

FEEDBACK = {"ticket_id": "K-1", "text": "老板拖欠工资三个月", "department": "人社"}
TICKET = {"text": "楼下烧烤店油烟扰民"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def keyed(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(api_keys=[API_KEY], admin_keys=[ADMIN_KEY])


# -- keys ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/feedback", FEEDBACK),
        ("GET", "/v1/feedback", None),
        ("POST", "/v1/admin/reload", {}),
    ],
)
def test_protected_endpoints_need_a_key(
    keyed: TestClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    missing = keyed.request(method, path, json=body)
    error = assert_error(missing, 401, "unauthorized")
    assert "API key" in error["message"]
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert_error(keyed.request(method, path, json=body, headers=bearer("x" * 40)), 401)
    assert_error(
        keyed.request(method, path, json=body, headers={"X-API-Key": "not-" + API_KEY}), 401
    )


def test_a_valid_key_in_either_header_is_accepted(keyed: TestClient) -> None:
    saved = keyed.post("/v1/feedback", json=FEEDBACK, headers=bearer(API_KEY))
    assert saved.status_code == 201, saved.text
    exported = keyed.get("/v1/feedback", headers={"X-API-Key": API_KEY})
    assert exported.status_code == 200
    assert '"ticket_id":"K-1"' in exported.text


GATEWAY_JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJnYXRld2F5In0.c2ln"


def test_a_valid_key_passes_beside_a_gateways_own_bearer_token(keyed: TestClient) -> None:
    # An API gateway or SSO proxy forwards its own Authorization: Bearer <JWT>; the client sends
    # its paidan key as X-API-Key. Only the Bearer token was read: 401 "the API key is not valid".
    both = {**bearer(GATEWAY_JWT), "X-API-Key": API_KEY}
    saved = keyed.post("/v1/feedback", json=FEEDBACK, headers=both)
    assert saved.status_code == 201, saved.text
    assert keyed.get("/v1/feedback", headers=both).status_code == 200
    # The other way round, and the admin rights of whichever key has them.
    assert (
        keyed.get("/v1/feedback", headers={**bearer(API_KEY), "X-API-Key": "x"}).status_code == 200
    )
    admin = {**bearer(GATEWAY_JWT), "X-API-Key": ADMIN_KEY}
    assert keyed.post("/v1/admin/reload", json={}, headers=admin).status_code == 200
    mixed = {**bearer(API_KEY), "X-API-Key": ADMIN_KEY}
    assert keyed.post("/v1/admin/reload", json={}, headers=mixed).status_code == 200
    user = {**bearer(GATEWAY_JWT), "X-API-Key": API_KEY}
    assert_error(keyed.post("/v1/admin/reload", json={}, headers=user), 403, "forbidden")
    # Neither valid: 401, naming both headers.
    neither = {**bearer(GATEWAY_JWT), "X-API-Key": "not-" + API_KEY}
    error = assert_error(keyed.post("/v1/feedback", json=FEEDBACK, headers=neither), 401)
    assert "Authorization" in error["message"] and "X-API-Key" in error["message"]


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer"])
def test_the_bearer_scheme_is_read_in_any_case(keyed: TestClient, scheme: str) -> None:
    # RFC 7235 (section 2.1) and RFC 6750: the auth-scheme is case-insensitive.
    saved = keyed.post(
        "/v1/feedback", json=FEEDBACK, headers={"Authorization": f"{scheme} {API_KEY}"}
    )
    assert saved.status_code == 201, saved.text


@pytest.mark.parametrize(
    ("header", "said"),
    [
        (API_KEY, "the Authorization header has no `Bearer ` before the key"),
        ("not-" + API_KEY, "the Authorization header has no `Bearer ` before the key"),
        (f"Token {API_KEY}", "the Authorization header's scheme is `Token`, not `Bearer`"),
        (f"basic {API_KEY}", "the Authorization header's scheme is `basic`, not `Bearer`"),
        (f"Secret-{API_KEY} x", "the Authorization header's scheme is not `Bearer`"),
        ("Bearer", "the Authorization header has `Bearer` but no key after it"),
    ],
    ids=["bare-key", "bare-wrong-key", "token", "basic", "unknown-scheme", "bearer-alone"],
)
def test_an_authorization_header_not_in_the_bearer_form_is_told_how_it_must_read(
    keyed: TestClient, caplog: pytest.LogCaptureFixture, header: str, said: str
) -> None:
    # A bare key or `Token <key>` was answered "this endpoint needs an API key", as if none had
    # been sent: the client could not tell that the key was there but the header's form was wrong.
    with caplog.at_level(logging.DEBUG):
        r = keyed.post("/v1/feedback", json=FEEDBACK, headers={"Authorization": header})
    error = assert_error(r, 401, "unauthorized")
    assert error["message"] == (
        f"{said}: it must read `Authorization: Bearer <key>` (or send the key as "
        "`X-API-Key: <key>`)"
    )
    assert error["field"] == "Authorization"
    assert API_KEY not in r.text and API_KEY not in caplog.text
    # Beside an X-API-Key that is not valid either, both are said; a valid one passes (a
    # gateway in front may send its own `Basic` credentials).
    both = {"Authorization": header, "X-API-Key": "not-" + API_KEY}
    error = assert_error(keyed.post("/v1/feedback", json=FEEDBACK, headers=both), 401)
    assert error["message"] == (
        f"X-API-Key is not a valid API key, and {said} (a key sent in it must read "
        "`Authorization: Bearer <key>`)"
    )
    passed = {"Authorization": header, "X-API-Key": API_KEY}
    assert keyed.post("/v1/feedback", json=FEEDBACK, headers=passed).status_code == 201


def test_a_key_refused_in_x_api_key_names_that_header(keyed: TestClient) -> None:
    # It was "the API key is not valid" with field "Authorization", a header the client never
    # sent; and a key sent as `X-API-Key: Bearer <key>`, in the form the other header takes, was
    # refused without a word about the `Bearer ` that made it invalid.
    error = assert_error(
        keyed.post("/v1/feedback", json=FEEDBACK, headers={"X-API-Key": "not-" + API_KEY}), 401
    )
    assert error == {
        "code": "unauthorized",
        "message": "X-API-Key is not a valid API key",
        "field": "X-API-Key",
    }
    for scheme in ("Bearer", "bearer"):
        sent = {"X-API-Key": f"{scheme} {API_KEY}"}
        r = keyed.post("/v1/feedback", json=FEEDBACK, headers=sent)
        error = assert_error(r, 401, "unauthorized")
        assert error == {
            "code": "unauthorized",
            "message": "X-API-Key is not a valid API key: it holds `Bearer ` before the key; "
            "send the key alone, `X-API-Key: <key>`",
            "field": "X-API-Key",
        }
        assert API_KEY not in r.text
    # A key refused in Authorization is still said as before.
    error = assert_error(
        keyed.post("/v1/feedback", json=FEEDBACK, headers=bearer("not-" + API_KEY)), 401
    )
    assert error == {
        "code": "unauthorized",
        "message": "the API key is not valid",
        "field": "Authorization",
    }


def test_an_export_without_a_key_is_told_so_before_its_query_is_read(keyed: TestClient) -> None:
    error = assert_error(keyed.get("/v1/feedback?sinse=2026-01-01"), 401, "unauthorized")
    assert error["field"] == "Authorization"
    sent = keyed.get("/v1/feedback?sinse=2026-01-01", headers=bearer(API_KEY))
    assert assert_error(sent, 422, "invalid_request")["field"] == "query.sinse"
    # So is a reload: no one without a key learns what the endpoint takes.
    error = assert_error(keyed.post("/v1/admin/reload?model_dir=v2", json={}), 401)
    assert error["field"] == "Authorization"
    sent = keyed.post("/v1/admin/reload?model_dir=v2", json={}, headers=bearer(ADMIN_KEY))
    assert assert_error(sent, 422, "invalid_request")["field"] == "query.model_dir"


def test_admin_endpoints_need_an_admin_key(keyed: TestClient) -> None:
    # A valid API key that is not an admin key: known, but not allowed.
    error = assert_error(keyed.post("/v1/admin/reload", json={}, headers=bearer(API_KEY)), 403)
    assert error["code"] == "forbidden" and error["field"] == "Authorization"
    # Sent as X-API-Key alone, the refusal named the Authorization header the client never sent.
    sent = keyed.post("/v1/admin/reload", json={}, headers={"X-API-Key": API_KEY})
    assert assert_error(sent, 403, "forbidden")["field"] == "X-API-Key"
    # The admin key passes: the root's current model is reloaded.
    passed = keyed.post("/v1/admin/reload", json={}, headers=bearer(ADMIN_KEY))
    assert passed.status_code == 200, passed.text
    assert passed.json()["version"] == keyed.get("/v1/model").json()["version"]
    # The admin key also works where an API key does.
    assert keyed.post("/v1/feedback", json=FEEDBACK, headers=bearer(ADMIN_KEY)).status_code == 201


def test_api_keys_are_admin_keys_when_no_admin_key_is_set(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(api_keys=[API_KEY])
    assert client.post("/v1/admin/reload", json={}, headers=bearer(API_KEY)).status_code == 200
    assert_error(client.post("/v1/admin/reload", json={}), 401)


def test_route_is_open_unless_the_setting_requires_a_key(
    keyed: TestClient, make_client: Callable[..., TestClient]
) -> None:
    assert keyed.post("/v1/route", json=TICKET).status_code == 200
    strict = make_client(api_keys=[API_KEY], require_key_for_route=True)
    assert_error(strict.post("/v1/route", json=TICKET), 401, "unauthorized")
    assert_error(strict.post("/v1/route/batch", json={"items": [TICKET]}), 401, "unauthorized")
    assert strict.post("/v1/route", json=TICKET, headers=bearer(API_KEY)).status_code == 200
    batch = strict.post("/v1/route/batch", json={"items": [TICKET]}, headers=bearer(API_KEY))
    assert batch.status_code == 200 and batch.json()["ok"] == 1
    # Probes and the page stay open: a load balancer has no key.
    assert strict.get("/readyz").status_code == 200
    assert strict.get("/").status_code == 200


def test_openapi_documents_a_key_on_routing_only_where_one_is_checked(
    keyed: TestClient, make_client: Callable[..., TestClient]
) -> None:
    def answers(client: TestClient, path: str) -> set[str]:
        return set(client.get("/openapi.json").json()["paths"][path]["post"]["responses"])

    strict = make_client(api_keys=[API_KEY], require_key_for_route=True)
    for path in ("/v1/route", "/v1/route/batch"):
        assert {"401", "403"} <= answers(strict, path)
        assert not {"401", "403"} & answers(keyed, path)  # keys exist, but routing is open
    assert {"401", "403"} <= answers(keyed, "/v1/feedback")


def test_settings_keep_only_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    digest = hashlib.sha256(b"a-second-key-0123456789").hexdigest()
    monkeypatch.setenv("PAIDAN_API_KEYS", f"{API_KEY}, sha256:{digest.upper()}")
    settings = load_settings()
    assert settings.api_keys == (
        "sha256:" + hashlib.sha256(API_KEY.encode()).hexdigest(),
        "sha256:" + digest,
    )
    assert API_KEY not in repr(settings) and API_KEY not in settings.model_dump_json()
    assert matches(API_KEY, settings.api_keys)
    assert matches("a-second-key-0123456789", settings.api_keys)
    assert not matches(API_KEY[:-1], settings.api_keys)


@pytest.mark.slow
def test_the_workers_environment_holds_the_keys_hashes_not_the_keys(
    live_server_factory: Callable[..., LiveServer], tiny_model_dir: Path, tmp_path: Path
) -> None:
    # SECURITY.md: the running process keeps only the hashes. Every --workers process had the
    # raw admin key in its environment (/proc/PID/environ, core dumps, crash reporters).
    server = live_server_factory(
        "--model",
        str(tiny_model_dir),
        "--workers",
        "2",
        env={
            "PAIDAN_MODEL_ROOT": str(tiny_model_dir.parent),
            "PAIDAN_DATA_DIR": str(tmp_path),
            "PAIDAN_API_KEYS": API_KEY,
            "PAIDAN_ADMIN_KEYS": ADMIN_KEY,
        },
    )
    deadline = time.monotonic() + 60
    while "2 workers serving" not in server.logs():
        assert time.monotonic() < deadline, server.logs()[-3000:]
        time.sleep(0.1)
    children = psutil.Process(server.proc.pid).children(recursive=True)
    assert len(children) >= 2
    for child in children:
        environ = Path(f"/proc/{child.pid}/environ").read_bytes()
        assert API_KEY.encode() not in environ and ADMIN_KEY.encode() not in environ
        assert f"sha256:{hashlib.sha256(ADMIN_KEY.encode()).hexdigest()}".encode() in environ
    with httpx2.Client(base_url=server.url, timeout=10) as client:
        for _ in range(6):  # new connections reach both workers, which take the raw keys still
            with httpx2.Client(base_url=server.url, timeout=10) as fresh:
                assert fresh.get("/v1/feedback", headers=bearer(API_KEY)).status_code == 200
        assert_error(client.get("/v1/feedback", headers=bearer("x" * 40)), 401)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("short-key", "at least 16"),
        ("sha256:abc", "64 hex digits"),
        # Hashed as UTF-8, but a header arrives decoded as Latin-1: it could never authenticate.
        ("派单密钥-0123456789abcdef", "outside printable ASCII"),
        ("key-with-a-bell-\x07-0123456789", "outside printable ASCII"),
    ],
)
def test_bad_keys_stop_startup_without_being_echoed(
    monkeypatch: pytest.MonkeyPatch, value: str, problem: str
) -> None:
    monkeypatch.setenv("PAIDAN_API_KEYS", f"{API_KEY},{value}")
    with pytest.raises(SettingsError) as e:
        load_settings()
    message = str(e.value)
    assert "PAIDAN_API_KEYS" in message and "entry 2" in message and problem in message
    assert value not in message and API_KEY not in message
    assert "\n" not in message


def test_no_key_is_ever_logged(keyed: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    wrong = "wrong-key-that-must-not-be-logged-42"
    with caplog.at_level(logging.DEBUG):
        keyed.post("/v1/feedback", json=FEEDBACK, headers=bearer(API_KEY))
        keyed.post("/v1/feedback", json=FEEDBACK, headers=bearer(wrong))
        keyed.get("/v1/feedback", headers={"X-API-Key": wrong})
        keyed.post("/v1/admin/reload", json={}, headers=bearer(ADMIN_KEY))
        response = keyed.post("/v1/admin/reload", json={}, headers=bearer(wrong))
    assert "serve.access" in {r.name for r in caplog.records}, "the access log is on by default"
    for secret in (API_KEY, ADMIN_KEY, wrong):
        assert secret not in caplog.text
        assert secret not in response.text


# -- without keys: loopback only -------------------------------------------------------------------
def test_without_keys_the_endpoints_are_open_but_only_loopback_may_be_bound(
    client: TestClient, tmp_path: Path
) -> None:
    assert client.post("/v1/feedback", json=FEEDBACK).status_code == 201
    bare = Settings(model_root=tmp_path)
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        check_bind_allowed(bare, host)
    for host in ("0.0.0.0", "::", "192.168.1.10", "paidan.example.gov.cn"):
        with pytest.raises(UnsafeBind, match="PAIDAN_API_KEYS"):
            check_bind_allowed(bare, host)
    check_bind_allowed(Settings(model_root=tmp_path, api_keys=[API_KEY]), "0.0.0.0")
    with pytest.raises(UnsafeBind, match="REQUIRE_KEY_FOR_ROUTE"):
        check_bind_allowed(Settings(model_root=tmp_path, require_key_for_route=True), "127.0.0.1")


def test_paidan_serve_refuses_a_public_interface_without_keys(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        cli,
        ["serve", "--model", str(tiny_model_dir), "--host", "0.0.0.0"],
        env={
            "PAIDAN_MODEL_ROOT": str(tiny_model_dir.parent),
            "PAIDAN_DATA_DIR": str(tmp_path),
            "PAIDAN_API_KEYS": "",
        },
    )
    assert result.exit_code == 2, result.output
    assert "refusing to listen on 0.0.0.0 without API keys" in " ".join(result.output.split())
    # Said as every command says an error (paidan.cli.fail), lower case, not a log line.
    assert result.output.startswith("error: refusing to listen"), result.output
    # Refused before the address was announced as served.
    assert "serving" not in result.output


def test_paidan_serve_refuses_before_training_the_default_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An empty root used to train the default model (a minute) before the bind was refused.
    monkeypatch.setattr("model.resources.sample_path", lambda: pytest.fail("trained"))
    result = CliRunner().invoke(
        cli,
        ["serve", "--host", "0.0.0.0"],
        env={
            "PAIDAN_MODEL_ROOT": str(tmp_path / "models"),
            "PAIDAN_DATA_DIR": str(tmp_path),
            "PAIDAN_API_KEYS": "",
        },
    )
    assert result.exit_code == 2, result.output
    assert "without API keys" in result.output
    assert not (tmp_path / "models").exists()


# -- the Host check (DNS rebinding) ----------------------------------------------------------------
def loopback_client(make_client: Callable[..., TestClient], **overrides: Any) -> TestClient:
    """An app as `paidan serve` on 127.0.0.1 builds it (no keys: the single-user mode)."""
    settings = Settings(**{"model_root": Path("models"), **overrides})
    return make_client(**{**overrides, "allowed_hosts": served_hosts(settings, "127.0.0.1")})


def test_a_loopback_server_refuses_a_page_that_reaches_it_by_dns_rebinding(
    make_client: Callable[..., TestClient],
) -> None:
    # A page on attacker.example whose name was re-pointed at 127.0.0.1 is same-origin with the
    # server: it read the feedback export of the keyless single-user mode (SECURITY.md promises
    # that a page on another origin reads nothing).
    client = loopback_client(make_client)
    assert client.post("/v1/feedback", json=FEEDBACK, headers={"Host": "localhost:8000"}).is_success
    for method, path in (("GET", "/v1/feedback"), ("POST", "/v1/admin/reload"), ("GET", "/")):
        refused = client.request(method, path, headers={"Host": "attacker.example:8000"})
        error = assert_error(refused, 400, "host_not_allowed")
        assert error["field"] == "Host"
        message = " ".join(error["message"].split())
        assert "attacker.example:8000" in message
        assert "PAIDAN_ALLOWED_HOSTS" in message and "reverse proxy" in message
        assert "K-1" not in refused.text
        assert refused.headers["referrer-policy"] == "no-referrer"
        assert refused.headers["x-content-type-options"] == "nosniff"
    # Its own names, with any port, and IP addresses (nothing to rebind) are answered.
    for host in ("localhost:8000", "LOCALHOST", "127.0.0.1:8000", "[::1]:8000", "10.1.2.3:80"):
        answer = client.get("/v1/feedback", headers={"Host": host})
        assert answer.status_code == 200 and "K-1" in answer.text, (host, answer.text)
    # The probes answer whatever name an orchestrator probes by.
    for path in ("/healthz", "/readyz", "/healthz/"):
        assert client.get(path, headers={"Host": "paidan.svc.cluster.local"}).status_code == 200


def test_a_loopback_server_answers_the_host_a_proxy_on_this_machine_sends(
    make_client: Callable[..., TestClient],
) -> None:
    # nginx with an upstream block (the only place its keepalive goes) sends the upstream's name:
    # every request through README's recommended setup was a 400 after the upgrade. A name without
    # a dot is no domain a rebinding page can have.
    client = loopback_client(make_client)
    for host in ("paidan_backend", "paidan_backend:8000", "Paidan", "desk-07:80"):
        assert client.get("/v1/feedback", headers={"Host": host}).status_code == 200, host
    # Dotted names still need listing: the public name Caddy and Traefik forward by default.
    for host in ("paidan.backend", "gw.example.gov.cn", "gw.example.gov.cn:443", "a.b:8000"):
        message = assert_error(
            client.get("/v1/feedback", headers={"Host": host}), 400, "host_not_allowed"
        )["message"]
        assert "Caddy and Traefik" in " ".join(message.split()), message
    # Off loopback the check is the setting's, with the same rule for names without a dot.
    listed = make_client(allowed_hosts="gw.example.gov.cn")
    assert listed.get("/v1/model", headers={"Host": "paidan:8000"}).status_code == 200
    assert_error(listed.get("/v1/model", headers={"Host": "evil.example"}), 400, "host_not_allowed")


def test_the_host_refused_is_shown_masked_and_cut(make_client: Callable[..., TestClient]) -> None:
    client = loopback_client(make_client)
    error = assert_error(
        client.get("/v1/model", headers={"Host": "13812345678." + "a" * 300 + ".example"}),
        400,
        "host_not_allowed",
    )
    assert "13812345678" not in error["message"] and "[手机号]" in error["message"]
    assert "a" * 101 not in error["message"]


def test_allowed_hosts_add_the_names_a_proxy_forwards(
    make_client: Callable[..., TestClient],
) -> None:
    client = loopback_client(
        make_client, allowed_hosts="Paidan.Example.gov.cn,*.desk.example.gov.cn"
    )
    for host in ("paidan.example.gov.cn", "paidan.example.gov.cn:443", "a.desk.example.gov.cn"):
        assert client.get("/v1/model", headers={"Host": host}).status_code == 200, host
    for host in ("example.gov.cn", "desk.example.gov.cn.evil.example", "evil.example"):
        assert_error(client.get("/v1/model", headers={"Host": host}), 400, "host_not_allowed")
    anything = loopback_client(make_client, allowed_hosts="*")
    assert anything.get("/v1/model", headers={"Host": "evil.example"}).status_code == 200


def test_a_request_without_a_host_is_answered_a_browser_always_names_one() -> None:
    # HTTP/1.0 makes Host optional (old check_http probes, socket scripts): it was refused on
    # loopback as if it were DNS rebinding, which only a browser, naming the page's host, can do.
    answered: list[str] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        answered.append(scope["path"])
        await PlainTextResponse("ok")(scope, receive, send)

    checked = HostCheckMiddleware(inner, allowed_hosts=("localhost",))

    def status(headers: list[tuple[bytes, bytes]]) -> int:
        sent: list[Message] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/v1/model", "root_path": "",
                 "headers": headers, "query_string": b"", "http_version": "1.0"}  # fmt: skip
        asyncio.run(checked(scope, receive, send))
        return int(sent[0]["status"])

    assert status([]) == 200
    assert status([(b"host", b"")]) == 200
    assert status([(b"host", b"attacker.example")]) == 400
    assert answered == ["/v1/model", "/v1/model"]


def test_a_trailing_dot_is_the_same_host_in_the_setting_and_the_header(
    make_client: Callable[..., TestClient],
) -> None:
    # `gw.example.gov.cn.` as dig and zone files print it was accepted but matched only a Host with
    # the dot, so every request by the listed name was refused; `localhost.:8000` was refused too.
    client = loopback_client(make_client, allowed_hosts="gw.example.gov.cn.,*.desk.example.gov.cn")
    for host in (
        "gw.example.gov.cn",
        "gw.example.gov.cn.:443",
        "a.desk.example.gov.cn.",
        "localhost.:8000",
        "LocalHost.",
    ):
        assert client.get("/v1/model", headers={"Host": host}).status_code == 200, host
    for host in ("gw.example.gov.cn..", ".", "evil.example.", "desk.example.gov.cn."):
        assert_error(client.get("/v1/model", headers={"Host": host}), 400, "host_not_allowed")


def test_names_under_localhost_are_answered_like_localhost(
    make_client: Callable[..., TestClient],
) -> None:
    # Browsers resolve app.localhost to loopback themselves (RFC 6761) and no one can register a
    # name under .localhost, so nothing can rebind it; a dispatcher opening
    # http://paidan.localhost:8000/ (to keep its site data apart) was refused with a 400.
    client = loopback_client(make_client)
    for host in ("app.localhost", "foo.localhost:8000", "A.B.LocalHost.", "paidan.localhost.:80"):
        answer = client.get("/v1/feedback", headers={"Host": host})
        assert answer.status_code == 200, (host, answer.text)
    # Only names *under* localhost: a registrable domain that merely contains the word is not.
    for host in ("localhost.evil.example", "app.localhost.evil.example", "evillocalhost.example"):
        assert_error(client.get("/v1/feedback", headers={"Host": host}), 400, "host_not_allowed")
    # As localhost is, they are answered wherever the check is on.
    listed = make_client(allowed_hosts="gw.example.gov.cn")
    assert listed.get("/v1/model", headers={"Host": "app.localhost:8000"}).status_code == 200


def test_the_middleware_answers_the_loopback_names_without_listing_them() -> None:
    # HostCheckMiddleware no longer merges the loopback names into its patterns (served_hosts
    # already did, and the rule answers them anyway): an app built with other names only still
    # answers localhost and the loopback addresses, and still refuses other dotted names.
    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("ok")(scope, receive, send)

    def status(allowed: tuple[str, ...], host: bytes) -> int:
        sent: list[Message] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/v1/model", "root_path": "",
                 "headers": [(b"host", host)], "query_string": b"", "http_version": "1.1"}  # fmt: skip
        asyncio.run(HostCheckMiddleware(inner, allowed_hosts=allowed)(scope, receive, send))
        return int(sent[0]["status"])

    for allowed in ((), ("gw.example.gov.cn",)):
        for host in (b"localhost", b"localhost.:8000", b"127.0.0.1:8000", b"[::1]", b"x.localhost"):
            assert status(allowed, host) == 200, (allowed, host)
        assert status(allowed, b"evil.example") == 400
    assert status(("gw.example.gov.cn",), b"gw.example.gov.cn:443") == 200


def test_the_host_check_is_on_for_loopback_and_elsewhere_only_when_set(tmp_path: Path) -> None:
    bare = Settings(model_root=tmp_path)
    assert served_hosts(bare, "127.0.0.1") == ("localhost", "127.0.0.1", "[::1]")
    assert served_hosts(bare, "::1") == served_hosts(bare, "localhost")
    # Elsewhere keys are required (check_bind_allowed); clients and load balancers may reach the
    # server by names of their own, so the check is the setting's.
    assert served_hosts(bare, "0.0.0.0") == ()
    named = Settings(model_root=tmp_path, allowed_hosts="paidan.example.gov.cn")
    assert served_hosts(named, "0.0.0.0") == ("paidan.example.gov.cn",)
    assert served_hosts(named, "127.0.0.1")[-1] == "paidan.example.gov.cn"


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("paidan.example.gov.cn:443", "has a port"),
        ("https://paidan.example.gov.cn", "not a host name"),
        ("*example.gov.cn", "not a host name"),
        ("paidan.*.gov.cn", "not a host name"),
        ("gw.example.gov.cn..", "not a host name"),
        (".", "not a host name"),
    ],
)
def test_bad_allowed_hosts_stop_startup(
    monkeypatch: pytest.MonkeyPatch, entry: str, problem: str
) -> None:
    monkeypatch.setenv("PAIDAN_ALLOWED_HOSTS", entry)
    with pytest.raises(SettingsError, match=rf"PAIDAN_ALLOWED_HOSTS.*{problem}"):
        load_settings()


def test_allowed_hosts_are_kept_as_browsers_send_them() -> None:
    assert Settings(allowed_hosts="Paidan.Example.gov.cn, 派单.政务.cn ::1").allowed_hosts == (
        "paidan.example.gov.cn",
        "xn--4krv61d.xn--zfr164b.cn",
        "[::1]",
    )
    assert Settings(allowed_hosts="gw.example.gov.cn.,*.example.gov.cn.").allowed_hosts == (
        "gw.example.gov.cn",
        "*.example.gov.cn",
    )


@pytest.mark.slow
def test_paidan_serve_on_loopback_refuses_other_host_names_in_every_worker(
    live_server_factory: Callable[..., LiveServer], tiny_model_dir: Path, tmp_path: Path
) -> None:
    server = live_server_factory(
        "--model",
        str(tiny_model_dir),
        "--workers",
        "2",
        env={
            "PAIDAN_MODEL_ROOT": str(tiny_model_dir.parent),
            "PAIDAN_DATA_DIR": str(tmp_path),
            "PAIDAN_ALLOWED_HOSTS": "",
        },
    )
    port = port_of(server)
    with httpx2.Client(base_url=server.url, timeout=10) as client:
        for _ in range(8):  # new connections: both workers answer
            with httpx2.Client(base_url=server.url, timeout=10) as fresh:
                refused = fresh.get("/v1/feedback", headers={"Host": f"attacker.example:{port}"})
                assert_error(refused, 400, "host_not_allowed")
        assert client.get("/v1/feedback").status_code == 200  # Host: 127.0.0.1:PORT
        proxied = client.get("/v1/model", headers={"Host": "paidan.example.gov.cn"})
        assert "PAIDAN_ALLOWED_HOSTS" in assert_error(proxied, 400, "host_not_allowed")["message"]
    for path in ("/metrics", "/v1/model"):  # HTTP/1.0 without Host: no browser, no rebinding
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
            answer = b"".join(iter(lambda: raw.recv(65536), b""))
        assert answer.split(b"\r\n", 1)[0].endswith(b" 200 OK"), answer[:200]


# -- CORS and headers ------------------------------------------------------------------------------
PREFLIGHT = {
    "Origin": "https://desk.example.gov.cn",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type",
}


def test_cors_is_off_by_default(client: TestClient) -> None:
    preflight = client.options("/v1/route", headers=PREFLIGHT)
    assert "access-control-allow-origin" not in preflight.headers
    simple = client.post("/v1/route", json=TICKET, headers={"Origin": PREFLIGHT["Origin"]})
    assert simple.status_code == 200
    assert "access-control-allow-origin" not in simple.headers


def test_cors_allows_only_the_configured_origins(make_client: Callable[..., TestClient]) -> None:
    client = make_client(cors_origins="https://desk.example.gov.cn/")
    preflight = client.options("/v1/feedback", headers=PREFLIGHT)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == PREFLIGHT["Origin"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in preflight.headers
    other = client.options("/v1/feedback", headers={**PREFLIGHT, "Origin": "https://evil.example"})
    # Was 400 text/plain "Disallowed CORS origin", naming neither the origin nor the setting.
    error = assert_error(other, 400, "cors_refused")
    assert error["field"] == "Origin"
    assert "https://evil.example is not in PAIDAN_CORS_ORIGINS" in error["message"]
    assert "access-control-allow-origin" not in other.headers
    for asked, field, says in (
        ({"Access-Control-Request-Method": "PUT"}, "Access-Control-Request-Method", "PUT"),
        (
            {"Access-Control-Request-Headers": "content-type,x-requested-with"},
            "Access-Control-Request-Headers",
            "the header x-requested-with is not allowed",
        ),
        # A request's own values are quoted PII-masked, as every error message quotes them.
        (
            {"Access-Control-Request-Headers": "x-13812345678"},
            "Access-Control-Request-Headers",
            "the header x-[手机号] is not allowed",
        ),
    ):
        error = assert_error(client.options("/v1/route", headers={**PREFLIGHT, **asked}), 400)
        assert error["code"] == "cors_refused" and error["field"] == field
        assert says in error["message"], error
        assert "13812345678" not in error["message"]
    simple = client.post("/v1/route", json=TICKET, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers


def test_cors_origins_are_kept_as_browsers_send_them(
    make_client: Callable[..., TestClient],
) -> None:
    # Browsers send the host in lower case and no default port, and CORS compares strings: these
    # were accepted as written, and every preflight from the desks was a 400.
    configured = "https://Desk.Example.gov.cn:443, HTTP://desk2.example.gov.cn:80/"
    client = make_client(cors_origins=configured)
    for origin in ("https://desk.example.gov.cn", "http://desk2.example.gov.cn"):
        preflight = client.options("/v1/feedback", headers={**PREFLIGHT, "Origin": origin})
        assert preflight.status_code == 200, (origin, preflight.text)
        assert preflight.headers["access-control-allow-origin"] == origin
    assert Settings(cors_origins=configured).cors_origins == (
        "https://desk.example.gov.cn",
        "http://desk2.example.gov.cn",
    )
    assert Settings(
        cors_origins="https://desk.example.gov.cn:8443,http://desk.example.gov.cn:443,https://政务.cn,*"
    ).cors_origins == (
        "https://desk.example.gov.cn:8443",  # not the default port: kept
        "http://desk.example.gov.cn:443",
        "https://xn--zfr164b.cn",  # an international host as browsers send it
        "*",
    )


@pytest.mark.parametrize(
    "origin",
    ["desk.example.gov.cn/path", "https://desk.example.gov.cn:https", "https://user@desk.example"],
)
def test_bad_cors_origin_stops_startup(monkeypatch: pytest.MonkeyPatch, origin: str) -> None:
    monkeypatch.setenv("PAIDAN_CORS_ORIGINS", origin)
    with pytest.raises(SettingsError, match=r"PAIDAN_CORS_ORIGINS.*scheme://host"):
        load_settings()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("not a url", "is not a database URL"),
        ("mysql://paidan:s3cret-pw@db/paidan", "'mysql' database is not supported"),
        ("postgresql+psycopg2://paidan:s3cret-pw@db/paidan", "driver 'postgresql+psycopg2'"),
    ],
)
def test_bad_database_url_stops_startup_in_one_line(
    monkeypatch: pytest.MonkeyPatch, url: str, problem: str
) -> None:
    # Was a traceback from inside SQLAlchemy when the engine was made (serve, drift, retrain).
    monkeypatch.setenv("PAIDAN_DATABASE_URL", url)
    with pytest.raises(SettingsError) as e:
        load_settings()
    message = str(e.value)
    assert message.startswith("invalid settings: PAIDAN_DATABASE_URL: ") and problem in message
    assert "s3cret-pw" not in message and "Value error" not in message
    assert "\n" not in message


def test_page_sends_a_strict_csp_and_safe_headers(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    csp = {
        part.split()[0]: part.split()[1:]
        for part in page.headers["content-security-policy"].split("; ")
    }
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval', no CDN
    assert csp["object-src"] == ["'none'"] and csp["frame-ancestors"] == ["'none'"]
    assert not any("unsafe" in v for values in csp.values() for v in values)
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"


def test_api_answers_are_not_cached_or_sniffed(client: TestClient) -> None:
    for response in (
        client.post("/v1/route", json=TICKET),
        client.get("/v1/feedback"),
        client.post("/v1/route", json={}),  # an error answer too
    ):
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"


def test_api_answers_are_not_cached_under_a_root_path(client: TestClient) -> None:
    # `paidan serve --root-path /paidan` (uvicorn's root_path) puts the prefix in front of the
    # path: the check of `path.startswith("/v1/")` missed, and every API answer, the feedback
    # export included, went out without no-store.
    behind = TestClient(client.app, root_path="/paidan")
    for response in (
        behind.post("/paidan/v1/route", json=TICKET),
        behind.get("/paidan/v1/feedback"),
        behind.get("/paidan/v1/model"),
        behind.post("/paidan/v1/route", json={}),
    ):
        assert response.status_code in (200, 422), response.text
        assert response.headers["cache-control"] == "no-store"
    page = behind.get("/paidan/")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-cache"


def test_the_page_works_under_a_proxys_sub_path(client: TestClient) -> None:
    # A proxy publishing the server under https://gw/paidan/ forwards only what is under
    # /paidan/: the page's /static/… and the script's /v1/… left it (404 at the proxy), and the
    # dispatcher saw an unstyled page that blamed the browser. Resolved as a browser resolves
    # them against the page's address, every URL must stay under the prefix.
    page_url = "https://gw.example.gov.cn/paidan/"
    behind = TestClient(client.app, root_path="/paidan")
    html = behind.get("/paidan/").text
    assets = re.findall(r'(?:href|src)="([^"]+)"', html)
    assert len(assets) == 4, assets
    script = behind.get("/paidan/static/app.js").text
    calls = re.findall(r'api\("(GET|POST)", "([^"]+)"', script)
    assert len(calls) == 3, calls  # model, route, feedback
    for url in [*assets, *(url for _, url in calls)]:
        resolved = urlsplit(urljoin(page_url, url))
        assert resolved.netloc == "gw.example.gov.cn", url
        assert resolved.path.startswith("/paidan/"), f"{url} leaves the sub-path"
    for url in assets:
        assert behind.get(urlsplit(urljoin(page_url, url)).path).status_code == 200, url
    assert behind.get("/paidan/v1/model").status_code == 200
