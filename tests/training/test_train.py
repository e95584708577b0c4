import csv
import dataclasses
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from model import resources
from model.artifact import load_router, read_metadata
from model.config import TrainingConfig
from model.router import scale_temperature
from paidan.cli import app
from tests.conftest import TINY_TICKETS
from training.train import train

runner = CliRunner()


def test_a_file_with_only_categories_trains_only_the_category_head(
    tmp_path, tiny_config, monkeypatch
):
    from model.pipeline import LatentView

    def not_needed(*args, **kwargs):
        raise AssertionError("the latent view was fitted, but only a department head reads it")

    monkeypatch.setattr(LatentView, "fit", not_needed)
    path = tmp_path / "cats.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["内容", "类别"])
        for _, text, _, cat in TINY_TICKETS:
            w.writerow([text, cat])
    from model.tickets import ColumnMap

    result = train([path], tmp_path / "m", ColumnMap(text="内容", category="类别"), tiny_config)
    assert set(result.router.heads) == {"category"}
    assert result.router.latent is None
    [pred] = result.router.predict(["老板拖欠工资"])
    assert pred.department is None and pred.category is not None


def test_cv_metrics_and_thresholds_are_stored(tiny_model_dir):
    meta = read_metadata(tiny_model_dir)
    for head in ("department", "category"):
        m = meta["cv_metrics"][head]
        assert 0 <= m["macro_f1"] <= 1 and m["n"] == 18 and m["folds"] == 3
        assert meta["heads"][head]["threshold"] == m["auto"]["threshold"]
        # The threshold is chosen so that held-out auto rows reach the target, unless none can.
        assert m["auto"]["precision"] >= 0.95 or m["auto"]["threshold"] == 1.0


def test_cli_train_evaluate_predict(tmp_path, tiny_csv):
    out = tmp_path / "model"
    r = runner.invoke(app, ["train", str(tiny_csv), "--out", str(out), "--min-examples", "2"])
    assert r.exit_code == 0, r.output
    assert "written to" in r.output and (out / "metadata.json").is_file()
    assert "category head shifts its label prior by alpha" in r.output

    again = runner.invoke(app, ["train", str(tiny_csv), "--out", str(out)])
    assert again.exit_code == 2 and "--force" in again.output

    report = tmp_path / "report.json"
    r = runner.invoke(app, ["evaluate", str(out), str(tiny_csv), "--report", str(report)])
    assert r.exit_code == 0, r.output
    data = json.loads(report.read_text())
    assert data["n"] == len(TINY_TICKETS)
    for head in ("department", "category"):
        h = data[head]
        assert {
            "accuracy",
            "macro_f1",
            "weighted_f1",
            "top3_accuracy",
            "auto",
            "per_class",
            "confusion",
        } <= set(h)
        assert set(h["auto"]) == {"threshold", "precision", "coverage"}
        assert sum(map(sum, h["confusion"]["matrix"])) == len(TINY_TICKETS)
    md = report.with_suffix(".md").read_text()
    assert "macro-F1" in md and "report.confusion-department.png" in md
    assert (tmp_path / "report.reliability.png").stat().st_size > 1000

    r = runner.invoke(
        app, ["predict", str(out), "烧烤店油烟很大，晚上十二点还在营业", "--title", "油烟扰民"]
    )
    assert r.exit_code == 0, r.output
    suggestion = json.loads(r.stdout)
    assert suggestion["department"]["label"] == "执法"
    assert suggestion["model_version"] == read_metadata(out)["version"]


def test_cli_bad_input_is_one_clear_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("标题,内容\n欠薪,拖欠工资\n", encoding="utf-8")
    r = runner.invoke(app, ["train", str(bad), "--out", str(tmp_path / "m")])
    assert r.exit_code == 2
    assert "no column 'text'" in r.output and "'内容'" in r.output
    assert "Traceback" not in r.output


def test_evaluate_omits_heads_whose_label_is_absent(tmp_path, tiny_model_dir):
    path = tmp_path / "cats.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "category"])
        for _, text, _, cat in TINY_TICKETS:
            w.writerow([text, cat])
    from training.evaluate import evaluate

    report = evaluate(tiny_model_dir, [path])
    assert "category" in report and "department" not in report


def test_cli_refuses_a_tampered_model(tmp_path, tiny_model_dir):
    import shutil
    import stat

    m = tmp_path / "m"
    shutil.copytree(tiny_model_dir, m)
    pkl = m / "router.joblib"
    pkl.chmod(stat.S_IRUSR | stat.S_IWUSR)
    pkl.write_bytes(pkl.read_bytes()[:-10])
    r = runner.invoke(app, ["predict", str(m), "欠薪"])
    assert r.exit_code == 2 and "checksum" in r.output and "Traceback" not in r.output
    with pytest.raises(Exception, match="checksum"):
        load_router(m)


def test_cli_train_records_the_tokenizer_backend_it_was_asked_for(tmp_path, tiny_csv):
    runner = CliRunner()
    for backend in ("jieba", "rjieba"):
        out = tmp_path / backend
        r = runner.invoke(
            app,
            [
                "train",
                str(tiny_csv),
                "--out",
                str(out),
                "--min-examples",
                "2",
                "--tokenizer",
                backend,
            ],
        )
        assert r.exit_code == 0, r.output
        assert read_metadata(out)["config"]["tokenizer"] == backend
        router, _ = load_router(out)
        assert router.features.named_steps["tokenize"].backend_ == backend
    r = runner.invoke(
        app, ["train", str(tiny_csv), "--out", str(tmp_path / "x"), "--tokenizer", "hanlp"]
    )
    assert r.exit_code != 0 and "hanlp" in r.output


@pytest.mark.slow
def test_the_model_is_the_same_for_any_number_of_worker_processes():
    # The bundled sample with a cheap configuration: big enough that liblinear iterates, so fits
    # sharing one random generator (threads) would already differ in the sixth decimal here.
    config = dataclasses.replace(
        TrainingConfig(),
        cv_folds=3,
        calibration_cv=2,
        char_ngram_max=0,
        lsa_components=20,
        lsa_min_df=2,
    )
    here = train([resources.sample_path()], None, config=config, n_jobs=1)
    pool = train([resources.sample_path()], None, config=config, n_jobs=2)
    assert here.metadata == pool.metadata  # metrics, thresholds, the chosen inputs
    assert len(here.metadata["cv_metrics"]["department"]["input_selection"]) == 4
    for head in here.cv:
        np.testing.assert_array_equal(here.cv[head].proba, pool.cv[head].proba)
    tickets = [(title, text) for title, text, _, _ in TINY_TICKETS]
    a, b = here.router.predict_proba(tickets), pool.router.predict_proba(tickets)
    assert a.keys() == b.keys() == {"department", "category"}
    for head in a:
        np.testing.assert_array_equal(a[head], b[head])


def test_cli_train_takes_a_number_of_worker_processes(tmp_path, tiny_csv):
    out = tmp_path / "model"
    args = ["train", str(tiny_csv), "--out", str(out), "--min-examples", "2"]
    r = runner.invoke(app, [*args, "--jobs", "0"])
    assert r.exit_code == 2 and "--jobs" in r.output
    r = runner.invoke(app, [*args, "--jobs", "1"])
    assert r.exit_code == 0, r.output


def test_each_heads_prior_shift_is_chosen_out_of_fold_and_stored(tiny_model_dir):
    from model.config import PRIOR_ALPHAS

    router, meta = load_router(tiny_model_dir)
    for name, head in router.heads.items():
        m = meta["cv_metrics"][name]
        tried = m["prior_selection"]
        assert [t["alpha"] for t in tried] == list(PRIOR_ALPHAS)
        best = max(t["macro_f1"] for t in tried)
        chosen = next(t for t in tried if t["macro_f1"] == best)  # the smallest of the best
        assert m["prior_alpha"] == chosen["alpha"] == meta["heads"][name]["prior_alpha"]
        assert head.prior_alpha == chosen["alpha"]
        assert m["macro_f1"] == best  # the reported metrics are those of the shifted probabilities


def test_a_fixed_prior_alpha_is_used_as_given(tmp_path, tiny_csv, tiny_config):
    config = dataclasses.replace(tiny_config, prior_alpha=0.5)
    result = train([tiny_csv], None, config=config)
    for name, head in result.router.heads.items():
        assert head.prior_alpha == 0.5
        assert "prior_selection" not in result.cv[name].report
        [proba] = result.router.predict_proba(["老板拖欠工资三个月"])[name]
        [pred] = result.router.predict(["老板拖欠工资三个月"], top_k=len(head.labels))
        shown = getattr(pred, name)
        rank = head.shift(proba[np.newaxis])[0]
        # Suggested in the shifted order, each label shown with its calibrated probability.
        assert [c.label for c in shown.candidates] == [head.labels[i] for i in np.argsort(-rank)]
        assert [c.score for c in shown.candidates] == [
            round(float(proba[i]), 4) for i in np.argsort(-rank)
        ]


def test_cli_prior_alpha_option_fixes_the_shift(tmp_path, tiny_csv):
    out = tmp_path / "model"
    r = runner.invoke(
        app,
        ["train", str(tiny_csv), "--out", str(out), "--min-examples", "2", "--prior-alpha", "0"],
    )
    assert r.exit_code == 0, r.output
    assert "shifts its label prior" not in r.output
    meta = read_metadata(out)
    assert {h["prior_alpha"] for h in meta["heads"].values()} == {0.0}
    bad = runner.invoke(
        app, ["train", str(tiny_csv), "--out", str(tmp_path / "m2"), "--prior-alpha", "2"]
    )
    assert bad.exit_code == 2 and "--prior-alpha" in bad.output


def _under_confident(rows: int, labels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities whose true labels are drawn from their square: under-confident by T = 0.5."""
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet(np.full(labels, 0.7), size=rows)
    truth = proba**2 / (proba**2).sum(axis=1, keepdims=True)
    y = np.array([f"l{rng.choice(labels, p=p)}" for p in truth])
    return proba, y


def test_the_temperature_is_the_likeliest_one_out_of_fold():
    from training.metrics import expected_calibration_error
    from training.train import choose_temperature

    labels = np.array([f"l{i}" for i in range(5)])
    proba, y = _under_confident(4_000, 5, seed=0)
    t = choose_temperature(proba, y, labels, None)
    assert 0.45 < t < 0.56  # the truth is 0.5; the sample has 4,000 rows

    def ece(p: np.ndarray, truth: np.ndarray) -> float:
        best = p.argmax(axis=1)
        return expected_calibration_error(p[np.arange(len(truth)), best], labels[best] == truth)

    # Fitted on one half, it calibrates the other.
    t_half = choose_temperature(proba[:2_000], y[:2_000], labels, None)
    rest, y_rest = proba[2_000:], y[2_000:]
    assert ece(scale_temperature(rest, t_half), y_rest) < ece(rest, y_rest) / 2
    assert choose_temperature(proba, y, labels, 1.0) == 1.0  # a fixed temperature is kept


def test_the_temperature_stays_in_its_range_on_separable_folds():
    from model.config import TEMPERATURE_MIN
    from training.train import choose_temperature

    labels = np.array(["a", "b"])
    proba = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    y = np.array(["a", "b", "a"])  # always right: sharper is always likelier
    assert choose_temperature(proba, y, labels, None) == pytest.approx(TEMPERATURE_MIN, abs=1e-3)


def test_each_heads_temperature_is_stored_and_its_threshold_reads_the_shown_scores(tiny_model_dir):
    router, meta = load_router(tiny_model_dir)
    for name, head in router.heads.items():
        m = meta["cv_metrics"][name]
        assert m["temperature"] == meta["heads"][name]["temperature"] == head.temperature
        [proba] = router.predict_proba(["老板拖欠工资三个月"])[name]
        [pred] = router.predict(["老板拖欠工资三个月"], top_k=len(head.labels))
        shown = getattr(pred, name)
        assert shown.score == round(float(proba[head.labels.index(shown.label)]), 4)
        assert shown.decision == ("auto" if shown.score >= head.threshold else "review")


def test_cli_temperature_option_fixes_it(tmp_path, tiny_csv):
    out = tmp_path / "model"
    r = runner.invoke(
        app,
        ["train", str(tiny_csv), "--out", str(out), "--min-examples", "2", "--temperature", "1"],
    )
    assert r.exit_code == 0, r.output
    assert "at temperature" not in r.output
    assert {h["temperature"] for h in read_metadata(out)["heads"].values()} == {1.0}
    bad = runner.invoke(
        app, ["train", str(tiny_csv), "--out", str(tmp_path / "m2"), "--temperature", "0"]
    )
    assert bad.exit_code == 2 and "--temperature" in bad.output
