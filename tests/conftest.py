"""Shared fixtures: a tiny corpus written here, and the bundled-sample model trained once per session."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from model import resources
from model.config import TrainingConfig

# The CLI prints its tables as wide as COLUMNS says, or 160 columns when stdout is not a terminal,
# and fixes that width when paidan.cli is imported; the tests read them at 160. pytest-xdist's
# workers set COLUMNS=80 (as does a shell that exports it), which cut "department" to "depa…".
os.environ.pop("COLUMNS", None)

# One BLAS and OpenMP thread per test process (and per paidan process a test starts, which inherits
# the environment). OpenBLAS starts a thread per core and its threads spin while waiting for work:
# the tests' small in-process fits (the tiny corpus, under 200 rows, trains without worker processes)
# burnt a second core doing nothing. Under `pytest -n 2` on two cores that core is the other test
# worker's: four training test files took 192 s against 103 s with one thread, and alone in one
# process 69 s of CPU against 39 s for the same wall time. It must be set before numpy is first
# imported, which nothing above does (tests/test_test_processes.py checks that it took); a value
# already in the environment is kept.
for _threads in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")

# The loggers `paidan serve`'s logging set-up configures (serve.server.log_config): the root's
# handlers replaced by one, and uvicorn's and the app's each given a handler, a level and no
# propagation; every handler writes to the stderr of the moment.
APP_LOGGERS = ("", "serve", "model", "uvicorn", "uvicorn.error", "uvicorn.access")


def pytest_configure(config: pytest.Config) -> None:
    # Started in the background by a shell script (`pytest … &`, a job runner that does so), a
    # process inherits Ctrl-C's SIGINT ignored, Python then installs no handler for it, and the
    # tests that press Ctrl-C (os.kill(os.getpid(), SIGINT)) found nothing raised. Give the test
    # processes, and so the paidan processes they start, Ctrl-C as a terminal's start has it.
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    ):
        signal.signal(signal.SIGINT, signal.default_int_handler)


@contextmanager
def kept_loggers(names: tuple[str, ...] = APP_LOGGERS) -> Iterator[None]:
    """Put the ``names`` loggers' (``""``: the root) handlers, level and propagation back as they
    were on exit."""
    saved = {}
    for name in names:
        logger = logging.getLogger(name)
        saved[logger] = (list(logger.handlers), logger.level, logger.propagate, logger.disabled)
    try:
        yield
    finally:
        for logger, (handlers, level, propagate, disabled) in saved.items():
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate
            logger.disabled = disabled


@pytest.fixture(autouse=True)
def _app_loggers_as_found() -> Iterator[None]:
    # A test that runs `paidan serve` in-process (CliRunner) leaves its handlers writing to the
    # stderr CliRunner then closes: a later test's log line (a refused model reload) printed
    # "--- Logging error --- ValueError: I/O operation on closed file", and whether a line reached
    # the root logger (caplog) depended on which test had run before.
    with kept_loggers():
        yield


# The default feedback database of a server or app started in the checkout (PAIDAN_DATA_DIR unset).
CHECKOUT_VAR = Path(__file__).resolve().parents[1] / "var"
_CHECKOUT_VAR_FOUND = CHECKOUT_VAR.exists()  # a developer's own, before the tests ran


@pytest.fixture(autouse=True)
def _checkout_left_clean() -> Iterator[None]:
    # Test servers started without PAIDAN_DATA_DIR wrote var/paidan.db into the checkout (the
    # working directory): every run shared one database and left it behind. The test that makes
    # it fails here, by name; nothing is checked where var/ was there before the run. Under
    # pytest-xdist a test of another worker may have made it while this one ran: the message says
    # so, and only the first test to see it fails (the others see var/ there before they start).
    made_before = CHECKOUT_VAR.exists()
    yield
    if not _CHECKOUT_VAR_FOUND and not made_before and CHECKOUT_VAR.exists():
        beside = (
            " (or a test running beside it in another pytest-xdist worker)"
            if os.environ.get("PYTEST_XDIST_WORKER")
            else ""
        )
        pytest.fail(
            f"this test{beside} wrote {CHECKOUT_VAR} into the checkout: start servers and apps "
            "with PAIDAN_DATA_DIR (or PAIDAN_DATABASE_URL) in the test's tmp_path"
        )


SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "tipdm2020c"

# Small enough to read, varied enough that each department has its own words.
TINY_TICKETS: list[tuple[str, str, str, str]] = [
    # (title, text, department, category)
    (
        "公司拖欠工资",
        "我在工地干了三个月，老板一直拖欠工资不发，农民工工资什么时候能拿到",
        "人社",
        "劳动保障",
    ),
    ("欠薪三个月", "单位欠薪三个月了，劳动合同也不签，请劳动监察大队帮忙讨薪", "人社", "劳动保障"),
    ("社保断缴", "公司没有给我们缴纳社保，社保断缴半年，养老保险怎么办", "人社", "劳动保障"),
    ("讨要工资", "装修公司拖欠农民工工资，多次讨薪无果，希望人社局介入", "人社", "劳动保障"),
    ("工伤认定", "在厂里受伤了，单位不给办工伤认定，也不发工资", "人社", "劳动保障"),
    ("养老金发放", "退休以后养老金一直没有到账，社保局说材料不全", "人社", "劳动保障"),
    ("饭店油烟扰民", "楼下烧烤店油烟很大，晚上十二点还在营业，油烟直接排进窗户", "执法", "环境"),
    ("空调外机噪音", "商铺空调外机噪音太大，整夜轰鸣，影响休息", "执法", "环境"),
    ("占道经营", "菜市场门口小贩占道经营，路都堵死了，城管也不管", "执法", "城建"),
    ("违章搭建", "邻居在楼顶违章搭建彩钢房，存在安全隐患，请执法局拆除", "执法", "城建"),
    ("油烟污染", "小区底商餐馆没有油烟净化器，油烟熏黑了外墙", "执法", "环境"),
    ("广场舞噪音", "广场舞音响声音太大，每天晚上噪音扰民到十点", "执法", "环境"),
    ("物业不作为", "小区物业公司收了物业费却不管电梯维修，电梯经常坏", "住建", "城建"),
    ("电梯故障", "我们楼的电梯频繁故障困人，物业推诿，请住建局督促维修", "住建", "城建"),
    ("房产证办不下来", "开发商交房三年了房产证还办不下来，购房者很着急", "住建", "城建"),
    ("楼房漏水", "新房交付后墙体开裂漏水，开发商拒绝维修，房屋质量有问题", "住建", "城建"),
    ("物业费涨价", "物业公司擅自上涨物业费，业主委员会不同意", "住建", "城建"),
    ("公积金提取", "公积金提取手续太麻烦，跑了好几趟都没办成", "住建", "城建"),
]


@pytest.fixture(scope="session")
def tiny_config() -> TrainingConfig:
    # Three folds: the tiny corpus has six rows per department. The department head always reads
    # the latent view and the category probabilities, so every test runs through them.
    return TrainingConfig(
        cv_folds=3, calibration_cv=2, min_examples=3, max_features=None, select_inputs=False
    )


def write_tiny_csv(path: Path) -> Path:
    """Write TINY_TICKETS as a canonical CSV."""
    return write_tickets_csv(path, TINY_TICKETS)


def without_progress(output: str) -> str:
    """A command's output without its progress lines (UTC-stamped, written when stderr is not a
    terminal, as under CliRunner): what it said besides."""
    import re

    stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ")
    return "".join(line for line in output.splitlines(True) if not stamp.match(line))


def three_versions(model_dir: Path, tmp_path: Path, registered: bool = False) -> Path:
    """A model root holding three copies of ``model_dir``: v1, v2 and v3 (``registered``: each
    named in its metadata as its directory, see :func:`as_registered`)."""
    root = tmp_path / "models"
    for name in ("v1", "v2", "v3"):
        shutil.copytree(model_dir, root / name)
        if registered:
            as_registered(root / name)
    return root


def as_registered(version_dir: Path) -> Path:
    """Make a copied version directory one the registry could have written: its metadata names
    the directory as its version (``models gc`` leaves copies named otherwise alone)."""
    meta_path = version_dir / "metadata.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["version"] = version_dir.name
    meta_path.chmod(0o644)
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    return version_dir


@pytest.fixture
def tiny_csv(tmp_path: Path) -> Path:
    return write_tiny_csv(tmp_path / "tiny.csv")


def train_tiny(factory: pytest.TempPathFactory, name: str, config: TrainingConfig) -> Path:
    """Train TINY_TICKETS with ``config`` into a fresh directory; return the model directory."""
    from training.train import train

    root = factory.mktemp(name)
    result = train([write_tiny_csv(root / "tiny.csv")], root / "model", config=config)
    assert result.model_dir is not None
    return result.model_dir


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_config: TrainingConfig) -> Path:
    """A model trained on TINY_TICKETS, written once per session."""
    return train_tiny(tmp_path_factory, "tiny-models", tiny_config)


@pytest.fixture(scope="session")
def placeholder_model_dir(
    tmp_path_factory: pytest.TempPathFactory, tiny_config: TrainingConfig
) -> Path:
    """A model trained on TINY_TICKETS, half of them ending in the placeholders tickets use for
    "the content is elsewhere" (详见附件, 如题, 同上), so that it knows those words."""
    from training.train import train

    root = tmp_path_factory.mktemp("placeholder-models")
    tickets = [
        (title, f"{text}，详见附件，如题，同上" if i % 2 else text, dept, cat)
        for i, (title, text, dept, cat) in enumerate(TINY_TICKETS)
    ]
    result = train(
        [write_tickets_csv(root / "tickets.csv", tickets)], root / "m", config=tiny_config
    )
    assert result.model_dir is not None
    return result.model_dir


# Two departments too rare for min_examples=3: training merges them into 其他 (4 rows, learnt).
RARE_TICKETS: list[tuple[str, str, str, str]] = [
    ("档案查询", "想查询父亲当年的人事档案，档案馆说要单位介绍信", "档案馆", "城建"),
    ("档案遗失", "调动工作时档案遗失了，档案馆查不到记录", "档案馆", "城建"),
    ("天气预报不准", "气象台天气预报总是不准，暴雨预警发布太晚", "气象局", "环境"),
    ("防雷检测", "小区防雷检测收费太高，气象部门是否有规定", "气象局", "环境"),
]


def write_frame(path: Path, frame: Any) -> Path:
    """Write a pandas table as the file ``path``'s extension names: Parquet, JSON Lines or CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame.to_parquet(path)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_csv(path, index=False)
    return path


def write_tickets_csv(path: Path, tickets: list[tuple[str, str, str, str]]) -> Path:
    """Write tickets (title, text, department, category) as a canonical CSV."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "title", "text", "department", "category"])
        for i, (title, text, dept, cat) in enumerate(tickets, 1):
            w.writerow([f"T{i:03d}", title, text, dept, cat])
    return path


@pytest.fixture(scope="session")
def merged_model_dir(
    tmp_path_factory: pytest.TempPathFactory, tiny_config: TrainingConfig
) -> tuple[Path, Path]:
    """A model trained on TINY_TICKETS + RARE_TICKETS (rare departments merged into 其他), and
    its training CSV."""
    from training.train import train

    root = tmp_path_factory.mktemp("merged-models")
    data = write_tickets_csv(root / "merged.csv", TINY_TICKETS + RARE_TICKETS)
    result = train([data], root / "model", config=tiny_config)
    assert result.model_dir is not None
    return result.model_dir, data


# RARE_TICKETS with a grid worker's mobile typed into the department, in full-width digits (a
# Chinese keyboard in full-width mode) and in half-width ones after a capital (normalised, the label
# is lower-cased): both are too rare, merged into 其他, and recorded masked in metadata.json.
FULL_WIDTH_LABEL = "网格员李四１３９８７６５４３２１"
HALF_WIDTH_LABEL = "A区网格员13912345678"
PHONE_RARE_TICKETS: list[tuple[str, str, str, str]] = [
    (title, text, FULL_WIDTH_LABEL if dept == "档案馆" else HALF_WIDTH_LABEL, cat)
    for title, text, dept, cat in RARE_TICKETS
]


@pytest.fixture(scope="session")
def phone_merged_model_dir(
    tmp_path_factory: pytest.TempPathFactory, tiny_config: TrainingConfig
) -> tuple[Path, Path]:
    """A model trained on TINY_TICKETS + PHONE_RARE_TICKETS, and its training CSV."""
    from training.train import train

    root = tmp_path_factory.mktemp("phone-merged-models")
    data = write_tickets_csv(root / "merged.csv", TINY_TICKETS + PHONE_RARE_TICKETS)
    result = train([data], root / "model", config=tiny_config)
    assert result.model_dir is not None
    return result.model_dir, data


# How models trained before labels were masked in their normalised form recorded these: masked as
# written (half-width digits only; the full-width ones were kept), and, older, not masked at all.
OLD_MERGED_KEYS: dict[str, dict[str, int]] = {
    "masked as written": {FULL_WIDTH_LABEL: 2, "A区网格员[手机号]": 2},
    "as written": {FULL_WIDTH_LABEL: 2, HALF_WIDTH_LABEL: 2},
}


def with_merged_keys(model_dir: Path, dest: Path, keys: dict[str, int] | None) -> Path:
    """A copy of ``model_dir`` at ``dest`` whose metadata records ``keys`` as its department
    labels merged into 其他 (``None``: as trained)."""
    import json

    shutil.copytree(model_dir, dest)
    if keys is not None:
        path = dest / "metadata.json"
        meta = json.loads(path.read_text(encoding="utf-8"))
        meta["training_data"]["validation"]["merged_into_other"]["department"] = keys
        path.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    return dest


@pytest.fixture(scope="session")
def blended_model_dir(
    tmp_path_factory: pytest.TempPathFactory, tiny_config: TrainingConfig
) -> Path:
    """TINY_TICKETS' model with a multinomial regression blended into the department head."""
    config = dataclasses.replace(tiny_config, multinomial_weight=0.5)
    return train_tiny(tmp_path_factory, "blended-models", config)


def write_category_only_csv(path: Path) -> Path:
    """TINY_TICKETS without their departments: a category-only history."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "title", "text", "category"])
        for i, (title, text, _dept, cat) in enumerate(TINY_TICKETS, 1):
            w.writerow([f"T{i:03d}", title, text, cat])
    return path


@pytest.fixture(scope="session")
def category_only_model_dir(
    tmp_path_factory: pytest.TempPathFactory, tiny_config: TrainingConfig
) -> Path:
    """A model of a category-only deployment: TINY_TICKETS' categories, no department head."""
    from training.train import train

    root = tmp_path_factory.mktemp("category-only-models")
    data = write_category_only_csv(root / "categories.csv")
    result = train([data], root / "model", config=tiny_config)
    assert result.model_dir is not None
    assert set(result.router.heads) == {"category"}
    return result.model_dir


def built_once_per_run(
    factory: pytest.TempPathFactory, name: str, build: Callable[[Path], Path]
) -> Path:
    """``build(directory)``'s result, built by one test process of the run for all of them.

    Under pytest-xdist the first worker to ask builds it in the run's temporary directory, which
    every worker shares, and the others wait for it and read it; without xdist it is built here.
    What is built must be read only (a model directory never changes once written). A build that
    failed is attempted again by the next worker that asks.
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return build(factory.mktemp(name))
    from filelock import FileLock

    shared = factory.getbasetemp().parent / name  # the run's directory, above each worker's own
    done = shared / "built"  # what build returned, relative to `shared`; written last
    with FileLock(f"{shared}.lock"):
        if not done.is_file():
            shutil.rmtree(shared, ignore_errors=True)
            shared.mkdir()
            done.write_text(str(build(shared).relative_to(shared)), encoding="utf-8")
    return shared / done.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def sample_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled sample's model, trained exactly as `paidan train` would (no remits), once for
    the whole run (about 15 s); ``served_default_dir`` is the one ``paidan serve`` trains."""
    from training.train import train

    def trained(directory: Path) -> Path:
        result = train([resources.sample_path()], directory / "sample")
        assert result.model_dir is not None
        return result.model_dir

    return built_once_per_run(tmp_path_factory, "sample-models", trained)


@pytest.fixture(scope="session")
def served_default_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default ``paidan serve`` trains on an empty model root (``ensure_model``): the bundled
    sample with its 权责清单 (``data/remits.csv``), marked as the sample's placeholder; once for the
    whole run (about 25 s). What a new user is served, where ``sample_model_dir`` is the sample as
    ``paidan train`` trains it without remits."""
    from model.settings import Settings
    from paidan.cli import ensure_model

    def trained(directory: Path) -> Path:
        return ensure_model(Settings(model_root=directory / "models"), None)

    return built_once_per_run(tmp_path_factory, "served-default-models", trained)


def shared_file(name: str) -> Path:
    path = SHARED / name
    if not path.is_file():
        pytest.skip(
            f"the real tickets are not here ({path} is absent; CI has ../shared beside the checkout)"
        )
    return path
