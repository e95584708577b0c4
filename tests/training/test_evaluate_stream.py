"""``paidan evaluate`` reads and scores a CSV file a chunk at a time: its report is the report of
the whole file (repeated rows across chunks and files, the mapping and merged labels, joint
advice), which a reference here computes the way evaluate did when it read everything first."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from model.artifact import load_router
from model.config import TrainingConfig
from model.tickets import CO_COL, JOINT_JOINER, LABELS, TicketFileError, has_text, read_tickets
from tests.conftest import RARE_TICKETS, TINY_TICKETS
from tests.training.test_joint import JOINT
from training.evaluate import Scores, evaluate, evaluate_router
from training.metrics import head_report
from training.retrain import apply_mapping, inherited_mapping
from training.train import train
from training.validate import (
    UNLABELLED_LISTED,
    find_merged,
    masked_counts,
    merged_mapping,
    repeated_rows,
    row_places,
)

HEADER = ["id", "title", "text", "department", "category"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_config: TrainingConfig) -> Path:
    """Trained on the tiny corpus, its rare departments (merged into 其他) and joint tickets,
    with a recorded mapping 旧住建 -> 住建 (as `paidan retrain --mapping` records one)."""
    root = tmp_path_factory.mktemp("stream-model")
    path = root / "train.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for i, (title, text, dept, cat) in enumerate(TINY_TICKETS + RARE_TICKETS, 1):
            w.writerow([f"T{i:03d}", title, text, dept, cat])
        for i, (title, text, depts) in enumerate(JOINT, 1):
            w.writerow([f"J{i}", title, text, depts, "城建"])
    result = train([path], root / "model", config=tiny_config)
    assert result.model_dir is not None
    meta_path = result.model_dir / "metadata.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    assert meta["training_data"]["validation"]["merged_into_other"]["department"]
    meta["training_data"]["mapping"] = {"department": {"旧住建": "住建"}}
    meta_path.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    return result.model_dir


def rows() -> list[list[str]]:
    """Test tickets: changed texts, joint ones, rare (merged) and renamed (mapped) departments,
    an unknown label, empty texts, and repeats of earlier rows near and far."""
    out: list[list[str]] = []
    for i, (title, text, dept, cat) in enumerate(TINY_TICKETS + RARE_TICKETS, 1):
        out.append([f"E{i:03d}", title, text + "，请尽快处理", dept, cat if i % 5 else ""])
    # 气象局 (merged) has more rows than 档案馆, which comes first: the report lists it first.
    out += [
        [f"EX{i}", "防雷检测", f"第{i}次反映防雷检测收费太高", "气象局", "环境"] for i in (1, 2)
    ]
    for i, (title, text, depts) in enumerate(JOINT, 1):
        out.append([f"EJ{i}", title, "现在" + text, depts.replace("住建", "旧住建"), "城建"])
    out[3][3] = "旧住建"
    out[7][3] = "无此部门13912345678"  # unknown, quoted masked
    out[11][2] = out[11][1] = " "  # skipped: no text
    out[12][3] = ""  # no department label: scored for the category only
    repeats = [out[0], out[1], out[2], out[9], out[-1], out[3]]
    # Interleaved: each repeat lands in another chunk than its first for most chunk sizes.
    for k, row in enumerate(repeats):
        out.insert(5 + 4 * k, list(row))
    return out


def dumped(report: dict[str, Any]) -> str:
    """The report as evaluate writes it."""
    return json.dumps(report, ensure_ascii=False, indent=2)


def assert_same_report(got: Any, expected: Any, where: str = "report") -> None:
    """The same report, keys in the same order, floats equal to the last bits or so.

    A ticket scored alone and in a batch can get probabilities a unit in the last place apart
    (dense products sum in another order; measured: at most 2.2e-16), which moves a figure such
    as the ECE in its 17th digit; chunks of one row score every ticket alone.
    """
    if isinstance(expected, dict):
        assert isinstance(got, dict) and list(got) == list(expected), where
        for key in expected:
            assert_same_report(got[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), where
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            assert_same_report(g, e, f"{where}[{i}]")
    elif isinstance(expected, float) and not isinstance(expected, bool):
        assert isinstance(got, float) and math.isclose(got, expected, rel_tol=1e-12), where
    else:
        assert got == expected and type(got) is type(expected), where


def write_csv(path: Path, records: list[list[str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerows(records)
    return path


def whole_file_report(model_dir: Path, paths: list[Path]) -> dict[str, Any]:
    """evaluate's report as it was computed when every file was read whole before scoring."""
    router, metadata = load_router(model_dir)
    read = read_tickets(paths)
    with_text = has_text(read)
    df = read[with_text].copy()
    kept, repeats = repeated_rows(df)
    df = df[kept].copy()
    mapping = inherited_mapping(model_dir, metadata)
    mapped = apply_mapping(df, mapping) if mapping else {}
    merged = {}
    for h, renames in merged_mapping(
        metadata, {h: list(head.labels) for h, head in router.heads.items()}
    ).items():
        spelt = set(df[h])
        if h == "department":
            spelt.update(d for co in df[CO_COL] if co for d in co.split(JOINT_JOINER))
        if found := find_merged(renames, spelt, router.heads[h].labels):
            merged[h] = found
    merged_rows = {h: masked_counts(c) for h, c in apply_mapping(df, merged).items()}
    titles, texts = df["title"].tolist(), df["text"].tolist()
    tickets = list(zip(titles, texts, strict=True))
    labels = {h: df[h].str.strip().to_numpy(dtype=str) for h in LABELS}
    # Every probability of every ticket, scored at once, through head_report.
    scores = router.feature_scores(router.transform(tickets))
    report = evaluate_router(
        router,
        titles,
        texts,
        {h: v.tolist() for h, v in labels.items()},
        10**6,
        df[CO_COL].tolist(),
    )
    for head, (proba, rank) in scores.items():
        known = labels[head] != ""
        expected = head_report(
            labels[head][known], proba[known], router.heads[head].labels,
            router.heads[head].threshold, rank=rank[known],
        )  # fmt: skip
        # The labels here are not masked: compare the figures that do not quote them.
        for key in ("accuracy", "macro_f1", "weighted_f1", "top3_accuracy", "ece", "auto"):
            assert report[head][key] == expected[key], key
    report["skipped_empty_text"] = int((~with_text).sum())
    report["skipped_repeated_header"] = 0  # (the test files repeat no header line)
    empty = {h: labels[h] == "" for h in LABELS if h in router.heads}
    if unlabelled := {h: int(e.sum()) for h, e in empty.items() if e.any()}:
        report["unlabelled_rows"] = unlabelled
        report["unlabelled_examples"] = {
            h: row_places(df[empty[h]]).tolist()[:UNLABELLED_LISTED] for h in unlabelled
        }
    if repeats:
        report["duplicate_rows"] = len(repeats)
        report["duplicate_examples"] = [list(p) for p in repeats[:UNLABELLED_LISTED]]
    if mapped:
        report["mapped"] = mapped
    if merged_rows:
        report["merged_into_other"] = merged_rows
    return report


@pytest.mark.parametrize("chunk_rows", [1, 3, 7, None])
def test_a_csv_read_in_chunks_gives_the_report_of_the_whole_files(
    tmp_path: Path, model_dir: Path, chunk_rows: int | None
) -> None:
    records = rows()
    a = write_csv(tmp_path / "a.csv", records)
    b = write_csv(tmp_path / "b.csv", records[20:] + records[:4])  # exports that overlap
    expected = whole_file_report(model_dir, [a, b])
    # What the data holds, so that each part of the report is compared.
    assert expected["joint"]["joint_rows"] >= 1 and expected["duplicate_rows"] > 10
    assert list(expected["mapped"]["department"]) == ["旧住建"]
    assert "其他" in expected["department"]["per_class"]
    assert list(expected["merged_into_other"]["department"]) == ["气象局", "档案馆"]
    assert expected["department"]["unknown_labels"] == {"无此部门[手机号]": 1}
    assert expected["skipped_empty_text"] == 1
    # Repeats of a row in another chunk, within a file, and every row of the second file.
    assert ["a.csv data row 6", "a.csv data row 1"] in expected["duplicate_examples"]
    assert expected["duplicate_rows"] == 6 + len(records) - 16
    seen: list[tuple[str, int, int]] = []
    report = evaluate(
        model_dir,
        [a, b],
        tmp_path / "r.json",
        progress=lambda stage, done, total: seen.append((stage, done, total)),
        chunk_rows=chunk_rows,
    )
    # The same report, keys in the same order too (most rows first, say), in the file as returned.
    assert_same_report(report, expected)
    assert (tmp_path / "r.json").read_text(encoding="utf-8") == dumped(report) + "\n"
    # Progress counts the rows read, up to all of them.
    rows_read = 2 * len(records) - 16
    assert seen[-1] == ("scoring", rows_read, rows_read)
    assert all(done <= total for _, done, total in seen)


def test_scores_added_a_batch_at_a_time_are_the_figures_of_all_the_probabilities(
    model_dir: Path,
) -> None:
    router, _ = load_router(model_dir)
    records = rows()
    titles, texts = [r[1] for r in records], [r[2] for r in records]
    labels = {
        "department": [r[3].split("；")[0] for r in records],
        "category": [r[4] for r in records],
    }
    proba_rank = router.feature_scores(router.transform(list(zip(titles, texts, strict=True))))
    for head, (proba, rank) in proba_rank.items():
        y = np.asarray(labels[head], dtype=str)
        known = (y != "") & np.isin(y, router.heads[head].labels)
        if head == "department":
            assert not known.all()  # the unknown label, masked in the report, is left out here
        expected = head_report(
            y[known], proba[known], router.heads[head].labels, router.heads[head].threshold,
            rank=rank[known],
        )  # fmt: skip
        mine = Scores(router, batch=3)
        mine.add(
            [t for t, k in zip(titles, known, strict=True) if k],
            [t for t, k in zip(texts, known, strict=True) if k],
            {head: y[known].tolist()},
        )
        got = mine.report()[head]
        assert {k: got[k] for k in expected} == expected


def test_an_error_names_the_file_and_line_whatever_the_chunk_size(
    tmp_path: Path, model_dir: Path
) -> None:
    good = write_csv(tmp_path / "good.csv", rows())
    bad = tmp_path / "bad.csv"
    text = write_csv(tmp_path / "tmp.csv", rows()).read_text(encoding="utf-8").splitlines()
    text[20] += ",extra"  # a record with a field more than the header, on line 21
    bad.write_text("\n".join(text) + "\n", encoding="utf-8")
    messages = set()
    for chunk_rows in (2, None):
        with pytest.raises(TicketFileError) as e:
            evaluate(model_dir, [good, bad], chunk_rows=chunk_rows)
        messages.add(str(e.value))
    (message,) = messages
    assert message.startswith(f"{bad}: malformed CSV: line 21: it has 6 fields, the header has 5")


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "xlsx"])
def test_other_formats_read_whole_give_the_csv_report(
    tmp_path: Path, model_dir: Path, fmt: str
) -> None:
    records = rows()
    csv_path = write_csv(tmp_path / "t.csv", records)
    df = pd.DataFrame(records, columns=HEADER)
    path = tmp_path / f"t.{fmt}"
    if fmt == "jsonl":
        df.to_json(path, orient="records", lines=True, force_ascii=False)
    elif fmt == "parquet":
        df.to_parquet(path)
    else:
        df.to_excel(path, index=False)
    expected = evaluate(model_dir, [csv_path], chunk_rows=3)
    got = evaluate(model_dir, [path], chunk_rows=3)

    # A JSON Lines row is named by its line (here, with no blank line, its data row's number).
    def as_csv(place: str) -> str:
        return place.replace(f"t.{fmt}", "t.csv").replace(" line ", " data row ")

    got["duplicate_examples"] = [[as_csv(p) for p in pair] for pair in got["duplicate_examples"]]
    got["unlabelled_examples"] = {
        h: [as_csv(p) for p in places] for h, places in got["unlabelled_examples"].items()
    }
    assert dumped(got) == dumped(expected)


def test_a_repeat_in_json_lines_is_named_by_its_line(tmp_path: Path, model_dir: Path) -> None:
    # duplicate_examples said "t.jsonl data row 4" for the object on line 6 of a file with blank
    # lines, where train's warnings and the reader's errors name its line.
    records = rows()[:3]
    lines = [json.dumps(dict(zip(HEADER, r, strict=True)), ensure_ascii=False) for r in records]
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join([lines[0], "", lines[1], lines[2], "", lines[0]]) + "\n", "utf-8")
    report = evaluate(model_dir, [path], chunk_rows=2)
    assert report["duplicate_examples"] == [["t.jsonl line 6", "t.jsonl line 1"]]


def test_scoring_is_done_only_when_the_input_is_though_the_estimate_was_reached_before(
    tmp_path: Path, model_dir: Path
) -> None:
    # A workbook that declares no size (openpyxl's write-only mode, some exporters) is estimated
    # at 0 rows: progress reported (10000, 10000) at the first chunk, a log said "scoring: done"
    # and then nothing while the rest was scored.
    import openpyxl

    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet()
    ws.append(HEADER)
    for record in rows():
        ws.append(record)
    path = tmp_path / "undeclared.xlsx"
    wb.save(path)
    calls: list[tuple[str, int, int]] = []
    evaluate(model_dir, [path], chunk_rows=3, progress=lambda *a: calls.append(a))
    *during, last = calls
    assert last == ("scoring", len(rows()), len(rows())), calls
    assert len(during) > 2 and all(done < total for _, done, total in during), calls


def test_a_repeat_in_a_subdirectory_is_named_by_its_path_in_the_directory(
    tmp_path: Path, model_dir: Path
) -> None:
    # The report's duplicate_examples said "一月.csv data row 1 repeats 一月.csv data row 1".
    records = rows()[:5]  # no two alike
    for year in ("2024", "2025"):
        (tmp_path / "exports" / year).mkdir(parents=True)
        write_csv(tmp_path / "exports" / year / "一月.csv", records)
    report = evaluate(model_dir, [tmp_path / "exports"])
    assert report["duplicate_examples"][0] == [
        "2025/一月.csv data row 1",
        "2024/一月.csv data row 1",
    ]
