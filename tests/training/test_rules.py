"""Dispatch rules (``paidan train --rules``): a centre's "tickets that say X go to Y", applied by the
router wherever it decides, kept with the model and inherited by retrain."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from model.artifact import RULES_FILE, load_router
from model.rules import DispatchRule, RuleIndex, rule_terms
from model.tickets import TicketFileError
from paidan.cli import app
from tests.conftest import write_tiny_csv
from training.rules import compile_rules, format_rules, read_rules
from training.train import train

# 电梯 tickets go to 住建 by the model; the rule sends those about a 加装 to 执法 (a reform moved
# them), and asks a person to confirm those about a 燃气 smell under 环境.
RULES = [
    ("keywords", "exclude", "department", "category", "decision", "note"),
    ("电梯 加装", "", "执法", "", "auto", "2026年第3号通知：加装电梯改由执法局受理"),
    ("燃气", "演练", "", "环境", "review", ""),
    ("电梯", "", "人社", "", "auto", "never reached for 加装: the first rule that matches decides"),
]
# A 机构改革 created 数据局 this month: no past ticket names it, so the model cannot learn it, but
# the centre's notice sends 数据共享 matters there from today.
NEW_RULES = [
    ("keywords", "department", "decision", "note", "new_label"),
    ("数据 共享", "数据局", "auto", "机构改革：数据共享改由新组建的数据局受理", "yes"),
    ("电梯 加装", "执法", "auto", "", "yes"),  # marked, but a label the head learns: as unmarked
]
DATA = "政务数据共享平台查不到我的社保记录，要求各部门数据共享"
ELEVATOR_ADDED = "老旧小区加装电梯，物业推诿，电梯经常故障"
GAS = "楼道里有燃气味道，物业不管"
PLAIN = "老板拖欠工资三个月不发"


def write_rows(path: Path, rows: list[tuple[str, ...]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def trained_with(factory: pytest.TempPathFactory, config, rows: list[tuple[str, ...]]):
    root = factory.mktemp("rules")
    data = write_tiny_csv(root / "tiny.csv")
    return train([data], root / "model", config=config, rules=write_rows(root / "rules.csv", rows))


@pytest.fixture(scope="module")
def ruled(tmp_path_factory, tiny_config):
    return trained_with(tmp_path_factory, tiny_config, RULES)


@pytest.fixture(scope="module")
def reformed(tmp_path_factory, tiny_config):
    return trained_with(tmp_path_factory, tiny_config, NEW_RULES)


def test_a_matching_rule_decides_and_says_so_and_the_model_still_scores(ruled):
    router = ruled.router
    added, gas, plain = router.predict([ELEVATOR_ADDED, GAS, PLAIN])
    unruled = dataclasses.replace(router, rules=())  # the same model, no rule
    before_added, before_gas, before_plain = unruled.predict([ELEVATOR_ADDED, GAS, PLAIN])

    assert before_added.department.label == "住建"  # the model's own choice ...
    assert added.department.label == "执法"  # ... overruled by the first matching rule
    assert added.department.decision == "auto" and added.department.reason is None
    assert added.department.rule is not None
    assert added.department.rule.keywords == ["电梯", "加装"]
    assert added.department.rule.note == "2026年第3号通知：加装电梯改由执法局受理"
    # The score is the model's probability of the rule's label; the rest follow in its order.
    model_scores = {c.label: c.score for c in before_added.department.candidates}
    assert added.department.score == model_scores["执法"]
    assert [c.label for c in added.department.candidates] == ["执法"] + [
        c.label for c in before_added.department.candidates if c.label != "执法"
    ]
    assert added.category == before_added.category  # no rule gives it a category

    assert gas.category.label == "环境" and gas.category.rule is not None
    assert gas.category.decision == "review" and gas.category.reason == "rule"
    assert gas.decision == "review"
    assert gas.department == before_gas.department  # the rule names no department

    assert plain == before_plain  # no rule matched: the model's answer, untouched


def test_excluded_words_and_the_order_of_rules_decide_which_rule_applies():
    rules = (
        DispatchRule(
            keywords=rule_terms("燃气"), category="环境", exclude=rule_terms("演练、测试")
        ),
        DispatchRule(keywords=rule_terms("燃气"), category="城建"),
        DispatchRule(keywords=rule_terms("ＬＰＧ"), department="执法"),
    )
    texts = ["燃气泄漏", "燃气演练噪音", "lpg钢瓶", "无关"]
    assert RuleIndex(rules).first(texts, ("department", "category")) == {
        "department": [-1, -1, 2, -1],  # full-width ＬＰＧ read as the model reads text
        "category": [0, 1, -1, -1],
    }


def test_a_keyword_of_alternatives_is_held_when_one_of_them_is(ruled, tmp_path):
    from model.text import clean

    # One rule for the four ways a ticket says a gas leak, full-width bar and all.
    rows = [("keywords", "exclude", "department"), ("燃气｜煤气 泄漏|漏气", "演练|演习", "执法")]
    rules = read_rules(write_rows(tmp_path / "rules.csv", rows))
    [rule] = compile_rules(rules)
    assert rule.keywords == ("燃气|煤气", "泄漏|漏气") and rule.exclude == ("演练|演习",)
    texts = ["家里煤气漏气了", "燃气泄漏", "燃气费太贵", "燃气泄漏应急演习", "管道漏气"]
    assert RuleIndex((rule,)).first([clean(t) for t in texts], ("department",)) == {
        "department": [0, 0, -1, -1, -1]
    }
    # The model directory keeps the rule as written, and reads it back the same.
    kept = tmp_path / "kept.csv"
    kept.write_bytes(format_rules(rules))
    [again] = compile_rules(read_rules(kept))
    assert (again.keywords, again.exclude) == (rule.keywords, rule.exclude)
    # An answer names the keyword as the rule has it.
    router = dataclasses.replace(ruled.router, rules=(rule,))
    [answer] = router.predict(["楼道里煤气漏气，味道很大"])
    assert answer.department.label == "执法" and answer.department.rule is not None
    assert answer.department.rule.keywords == ["燃气|煤气", "泄漏|漏气"]


def test_a_rule_in_traditional_characters_matches_a_simplified_ticket_and_back():
    from model.text import clean

    rule = DispatchRule(keywords=rule_terms("燃氣 洩漏", "simplified"), department="执法")
    assert rule.keywords == ("燃气", "泄漏")
    for ticket in ("家里燃气泄漏了", "家裡燃氣洩漏了"):
        assert RuleIndex((rule,)).first([clean(ticket, "simplified")], ("department",)) == {
            "department": [0]
        }


def test_labelling_and_evaluation_decide_as_the_api_does(ruled, tmp_path):
    from training.evaluate import evaluate
    from training.label import label

    texts = [ELEVATOR_ADDED, GAS, PLAIN]
    src = tmp_path / "in.csv"
    pd.DataFrame({"id": range(3), "text": texts}).to_csv(src, index=False)
    out = tmp_path / "out.csv"
    label([src], ruled.model_dir, out, jobs=1)
    got = pd.read_csv(out, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    answers = ruled.router.predict(texts)
    assert got["pred_department"].tolist() == [a.department.label for a in answers]
    assert got["pred_category"].tolist() == [a.category.label for a in answers]
    assert got["decision"].tolist() == [a.decision for a in answers]
    assert got["pred_department"][0] == "执法"
    top3 = json.loads(got["top3_departments"][0])
    assert [c["label"] for c in top3] == [c.label for c in answers[0].department.candidates]
    # With --evidence, the rule that gave each label, as the API names it.
    label([src], ruled.model_dir, tmp_path / "why.csv", jobs=1, evidence=True)
    why = pd.read_csv(tmp_path / "why.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig")
    for head in ("department", "category"):
        assert [json.loads(r) if r else None for r in why[f"{head}_rule"]] == [
            None if getattr(a, head).rule is None else getattr(a, head).rule.model_dump()
            for a in answers
        ]
    assert json.loads(why["department_rule"][0])["keywords"] == ["电梯", "加装"]
    assert json.loads(why["category_rule"][1])["keywords"] == ["燃气"]

    truth = tmp_path / "truth.csv"
    pd.DataFrame(
        {"id": [1], "text": [ELEVATOR_ADDED], "department": ["执法"], "category": ["城建"]}
    ).to_csv(truth, index=False)
    report = evaluate(ruled.model_dir, [truth])
    assert report["department"]["accuracy"] == 1.0  # the rule's label is what was dispatched


def test_evaluate_says_how_often_each_rule_was_right_against_the_model_alone(ruled, tmp_path):
    # Two 加装电梯 tickets the rule sends to 执法: the history says one was 执法's, the other
    # 住建's, which the model ranks first for both; one plain ticket no rule touches.
    texts = [ELEVATOR_ADDED, "小区加装电梯施工噪音，物业说电梯加装是住建审批的", PLAIN]
    own = dataclasses.replace(ruled.router, rules=()).predict(texts)
    assert [a.department.label for a in own[:2]] == ["住建", "住建"]
    truth = tmp_path / "truth.csv"
    pd.DataFrame(
        {
            "id": [1, 2, 3],
            "text": texts,
            "department": ["执法", "住建", own[2].department.label],
            "category": [a.category.label for a in own],
        }
    ).to_csv(truth, index=False)
    report_path = tmp_path / "report.json"
    result = CliRunner().invoke(
        app, ["evaluate", str(ruled.model_dir), str(truth), "--report", str(report_path)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["department"]["rules"] == [
        {
            "rule": "rules.csv row 1",
            "keywords": ["电梯", "加装"],
            "label": "执法",
            "decision": "auto",
            "tickets": 2,
            "right": 1,
            "model_right": 1,
        },
        {
            "rule": "rules.csv row 3",
            "keywords": ["电梯"],
            "label": "人社",
            "decision": "auto",
            "tickets": 0,  # every 电梯 ticket here says 加装: the first rule took them
            "right": 0,
            "model_right": 0,
        },
    ]
    assert [r["rule"] for r in report["category"]["rules"]] == ["rules.csv row 2"]
    said = " ".join(result.output.split())
    assert (
        "department: dispatch rules decided 2 tickets, right on 1 of them (the model alone: 1); "
        "1 rule decided none" in said
    )
    markdown = report_path.with_suffix(".md").read_text(encoding="utf-8")
    assert "## Dispatch rules (派单规则)" in markdown
    assert "| department | rules.csv row 1 | 电梯 加装 | 执法 | auto | 2 | 1 | 1 |" in markdown


def test_a_rule_right_less_often_than_the_model_is_warned_of():
    from training.evaluate import report_warnings

    rule = {"rule": "r.csv row 4", "keywords": ["电梯"], "label": "人社", "decision": "auto"}
    report = {
        "n": 10,
        "department": {"rules": [{**rule, "tickets": 5, "right": 1, "model_right": 4}]},
    }
    assert report_warnings(report) == [
        "department head: dispatch rule r.csv row 4 (电梯 → 人社) was right on 1 of the 5 tickets "
        "it decided, the model alone on 4"
    ]
    report["department"]["rules"][0]["right"] = 4
    assert report_warnings(report) == []


def test_the_model_directory_keeps_the_rules_and_a_loaded_model_applies_them(ruled):
    kept = read_rules(ruled.model_dir / RULES_FILE)
    assert kept["keywords"].tolist() == ["电梯 加装", "燃气", "电梯"]
    assert kept["decision"].tolist() == ["auto", "review", "auto"]
    assert ruled.metadata["training_data"]["rules"] == {
        "rows": 3,
        "departments": 2,
        "categories": 1,
        "review": 1,
    }
    for serving in (False, True):
        router, _ = load_router(ruled.model_dir, serving=serving)
        assert router.predict([ELEVATOR_ADDED])[0].department.label == "执法"


def test_the_api_answers_with_the_rule(ruled, tmp_path, monkeypatch):
    from serve.app import create_app

    monkeypatch.setenv("PAIDAN_DATA_DIR", str(tmp_path / "var"))  # not the checkout's var/
    monkeypatch.setenv("PAIDAN_MODEL_DIR", str(ruled.model_dir))
    monkeypatch.setenv("PAIDAN_MODEL_ROOT", str(ruled.model_dir.parent))
    with TestClient(create_app()) as client:
        r = client.post("/v1/route", json={"text": ELEVATOR_ADDED})
    assert r.status_code == 200, r.text
    department = r.json()["department"]
    assert department["label"] == "执法" and department["decision"] == "auto"
    assert department["rule"] == {
        "keywords": ["电梯", "加装"],
        "note": "2026年第3号通知：加装电梯改由执法局受理",
    }
    assert r.json()["category"]["rule"] is None


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [("words", "department"), ("电梯", "住建")],
            "rules file bad.csv: no column keywords; the file has columns 'words', 'department'",
        ),
        (
            [("keywords", "note"), ("电梯", "x")],
            "rules file bad.csv: no column department or category",
        ),
        (
            [
                ("keywords", "department", "category", "decision"),
                ("电梯", "住建", "", "auto"),
                (" 、｜ ", "住建", "", ""),  # separators and a bar: no keyword
                ("燃气", "", "", "auto"),
                ("油烟", "执法", "", "马上"),
            ],
            "rules file bad.csv: 3 rows cannot be used: row 2: keywords: is empty; row 3: "
            "department or category: is empty; row 4: decision: '马上' is not auto or review",
        ),
        (
            [("keywords", "department", "decision"), ("", "住建", "马上")],
            "rules file bad.csv: 1 row cannot be used: row 1: keywords: is empty; row 1: "
            "decision: '马上' is not auto or review",
        ),
        ([("keywords", "department")], "rules file bad.csv holds no rule (no data row)"),
        (
            # A ticket that holds the keyword holds the excluded word: the rule could never fire.
            [
                ("keywords", "exclude", "department"),
                ("燃气泄漏", "燃气", "住建"),
                ("燃气|煤气 泄漏", "演练 气", "住建"),  # every alternative holds 气
                ("燃气|煤气", "煤气", "住建"),  # 燃气 can still match: a good rule
            ],
            "rules file bad.csv: 2 rows cannot be used: row 1: exclude: '燃气' is in keyword "
            "'燃气泄漏', so the rule could match no ticket; row 2: exclude: '气' is in keyword "
            "'燃气|煤气', so the rule could match no ticket",
        ),
        (
            [("keywords", "department", "new_label"), ("数据 共享", "数据局", "maybe")],
            "rules file bad.csv: 1 row cannot be used: row 1: new_label: 'maybe' is not yes or no",
        ),
    ],
)
def test_a_bad_rules_file_is_refused_saying_where(tmp_path, rows, message):
    with pytest.raises(TicketFileError) as e:
        read_rules(write_rows(tmp_path / "bad.csv", rows))
    assert message in str(e.value)


def test_a_rule_for_a_label_the_model_does_not_learn_is_refused_before_training(
    tmp_path, tiny_config, monkeypatch
):
    import training.train as training_train

    def no_fit(*args, **kwargs):
        raise AssertionError("the model was fitted before the rules were checked")

    monkeypatch.setattr(training_train, "fit_router", no_fit)
    data = write_tiny_csv(tmp_path / "tiny.csv")
    rules = write_rows(
        tmp_path / "rules.csv", [("keywords", "department"), ("电梯", "住建"), ("燃气", "燃气公司")]
    )
    with pytest.raises(TicketFileError) as e:
        train([data], tmp_path / "model", config=tiny_config, rules=rules)
    said = str(e.value)
    assert said.startswith("1 dispatch rule names a label the model does not learn")
    assert "rules.csv row 2: department '燃气公司'" in said
    assert "the department head learns 人社, 住建, 执法" in said
    assert "mark a label the history does not hold yet new_label yes" in said
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize(
    ("rows", "said"),
    [
        (
            RULES,
            "applies 3 dispatch rules before its own ranking, sending tickets to 2 departments and "
            "1 category, 1 of them for a person to confirm",
        ),
        (
            NEW_RULES,
            "applies 2 dispatch rules before its own ranking, sending tickets to 2 departments; "
            "数据局, which no training ticket names, comes from rules alone",
        ),
    ],
)
def test_paidan_train_rules_says_what_it_applies(tmp_path, tiny_config, rows, said):
    data = write_tiny_csv(tmp_path / "tiny.csv")
    rules = write_rows(tmp_path / "rules.csv", rows)
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(data),
            "--out",
            str(tmp_path / "m"),
            "--min-examples",
            "3",
            "--rules",
            str(rules),
        ],
    )
    assert result.exit_code == 0, result.output
    assert said in " ".join(result.output.split())


def test_retrain_keeps_the_champions_rules_renamed_as_its_labels(tmp_path, tiny_config):
    from model.registry import set_current
    from training.retrain import retrain

    root = tmp_path / "models"
    data = write_tiny_csv(tmp_path / "tiny.csv")
    rules = write_rows(tmp_path / "rules.csv", RULES[:3])
    champion = train([data], None, config=tiny_config, model_root=root, rules=rules)
    set_current(root, champion.router.version)
    result = retrain(
        [data], [], root, config=tiny_config, mapping={"department": {"执法": "城管执法"}}
    )
    assert result.train is not None and result.train.model_dir is not None
    kept = read_rules(result.train.model_dir / RULES_FILE)
    assert kept["department"].tolist() == ["城管执法", ""]
    assert result.train.router.predict([ELEVATOR_ADDED])[0].department.label == "城管执法"
    # A rules file given to retrain replaces the champion's.
    moved = write_rows(tmp_path / "moved.csv", [("keywords", "department"), ("加装", "人社")])
    result = retrain([data], [], root, config=tiny_config, rules=moved)
    assert result.train is not None and result.train.model_dir is not None
    assert read_rules(result.train.model_dir / RULES_FILE)["department"].tolist() == ["人社"]
    assert result.train.router.predict([ELEVATOR_ADDED])[0].department.label == "人社"


def test_set_rules_writes_a_new_version_that_differs_in_its_rules_alone(
    tmp_path, tiny_config, monkeypatch
):
    # A notice moves a matter today: training again on the whole history to change one rule took
    # as long as a retrain; the fitted model is the same.
    from model.registry import set_current

    root = tmp_path / "models"
    data = write_tiny_csv(tmp_path / "tiny.csv")
    first = train([data], None, config=tiny_config, model_root=root)
    set_current(root, first.router.version)
    rules = write_rows(tmp_path / "rules.csv", RULES)
    monkeypatch.setenv("PAIDAN_MODEL_ROOT", str(root))
    said = CliRunner().invoke(
        app, ["models", "set-rules", first.router.version, "--rules", str(rules)]
    )
    assert said.exit_code == 0, said.output
    [ruled] = set(model_dirs(root)) - {root / first.router.version}
    text = " ".join(said.output.split())
    assert (
        f"wrote {ruled.name}: the model of {first.router.version}, which applies 3 dispatch rules"
        in text
    )
    assert f"promote it with: paidan models promote {ruled.name}" in text

    meta = json.loads((ruled / "metadata.json").read_text(encoding="utf-8"))
    assert meta["derived_from"] == {"version": first.router.version, "changed": "rules"}
    assert meta["training_data"]["rules"]["rows"] == 3
    assert meta["cv_metrics"] == first.metadata["cv_metrics"]  # the same model, the same figures
    assert read_rules(ruled / RULES_FILE)["keywords"].tolist() == ["电梯 加装", "燃气", "电梯"]
    old, _ = load_router(root / first.router.version, root)
    new, _ = load_router(ruled, root)
    assert not (root / first.router.version / RULES_FILE).exists()  # left as it was
    assert old.predict([ELEVATOR_ADDED])[0].department.label == "住建"
    assert new.predict([ELEVATOR_ADDED])[0].department.label == "执法"
    assert new.predict([PLAIN])[0] == old.predict([PLAIN])[0].model_copy(
        update={"model_version": new.version}
    )

    listed = CliRunner().invoke(app, ["models", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    by_version = {v["version"]: v for v in json.loads(listed.output)}
    assert by_version[ruled.name]["rules"] == 3
    assert by_version[ruled.name]["derived_from"] == first.router.version
    assert by_version[first.router.version]["rules"] == 0
    table = CliRunner().invoke(app, ["models", "list"])
    assert table.exit_code == 0 and "rules" in table.output

    # --clear on a version set-rules wrote: the version it was derived from applies no rule
    # already, so it is named and nothing is written (a full copy of it was: 94 MB on real data).
    before = set(model_dirs(root))
    cleared = with_rules_cli(root, ruled.name, ["--clear"])
    assert cleared.exit_code == 0, cleared.output
    assert set(model_dirs(root)) == before
    assert (
        f"{ruled.name} was derived from {first.router.version}, which applies no dispatch rule "
        f"already: nothing written; {first.router.version} is the current model"
    ) in " ".join(cleared.output.split())
    # A rule for a label the model does not learn writes none.
    # The rules a version applies already: a second version would be a copy of it.
    before = set(model_dirs(root))
    same = with_rules_cli(root, ruled.name, ["--rules", str(rules)])
    assert same.exit_code == 0, same.output
    assert f"{ruled.name} applies these dispatch rules already: nothing written" in " ".join(
        same.output.split()
    )
    none = with_rules_cli(root, "current", ["--clear"])  # the first, which has none
    assert none.exit_code == 0 and "applies no dispatch rule already" in none.output
    # The same rules for the same model again: run twice, set-rules wrote two identical versions.
    again = with_rules_cli(root, first.router.version, ["--rules", str(rules)])
    assert again.exit_code == 0, again.output
    assert (
        f"{ruled.name} is the model of {first.router.version} with these dispatch rules already: "
        f"nothing written; promote it with: paidan models promote {ruled.name}"
    ) in " ".join(again.output.split())
    assert set(model_dirs(root)) == before
    bad = write_rows(tmp_path / "bad.csv", [("keywords", "department"), ("燃气", "燃气公司")])
    before = sorted(p.name for p in root.iterdir())
    refused = with_rules_cli(root, ruled.name, ["--rules", str(bad)])
    assert refused.exit_code == 2
    assert "bad.csv row 1: department '燃气公司'" in " ".join(refused.output.split())
    assert sorted(p.name for p in root.iterdir()) == before
    neither = with_rules_cli(root, ruled.name, [])
    assert neither.exit_code == 2 and "--clear" in neither.output


def test_set_rules_finds_its_versions_by_directory_name_as_the_readme_names_them(
    tmp_path, tiny_config
):
    # The README trains `--out models/v1`, a directory name other than the model version that
    # `derived_from` records: set-rules then wrote a second copy of v1's model for `--clear` on
    # the version derived from it, and, given v1's rules again, said "v1 was derived from" the
    # version derived from v1.
    root = tmp_path / "models"
    data = write_tiny_csv(tmp_path / "tiny.csv")
    train([data], root / "v1", config=tiny_config, model_root=root)
    rules = write_rows(tmp_path / "rules.csv", RULES)
    said = with_rules_cli(root, "v1", ["--rules", str(rules)])
    assert said.exit_code == 0, said.output
    [ruled] = set(model_dirs(root)) - {root / "v1"}

    before = set(model_dirs(root))
    again = with_rules_cli(root, "v1", ["--rules", str(rules)])
    assert again.exit_code == 0, again.output
    assert (
        f"{ruled.name} is the model of v1 with these dispatch rules already: nothing written; "
        f"promote it with: paidan models promote {ruled.name}"
    ) in " ".join(again.output.split())
    cleared = with_rules_cli(root, ruled.name, ["--clear"])
    assert cleared.exit_code == 0, cleared.output
    assert (
        f"{ruled.name} was derived from v1, which applies no dispatch rule already: nothing "
        "written; v1 is the current model"
    ) in " ".join(cleared.output.split())
    assert set(model_dirs(root)) == before


def model_dirs(root: Path) -> list[Path]:
    return [p for p in root.iterdir() if (p / "metadata.json").is_file()]


def with_rules_cli(root: Path, version: str, args: list[str]):
    return CliRunner().invoke(
        app, ["models", "set-rules", version, *args], env={"PAIDAN_MODEL_ROOT": str(root)}
    )


def test_a_new_label_rule_sends_tickets_to_a_department_no_ticket_names(reformed):
    router = reformed.router
    unruled = dataclasses.replace(router, rules=())
    assert list(router.labels_of("department")) == ["人社", "住建", "执法", "数据局"]
    assert list(router.labels_of("category")) == list(router.heads["category"].labels)

    data, added, plain = router.predict([DATA, ELEVATOR_ADDED, PLAIN])
    before = unruled.predict([DATA])[0]
    d = data.department
    assert d.label == "数据局" and d.decision == "auto" and d.reason is None
    assert d.score == 0.0  # the model has no ticket of it: it gives it no probability
    assert d.evidence == []  # nor weights to read evidence from
    assert d.rule is not None and d.rule.note == "机构改革：数据共享改由新组建的数据局受理"
    # The model's own suggestions follow, in its order.
    assert [c.label for c in d.candidates] == ["数据局"] + [
        c.label for c in before.department.candidates[:2]
    ]
    assert data.category == before.category
    assert added.department.label == "执法"  # a marked rule to a learnt label works as any
    assert plain == unruled.predict([PLAIN])[0]  # no rule matched: untouched, 数据局 not offered
    # However many candidates are asked for: a ruled ticket gets 数据局 and the learnt ones.
    every_plain, every_data = router.predict([PLAIN, DATA], top_k=10)
    assert [c.label for c in every_plain.department.candidates] == [
        c.label for c in unruled.predict([PLAIN], top_k=10)[0].department.candidates
    ]
    assert "数据局" not in [c.label for c in every_plain.department.candidates]
    assert len(every_data.department.candidates) == 3  # 数据局 and the model's first two

    for serving in (False, True):
        loaded, _ = load_router(reformed.model_dir, serving=serving)
        assert loaded.predict([DATA])[0].department.label == "数据局"
    kept = read_rules(reformed.model_dir / RULES_FILE)
    assert kept["new_label"].tolist() == [True, True]
    assert reformed.metadata["training_data"]["rules"]["new_labels"] == {"department": ["数据局"]}


def test_labelling_evaluation_and_the_api_know_a_label_only_a_rule_gives(
    reformed, tmp_path, monkeypatch
):
    from serve.app import create_app
    from training.evaluate import evaluate
    from training.label import label

    texts = [DATA, PLAIN]
    src = tmp_path / "in.csv"
    pd.DataFrame({"id": range(2), "text": texts}).to_csv(src, index=False)
    label([src], reformed.model_dir, tmp_path / "out.csv", jobs=1)
    got = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig")
    answers = reformed.router.predict(texts)
    assert got["pred_department"].tolist() == ["数据局", answers[1].department.label]
    assert got["decision"].tolist() == [a.decision for a in answers]
    assert json.loads(got["top3_departments"][0])[0] == {"label": "数据局", "score": 0.0}

    truth = tmp_path / "truth.csv"
    pd.DataFrame(
        {"id": [1, 2], "text": texts, "department": ["数据局", answers[1].department.label]}
    ).to_csv(truth, index=False)
    report = evaluate(reformed.model_dir, [truth])["department"]
    assert report["accuracy"] == 1.0
    assert report["per_class"]["数据局"]["recall"] == 1.0
    assert report["unknown_labels"] == {}  # a label the router gives is no unknown label

    monkeypatch.setenv("PAIDAN_DATA_DIR", str(tmp_path / "var"))  # not the checkout's var/
    monkeypatch.setenv("PAIDAN_MODEL_DIR", str(reformed.model_dir))
    monkeypatch.setenv("PAIDAN_MODEL_ROOT", str(reformed.model_dir.parent))
    with TestClient(create_app()) as client:
        labels = client.get("/v1/model").json()["labels"]["department"]
        routed = client.post("/v1/route", json={"text": DATA}).json()["department"]
    assert labels[-1] == "数据局"  # a dispatcher can correct a ticket to it on the page
    assert routed["label"] == "数据局" and routed["rule"]["keywords"] == ["数据", "共享"]


def test_a_new_label_rule_is_refused_for_a_head_the_model_does_not_train():
    from training.rules import check_rule_labels

    rules = pd.DataFrame(
        {
            "source": ["r.csv row 1", "r.csv row 2"],
            "department": ["数据局", ""],
            "category": ["", "数据"],
            "new_label": [True, True],
        }
    )
    with pytest.raises(TicketFileError) as e:
        check_rule_labels(rules, {"department": ["人社", "住建"]})
    said = str(e.value)
    assert "r.csv row 2: category '数据'" in said and "数据局" not in said


def test_new_label_reads_yes_and_no_as_spreadsheets_write_them(tmp_path):
    # Excel's TRUE/FALSE, a column of ones and zeros with a gap (pandas writes 1.0), 是/否, empty.
    rows = [("keywords", "department", "new_label")] + [
        (f"词{i}", "数据局", value)
        for i, value in enumerate(["yes", "TRUE", "1.0", "是", "", "no", "False", "0", "否"])
    ]
    got = read_rules(write_rows(tmp_path / "r.csv", rows))["new_label"].tolist()
    assert got == [True] * 4 + [False] * 5
    excel = pd.DataFrame(
        {
            "keywords": ["数据", "燃气", "电梯"],
            "department": ["数据局"] * 3,
            "new_label": [True, None, False],
        }
    )
    excel.to_excel(tmp_path / "r.xlsx", index=False)
    assert read_rules(tmp_path / "r.xlsx")["new_label"].tolist() == [True, False, False]


def test_rule_labels_merged_into_other_are_not_said_to_be_named_by_no_ticket():
    # A county's 40 townships with 2 or 3 tickets each, merged into 其他, and a new_label rule for
    # each: train said "青石镇人民政府, …, which no training ticket names", though 93 did.
    from paidan.cli import rules_line

    rules = {
        "rows": 3,
        "departments": 3,
        "review": 3,
        "new_labels": {"department": ["青石镇人民政府", "桃源镇人民政府", "数据局"]},
    }
    merged = {"department": {"青石镇人民政府": 2, "桃源镇人民政府": 3, "县医保局": 1}}
    assert rules_line(rules, merged) == (
        "applies 3 dispatch rules before its own ranking, sending tickets to 3 departments, 3 of "
        "them for a person to confirm; 青石镇人民政府, 桃源镇人民政府, whose training tickets were "
        "too few to learn (merged into '其他'), come from rules alone; 数据局, which no training "
        "ticket names, comes from rules alone"
    )


def test_a_rule_names_a_label_holding_a_number_as_the_history_learns_it(tmp_path):
    # The history's 网格员１３８１２３４５６７８ (full-width digits, a BOM pasted in) is learnt masked,
    # 网格员[手机号]: the rule naming it as written must name the learnt label, or it is refused
    # as unknown (and, marked new_label, would send tickets to a label the model never gives).
    rows = [
        ("keywords", "department", "category"),
        ("路灯", "\ufeff网格员１３８１２３４５６７８ ", "市住建局"),
    ]
    read = read_rules(write_rows(tmp_path / "rules.csv", rows))
    assert read[["department", "category"]].values.tolist() == [["网格员[手机号]", "市住建局"]]


def test_set_rules_matches_a_label_an_older_model_learnt_with_a_number_in_it(
    tmp_path, tiny_config, monkeypatch
):
    # A model trained before labels were read masked learnt 人社网格员１３９… as written; a rules
    # file naming that label is read masked (人社网格员[手机号]), and set-rules refused it as a
    # label the model does not learn. It names the model's own label, masked or not.
    import model.tickets
    from tests.conftest import TINY_TICKETS, write_tickets_csv
    from training.rules import with_rules

    number = "１３９８７６５４３２１"
    old_label = f"人社网格员{number}"
    rows = [(t, x, old_label if d == "人社" else d, c) for t, x, d, c in TINY_TICKETS]
    data = write_tickets_csv(tmp_path / "t.csv", rows)
    root = tmp_path / "models"
    with monkeypatch.context() as m:  # the reader of before: labels as written
        m.setattr(model.tickets, "without_format_characters", lambda labels: labels)
        old = train([data], None, config=tiny_config, model_root=root)
    assert old_label in old.router.heads["department"].labels
    rules = write_rows(tmp_path / "rules.csv", [("keywords", "department"), ("电梯", old_label)])
    ruled = with_rules(root, old.router.version, rules)
    new, _ = load_router(ruled, root)
    assert new.predict([ELEVATOR_ADDED])[0].department.label == old_label
    # The model directory keeps the rule masked, as every rules file is read.
    assert "13987654321" not in (ruled / RULES_FILE).read_text(encoding="utf-8")
    assert number not in (ruled / RULES_FILE).read_text(encoding="utf-8")


def test_set_rules_in_a_root_it_cannot_write_names_the_root_not_out(
    tmp_path, tiny_config, monkeypatch
):
    # "--out ROOT/V cannot be written", an option set-rules does not have.
    import tempfile

    root = tmp_path / "models"
    train([write_tiny_csv(tmp_path / "tiny.csv")], root / "v1", config=tiny_config, model_root=root)
    rules = write_rows(tmp_path / "rules.csv", RULES)
    real_temp, real_mkdir = tempfile.NamedTemporaryFile, Path.mkdir

    def no_temp(*args, **kwargs):
        if Path(kwargs.get("dir") or ".") == root:
            raise PermissionError(13, "Permission denied")
        return real_temp(*args, **kwargs)

    def no_mkdir(self, *args, **kwargs):
        if self.parent == root and not self.exists():
            raise PermissionError(13, "Permission denied", str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", no_temp)
    monkeypatch.setattr(Path, "mkdir", no_mkdir)
    refused = with_rules_cli(root, "v1", ["--rules", str(rules)])
    said = " ".join(refused.output.split())
    assert refused.exit_code == 2, said
    assert said.startswith(
        f"error: the model root {root} (PAIDAN_MODEL_ROOT) cannot be written: Permission denied"
    ), said
    assert [p.name for p in model_dirs(root)] == ["v1"]
