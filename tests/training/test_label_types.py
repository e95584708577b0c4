"""``paidan label`` writes JSON Lines and Parquet output with the input's column types and nulls.

Every input column came back as text (an int64 id as ``'1001'``, a timestamp as
``'2024-01-05 08:03:00+08:00'``, a null as ``''``), so the labels no longer joined back to the
source table on ``id``; CSV and XLSX output stay text.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import TINY_TICKETS
from tests.training.test_label import Interrupt
from training.label import PRED_COLUMNS, LabelError, label
from training.label_io import TicketFileError

SH = ZoneInfo("Asia/Shanghai")


def _typed_parquet(path: Path, n: int = 12) -> pa.Table:
    texts = [TINY_TICKETS[i % len(TINY_TICKETS)][1] for i in range(n)]
    texts[3] = ""  # an error row: it keeps its values too
    table = pa.table(
        {
            "id": pa.array([1000 + i if i != 5 else None for i in range(n)], pa.int64()),
            "title": [TINY_TICKETS[i % len(TINY_TICKETS)][0] for i in range(n)],
            "text": texts,
            "time": pa.array(
                [
                    dt.datetime(2024, 1, 5, 8, 3, 0, 500_000 * (i % 2), tzinfo=SH)
                    if i != 7
                    else None
                    for i in range(n)
                ],
                pa.timestamp("us", tz="Asia/Shanghai"),
            ),
            "urgent": pa.array([i % 3 == 0 if i != 2 else None for i in range(n)], pa.bool_()),
            "note": pa.array([None if i % 4 else f"n{i}" for i in range(n)], pa.string()),
        }
    )
    pq.write_table(table, path)
    return table


def test_parquet_output_keeps_the_parquet_inputs_types_and_nulls(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    src = _typed_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    label([tmp_path / "in.parquet"], tiny_model_dir, out, jobs=1, chunk_size=5)
    got = pq.read_table(out)
    names = src.schema.names
    assert got.schema.names == [*names, *PRED_COLUMNS]
    for name in names:
        assert got.schema.field(name).type == src.schema.field(name).type, name
    # Values and nulls as read, the error row's (empty text) included.
    assert got.select(names).to_pylist() == src.to_pylist()
    assert got.column("error")[3].as_py().startswith("empty text")
    # What a data team does next: join the labels back on id.
    joined = src.join(got.select(["id", "pred_department"]), "id", join_type="inner")
    assert joined.num_rows == src.num_rows - 1  # the null id joins nothing


def test_csv_output_stays_text(tiny_model_dir: Path, tmp_path: Path) -> None:
    _typed_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out.csv"
    label([tmp_path / "in.parquet"], tiny_model_dir, out, jobs=1)
    with open(out, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["id"] == "1000" and rows[5]["id"] == ""
    assert rows[1]["time"] == "2024-01-05 08:03:00.500000+08:00"
    assert rows[0]["urgent"] == "true" and rows[2]["urgent"] == ""


def test_jsonl_output_writes_the_json_values_as_read(tiny_model_dir: Path, tmp_path: Path) -> None:
    text = TINY_TICKETS[0][1]
    objects: list[dict[str, object]] = [
        {"id": 1001, "text": text, "time": 1704412980, "note": None, "urgent": True, "score": 1.5},
        {"id": 1002, "text": "", "time": 1704412981, "note": "=1+1", "urgent": False, "score": 2},
        {"id": 1003, "text": text, "extra": {"a": [1, 2]}},
    ]
    lines = [json.dumps(o, ensure_ascii=False) for o in objects]
    lines.insert(2, '{"id": 9, "text": broken')  # a line that is no object: no values
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    label([src], tiny_model_dir, out, jobs=1)
    got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(got) == 4
    keys = ["id", "text", "time", "note", "urgent", "score"]
    assert {k: got[0][k] for k in keys} == {k: objects[0][k] for k in keys}
    # An error row (empty text) keeps its values; a text that looks like a formula is as read;
    # an integer in a column of fractions is a number still.
    assert got[1]["error"].startswith("empty text")
    assert {k: got[1][k] for k in keys} == {**objects[1], "score": 2.0}
    # The broken line: every input column null but its id, read whole before the break (as a
    # number, as written), to join it back; the error says why.
    assert {k: got[2][k] for k in [*keys, "extra"]} == {**dict.fromkeys([*keys, "extra"]), "id": 9}
    assert got[2]["error"].startswith("malformed JSON")
    # A key a record lacks is null; an object is its JSON text (one type per column).
    assert got[3]["time"] is None and got[3]["note"] is None
    assert json.loads(got[3]["extra"]) == {"a": [1, 2]}


def test_a_json_column_of_mixed_kinds_is_text_in_parquet(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    text = TINY_TICKETS[0][1]
    src = tmp_path / "in.jsonl"
    rows = [
        {"id": 1001, "text": text, "n": 1, "x": 1.5},
        {"id": "A7", "text": text, "n": None, "x": 2},
        {"id": None, "text": text, "n": 3, "x": None},
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out.parquet"
    label([src], tiny_model_dir, out, jobs=1)
    got = pq.read_table(out)
    assert got.schema.field("id").type == pa.string()
    assert got.column("id").to_pylist() == ["1001", "A7", None]
    assert got.schema.field("n").type == pa.int64()
    assert got.column("n").to_pylist() == [1, None, 3]
    assert got.schema.field("x").type == pa.float64()
    assert got.column("x").to_pylist() == [1.5, 2.0, None]


def test_parquet_and_csv_inputs_that_disagree_give_a_text_column(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    _typed_parquet(tmp_path / "a.parquet", 4)
    with open(tmp_path / "b.csv", "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([["id", "text"], ["B1", TINY_TICKETS[1][1]]])
    out = tmp_path / "out.parquet"
    label([tmp_path / "a.parquet", tmp_path / "b.csv"], tiny_model_dir, out, jobs=1)
    got = pq.read_table(out)
    assert got.schema.field("id").type == pa.string()
    assert got.column("id").to_pylist() == ["1000", "1001", "1002", "1003", "B1"]
    # Only the Parquet file has these: typed, and null for the CSV row.
    assert got.schema.field("urgent").type == pa.bool_()
    assert got.column("urgent").to_pylist()[-1] is None


def test_dask_writes_the_same_typed_output(tiny_model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    _typed_parquet(tmp_path / "in.parquet")
    label([tmp_path / "in.parquet"], tiny_model_dir, tmp_path / "local.parquet", jobs=1)
    label(
        [tmp_path / "in.parquet"], tiny_model_dir, tmp_path / "dask.parquet", engine="dask", jobs=1
    )
    assert pq.read_table(tmp_path / "dask.parquet").equals(
        pq.read_table(tmp_path / "local.parquet")
    )


def _interrupted(src: Path, model: Path, out: Path) -> None:
    def stop(stage: str, done: int, total: int) -> None:
        if done >= 5:
            raise Interrupt

    with pytest.raises(Interrupt):
        label([src], model, out, jobs=1, chunk_size=5, progress=stop)


def test_resume_gives_the_same_typed_output(tiny_model_dir: Path, tmp_path: Path) -> None:
    _typed_parquet(tmp_path / "in.parquet")
    src = tmp_path / "in.parquet"
    label([src], tiny_model_dir, tmp_path / "whole.parquet", jobs=1, chunk_size=5)
    out = tmp_path / "out.parquet"
    _interrupted(src, tiny_model_dir, out)
    result = label([src], tiny_model_dir, out, jobs=1, chunk_size=5, resume=True)
    assert result.resumed_chunks == 1
    assert pq.read_table(out).equals(pq.read_table(tmp_path / "whole.parquet"))


def test_a_text_part_is_not_resumed_into_a_typed_output(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A part as an older paidan wrote it (every input column text) under a manifest this one
    # accepts: refused, never joined with typed parts into one file of two schemas.
    _typed_parquet(tmp_path / "in.parquet")
    src = tmp_path / "in.parquet"
    out = tmp_path / "out.parquet"
    _interrupted(src, tiny_model_dir, out)
    part = tmp_path / "out.parquet.parts" / "part-000000.arrow"
    with open(part, "rb") as f:
        table = pa.ipc.open_file(f).read_all()
    text = pa.schema(
        [pa.field(f.name, pa.string()) if i < 6 else f for i, f in enumerate(table.schema)]
    )
    with open(part, "wb") as f, pa.ipc.new_file(f, text) as w:
        w.write_table(table.cast(text))
    with pytest.raises((TicketFileError, LabelError), match="columns"):
        label([src], tiny_model_dir, out, jobs=1, chunk_size=5, resume=True)
    assert not out.exists()


def test_jsonl_output_of_a_parquet_input(tiny_model_dir: Path, tmp_path: Path) -> None:
    text = TINY_TICKETS[0][1]
    pq.write_table(
        pa.table(
            {
                "id": pa.array([7, None, 9], pa.int64()),
                "text": [text, text, text],
                "time": pa.array(
                    [dt.datetime(2024, 1, 5, 8, 3, tzinfo=SH), None, None],
                    pa.timestamp("us", tz="Asia/Shanghai"),
                ),
                "x": [1.5, float("nan"), None],
            }
        ),
        tmp_path / "in.parquet",
    )
    out = tmp_path / "out.jsonl"
    label([tmp_path / "in.parquet"], tiny_model_dir, out, jobs=1)
    # Strict JSON (no NaN literal); a type JSON has no value for is text, as in CSV.
    got = [json.loads(line, parse_constant=pytest.fail) for line in out.read_text().splitlines()]
    assert [r["id"] for r in got] == [7, None, 9]
    assert [r["time"] for r in got] == ["2024-01-05 08:03:00+08:00", None, None]
    assert [r["x"] for r in got] == [1.5, None, None]
    label([tmp_path / "in.parquet"], tiny_model_dir, tmp_path / "out.parquet", jobs=1)
    x = pq.read_table(tmp_path / "out.parquet").column("x").to_pylist()
    assert x[0] == 1.5 and x[1] != x[1] and x[2] is None  # Parquet keeps the NaN


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_an_integer_of_more_digits_than_python_reads_is_text_as_one_beyond_int64(
    tiny_model_dir: Path, tmp_path: Path, suffix: str
) -> None:
    # json.loads refuses an integer of more than 4,300 digits (sys.get_int_max_str_digits) with a
    # ValueError, not a JSONDecodeError: one such id stopped the run before a row was labelled,
    # "cannot be read as JSONL: Exceeds the limit (4300 digits) …", naming no line.
    text = TINY_TICKETS[0][1]
    huge = "9" * 5_000
    records = [
        f'{{"id": 1, "text": "{text}"}}',
        f'{{"id": {huge}, "text": "{text}", "n": -{huge}}}',
    ]
    src = tmp_path / f"in{suffix}"
    body = "\n".join(records) + "\n" if suffix == ".jsonl" else "[" + ",\n".join(records) + "]"
    src.write_text(body, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = label([src], tiny_model_dir, out, jobs=1)
    got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert result.summary["rows"] == result.summary["labelled"] == 2
    assert [r["id"] for r in got] == ["1", huge]
    assert got[1]["n"] == "-" + huge
    assert got[1]["error"] is None and got[1]["pred_department"]
