"""Hot reload: ``POST /v1/admin/reload`` and SIGHUP swap models atomically; an untrustworthy model
is refused with a clear error and log line, the old one keeps serving, and no request fails."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from model import registry
from model.artifact import METADATA_FILE, ROUTER_FILE, load_router
from model.config import TrainingConfig
from model.router import Router
from model.settings import Settings
from serve import admin
from serve.app import create_app
from tests.reliability.conftest import ADMIN_KEY, API_KEY
from tests.reliability.live import LiveServer
from tests.serve.helpers import assert_error

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
TICKET = {"text": "楼下烧烤店油烟扰民，晚上十二点还在营业"}


def loader(model_dir: Path, root: Path | None) -> tuple[Router, dict[str, Any]]:
    """The real loader, with the directory name as version so copies can be told apart."""
    router, meta = load_router(model_dir, root)
    router.version = Path(model_dir).name
    return router, meta


def writable_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    for f in dst.iterdir():
        f.chmod(0o644)
    return dst


def two_versions(
    tmp_path: Path, tiny_model_dir: Path, tiny_config: TrainingConfig
) -> tuple[Path, str, str, str]:
    """A model root with two versions of different content: ``a`` (a copy) and ``b`` (trained).

    Returns the root, ``a``'s directory name and the two model versions.
    """
    from tests.conftest import write_tiny_csv
    from training.train import train

    root = tmp_path / "models"
    a = writable_copy(tiny_model_dir, root / "a").name
    trained = train([write_tiny_csv(tmp_path / "t.csv")], root / "b", config=tiny_config)
    assert trained.model_dir is not None
    version_a = json.loads((root / a / METADATA_FILE).read_text())["version"]
    assert version_a != trained.router.version
    return root, a, version_a, trained.router.version


def tamper(model_dir: Path) -> None:
    with open(model_dir / ROUTER_FILE, "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02\x03")


def truncate(model_dir: Path) -> None:
    path = model_dir / ROUTER_FILE
    path.write_bytes(path.read_bytes()[:1000])


def incompatible(model_dir: Path) -> None:
    meta = json.loads((model_dir / METADATA_FILE).read_text())
    meta["libraries"]["scikit-learn"] = "0.20.0"
    (model_dir / METADATA_FILE).write_text(json.dumps(meta))


@pytest.fixture
def root(tmp_path: Path, tiny_model_dir: Path) -> Path:
    root = tmp_path / "models"
    for name in ("v1", "v2"):
        writable_copy(tiny_model_dir, root / name)
    registry.set_current(root, "v1", record=False)
    return root


@pytest.fixture
def admin_client(root: Path, tmp_path: Path) -> Any:
    settings = Settings(
        model_root=root,
        data_dir=tmp_path / "var",
        api_keys=[API_KEY],
        admin_keys=[ADMIN_KEY],
        reload_interval=0,  # no pointer follower: only the endpoint swaps
    )
    with TestClient(create_app(settings, router_loader=loader)) as client:
        yield client


def served(client: Any) -> str:
    response = client.post("/v1/route", json=TICKET)
    assert response.status_code == 200, response.text
    return response.json()["model_version"]


def test_reload_swaps_to_a_named_model_and_to_the_current_one(
    admin_client: TestClient, root: Path
) -> None:
    assert served(admin_client) == "v1"
    swapped = admin_client.post("/v1/admin/reload", json={"model_dir": "v2"}, headers=ADMIN)
    assert swapped.status_code == 200, swapped.text
    assert swapped.json()["previous"] == "v1" and swapped.json()["version"] == "v2"
    assert served(admin_client) == "v2"
    assert admin_client.get("/v1/model").json()["version"] == "v2"
    # No body: the root's current pointer (still v1).
    back = admin_client.post("/v1/admin/reload", headers=ADMIN)
    assert back.status_code == 200 and back.json()["version"] == "v1"
    assert served(admin_client) == "v1"


def test_reload_naming_current_swaps_to_the_current_model(
    admin_client: TestClient, root: Path
) -> None:
    # The commands take `current` for the pointer's version; the reload took it for a file
    # under the root and refused it as no model directory.
    swapped = admin_client.post("/v1/admin/reload", json={"model_dir": "v2"}, headers=ADMIN)
    assert swapped.status_code == 200 and served(admin_client) == "v2"
    back = admin_client.post("/v1/admin/reload", json={"model_dir": "current"}, headers=ADMIN)
    assert back.status_code == 200, back.text
    assert back.json()["version"] == "v1" and back.json()["model_dir"] == str(root / "v1")
    assert served(admin_client) == "v1"


def test_reload_takes_the_model_version_answers_report(
    admin_client: TestClient, root: Path
) -> None:
    # `train --out ROOT/v3` writes v3, whose answers and feedback rows report its own version.
    v3 = writable_copy(root / "v1", root / "v3")
    meta = json.loads((v3 / METADATA_FILE).read_text(encoding="utf-8"))
    (v3 / METADATA_FILE).write_text(
        json.dumps({**meta, "version": "20261205T072304Z-bf90f80f"}), encoding="utf-8"
    )
    swapped = admin_client.post(
        "/v1/admin/reload", json={"model_dir": "20261205T072304Z-bf90f80f"}, headers=ADMIN
    )
    assert swapped.status_code == 200, swapped.text
    assert swapped.json()["model_dir"] == str(v3) and served(admin_client) == "v3"
    # v1 and v2 are copies, reporting the same version: which one is meant is not guessed.
    response = admin_client.post(
        "/v1/admin/reload", json={"model_dir": meta["version"]}, headers=ADMIN
    )
    error = assert_error(response, 422, "model_refused")
    assert ": v1, v2; name one of them" in error["message"], error
    assert served(admin_client) == "v3"


def test_a_pinned_server_reloads_its_own_model_when_none_is_named(
    root: Path, tmp_path: Path
) -> None:
    # `paidan serve --model DIR` (follow_current off): a reload naming no model, and SIGHUP,
    # switched a single worker to `current`, while the workers of `--workers N` keep DIR.
    settings = Settings(
        model_root=root,
        data_dir=tmp_path / "var",
        api_keys=[API_KEY],
        admin_keys=[ADMIN_KEY],
        model_dir=root / "v1",
        follow_current=False,
    )
    with TestClient(create_app(settings, router_loader=loader)) as client:
        registry.promote(root, "v2")
        again = client.post("/v1/admin/reload", headers=ADMIN)
        assert again.status_code == 200, again.text
        assert again.json()["version"] == "v1" and again.json()["model_dir"] == str(root / "v1")
        assert served(client) == "v1"
        assert asyncio.run(admin.reload_default(client.app)) == "v1"  # what SIGHUP runs
        assert served(client) == "v1"
        # A model named in the body still switches; naming none goes back to the pinned one.
        swapped = client.post("/v1/admin/reload", json={"model_dir": "v2"}, headers=ADMIN)
        assert swapped.status_code == 200 and swapped.json()["version"] == "v2", swapped.text
        back = client.post("/v1/admin/reload", headers=ADMIN)
        assert back.status_code == 200 and back.json()["version"] == "v1", back.text


@pytest.mark.parametrize(
    ("prepare", "says"),
    [
        pytest.param(tamper, "does not match its checksum", id="tampered"),
        pytest.param(truncate, "does not match its checksum", id="truncated"),
        pytest.param(incompatible, "was trained with scikit-learn 0.20.0", id="incompatible"),
        pytest.param(
            lambda d: (d / ROUTER_FILE).unlink(), f"{ROUTER_FILE} is missing", id="missing-file"
        ),
    ],
)
def test_an_untrustworthy_model_is_refused_and_the_old_one_keeps_serving(
    admin_client: TestClient,
    root: Path,
    tiny_model_dir: Path,
    caplog: pytest.LogCaptureFixture,
    prepare: Callable[[Path], None],
    says: str,
) -> None:
    bad = writable_copy(tiny_model_dir, root / "bad")
    prepare(bad)
    with caplog.at_level(logging.ERROR, logger="serve.admin"):
        response = admin_client.post("/v1/admin/reload", json={"model_dir": "bad"}, headers=ADMIN)
    error = assert_error(response, 422, "model_refused")
    assert says in error["message"] and "still serving model v1" in error["message"]
    assert error["field"] == "body.model_dir"
    [record] = [r for r in caplog.records if r.name == "serve.admin"]
    assert "model reload refused" in record.getMessage() and says in record.getMessage()
    assert served(admin_client) == "v1"


def test_symlinks_and_paths_outside_the_root_are_refused(
    admin_client: TestClient, root: Path, tmp_path: Path, tiny_model_dir: Path
) -> None:
    outside = writable_copy(tiny_model_dir, tmp_path / "outside")
    (root / "link").symlink_to(root / "v2", target_is_directory=True)
    (root / "escape").symlink_to(outside, target_is_directory=True)
    (root / "notes.txt").write_text("v1 is the old one", encoding="utf-8")  # a file, not a model
    cases = {
        "link": "is a symlink",
        "escape": "is a symlink",
        str(outside): "outside the model root",
        "../outside": "outside the model root",
        "v1/../../outside": "outside the model root",
        "nothing-here": "does not exist: it is no directory and no model version",
        "notes.txt": "notes.txt is not a directory",
        "/etc": "outside the model root",
    }
    for model_dir, says in cases.items():
        response = admin_client.post(
            "/v1/admin/reload", json={"model_dir": model_dir}, headers=ADMIN
        )
        error = assert_error(response, 422, "model_refused")
        assert says in error["message"], (model_dir, error)
    # A NUL cannot name a file: refused as a request, not a 500 from the file system.
    response = admin_client.post("/v1/admin/reload", json={"model_dir": "v2\x00"}, headers=ADMIN)
    assert assert_error(response, 422, "invalid_request")["field"] == "body.model_dir"
    assert served(admin_client) == "v1"


def test_reload_needs_the_admin_key(admin_client: TestClient) -> None:
    assert_error(admin_client.post("/v1/admin/reload", json={"model_dir": "v2"}), 401)
    assert_error(
        admin_client.post(
            "/v1/admin/reload",
            json={"model_dir": "v2"},
            headers={"Authorization": f"Bearer {API_KEY}"},
        ),
        403,
        "forbidden",
    )
    assert served(admin_client) == "v1"


# -- a real server under load ------------------------------------------------------------------------
class Load:
    """Threads posting /v1/route on loopback until stopped; counts versions and failures."""

    def __init__(self, url: str, threads: int) -> None:
        self.url = url
        self.stop = threading.Event()
        self.versions: Counter[str] = Counter()
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def run(self) -> None:
        with httpx2.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                try:
                    r = client.post("/v1/route", json=TICKET)
                    outcome = r.json()["model_version"] if r.status_code == 200 else None
                    problem = None if outcome else f"{r.status_code}: {r.text[:200]}"
                except Exception as e:  # a dropped connection is a failure too
                    outcome, problem = None, f"{type(e).__name__}: {e}"
                with self.lock:
                    if outcome:
                        self.versions[outcome] += 1
                    else:
                        self.failures.append(problem or "?")

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)

    def wait_for(self, version: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        start = self.versions[version]
        while self.versions[version] <= start + 20:
            assert time.monotonic() < deadline, f"never served {version}: {self.versions}"
            time.sleep(0.05)


@pytest.mark.slow
def test_reload_under_load_fails_no_request(
    live_server_factory: Callable[..., LiveServer],
    tmp_path: Path,
    tiny_model_dir: Path,
    tiny_config: TrainingConfig,
) -> None:
    root, a, version_a, version_b = two_versions(tmp_path, tiny_model_dir, tiny_config)
    bad = writable_copy(tiny_model_dir, root / "bad")
    tamper(bad)
    registry.set_current(root, a, record=False)
    server = live_server_factory(
        "--no-access-log",
        env={
            "PAIDAN_MODEL_ROOT": str(root),
            "PAIDAN_DATA_DIR": str(tmp_path / "var"),
            "PAIDAN_RELOAD_INTERVAL": "0",  # only SIGHUP and the endpoint swap models here
            "PAIDAN_API_KEYS": API_KEY,
        },
    )
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with Load(server.url, threads=12) as load:
        load.wait_for(version_a)
        registry.set_current(root, "b", record=False)
        os.kill(server.proc.pid, signal.SIGHUP)
        load.wait_for(version_b)
        refused = httpx2.post(
            server.url + "/v1/admin/reload", json={"model_dir": "bad"}, headers=auth, timeout=60
        )
        assert_error(refused, 422, "model_refused")
        load.wait_for(version_b)
        back = httpx2.post(
            server.url + "/v1/admin/reload", json={"model_dir": a}, headers=auth, timeout=60
        )
        assert back.status_code == 200 and back.json()["version"] == version_a, back.text
        load.wait_for(version_a)
    assert server.proc.poll() is None, server.logs()
    assert load.failures == [], load.failures[:5]
    assert set(load.versions) == {version_a, version_b}
    assert sum(load.versions.values()) > 100
    logs = server.logs()
    assert "SIGHUP: reloading the current model" in logs
    assert "model reload refused" in logs and "does not match its checksum" in logs


@pytest.mark.slow
def test_sighup_keeps_a_single_worker_pinned_to_its_model_after_a_promotion(
    live_server_factory: Callable[..., LiveServer],
    tmp_path: Path,
    tiny_model_dir: Path,
    tiny_config: TrainingConfig,
) -> None:
    # `paidan serve --model DIR` with one worker switched to `current` on SIGHUP; with
    # `--workers N` the same SIGHUP keeps DIR (its replacement workers load the pinned model).
    root, a, version_a, _ = two_versions(tmp_path, tiny_model_dir, tiny_config)
    registry.set_current(root, a, record=False)
    server = live_server_factory(
        "--model",
        str(root / a),
        "--no-access-log",
        env={"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")},
    )
    registry.promote(root, "b")
    os.kill(server.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 60
    while "model swapped" not in server.logs():
        assert time.monotonic() < deadline, f"no reload after SIGHUP:\n{server.logs()[-3000:]}"
        time.sleep(0.1)
    assert httpx2.get(server.url + "/readyz", timeout=10).json()["model_version"] == version_a
    route = httpx2.post(server.url + "/v1/route", json=TICKET, timeout=10)
    assert route.status_code == 200 and route.json()["model_version"] == version_a, route.text
    assert f"SIGHUP: reloading the pinned model {root / a}" in server.logs()


def test_a_name_no_version_has_is_refused_as_the_cli_refuses_it(
    admin_client: TestClient, root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The reload said "<root>/nothing-here is not a directory", where `paidan predict nothing-here`
    # says the name is no model version under the root and lists the registered ones.
    from model.registry import named_model

    with pytest.raises(registry.UnknownVersionError) as cli:
        named_model(root, "nothing-here")
    with caplog.at_level(logging.ERROR, logger="serve.admin"):
        response = admin_client.post(
            "/v1/admin/reload", json={"model_dir": "nothing-here"}, headers=ADMIN
        )
    error = assert_error(response, 422, "model_refused")
    message = error["message"]
    assert "'nothing-here' does not exist" in message and f"under the model root {root}" in message
    assert "; registered versions: v1 (model version" in message, message
    assert "v2 (model version" in message and "(see paidan models list)" in message, message
    assert message.endswith("; still serving model v1")
    # The CLI's words; a server's relative model_dir names no directory where it runs but under
    # the root, so its is "no directory" there, not "here".
    assert str(cli.value).replace("no directory here", "no directory") in message
    assert "is not a directory" not in message
    assert served(admin_client) == "v1"
