"""Retraining: feedback deduplication, taxonomy mapping, the promotion rule, --if-new-feedback."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from model import registry
from model.artifact import sha256_file
from model.config import TrainingConfig
from tests.conftest import TINY_TICKETS, three_versions, write_tiny_csv
from training.compare import compare, markdown_comparison
from training.retrain import (
    MappingFileError,
    RetrainResult,
    apply_mapping,
    count_new_feedback,
    feedback_frame,
    inherited_mapping,
    merge_mappings,
    read_mapping,
    retrain,
    unmatched_renames,
)

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def fb(i: int, ticket: str | None, dept: str, minutes: int, text: str = "油烟扰民") -> dict:
    return {
        "id": i,
        "ticket_id": ticket,
        "title": "",
        "text": text,
        "department": dept,
        "category": "环境",
        "created_at": T0 + timedelta(minutes=minutes),
    }


def test_feedback_is_deduplicated_per_ticket_latest_decision_wins() -> None:
    records = [
        fb(1, "A", "执法", 0),
        fb(3, "A", "住建", 20),  # later decision on the same ticket
        fb(2, "B", "人社", 10),
        fb(4, None, "执法", 5, text="同一段文字"),
        fb(5, "", "住建", 30, text="同一段文字"),  # no id: the masked text is the key
    ]
    df, summary = feedback_frame(reversed(records))
    by_key = {(r.id or r.text): r.department for r in df.itertuples()}
    assert by_key == {"A": "住建", "B": "人社", "同一段文字": "住建"}
    assert (summary.records, summary.tickets, summary.superseded) == (5, 3, 2)
    assert summary.until == (T0 + timedelta(minutes=30)).isoformat()
    assert set(df["source"]) == {"feedback"}


def test_same_time_decisions_are_ordered_by_row_id() -> None:
    df, _ = feedback_frame([fb(9, "A", "人社", 0), fb(8, "A", "执法", 0)])
    assert df["department"].tolist() == ["人社"]


def test_feedback_ids_that_restart_each_day_name_their_tickets_by_text() -> None:
    # Live ticket numbers restart each day: decisions on "7" of two days are two tickets, trained
    # both (keyed by the id alone, one of them was called superseded); a second decision on the
    # same ticket (the same id and text) still supersedes the first.
    records = [
        fb(1, "7", "执法", 0, text="楼下烧烤店油烟很大"),
        fb(2, "7", "住建", 1440, text="电梯频繁故障困人"),
        fb(3, "7", "人社", 1450, text="电梯频繁故障困人"),  # re-decided
        fb(4, "8", "执法", 0, text="广场舞噪音扰民"),
        fb(5, " 8 ", "住建", 10, text="广场舞噪音扰民"),
    ]
    df, summary = feedback_frame(records)
    decisions = sorted(zip(df["id"].str.strip(), df["text"], df["department"], strict=True))
    assert decisions == [
        ("7", "楼下烧烤店油烟很大", "执法"),
        ("7", "电梯频繁故障困人", "人社"),
        ("8", "广场舞噪音扰民", "住建"),
    ]
    assert (summary.records, summary.tickets, summary.superseded) == (5, 3, 2)
    assert summary.ambiguous == {"7"}
    assert summary.ambiguous_example == (
        "e.g. '7': feedback data row 1, feedback data row 2, feedback data row 3"
    )
    assert summary.to_dict()["ids_naming_several_texts"] == 1


def write_mapping(path: Path, rows: list[list[str]], header: list[str]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_mapping_file_follows_chains_and_respects_head(tmp_path: Path) -> None:
    path = write_mapping(
        tmp_path / "m.csv",
        [
            ["银保监局", "金融监管局", ""],
            ["旧局", "银保监局", "department"],
            ["甲", "乙", "category"],
        ],
        ["old", "new", "head"],
    )
    m = read_mapping(path)
    assert m["department"] == {"银保监局": "金融监管局", "旧局": "金融监管局"}
    assert m["category"] == {"银保监局": "金融监管局", "甲": "乙"}
    df = pd.DataFrame({"department": ["旧局", "银保监局", "人社"], "category": ["甲", "丙", "甲"]})
    counts = apply_mapping(df, m)
    assert df["department"].tolist() == ["金融监管局", "金融监管局", "人社"]
    assert df["category"].tolist() == ["乙", "丙", "乙"]
    assert counts == {"department": {"旧局": 1, "银保监局": 1}, "category": {"甲": 2}}


def test_a_mapping_file_in_gb18030_with_its_byte_order_mark_is_read(tmp_path: Path) -> None:
    # Refused as having no column old: its first column was '\ufeffold'.
    path = tmp_path / "m.csv"
    path.write_bytes(b"\x84\x31\x95\x33" + "old,new\r\n银保监局,金融监管局\r\n".encode("gb18030"))
    assert read_mapping(path)["department"] == {"银保监局": "金融监管局"}


def test_mapping_rows_with_cells_past_the_header_are_read(tmp_path: Path) -> None:
    # Excel writes a trailing comma; csv.DictReader puts such cells in a list under the key None.
    path = tmp_path / "m.csv"
    path.write_text("old,new\r\n银保监局,金融监管局,\r\n旧局,新局,x,y\r\n", encoding="utf-8")
    m = read_mapping(path)
    assert m["department"] == {"银保监局": "金融监管局", "旧局": "新局"}


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        ([["a", "b"]], ["from", "to"], "old,new"),
        ([["a", ""]], ["old", "new"], "line 2"),
        ([["a", "b"], ["b", "a"]], ["old", "new"], "cycle"),
        ([["a", "b"], ["a", "c"]], ["old", "new"], "both"),
        ([["a", "b", "channel"]], ["old", "new", "head"], "head must be"),
        ([["a", "a"], ["a", "b"]], ["old", "new"], "both"),
    ],
)
def test_bad_mapping_files_are_refused_with_a_reason(
    tmp_path: Path, rows: list[list[str]], header: list[str], message: str
) -> None:
    with pytest.raises(MappingFileError, match=message):
        read_mapping(write_mapping(tmp_path / "m.csv", rows, header))


@pytest.mark.parametrize(
    "rows",
    [
        [
            ["网格员李四１３９８７６５４３２１", "人社"],
            ["人社", "网格员李四１３９８７６５４３２１"],
        ],
        [["网格员李四13987654321", "人社"], ["人社", "住建"], ["住建", "网格员李四13987654321"]],
    ],
)
def test_a_mapping_cycle_quotes_its_label_masked(tmp_path: Path, rows: list[list[str]]) -> None:
    # The error goes to the terminal and the nightly retrain log: a phone number a dispatcher
    # typed into a label was quoted as written (the "mapped to both" error masked it).
    with pytest.raises(MappingFileError) as e:
        read_mapping(write_mapping(tmp_path / "m.csv", rows, ["old", "new"]))
    said = str(e.value)
    assert "cycle through" in said and "[手机号]" in said, said
    assert "13987654321" not in said and "１３９８７６５４３２１" not in said, said


def test_a_mapping_renames_a_label_with_a_number_as_the_history_reads_it(tmp_path: Path) -> None:
    # The history's labels are read masked (网格员李四[手机号]), as feedback stores them: a mapping
    # that names the label as the history spells it must still find it, in either width.
    from model.tickets import read_tickets
    from tests.conftest import FULL_WIDTH_LABEL, write_tickets_csv

    data = write_tickets_csv(
        tmp_path / "t.csv", [(t, x, FULL_WIDTH_LABEL, c) for t, x, _, c in TINY_TICKETS[:3]]
    )
    df = read_tickets([data])
    assert set(df["department"]) == {"网格员李四[手机号]"}
    for old in (FULL_WIDTH_LABEL, "网格员李四13987654321"):
        mapping = read_mapping(write_mapping(tmp_path / "m.csv", [[old, "人社"]], ["old", "new"]))
        renamed = df.copy()
        apply_mapping(renamed, mapping)
        assert set(renamed["department"]) == {"人社"}, old


def test_a_mapping_renames_a_label_written_with_spaces_around_it(tmp_path: Path) -> None:
    # " 执法 " was read as written (only a label with a number to mask was trimmed), so retrain's
    # --mapping 执法 → 城管 left those rows as 执法, which training then learnt trimmed beside 城管,
    # and the mapping row was said to match no label when every row was spaced.
    from model.tickets import read_tickets
    from tests.conftest import write_tickets_csv

    spaced = [(t, x, f" {d} ", f"{c}\u3000") for t, x, d, c in TINY_TICKETS[6:9]]
    df = read_tickets([write_tickets_csv(tmp_path / "t.csv", spaced)])
    assert set(df["department"]) == {"执法"} and set(df["category"]) == {"环境", "城建"}
    mapping = read_mapping(write_mapping(tmp_path / "m.csv", [["执法", "城管"]], ["old", "new"]))
    assert apply_mapping(df, mapping) == {"department": {"执法": 3}}
    assert set(df["department"]) == {"城管"}


def test_a_mapping_cycle_names_the_lines_that_write_it(tmp_path: Path) -> None:
    # "the department mapping has a cycle through 'a'" named no line, where every other refusal
    # of a mapping file does.
    rows = [["x", "y"], ["a", "b"], ["k", "l"], ["b", "c"], ["c", "a"]]
    with pytest.raises(MappingFileError) as e:
        read_mapping(write_mapping(tmp_path / "m.csv", rows, ["old", "new"]))
    said = str(e.value)
    assert said.startswith(f"{tmp_path / 'm.csv'} lines 3, 5, 6: the department mapping"), said
    assert "renamed, not renamed back" in said


def test_mapping_files_as_spreadsheets_write_them(tmp_path: Path) -> None:
    # Excel's "CSV" in China is GB18030; a full taxonomy table lists unchanged labels too.
    gb = tmp_path / "m.csv"
    gb.write_bytes("old,new\n市公安局,市公安局\n银保监局,金融监管局\n".encode("gb18030"))
    assert read_mapping(gb) == {
        "department": {"银保监局": "金融监管局"},
        "category": {"银保监局": "金融监管局"},
    }
    tsv = tmp_path / "m.tsv"
    tsv.write_text("old\tnew\thead\n银保监局\t金融监管局\tdepartment\n", encoding="utf-8-sig")
    assert read_mapping(tsv) == {"department": {"银保监局": "金融监管局"}}


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "is empty"), (b"old,new\n\xff\xfe\xff\n", "encoding")],
)
def test_unreadable_mapping_files_name_the_file(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(content)
    with pytest.raises(MappingFileError, match=message) as e:
        read_mapping(path)
    assert str(path) in str(e.value)


def test_a_mapping_given_now_goes_on_top_of_the_inherited_one() -> None:
    inherited = {"department": {"A": "B", "X": "Y"}, "category": {"环保": "环境"}}
    given = {"department": {"B": "C", "X": "Z", "N": "M"}}
    assert merge_mappings(inherited, given) == {
        "department": {"A": "C", "X": "Z", "B": "C", "N": "M"},  # chain followed, X overridden
        "category": {"环保": "环境"},
    }
    assert merge_mappings(inherited, None) == inherited
    # Renaming the new name back undoes the rename: A stays A, B rows become A.
    assert merge_mappings({"department": {"A": "B"}}, {"department": {"B": "A"}}) == {
        "department": {"B": "A"}
    }


def test_a_recorded_mapping_of_another_shape_is_refused_naming_the_file(tmp_path: Path) -> None:
    meta = {"training_data": {"mapping": {"department": {"执法": "城管执法"}}}}
    assert inherited_mapping(tmp_path, meta) == {"department": {"执法": "城管执法"}}
    assert inherited_mapping(tmp_path, {"training_data": {}}) == {}
    for bad in (["执法"], {"dept": {"a": "b"}}, {"department": {"a": 1}}):
        with pytest.raises(ValueError, match=r"metadata\.json: training_data\.mapping"):
            inherited_mapping(tmp_path, {"training_data": {"mapping": bad}})


def test_mapping_rows_that_match_nothing_are_named() -> None:
    df = pd.DataFrame(
        {
            "department": ["人社", "住建"],
            "category": ["环境", "城建"],
            "co_departments": ["", "金融监管分局"],
        }
    )
    given = {
        "department": {"金融监管份局": "金融监管局", "金融监管分局": "金融监管局", "B": "C"},
        "category": {"金融监管份局": "金融监管局", "环境": "生态环境"},
    }
    # B occurs only as what an inherited rename makes of 人社: that matches.
    assert unmatched_renames(given, [df], {"department": {"人社": "B"}}) == [
        ("department or category", "金融监管份局", "金融监管局")
    ]
    assert unmatched_renames({}, [df], {"department": {"gone": "B"}}) == []


def scores(version: str, dept: dict[str, float], labels: list[str] | None = None) -> dict:
    per = {k: {"precision": v, "recall": v, "f1": v, "support": 10} for k, v in dept.items()}
    return {
        "model_version": version,
        "n": 10 * len(dept),
        "heads": {
            "department": {
                "n": 10 * len(dept),
                "macro_f1": sum(dept.values()) / len(dept),
                "accuracy": sum(dept.values()) / len(dept),
                "labels": labels or sorted(dept),
                "per_class": per,
            }
        },
    }


def test_compare_accepts_a_drop_within_one_point() -> None:
    report = compare(scores("old", {"a": 0.90, "b": 0.80}), scores("new", {"a": 0.89, "b": 0.795}))
    assert not report["refused"]
    assert report["heads"]["department"]["macro_f1_delta_points"] == pytest.approx(-0.75)


def test_compare_refuses_a_drop_and_names_the_class() -> None:
    report = compare(scores("old", {"a": 0.90, "b": 0.80}), scores("new", {"a": 0.90, "b": 0.70}))
    assert report["refused"]
    assert "department macro-F1 drops 5.0 points" in report["reasons"][0]
    assert "b -10.0" in report["reasons"][0]
    md = markdown_comparison(report)
    assert "REFUSED" in md and "| b | 10 | 0.800 | 0.700 | -10.0 |" in md


def test_the_markdown_verdict_says_what_was_done_with_the_challenger(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    # `models promote V --force` made a refused challenger current, and the report kept in
    # reports/ said "Promotion REFUSED." alone; `retrain` without --promote-if-better promotes
    # nothing, and its report said "Promotion accepted.": each read as the other outcome.
    import shutil

    from training.compare import promote_checked
    from training.retrain import freeze_eval_files

    root = tmp_path / "models"
    for version in ("v1", "v2"):
        shutil.copytree(tiny_model_dir, root / version)
    registry.set_current(root, "v1")
    freeze_eval_files(root, [write_tiny_csv(tmp_path / "tiny.csv")])

    def verdict(decision: Any) -> str:
        md = decision.report_paths[1].read_text(encoding="utf-8")
        return next(line for line in md.splitlines() if line.startswith("**"))

    # The tiny model was trained on the tiny corpus: every challenger is refused for having seen it.
    refused = promote_checked(root, "v2", apply=False)
    assert refused.refused and not refused.promoted
    assert verdict(refused) == "**Promotion would be REFUSED** (nothing was promoted)."
    forced = promote_checked(root, "v2", force=True)
    assert forced.promoted and registry.current_version(root) == "v2"
    assert verdict(forced) == (
        "**Promotion REFUSED by the rule, and forced past it (--force): v2 was made current.**"
    )
    registry.set_current(root, "v1")
    report = compare(scores("old", {"a": 0.9}), scores("new", {"a": 0.9}))
    assert "**Promotion accepted.**" in markdown_comparison(report)  # a report of before
    allowed = markdown_comparison({**report, "applied": False})
    assert (
        "**Promotion accepted by the rule** (not promoted: `paidan models promote new`" in allowed
    )


def test_a_drop_just_over_the_limit_is_not_written_as_one_within_it() -> None:
    # A drop of 1.02 points was refused as "drops 1.0 points (0.855 → 0.845; at most 1 allowed)":
    # the reason read as a drop the rule allows.
    report = compare(scores("old", {"a": 0.9104, "b": 0.80}), scores("new", {"a": 0.89, "b": 0.80}))
    assert report["refused"]
    [reason] = report["reasons"]
    assert reason.startswith(
        "department macro-F1 drops 1.02 points (0.8552 → 0.8450; at most 1 allowed)"
    ), reason
    # A drop well over it keeps one decimal.
    report = compare(scores("old", {"a": 0.90, "b": 0.80}), scores("new", {"a": 0.90, "b": 0.70}))
    assert report["reasons"][0].startswith("department macro-F1 drops 5.0 points (0.850 → 0.800;")


def test_the_markdown_comparison_counts_a_frozen_set_of_one_ticket_as_one() -> None:
    # "Frozen evaluation set: 1 tickets" headed the report.
    champion, challenger = scores("old", {"a": 0.9}), scores("new", {"a": 0.9})
    challenger["n"] = 1
    md = markdown_comparison(compare(champion, challenger))
    assert "Frozen evaluation set: 1 ticket (SHA-256" in md


def test_the_markdown_comparison_writes_labels_as_text() -> None:
    # A label with a bar split its per-class row into a cell too many; Markdown or HTML in one
    # was rendered, in the table and in the reasons that name the labels lost or dropping.
    from tests.training.test_train import ODD_LABELS, rendered_cells

    old = {label: 0.9 for label in [*ODD_LABELS, "人社"]}
    new = {ODD_LABELS[0]: 0.5, ODD_LABELS[1]: 0.5, "人社": 0.9}
    report = compare(scores("old", old), scores("new_1", new, labels=sorted(new)))
    assert report["refused"]
    rows, html = rendered_cells(markdown_comparison(report))
    per_class = [r for r in rows if r and r[0] in old]
    assert sorted(r[0] for r in per_class) == sorted(old)
    assert all(len(r) == 5 for r in per_class), per_class
    assert "<img" not in html and 'href="http://evil.example' not in html
    assert "Challenger new_1 against champion old" in html
    assert "lost label(s) the champion had: &lt;img src=x onerror=alert(1)&gt;" in html


def test_the_markdown_comparison_keeps_its_own_code_spans() -> None:
    # md_text on whole reasons escaped the commands they advise: \`paidan retrain\` was shown
    # with literal backticks; a label in the same reasons is still escaped.
    from tests.training.test_train import rendered_cells

    head = {"n": 100, "macro_f1": 0.8, "accuracy": 0.8, "labels": ["a`b|c", "人社"]}
    champion = {"n": 100, "heads": {"department": head | {"per_class": {}}}}
    challenger = {
        "n": 100,
        "seen_eval_rows": 90,
        "heads": {"department": head | {"labels": ["人社"], "per_class": {}}},
    }
    report = compare(
        champion,
        challenger,
        champion_heads=["department", "category"],
        challenger_heads=["department", "category"],
    )
    md = markdown_comparison(report)
    assert "(`paidan retrain` leaves them out)" in md
    assert "lost label(s) the champion had: a\\`b\\|c" in md
    assert "\\`paidan" not in md
    _, html = rendered_cells(md)
    assert "<code>paidan retrain</code>" in html


def test_compare_refuses_a_lost_label_even_when_f1_improves() -> None:
    report = compare(
        scores("old", {"a": 0.5, "b": 0.5}, labels=["a", "b", "c"]),
        scores("new", {"a": 0.9, "b": 0.9}, labels=["a", "b"]),
    )
    assert report["refused"]
    assert report["lost_labels"] == {"department": ["c"]}


def test_a_champion_label_listing_departments_with_a_comma_is_no_label_lost() -> None:
    # A champion trained before 人社、住建 was read as a joint dispatch learnt it as a department;
    # the challenger learns its lead, and the promotion was refused for a "lost" label.
    # (The frozen set's 人社、住建 tickets are read as led by 人社 now, so no row is "a、b".)
    champion = scores("old", {"a": 0.9, "b": 0.9}, labels=["a", "a、b", "b"])
    challenger = scores("new", {"a": 0.9, "b": 0.9})
    report = compare(champion, challenger)
    assert not report["refused"], report["reasons"]
    assert report["lost_labels"] == {}
    assert any("'a、b'" in n and "no label lost" in n for n in report["notes"])
    # One that is not such a list is still lost.
    champion = scores("old", {"a": 0.9, "b": 0.9}, labels=["a", "a、c", "b"])
    assert compare(champion, challenger)["lost_labels"] == {"department": ["a、c"]}


def test_frozen_tickets_listing_departments_with_a_comma_are_scored_by_their_lead(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from model.artifact import load_router
    from training.compare import score_router

    rows = pd.read_csv(write_tiny_csv(tmp_path / "tiny.csv"), dtype=str)
    listed = rows.copy()
    listed.loc[0, "department"] = "人社、住建"  # a joint dispatch led by 人社, written with 、
    listed.loc[1, "department"] = f"{rows.loc[1, 'department']}\n住建"  # on two lines of a cell
    assert rows.loc[0, "department"] == "人社"
    router, _ = load_router(tiny_model_dir)
    got, want = score_router(router, listed), score_router(router, rows)
    assert got["heads"]["department"] == want["heads"]["department"]
    # Scores stamped "lead+lists" (、 and commas only) are computed again.
    assert got["department_truth"] == "lead+lists2"
    assert listed["department"].iloc[0] == "人社、住建"  # the frozen set itself is not changed


def test_compare_reads_both_models_over_the_same_labels() -> None:
    # Each model's own macro-F1 is over the true labels it knows. A challenger that learnt a
    # department the champion answers wrong throughout (F1 0) read as 10 points worse (0.9 → 0.8),
    # as the champion's own figure left that department out: over the same labels it is better.
    champion = scores("old", {"a": 0.9, "b": 0.9})
    challenger = scores("new", {"a": 0.9, "b": 0.9, "n": 0.6})
    report = compare(champion, challenger)
    head = report["heads"]["department"]
    assert not report["refused"], report["reasons"]
    assert head["champion"]["macro_f1"] == pytest.approx(0.6)
    assert head["challenger"]["macro_f1"] == pytest.approx(0.8)
    assert head["macro_f1_delta_points"] == pytest.approx(20.0)
    # A label neither knows (a misspelling in the frozen set) is left out for both, and named.
    typo = {"unknown_labels": {"b局2": 3}}
    champion["heads"]["department"] |= typo
    challenger["heads"]["department"] |= typo
    same = compare(champion, challenger)
    assert same["heads"]["department"]["macro_f1_delta_points"] == pytest.approx(20.0)
    assert (
        "department: 3 frozen tickets have 1 label neither model knows, scored wrong for both in "
        "accuracy and left out of macro-F1: 'b局2' (3 rows)"
    ) in same["notes"]
    # Scores stored before had such a label as a per-class row of F1 0 in their macro-F1.
    old = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 3}
    for who in (champion, challenger):
        h = who["heads"]["department"]
        h.pop("unknown_labels")
        h["per_class"]["b局2"] = old
        h["macro_f1"] = sum(m["f1"] for m in h["per_class"].values()) / len(h["per_class"])
    stored = compare(champion, challenger)
    assert stored["heads"]["department"]["champion"]["macro_f1"] == pytest.approx(0.6)
    assert stored["heads"]["department"]["challenger"]["macro_f1"] == pytest.approx(0.8)
    assert "b局2" not in [r["label"] for r in stored["heads"]["department"]["per_class"]]
    assert any("'b局2' (3 rows)" in n for n in stored["notes"])


def test_scores_leave_a_label_the_model_does_not_know_out_of_macro_f1_as_evaluate_does(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    # A misspelt department in the frozen set was a class of F1 0 in both models' macro-F1,
    # which shrank the difference the promotion rule reads.
    import shutil

    from training.compare import ensure_scores
    from training.evaluate import evaluate
    from training.retrain import freeze_eval

    rows = pd.read_csv(write_tiny_csv(tmp_path / "tiny.csv"), dtype=str)
    typos = rows.head(3).assign(department=["人社局2", "人社局2", "住建 局"])
    data = tmp_path / "frozen.csv"
    pd.concat([rows, typos]).to_csv(data, index=False)
    root = tmp_path / "models"
    shutil.copytree(tiny_model_dir, root / "v1")
    freeze_eval(root, pd.read_csv(data, dtype=str), "test")
    got = ensure_scores(root, "v1")["heads"]["department"]
    want = evaluate(root / "v1", [data])["department"]
    assert got["unknown_labels"] == want["unknown_labels"] == {"人社局2": 2, "住建 局": 1}
    assert got["macro_f1"] == pytest.approx(want["macro_f1"])
    assert got["accuracy"] == pytest.approx(want["accuracy"])
    assert not {"人社局2", "住建 局"} & set(got["per_class"])
    scored = [m["f1"] for m in got["per_class"].values() if m["support"]]
    assert got["macro_f1"] == pytest.approx(sum(scored) / len(scored))
    # Scores stored before (every true label a class of macro-F1) are computed again.
    stale = registry.read_scores(root, "v1")
    assert stale is not None
    stale.pop("f1_labels")
    registry.write_scores(root, "v1", stale | {"heads": {}})
    assert ensure_scores(root, "v1")["heads"]["department"] == got


def test_a_frozen_set_of_labels_no_model_knows_has_an_undefined_macro_f1_downstream(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    # Its departments all another taxonomy's: scored 0.0 (a measurement of nothing), it is
    # None, and the comparison, the promotion rule and models list read None without failing.
    import shutil

    from typer.testing import CliRunner

    from paidan.cli import app
    from training.compare import ensure_scores
    from training.retrain import freeze_eval

    rows = pd.read_csv(write_tiny_csv(tmp_path / "tiny.csv"), dtype=str)
    other = rows.assign(department="外市" + rows["department"])
    root = tmp_path / "models"
    shutil.copytree(tiny_model_dir, root / "v1")
    shutil.copytree(tiny_model_dir, root / "v2")
    freeze_eval(root, other, "test")
    a, b = ensure_scores(root, "v1"), ensure_scores(root, "v2")
    assert a["heads"]["department"]["macro_f1"] is None
    assert isinstance(a["heads"]["category"]["macro_f1"], float)
    report = compare(a, b, champion_name="v1", challenger_name="v2")
    head = report["heads"]["department"]
    assert head["champion"]["macro_f1"] is None and head["macro_f1_delta_points"] is None
    # (Refused all the same, as the challenger was trained on these tickets: not for macro-F1.)
    assert not [r for r in report["reasons"] if "macro-F1" in r], report["reasons"]
    assert any("department: macro-F1 is undefined" in n for n in report["notes"])
    assert "| department | undefined | undefined | – |" in markdown_comparison(report)
    # As retrain prints the comparison.
    from types import SimpleNamespace

    from paidan.cli import _print_decision

    decision = SimpleNamespace(
        comparison=report, version="v2", champion="v1", reasons=[], refused=False,
        report_paths=[], promoted=False, forced=False, sample_champion=False,
    )  # fmt: skip
    _print_decision(decision)
    assert registry.list_versions(root)[0].metrics["department_macro_f1"] is None
    env = {"PAIDAN_MODEL_ROOT": str(root), "COLUMNS": "200"}
    r = CliRunner().invoke(app, ["models", "list"], env=env)
    assert r.exit_code == 0, r.output
    assert "undefined" in r.output


def test_models_list_shows_scores_of_an_older_rule_as_stale_until_rescored(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    # After an upgrade, the versions no promote had compared kept the figures of the old rule
    # (every misspelling a class of F1 0) beside the new rule's: the same model files listed at
    # 0.559 and 0.643.
    import json
    import shutil

    from typer.testing import CliRunner

    from paidan.cli import app
    from training.compare import ensure_scores
    from training.retrain import freeze_eval

    rows = pd.read_csv(write_tiny_csv(tmp_path / "tiny.csv"), dtype=str)
    typos = rows.head(3).assign(department=["人社局2", "人社局2", "住建 局"])
    root = tmp_path / "models"
    for v in ("v1", "v2"):
        shutil.copytree(tiny_model_dir, root / v)
    freeze_eval(root, pd.concat([rows, typos]), "test")
    now = ensure_scores(root, "v1")["heads"]["department"]["macro_f1"]
    old = ensure_scores(root, "v2")
    old.pop("f1_labels")  # stored by the paidan from before
    old["heads"]["department"]["macro_f1"] = now / 2
    registry.write_scores(root, "v2", old)
    env = {"PAIDAN_MODEL_ROOT": str(root), "COLUMNS": "200"}
    r = CliRunner().invoke(app, ["models", "list", "--json"], env=env)
    assert r.exit_code == 0, r.output
    listed = {i["version"]: i for i in json.loads(r.output)}
    assert listed["v1"]["metrics"]["department_macro_f1"] == pytest.approx(now)
    assert listed["v2"]["metrics"] == {} and listed["v2"]["stale"]
    assert not listed["v1"]["stale"]
    r = CliRunner().invoke(app, ["models", "list"], env=env)
    assert r.exit_code == 0, r.output
    assert "stale" in r.output and "paidan models list --rescore" in r.output
    assert f"{now / 2:.3f}" not in r.output
    r = CliRunner().invoke(app, ["models", "list", "--rescore", "--json"], env=env)
    assert r.exit_code == 0, r.output
    listed = {i["version"]: i for i in json.loads(r.output)}
    assert listed["v2"]["metrics"]["department_macro_f1"] == pytest.approx(now)
    assert not listed["v2"]["stale"]
    # Once rescored, plain listing shows the new figure, with no note.
    r = CliRunner().invoke(app, ["models", "list"], env=env)
    assert "stale" not in r.output and r.output.count(f"{now:.3f}") == 2


def test_compare_does_not_trust_a_champion_that_saw_the_frozen_set() -> None:
    champion = scores("old", {"a": 1.0, "b": 1.0}) | {"seen_eval_rows": 20}
    report = compare(champion, scores("new", {"a": 0.8, "b": 0.8}))
    assert not report["refused"]
    assert "trained on 20 of the 20" in report["notes"][0]


def test_compare_refuses_a_challenger_that_saw_the_frozen_set() -> None:
    # Trained with `paidan train` on the history the set was frozen from: its figures flatter it.
    challenger = scores("new", {"a": 1.0, "b": 1.0}) | {"seen_eval_rows": 18}
    report = compare(scores("old", {"a": 0.8, "b": 0.8}), challenger)
    assert report["refused"]
    assert report["challenger_seen_eval_rows"] == 18
    (reason,) = report["reasons"]
    assert "the challenger was trained on 18 of the 20 frozen evaluation tickets" in reason
    # A couple of exact repeats (the same complaint filed twice) is no leakage.
    ok = compare(scores("old", {"a": 0.8, "b": 0.8}), challenger | {"seen_eval_rows": 2})
    assert not ok["refused"] and ok["reasons"] == []


def test_compare_refuses_a_head_the_models_have_but_the_frozen_set_cannot_score() -> None:
    # Scores carry only the department head: the frozen set has no category labels.
    champion, challenger = scores("old", {"a": 0.8, "b": 0.8}), scores("new", {"a": 0.8, "b": 0.8})
    both = ("department", "category")
    report = compare(champion, challenger, champion_heads=both, challenger_heads=both)
    assert report["refused"] and report["unscored_heads"] == ["category"]
    (reason,) = report["reasons"]
    assert reason.startswith("category: not compared: the frozen evaluation set has no category")
    assert "both models have a category head" in reason
    assert "freeze-eval DATA --force" in reason and "--force" in reason
    # Only the challenger has one: its new head is not checked either.
    only_new = compare(champion, challenger, champion_heads=["department"], challenger_heads=both)
    assert only_new["refused"] and "the challenger has a category head" in only_new["reasons"][0]
    # Only the champion has one: the challenger lost it.
    lost = compare(champion, challenger, champion_heads=both, challenger_heads=["department"])
    assert lost["reasons"] == [
        "category: the challenger has no category head; the champion has one"
    ]
    # Neither has one (a department-only deployment): nothing to check, accepted.
    one = ["department"]
    assert not compare(champion, challenger, champion_heads=one, challenger_heads=one)["refused"]


# Tickets none of the tiny models was trained on, so no figure is taken for inflated.
UNSEEN = [
    ("工资拖欠", "老板欠了我们两个月的工钱，打电话也不接", "人社", "劳动保障"),
    ("夜间施工", "工地半夜还在打桩，吵得孩子睡不着觉", "执法", "环境"),
    ("电梯停运", "小区电梯停了一个星期，物业说没钱修", "住建", "城建"),
]


def write_unseen(path: Path, departments: bool) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "title", "text", "category"] + (["department"] if departments else []))
        for i, (title, text, dept, cat) in enumerate(UNSEEN, 1):
            w.writerow([f"U{i}", title, text, cat] + ([dept] if departments else []))
    return path


def test_a_frozen_set_without_department_labels_is_warned_of_and_cannot_wave_a_challenger_through(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    # freeze-eval took a category-only set without a word, and promote then compared the category
    # head alone: a challenger with scrambled departments was promoted without --force.
    from typer.testing import CliRunner

    from paidan.cli import EXIT_REFUSED, app

    root = three_versions(tiny_model_dir, tmp_path)
    registry.set_current(root, "v1", record=False)
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    runner = CliRunner()
    r = runner.invoke(
        app, ["models", "freeze-eval", str(write_unseen(tmp_path / "c.csv", False))], env=env
    )
    assert r.exit_code == 0, r.output
    assert (
        "the set has no department labels: no column 'department' in c.csv, which has columns "
        "'id', 'title', 'text', 'category', but the current model v1 has a department head"
        in " ".join(r.output.split())
    ), r.output
    assert "category labels" not in r.output
    r = runner.invoke(app, ["models", "promote", "v2"], env=env)
    assert r.exit_code == EXIT_REFUSED, r.output
    assert (
        "department: not compared: the frozen evaluation set has no department labels" in r.output
    ), r.output
    assert registry.current_version(root) == "v1"
    report = (root / registry.REPORTS_DIR / "v2-vs-v1.json").read_text(encoding="utf-8")
    assert '"unscored_heads": [\n    "department"\n  ]' in report
    r = runner.invoke(app, ["models", "promote", "v2", "--force"], env=env)
    assert r.exit_code == 0 and registry.current_version(root) == "v2", r.output
    # A set with both labels: no warning, and the (identical) copy is compared on both heads.
    data = write_unseen(tmp_path / "both.csv", True)
    r = runner.invoke(app, ["models", "freeze-eval", str(data), "--force"], env=env)
    assert r.exit_code == 0 and "warning" not in r.output, r.output
    # The copy is no better beyond noise: the fixed margin, which it passes, is the rule checked here.
    r = runner.invoke(app, ["models", "promote", "v3", "--promotion-rule", "margin"], env=env)
    assert r.exit_code == 0 and registry.current_version(root) == "v3", r.output


def test_freeze_eval_on_a_root_without_a_model_says_so(tmp_path: Path) -> None:
    # Freezing before the first model is allowed, but a mistyped root is then a new registry.
    from typer.testing import CliRunner

    from paidan.cli import app

    root = tmp_path / "modles"
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    data = write_unseen(tmp_path / "c.csv", True)
    r = CliRunner().invoke(app, ["models", "freeze-eval", str(data)], env=env)
    assert r.exit_code == 0, r.output
    assert f"no model under {root} yet" in r.output and "warning" not in r.output, r.output


def test_freeze_eval_on_a_root_without_a_model_warns_of_a_set_without_a_heads_labels(
    tmp_path: Path,
) -> None:
    # With no model to compare with, a set without department labels (the file's department
    # column under another name) was frozen with a note alone: every challenger with a department
    # head trained there later was refused until the set was frozen again.
    from typer.testing import CliRunner

    from paidan.cli import app

    root = tmp_path / "models"
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    data = write_unseen(tmp_path / "c.csv", True)
    renamed = tmp_path / "renamed.csv"
    renamed.write_text(
        data.read_text(encoding="utf-8").replace("department", "承办单位", 1), encoding="utf-8"
    )
    r = CliRunner().invoke(app, ["models", "freeze-eval", str(renamed)], env=env)
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert (
        "warning: the set has no department labels: no column 'department' in renamed.csv, which "
        "has columns 'id', 'title', 'text', 'category', '承办单位' ('承办单位' looks like the "
        "department: --department-col 承办单位)" in said
    ), said
    assert (
        "a model with a department head trained under this root will have every challenger "
        "refused (unless --force) until a set with department labels is frozen" in said
    ), said
    # Frozen all the same: a category-only deployment has no department labels to freeze.
    assert registry.frozen_eval_info(root)["label_rows"] == {"department": 0, "category": 3}
    # With the column mapped, the set has both.
    args = ["models", "freeze-eval", str(renamed), "--force", "--department-col", "承办单位"]
    r = CliRunner().invoke(app, args, env=env)
    assert r.exit_code == 0 and "warning" not in r.output, r.output
    assert registry.frozen_eval_info(root)["label_rows"] == {"department": 3, "category": 3}


def test_the_promotion_report_names_the_versions_as_models_list_does(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    # It named both sides by their metadata id: a copied model read as compared with itself, under
    # names `models list` and `promote` never show.
    import json

    from training.compare import promote_checked
    from training.retrain import freeze_eval

    root = three_versions(tiny_model_dir, tmp_path)
    freeze_eval(root, pd.read_csv(write_unseen(tmp_path / "u.csv", True), dtype=str), "test")
    registry.set_current(root, "v1", record=False)
    decision = promote_checked(root, "v2", rule="margin")  # a copy: within noise by the bootstrap
    assert decision.promoted, decision.reasons
    model_id = json.loads((tiny_model_dir / "metadata.json").read_text(encoding="utf-8"))["version"]
    report = json.loads((root / registry.REPORTS_DIR / "v2-vs-v1.json").read_text(encoding="utf-8"))
    assert (report["challenger"], report["champion"]) == ("v2", "v1")
    assert report["challenger_model_version"] == report["champion_model_version"] == model_id
    md = (root / registry.REPORTS_DIR / "v2-vs-v1.md").read_text(encoding="utf-8").splitlines()
    assert md[0] == "# Challenger v2 against champion v1"
    assert f"challenger {model_id}, champion {model_id}" in md[2]


def test_count_new_feedback_after_cutoff() -> None:
    records = [fb(i, str(i), "人社", i) for i in range(10)]
    assert count_new_feedback(records, T0 + timedelta(minutes=6, seconds=30)) == 3
    assert count_new_feedback(records, None) == 10


def test_frozen_set_leaves_out_rows_without_text_or_label_and_counts_them(tmp_path: Path) -> None:
    from training.retrain import freeze_eval

    rows = pd.DataFrame(
        {
            "id": ["1", "2", "3", "4"],
            "title": ["", "", "_x000D_", "欠薪"],
            "text": ["", "拖欠工资", "\u200b", "老板不发工资"],
            "department": ["人社", "", "人社", "人社"],
            "category": ["劳动", "", "", ""],
        }
    )
    info = freeze_eval(tmp_path, rows, "test")
    assert info["rows"] == 1
    assert info["left_out"] == {"without_label": 1, "without_text": 2, "repeated": 0}
    assert pd.read_parquet(registry.frozen_eval_path(tmp_path))["id"].tolist() == ["4"]
    # Nothing usable: refused, saying why, and nothing replaced.
    with pytest.raises(ValueError, match="no row with both a text and a label"):
        freeze_eval(tmp_path, rows.iloc[:3], "test", force=True)
    assert registry.frozen_eval_info(tmp_path)["rows"] == 1


@pytest.fixture
def tiny_root(tmp_path: Path, tiny_config: TrainingConfig) -> tuple[Path, Path]:
    """A registry whose current model was trained on the tiny corpus minus a frozen set."""
    from training.retrain import freeze_eval
    from training.train import train

    root = tmp_path / "models"
    data = write_tiny_csv(tmp_path / "tiny.csv")
    df = pd.read_csv(data, dtype=str)
    held = df.iloc[[0, 6, 12]]  # one ticket per department
    freeze_eval(root, held, "test")
    train_csv = tmp_path / "train.csv"
    df.drop(index=held.index).to_csv(train_csv, index=False)
    result = train([train_csv], None, config=tiny_config, model_root=root)
    registry.promote(root, result.router.version)
    return root, train_csv


def test_a_promotion_compared_with_a_champion_that_was_replaced_meanwhile_is_refused(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The comparison runs outside the registry lock: another `models promote` may move current
    # while it runs. The pointer moves only if it still names the champion compared with.

    from typer.testing import CliRunner

    from paidan.cli import app
    from training import compare as compare_module
    from training.retrain import freeze_eval

    root = three_versions(tiny_model_dir, tmp_path)
    freeze_eval(root, pd.read_csv(write_tiny_csv(tmp_path / "tiny.csv"), dtype=str), "test")
    registry.set_current(root, "v1", record=False)
    real_compare = compare_module.compare

    def compare_while_another_promotes(*args: object, **kwargs: object) -> dict:
        registry.promote(root, "v3")  # another promotion, during this one's evaluation
        return real_compare(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(compare_module, "compare", compare_while_another_promotes)
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    # --force: the copies were trained on the frozen tickets, which the rule refuses by itself.
    r = CliRunner().invoke(app, ["models", "promote", "v2", "--force"], env=env)
    assert r.exit_code == 2, r.output
    assert "changed current from v1 to v3" in r.output, r.output
    assert "run `paidan models promote v2` again" in r.output
    assert registry.current_version(root) == "v3"
    assert registry.read_state(root)["history"] == ["v1"]  # v2's promotion left no trace
    assert (root / registry.REPORTS_DIR / "v2-vs-v1.json").is_file()  # the comparison is kept


def test_promote_refuses_a_version_whose_files_no_longer_verify_even_with_cached_scores(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    # Its frozen-set scores were cached before the file was damaged, so promote never loaded it:
    # current moved, running servers refused the reload, and the next `paidan serve` failed.
    import shutil

    from typer.testing import CliRunner

    from model.artifact import SERVING_FILE
    from paidan.cli import app
    from training.compare import promote_checked
    from training.retrain import freeze_eval

    root = tmp_path / "models"
    for name in ("v1", "v2"):
        shutil.copytree(tiny_model_dir, root / name)
    freeze_eval(root, pd.read_csv(write_tiny_csv(tmp_path / "tiny.csv"), dtype=str), "test")
    registry.set_current(root, "v1", record=False)
    promote_checked(root, "v2", apply=False)  # as `paidan retrain` without --promote-if-better
    assert registry.read_scores(root, "v2") is not None
    damaged = root / "v2" / SERVING_FILE
    damaged.chmod(0o644)
    with open(damaged, "ab") as f:
        f.write(b"x")
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    for args in (["models", "promote", "v2"], ["models", "promote", "v2", "--force"]):
        r = CliRunner().invoke(app, args, env=env)
        assert r.exit_code == 2, (args, r.output)
        assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
        assert "v2 cannot be made current" in r.output, r.output
        assert SERVING_FILE in r.output and "does not match its checksum" in r.output, r.output
        assert registry.current_version(root) == "v1"
        assert registry.read_state(root)["history"] == []


def test_if_new_feedback_skips_without_training(tiny_root: tuple[Path, Path]) -> None:
    root, history = tiny_root
    before = registry.versions(root)
    old = [fb(1, "X", "执法", -60 * 24 * 365)]  # a year before the model: not new
    result = retrain([history], old, root, if_new_feedback=1)
    assert result.skipped and "0 new feedback" in result.message
    assert registry.versions(root) == before


def test_retrain_on_unchanged_data_names_the_version_it_would_duplicate(
    tiny_root: tuple[Path, Path], tmp_path: Path
) -> None:
    # Run again on the same history and feedback, retrain registered another identical model
    # (the same data fingerprint, e.g. three versions ending -e6caa7c5) and said nothing of it.
    from typer.testing import CliRunner

    from paidan.cli import app

    root, history = tiny_root
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    r = CliRunner().invoke(app, ["retrain", "--history", str(history)], env=env)
    assert r.exit_code == 0, r.output
    first = [v for v in registry.versions(root) if v != registry.current_version(root)]
    assert len(first) == 1
    before = registry.versions(root)
    r = CliRunner().invoke(app, ["retrain", "--history", str(history)], env=env)
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert f"already registered as {first[0]}" in said, said
    assert "--again" in said and f"paidan models promote {first[0]}" in said, said
    assert registry.versions(root) == before  # no duplicate written
    r = CliRunner().invoke(app, ["retrain", "--history", str(history), "--again"], env=env)
    assert r.exit_code == 0, r.output
    assert len(registry.versions(root)) == len(before) + 1


def test_a_duplicate_with_promote_if_better_is_compared_not_trained_again(
    tiny_root: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The nightly run without --if-new-feedback: the version the same data trained is compared
    # with the current model as a new challenger would be, so a refusal still exits 3.
    from training import compare as compare_module

    root, history = tiny_root
    first = retrain([history], [], root)
    assert first.version is not None and not first.skipped
    compared = []
    real = compare_module.promote_checked

    def recorded(root_: Path, version: str, **kwargs: Any) -> Any:
        compared.append((version, kwargs["apply"]))
        return real(root_, version, **kwargs)

    monkeypatch.setattr("training.retrain.promote_checked", recorded)
    again = retrain([history], [], root, promote_if_better=True)
    assert again.skipped and again.duplicate_of == first.version
    assert compared == [(first.version, True)]
    assert again.decision is not None and again.decision.version == first.version
    assert len(registry.versions(root)) == 2


def test_retrain_on_other_data_is_no_duplicate(tiny_root: tuple[Path, Path]) -> None:
    root, history = tiny_root
    first = retrain([history], [], root)
    assert not first.skipped
    second = retrain([history], [fb(1, "X", "执法", 0)], root)  # a new decision: new data
    assert not second.skipped and second.version != first.version


def test_a_champion_config_out_of_range_is_refused_naming_the_model_and_the_field(
    tiny_root: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # retrain trains with the current model's config from its metadata.json: a hand-edited (or
    # older) one with cv_folds 1 was run as two folds while the new model recorded 1.
    import training.retrain as retrain_module
    from model.config import ConfigError

    root, history = tiny_root
    champion = registry.current_version(root)
    read = retrain_module.read_metadata

    def edited(model_dir: Path) -> dict:
        meta = read(model_dir)
        return meta | {"config": meta["config"] | {"cv_folds": 1}}

    monkeypatch.setattr(retrain_module, "read_metadata", edited)
    before = registry.versions(root)
    with pytest.raises(ConfigError) as error:
        retrain([history], [], root)
    assert str(error.value) == (
        f"the config of the current model {champion} (its metadata.json), which retrain trains "
        "with: cv_folds=1 must be at least 2"
    )
    assert registry.versions(root) == before


def test_paidan_retrain_with_a_champion_config_out_of_range_is_one_line_exit_2(
    tiny_root: tuple[Path, Path], tmp_path: Path
) -> None:
    # The same refusal through the CLI: one line naming the model and the field, no traceback,
    # nothing registered. The metadata.json is edited on disk, as a hand-edited one would be.
    import json

    from typer.testing import CliRunner

    from paidan.cli import app

    root, history = tiny_root
    champion = registry.current_version(root)
    meta_path = root / champion / "metadata.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["config"]["cv_folds"] = 1
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    before = registry.versions(root)
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    r = CliRunner().invoke(app, ["retrain", "--history", str(history)], env=env)
    assert r.exit_code == 2, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert "Traceback" not in r.output
    # One error line, after the line naming the feedback store read (here: none, warned of).
    *before_error, error = r.output.strip().splitlines()
    assert error == (
        f"error: the config of the current model {champion} (its metadata.json), which retrain "
        "trains with: cv_folds=1 must be at least 2"
    ), r.output
    assert [line.split(":")[:2] for line in before_error] == [["warning", " no feedback read"]]
    assert registry.versions(root) == before


def test_ids_that_restart_in_each_file_do_not_cost_training_rows(
    tmp_path: Path, tiny_config: TrainingConfig
) -> None:
    # A serial-number column (序号) restarts in each monthly export: id "2" is two tickets.
    from training.retrain import freeze_eval

    root = tmp_path / "models"
    cols = ["id", "title", "text", "department", "category"]
    rows = [[str(i), *t] for i, t in enumerate(TINY_TICKETS, 1)]
    held = [0, 6, 12]  # one ticket per department, frozen as ids "1", "2", "3"
    frozen = pd.DataFrame([rows[i] for i in held], columns=cols).assign(id=["1", "2", "3"])
    freeze_eval(root, frozen, "test")
    rest = [r for i, r in enumerate(rows) if i not in held]
    files = []
    for name, part in (("2026-01.csv", rest[:8]), ("2026-02.csv", rest[8:])):
        df = pd.DataFrame(part, columns=cols).assign(id=[str(i) for i in range(1, len(part) + 1)])
        df.to_csv(tmp_path / name, index=False)
        files.append(df)
    # The dispatcher corrected ticket "2" of February: that row, not January's "2", is replaced.
    feb2 = files[1].iloc[1]
    records = [{**fb(1, "2", "人社", 0, text=feb2["text"]), "created_at": datetime.now(UTC)}]
    result = retrain(
        [tmp_path / "2026-01.csv", tmp_path / "2026-02.csv"], records, root, config=tiny_config
    )
    assert result.eval_excluded == 0  # was 5: tickets numbered 1-3 were taken for frozen ones
    assert result.feedback.replaced_history == 1  # was 2
    assert result.rows == {"history": 14, "feedback": 1}
    assert result.ambiguous_ids == 7
    warning = "\n".join(result.warnings(min_examples=3))
    assert "7 ticket ids name more than one ticket text" in warning
    assert "2026-01.csv data row 1" in warning and "--id-col" in warning


def _numbered_history(tmp_path: Path, texts: dict[int, str] | None = None) -> tuple[Path, Path]:
    """A model root with tickets 16-18 frozen, and a history file of tickets numbered 1-15."""
    from training.retrain import freeze_eval

    root = tmp_path / "models"
    cols = ["id", "title", "text", "department", "category"]
    rows = [[str(i), *t] for i, t in enumerate(TINY_TICKETS, 1)]
    for i, text in (texts or {}).items():
        rows[i - 1][2] = text
    freeze_eval(root, pd.DataFrame(rows[15:], columns=cols), "test")
    history = tmp_path / "history.csv"
    pd.DataFrame(rows[:15], columns=cols).to_csv(history, index=False)
    return root, history


def test_feedback_on_live_tickets_numbered_as_history_tickets_replaces_none_of_them(
    tmp_path: Path, tiny_config: TrainingConfig
) -> None:
    # The history is numbered 1-18 (16-18 frozen); live tickets are numbered from 1 again.
    root, history = _numbered_history(tmp_path)
    now = datetime.now(UTC)
    live = {
        "1": "小区门口共享单车乱停乱放",
        "2": "夜间施工噪音扰民",
        "16": "养老保险转移接续办不了",
    }
    records = [
        {**fb(n, tid, "执法", 0, text=text), "created_at": now}
        for n, (tid, text) in enumerate(live.items(), 1)
    ]
    # Ticket 5 is a correction of history ticket 5: the same id and the same text.
    records.append({**fb(4, "5", "住建", 0, text=TINY_TICKETS[4][1]), "created_at": now})
    result = retrain([history], records, root, config=tiny_config)
    # Was {"history": 12, "feedback": 3}: live tickets 1 and 2 replaced history tickets 1 and 2,
    # and live ticket 16 was left out as frozen ticket 16.
    assert result.rows == {"history": 14, "feedback": 4}
    assert result.feedback.replaced_history == 1
    assert result.eval_excluded == 0
    assert result.feedback.other_tickets == 3
    assert result.ambiguous_ids == 0
    meta = result.train.metadata["training_data"] if result.train else {}
    assert meta["feedback"]["ids_naming_other_tickets"] == 3
    warning = "\n".join(result.warnings(min_examples=3))
    assert "3 feedback ticket ids name another ticket text" in warning
    assert "e.g. '1': history.csv data row 1, feedback data row 1" in warning
    assert "ticket ids name more than one ticket text" not in warning


def test_feedback_on_tickets_sharing_a_daily_number_is_matched_to_history_and_frozen_by_text(
    tmp_path: Path, tiny_config: TrainingConfig
) -> None:
    # The history is numbered 1-18 (16-18 frozen); live tickets are numbered 1, 2, 3 … each day.
    root, history = _numbered_history(tmp_path)
    now = datetime.now(UTC)
    day, minute = timedelta(days=1), timedelta(minutes=1)
    records = [
        # One day's ticket 7 is history ticket 7 (the same text): a correction, decided twice.
        {**fb(1, "7", "人社", 0, text=TINY_TICKETS[6][1]), "created_at": now - 2 * day},
        {**fb(2, "7", "执法", 0, text=TINY_TICKETS[6][1]), "created_at": now - 2 * day + minute},
        # The next days' tickets 7 are other tickets.
        {**fb(3, "7", "执法", 0, text="小区门口共享单车乱停乱放"), "created_at": now - day},
        {**fb(4, "7", "执法", 0, text="夜间施工噪音扰民"), "created_at": now},
        # One day's ticket 16 is frozen ticket 16; another day's is a new ticket.
        {**fb(5, "16", "住建", 0, text=TINY_TICKETS[15][1]), "created_at": now - day},
        {**fb(6, "16", "人社", 0, text="养老保险转移接续办不了"), "created_at": now},
    ]
    result = retrain([history], records, root, config=tiny_config)
    # Was 2 tickets, 4 superseded, nothing replaced or left out: each id kept its latest decision.
    summary = result.feedback
    assert (summary.records, summary.tickets, summary.superseded) == (6, 5, 1)
    assert summary.replaced_history == 1  # history ticket 7, by its text
    assert result.eval_excluded == 1  # the decision on frozen ticket 16; the other 16 is trained
    assert result.rows == {"history": 14, "feedback": 4}
    assert summary.other_tickets == 0  # said once, below
    assert result.ambiguous_ids == 0
    meta = result.train.metadata["training_data"] if result.train else {}
    assert meta["feedback"]["ids_naming_several_texts"] == 2
    warning = " ".join(result.warnings(min_examples=3))
    assert (
        "2 feedback ticket ids name more than one ticket text (e.g. '16': feedback data row 5, "
        "feedback data row 6); such decisions are kept per ticket text" in warning
    )
    assert "name another ticket text" not in warning


def test_masked_feedback_text_still_replaces_its_raw_history_row(
    tmp_path: Path, tiny_config: TrainingConfig
) -> None:
    # The server stores feedback texts cleaned (the phone number masked); the history keeps them
    # raw. Compared as stored they differ, yet they are one ticket: the correction replaces it.
    from model.text import clean

    raw = "楼下烧烤店油烟很大，请回电１３８１２３４５６７８  王先生"
    root, history = _numbered_history(tmp_path, {7: raw})
    masked = clean(raw)
    assert "13812345678" not in masked and masked != raw
    records = [{**fb(1, "7", "住建", 0, text=masked), "created_at": datetime.now(UTC)}]
    result = retrain([history], records, root, config=tiny_config)
    assert result.feedback.replaced_history == 1
    assert result.rows == {"history": 14, "feedback": 1}
    assert result.feedback.other_tickets == 0
    assert result.ambiguous_ids == 0  # the id names one ticket, not two texts
    assert not any("feedback ticket ids" in w for w in result.warnings(min_examples=3))


def test_retrain_warning_masks_a_new_label_holding_a_phone_number() -> None:
    # A dispatcher typed the grid worker's mobile number into the department field of feedback:
    # the nightly retrain log must not carry it, as metadata and reports do not.
    new = {"网格员张三13812345678": 1, "网格员李四１３９８７６５４３２１": 2, "信访局": 6}
    result = RetrainResult(new_labels={"department": new})
    warnings = "\n".join(result.warnings(min_examples=5))
    assert "13812345678" not in warnings and "１３９８７６５４３２１" not in warnings
    assert "new department '网格员张三[手机号]' (not in the current model) has 1 row:" in warnings
    # Full-width digits, as a Chinese keyboard types them, are masked too.
    assert "new department '网格员李四[手机号]' (not in the current model) has 2 rows" in warnings
    assert "new department '信访局' (not in the current model) has 6 rows: learnt" in warnings


def test_retrain_lists_new_labels_twenty_at_a_time() -> None:
    # A history whose department column is typed freehand: one line per new spelling, beside
    # validation's line per rare label, put two lines per misspelling in the nightly log.
    from training.validate import MAX_LISTED

    new = {f"住建局{i}": 1 for i in range(300)} | {f"新局{i}": 6 for i in range(25)}
    new["信访局"] = 9
    warnings = RetrainResult(new_labels={"department": new}).warnings(min_examples=5)
    said = [w for w in warnings if "new department" in w]
    assert len(said) == 2 * (MAX_LISTED + 1)
    assert (
        said[0]
        == "new department '信访局' (not in the current model) has 9 rows: learnt as a new label"
    )
    assert said[MAX_LISTED] == (
        "… and 6 more new department labels (not in the current model, 36 rows): learnt as a "
        "new label"
    )
    assert said[MAX_LISTED + 1].endswith(
        "has 1 row: below min_examples (5): merged into 其他 for this model; collect more examples"
    )
    assert said[-1] == (
        "… and 280 more new department labels (not in the current model, 280 rows): below "
        "min_examples (5): merged into 其他 for this model; collect more examples"
    )


def test_a_rare_new_label_is_warned_of_once() -> None:
    # Retrain's line on a new department below min_examples, and validation's on the label it
    # merged into 其他, told the nightly log of one label twice.
    from types import SimpleNamespace

    from training.validate import ValidationReport

    validation = ValidationReport(
        merged={"department": {"政务服务信访": 2, "网格员[手机号]": 3, "旧局": 1}}
    )
    new = {"政务服务信访": 2, "网格员13812345678": 3, "信访局": 6}
    result = RetrainResult(
        new_labels={"department": new}, train=SimpleNamespace(validation=validation)
    )
    warnings = result.warnings(min_examples=5)
    about = [w for w in warnings if "政务服务信访" in w]
    assert about == [
        "new department '政务服务信访' (not in the current model) has 2 rows: below min_examples "
        "(5): merged into 其他 for this model; collect more examples"
    ]
    assert len([w for w in warnings if "网格员" in w]) == 1
    # A rare label the current model had too is validation's to say.
    assert "department label '旧局' has only 1 row; merged into '其他'" in warnings


@pytest.mark.slow
def test_retrain_maps_labels_reports_new_department_and_excludes_frozen(
    tiny_root: tuple[Path, Path], tmp_path: Path
) -> None:
    root, history = tiny_root
    champion = registry.current_version(root)
    now = datetime.now(UTC)
    frozen_text = TINY_TICKETS[0][1]
    records = [
        # Three corrections to a brand-new department: too few to learn, must be reported.
        {**fb(1, "N1", "信访局", 0, text="反映情况多次无人答复"), "created_at": now},
        {**fb(2, "N2", "信访局", 0, text="信访件一直没有回音"), "created_at": now},
        {**fb(4, "N3", "信访局", 0, text="上访材料递交后石沉大海"), "created_at": now},
        # A correction of a frozen ticket must not leak into training.
        {**fb(3, "Z9", "人社", 0, text=frozen_text), "created_at": now},
    ]
    mapping = {"department": {"执法": "城管执法"}}
    config = TrainingConfig(cv_folds=3, calibration_cv=2, min_examples=4, max_features=None)
    result = retrain([history], records, root, mapping=mapping, config=config)
    assert result.version != champion and registry.current_version(root) == champion
    assert result.rows == {"history": 15, "feedback": 3}
    assert result.eval_excluded == 1
    assert result.mapped == {"department": {"执法": 5}}
    assert result.new_labels["department"] == {"城管执法": 5, "信访局": 3}
    warnings = "\n".join(result.warnings(min_examples=4))
    assert "new department '信访局'" in warnings and "merged into 其他" in warnings
    # 其他 has those three rows only, fewer than min_examples: they train no department head.
    assert "itself too rare to learn" in warnings and "train no department head" in warnings
    assert result.train is not None
    assert "城管执法" in result.train.router.heads["department"].labels
    assert "信访局" not in result.train.router.heads["department"].labels
    assert "其他" not in result.train.router.heads["department"].labels
    meta = result.train.metadata["training_data"]
    assert meta["sources"] == {"history": 15, "feedback": 3}
    assert meta["mapping"] == mapping
    # The champion is judged in the new label space: 执法 is not a "lost" label.
    assert result.decision is not None and result.decision.comparison is not None
    assert result.decision.comparison["lost_labels"] == {}
    assert not result.decision.promoted


def test_spaced_feedback_ids_replace_their_history_row(tiny_root: tuple[Path, Path]) -> None:
    # " T002 " (a fixed-width or Excel-fed client) is ticket T002 of the history (its text too).
    root, history = tiny_root
    text = TINY_TICKETS[1][1]
    records = [{**fb(1, " T002 ", "住建", 0, text=text), "created_at": datetime.now(UTC)}]
    result = retrain([history], records, root)
    assert result.feedback.replaced_history == 1  # was 0: both labels trained
    assert result.rows == {"history": 14, "feedback": 1}


def test_a_label_renamed_by_the_mapping_is_said_to_be_renamed_not_just_new(
    tiny_root: tuple[Path, Path], tiny_config: TrainingConfig
) -> None:
    # `paidan retrain --mapping` (执法 → 城管执法) printed "mapped 5 department rows 执法 → 城管执法"
    # and then "new department '城管执法' (not in the current model) … learnt as a new label", as
    # if a department had appeared from nowhere.
    root, history = tiny_root
    result = retrain([history], [], root, mapping={"department": {"执法": "城管执法"}})
    assert result.new_labels == {"department": {"城管执法": 5}}
    assert (
        "new department '城管执法' (renamed from '执法' by --mapping) has 5 rows: learnt as a new "
        "label"
    ) in result.warnings(min_examples=tiny_config.min_examples)


@pytest.mark.slow
def test_a_rename_is_kept_by_later_retrains_without_the_mapping(
    tiny_root: tuple[Path, Path],
) -> None:
    root, history = tiny_root
    config = TrainingConfig(cv_folds=3, calibration_cv=2, min_examples=3, max_features=None)
    first = retrain(
        [history], [], root, mapping={"department": {"执法": "城管执法"}}, config=config
    )
    assert first.version is not None
    registry.promote(root, first.version)
    assert first.inherited == {}
    # The nightly retrain without --mapping keeps the rename; a typo given now is named.
    second = retrain([history], [], root, mapping={"category": {"城健": "城市建设"}}, config=config)
    assert second.inherited == {"department": {"执法": "城管执法"}}
    assert second.mapping == {"department": {"执法": "城管执法"}, "category": {"城健": "城市建设"}}
    assert second.mapped == {"department": {"执法": 5}}
    assert second.train is not None
    assert second.train.metadata["training_data"]["mapping"] == second.mapping
    assert "城管执法" in second.train.router.heads["department"].labels
    assert "执法" not in second.train.router.heads["department"].labels
    assert second.decision is not None and second.decision.comparison is not None
    assert second.decision.comparison["lost_labels"] == {}
    warnings = "\n".join(second.warnings(min_examples=3))
    assert "--mapping renames category '城健' to '城市建设'" in warnings
    assert "'执法'" not in warnings  # inherited renames are not rows given now
    # The command says which renames it inherited (and prints the rows mapped by them).
    from typer.testing import CliRunner

    from paidan.cli import app

    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(root.parent / "var")}
    # --again: the same history with the inherited rename alone is the current model's data.
    r = CliRunner().invoke(app, ["retrain", "--history", str(history), "--again"], env=env)
    assert r.exit_code == 0, r.output
    assert "inherited rename from the current model: department 执法 → 城管执法" in r.output
    assert "mapped 5 department row(s) 执法 → 城管执法" in r.output


def test_a_frozen_set_another_retrain_wrote_meanwhile_is_used_not_replaced(
    tiny_root: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two first retrains at once each found no frozen set; the later write replaced the set the
    # other had trained around (once: a challenger trained on 118 of the 187 frozen tickets), or
    # failed with "frozen already".
    import shutil

    import training.retrain as rt

    root, history = tiny_root
    shutil.rmtree(root / registry.EVAL_DIR)
    split = rt.split_eval
    other: dict[str, Any] = {}

    def split_while_another_retrain_freezes(df: pd.DataFrame, **kw: Any) -> Any:
        out = split(df, **kw)
        other["info"] = rt.freeze_eval(root, df.iloc[:2], "the other retrain")
        return out

    monkeypatch.setattr(rt, "split_eval", split_while_another_retrain_freezes)
    result = retrain([history], [], root)
    info = registry.frozen_eval_info(root)
    assert info is not None and info["sha256"] == other["info"]["sha256"]
    assert not result.eval_frozen_now
    assert result.eval_excluded == 2  # the other set's tickets, left out of training
    assert result.rows == {"history": len(pd.read_csv(history)) - 2, "feedback": 0}


def test_evaluate_scores_a_renamed_model_under_its_training_mapping(
    tmp_path: Path, tiny_config: TrainingConfig
) -> None:
    # A model retrained with --mapping 人社 → 人社局, evaluated on the history that still says 人社:
    # evaluate reported 人社 as a label the model does not know (compare applied the mapping).
    from model.tickets import ColumnMap, read_tickets
    from training.evaluate import evaluate
    from training.train import train_frame

    data = write_tiny_csv(tmp_path / "tiny.csv")
    rows = read_tickets([data], ColumnMap())
    renamed = rows.assign(department=rows["department"].replace({"人社": "人社局"}))
    renamed_csv = tmp_path / "renamed.csv"
    renamed[["id", "title", "text", "department", "category"]].to_csv(renamed_csv, index=False)
    mapping = {"department": {"人社": "人社局"}}
    model = train_frame(
        renamed, tmp_path / "m", config=tiny_config, extra_metadata={"mapping": mapping}
    ).model_dir
    assert model is not None
    report = evaluate(model, [data])
    assert report["mapped"] == {"department": {"人社": int((rows["department"] == "人社").sum())}}
    assert "人社" not in report["department"]["per_class"]
    same = evaluate(model, [renamed_csv])
    assert "mapped" not in same
    assert report["department"]["accuracy"] == same["department"]["accuracy"]
    assert report["department"]["per_class"] == same["department"]["per_class"]


def test_promote_scores_labels_merged_into_other_at_training_as_other_as_evaluate_does(
    tmp_path: Path, merged_model_dir: tuple[Path, Path]
) -> None:
    # evaluate scores the rare departments a model's training merged into 其他 as 其他 (it
    # answers 其他 for them by design); promote and `models list` scored them under their own
    # names, so each right answer counted as wrong and a model that merged labels lost to one
    # that did not.
    import shutil

    from model.tickets import LABELS
    from training.compare import ensure_scores
    from training.evaluate import evaluate
    from training.retrain import freeze_eval

    model_dir, data = merged_model_dir
    root = tmp_path / "models"
    shutil.copytree(model_dir, root / "v1")
    freeze_eval(root, pd.read_csv(data, dtype=str), "test")
    scores = ensure_scores(root, "v1")
    report = evaluate(root / "v1", [data])
    for head in LABELS:
        got, want = scores["heads"][head], report[head]
        assert got["accuracy"] == pytest.approx(want["accuracy"]), head
        assert got["macro_f1"] == pytest.approx(want["macro_f1"]), head
        for label, row in got["per_class"].items():
            assert row == pytest.approx({k: want["per_class"][label][k] for k in row}), (
                head,
                label,
            )
    assert scores["heads"]["department"]["per_class"]["其他"]["support"] >= 4
    assert scores["merged_into_other"] == {"department": {"档案馆": 2, "气象局": 2}}
    # Scores stored before (without the merged labels) are computed again, not reused.
    stale = {k: v for k, v in scores.items() if k not in ("merged_sha256", "merged_into_other")}
    registry.write_scores(root, "v1", stale | {"heads": {}})
    assert ensure_scores(root, "v1")["heads"] == scores["heads"]


@pytest.mark.parametrize("recorded", ["masked", "masked as written", "as written"])
def test_promote_scores_merged_labels_holding_a_number_as_other(
    tmp_path: Path, phone_merged_model_dir: tuple[Path, Path], recorded: str
) -> None:
    # Training records a merged label masked (网格员李四[手机号]); the scores looked up the label
    # as the frozen set spells it and scored its rows as wrong. Models trained before recorded it
    # as written or masked as written.
    from model.artifact import read_metadata
    from tests.conftest import OLD_MERGED_KEYS, with_merged_keys
    from training.compare import ensure_scores, mapping_sha, merged_into_other
    from training.evaluate import evaluate
    from training.retrain import freeze_eval

    trained, data = phone_merged_model_dir
    root = tmp_path / "models"
    with_merged_keys(trained, root / "v1", OLD_MERGED_KEYS.get(recorded))
    freeze_eval(root, pd.read_csv(data, dtype=str), "test")
    masked = {"网格员李四[手机号]": 2, "a区网格员[手机号]": 2}
    scores = ensure_scores(root, "v1")
    assert scores["merged_into_other"] == {"department": masked}
    report = evaluate(root / "v1", [data])
    dept = scores["heads"]["department"]
    assert dept["accuracy"] == pytest.approx(report["department"]["accuracy"])
    assert dept["per_class"]["其他"]["support"] == 4
    assert not set(dept["per_class"]) - {"其他", *(r[2] for r in TINY_TICKETS)}
    # Scores stored when the labels were missed (checksum of the merged labels alone) are computed
    # again.
    stale = scores | {
        "heads": {},
        "merged_sha256": mapping_sha(merged_into_other(read_metadata(root / "v1"))),
    }
    registry.write_scores(root, "v1", stale)
    assert ensure_scores(root, "v1")["heads"] == scores["heads"]


def test_a_comparison_says_a_merged_label_was_learnt_by_the_other_model_only_when_it_was(
    tmp_path: Path, merged_model_dir: tuple[Path, Path], tiny_config: TrainingConfig
) -> None:
    # The note said "merged into 其他 by the challenger's training but learnt by the champion"
    # of every label the two did not both merge, one the champion never saw among them.
    import shutil

    from tests.conftest import RARE_TICKETS, write_tickets_csv
    from training.compare import promote_checked
    from training.retrain import freeze_eval
    from training.train import train

    challenger, data = merged_model_dir  # merged 档案馆 and 气象局, two rows each
    root = tmp_path / "models"
    # The champion learnt 档案馆 (from a third ticket too) and never saw 气象局.
    archive = [t for t in RARE_TICKETS if t[2] == "档案馆"]
    archive.append(("档案转递", "退休手续要调档案，档案馆说档案不在他们那里", "档案馆", "城建"))
    history = write_tickets_csv(tmp_path / "champion.csv", TINY_TICKETS + archive)
    assert train([history], root / "v1", config=tiny_config).model_dir is not None
    shutil.copytree(challenger, root / "v2")
    registry.set_current(root, "v1")
    freeze_eval(root, pd.read_csv(data, dtype=str), "test")
    notes = promote_checked(root, "v2", apply=False).comparison["notes"]
    assert (
        "department: merged into 其他 by the challenger's training but learnt by the champion, "
        "so scored under their own names for both: 档案馆"
    ) in notes, notes
    assert (
        "department: merged into 其他 by the challenger's training and learnt by neither model, "
        "so scored under their own names for both: 气象局"
    ) in notes, notes


def test_shared_merged_labels_match_a_label_recorded_as_written_and_masked() -> None:
    # A champion trained before recorded 网格员李四１３９８７６５４３２１ as written, the challenger
    # masked: both merged it, so both are scored on it as 其他.
    from tests.conftest import FULL_WIDTH_LABEL
    from training.compare import shared_merged

    old = {"department": {FULL_WIDTH_LABEL: "其他", "气象局": "其他"}}
    new = {"department": {"网格员李四[手机号]": "其他", "气象局": "其他"}}
    both = {"department": {"网格员李四[手机号]": "其他", "气象局": "其他"}}
    assert shared_merged(old, new) == both
    assert shared_merged(new, old) == both


def test_a_label_only_one_model_merged_into_other_is_scored_under_its_name_for_both(
    tmp_path: Path, tiny_config: TrainingConfig
) -> None:
    # The history grew past --min-examples for 档案馆: the champion had merged it into 其他, the
    # challenger learnt it. Each was scored with its own merged labels, so the same 其他 answer to
    # the same 档案馆 ticket counted right for the champion and wrong for the challenger, and a
    # challenger that routes 档案馆 tickets where the champion could not was refused.
    from tests.conftest import RARE_TICKETS, write_tickets_csv
    from training.compare import ensure_scores, promote_checked
    from training.retrain import freeze_eval
    from training.train import train

    other = [
        ("咨询问题", "想咨询一下市民卡办理需要什么材料", "其他", "城建"),
        ("建议", "建议在公园多设置一些长椅方便老人休息", "其他", "城建"),
        ("表扬", "表扬社区工作人员热心帮忙办理事情", "其他", "城建"),
    ]
    more = [("档案转递", "毕业后的学籍档案需要转递到档案馆，怎么办理", "档案馆", "城建")]
    base = TINY_TICKETS + RARE_TICKETS + other
    root = tmp_path / "models"
    for name, rows in (("champion", base), ("challenger", base + more)):
        train([write_tickets_csv(tmp_path / f"{name}.csv", rows)], root / name, config=tiny_config)
    frozen = [
        ("拖欠工资", "老板拖欠三个月工资不发", "人社", "劳动保障"),
        ("烧烤油烟", "烧烤店油烟扰民", "执法", "环境"),
        ("电梯坏了", "电梯经常故障物业不修", "住建", "城建"),
        ("档案", "人事档案在档案馆查不到", "档案馆", "城建"),
        ("调取材料", "单位调动需要调取个人历史材料，去哪个部门查询", "档案馆", "城建"),
        ("天气", "天气预报不准确暴雨预警太晚", "气象局", "环境"),
        ("建议", "建议公园增加长椅", "其他", "城建"),
    ]
    frozen_csv = write_tickets_csv(tmp_path / "frozen.csv", frozen)
    freeze_eval(root, pd.read_csv(frozen_csv, dtype=str), "test")
    registry.set_current(root, "champion")

    decision = promote_checked(root, "challenger", apply=False)
    report = decision.comparison
    assert report is not None
    dept = report["heads"]["department"]
    by_label = {row["label"]: row for row in dept["per_class"]}
    # Both were scored on 档案馆 under its name; 气象局, merged by both, is 其他 for both.
    assert by_label["档案馆"]["support"] == 2 and by_label["档案馆"]["champion_f1"] == 0.0
    assert by_label["档案馆"]["challenger_f1"] > 0.0
    assert "气象局" not in by_label
    assert dept["macro_f1_delta_points"] > 0
    assert not any(r.startswith("department") for r in decision.reasons), decision.reasons
    assert any("档案馆" in n and "the challenger" in n for n in report["notes"])
    # The stored scores are each model's own (档案馆 as 其他 for the champion), as evaluate's.
    own = ensure_scores(root, "champion")
    assert own["merged_into_other"]["department"]["档案馆"] == 2
    assert registry.read_scores(root, "champion")["heads"] == own["heads"]
    # `models list` gives the comparison's figures: it scored the champion's 其他 answers to
    # 档案馆 tickets right and 档案馆 as a label of F1 0 at once (0.800, the comparison 0.733).
    from typer.testing import CliRunner

    from paidan.cli import app

    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    r = CliRunner().invoke(app, ["models", "list", "--json"], env=env)
    assert r.exit_code == 0, r.output
    listed = {v["version"]: v["metrics"] for v in json.loads(r.output)}
    for head, figures in report["heads"].items():
        for who in ("champion", "challenger"):
            assert listed[who][f"{head}_macro_f1"] == pytest.approx(figures[who]["macro_f1"]), (
                head,
                who,
            )


def test_a_comparison_report_directory_that_is_an_input_is_refused_before_any_work(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    # `retrain --history hist --report hist` wrote <challenger>-vs-<champion>.json into the
    # history directory, and the next retrain stopped on it as a ticket file it cannot read;
    # `promote --report models/v1` wrote the report into an immutable model directory.
    from typer.testing import CliRunner

    from paidan.cli import app

    root = three_versions(tiny_model_dir, tmp_path)
    hist = tmp_path / "hist"
    hist.mkdir()
    write_tiny_csv(hist / "tiny.csv")
    udir = tmp_path / "unlabelled"
    udir.mkdir()
    _unlabelled_csv(udir / "u.csv")
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    before = {p: sorted(p.iterdir()) for p in (hist, udir, root / "v1", root / "v2")}
    v1, v2 = root / "v1", root / "v2"
    cases = [  # arguments, --report, and what the refusal says of it
        (["retrain", "--history", str(hist), "--report", str(hist)], hist, f"is the input {hist}"),
        (
            ["retrain", "--history", str(hist), "--report", f"{hist}/r"],
            f"{hist}/r",
            f"is inside the input {hist}",
        ),
        (["retrain", "--history", str(hist), "--report", str(v1)], v1, f"is the input {v1}"),
        (  # an --unlabelled directory is read as tickets too
            ["retrain", "--history", str(hist), "--unlabelled", str(udir), "--report", f"{udir}/r"],
            f"{udir}/r",
            f"is inside the input {udir}",
        ),
        (["models", "promote", "v3", "--report", str(v1)], v1, f"is the input {v1}"),
        (
            ["models", "promote", "v3", "--report", f"{v2}/r"],
            f"{v2}/r",
            f"is inside the input {v2}",
        ),
    ]
    for args, report, said in cases:
        r = CliRunner().invoke(app, args, env=env)
        assert r.exit_code == 2, (args, r.output)
        assert (
            f"error: --report {report} {said}; name another directory (the report would become "
            "part of that input)"
        ) in " ".join(r.output.split()), (args, r.output)
    assert {p: sorted(p.iterdir()) for p in before} == before
    assert registry.versions(root) == ["v1", "v2", "v3"]
    assert not (root / registry.CURRENT_FILE).exists()


def test_retrain_names_the_feedback_store_it_read_and_warns_of_a_missing_file(
    tiny_root: tuple[Path, Path], tmp_path: Path
) -> None:
    # README's nightly job set only PAIDAN_MODEL_ROOT: on a PostgreSQL install it read the absent
    # default SQLite file and said "0 new feedback record(s)", exit 0, every night, naming nothing.
    from typer.testing import CliRunner

    from paidan.cli import app
    from serve.db import Database

    root, history = tiny_root
    args = ["retrain", "--history", str(history), "--if-new-feedback", "5"]
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    r = CliRunner().invoke(app, args, env=env)
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert (
        f"warning: no feedback read: the feedback database {tmp_path / 'var' / 'paidan.db'}" in said
    )
    assert "does not exist" in said and "PAIDAN_DATABASE_URL" in said
    assert not (tmp_path / "var").exists()  # not created to be read

    db = Database(f"sqlite:///{tmp_path / 'var' / 'paidan.db'}")
    db.add_feedback(text="油烟扰民", department="城管")
    db.dispose()
    r = CliRunner().invoke(app, args, env=env)
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert f"feedback: 1 record(s) read from sqlite:///{tmp_path / 'var' / 'paidan.db'}" in said
    assert "warning" not in said


def test_retrain_counts_one_feedback_record_for_one_ticket_in_the_singular(
    tiny_root: tuple[Path, Path], tmp_path: Path
) -> None:
    # The nightly log read "(1 feedback records for 1 tickets, 0 superseded by a later
    # decision, 1 history rows replaced)".
    from typer.testing import CliRunner

    from paidan.cli import app
    from serve.db import Database

    root, history = tiny_root
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    db = Database(f"sqlite:///{tmp_path / 'var' / 'paidan.db'}")
    db.add_feedback(ticket_id="T002", text=TINY_TICKETS[1][1], department="住建", category="城建")
    db.dispose()
    r = CliRunner().invoke(app, ["retrain", "--history", str(history)], env=env)
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert (
        "feedback (1 feedback record for 1 ticket, 0 superseded by a later decision, "
        "1 history row replaced); "
    ) in said


def test_retrain_names_what_it_read_before_fitting_also_when_it_stops(
    tiny_root: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The feedback store (or its absence) and the history window were said only after the whole
    # fit succeeded: a nightly run that stopped with an error, or was killed during a long fit,
    # left a log naming neither.
    from typer.testing import CliRunner

    import training.retrain
    from paidan.cli import app
    from serve.db import Database
    from training.validate import TrainingDataError

    root, history = tiny_root
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    args = ["retrain", "--history", str(history)]
    # The history has no times: a --history-since window stops the run after the feedback is read.
    r = CliRunner().invoke(app, [*args, "--history-since", "2030-01-01"], env=env)
    said = " ".join(r.output.split())
    assert r.exit_code == 2, r.output
    assert "warning: no feedback read: the feedback database" in said, said

    def stop(*args: Any, **kwargs: Any) -> None:
        raise TrainingDataError("stopped in the fit by this test")

    monkeypatch.setattr(training.retrain, "train_frame", stop)
    db = Database(f"sqlite:///{tmp_path / 'var' / 'paidan.db'}")
    db.add_feedback(text="油烟扰民", department="执法")
    db.dispose()
    r = CliRunner().invoke(app, [*args, "--history-max-rows", "10"], env=env)
    said = " ".join(r.output.split())
    assert r.exit_code == 2, r.output
    source = f"feedback: 1 record(s) read from sqlite:///{tmp_path / 'var' / 'paidan.db'}"
    window = "history window: 10 of 15 rows kept"
    assert source in said and window in said, said
    assert said.index(source) < said.index(window) < said.index("stopped in the fit"), said


def test_a_line_printed_while_the_bar_is_drawn_goes_above_it_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # retrain's window line is printed while the bar runs: on a terminal, written to stdout, it
    # was glued to the end of the bar's line on the same screen.
    import io
    import re

    from rich.console import Console
    from rich.progress import Progress

    import paidan.cli as cli

    for terminal in (True, False):
        screen, stdout = io.StringIO(), io.StringIO()
        monkeypatch.setattr(cli, "out", Console(file=stdout, force_terminal=terminal))
        bar = Progress(console=Console(file=screen, force_terminal=True), disable=not terminal)
        with bar:
            bar.add_task("reading", total=1)
            cli.print_during(bar, "history window: 10 of 15 rows kept")
        screen_said, stdout_said = (
            re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", f.getvalue()) for f in (screen, stdout)
        )
        line = "history window: 10 of 15 rows kept"
        assert line in (screen_said if terminal else stdout_said), (screen_said, stdout_said)
        assert line not in (stdout_said if terminal else screen_said), (screen_said, stdout_said)


def test_a_set_frozen_before_joint_dispatch_and_an_old_champions_joint_labels_are_read_by_lead(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A paidan from before joint dispatch stored "主办；会办" department cells whole in the frozen
    # set, and its models learnt such strings as labels. Scored as they were, every model lost
    # points on labels it cannot predict (retrain refused every challenger), and the champion's
    # combined labels counted as labels the challenger "lost".
    import hashlib
    import json
    import shutil

    from model.artifact import load_router
    from training.compare import ensure_scores, read_frozen_eval, score_router

    root = tmp_path / "models"
    shutil.copytree(tiny_model_dir, root / "v1")
    df = pd.read_csv(write_tiny_csv(tmp_path / "tiny.csv"), dtype=str)
    joint = {"人社": "人社；住建；街道办", "住建": "住建;人社"}
    old = df.assign(department=df["department"].map(lambda d: joint.get(d, d)))
    # The set as the old paidan wrote it: the cells whole, frozen.json with its SHA-256.
    path = registry.frozen_eval_path(root)
    path.parent.mkdir(parents=True)
    old[["id", "title", "text", "department", "category"]].to_parquet(path, index=False)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    info = {"sha256": sha, "rows": len(old), "created": "2026-11-22T10:00:00+00:00"}
    (path.parent / registry.EVAL_META_FILE).write_text(json.dumps(info), encoding="utf-8")
    read, _ = read_frozen_eval(root)
    assert list(read["department"]) == list(df["department"])
    router, _ = load_router(root / "v1", root)
    want = score_router(router, df)
    # A score stored by the older paidan (whole cells as truth) is computed again, not reused.
    registry.write_scores(
        root, "v1", {"eval_sha256": sha, "mapping_sha256": "x", "heads": {}} | {"n": 0}
    )
    got = ensure_scores(root, "v1")
    assert got["heads"] == want["heads"]
    stale = {k: v for k, v in got.items() if k != "department_truth"}
    registry.write_scores(root, "v1", stale | {"heads": {}})
    assert ensure_scores(root, "v1")["heads"] == want["heads"]

    # An old champion's combined labels answer their lead: no label is "lost" by a challenger.
    champion, _ = load_router(root / "v1", root)
    head = champion.heads["department"]
    counts = {joint.get(label, label): n for label, n in head.counts.items()}
    monkeypatch.setattr(head, "counts", counts, raising=False)
    monkeypatch.setattr(
        head, "labels", [joint.get(label, label) for label in head.labels], raising=False
    )
    old_scores = score_router(champion, df)
    assert old_scores["heads"]["department"]["labels"] == want["heads"]["department"]["labels"]
    report = compare(old_scores, want)
    assert report["lost_labels"] == {}, report["reasons"]


def test_an_old_champions_other_made_of_merged_joint_dispatches_is_no_label_lost() -> None:
    # The paidan of 2026-11-22 merged rare "主办；会办" combinations into 其他; a challenger trained
    # now learns their lead and has no 其他: refused for "losing" it, it was never promoted.
    from training.compare import joint_only_other

    def meta(counts: dict[str, int], merged: dict[str, int]) -> dict:
        return {
            "heads": {"department": {"labels": list(counts), "counts": counts}},
            "training_data": {"validation": {"merged_into_other": {"department": merged}}},
        }

    old = meta({"住建": 9, "其他": 6}, {"残联；住建；街道办": 3, "残联;住建": 3})
    assert joint_only_other(old) == ["department"]
    # 其他 also holding tickets of its own, or a rare single department: a real label.
    assert (
        joint_only_other(meta({"住建": 9, "其他": 8}, {"残联；住建": 3, "残联；街道办": 3})) == []
    )
    assert joint_only_other(meta({"住建": 9, "其他": 6}, {"残联": 3, "档案馆": 3})) == []
    champion = scores("old", {"住建": 0.8, "其他": 0.5})
    # The frozen set's joint dispatches are scored by their lead (住建): no row is 其他 in truth.
    champion["heads"]["department"]["per_class"]["其他"]["support"] = 0
    challenger = scores("new", {"住建": 0.9})
    refused = compare(champion, challenger)
    assert refused["lost_labels"] == {"department": ["其他"]}
    report = compare(champion, challenger, champion_joint_other=["department"])
    assert report["lost_labels"] == {} and not report["refused"], report["reasons"]
    assert any("joint dispatches" in n for n in report["notes"])


def test_a_history_too_small_to_learn_from_names_retrains_options_not_trains(
    tmp_path: Path,
) -> None:
    # retrain said "train on more tickets (a wider --since or --max-rows) or lower
    # --min-examples": three options retrain does not have (`retrain --min-examples` is refused).
    from typer.testing import CliRunner

    from paidan.cli import app

    env = {"PAIDAN_MODEL_ROOT": str(tmp_path / "models"), "PAIDAN_DATA_DIR": str(tmp_path / "v")}
    runner = CliRunner()
    tickets = pd.read_csv(write_tiny_csv(tmp_path / "tiny.csv"), dtype=str)
    tickets.iloc[[1, 7, 13]].to_csv(tmp_path / "eval.csv", index=False)
    tickets.iloc[[0, 6, 12]].to_csv(tmp_path / "history.csv", index=False)  # one per label
    r = runner.invoke(app, ["models", "freeze-eval", str(tmp_path / "eval.csv")], env=env)
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["retrain", "--history", str(tmp_path / "history.csv")], env=env)
    assert r.exit_code == 2, r.output
    said = " ".join(r.output.split())
    assert "every label has fewer than 5 rows (min_examples of the current model's" in said
    assert "a wider --history-since or --history-max-rows" in said, said
    assert "paidan train --min-examples N and promote it" in said
    assert "--since or" not in said and "lower --min-examples" not in said
    helped = runner.invoke(app, ["retrain", "--help"], env={**env, "COLUMNS": "200"}).output
    for option in ("--history-since", "--history-max-rows", "--history"):
        assert option in helped


def test_the_first_retrain_on_a_category_only_history_sets_aside_its_evaluation_set(
    tmp_path: Path, tiny_config: TrainingConfig
) -> None:
    # A category-only deployment (README: it "needs no department labels"): the set-aside was
    # stratified by the empty department cells and refused as "the history is too small".
    from training.compare import model_heads
    from training.retrain import read_frozen_eval

    root = tmp_path / "models"
    tickets = pd.read_csv(write_tiny_csv(tmp_path / "tiny.csv"), dtype=str)
    again = tickets.assign(id=tickets["id"] + "b", text=tickets["text"] + "，至今没有解决")
    history = tmp_path / "categories.csv"
    pd.concat([tickets, again]).drop(columns=["department"]).to_csv(history, index=False)
    result = retrain([history], [], root, config=tiny_config)
    assert result.eval_frozen_now
    frozen, _ = read_frozen_eval(root)
    assert len(frozen) == round(0.2 * 36)
    assert set(frozen["category"]) == {"劳动保障", "环境", "城建"}  # stratified by category
    assert (frozen["department"].fillna("") == "").all()
    assert set(model_heads(root, result.version)) == {"category"}
    # The tickets frozen now are counted as left out, as every later retrain counts them (the
    # first said 0 here, the next the whole frozen set).
    assert result.eval_excluded == len(frozen) and result.rows["history"] == 36 - len(frozen)


def test_retrain_warns_of_a_title_column_left_unmapped_as_train_does(
    tmp_path: Path, tiny_config: TrainingConfig
) -> None:
    # An export whose titles sit in 诉求标题, retrained without --title-col: the challenger was
    # trained without titles and nothing said so (train says so).
    from model.tickets import ColumnMap

    tickets = pd.read_csv(write_tiny_csv(tmp_path / "tiny.csv"), dtype=str)
    again = tickets.assign(id=tickets["id"] + "b", text=tickets["text"] + "，至今没有解决")
    history = tmp_path / "export.csv"
    pd.concat([tickets, again]).rename(columns={"title": "诉求标题"}).to_csv(history, index=False)
    note = (
        "export.csv has no column 'title' for the ticket title, so its tickets are retrained "
        "without titles; it has '诉求标题': if it is the title, give --title-col 诉求标题"
    )
    result = retrain([history], [], tmp_path / "a", config=tiny_config)
    assert note in result.warnings(min_examples=3)
    mapped = retrain(
        [history], [], tmp_path / "b", columns=ColumnMap(title="诉求标题"), config=tiny_config
    )
    assert not any("--title-col" in w for w in mapped.warnings(min_examples=3))


def test_retrain_warns_of_an_id_column_left_unmapped(
    tmp_path: Path, tiny_config: TrainingConfig
) -> None:
    # docs/retraining.md's env file mapped every column but the id (工单编号): the history was read
    # without ids, a decision saved on a history ticket replaced no history row ("0 history rows
    # replaced"), so its old label trained beside the correction, and nothing named the id.
    from model.tickets import ColumnMap

    tickets = pd.read_csv(write_tiny_csv(tmp_path / "tiny.csv"), dtype=str)
    again = tickets.assign(id=tickets["id"] + "b", text=tickets["text"] + "，至今没有解决")
    history = tmp_path / "export.csv"
    pd.concat([tickets, again]).rename(columns={"id": "工单编号"}).to_csv(history, index=False)
    note = (
        "export.csv has no column 'id' for the ticket id, so a dispatcher's decision on one of "
        "its tickets replaces no history row (both labels train); it has '工单编号': if it is the "
        "id, give --id-col 工单编号"
    )
    result = retrain([history], [], tmp_path / "a", config=tiny_config)
    assert note in result.warnings(min_examples=3)
    mapped = retrain(
        [history], [], tmp_path / "b", columns=ColumnMap(id="工单编号"), config=tiny_config
    )
    assert not any("--id-col" in w for w in mapped.warnings(min_examples=3))


def test_the_first_retrain_on_a_history_without_labels_says_so_naming_its_columns(
    tmp_path: Path,
) -> None:
    # Label columns under the export's own names: retrain said "the history is too small to set
    # aside an evaluation set" (936 rows), not that no label was read, nor which options map them.
    from typer.testing import CliRunner

    from paidan.cli import app

    env = {"PAIDAN_MODEL_ROOT": str(tmp_path / "models"), "PAIDAN_DATA_DIR": str(tmp_path / "v")}
    tickets = pd.read_csv(write_tiny_csv(tmp_path / "tiny.csv"), dtype=str)
    export = tmp_path / "export.csv"
    tickets.rename(columns={"department": "承办单位", "category": "问题分类"}).to_csv(
        export, index=False
    )
    r = CliRunner().invoke(app, ["retrain", "--history", str(export)], env=env)
    assert r.exit_code == 2, r.output
    said = " ".join(r.output.split())
    assert "too small" not in said
    assert (
        "no row has a department or a category label; export.csv has columns 'id', 'title', "
        "'text', '承办单位', '问题分类'; map the label columns with --department-col / --category-col"
    ) in said, said
    assert registry.frozen_eval_info(tmp_path / "models") is None


@pytest.mark.parametrize("window", [[], ["--history-since", "2023-01-01"]])
def test_retrain_on_a_history_of_a_header_alone_says_so_in_one_line(
    tmp_path: Path, window: list[str]
) -> None:
    # With --history-since this stopped on an AssertionError (a traceback), and without a window
    # on some later error about empty data: train says "no rows to read" before anything else.
    from typer.testing import CliRunner

    from paidan.cli import app

    history = tmp_path / "history.csv"
    history.write_text("id,text,department,category,time\n", encoding="utf-8")
    env = {"PAIDAN_MODEL_ROOT": str(tmp_path / "root"), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    r = CliRunner().invoke(app, ["retrain", "--history", str(history), *window], env=env)
    assert r.exit_code == 2, r.output
    assert "no rows to read (a header but no tickets)" in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception


def test_an_id_of_two_tickets_in_subdirectories_is_shown_in_both_files(tmp_path: Path) -> None:
    # "e.g. '7': 一月.csv data row 1, 一月.csv data row 1": two rows of one file, it read.
    from model.tickets import read_tickets
    from training.retrain import ambiguous_ids

    for year, (title, text, *_) in zip(("2024", "2025"), TINY_TICKETS, strict=False):
        (tmp_path / "exports" / year).mkdir(parents=True)
        with open(tmp_path / "exports" / year / "一月.csv", "w", encoding="utf-8", newline="") as f:
            csv.writer(f).writerows([["id", "title", "text"], ["7", title, text]])
    bad, example = ambiguous_ids([read_tickets([tmp_path / "exports"])])
    assert bad == {"7"}
    assert example == "e.g. '7': 2024/一月.csv data row 1, 2025/一月.csv data row 1"


def test_models_list_says_which_versions_were_trained_on_the_frozen_set(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    # The first `paidan train` on the whole history, then `paidan retrain` freezing 20% of that
    # history: `models list` showed the champion at 1.000 beside the challenger's 0.50 with no word
    # that the champion had seen every frozen ticket; only promote's comparison said so.
    import json
    import shutil

    from typer.testing import CliRunner

    from paidan.cli import app
    from training.compare import ensure_scores
    from training.retrain import freeze_eval

    rows = pd.read_csv(write_tiny_csv(tmp_path / "tiny.csv"), dtype=str)
    root = tmp_path / "models"
    shutil.copytree(tiny_model_dir, root / "v1")
    freeze_eval(root, rows, "test")
    seen = ensure_scores(root, "v1")["seen_eval_rows"]
    assert seen == len(rows)
    env = {"PAIDAN_MODEL_ROOT": str(root), "COLUMNS": "200"}
    r = CliRunner().invoke(app, ["models", "list", "--json"], env=env)
    assert r.exit_code == 0, r.output
    [listed] = json.loads(r.output)
    assert listed["seen_eval_rows"] == seen
    r = CliRunner().invoke(app, ["models", "list"], env=env)
    assert r.exit_code == 0, r.output
    assert f"v1 was trained on {seen} of the {seen} frozen evaluation tickets" in " ".join(
        r.output.split()
    )


def test_a_repeated_id_in_a_json_lines_history_is_named_by_its_line(
    tmp_path: Path, tiny_config: TrainingConfig
) -> None:
    # The example of an id naming two texts said "history.jsonl data row 4" for the object on
    # line 6 (blank lines before it), where the reader's errors, label's error rows and train's
    # warnings name a JSON line by its line.
    root = tmp_path / "models"
    history = tmp_path / "history.jsonl"
    lines = [""]  # a blank first line: data rows and lines differ by one, then by two
    for i, (title, text, department, category) in enumerate(TINY_TICKETS, 1):
        if i == 3:
            lines.append("")
        ticket_id = "7" if i in (2, 4) else str(i)  # one number for two tickets
        row = {"id": ticket_id, "title": title, "text": text}
        lines.append(json.dumps({**row, "department": department, "category": category}))
    history.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = retrain([history], [], root, config=tiny_config)
    warning = "\n".join(result.warnings(min_examples=3))
    assert "e.g. '7': history.jsonl line 3, history.jsonl line 6" in warning, warning
    assert "1 ticket id names more than one ticket text" in warning, warning  # not "1 … ids name"


def _unlabelled_csv(path: Path) -> Path:
    # Tickets nobody labelled, with words the history has not: they widen the vocabulary and IDF.
    rows = [
        ["U1", "路灯不亮", "小区路灯坏了一个月没人修"],
        ["U2", "井盖缺失", "人行道井盖丢失很危险"],
    ]
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "title", "text"])
        w.writerows(rows)
    return path


def test_retrain_trains_with_unlabelled_files_and_warns_when_the_champion_had_some(
    tiny_root: tuple[Path, Path], tmp_path: Path
) -> None:
    # `paidan train --unlabelled` widened the champion's vocabulary; `paidan retrain` had no such
    # option, so the nightly challenger silently lost those tickets: only the data were meant to
    # differ (the history and feedback), and promotion compared two differently-featured models.
    root, history = tiny_root
    unlabelled = _unlabelled_csv(tmp_path / "unlabelled.csv")
    first = retrain([history], [], root, unlabelled=[unlabelled])
    assert first.train is not None and first.version is not None
    assert first.train.metadata["training_data"]["unlabelled_rows"] == 2
    # Named in the metadata, so that the warning below can name them.
    assert first.train.metadata["training_data"]["unlabelled_files"] == [
        {"name": "unlabelled.csv", "sha256": sha256_file(unlabelled)}
    ]
    assert not [w for w in first.warnings(3) if "unlabelled" in w]
    registry.promote(root, first.version)
    # The champion now holds unlabelled tickets: a retrain without them says so.
    second = retrain([history], [], root)
    assert second.train is not None
    assert second.train.metadata["training_data"]["unlabelled_rows"] == 0
    said = [w for w in second.warnings(3) if "unlabelled" in w]
    assert said == [
        f"the current model {first.version} was trained with 2 unlabelled tickets "
        "(--unlabelled), which this retrain was not given: the challenger's vocabulary and IDF "
        "come from the history and feedback alone; pass the same --unlabelled files to keep them "
        "(unlabelled.csv)"
    ]
    # Given them again: no warning, and the same data give the same fingerprint as the first,
    # which is named rather than trained again.
    third = retrain([history], [], root, unlabelled=[unlabelled])
    assert not [w for w in third.warnings(3) if "unlabelled" in w]
    assert third.skipped and third.duplicate_of == first.version
    assert (
        second.train.metadata["training_data"]["sha256"]
        != first.train.metadata["training_data"]["sha256"]
    )


def test_paidan_retrain_takes_unlabelled_files_as_train_does(
    tiny_root: tuple[Path, Path], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from paidan.cli import app

    root, history = tiny_root
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    before = registry.versions(root)
    # A file without the text column is refused before any work, in train's words.
    dump = tmp_path / "dump.csv"
    dump.write_text("编号,内容\nU1,小区路灯坏了\n", encoding="utf-8")
    r = CliRunner().invoke(
        app, ["retrain", "--history", str(history), "--unlabelled", str(dump)], env=env
    )
    out = " ".join(r.output.split())
    assert r.exit_code == 2, out
    assert str(dump) in out and "no column 'text'" in out
    assert "--unlabelled" in out and "--text-col" in out
    assert registry.versions(root) == before
    assert registry.frozen_eval_info(root) is not None  # the fixture's, not one frozen now
    # A readable one is trained with, and recorded.
    unlabelled = _unlabelled_csv(tmp_path / "unlabelled.csv")
    r = CliRunner().invoke(
        app,
        [
            "retrain",
            *("--history", str(history), "--unlabelled", str(unlabelled)),
            *("--promote-if-better", "--force"),
        ],
        env=env,
    )
    assert r.exit_code == 0, r.output
    version = registry.current_version(root)
    assert version not in before
    from model.artifact import read_metadata

    assert read_metadata(root / version)["training_data"]["unlabelled_rows"] == 2
    # The next retrain without them warns, on stderr as the other warnings.
    r = CliRunner().invoke(app, ["retrain", "--history", str(history)], env=env)
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert (
        f"warning: the current model {version} was trained with 2 unlabelled tickets "
        "(--unlabelled), which this retrain was not given" in said
    ), said


def test_retrain_samples_unlabelled_tickets_beyond_its_configs_limit(
    tiny_root: tuple[Path, Path], tmp_path: Path, tiny_config: TrainingConfig
) -> None:
    # As train does (TrainingConfig.unlabelled_max_rows, inherited from the current model).
    import dataclasses

    root, history = tiny_root
    dump = tmp_path / "dump.csv"
    pd.DataFrame(
        {
            "id": [f"U{i}" for i in range(12)],
            "title": "",
            "text": [f"第{i}件诉求" for i in range(12)],
        }
    ).to_csv(dump, index=False)
    config = dataclasses.replace(tiny_config, unlabelled_max_rows=5)
    result = retrain([history], [], root, config=config, unlabelled=[dump])
    assert result.train is not None
    data = result.train.metadata["training_data"]
    assert data["unlabelled_rows"] == 5 and data["unlabelled_rows_read"] == 12


def test_a_label_the_current_model_merged_into_other_is_not_called_new(
    tmp_path: Path, merged_model_dir: tuple[Path, Path], tiny_config: TrainingConfig
) -> None:
    # A department of the history too rare to learn (政务服务信访, 3 of 796 tickets) was merged into
    # 其他 by the first model; every nightly retrain then called it "new department … (not in the
    # current model)", though it was in the history all along, and said nothing of the merge that
    # `train` names ("has only 2 rows; merged into 其他").
    import shutil

    from training.retrain import freeze_eval

    model_dir, data = merged_model_dir
    root = tmp_path / "models"
    shutil.copytree(model_dir, root / "v1")
    freeze_eval(root, pd.read_csv(data, dtype=str).iloc[[0, 6, 12]], "test")
    records = [
        {**fb(1, "N1", "信访局", 0, text="信访件一直没有回音"), "created_at": T0},
        {**fb(2, "N2", "档案馆", 0, text="退休审批要查档案，档案馆找不到"), "created_at": T0},
    ]
    result = retrain([data], records, root, config=tiny_config)
    # 档案馆 reaches min_examples (3) and is learnt now: new to the model, as 信访局 is.
    assert result.new_labels == {"department": {"信访局": 1, "档案馆": 3}}
    warnings = result.warnings(min_examples=3)
    assert not [w for w in warnings if "气象局" in w and "new department" in w]
    assert "department label '气象局' has only 2 rows; merged into '其他'" in warnings
    # Not "not in the current model": it was, as a label merged into 其他.
    assert (
        "new department '档案馆' (merged into '其他' by the current model) has 3 rows: learnt as a "
        "new label" in warnings
    )
    assert "new department '信访局' (not in the current model) has 1 row:" in " ".join(warnings)


def test_decisions_on_frozen_tickets_replace_no_history_row_and_are_told(
    tiny_root: tuple[Path, Path], tmp_path: Path
) -> None:
    # After the first retrain, the history holds the tickets it froze. A dispatcher's decision on
    # one was counted as a history row replaced ("3 history rows replaced" where one was, while
    # the first retrain of the same data said 1), though neither row was trained; and a decision
    # naming another label than the frozen set's changed nothing, without a word.
    root, _ = tiny_root
    history = tmp_path / "tiny.csv"  # all 18 tickets: T001, T007 and T013 are frozen
    now = datetime.now(UTC)
    records = [
        {**fb(1, "T013", "执法", 0, text=TINY_TICKETS[12][1]), "created_at": now},  # frozen 住建
        {**fb(2, "T007", "城管执法", 0, text=TINY_TICKETS[6][1]), "created_at": now},  # renamed
        {**fb(3, "T002", "住建", 0, text=TINY_TICKETS[1][1]), "created_at": now},  # trained
    ]
    mapping = {"department": {"执法": "城管执法"}}
    result = retrain([history], records, root, mapping=mapping)
    assert result.feedback.replaced_history == 1  # T002 only (was 3)
    assert result.rows == {"history": 14, "feedback": 1}
    assert result.eval_excluded == 5  # the 3 frozen history rows and the 2 decisions on them
    assert (result.feedback.on_frozen, result.feedback.frozen_disagree) == (2, 1)
    warnings = result.warnings(min_examples=3)
    assert (
        "1 feedback decision on a frozen evaluation ticket names another label than the frozen "
        "set (e.g. ticket 'T013': frozen department 住建, decided 执法): decisions on frozen "
        "tickets are never trained" in " ".join(warnings)
    )
    meta = result.train.metadata["training_data"] if result.train else {}
    assert meta["feedback"]["decisions_on_frozen_tickets"] == 2


def test_a_comparison_names_no_merged_label_that_the_frozen_set_lacks(
    tmp_path: Path, merged_model_dir: tuple[Path, Path], tiny_model_dir: Path
) -> None:
    # A department only the dispatchers' decisions name (a typo, 市场监督, or one too new to learn)
    # is merged into 其他 by the challenger's training and is in no frozen ticket; the comparison
    # said it was "scored under their own names for both", where nothing was scored.
    import shutil

    from training.compare import promote_checked
    from training.retrain import freeze_eval

    challenger, data = merged_model_dir  # merged 档案馆 and 气象局, two rows each
    root = tmp_path / "models"
    shutil.copytree(tiny_model_dir, root / "v1")
    shutil.copytree(challenger, root / "v2")
    registry.set_current(root, "v1")
    frozen = pd.read_csv(data, dtype=str)
    freeze_eval(root, frozen[frozen["department"] != "气象局"], "test")  # 档案馆 but no 气象局
    notes = promote_checked(root, "v2", apply=False).comparison["notes"]
    assert (
        "department: merged into 其他 by the challenger's training and learnt by neither model, "
        "so scored under their own names for both: 档案馆"
    ) in notes, notes
    assert not [n for n in notes if "气象局" in n], notes


def test_retrain_says_the_feedback_window_it_read_in_utc(
    tiny_root: tuple[Path, Path], tmp_path: Path
) -> None:
    # `--feedback-since 2026-12-07` typed at a centre in UTC+8 is 08:00 there: the decisions of
    # the first eight hours were left out, and the log said only "feedback: N record(s) read".
    from typer.testing import CliRunner

    from paidan.cli import app
    from serve.db import Database

    root, history = tiny_root
    db = Database(f"sqlite:///{tmp_path / 'var' / 'paidan.db'}")
    for at in (datetime(2026, 12, 6, 20, tzinfo=UTC), datetime(2026, 12, 7, 9, tzinfo=UTC)):
        db.add_feedback(text="油烟扰民", department="城管", created_at=at)  # 04:00, 17:00 in UTC+8
    db.dispose()
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    base = ["retrain", "--history", str(history), "--if-new-feedback", "5"]
    said = {}
    for since in ("2026-12-07", "2026-12-07T00:00:00+08:00"):
        r = CliRunner().invoke(app, [*base, "--feedback-since", since], env=env)
        assert r.exit_code == 0, r.output
        said[since] = " ".join(r.output.split())
    assert (
        "feedback: 1 record(s) from 2026-12-07 UTC on (1 older left out), read from sqlite:///"
        in said["2026-12-07"]
    )
    assert (
        "feedback: 2 record(s) from 2026-12-06 16:00:00 UTC (2026-12-07T00:00:00+08:00) on, "
        "read from sqlite:///" in said["2026-12-07T00:00:00+08:00"]
    )


def test_a_rare_new_label_close_to_a_known_one_is_named_as_a_possible_misspelling() -> None:
    # 市场监督 for 市场监管, sent through the API: "collect more examples" was the only advice.
    result = RetrainResult(
        new_labels={"department": {"市场监督": 1, "信访局": 2}},
        known_labels={"department": ["住建", "市场监管", "其他"]},
    )
    warnings = result.warnings(min_examples=5)
    assert (
        "new department '市场监督' (not in the current model) has 1 row: below min_examples (5): "
        "merged into 其他 for this model; collect more examples, or, if it is the same department "
        "as '市场监管', map it to that with --mapping"
    ) in warnings
    assert [w for w in warnings if "信访局" in w and "the same department" not in w]


def test_retrain_names_the_known_label_a_rare_new_one_may_misspell(
    tiny_root: tuple[Path, Path],
) -> None:
    root, history = tiny_root
    records = [{**fb(1, "N1", "住建局", 0, text="小区电梯坏了一个月没人修"), "created_at": T0}]
    result = retrain([history], records, root)
    said = [w for w in result.warnings(min_examples=3) if "'住建局'" in w]
    assert len(said) == 1 and said[0].endswith(
        "if it is the same department as '住建', map it to that with --mapping"
    )


def test_a_decision_without_an_id_and_one_with_an_id_on_the_same_text_are_one_ticket() -> None:
    # The dispatcher first decided on the text pasted into the page (no ticket id), then on the
    # ticket itself: one ticket, trained once with its latest decision, not twice.
    records = [
        fb(1, None, "执法", 0, text="楼下烧烤店油烟很大"),
        fb(2, "A9", "住建", 10, text="楼下烧烤店油烟很大"),
        # The other way round: the id first, the decision without it last (it wins, the id stays).
        fb(3, "B7", "执法", 20, text="电梯频繁故障困人"),
        fb(4, "", "人社", 30, text="电梯频繁故障困人"),
    ]
    df, summary = feedback_frame(records)
    decisions = sorted(zip(df["id"], df["text"], df["department"], strict=True))
    assert decisions == [("A9", "楼下烧烤店油烟很大", "住建"), ("B7", "电梯频繁故障困人", "人社")]
    assert (summary.records, summary.tickets, summary.superseded) == (4, 2, 2)
    assert summary.unnumbered_merged == 2
    assert summary.to_dict()["decisions_without_id_merged"] == 2


def test_a_decision_without_an_id_on_a_text_two_ids_share_stays_a_ticket_of_its_own() -> None:
    # Two citizens sent the same short text: which of them the decision without an id is on is
    # unknown, so it is neither ticket's correction.
    records = [
        fb(1, "A1", "执法", 0, text="噪音扰民"),
        fb(2, "A2", "住建", 10, text="噪音扰民"),
        fb(3, None, "人社", 20, text="噪音扰民"),
    ]
    df, summary = feedback_frame(records)
    assert sorted(df["department"]) == ["人社", "住建", "执法"]
    assert (summary.tickets, summary.superseded, summary.unnumbered_merged) == (3, 0, 0)


def test_a_decision_without_an_id_replaces_the_history_row_of_its_text(
    tmp_path: Path, tiny_config: TrainingConfig
) -> None:
    # History ticket 5 decided again on the page, without its number: the same ticket, trained
    # once with the decision (it was trained twice, with both labels).
    root, history = _numbered_history(tmp_path)
    records = [{**fb(1, None, "住建", 0, text=TINY_TICKETS[4][1]), "created_at": datetime.now(UTC)}]
    result = retrain([history], records, root, config=tiny_config)
    assert result.feedback.replaced_history == 1
    assert result.rows == {"history": 14, "feedback": 1}


def test_retrain_says_how_many_decisions_without_an_id_were_merged_into_their_ticket(
    tiny_root: tuple[Path, Path], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from paidan.cli import app
    from serve.db import Database

    root, history = tiny_root
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    db = Database(f"sqlite:///{tmp_path / 'var' / 'paidan.db'}")
    db.add_feedback(text="小区电梯坏了一个月没人修", department="执法", category="城建")
    db.add_feedback(
        ticket_id="N7", text="小区电梯坏了一个月没人修", department="住建", category="城建"
    )
    db.dispose()
    r = CliRunner().invoke(app, ["retrain", "--history", str(history)], env=env)
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert (
        "feedback (2 feedback records for 1 ticket, 1 superseded by a later decision, "
        "1 decision without a ticket id merged into its ticket (same text), 0 history rows "
        "replaced); "
    ) in said


def test_retrain_names_a_known_department_as_train_does_and_not_one_alike_in_its_county_parts() -> (
    None
):
    # retrain's own likeness (difflib's ratio of the whole names) called 市住建局 a misspelling of
    # 区住建局 (the district's) and 区城管局 one of 区城建局, and missed 人社局 for
    # 县人力资源和社会保障局; both commands now ask training.validate.similar_label.
    result = RetrainResult(
        new_labels={"department": {"市住建局": 1, "区城管局": 1, "人社局": 1, "县医保局": 1}},
        known_labels={
            "department": ["区住建局", "区城建局", "县人力资源和社会保障局", "县卫健局", "其他"]
        },
    )
    hints = {
        w.split("'")[1]: w.rsplit("collect more examples", 1)[1]
        for w in result.warnings(min_examples=5)
    }
    assert hints == {
        "市住建局": "",
        "区城管局": "",
        "人社局": ", or, if it is the same department as '县人力资源和社会保障局', map it to that "
        "with --mapping",
        "县医保局": "",
    }


def test_the_frozen_set_keeps_a_joint_dispatchs_co_departments_and_scores_the_advice(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The frozen set kept the lead department alone: the joint-dispatch advice, which evaluate
    # scores on any labelled file, could never be scored on it.
    from model.artifact import load_router
    from model.tickets import CO_COL
    from training.compare import markdown_comparison, read_frozen_eval, score_router
    from training.evaluate import JointCounts
    from training.retrain import freeze_eval

    root = tmp_path / "models"
    df = pd.read_csv(write_tiny_csv(tmp_path / "tiny.csv"), dtype=str).fillna("")
    co = ["执法；住建" if i == 0 else "住建" if i == 1 else "" for i in range(len(df))]
    freeze_eval(root, df.assign(**{CO_COL: co}), "test")
    read, _ = read_frozen_eval(root)
    assert list(read["department"]) == list(df["department"])  # scored by the lead
    assert list(read[CO_COL]) == co
    router, _ = load_router(tiny_model_dir)
    scores = score_router(router, read)
    joint = scores["joint"]
    assert (joint["rows"], joint["joint_rows"], joint["true_co_departments"]) == (len(df), 2, 3)
    report = compare(scores, scores)
    assert report["joint"] == {"champion": joint, "challenger": joint}
    assert "## Joint dispatch (会办)" in markdown_comparison(report)
    # A renamed lead is still the suggested lead: the advice is scored on the same tickets.
    renamed = score_router(router, read, {"department": {"住建": "住建局"}})["joint"]
    assert renamed["wrong_lead_rows"] == joint["wrong_lead_rows"] < len(df)
    assert renamed["joint_rows"] == joint["joint_rows"]
    # Renamed co-departments are scored under their new names, as the true labels are.
    truths: list[str] = []
    monkeypatch.setattr(JointCounts, "add", lambda self, co, lead, found, true: truths.append(co))
    score_router(router, read, {"department": {"住建": "住建局"}})
    assert truths[:2] == ["执法；住建局", "住建局"]


def test_feedback_a_rolled_back_version_was_trained_on_is_not_new_feedback(
    tiny_root: tuple[Path, Path],
) -> None:
    # The nightly `retrain --if-new-feedback N --promote-if-better` after a rollback counted the
    # decisions the rolled-back version had been trained on as new (newer than the version rolled
    # back to), retrained on them at once and promoted what the administrator had rolled back.
    from training.retrain import feedback_cutoff

    root, history = tiny_root
    now = datetime.now(UTC)
    texts = ["小区电梯坏了一个月没人修", "楼下烧烤店油烟很大", "公司拖欠工资三个月"]
    week1 = [{**fb(1, "W1", "住建", 0, text=texts[0]), "created_at": now - timedelta(days=8)}]
    week2 = [
        {**fb(i, f"W2-{i}", "执法", 0, text=t), "created_at": now - timedelta(days=1, minutes=i)}
        for i, t in enumerate(texts[1:], 2)
    ]
    first = retrain([history], week1, root, promote_if_better=True, force=True)
    second = retrain([history], week1 + week2, root, promote_if_better=True, force=True)
    assert registry.current_version(root) == second.version
    registry.rollback(root)
    assert registry.current_version(root) == first.version
    assert count_new_feedback(week1 + week2, feedback_cutoff(root)) == 0  # was 2
    skipped = retrain([history], week1 + week2, root, if_new_feedback=1, promote_if_better=True)
    assert skipped.skipped and registry.current_version(root) == first.version
    # A decision after the rolled-back version's is new.
    later = [{**fb(9, "W3", "人社", 0, text="社保断缴半年"), "created_at": now}]
    assert count_new_feedback(week1 + week2 + later, feedback_cutoff(root)) == 1


def test_a_ticket_two_dispatchers_decided_differently_is_warned_of() -> None:
    # Two dispatchers' conflicting decisions were counted as "superseded", as a dispatcher's own
    # second thoughts are: the disagreement was trained silently, the latest one winning.
    records = [
        {**fb(1, "A", "住建", 0), "dispatcher_id": "d1"},
        {**fb(2, "A", "执法", 5), "dispatcher_id": "d2"},  # another dispatcher, another label
        {**fb(3, "B", "住建", 0, text="电梯坏了"), "dispatcher_id": "d1"},
        {**fb(4, "B", "人社", 5, text="电梯坏了"), "dispatcher_id": "d1"},  # second thoughts
        {**fb(5, "C", "人社", 0, text="欠薪"), "dispatcher_id": "d1"},
        {**fb(6, "C", "人社", 5, text="欠薪"), "dispatcher_id": "d2"},  # agreed
    ]
    df, summary = feedback_frame(records)
    assert dict(zip(df["id"], df["department"], strict=True)) == {
        "A": "执法",
        "B": "人社",
        "C": "人社",
    }
    assert (summary.superseded, summary.disputed) == (3, 1)
    warnings = RetrainResult(feedback=summary).warnings(min_examples=3)
    assert warnings == [
        "1 ticket was decided with different labels by different dispatchers (e.g. feedback data "
        "rows 1, 2): the latest decision of each is trained; check them in the feedback export "
        "(GET /v1/feedback)"
    ]


def test_feedback_ids_written_otherwise_are_one_ticket() -> None:
    # A full-width copy of an id, one with a zero-width space, or é written as e and an accent
    # kept its own decision: the ticket was trained twice, with the superseded label too.
    records = [
        fb(1, "２０２６１２０６００１", "执法", 0),
        fb(2, "20261206\u200b001", "住建", 10),
        fb(3, "caf\u00e9-7", "人社", 0, text="电梯频繁故障困人"),
        fb(4, "cafe\u0301-7 ", "执法", 10, text="电梯频繁故障困人"),
        fb(5, "A7", "人社", 0, text="广场舞噪音扰民"),
        fb(6, "a7", "执法", 10, text="广场舞噪音扰民"),  # case counts: another ticket's id
    ]
    df, summary = feedback_frame(records)
    assert (summary.records, summary.tickets, summary.superseded) == (6, 4, 2)
    assert summary.ambiguous == set()
    # The latest decision, with its id as it was sent.
    assert sorted(zip(df["id"], df["department"], strict=True)) == [
        ("20261206\u200b001", "住建"),
        ("A7", "人社"),
        ("a7", "执法"),
        ("cafe\u0301-7 ", "执法"),
    ]


def test_feedback_ids_written_otherwise_match_their_history_ticket(
    tmp_path: Path, tiny_config: TrainingConfig
) -> None:
    # History ticket 5 corrected under a full-width "５" (or "5\u200b") was taken for another
    # ticket: the history row was trained beside the correction, with its old label.
    root, history = _numbered_history(tmp_path)
    now = datetime.now(UTC)
    records = [
        {**fb(1, "５", "人社", 0, text=TINY_TICKETS[4][1]), "created_at": now - timedelta(hours=1)},
        {**fb(2, "5\u200b", "住建", 0, text=TINY_TICKETS[4][1]), "created_at": now},
    ]
    result = retrain([history], records, root, config=tiny_config)
    assert (result.feedback.tickets, result.feedback.superseded) == (1, 1)
    assert result.feedback.replaced_history == 1
    assert result.feedback.other_tickets == 0
    assert result.rows == {"history": 14, "feedback": 1}


def test_feedback_a_refused_challenger_was_trained_on_is_not_new_until_more_arrives(
    tiny_root: tuple[Path, Path],
) -> None:
    # A challenger the promotion rule refused left its decisions counted as new: the nightly
    # `retrain --if-new-feedback N --promote-if-better` trained on the same corrections every night,
    # and was refused every night, until a person looked.
    from training.retrain import feedback_cutoff

    root, history = tiny_root
    champion = registry.current_version(root)
    soon = datetime.now(UTC) + timedelta(minutes=1)  # after the champion was trained
    # Three of the five 执法 history tickets relabelled: 执法 falls under min_examples, and the
    # challenger loses a label the champion had.
    wrong = [
        {**fb(i, f"T{n:03d}", "住建", 0, text=TINY_TICKETS[n - 1][1]), "created_at": soon}
        for i, n in enumerate((8, 9, 10), 1)
    ]
    refused = retrain([history], wrong, root, if_new_feedback=1, promote_if_better=True)
    assert refused.decision is not None and refused.decision.refused, refused.decision
    assert registry.current_version(root) == champion
    assert count_new_feedback(wrong, feedback_cutoff(root)) == 0  # was 3
    again = retrain([history], wrong, root, if_new_feedback=1, promote_if_better=True)
    assert again.skipped and "refused" in again.message, again.message
    assert sorted(registry.versions(root)) == sorted([champion, refused.version])  # no new one
    # A decision after the refused challenger's is new, and the next retrain trains all four.
    later = [
        {**fb(9, "L1", "人社", 0, text="社保断缴半年"), "created_at": soon + timedelta(hours=1)}
    ]
    assert count_new_feedback(wrong + later, feedback_cutoff(root)) == 1
    third = retrain([history], wrong + later, root, if_new_feedback=1)
    assert not third.skipped and third.rows["feedback"] == 4


def test_feedback_before_feedback_since_is_said_with_its_dates_and_the_history_tickets_it_leaves(
    tiny_root: tuple[Path, Path], tmp_path: Path
) -> None:
    # `--feedback-since` dropped the decisions before it without a word: a dispatcher's correction
    # of a history ticket was lost, and the history's own (corrected) label trained instead.
    from typer.testing import CliRunner

    from model.artifact import read_metadata
    from paidan.cli import app
    from serve.db import Database

    root, history = tiny_root
    before = set(registry.versions(root))
    db = Database(f"sqlite:///{tmp_path / 'var' / 'paidan.db'}")
    old1, old2, new = (datetime(2026, 11, d, 9, tzinfo=UTC) for d in (1, 20, 25))
    for ticket, n, dept, at in (
        ("T008", 8, "住建", old1),  # a history ticket corrected before the bound
        ("T009", 9, "住建", old1),  # … and decided again since: that decision is trained
        ("T009", 9, "执法", new),
        ("L1", None, "人社", old2),  # a live ticket
        ("L2", None, "人社", new),
    ):
        text = TINY_TICKETS[n - 1][1] if n else f"社保断缴{ticket}"
        db.add_feedback(
            ticket_id=ticket, text=text, department=dept, category="环境", created_at=at
        )
    db.dispose()
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    args = ["retrain", "--history", str(history), "--feedback-since", "2026-11-21"]
    r = CliRunner().invoke(app, args, env=env)
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert "feedback: 2 record(s) from 2026-11-21 UTC on (3 older left out)" in said, said
    assert (
        "warning: 3 feedback decisions from before --feedback-since (2026-11-21 UTC) left out, "
        "made from 2026-11-01 09:00:00 UTC to 2026-11-20 09:00:00 UTC; 1 of them is on a history ticket not decided "
        "since, which trains with its history label" in said
    ), said
    (version,) = set(registry.versions(root)) - before  # created in the champion's second, maybe
    recorded = read_metadata(root / version)["training_data"]["feedback"]["before_since"]
    assert recorded == {
        "since": "2026-11-21T00:00:00+00:00",
        "records": 3,
        "oldest": "2026-11-01T09:00:00+00:00",
        "newest": "2026-11-20T09:00:00+00:00",
        "history_tickets": 1,
    }


def test_retrain_that_cannot_write_the_pointer_stops_in_one_line_naming_it(
    tiny_root: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `models promote` and `rollback` stop in one line on a full disk; the nightly
    # `retrain --promote-if-better` ended in a traceback at the same write.
    from typer.testing import CliRunner

    from paidan.cli import app

    root, history = tiny_root
    champion = registry.current_version(root)

    def full(root_: Path, version: str) -> None:
        raise registry.RegistryWriteError(28, "No space left on device", str(root_ / "current"))

    monkeypatch.setattr(registry, "_write_pointer", full)
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    # The margin rule promotes the retrained tiny model, so the promotion reaches the pointer.
    args = [
        "retrain",
        "--history",
        str(history),
        "--promote-if-better",
        "--promotion-rule",
        "margin",
    ]
    r = CliRunner().invoke(app, args, env=env)
    assert r.exit_code == 2, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert lines[-1] == f"error: cannot write {root / 'current'}: No space left on device", r.output
    assert registry.current_version(root) == champion


def test_feedback_left_out_at_one_time_is_said_at_that_time() -> None:
    result = RetrainResult()
    result.feedback.before_since = {
        "since": "2026-12-01T00:00:00+00:00",
        "records": 2,
        "oldest": "2026-11-01T10:00:00+00:00",
        "newest": "2026-11-01T10:00:00+00:00",
        "history_tickets": 0,
    }
    assert result.warnings(min_examples=5) == [
        "2 feedback decisions from before --feedback-since (2026-12-01 UTC) left out, made at "
        "2026-11-01 10:00:00 UTC"
    ]


def test_the_nightly_skip_is_one_line_in_the_log(
    tiny_root: tuple[Path, Path], tmp_path: Path
) -> None:
    # The cron log read "…--if-new-feedback asks for 50: not" and "retraining" on the next line:
    # a log line cut at 80 columns, which a `grep 'not retraining'` of the log does not find.
    from typer.testing import CliRunner

    from paidan.cli import app

    root, history = tiny_root
    args = ["retrain", "--history", str(history), "--if-new-feedback", "5"]
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    r = CliRunner().invoke(app, args, env=env)
    assert r.exit_code == 0, r.output
    skip = [line for line in r.output.splitlines() if "new feedback record(s) since" in line]
    assert len(skip) == 1 and skip[0].endswith("--if-new-feedback asks for 5: not retraining")


def test_retrain_counts_frozen_tickets_left_out_once_however_often_the_history_repeats_them(
    tiny_root: tuple[Path, Path], tmp_path: Path
) -> None:
    # A frozen ticket written twice in the history counted twice: "4 frozen evaluation tickets
    # left out" of a frozen set of 3. The tickets are counted, and the rows when they differ.
    from typer.testing import CliRunner

    from paidan.cli import app

    root, _ = tiny_root
    tickets = pd.read_csv(write_tiny_csv(tmp_path / "tiny.csv"), dtype=str)
    history = tmp_path / "repeated.csv"  # all 18 tickets, T001 (frozen) twice
    pd.concat([tickets, tickets.iloc[[0]]]).to_csv(history, index=False)
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    r = CliRunner().invoke(app, ["retrain", "--history", str(history)], env=env)
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert "3 frozen evaluation tickets (4 history rows) left out" in said


def test_paidan_retrain_says_its_data_warnings_before_the_fit_and_once(
    tiny_root: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The warnings (repeated tickets, conflicting or blank labels) came after the fit, minutes on
    # a nightly history: a run killed during it named none of the problems it had found.
    from typer.testing import CliRunner

    import training.train as training_train
    from paidan.cli import app

    def killed(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt  # the run stopped during the fit

    root, _ = tiny_root
    tickets = pd.read_csv(write_tiny_csv(tmp_path / "tiny.csv"), dtype=str)
    history = tmp_path / "repeated.csv"  # T002 written twice
    pd.concat([tickets, tickets.iloc[[1]]]).to_csv(history, index=False)
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    monkeypatch.setattr(training_train, "fit_router", killed)
    r = CliRunner().invoke(app, ["retrain", "--history", str(history)], env=env)
    assert r.exit_code != 0
    assert "warning: dropped 1 row that repeats an earlier row" in " ".join(r.output.split())
    monkeypatch.undo()
    r = CliRunner().invoke(app, ["retrain", "--history", str(history)], env=env)
    assert r.exit_code == 0, r.output
    lines = [line for line in r.output.splitlines() if line.startswith("warning:")]
    assert len(lines) == len(set(lines)) > 0, r.output  # each said once, not again after the fit


def test_the_retrain_summary_says_the_rows_the_fit_used_when_validation_dropped_some(
    tiny_root: tuple[Path, Path], tmp_path: Path
) -> None:
    # "training rows: 646 history + 60 feedback" while 6 repeated tickets were dropped before the
    # fit: the rows it used are said beside those read, and models list shows them too.
    from typer.testing import CliRunner

    from paidan.cli import app

    root, _ = tiny_root
    tickets = pd.read_csv(write_tiny_csv(tmp_path / "tiny.csv"), dtype=str)
    history = tmp_path / "repeated.csv"  # T002 and T003 (not frozen) written twice
    pd.concat([tickets, tickets.iloc[[1, 2]]]).to_csv(history, index=False)
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    r = CliRunner().invoke(app, ["retrain", "--history", str(history)], env=env)
    assert r.exit_code == 0, r.output
    # 20 rows, 3 of them frozen tickets left out: 17 history rows, 2 of them repeats.
    assert "training rows: 17 history + 0 feedback, 15 used (" in " ".join(r.output.split())
    [challenger] = [w.split()[1] for w in r.output.splitlines() if w.startswith("challenger ")]
    listed = CliRunner().invoke(app, ["models", "list", "--json"], env=env)
    [row] = [m for m in json.loads(listed.output) if m["version"] == challenger]
    assert (row["rows"]["history"], row["rows_used"]) == (17, 15)


@pytest.mark.parametrize(
    ("stop", "code", "said"),
    [("ctrl-c", 130, "interrupted"), ("sigterm", 143, "stopped by SIGTERM")],
)
def test_a_retrain_stopped_during_the_fit_says_what_it_left_in_the_registry(
    tiny_root: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stop: str,
    code: int,
    said: str,
) -> None:
    # Ctrl-C (or systemd's or timeout's SIGTERM) during the fit ended `retrain` with an empty
    # stderr (exit 130), or, for SIGTERM, without unwinding at all: the administrator was left to
    # guess whether a challenger had been written or current had moved.
    import signal

    from typer.testing import CliRunner

    import training.train as training_train
    from paidan.cli import app

    def stopped(*args: Any, **kwargs: Any) -> None:
        if stop == "ctrl-c":
            raise KeyboardInterrupt
        # Sent as systemd sends it; the handler must turn it into an orderly stop.
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, "SIGTERM would kill it"
        signal.raise_signal(signal.SIGTERM)

    root, history = tiny_root
    before = registry.versions(root)
    current = registry.current_version(root)
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    monkeypatch.setattr(training_train, "fit_router", stopped)
    r = CliRunner().invoke(app, ["retrain", "--history", str(history)], env=env)
    assert r.exit_code == code, r.output
    assert registry.versions(root) == before and registry.current_version(root) == current
    text = " ".join(r.output.split())
    assert f"{said} before a challenger was written: no model was added to the registry" in text
    assert f"current is still {current}" in text
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is restored


def test_a_retrain_stopped_after_writing_its_challenger_names_it_and_how_to_compare_it(
    tiny_root: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stopped during the comparison, the challenger is registered but neither scored nor
    # promoted: the line names it and the command that compares and promotes it.
    from typer.testing import CliRunner

    import training.retrain as training_retrain
    from paidan.cli import app

    def stopped(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    root, history = tiny_root
    before = set(registry.versions(root))
    current = registry.current_version(root)
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    monkeypatch.setattr(training_retrain, "promote_checked", stopped)
    r = CliRunner().invoke(app, ["retrain", "--history", str(history)], env=env)
    assert r.exit_code == 130, r.output
    [new] = set(registry.versions(root)) - before
    text = " ".join(r.output.split())
    assert (
        f"interrupted after the challenger {new} was written, before it was compared with the "
        f"current model; current is still {current}; compare and promote it with: paidan models "
        f"promote {new}"
    ) in text


def test_a_first_retrain_stopped_during_the_fit_says_the_evaluation_set_it_froze_stays(
    tmp_path: Path, tiny_config: TrainingConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first retrain freezes its evaluation set before the fit; stopped, the set stays and the
    # next run is scored on it, which the administrator is told rather than left to find.
    from typer.testing import CliRunner

    import training.train as training_train
    from paidan.cli import app
    from training.train import train

    root = tmp_path / "models"
    data = write_tiny_csv(tmp_path / "tiny.csv")
    train([data], None, config=tiny_config, model_root=root)

    def stopped(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    monkeypatch.setattr(training_train, "fit_router", stopped)
    r = CliRunner().invoke(app, ["retrain", "--history", str(data)], env=env)
    assert r.exit_code == 130, r.output
    assert registry.frozen_eval_info(root) is not None
    text = " ".join(r.output.split())
    assert (
        "the evaluation set it froze (20% of tiny.csv) stays: the next retrain is scored on it"
        in text
    )


def test_a_retrain_on_a_full_disk_names_the_challenger_it_could_not_write(
    tiny_root: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "error: [Errno 28] No space left on device": which file, which disk, was anything kept?
    import errno

    import joblib
    from typer.testing import CliRunner

    from paidan.cli import app

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    root, history = tiny_root
    before = registry.versions(root)
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    monkeypatch.setattr(joblib, "dump", full)  # model.artifact imports it where it writes
    r = CliRunner().invoke(app, ["retrain", "--history", str(history)], env=env)
    assert r.exit_code == 2, r.output
    [said] = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert said.startswith(f"error: cannot write the model {root}/"), said
    assert said.endswith(
        ": No space left on device (nothing of it was kept; free space on that disk and run the "
        "command again)"
    ), said
    assert registry.versions(root) == before
    assert not [
        p
        for p in root.iterdir()
        if p.name.startswith(".") and p.is_dir() and p.name not in (".leases",)
    ]


def test_a_second_retrain_on_the_same_root_is_refused_while_the_first_runs(
    tiny_root: tuple[Path, Path], tmp_path: Path
) -> None:
    # Two retrains at once (the nightly job, and the administrator by hand) each trained the
    # same challenger, minutes of both cores, and registered it twice; the second is refused at
    # once, naming the first, and the registry is left as it was.
    import fcntl
    import os

    from typer.testing import CliRunner

    from paidan.cli import app

    root, history = tiny_root
    before = registry.versions(root)
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    fd = os.open(root / registry.RETRAIN_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the first retrain, as it holds it
        os.write(fd, b"4242 2026-12-07T02:30:00+00:00\n")
        r = CliRunner().invoke(app, ["retrain", "--history", str(history)], env=env)
    finally:
        os.close(fd)
    assert r.exit_code == 2, r.output
    [said] = [line for line in " ".join(r.output.split()).split("error: ")[1:]]
    assert said.startswith(
        f"another paidan retrain is running on {root} (pid 4242, since 2026-12-07T02:30:00+00:00)"
    ), said
    assert registry.versions(root) == before
    r = CliRunner().invoke(app, ["retrain", "--history", str(history)], env=env)
    assert r.exit_code == 0, r.output  # the lock ends with the run that held it
    assert len(registry.versions(root)) == len(before) + 1


def test_a_history_of_frozen_evaluation_tickets_only_is_refused_before_the_fit(
    tiny_root: tuple[Path, Path], tmp_path: Path
) -> None:
    # `retrain --history eval.csv` (the file the set was frozen from, taken for the history):
    # every row was left out as a frozen ticket, and a challenger was fitted and registered on the
    # feedback alone, minutes later, refused for losing every label.
    from typer.testing import CliRunner

    from paidan.cli import app

    root, _ = tiny_root
    tickets = pd.read_csv(write_tiny_csv(tmp_path / "tiny.csv"), dtype=str)
    wrong = tmp_path / "eval.csv"
    tickets.iloc[[0, 6, 12]].to_csv(wrong, index=False)  # the frozen set of tiny_root
    before = registry.versions(root)
    env = {"PAIDAN_MODEL_ROOT": str(root), "PAIDAN_DATA_DIR": str(tmp_path / "var")}
    r = CliRunner().invoke(app, ["retrain", "--history", str(wrong)], env=env)
    assert r.exit_code == 2, r.output
    [said] = [line for line in " ".join(r.output.split()).split("error: ")[1:]]
    assert said == (
        f"{wrong}: every one of its 3 history rows is a ticket of the frozen evaluation set "
        "(test), which is never trained on, so no history is left to train: give --history the "
        "ticket history (the set is scored, not trained)"
    ), said
    assert registry.versions(root) == before


def test_a_feedback_export_given_as_history_is_refused_naming_the_command_to_run(
    tiny_root: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # An administrator saved GET /v1/feedback and gave it to retrain --history while retrain also
    # read the same decisions from the feedback database: each was trained twice, the export's
    # rows as tickets numbered by the decisions' ids ("0 history rows replaced").
    from model.tickets import TicketFileError

    root, train_csv = tiny_root
    records = [fb(1, "S0002", "执法", 0), fb(2, "S0002", "住建", 5)]
    export = tmp_path / "exports" / "feedback.jsonl"
    export.parent.mkdir()
    export.write_text(
        "".join(
            json.dumps(
                {
                    **r,
                    "suggestion": None,
                    "dispatcher_id": None,
                    "model_version": "v1",
                    "created_at": r["created_at"].isoformat(),
                    "request_id": None,
                },
                ensure_ascii=False,
            )
            + "\n"
            for r in records
        ),
        encoding="utf-8",
    )
    before = registry.versions(root)
    for given, advice in (
        (
            export,
            "give it with --feedback instead: paidan retrain "
            f"--history {train_csv} --feedback {export}",
        ),
        (
            export.parent,
            f"move it out of {export.parent} and give it with --feedback: paidan retrain "
            f"--history {train_csv} --history {export.parent} --feedback MOVED",
        ),
    ):
        caplog.clear()
        with pytest.raises(TicketFileError) as e:
            retrain([train_csv, given], records, root)
        said = str(e.value)
        assert said.startswith(f"{export}: is paidan's feedback export (GET /v1/feedback"), said
        assert "retrain reads the dispatchers' decisions from the feedback database" in said
        assert "2 decisions" in said and "trained twice" in said, said
        assert advice in said, said
        # The refusal alone: the reader's own warning about the file said the same just before.
        assert not [r for r in caplog.records if "feedback export" in r.getMessage()], caplog.text
    # Read through a window of the history (a chunk at a time), alike.
    from training.window import Window

    caplog.clear()
    with pytest.raises(TicketFileError, match="give it with --feedback instead"):
        retrain([train_csv, export], records, root, window=Window(max_rows=10))
    assert not [r for r in caplog.records if "feedback export" in r.getMessage()], caplog.text
    # Run where the server's database is not (another host): the export is read with --feedback.
    with pytest.raises(TicketFileError) as e:
        retrain([train_csv, export], [], root)
    said = str(e.value)
    assert "trained twice" not in said, said
    assert (
        f"give it with --feedback instead: paidan retrain --history {train_csv} --feedback" in said
    )
    assert registry.versions(root) == before


def test_models_list_says_a_version_never_scored_on_the_frozen_set_is_not_scored(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    # A `train --out` model never scored on the frozen set was listed with seen_eval_rows 0, as if
    # it had seen none of the frozen tickets; only --rescore showed it had been trained on all.
    import shutil

    from typer.testing import CliRunner

    from paidan.cli import app
    from training.retrain import freeze_eval

    rows = pd.read_csv(write_tiny_csv(tmp_path / "tiny.csv"), dtype=str)
    root = tmp_path / "models"
    shutil.copytree(tiny_model_dir, root / "v1")
    freeze_eval(root, rows, "test")
    env = {"PAIDAN_MODEL_ROOT": str(root), "COLUMNS": "200"}
    r = CliRunner().invoke(app, ["models", "list", "--json"], env=env)
    assert r.exit_code == 0, r.output
    [listed] = json.loads(r.output)
    assert listed["seen_eval_rows"] is None and listed["metrics"] == {}, listed
    r = CliRunner().invoke(app, ["models", "list"], env=env)
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert (
        "not scored on the frozen set yet: v1 (F1 –, and how many frozen tickets it was trained "
        "on is not known); `paidan models list --rescore` scores it" in text
    ), text
    r = CliRunner().invoke(app, ["models", "list", "--json", "--rescore"], env=env)
    [listed] = json.loads(r.output)
    assert listed["seen_eval_rows"] == len(rows), listed


def test_a_model_root_that_cannot_be_written_is_refused_before_the_fit(
    tiny_root: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A root another account owns: retrain (and train without --out) read, froze and fitted
    # everything, then stopped with "--out ROOT/V cannot be written", an option never given.
    import tempfile

    from typer.testing import CliRunner

    from paidan.cli import app
    from tests.conftest import without_progress

    root, history = tiny_root
    # Where no directory can be made: a file's "child".
    blocked = tmp_path / "a-file"
    blocked.write_text("", encoding="utf-8")
    env = {"PAIDAN_MODEL_ROOT": str(blocked / "models"), "PAIDAN_DATA_DIR": str(tmp_path / "v")}
    r = CliRunner().invoke(app, ["train", str(history)], env=env)
    said = " ".join(without_progress(r.output).split())
    assert r.exit_code == 2, said
    assert said.startswith(
        f"error: the model root {blocked / 'models'} (PAIDAN_MODEL_ROOT) cannot be written: "
    ), said
    assert "--out" not in said and "fitting" not in r.output, r.output
    # A root that exists, holds the current model, and refuses new entries.
    real_temp, real_mkdir = tempfile.NamedTemporaryFile, Path.mkdir

    def no_temp(*args: Any, **kwargs: Any) -> Any:
        if Path(kwargs.get("dir") or ".") == root:
            raise PermissionError(13, "Permission denied")
        return real_temp(*args, **kwargs)

    def no_mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        if self.parent == root and not self.exists():
            raise PermissionError(13, "Permission denied", str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", no_temp)
    monkeypatch.setattr(Path, "mkdir", no_mkdir)
    before = registry.versions(root)
    env["PAIDAN_MODEL_ROOT"] = str(root)
    r = CliRunner().invoke(app, ["retrain", "--history", str(history)], env=env)
    said = " ".join(without_progress(r.output).split())
    assert r.exit_code == 2, said
    assert (
        f"error: the model root {root} (PAIDAN_MODEL_ROOT) cannot be written: Permission denied"
        in said
    ), said
    assert "--out" not in said and "fitting" not in r.output, r.output
    assert registry.versions(root) == before
