"""Joint dispatch (会办): a department cell naming several departments, the lead first."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from model.artifact import load_router, load_serving_router
from model.config import TrainingConfig
from model.router import SimilarTicket, co_dispatch
from model.tickets import CO_COL, read_tickets, split_departments
from tests.conftest import write_tiny_csv
from training.evaluate import evaluate_router, joint_summary
from training.train import train

# Broken handrails and ramps: handled by 住建 with the disabled persons' federation (残联) and the
# street office. The rows of the tiny corpus stay single-department.
JOINT = [
    (
        "楼道扶手断了",
        "单元楼道扶手断裂多年，老人和残疾人上下楼很危险，请尽快修复",
        "住建；残联；街道办",
    ),
    ("无障碍坡道损坏", "小区无障碍坡道被破坏，轮椅无法通行，残疾人出行困难", "住建;残联;街道办"),
    ("楼梯扶手松动", "老旧小区楼梯扶手松动脱落，残疾人和老人摔倒过，希望改造", "住建；残联"),
    ("盲道被占", "小区门口盲道被占用还破损，视障居民出行困难，扶手也坏了", "住建；残联；街道办"),
]


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("住建局", ("住建局", [])),
        ("住建局；残联；街道办", ("住建局", ["残联", "街道办"])),
        (" 住建局 ; 残联;住建局 ;", ("住建局", ["残联"])),  # trimmed, repeats and blanks dropped
        ("；残联", ("残联", [])),
        ("", ("", [])),
        ('["住建局", "残联"]', ("住建局", ["残联"])),  # a JSONL or Parquet array
        ("[住建局]", ("[住建局]", [])),  # not JSON: one name as written
    ],
)
def test_split_departments(cell: str, expected: tuple[str, list[str]]) -> None:
    assert split_departments(cell) == expected


def write_joint_csv(path: Path) -> Path:
    """The tiny corpus (single-department tickets T001…), then the joint ones (J1…)."""
    write_tiny_csv(path)
    with open(path, "a", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(
            [f"J{i}", title, text, depts, "城建"] for i, (title, text, depts) in enumerate(JOINT, 1)
        )
    return path


def test_reading_keeps_the_lead_as_the_department_and_the_rest_beside_it(tmp_path: Path) -> None:
    df = read_tickets([write_joint_csv(tmp_path / "joint.csv")])
    joint = df[df["id"].str.startswith("J")]
    assert joint["department"].tolist() == ["住建"] * 4
    assert joint[CO_COL].tolist() == ["残联；街道办", "残联；街道办", "残联", "残联；街道办"]
    assert (df.loc[df["id"].str.startswith("T"), CO_COL] == "").all()
    # JSONL arrays too.
    jsonl = tmp_path / "joint.jsonl"
    jsonl.write_text(
        json.dumps(
            {"id": 1, "text": "扶手断了", "department": ["住建", "残联"]}, ensure_ascii=False
        ),
        encoding="utf-8",
    )
    row = read_tickets([jsonl]).iloc[0]
    assert (row["department"], row[CO_COL]) == ("住建", "残联")


def test_training_learns_the_lead_and_similar_tickets_show_the_joint_dispatch(
    tmp_path: Path, tiny_config: TrainingConfig
) -> None:
    result = train(
        [write_joint_csv(tmp_path / "joint.csv")], tmp_path / "model", config=tiny_config
    )
    labels = result.router.heads["department"].labels
    # No label for a combination of departments, and no co-department label from joint cells.
    assert labels == ["人社", "住建", "执法"]
    assert result.validation.joint_rows == 4
    assert result.metadata["training_data"]["validation"]["joint_rows"] == 4
    for router in (load_router(tmp_path / "model")[0], load_serving_router(tmp_path / "model")[0]):
        [suggestion] = router.predict([("楼道扶手坏了", "楼道扶手断裂，残疾人上下楼危险")])
        joint = [s for s in suggestion.similar if s.co_departments]
        assert joint and joint[0].department == "住建"
        assert joint[0].co_departments in (["残联", "街道办"], ["残联"])
        single = [s for s in suggestion.similar if s.id.startswith("T")]
        assert all(s.co_departments == [] for s in single)


def test_a_ticket_without_a_known_word_is_advised_no_joint_dispatch(
    tmp_path: Path, tiny_config: TrainingConfig
) -> None:
    # Punctuation shares characters with stored tickets, not a matter: no similar ticket is shown
    # for it, so no joint dispatch is read from them, by predict nor by batch labelling.
    train([write_joint_csv(tmp_path / "joint.csv")], tmp_path / "model", config=tiny_config)
    router, _ = load_router(tmp_path / "model")
    index = router.index
    assert index is not None and index.co_departments is not None
    # Every stored ticket a joint dispatch of 住建 and 残联: any two neighbours would advise 残联.
    index.departments[:] = "住建"
    index.co_departments[:] = "残联"
    index._members = None
    tickets = ["，，，。。。", "楼道扶手断裂，残疾人上下楼危险"]
    punctuation, known = router.predict(tickets)
    assert punctuation.similar == [] and punctuation.co_departments == []
    assert [c.label for c in known.co_departments] == ["残联"]
    X = router.transform(tickets)
    advice = router.joint_advice(X, ["住建", "住建"])
    assert advice == [punctuation.co_departments, known.co_departments]
    # Evaluation scores the advice the router gives: none for the punctuation.
    report = evaluate_router(
        router, ["", ""], tickets, {"department": ["住建", "住建"]}, co_departments=["", "残联"]
    )["joint"]
    assert (report["single_rows"], report["single_with_advice"]) == (1, 0)
    assert (report["joint_rows"], report["joint_exact"]) == (1, 1)


def test_a_model_without_joint_tickets_stores_nothing_for_them(tiny_model_dir: Path) -> None:
    router, _ = load_serving_router(tiny_model_dir)
    assert router.index is not None and router.index.co_departments is None
    [suggestion] = router.predict([("拖欠工资", "老板拖欠工资")])
    assert suggestion.similar and all(s.co_departments == [] for s in suggestion.similar)


def test_feedback_and_drift_count_a_joint_decision_for_its_lead(tiny_model_dir: Path) -> None:
    from training.drift import drift
    from training.retrain import feedback_frame

    when = datetime(2026, 5, 1, tzinfo=UTC)
    records = [
        {
            "id": 1,
            "ticket_id": "A",
            "text": "扶手断了",
            "department": "住建；残联",
            "created_at": when,
        },
        {"id": 2, "ticket_id": "B", "text": "欠薪", "department": "人社", "created_at": when},
    ]
    df, _ = feedback_frame(records)
    assert df[["department", CO_COL]].values.tolist() == [["住建", "残联"], ["人社", ""]]
    router, meta = load_router(tiny_model_dir)
    per_label = drift(router, meta, records)["psi"]["department"]["per_label"]
    assert {p["label"] for p in per_label} == {"人社", "住建", "执法"}


def test_retrain_history_and_feedback_keep_their_co_departments(
    tmp_path: Path, tiny_config: TrainingConfig
) -> None:
    from training.retrain import retrain

    root = tmp_path / "models"
    when = datetime.now(UTC)
    feedback = [
        {
            "id": 1,
            "ticket_id": "F1",
            "text": "小区无障碍通道被堵死，扶手也没了，轮椅出不去",
            "department": "住建；残联",
            "category": "城建",
            "created_at": when,
        }
    ]
    result = retrain([write_joint_csv(tmp_path / "joint.csv")], feedback, root, config=tiny_config)
    assert result.train is not None
    index = result.train.router.index
    assert index is not None and index.co_departments is not None
    co = dict(zip(index.ids, index.co_departments, strict=True))
    assert co["F1"] == "残联"
    assert pd.Series(co).str.len().gt(0).sum() >= 2  # frozen tickets are out; the rest stay


def similar(id_: str, department: str, *co: str) -> SimilarTicket:
    return SimilarTicket(
        id=id_, title="", department=department, co_departments=list(co), similarity=0.5
    )


def test_co_dispatch_counts_joint_tickets_that_involve_the_suggested_department() -> None:
    found = [
        similar("a", "市残联", "市住建局", "街道办事处"),
        similar("b", "市住建局", "市残联"),  # the suggestion as a co-department counts too
        similar("c", "市残联"),  # single-department: no vote
        similar("d", "市民政局", "街道办事处"),  # joint, but without the suggestion
        similar("e", "市残联", "街道办事处", "市卫健委"),
    ]
    hints = co_dispatch("市残联", found)
    assert [(h.label, h.tickets) for h in hints] == [
        ("市住建局", ["a", "b"]),
        ("街道办事处", ["a", "e"]),
    ]  # 市卫健委 has one ticket only; ties keep their order of appearance
    assert co_dispatch("市残联", found, min_tickets=1)[-1].label == "市卫健委"
    assert co_dispatch("市人社局", found) == []
    assert co_dispatch("市残联", []) == []


def test_an_index_pickled_before_joint_dispatch_still_answers(tiny_model_dir: Path) -> None:
    import pickle

    router, _ = load_serving_router(tiny_model_dir)
    assert router.index is not None
    old = pickle.loads(pickle.dumps(router.index))
    del old.__dict__["co_departments"]  # as unpickled from a model written before the field
    router.index = old
    [suggestion] = router.predict([("拖欠工资", "老板拖欠工资")])
    assert suggestion.similar and all(s.co_departments == [] for s in suggestion.similar)
    assert suggestion.co_departments == []


def test_joint_advice_report_counts_pairs_and_tickets() -> None:
    from training.evaluate import joint_advice_report

    found = [similar("a", "市残联", "市住建局"), similar("b", "市残联", "市住建局", "街道办事处")]
    report = joint_advice_report(
        ["市住建局；市卫健委", "", "市住建局"],  # truths: joint, single, joint
        ["市残联", "市残联", "市人社局"],  # the last suggestion has no joint neighbours
        [found, found, found],
        true_leads=["市残联", "市残联", "市人社局"],
    )
    # Advice for the first two tickets: 市住建局 (two tickets); 街道办事处 has one only.
    assert report["joint_rows"] == 2 and report["joint_any"] == 1 and report["joint_exact"] == 0
    assert report["single_rows"] == 1 and report["single_with_advice"] == 1
    assert (report["advised"], report["advised_right"], report["true_co_departments"]) == (2, 1, 3)
    assert report["precision"] == 0.5 and report["recall"] == pytest.approx(1 / 3)
    empty = joint_advice_report([], [], [], true_leads=[])
    assert empty["precision"] is None and empty["recall"] is None


def test_joint_advice_is_scored_only_on_tickets_whose_suggested_lead_is_right(
    tmp_path: Path, tiny_config: TrainingConfig
) -> None:
    # The advice names departments to involve beside the suggested lead, and the page keeps it
    # when the dispatcher changes the lead. It was scored against the true co-departments even
    # where the suggested lead was wrong: advice for another department than the ticket's was
    # counted right (or wrong) by coincidence of names, mixing the lead's errors into the
    # advice's precision and recall.
    train([write_joint_csv(tmp_path / "joint.csv")], tmp_path / "model", config=tiny_config)
    router, _ = load_router(tmp_path / "model")
    index = router.index
    assert index is not None and index.co_departments is not None
    index.departments[:] = "住建"  # every neighbour a joint dispatch of 住建 and 残联
    index.co_departments[:] = "残联"
    index._members = None
    text = "楼道扶手断裂，残疾人上下楼危险"
    [suggested] = router.predict([text])
    assert suggested.department is not None and suggested.department.label == "住建"
    assert [c.label for c in suggested.co_departments] == ["残联"]
    report = evaluate_router(
        router,
        ["", "", ""],
        [text, text, text],
        # Right lead and co-department; a wrong lead whose co-department happens to be the one
        # advised; a wrong lead, single-department.
        {"department": ["住建", "执法", "执法"]},
        co_departments=["残联", "残联", ""],
    )["joint"]
    assert (report["joint_rows"], report["joint_any"], report["joint_exact"]) == (1, 1, 1)
    assert (report["single_rows"], report["single_with_advice"]) == (0, 0)
    assert (report["advised"], report["advised_right"], report["true_co_departments"]) == (1, 1, 1)
    assert report["rows"] == 3 and report["wrong_lead_rows"] == 2
    assert report["joint_wrong_lead"] == 1
    said = " ".join(joint_summary(report).split())
    assert "on the 1 ticket whose suggested lead was right; 2 tickets with a wrong lead" in said
    assert report["precision"] == 1.0 and report["recall"] == 1.0


def test_evaluate_reports_joint_advice_only_on_data_with_joint_tickets(
    tmp_path: Path, tiny_config: TrainingConfig
) -> None:
    from typer.testing import CliRunner

    from paidan.cli import app
    from training.evaluate import evaluate

    data = write_joint_csv(tmp_path / "joint.csv")
    train([data], tmp_path / "model", config=tiny_config)
    report = evaluate(tmp_path / "model", [data], tmp_path / "report.json")
    joint = report["joint"]
    assert joint["joint_rows"] == len(JOINT) and joint["rows"] == report["n"]
    assert joint["joint_any"] >= 1  # seen tickets: the model finds their own joint neighbours
    assert "## Joint dispatch (会办)" in (tmp_path / "report.md").read_text(encoding="utf-8")
    r = CliRunner().invoke(app, ["evaluate", str(tmp_path / "model"), str(data)])
    assert r.exit_code == 0, r.output
    assert f"of {len(JOINT)} joint tickets got at least one" in " ".join(r.output.split())
    single = write_tiny_csv(tmp_path / "single.csv")
    assert "joint" not in evaluate(tmp_path / "model", [single])


def test_a_taxonomy_mapping_renames_co_departments_too() -> None:
    from training.retrain import apply_mapping

    df = pd.DataFrame(
        {
            "department": ["住建", "执法", "人社"],
            "category": ["城建", "环境", "劳动保障"],
            CO_COL: ["残联；执法", "", "住建"],
        }
    )
    counts = apply_mapping(df, {"department": {"执法": "城管执法", "残联": "住建"}})
    assert counts == {"department": {"执法": 1}}  # leads only
    # 残联 became the lead itself and is dropped; 执法 is renamed.
    assert df[CO_COL].tolist() == ["城管执法", "", "住建"]
    assert df["department"].tolist() == ["住建", "城管执法", "人社"]


@pytest.mark.parametrize("similar_k", [0, 2, 5])
def test_label_and_evaluate_read_as_many_similar_tickets_as_the_server(
    tmp_path: Path, tiny_config: TrainingConfig, monkeypatch: pytest.MonkeyPatch, similar_k: int
) -> None:
    # label's co_departments ("the advice the API gives") and evaluate's joint report always read
    # 5 similar tickets; the server reads PAIDAN_SIMILAR_K (0: no similar tickets, no advice).
    from model.settings import get_settings
    from training.evaluate import evaluate
    from training.label import label

    data = write_joint_csv(tmp_path / "joint.csv")
    train([data], tmp_path / "model", config=tiny_config)
    monkeypatch.setenv("PAIDAN_SIMILAR_K", str(similar_k))
    get_settings.cache_clear()
    try:
        label([data], tmp_path / "model", tmp_path / "out.jsonl", jobs=1)
        report = evaluate(tmp_path / "model", [data])
    finally:
        get_settings.cache_clear()
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").open(encoding="utf-8")]
    router, _ = load_serving_router(tmp_path / "model")
    answers = router.predict([(r["title"], r["text"]) for r in rows], similar_k=similar_k)
    given = [json.loads(r["co_departments"]) for r in rows]
    assert given == [[c.model_dump() for c in a.co_departments] for a in answers]
    assert any(given) == (similar_k > 0)
    assert report["joint"]["similar_k"] == similar_k
    assert (report["joint"]["advised"] > 0) == (similar_k > 0)
