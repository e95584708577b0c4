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


@pytest.fixture(scope="module")
def gbk_locale(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a zh_CN.GBK server: file names and arguments are GBK bytes."""
    loc = tmp_path_factory.mktemp("locale")
    try:
        subprocess.run(
            ["localedef", "-i", "zh_CN", "-f", "GBK", str(loc / "zh_CN.GBK")],
            capture_output=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("no localedef here")
    env = {"LOCPATH": str(loc), "LANG": "zh_CN.GBK", "LC_ALL": "zh_CN.GBK"}
    check = [sys.executable, "-c", "import sys; print(sys.getfilesystemencoding())"]
    said = subprocess.run(check, env={**os.environ, **env}, capture_output=True, text=True)
    if said.stdout.strip() != "gbk":
        pytest.skip("cannot make a zh_CN.GBK locale here")
    return env


@pytest.mark.parametrize("out", ["结果.csv", "结果.parquet", "批次目录/out.csv"])
def test_label_on_a_gbk_server_reads_and_writes_chinese_names(
    tiny_model_dir: Path, tmp_path: Path, gbk_locale: dict[str, str], out: str
) -> None:
    # `paidan label 工单.parquet --out 结果.csv` where the locale is zh_CN.GBK: Python made
    # 结果.csv.parts/ with GBK bytes, Arrow opened its parts by the name's UTF-8 bytes: "No such
    # file or directory" at the first chunk, nothing written; a Parquet input alike.
    import pandas as pd

    src = tmp_path / os.fsdecode("工单.parquet".encode("gbk"))
    with open(src, "wb") as f:
        pd.DataFrame(
            [(f"T{i}", t, x) for i, (t, x, _, _) in enumerate(TINY_TICKETS)],
            columns=["id", "title", "text"],
        ).to_parquet(f, index=False)
    args = ["label", src.name.encode("gbk", "surrogateescape"), "--model", str(tiny_model_dir)]
    proc = paidan(*args, "--out", out.encode("gbk"), "--jobs", "1", cwd=tmp_path, env=gbk_locale)
    assert proc.returncode == 0, proc.stderr.decode("gbk", "replace")
    written = tmp_path / os.fsdecode(out.encode("gbk"))
    if written.suffix == ".csv":
        assert len(pd.read_csv(written, dtype=str)) == len(TINY_TICKETS)
    else:
        with open(written, "rb") as f:
            assert len(pd.read_parquet(f)) == len(TINY_TICKETS)


def typed_in_gbk(text: str) -> str:
    """``text`` as a GBK terminal sends it to a UTF-8 server: Python's lone surrogates."""
    return os.fsdecode(text.encode("gbk"))


@pytest.mark.skipif(sys.getfilesystemencoding() != "utf-8", reason="a UTF-8 server's arguments")
def test_arguments_typed_in_a_gbk_terminal_are_refused_saying_so(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Xshell left at 默认语言 (GBK) on a UTF-8 server: predict answered the mojibake quietly, and
    # --text-col 诉求内容 was "no column '\udccb\udcdf…'" beside a list naming 诉求内容.
    from typer.testing import CliRunner

    from paidan.cli import app

    src = write_tickets_csv(tmp_path / "in.csv", TINY_TICKETS[:3])
    model = str(tiny_model_dir)
    cases = {
        "楼下烧烤店油烟太大": ["predict", model, typed_in_gbk("楼下烧烤店油烟太大")],
        "烧烤": ["predict", model, "油烟太大", "--title", typed_in_gbk("烧烤")],
        "诉求内容": [
            "label",
            str(src),
            "--model",
            model,
            "--out",
            str(tmp_path / "out.csv"),
            "--text-col",
            typed_in_gbk("诉求内容"),
        ],
        "处理部门": ["evaluate", model, str(src), "--department-col", typed_in_gbk("处理部门")],
    }
    for reading, args in cases.items():
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2, r.output
        said = " ".join(r.output.replace("│", " ").split())
        typed = " ".join(f"{b:02x}" for b in reading.encode("gbk")[:4])
        assert f"not UTF-8 text (bytes {typed}" in said, said
        assert f"read as GB18030 (GBK) it is '{reading}'" in said, said
        assert "set the terminal's encoding to UTF-8" in said, said
    assert not (tmp_path / "out.csv").exists()
    # What is not GBK either is refused all the same, as not UTF-8.
    r = CliRunner().invoke(app, ["predict", model, os.fsdecode(b"\xff\xfe abc")])
    assert r.exit_code == 2, r.output
    said = " ".join(r.output.replace("│", " ").split())
    assert "not UTF-8 text (bytes ff fe 20 61 62 63): the terminal does not send UTF-8" in said


def test_a_utf8_terminal_on_a_gbk_server_is_read_as_utf8(
    tiny_model_dir: Path, tmp_path: Path, gbk_locale: dict[str, str]
) -> None:
    # Windows Terminal, macOS or Xshell set to UTF-8 reaching a zh_CN.GBK server: --text-col
    # 诉求内容 was refused as "not UTF-8 text … the terminal sends GBK; set the terminal's encoding
    # to UTF-8" (it is UTF-8 and the terminal is set so), and 标题, whose UTF-8 bytes GBK reads
    # without a gap, was the column '鏍囬' ("no column"). A GBK terminal there still works.
    import pandas as pd

    src = tmp_path / "in.csv"
    pd.DataFrame(
        [(f"T{i}", t, x) for i, (t, x, _, _) in enumerate(TINY_TICKETS[:4])],
        columns=["编号", "标题", "诉求内容"],
    ).to_csv(src, index=False)
    model = str(tiny_model_dir)
    for terminal in ("utf-8", "gbk"):
        out = f"out-{terminal}.csv"
        cols = {"--id-col": "编号", "--title-col": "标题", "--text-col": "诉求内容"}
        typed = [x for opt, name in cols.items() for x in (opt, name.encode(terminal))]
        args = ["label", "in.csv", "--model", model, "--out", out, "--jobs", "1", *typed]
        proc = paidan(*args, cwd=tmp_path, env=gbk_locale)
        assert proc.returncode == 0, (terminal, proc.stderr.decode("gbk", "replace"))
        assert pd.read_csv(tmp_path / out, dtype=str)["编号"].tolist() == ["T0", "T1", "T2", "T3"]
    # predict's text and --title: the same answer whichever the terminal sends (噪音大: an odd
    # number of characters, refused; 油烟太大, even, read as mojibake).
    answers = set()
    for terminal in ("utf-8", "gbk"):
        args = [
            "predict",
            model,
            "楼下噪音大".encode(terminal),
            "--title",
            "油烟太大".encode(terminal),
        ]
        proc = paidan(*args, cwd=tmp_path, env=gbk_locale)
        assert proc.returncode == 0, (terminal, proc.stderr.decode("gbk", "replace"))
        answer = json.loads(proc.stdout.decode("gbk"))
        answer.pop("latency_ms", None)
        answers.add(json.dumps(answer, sort_keys=True, ensure_ascii=False))
    assert len(answers) == 1, answers
    # Bytes neither UTF-8 nor GBK are refused, saying both were tried.
    proc = paidan("predict", model, b"\xff\xfe abc", cwd=tmp_path, env=gbk_locale)
    said = " ".join(proc.stderr.decode("gbk", "replace").replace("|", " ").split())
    assert proc.returncode == 2, said
    assert "not UTF-8 or GBK text (bytes ff fe 20 61 62 63): the terminal does not send UTF-8" in (
        said
    ), said
