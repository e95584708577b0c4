import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.preprocessing import normalize

from model.artifact import load_router
from model.router import REASON_NO_KNOWN_TERMS, Router


def test_prediction_shape(tiny_model_dir):
    router, meta = load_router(tiny_model_dir)
    [result] = router.predict([("欠薪", "老板拖欠农民工工资三个月不发")], top_k=3)
    assert result.model_version == meta["version"]
    dept = result.department
    assert dept is not None and dept.label == "人社"
    assert len(dept.candidates) == 3
    assert dept.candidates[0].label == dept.label and dept.candidates[0].score == dept.score
    assert abs(sum(c.score for c in dept.candidates) - 1) < 0.01
    assert dept.decision in ("auto", "review")
    assert dept.threshold == round(meta["heads"]["department"]["threshold"], 4)
    assert dept.evidence and all(e.weight > 0 for e in dept.evidence)
    assert any("工资" in e.term or "欠薪" in e.term or "拖欠" in e.term for e in dept.evidence)
    assert result.category is not None
    assert 0 < len(result.similar) <= 5
    assert result.similar[0].department == "人社"
    sims = [s.similarity for s in result.similar]
    assert sims == sorted(sims, reverse=True)


def test_decision_follows_threshold(tiny_model_dir):
    router, _ = load_router(tiny_model_dir)
    head = router.heads["department"]
    text = "电梯坏了物业不管"
    head.threshold = 0.0
    assert router.predict([text])[0].department.decision == "auto"
    head.threshold = 1.0
    result = router.predict([text])[0].department
    assert result.decision == "review" and result.reason == "below_threshold"


def test_text_with_no_known_terms_goes_to_review(tiny_model_dir):
    router, _ = load_router(tiny_model_dir)
    router.heads["department"].threshold = 0.0
    result = router.predict(["12345 67890"])[0]
    assert result.department.decision == "review"
    assert result.department.reason == REASON_NO_KNOWN_TERMS
    assert result.decision == "review"


def test_text_with_no_known_terms_is_shown_no_similar_tickets(tiny_model_dir):
    # Punctuation alone shares character n-grams with stored tickets (their "，" and "。"), but
    # such neighbours are no precedent; a ticket with a known word in the same batch still has its.
    router, _ = load_router(tiny_model_dir)
    punctuation, known = router.predict(["，，，。。。", "电梯坏了物业不管"])
    assert punctuation.department.reason == REASON_NO_KNOWN_TERMS
    assert punctuation.similar == [] and punctuation.co_departments == []
    assert known.similar and known.similar[0].department == "住建"
    X = router.transform(["，，，。。。"])
    assert router.index.nearest(X, 5)[0][0].size > 0  # what the search alone would have shown


@pytest.mark.parametrize(
    "ticket",
    ["见附件", "見附件", "如题", "详见附件", "详见附件。", "如题，见附件", ("同上", "详见附件")],
)
def test_a_ticket_of_placeholders_alone_holds_no_known_terms(placeholder_model_dir, ticket):
    # A ticket that only says "see the attachment" or "as the title says" was an ordinary
    # low-confidence guess (below_threshold), shown similar tickets of the same placeholder:
    # nothing told the dispatcher that the ticket says nothing and the attachment must be read.
    router, _ = load_router(placeholder_model_dir)
    X = router.transform([ticket])
    assert (X.indices < router.word_view_width()).any()  # the model knows these words
    for head in router.heads.values():
        head.threshold = 0.0
    result = router.predict([ticket])[0]
    assert result.department.reason == REASON_NO_KNOWN_TERMS
    assert result.category.reason == REASON_NO_KNOWN_TERMS
    assert result.department.decision == "review" and result.similar == []


def test_a_placeholder_beside_real_words_is_read_as_a_ticket(placeholder_model_dir):
    router, _ = load_router(placeholder_model_dir)
    for head in router.heads.values():
        head.threshold = 0.0
    tickets = [
        ("广场舞噪音", "见附件"),
        "楼下烧烤店油烟很大，详见附件",
        ("如题", "电梯坏了物业不管"),
    ]
    for result in router.predict(tickets):
        assert result.department.decision == "auto" and result.department.reason is None
        assert result.similar


@given(
    rows=st.lists(st.sets(st.integers(0, 11), max_size=8), min_size=1, max_size=12),
    placeholders=st.sets(st.integers(0, 5), max_size=4),
)
def test_without_known_terms_reads_each_row_alone_and_in_a_batch_alike(rows, placeholders):
    # Columns 0-5 are words, 6-11 character n-grams; a row holds no known term when its words
    # are none or all placeholders'.
    from model.router import without_known_terms

    indptr = np.cumsum([0] + [len(r) for r in rows])
    indices = np.array([c for r in rows for c in sorted(r)], dtype=np.int32)
    X = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(len(rows), 12))
    cols = np.array(sorted(placeholders), dtype=np.int32)
    expected = [all(c >= 6 or c in placeholders for c in r) for r in rows]
    assert without_known_terms(X, 6, cols).tolist() == expected
    assert [without_known_terms(X[i], 6, cols)[0] for i in range(len(rows))] == expected


def test_input_forms_agree(tiny_model_dir):
    router, _ = load_router(tiny_model_dir)
    a = router.predict([("欠薪", "老板不发工资")], similar_k=0)[0]
    b = router.predict([{"title": "欠薪", "text": "老板不发工资"}], similar_k=0)[0]
    assert a == b
    assert router.predict([]) == []


def test_masked_gives_the_ticket_as_typed_masked_once_and_changes_nothing_else(
    tiny_model_dir, monkeypatch
):
    # The ticket handed back was the cleaned text (full-width punctuation half-width, lower case,
    # one line): the page showed the dispatcher their ticket altered. It is the ticket as typed
    # now, with what masking replaced in the text prediction read replaced in it, from the one
    # masking pass that text had.
    import model.text

    router, _ = load_router(tiny_model_dir)
    tickets = [("欠薪 13812345678", "老板不发工资，电话13812345678"), (None, "路灯坏了")]
    plain = router.predict(tickets)
    calls: list[str] = []
    mask = model.text._mask

    def counted(text, sub):
        calls.append(text)
        return mask(text, sub)

    monkeypatch.setattr(model.text, "_mask", counted)
    read = router.predict(tickets, masked=True)
    # Each title and text masked once (a missing title not at all).
    assert calls == ["欠薪 13812345678", "老板不发工资,电话13812345678", "路灯坏了"]
    assert [r.masked.model_dump() for r in read] == [
        {"title": "欠薪 [手机号]", "text": "老板不发工资，电话[手机号]"},
        {"title": None, "text": "路灯坏了"},
    ]
    assert [r.model_copy(update={"masked": None}) for r in read] == plain
    assert all(r.masked is None for r in plain)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(max_size=300))
def test_prediction_never_raises_on_any_unicode(tiny_model_dir, s):
    router = _cached(tiny_model_dir)
    [result] = router.predict([s])
    assert result.department is not None and 0 <= result.department.score <= 1


_ROUTERS: dict = {}


def _cached(path):
    if path not in _ROUTERS:
        _ROUTERS[path] = load_router(path)[0]
    return _ROUTERS[path]


# -- the department head's extra inputs: latent view and the category head's probabilities --------
def test_latent_view_is_a_truncated_svd_of_the_frequent_features():
    from sklearn.decomposition import TruncatedSVD

    from model.pipeline import LatentView

    rng = np.random.default_rng(0)
    X = sp.random(60, 40, density=0.2, format="lil", random_state=1, dtype=np.float32)
    X[:, 39] = 0  # a column no document has: never part of the view
    X[1:, 38] = 0
    X[0, 38] = 1.0  # a column one document has: below min_df=2
    X = sp.csr_matrix(X)
    X[5, 37] = 0.0  # an explicit zero is not an occurrence
    X = sp.csr_matrix(X)
    view = LatentView.fit(X, n_components=5, min_df=2, weight=0.5, seed=0)
    assert view is not None and view.width == 5
    assert 38 not in view.columns and 39 not in view.columns
    svd = TruncatedSVD(n_components=5, algorithm="randomized", random_state=0)
    expected = svd.fit_transform(X[:, view.columns])
    expected = 0.5 * expected / np.linalg.norm(expected, axis=1, keepdims=True)
    Q = sp.csr_matrix(rng.random((4, 40)) * (rng.random((4, 40)) < 0.3), dtype=np.float32)
    np.testing.assert_allclose(view.transform(X), expected, atol=1e-5)
    np.testing.assert_allclose(
        view.transform(Q),
        0.5 * normalize(svd.transform(Q[:, view.columns])),
        atol=1e-5,
    )
    # A row with no frequent feature projects to zeros, not to NaN.
    only_rare = sp.csr_matrix(([1.0], ([0], [38])), shape=(1, 40), dtype=np.float32)
    assert not view.transform(only_rare).any()
    # Too little data for two components: no view at all.
    assert LatentView.fit(X[:2], n_components=5, min_df=1, weight=0.5, seed=0) is None


def test_department_head_reads_tfidf_latent_view_and_category_probabilities(tiny_model_dir):
    router, meta = load_router(tiny_model_dir)
    assert meta["config"]["lsa_components"] > 0 and meta["config"]["stack_category"]
    assert router.head_order() == ["category", "department"]
    X = router.transform(["物业不修电梯"])
    category = router.heads["category"]
    width = X.shape[1] + router.latent.width + len(category.labels)
    assert router.heads["department"].classifier.n_features_in_ == width
    assert category.classifier.n_features_in_ == X.shape[1]  # the category head reads TF-IDF only


def test_models_without_extra_inputs_still_load_and_predict(tiny_csv, tiny_config):
    # A router pickled before the latent view and stacking existed has none of their attributes.
    import dataclasses
    import pickle

    from training.train import train

    config = dataclasses.replace(tiny_config, lsa_components=0, stack_category=False)
    router = train([tiny_csv], None, config=config).router
    assert router.latent is None and router.stacked == {}
    state = router.__getstate__()
    for name in ("latent", "latent_heads", "stacked"):
        del state[name]
    old = Router.__new__(Router)
    old.__setstate__(pickle.loads(pickle.dumps(state)))
    assert old.latent is None and old.latent_heads == () and old.stacked == {}
    tickets = ["物业不修电梯", ("欠薪", "老板不发工资")]
    assert old.predict(tickets) == router.predict(tickets)


def test_a_large_history_compares_inputs_on_a_sample_and_scores_the_choice_on_all(
    tiny_csv, tiny_config
):
    import dataclasses

    from training.train import train

    config = dataclasses.replace(tiny_config, select_inputs=True, cv_folds=2, select_max_rows=9)
    result = train([tiny_csv], None, config=config)
    dept = result.metadata["cv_metrics"]["department"]
    # Half of each department's six rows would be three; two folds need four of each.
    assert dept["input_selection_rows"] == 12 and len(dept["input_selection"]) == 4
    assert dept["n"] == 18 and "rows" not in dept  # the chosen input, on every row
    chosen = result.metadata["heads"]["department"]["inputs"]
    best = max(dept["input_selection"], key=lambda t: t["macro_f1"])
    assert chosen == best["inputs"] == result.router.head_inputs("department")
    small = train([tiny_csv], None, config=dataclasses.replace(config, select_max_rows=18))
    assert "input_selection_rows" not in small.metadata["cv_metrics"]["department"]


def test_cv_max_rows_cross_validates_on_a_sample_and_fits_on_every_row(tiny_csv, tiny_config):
    import dataclasses

    from training.train import train

    config = dataclasses.replace(tiny_config, select_inputs=True, cv_folds=2, cv_max_rows=9)
    result = train([tiny_csv], None, config=config)
    for head in ("department", "category"):
        m = result.metadata["cv_metrics"][head]
        # Half of each label's rows would be two or three; two folds need four of each.
        assert (m["n"], m["rows"]) == (12, 18), head
        assert sum(c["support"] for c in m["per_class"].values()) == 12
        # Every row has probabilities for a stacked head: held out, or the folds' mean.
        proba = result.cv[head].proba
        assert proba.shape[0] == 18
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)
        # The shipped head learnt every row.
        assert sum(result.metadata["heads"][head]["counts"].values()) == 18
    dept = result.metadata["cv_metrics"]["department"]
    # One cross-validation on the sample serves the comparison and the chosen input's figures.
    assert len(dept["input_selection"]) == 4 and dept["input_selection_rows"] == 12
    best = max(dept["input_selection"], key=lambda t: t["macro_f1"])
    assert dept["macro_f1"] == best["macro_f1"]
    assert best["inputs"] == result.router.head_inputs("department")
    small = train([tiny_csv], None, config=dataclasses.replace(config, cv_max_rows=18))
    assert "rows" not in small.metadata["cv_metrics"]["department"]
    assert small.metadata["cv_metrics"]["department"]["n"] == 18


def test_cv_sample_keeps_every_label_cross_validatable() -> None:
    import dataclasses

    from model.config import TrainingConfig
    from training.train import cv_sample

    y = np.array(["a"] * 1000 + ["b"] * 30 + ["c"] * 5)
    config = dataclasses.replace(TrainingConfig(), cv_folds=5)
    sample = cv_sample(y, 100, config)
    assert sample is not None and np.all(np.diff(sample) > 0)
    assert {k: int((y[sample] == k).sum()) for k in "abc"} == {"a": 97, "b": 10, "c": 5}
    np.testing.assert_array_equal(sample, cv_sample(y, 100, config))  # the seed decides
    assert cv_sample(y[:100], 100, config) is None
    assert cv_sample(y, None, config) is None


def test_the_department_heads_inputs_are_chosen_by_cross_validation(tiny_csv, tiny_config):
    import dataclasses

    from training.train import train

    result = train([tiny_csv], None, config=dataclasses.replace(tiny_config, select_inputs=True))
    tried = result.metadata["cv_metrics"]["department"]["input_selection"]
    assert [t["inputs"] for t in tried] == [
        ["tfidf"],
        ["tfidf", "category"],
        ["tfidf", "latent"],
        ["tfidf", "latent", "category"],
    ]
    best = max(tried, key=lambda t: t["macro_f1"])  # the first, simplest, on a tie
    chosen = result.metadata["heads"]["department"]["inputs"]
    assert chosen == best["inputs"] == result.router.head_inputs("department")
    assert result.metadata["cv_metrics"]["department"]["macro_f1"] == best["macro_f1"]
    assert (result.router.latent is not None) == ("latent" in chosen)
    assert result.metadata["heads"]["category"]["inputs"] == ["tfidf"]


def _top_score(router: Router, ticket: tuple[str, str], head: str) -> float:
    """The suggested label's probability as the decision reads it, unrounded."""
    return float(router.rank(router.transform([ticket]))[head].scores[0, 0])


def test_a_score_just_below_its_threshold_never_reads_as_reaching_it(tiny_model_dir):
    # Both rounded to 4 decimals, a review whose score was a hair below its threshold read e.g.
    # score 0.9192 beside threshold 0.9192, as if it had reached it.
    router, _ = load_router(tiny_model_dir)
    ticket = ("欠薪", "老板拖欠农民工工资三个月不发")
    score = _top_score(router, ticket, "department")
    head = router.heads["department"]
    head.threshold = score + 1e-9
    assert round(head.threshold, 4) == round(score, 4)  # rounded alike: the case in hand
    shown = router.predict([ticket])[0].department
    assert shown.decision == "review" and shown.reason == "below_threshold"
    assert shown.score < shown.threshold, shown
    assert shown.threshold == round(head.threshold, 4)  # the threshold reads as before
    assert shown.score == round(shown.threshold - 0.0001, 4)  # the nearest figure below it
    assert shown.candidates[0].score == shown.score
    # At the threshold itself: auto, and it reads as reaching it.
    head.threshold = score
    shown = router.predict([ticket])[0].department
    assert shown.decision == "auto" and shown.score >= shown.threshold


@given(
    score=st.floats(0, 1),
    threshold=st.floats(0, 1),
)
def test_shown_figures_compare_as_the_decision_does(score: float, threshold: float) -> None:
    from model.router import shown_score, shown_scores, shown_threshold

    shown = shown_score(score, threshold)
    assert (shown >= shown_threshold(threshold)) == (score >= threshold)
    assert abs(shown - score) <= 0.00015  # one step of 4 decimals at most, and never below 0
    assert 0 <= shown <= 1
    assert shown_scores(np.array([[score, score]]), threshold) == [[shown, shown]]


@given(
    scores=st.lists(st.floats(0, 1), min_size=1, max_size=200),
    threshold=st.floats(0, 1),
)
def test_shown_scores_are_each_scores_shown_score_in_either_pass(
    scores: list[float], threshold: float
) -> None:
    # One request's few scores take a Python pass, a batch's many an array pass: both must show
    # what shown_score shows, near the threshold (where they differ from plain rounding) too.
    from model.router import shown_score, shown_scores

    near = [threshold + d for d in (-0.00011, -0.00005, -1e-9, 0.0, 1e-9, 0.00005)]
    values = np.clip(np.array(scores + near), 0, 1)
    want = [shown_score(float(v), threshold) for v in values]
    assert shown_scores(values, threshold) == want
    assert shown_scores(values.reshape(-1, 1), threshold) == [[w] for w in want]


def test_the_catch_all_department_goes_to_a_person_however_confident(merged_model_dir):
    # 其他 holds the departments too rare to learn: no work order can go to it. A county model
    # trained on 60 tickets sent 17 of 200 held-out tickets to 其他 automatically, at up to 0.99.
    from model.router import REASON_CATCH_ALL

    model_dir, _ = merged_model_dir
    router, _ = load_router(model_dir)
    for head in router.heads.values():
        head.threshold = 0.0  # every suggestion passes: only the label can make it review
    other, wages = router.predict(
        [("档案遗失", "调动工作时档案遗失了，档案馆查不到记录"), "老板拖欠农民工工资三个月不发"]
    )
    assert other.department.label == "其他", other.department
    assert other.department.decision == "review"
    assert other.department.reason == REASON_CATCH_ALL
    assert other.category.decision == "auto"  # a category of 其他 would still be a category
    assert other.decision == "review"
    assert wages.department.label == "人社" and wages.department.decision == "auto"
    ranked = router.rankings([("档案遗失", "调动工作时档案遗失了，档案馆查不到记录")])
    assert ranked["department"].auto.tolist() == [False]  # what batch labelling writes


def test_similar_tickets_show_the_start_of_their_text(tiny_model_dir):
    from model.router import SNIPPET_CHARS
    from model.text import clean, snippet
    from tests.conftest import TINY_TICKETS

    router, _ = load_router(tiny_model_dir, serving=True)
    [result] = router.predict([("欠薪", "老板拖欠农民工工资三个月不发")])
    assert result.similar
    texts = {f"T{i:03d}": text for i, (_, text, _, _) in enumerate(TINY_TICKETS, 1)}
    for s in result.similar:
        assert s.snippet == snippet(texts[s.id], SNIPPET_CHARS) == clean(texts[s.id])


def test_a_long_text_is_shown_cut_and_a_ticket_without_text_without_snippet():
    from model.router import SNIPPET_CHARS, PackedTexts, SimilarIndex

    long = "小区门口" + "垃圾" * 100 + "电话13812345678"
    packed = PackedTexts.of(["", "短", long[:SNIPPET_CHARS] + "…"])
    index = SimilarIndex(
        matrix=sp.csr_matrix(np.eye(3, dtype=np.float32)),
        ids=np.array(["a", "b", "c"], dtype=object),
        titles=np.array(["", "", ""], dtype=object),
        departments=np.array(["", "", ""], dtype=object),
        categories=np.array(["", "", ""], dtype=object),
        snippets=packed,
    )
    a, b, c = index.tickets(np.arange(3), np.ones(3))
    assert (a.snippet, b.snippet) == (None, "短")
    assert c.snippet == long[:SNIPPET_CHARS] + "…" and len(c.snippet) == SNIPPET_CHARS + 1


def test_a_model_saved_before_snippets_loads_and_shows_titles_only(tiny_model_dir, tmp_path):
    import hashlib
    import json
    import shutil

    import joblib

    old = tmp_path / "old"
    shutil.copytree(tiny_model_dir, old)
    serving, _ = load_router(old, serving=True)
    # What unpickling a SimilarIndex written before snippets gives: no such attribute at all.
    del serving.index.__dict__["snippets"]
    # Written beside and renamed over: the loaded router memory-maps the file it replaces.
    path = old / "serving.joblib"
    joblib.dump(serving, old / "serving.new", compress=0)
    (old / "serving.new").replace(path)
    meta_path = old / "metadata.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["files"]["serving.joblib"] = hashlib.sha256(path.read_bytes()).hexdigest()
    meta["format_version"] = 1  # as the paidan before snippets wrote it
    meta_path.chmod(0o600)
    meta_path.write_text(json.dumps(meta), encoding="utf-8")

    ticket = [("欠薪", "老板拖欠农民工工资三个月不发")]
    new, _ = load_router(tiny_model_dir, serving=True)
    [expected] = new.predict(ticket)
    for whole in (False, True):
        router, _ = load_router(old, serving=whole)
        [result] = router.predict(ticket)
        assert result.similar and all(s.snippet is None for s in result.similar)
        assert [s.title for s in result.similar] == [s.title for s in expected.similar]
        assert result.department == expected.department


def test_a_model_with_snippets_is_refused_by_a_paidan_before_them_in_one_line(tiny_model_dir):
    # That paidan read format 1 and refuses a newer format by name; unpickled, it failed on the
    # PackedTexts class it does not have.
    import json

    meta = json.loads((tiny_model_dir / "metadata.json").read_text(encoding="utf-8"))
    router, _ = load_router(tiny_model_dir, serving=True)
    assert router.index.snippets is not None
    assert meta["format_version"] > 1


def test_a_stored_snippet_is_shown_after_its_salutation():
    # Models trained before snippets skipped greetings stored 尊敬的领导:您好! as the start of
    # their 60 characters: it is left out where the snippet is shown, too.
    from model.router import PackedTexts, SimilarIndex

    packed = PackedTexts.of(["尊敬的领导:您好!楼下烧烤店油烟很大…", "您好,…", "楼下烧烤店油烟很大"])
    index = SimilarIndex(
        matrix=sp.csr_matrix(np.eye(3, dtype=np.float32)),
        ids=np.array(["a", "b", "c"], dtype=object),
        titles=np.array(["", "", ""], dtype=object),
        departments=np.array(["", "", ""], dtype=object),
        categories=np.array(["", "", ""], dtype=object),
        snippets=packed,
    )
    a, b, c = index.tickets(np.arange(3), np.ones(3))
    assert [a.snippet, b.snippet, c.snippet] == [
        "楼下烧烤店油烟很大…",
        "您好,…",
        "楼下烧烤店油烟很大",
    ]
