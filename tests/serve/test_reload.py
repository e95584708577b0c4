"""A running app follows the model root's ``current`` pointer; a broken model never replaces a good one."""

from __future__ import annotations

import fcntl
import gc
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient

from model import registry
from model.artifact import ROUTER_FILE, ModelLoadError, load_router
from model.router import Router
from model.settings import Settings
from serve.app import create_app
from serve.reload import reload_model
from tests.conftest import as_registered


def loader(model_dir: Path, root: Path | None) -> tuple[Router, dict[str, Any]]:
    """The server's loader, with the directory name as version so two copies can be told apart."""
    router, meta = load_router(model_dir, root, serving=True)
    router.version = Path(model_dir).name
    return router, meta


@pytest.fixture
def root(tmp_path: Path, tiny_model_dir: Path) -> Path:
    root = tmp_path / "models"
    for name in ("v1", "v2"):
        shutil.copytree(tiny_model_dir, root / name)
    broken = root / "v3"
    shutil.copytree(tiny_model_dir, broken)
    (broken / ROUTER_FILE).chmod(0o644)
    with open(broken / ROUTER_FILE, "r+b") as f:
        f.seek(100)
        f.write(b"\0\0\0\0")
    registry.set_current(root, "v1", record=False)
    return root


def served_version(client: TestClient) -> str:
    r = client.post("/v1/route", json={"text": "楼下烧烤店油烟扰民"})
    assert r.status_code == 200, r.text
    return r.json()["model_version"]


def wait_for(client: TestClient, version: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while served_version(client) != version:
        assert time.monotonic() < deadline, f"still serving {served_version(client)}"
        time.sleep(0.05)


def make_app(root: Path, tmp_path: Path, **overrides: Any) -> TestClient:
    values: dict[str, Any] = {"model_root": root, "data_dir": tmp_path / "var"}
    values["reload_interval"] = 0.1
    settings = Settings(**(values | overrides))
    return TestClient(create_app(settings, router_loader=loader))


def test_app_follows_promote_and_rollback(root: Path, tmp_path: Path) -> None:
    with make_app(root, tmp_path) as client:
        assert served_version(client) == "v1"
        registry.promote(root, "v2")
        wait_for(client, "v2")
        registry.rollback(root)
        wait_for(client, "v1")


def test_an_app_told_to_serve_current_follows_it(root: Path, tmp_path: Path) -> None:
    # PAIDAN_MODEL_DIR=current (what uvicorn --factory and every --workers process read) named no
    # model; taken as a version, it would pin the server to the start-up model.
    with make_app(root, tmp_path, model_dir=Path("current")) as client:
        assert served_version(client) == "v1"
        assert client.app.state.pinned_dir is None  # type: ignore[attr-defined]
        registry.promote(root, "v2")
        wait_for(client, "v2")


def test_broken_model_keeps_the_old_one_serving(
    root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="serve.reload"), make_app(root, tmp_path) as client:
        registry.promote(root, "v3")
        deadline = time.monotonic() + 30
        while "cannot switch to model v3" not in caplog.text:
            assert time.monotonic() < deadline, "the failed load was not logged"
            assert served_version(client) == "v1"
            time.sleep(0.05)
        assert served_version(client) == "v1"
        assert "still serving v1" in caplog.text
        # A later good pointer is still followed.
        registry.promote(root, "v2")
        wait_for(client, "v2")


def test_readyz_says_the_server_is_behind_current_and_why(root: Path, tmp_path: Path) -> None:
    # While the workers refused `current` (a damaged model, an unreadable pointer), /readyz said
    # "ready": only an ERROR line showed the server was not serving what `current` names.
    def ready(client: TestClient) -> dict[str, Any]:
        r = client.get("/readyz")
        assert r.status_code == 200, r.text
        return r.json()

    def wait_until(client: TestClient, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while not check(body := ready(client)):
            assert time.monotonic() < deadline, body
            time.sleep(0.05)
        return body

    with make_app(root, tmp_path) as client:
        body = ready(client)
        assert body["status"] == "ready" and body["behind_current"] is None
        registry.promote(root, "v3")  # damaged
        body = wait_until(client, lambda b: b["behind_current"] is not None)
        assert body["status"] == "degraded" and body["model_version"] == "v1"
        assert "names v3, which cannot be loaded" in body["behind_current"], body
        (root / registry.CURRENT_FILE).write_text("", encoding="utf-8")  # unreadable: empty
        body = wait_until(client, lambda b: "is empty" in (b["behind_current"] or ""))
        assert body["status"] == "degraded"
        registry.set_current(root, "v2", record=False, expected=registry.UNREADABLE_POINTER)
        wait_for(client, "v2")
        body = wait_until(client, lambda b: b["behind_current"] is None)
        assert body["status"] == "ready"


def test_a_refused_version_is_tried_again_once_its_files_change(
    root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # `current` written before the copy of v3 had finished: once refused, v3 was never tried
    # again, and the old model served on after the copy was complete.
    with caplog.at_level(logging.ERROR, logger="serve.reload"), make_app(root, tmp_path) as client:
        registry.promote(root, "v3")
        deadline = time.monotonic() + 30
        while "cannot switch to model v3" not in caplog.text:
            assert time.monotonic() < deadline, "the failed load was not logged"
            time.sleep(0.05)
        time.sleep(0.5)  # five polling intervals: one ERROR line for one failure, not one each
        assert caplog.text.count("cannot switch to model v3") == 1
        assert served_version(client) == "v1"
        shutil.copyfile(root / "v1" / ROUTER_FILE, root / "v3" / ROUTER_FILE)  # the copy completes
        wait_for(client, "v3")


def test_follow_current_off_keeps_the_model(root: Path, tmp_path: Path) -> None:
    """What `paidan serve --model DIR` sets: the chosen model stays even when it was current."""
    with make_app(root, tmp_path, model_dir=root / "v1", follow_current=False) as client:
        registry.promote(root, "v2")
        time.sleep(0.5)  # five polling intervals
        assert served_version(client) == "v1"


def test_reload_model_refuses_a_broken_directory_without_swapping(
    root: Path, tmp_path: Path
) -> None:
    with make_app(root, tmp_path, reload_interval=0) as client:
        app: Any = client.app
        before = app.state.router
        with pytest.raises(ModelLoadError, match="checksum"):
            reload_model(app, root / "v3", loader)
        assert app.state.router is before
        assert reload_model(app, root / "v2", loader) == "v2"
        assert served_version(client) == "v2"


def leased(root: Path, version: str) -> bool:
    """Whether a process holds a lease on ``version`` (what `paidan models gc` checks)."""
    (root / registry.LEASES_DIR).mkdir(exist_ok=True)  # none yet: no lease was ever taken
    fd = os.open(root / registry.LEASES_DIR / version, os.O_RDONLY | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_the_served_model_is_leased_and_the_lease_moves_with_reloads(
    root: Path, tmp_path: Path
) -> None:
    # gc deleted a version served with --model (or PAIDAN_MODEL_DIR): it is not current.
    registry.set_current(root, "v2", record=False)
    # As the registry names them (gc deletes, and --keep counts, such only); the copies' times
    # are equal: v3 is the newest
    as_registered(root / "v1")
    as_registered(root / "v3")
    with make_app(root, tmp_path, model_dir=root / "v1") as client:
        app: Any = client.app
        assert registry.gc(root, keep=1) == ([], ["v1"])
        with pytest.raises(ModelLoadError, match="checksum"):
            reload_model(app, root / "v3", loader)
        assert leased(root, "v1") and not leased(root, "v3")  # a refused model is not held
        reload_model(app, root / "v2", loader)
        assert leased(root, "v2") and not leased(root, "v1")
        assert registry.gc(root, keep=1) == (["v1"], [])
        assert served_version(client) == "v2"
    assert not leased(root, "v2")  # shut down: released


def _tracked(obj: object) -> bool:
    """Whether the cyclic garbage collector still scans ``obj`` (frozen objects are not listed)."""
    return any(o is obj for o in gc.get_objects())


def test_served_models_are_frozen_out_of_full_collections(root: Path, tmp_path: Path) -> None:
    """A loaded or swapped-in model is not walked by every full collection (the p99 pauses)."""
    with make_app(root, tmp_path, reload_interval=0) as client:
        app: Any = client.app
        first = app.state.router
        # A served router's objects: its compiled features (vocabularies, segmenter).
        assert not _tracked(first.compiled()[0])
        reload_model(app, root / "v2", loader)
        assert app.state.router is not first
        assert not _tracked(app.state.router.compiled()[0])
        assert served_version(client) == "v2"
    # Once the app is gone its model is an ordinary object again.
    assert gc.get_freeze_count() == 0
    assert _tracked(first.compiled()[0])


def serve_with(monkeypatch: pytest.MonkeyPatch, serving: Callable[[Any], None]) -> None:
    """Make ``serve.server.run``'s one worker call ``serving(app)`` instead of serving it."""
    import uvicorn

    def run(self: uvicorn.Server, sockets: list[socket.socket] | None = None) -> None:
        assert sockets and sockets[0].getsockname()[1] > 0  # bound before the model was loaded
        serving(self.config.app)
        self.started = True

    monkeypatch.setattr(uvicorn.Server, "run", run)


def test_a_single_worker_leases_its_model_before_loading_it(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # serve.server.run loaded the model, then started uvicorn, and only the app's start-up leased
    # it: `paidan models gc` in between could delete the model about to be served.
    from serve import server

    monkeypatch.setenv(server.ACCESS_LOG_ENV, "true")  # run() sets it; restored afterwards
    seen: list[tuple[Any, ...]] = []
    real = server.load_serving_router

    def loading(path: Path, model_root: Path | None = None) -> tuple[Router, dict[str, Any]]:
        seen.append(("load", Path(path).name, leased(root, Path(path).name)))
        return real(path, model_root)

    def serving(app: Any) -> None:
        with TestClient(app):
            seen.append(("serving", leased(root, "v1")))
            reload_model(app, root / "v2", app.state.router_loader)
            seen.append(("reloaded", leased(root, "v1"), leased(root, "v2")))

    monkeypatch.setattr(server, "load_serving_router", loading)
    serve_with(monkeypatch, serving)
    settings = Settings(model_root=root, data_dir=tmp_path / "var", reload_interval=0)
    server.run(settings, root / "v1", port=0)
    # The start-up lease passes to the app, which lets go of v1 once it serves v2.
    assert seen == [
        ("load", "v1", True),
        ("serving", True),
        ("load", "v2", True),
        ("reloaded", False, True),
    ]
    assert not leased(root, "v1") and not leased(root, "v2")


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        pytest.param({}, "every worker follows `current` and switches within 0.1 s", id="follows"),
        pytest.param(
            {"reload_interval": 0}, "send SIGHUP to the supervisor (`kill -HUP 4321`)", id="hup"
        ),
    ],
)
def test_a_reload_under_the_supervisor_is_refused_not_done_in_one_worker(
    root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    overrides: dict[str, Any],
    says: str,
) -> None:
    # Under `paidan serve --workers 2` the reload switched the worker that took the request and
    # answered 200: about half of the later requests were still answered by the old model.
    from serve.workers import SUPERVISOR_ENV

    monkeypatch.setenv(SUPERVISOR_ENV, "4321 2")  # what the supervisor hands its workers
    with make_app(root, tmp_path, **overrides) as client:
        for body in ({"model_dir": "v2"}, None):
            r = client.post("/v1/admin/reload", json=body)
            assert r.status_code == 409, r.text
            message = r.json()["error"]["message"]
            assert "runs 2 worker processes" in message and "paidan models promote" in message
            assert says in message
        assert served_version(client) == "v1"


def test_a_reload_under_a_supervisor_pinned_to_a_model_says_to_restart(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serve.workers import SUPERVISOR_ENV

    monkeypatch.setenv(SUPERVISOR_ENV, "4321 3")
    with make_app(root, tmp_path, model_dir=root / "v1", follow_current=False) as client:
        r = client.post("/v1/admin/reload", json={"model_dir": "v2"})
        assert r.status_code == 409, r.text
        assert "pinned to v1" in r.json()["error"]["message"]
        assert served_version(client) == "v1"


def test_a_reload_with_one_worker_still_swaps(root: Path, tmp_path: Path) -> None:
    from serve.workers import SUPERVISOR_ENV

    assert SUPERVISOR_ENV not in os.environ
    with make_app(root, tmp_path, reload_interval=0) as client:
        r = client.post("/v1/admin/reload", json={"model_dir": "v2"})
        assert r.status_code == 200 and r.json()["version"] == "v2", r.text


def test_polling_off_still_reloads_current_when_no_model_was_chosen(
    root: Path, tmp_path: Path
) -> None:
    # PAIDAN_FOLLOW_CURRENT=false pinned a server that serves `current`: after a promotion, a
    # reload naming no model (README: "the current model") and SIGHUP reloaded the old model.
    import asyncio

    from serve import admin

    with make_app(root, tmp_path, follow_current=False) as client:
        registry.promote(root, "v2")
        r = client.post("/v1/admin/reload")
        assert r.status_code == 200 and r.json()["version"] == "v2", r.text
        registry.promote(root, "v1")
        assert asyncio.run(admin.reload_default(client.app)) == "v1"  # what SIGHUP runs
        assert served_version(client) == "v1"


def test_a_single_worker_serving_current_with_polling_off_is_not_pinned(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serve import server

    monkeypatch.setenv(server.ACCESS_LOG_ENV, "true")  # run() sets it; restored afterwards
    versions: list[str] = []

    def serving(app: Any) -> None:
        with TestClient(app, base_url="http://localhost") as client:  # served on loopback
            registry.promote(root, "v2")
            r = client.post("/v1/admin/reload")
            assert r.status_code == 200, r.text
            versions.append(r.json()["model_dir"])

    serve_with(monkeypatch, serving)
    settings = Settings(model_root=root, data_dir=tmp_path / "var", follow_current=False)
    server.run(settings, root / "v1", port=0)
    assert versions == [str(root / "v2")]


def test_the_start_up_model_is_freed_once_a_reload_replaced_it(root: Path, tmp_path: Path) -> None:
    # The lifespan's local `loaded`, alive as long as the app, kept the start-up model (its heap
    # and its mapped serving file) after every reload: one extra model per worker for good.
    with make_app(root, tmp_path, reload_interval=0) as client:
        app: Any = client.app
        assert served_version(client) == "v1"
        first = weakref.ref(app.state.router)
        reload_model(app, root / "v2", loader)
        assert served_version(client) == "v2"
        gc.collect()
        assert first() is None


def test_a_single_workers_start_up_model_is_freed_once_a_reload_replaced_it(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # serve.server's one worker loads the model itself and hands it to the app; its local kept it.
    from serve import server

    monkeypatch.setenv(server.ACCESS_LOG_ENV, "true")  # run() sets it; restored afterwards
    freed: list[bool] = []

    def serving(app: Any) -> None:
        with TestClient(app):
            first = weakref.ref(app.state.router)
            reload_model(app, root / "v2", app.state.router_loader)
            gc.collect()
            freed.append(first() is None)

    serve_with(monkeypatch, serving)
    settings = Settings(model_root=root, data_dir=tmp_path / "var", reload_interval=0)
    server.run(settings, root / "v1", port=0)
    assert freed == [True]


def behind_gauge(client: TestClient) -> float:
    """The value of ``paidan_model_behind_current`` in ``/metrics`` (fails when it is absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        if family.name == "paidan_model_behind_current":
            [sample] = family.samples
            return sample.value
    raise AssertionError(f"no paidan_model_behind_current in /metrics:\n{text}")


def test_metrics_say_when_the_server_is_behind_current(root: Path, tmp_path: Path) -> None:
    # Only /readyz said it ("degraded"): nothing in /metrics to alert on while every worker
    # kept an old model because `current` named one it refused.
    with make_app(root, tmp_path) as client:
        assert behind_gauge(client) == 0
        registry.promote(root, "v3")  # damaged
        deadline = time.monotonic() + 30
        while behind_gauge(client) != 1:
            assert time.monotonic() < deadline, client.get("/readyz").json()
            time.sleep(0.05)
        assert client.get("/readyz").json()["status"] == "degraded"
        registry.promote(root, "v2")
        wait_for(client, "v2")
        deadline = time.monotonic() + 30
        while behind_gauge(client) != 0:
            assert time.monotonic() < deadline, client.get("/readyz").json()
            time.sleep(0.05)
        assert client.get("/readyz").json()["behind_current"] is None


def test_readyz_names_versions_not_the_servers_paths(root: Path, tmp_path: Path) -> None:
    # /readyz, open to load balancers without a key, said
    # "/srv/paidan/models/current names v3, which cannot be loaded: /srv/paidan/models/v3/…",
    # while its database part names the backend, never the database's URL or file.
    def behind(client: TestClient, says: str) -> str:
        deadline = time.monotonic() + 30
        while says not in (text := client.get("/readyz").json()["behind_current"] or ""):
            assert time.monotonic() < deadline, text
            time.sleep(0.05)
        return text

    with make_app(root, tmp_path) as client:
        registry.promote(root, "v3")  # damaged
        said = [behind(client, "current names v3, which cannot be loaded")]
        assert "v3/router.joblib does not match its checksum" in said[0], said
        (root / registry.CURRENT_FILE).write_text("v9", encoding="utf-8")  # named, not there
        said.append(behind(client, "current names v9, which cannot be loaded"))
        (root / registry.CURRENT_FILE).write_text("", encoding="utf-8")
        said.append(behind(client, "current cannot be followed: current is empty"))
        # A rollback by hand gone wrong: a symlink to a directory outside the root.
        (root / registry.CURRENT_FILE).unlink()
        (root / registry.CURRENT_FILE).symlink_to(tmp_path)
        said.append(behind(client, "current cannot be followed: current is a symlink to …,"))
        for text in said:
            assert str(root) not in text and str(tmp_path) not in text, text
            assert str(root.resolve()) not in text, text


def worker_behind(metrics_dir: Path) -> int:
    """Run a process that says, as a worker's follower does, that it is behind; its pid."""
    code = (
        "import os; from serve.metrics import Metrics; "
        "Metrics().behind_current.set(1); print(os.getpid())"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return int(done.stdout)


def test_a_reaped_workers_behind_current_leaves_the_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With --workers N each worker writes its own value; a worker that said 1 and was replaced
    # (killed, or by the SIGHUP that followed the repair) went on saying 1 until a restart.
    import threading
    from types import SimpleNamespace

    import uvicorn

    from serve import metrics, workers

    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(metrics_dir))

    def behind() -> bool:
        return f"{metrics.BEHIND_CURRENT} 1.0" in metrics.Metrics().exposition()[0].decode()

    class Fake:  # a worker process with the pid of one that said it was behind
        pid, exitcode, alive = 0, 0, True

        def __init__(self, target: Any, args: tuple[Any, ...], name: str) -> None:
            self.ready = args[2]

        def start(self) -> None:
            self.ready.set()

        def is_alive(self) -> bool:
            return self.alive

        def terminate(self) -> None:
            self.alive = False

        def join(self, timeout: float | None = None) -> None:
            pass

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config("serve.app:create_app", factory=True, host="127.0.0.1", port=port)
    supervisor = workers.Supervisor(config, 1)
    monkeypatch.setattr(supervisor, "_ctx", SimpleNamespace(Event=threading.Event, Process=Fake))
    try:
        supervisor._slots = [supervisor._start(0)]
        cast(Fake, supervisor._slots[0].process).pid = worker_behind(metrics_dir)
        assert behind()
        cast(Fake, supervisor._slots[0].process).terminate()  # it died
        supervisor._replace_dead()  # a successor in its slot
        assert not behind()
        cast(Fake, supervisor._slots[0].process).pid = worker_behind(metrics_dir)
        assert behind()
        supervisor._replace_all()  # SIGHUP: a successor, then the old one is stopped
        assert not behind()
    finally:
        for sock in supervisor.sockets:
            sock.close()


def test_a_reload_refuses_a_query_parameter_rather_than_reload_another_model(
    root: Path, tmp_path: Path
) -> None:
    # POST /v1/admin/reload?model_dir=v2 (the model named in the URL, not the body) answered 200
    # having reloaded `current`, v1: the operator was told of a swap, not of the model ignored.
    with make_app(root, tmp_path, reload_interval=0) as client:
        for query in ("model_dir=v2", "model_dir=v2&model_dir=v3", "x=1"):
            r = client.post(f"/v1/admin/reload?{query}", json={})
            assert r.status_code == 422, r.text
            name = query.split("=")[0]
            assert r.json()["error"] == {
                "code": "invalid_request",
                "message": f"query.{name}: is not a parameter of the reload, which takes none; "
                'name the model in the body, {"model_dir": "VERSION"}',
                "field": f"query.{name}",
            }
        assert served_version(client) == "v1"
        r = client.post("/v1/admin/reload", json={"model_dir": "v2"})
        assert r.status_code == 200 and r.json()["version"] == "v2", r.text


def test_a_pointer_written_for_the_served_directory_loads_nothing_again(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    # `train --out models/v1`, `paidan serve` (no `current` yet: the newest version is served),
    # then the first `retrain` writes `current` naming v1 before it adds its challenger. The poller
    # compared "v1" with the served model's version (a timestamp) and loaded v1 a second time
    # ("model swapped: X -> X"), in every worker, with both copies in memory meanwhile.
    root = tmp_path / "models"
    shutil.copytree(tiny_model_dir, root / "v1")
    shutil.copytree(tiny_model_dir, root / "v2")
    loads: list[str] = []

    def counting(model_dir: Path, root: Path | None) -> tuple[Router, dict[str, Any]]:
        loads.append(Path(model_dir).name)
        return load_router(model_dir, root, serving=True)  # the model's own version, not "v1"

    settings = Settings(model_root=root, data_dir=tmp_path / "var", reload_interval=0.1)
    with TestClient(create_app(settings, model_dir=None, router_loader=counting)) as client:
        # No `current` yet: the newest version is served. Pinned, as retrain pins it.
        served = client.app.state.model_dir  # type: ignore[attr-defined]
        registry.set_current(root, Path(served).name, record=False)
        time.sleep(0.5)  # five polling intervals
        other = "v1" if Path(served).name == "v2" else "v2"
        registry.promote(root, other)
        deadline = time.monotonic() + 30
        while Path(client.app.state.model_dir).name != other:  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, loads
            time.sleep(0.05)
    assert loads == [Path(served).name, other]


def test_a_server_on_a_backup_copy_follows_current_to_the_version_it_copies(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    # `cp -r V V.bak`, `models promote V.bak` (a restore), then `models promote V`: the poller
    # compared "V" with the served model's version, which the copy reports too, so the server
    # stayed on V.bak for good. It follows the directory `current` names, once.
    root = tmp_path / "models"
    shutil.copytree(tiny_model_dir, root / "v1")
    version = load_router(root / "v1", root, serving=True)[0].version
    shutil.copytree(tiny_model_dir, root / version)  # the version the registry wrote
    shutil.copytree(root / version, root / f"{version}.bak")
    registry.set_current(root, f"{version}.bak", record=False)
    loads: list[str] = []

    def counting(model_dir: Path, root: Path | None) -> tuple[Router, dict[str, Any]]:
        loads.append(Path(model_dir).name)
        return load_router(model_dir, root, serving=True)  # the copy reports the same version

    settings = Settings(model_root=root, data_dir=tmp_path / "var", reload_interval=0.1)
    with TestClient(create_app(settings, router_loader=counting)) as client:
        assert loads == [f"{version}.bak"]
        registry.promote(root, version)
        deadline = time.monotonic() + 30
        while Path(client.app.state.model_dir).name != version:  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, loads
            time.sleep(0.05)
        time.sleep(0.5)  # five polling intervals: loaded once, not again and again
        assert served_version(client) == version
    assert loads == [f"{version}.bak", version]


def test_a_stopping_app_waits_for_its_background_tasks_to_end(root: Path, tmp_path: Path) -> None:
    # The feedback summary check and the `current` follower were cancelled at shutdown but not
    # awaited: the lifespan returned (database disposed, lease released) with both still pending,
    # and a follower in the middle of a reload swapped a model in after the lease was released.
    import asyncio

    settings = Settings(model_root=root, data_dir=tmp_path / "var", reload_interval=0.1)
    app = create_app(settings, router_loader=loader)

    def name(task: asyncio.Task[Any]) -> str:
        return getattr(task.get_coro(), "__name__", "")

    async def run() -> tuple[list[str], list[str]]:
        outside = asyncio.all_tasks()
        async with app.router.lifespan_context(app):
            await asyncio.sleep(0.05)
            tasks = asyncio.all_tasks() - outside
        # Looked at as the lifespan returns: asyncio.run would end them itself afterwards.
        return sorted(map(name, tasks)), sorted(name(t) for t in tasks if not t.done())

    started, pending = asyncio.run(run())
    assert started == ["follow_pointer", "summarise_when_due"]
    assert pending == []
