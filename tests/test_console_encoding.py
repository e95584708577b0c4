"""The command line on consoles that are not UTF-8: a GBK stdout (Windows redirecting it, a
``LANG=zh_CN.GBK`` server) and arguments typed in a GBK terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from model.config import TrainingConfig
from tests.conftest import TINY_TICKETS, write_tickets_csv

ROOT = Path(__file__).resolve().parents[1]
RARE = "\u3bbe梨街道办事处"  # 长沙县㮾梨街道: U+3BBE is not in GBK
EMOJI = "\U0001f621"  # not in GBK either


@pytest.fixture(scope="module")
def gbk_less_model(tmp_path_factory: pytest.TempPathFactory, tiny_config: TrainingConfig) -> Path:
    """The tiny corpus with 执法 renamed to a department GBK cannot write and an emoji in every
    title of 人社."""
    from training.train import train

    root = tmp_path_factory.mktemp("gbk-less")
    tickets = [
        (
            f"{title}{EMOJI}" if dept == "人社" else title,
            text,
            RARE if dept == "执法" else dept,
            cat,
        )
        for title, text, dept, cat in TINY_TICKETS
    ]
    result = train([write_tickets_csv(root / "t.csv", tickets)], root / "m", config=tiny_config)
    assert result.model_dir is not None
    return result.model_dir


def paidan(
    *args: str | bytes, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "paidan", *args],
        cwd=cwd,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "PAIDAN_MODEL_ROOT": str(cwd / "models"),
            "PAIDAN_DATA_DIR": str(cwd / "var"),
            **(env or {}),
        },
        capture_output=True,
        timeout=300,
    )


GBK = {"PYTHONIOENCODING": "gbk"}


def test_label_to_a_gbk_stdout_escapes_what_gbk_lacks(gbk_less_model: Path, tmp_path: Path) -> None:
    # `paidan label … > label.log` on Chinese Windows (cp936): a UnicodeEncodeError traceback,
    # exit 1, after the output was written, the summary cut off.
    src = write_tickets_csv(tmp_path / "in.csv", TINY_TICKETS[6:12])
    proc = paidan(
        "label", str(src), "--model", str(gbk_less_model), "--out", "out.csv", "--jobs", "1",
        cwd=tmp_path, env=GBK,
    )  # fmt: skip
    stdout, stderr = proc.stdout.decode("gbk"), proc.stderr.decode("gbk", "replace")
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "\\u3bbe梨街道办事处" in stdout  # the summary's departments table, escaped
    assert (tmp_path / "out.csv.summary.json").is_file()


def test_predict_to_a_gbk_stdout_is_valid_json_with_escapes(
    gbk_less_model: Path, tmp_path: Path
) -> None:
    # A similar ticket's title with an emoji: exit 1 and no JSON at all.
    text = "我在工地干了三个月，老板一直拖欠工资不发，农民工工资什么时候能拿到"
    proc = paidan("predict", str(gbk_less_model), text, cwd=tmp_path, env=GBK)
    assert proc.returncode == 0, proc.stderr.decode("gbk", "replace")
    result = json.loads(proc.stdout.decode("gbk"))
    assert any(EMOJI in s["title"] for s in result["similar"])
    # Every department is a candidate, 㮾梨街道办事处 among them.
    assert RARE in [c["label"] for c in result["department"]["candidates"]]
