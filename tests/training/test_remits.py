"""Remits (``paidan train --remits``): each department's remit, or each category's, in words,
teaches the head of its label; never a similar ticket, never scored, never counted as a ticket."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from model.artifact import REMITS_FILE, load_router
from model.config import TrainingConfig
from model.resources import sample_path, sample_remits_path
from model.tickets import TicketFileError, read_tickets
from paidan.cli import app
from tests.conftest import TINY_TICKETS, write_tiny_csv
from training.remits import read_remits
from training.train import cross_validate_heads, train

# Matters no tiny ticket names: only a remit can teach them.
REMITS = [
    ("执法", "执法局职责", "渣土车抛洒滴漏、夜间违规施工、户外广告牌设置的查处"),
    ("人社", "人社局职责", "职称评审、职业技能鉴定、失业保险金申领、人事考试报名"),
]
# Tickets of those matters: without the remits nothing in them is known, and they go to the
# department with the most rows.
UNSEEN = {"渣土车抛洒滴漏": ("执法", "渣土车"), "职称评审结果迟迟不公布": ("人社", "职称评审")}


def write_remits(
    path: Path, rows: list[tuple[str, str, str]], header=("department", "title", "text")
) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def with_and_without(tmp_path_factory, tiny_config):
    root = tmp_path_factory.mktemp("remits")
    data = write_tiny_csv(root / "tiny.csv")
    remits = write_remits(root / "remits.csv", [*REMITS, ("气象局", "", "天气预报、防雷")])
    with_remits = train([data], root / "with", config=tiny_config, remits=remits)
    without = train([data], root / "without", config=tiny_config)
    return with_remits, without


def test_a_remit_teaches_the_department_matters_its_tickets_never_named(with_and_without):
    with_remits, without = with_and_without
    for ticket, (department, word) in UNSEEN.items():
        taught = with_remits.router.predict([ticket])[0].department
        untaught = without.router.predict([ticket])[0].department
        assert taught.label == department, taught
        assert word in [e.term for e in taught.evidence], taught.evidence
        assert untaught.label != department and not untaught.evidence, untaught


def test_remits_are_kept_with_the_model_and_counted_apart_from_tickets(with_and_without, caplog):
    result, _ = with_and_without
    model = result.model_dir
    assert model is not None
    kept = read_remits(model / REMITS_FILE)
    assert kept["department"].tolist() == ["执法", "人社"]  # 气象局 has no ticket: left out
    assert kept["text"].tolist() == [REMITS[0][2], REMITS[1][2]]
    meta = json.loads((model / "metadata.json").read_text(encoding="utf-8"))
    assert meta["training_data"]["remits"] == {
        "rows": 2,
        "departments": 2,
        "categories": 0,
        "weight": 3.0,
        "left_out_departments": ["气象局"],
    }
    assert meta["training_data"]["rows"] == len(TINY_TICKETS)
    # The labels' training counts, which the prior shift reads, are the tickets' alone.
    tickets = {d: sum(t[2] == d for t in TINY_TICKETS) for d in {t[2] for t in TINY_TICKETS}}
    assert meta["heads"]["department"]["counts"] == tickets
    # Cross-validation scored tickets only.
    assert meta["cv_metrics"]["department"]["n"] == len(TINY_TICKETS)
    router, _ = load_router(model)
    assert router.predict(["渣土车抛洒滴漏"])[0].department.label == "执法"


def test_a_remit_is_never_shown_as_a_similar_ticket(with_and_without):
    result, _ = with_and_without
    similar = result.router.predict([REMITS[0][2]], similar_k=len(TINY_TICKETS) + 5)[0].similar
    ids = [s.id for s in similar]
    assert ids and all(i.startswith("T") for i in ids), ids


def test_a_number_in_a_remit_is_masked_where_the_model_keeps_it(tmp_path, tiny_config):
    # Stored text is masked text: a remit that names an official's mobile keeps it nowhere.
    data = write_tiny_csv(tmp_path / "tiny.csv")
    remits = write_remits(
        tmp_path / "r.csv", [("执法", "执法局", "渣土车抛洒滴漏，联系人手机13912345678")]
    )
    result = train([data], tmp_path / "m", config=tiny_config, remits=remits)
    assert result.model_dir is not None
    stored = (result.model_dir / REMITS_FILE).read_text(encoding="utf-8")
    assert "13912345678" not in stored and "[手机号]" in stored


def test_a_remit_of_a_department_without_tickets_is_left_out_with_a_warning(
    tmp_path, tiny_config, caplog
):
    data = write_tiny_csv(tmp_path / "tiny.csv")
    remits = write_remits(tmp_path / "r.csv", [("气象局", "", "天气预报、防雷")])
    with caplog.at_level("WARNING", logger="training.remits"):
        result = train([data], None, config=tiny_config, remits=remits)
    assert "1 remit of departments left out" in caplog.text and "气象局" in caplog.text
    assert result.metadata["training_data"]["remits"]["rows"] == 0


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        (
            [("执法", "", "渣土车")],
            ("dept", "title", "text"),
            # The column to rename named, as docs/training.md says.
            r"no column 'department' or 'category'.*'dept'.*; rename 'dept' to department\)$",
        ),
        (
            [("执法", "", "", "渣土车"), ("", "", "x", "夜间施工")],
            ("department", "category", "title", "text"),
            r"1 row cannot be used: row 2: department or category: is empty",
        ),
        (
            [("执法", "", "渣土车"), ("", "x", "夜间施工"), ("人社", "", " ")],
            ("department", "title", "text"),
            r"2 rows cannot be used: row 2: department: is empty; row 3 \(人社\): text: is empty",
        ),
        ([], ("department", "title", "text"), "holds no remit"),
        # Refused in the tickets' words, "map yours with --text-col; '内容' looks like the
        # text: --text-col 内容", though the option maps the tickets' columns, not a remits file's.
        (
            [("执法", "渣土车")],
            ("department", "内容"),
            r"remits file remits.csv: no column 'text' for the matters a remit covers, in words; "
            r"the file has columns 'department', '内容' \(a remits file has the columns "
            r"department or category, or both, text and, optionally, title, by these names; "
            r"rename '内容' to text\)$",
        ),
    ],
)
def test_a_bad_remits_file_is_refused_saying_where(tmp_path, rows, header, message):
    path = write_remits(tmp_path / "remits.csv", rows, header)
    with pytest.raises(TicketFileError, match=message) as e:
        read_remits(path)
    assert "-col" not in str(e.value)


def test_paidan_train_remits_says_what_it_learnt(tmp_path, tiny_config):
    data = write_tiny_csv(tmp_path / "tiny.csv")
    remits = write_remits(tmp_path / "remits.csv", REMITS)
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(data),
            "--out",
            str(tmp_path / "m"),
            "--min-examples",
            "3",
            "--remits",
            str(remits),
            "--remit-weight",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "learnt 2 remits of 2 departments (weight 2 each)" in result.output
    meta = json.loads((tmp_path / "m" / "metadata.json").read_text(encoding="utf-8"))
    assert meta["config"]["remit_weight"] == 2.0
    both = write_remits(
        tmp_path / "both.csv",
        [("执法", "", "", "渣土车"), ("", "环境", "", "河道污水"), ("", "城建", "", "井盖缺失")],
        ("department", "category", "title", "text"),
    )
    args = ["train", str(data), "--out", str(tmp_path / "m3"), "--min-examples", "3"]
    result = CliRunner().invoke(app, [*args, "--remits", str(both)])
    assert result.exit_code == 0, result.output
    assert "learnt 3 remits of 1 department and 2 categories (weight 3 each)" in result.output
    bad = write_remits(tmp_path / "bad.csv", [("执法", "", "")])
    refused = CliRunner().invoke(
        app, ["train", str(data), "--out", str(tmp_path / "m2"), "--remits", str(bad)]
    )
    assert refused.exit_code != 0
    assert (
        "remits file bad.csv" in refused.output and "row 1 (执法): text: is empty" in refused.output
    )
    assert not (tmp_path / "m2").exists()


def test_remit_rows_train_every_fold_and_are_never_held_out(tiny_config):
    # Rows 0-5 of label a, 6-11 of label b, 12-13 the remits: every fold's training holds them.
    rng = np.random.default_rng(0)
    X = rng.random((14, 5))
    X[:6, 0] += 3
    X[6:12, 1] += 3
    y = np.array(["a"] * 6 + ["b"] * 6 + ["a", "b"])
    import scipy.sparse as sp

    config = dataclasses.replace(tiny_config, cv_folds=3)
    [cv] = cross_validate_heads(
        [("department", sp.csr_matrix(X), y)],
        config,
        n_jobs=1,
        always=np.array([12, 13]),
        weights=np.array([1.0] * 12 + [3.0, 3.0]),
    )
    assert cv.report["n"] == 12
    assert np.all(cv.proba[12:] == 0)  # never held out, so never scored
    assert np.all(cv.proba[:12].sum(axis=1) > 0.99)


def test_the_bundled_remits_name_the_sample_departments_and_categories():
    remits = read_remits(sample_remits_path())
    sample = read_tickets([sample_path()])
    single = {d for d in sample["department"] if "；" not in d}
    assert set(remits["department"]) - {""} == single
    assert set(remits["category"]) - {""} == set(sample["category"])
    # Each row describes one label: a department's remit or a category's entry.
    assert ((remits["department"] == "") != (remits["category"] == "")).all()


def test_the_default_model_learns_the_bundled_remits(served_default_dir):
    config_default = TrainingConfig()
    model = served_default_dir  # trained by ensure_model, as `paidan serve` trains it
    meta = json.loads((model / "metadata.json").read_text(encoding="utf-8"))
    assert meta["training_data"]["remits"]["rows"] == len(read_remits(sample_remits_path()))
    assert meta["config"]["remit_weight"] == config_default.remit_weight
    assert (model / REMITS_FILE).is_file()


def test_retrain_teaches_the_challenger_the_champions_remits_renamed_as_its_labels(
    tmp_path, tiny_config
):
    from model.registry import set_current
    from training.retrain import retrain

    root = tmp_path / "models"
    data = write_tiny_csv(tmp_path / "tiny.csv")
    remits = write_remits(tmp_path / "remits.csv", REMITS)
    champion = train([data], None, config=tiny_config, model_root=root, remits=remits)
    set_current(root, champion.router.version)
    result = retrain(
        [data], [], root, config=tiny_config, mapping={"department": {"执法": "城管执法"}}
    )
    assert result.train is not None and result.train.model_dir is not None
    kept = read_remits(result.train.model_dir / REMITS_FILE)
    assert kept["department"].tolist() == ["城管执法", "人社"]
    assert result.train.metadata["training_data"]["remits"]["rows"] == 2
    taught = result.train.router.predict(["渣土车抛洒滴漏"])[0].department
    assert taught.label == "城管执法", taught
    # A remits file given to retrain replaces the champion's (a reform moved a matter).
    moved = write_remits(tmp_path / "moved.csv", [("住建", "住建局职责", "渣土车抛洒滴漏的查处")])
    result = retrain([data], [], root, config=tiny_config, remits=moved)
    assert result.train is not None and result.train.model_dir is not None
    assert read_remits(result.train.model_dir / REMITS_FILE)["department"].tolist() == ["住建"]
    assert result.train.router.predict(["渣土车抛洒滴漏"])[0].department.label == "住建"


def test_remits_train_no_department_head_where_the_tickets_have_no_departments(
    tmp_path, tiny_config, caplog
):
    # A category-only deployment given remits: the remits alone must not make a department head.
    data = tmp_path / "categories.csv"
    with open(data, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "title", "text", "category"])
        w.writerows([f"C{i}", t[0], t[1], t[3]] for i, t in enumerate(TINY_TICKETS))
    remits = write_remits(tmp_path / "r.csv", REMITS)
    with caplog.at_level("WARNING", logger="training.remits"):
        result = train([data], None, config=tiny_config, remits=remits)
    assert set(result.router.heads) == {"category"}
    assert "2 remits of departments left out" in caplog.text
    # Nor when fit_router is given them directly (benchmarks/accuracy.py calls it so).
    from model import resources
    from training.train import fit_router
    from training.validate import validate

    rows, _ = validate(read_tickets([data]), tiny_config.min_examples)
    router, _ = fit_router(
        rows,
        tiny_config,
        resources.default_userdict(),
        resources.default_stopwords(),
        remits=read_remits(remits),
        n_jobs=1,
    )
    assert set(router.heads) == {"category"}


# A matter no tiny ticket names, described under the category 环境 of a centre's 分类目录.
CATEGORY_REMIT = ("环境", "环境类", "河道污水发臭、垃圾焚烧异味、工地扬尘")


def test_a_category_remit_teaches_the_category_head_only(with_and_without, tmp_path, tiny_config):
    _, without = with_and_without
    data = write_tiny_csv(tmp_path / "tiny.csv")
    remits = write_remits(
        tmp_path / "categories.csv", [CATEGORY_REMIT], ("category", "title", "text")
    )
    result = train([data], tmp_path / "m", config=tiny_config, remits=remits)
    taught = result.router.predict(["河道污水发臭"])[0].category
    untaught = without.router.predict(["河道污水发臭"])[0].category
    assert taught.label == "环境" and "污水" in [e.term for e in taught.evidence], taught
    assert untaught.label != "环境", untaught
    meta = result.metadata
    assert meta["training_data"]["remits"] | {"weight": 0} == {
        "rows": 1,
        "departments": 0,
        "categories": 1,
        "weight": 0,
    }
    # Scored and counted: the tickets alone, in both heads.
    assert meta["cv_metrics"]["category"]["n"] == len(TINY_TICKETS)
    assert sum(meta["heads"]["category"]["counts"].values()) == len(TINY_TICKETS)
    assert result.model_dir is not None
    kept = read_remits(result.model_dir / REMITS_FILE)
    assert kept[["department", "category"]].values.tolist() == [["", "环境"]]


def test_a_remit_with_both_labels_teaches_both_heads(tmp_path, tiny_config):
    data = write_tiny_csv(tmp_path / "tiny.csv")
    remits = write_remits(
        tmp_path / "both.csv",
        [("执法", "环境", "执法局职责", "渣土车抛洒滴漏、工地夜间施工的查处")],
        ("department", "category", "title", "text"),
    )
    result = train([data], None, config=tiny_config, remits=remits)
    suggestion = result.router.predict(["渣土车抛洒滴漏"])[0]
    assert (suggestion.department.label, suggestion.category.label) == ("执法", "环境")
    info = result.metadata["training_data"]["remits"]
    assert (info["departments"], info["categories"]) == (1, 1)


def test_a_remits_label_unknown_to_its_head_is_dropped_and_the_other_kept(caplog):
    import pandas as pd

    from training.remits import usable_remits

    remits = pd.DataFrame(
        {
            "department": ["执法", "气象局", ""],
            "category": ["天气", "天气", "环境"],
            "title": ["", "", ""],
            "text": ["渣土车", "防雷", "扬尘"],
        }
    )
    with caplog.at_level("WARNING", logger="training.remits"):
        kept, skipped = usable_remits(remits, {"department": ["执法"], "category": ["环境"]})
    # 执法's remit keeps its department, loses the unknown category; 气象局's has nothing left.
    assert kept[["department", "category", "text"]].values.tolist() == [
        ["执法", "", "渣土车"],
        ["", "环境", "扬尘"],
    ]
    assert skipped == {"department": ["气象局"], "category": ["天气"]}
    assert "1 remit of departments left out" in caplog.text
    assert "2 remits of categories left out" in caplog.text and "天气" in caplog.text


def test_train_and_retrain_take_several_remits_files(tmp_path, tiny_config):
    # A city's 权责清单 and its centre's 分类目录 come as two files: --remits is repeated.
    from model.registry import set_current
    from training.retrain import retrain

    data = write_tiny_csv(tmp_path / "tiny.csv")
    departments = write_remits(tmp_path / "quanze.csv", REMITS)
    categories = write_remits(
        tmp_path / "fenlei.csv", [CATEGORY_REMIT], ("category", "title", "text")
    )
    out = tmp_path / "m"
    args = ["train", str(data), "--out", str(out), "--min-examples", "3"]
    remits = ["--remits", str(departments), "--remits", str(categories)]
    result = CliRunner().invoke(app, [*args, *remits])
    assert result.exit_code == 0, result.output
    assert "learnt 3 remits of 2 departments and 1 category" in result.output
    kept = read_remits(out / REMITS_FILE)
    assert kept[["department", "category"]].values.tolist() == [
        ["执法", ""],
        ["人社", ""],
        ["", "环境"],
    ]
    # A bad row is named with its own file.
    bad = write_remits(tmp_path / "bad.csv", [("", "", "防雷")], ("category", "title", "text"))
    with pytest.raises(TicketFileError, match=r"remits file bad.csv: 1 row cannot be used: row 1"):
        read_remits([departments, bad])

    root = tmp_path / "models"
    champion = train([data], None, config=tiny_config, model_root=root, remits=departments)
    set_current(root, champion.router.version)
    again = retrain([data], [], root, config=tiny_config, remits=[departments, categories])
    assert again.train is not None and again.train.model_dir is not None
    info = again.train.metadata["training_data"]["remits"]
    assert (info["rows"], info["departments"], info["categories"]) == (3, 2, 1)


def test_a_suggestion_cites_the_clause_of_its_remit_that_names_its_evidence(with_and_without):
    # The dispatcher sees the authority behind a suggestion: the clause of the department's
    # 权责清单 that names the ticket's own words.
    with_remits, without = with_and_without
    for ticket, (department, word) in UNSEEN.items():
        taught = with_remits.router.predict([ticket])[0].department
        assert taught.label == department
        remit = dict((d, text) for d, _, text in REMITS)[department]
        assert taught.remit == remit and word in taught.remit  # a remit of one clause
        assert without.router.predict([ticket])[0].department.remit is None
    # Without evidence asked for (batch labelling) nothing is cited.
    assert with_remits.router.predict([*UNSEEN][:1], explain=False)[0].department.remit is None
    # A label without a remit (住建 has none) cites none; nor does a head taught no remit.
    housing = with_remits.router.predict(["物业公司不管电梯维修，电梯经常坏"])[0]
    assert housing.department.label == "住建" and housing.department.evidence
    assert housing.department.remit is None and housing.category.remit is None
    # A ticket of a department with a remit that shares none of its words cites none either.
    fumes = with_remits.router.predict(["楼下烧烤店油烟很大，油烟直接排进窗户"])[0].department
    assert fumes.label == "执法" and fumes.evidence and fumes.remit is None


def test_the_model_directory_and_its_serving_file_cite_the_same_clause(with_and_without):
    from model.artifact import load_serving_router

    result, _ = with_and_without
    assert result.model_dir is not None
    ticket = "职称评审结果迟迟不公布"
    want = result.router.predict([ticket])[0].department.remit
    assert want is not None
    assert load_router(result.model_dir)[0].predict([ticket])[0].department.remit == want
    serving = load_serving_router(result.model_dir)
    assert serving is not None
    assert serving[0].predict([ticket])[0].department.remit == want


def test_remit_clauses_are_cut_at_sentence_ends_and_masked():
    from training.remits import remit_clauses

    remits = pd.DataFrame(
        {
            "department": ["执法", "执法", ""],
            "category": ["", "", "城建"],
            "title": ["", "", ""],
            "text": [
                "查处渣土车抛洒滴漏；查处夜间违规施工。值班电话13912345678",
                "查处渣土车抛洒滴漏",  # a clause said twice is kept once
                "违章建筑、私搭乱建",
            ],
        }
    )
    clauses = remit_clauses(remits)
    assert clauses["department"]["执法"][:2] == ["查处渣土车抛洒滴漏", "查处夜间违规施工"]
    assert len(clauses["department"]["执法"]) == 3
    assert "13912345678" not in clauses["department"]["执法"][2]
    assert clauses["category"] == {"城建": ["违章建筑、私搭乱建"]}


def test_the_cited_clause_is_the_one_naming_most_evidence_weight():
    from model.router import Evidence, cited_clause

    evidence = [Evidence(term="渣土车", weight=0.5), Evidence(term="夜间", weight=0.2)]
    clauses = ["查处夜间违规施工", "查处渣土车抛洒滴漏", "查处渣土车夜间运输"]
    assert cited_clause(clauses, evidence) == "查处渣土车夜间运输"  # 0.7
    assert cited_clause(clauses[:2], evidence) == "查处渣土车抛洒滴漏"  # 0.5 over 0.2
    assert cited_clause(["户外广告"], evidence) is None
    assert cited_clause([], evidence) is None
    assert cited_clause(["查处 abc 违规"], [Evidence(term="abc", weight=1.0)]) == "查处 abc 违规"
    assert cited_clause(["查处ABC违规"], [Evidence(term="abc", weight=1.0)]) == "查处ABC违规"


def test_a_router_pickled_before_remits_were_cited_cites_none(with_and_without):
    import pickle

    result, _ = with_and_without
    state = pickle.loads(pickle.dumps(result.router)).__dict__.copy()
    state.pop("remit_clauses")  # as pickled by a paidan before the attribute existed
    old = type(result.router).__new__(type(result.router))
    old.__setstate__(state)
    answer = old.predict(["职称评审结果迟迟不公布"])[0].department
    assert answer.label == "人社" and answer.evidence and answer.remit is None


def test_a_remit_in_traditional_characters_is_cited_in_the_script_tickets_are_read_in(
    tmp_path, tiny_config
):
    # The evidence terms are simplified (TrainingConfig.script): a clause kept as written, 職稱評審,
    # never named them, so a remit typed in traditional characters was never cited.
    data = write_tiny_csv(tmp_path / "tiny.csv")
    remits = write_remits(tmp_path / "r.csv", [("人社", "人社局", "負責職稱評審、職業技能鑒定")])
    result = train([data], None, config=tiny_config, remits=remits)
    answer = result.router.predict(["职称评审结果迟迟不公布"])[0].department
    assert answer.label == "人社"
    assert answer.remit == "负责职称评审、职业技能鉴定"


def test_label_with_evidence_writes_the_words_and_the_clause_the_api_gives(
    with_and_without, tmp_path
):
    # Staff reviewing a labelled backlog saw a department and a score, not why: the evidence and
    # the remit clause were the API's alone.
    import json

    import pandas as pd

    from training.label import label

    with_remits, _ = with_and_without
    tickets = [*UNSEEN, "物业公司不管电梯维修，电梯经常坏"]
    src = tmp_path / "in.csv"
    pd.DataFrame({"id": range(len(tickets)), "text": tickets}).to_csv(src, index=False)
    out = tmp_path / "out.csv"
    label([src], with_remits.model_dir, out, jobs=1, evidence=True)
    got = pd.read_csv(out, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    why = [
        "department_evidence",
        "department_remit",
        "department_rule",
        "category_evidence",
        "category_remit",
        "category_rule",
    ]
    assert list(got.columns[-7:]) == [*why, "error"]
    assert (got["department_rule"] == "").all() and (got["category_rule"] == "").all()  # no rules
    for row, result in zip(got.itertuples(), with_remits.router.predict(tickets), strict=True):
        for head, (suggested, evidence, remit) in {
            "department": (row.pred_department, row.department_evidence, row.department_remit),
            "category": (row.pred_category, row.category_evidence, row.category_remit),
        }.items():
            explained = getattr(result, head)
            assert suggested == explained.label
            assert json.loads(evidence) == [e.model_dump() for e in explained.evidence]
            assert remit == (explained.remit or "")
        assert json.loads(row.department_evidence)  # each department suggested has its words
    remit = dict((d, text) for d, _, text in REMITS)
    assert got["department_remit"].tolist() == [remit["执法"], remit["人社"], ""]
    assert (got["category_remit"] == "").all()  # no category was taught a remit
    # Without --evidence, the output is as it was.
    label([src], with_remits.model_dir, tmp_path / "plain.csv", jobs=1)
    plain = pd.read_csv(tmp_path / "plain.csv", dtype=str, encoding="utf-8-sig")
    assert "department_evidence" not in plain.columns and plain.columns[-1] == "error"


def test_a_remits_label_holding_a_number_is_read_as_the_history_learns_it(tmp_path):
    # The history learns 网格员１３８１２３４５６７８ masked, as 网格员[手机号]; its remit must
    # name that label, or it is left out as a department without tickets.
    path = write_remits(
        tmp_path / "remits.csv", [(" 网格员１３８１２３４５６７８\u200b ", "", "路灯、井盖巡查")]
    )
    assert read_remits(path)["department"].tolist() == ["网格员[手机号]"]
