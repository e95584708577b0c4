"""The compiled prediction path gives scikit-learn's own answers, and the similar-ticket search finds
the exact nearest tickets."""

import copy
import dataclasses
from collections import Counter

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from model import router as router_module
from model.artifact import load_router
from model.compiled import CharNgramIndex, LatentView, char_wb_ngrams, word_ngrams
from model.config import TrainingConfig
from model.pipeline import (
    BlendedClassifier,
    build_classifier,
    build_features,
    compilable,
    compile_features,
    number_by_frequency,
    renumber_columns,
)
from model.router import Router, SimilarIndex, _prune_rows, _shortlist, _shortlist_dense, _top
from model.tokenizer import Doc, doc_text, doc_tokens

from ..conftest import TINY_TICKETS

TICKETS = [(t, x) for t, x, _, _ in TINY_TICKETS] + [
    "",
    "12345",
    "ＡＢＣ abc 电话13800001111",
    "加我微信wx_abc123，手机信号差",  # a mask, one word in the word view
    ("标题", None),
    {"title": "物业", "text": "电梯坏了 没人修\n\t请处理"},
    "完全没见过的词语组合" * 50,
]


@settings(max_examples=200, deadline=None)
@given(st.text(), st.sampled_from([(1, 1), (1, 3), (2, 4)]))
def test_char_wb_ngrams_equal_scikit_learns(text, ngram_range):
    vec = TfidfVectorizer(analyzer="char_wb", preprocessor=doc_text, ngram_range=ngram_range)
    doc = Doc(text, ())
    assert char_wb_ngrams(doc, doc_text, ngram_range) == vec.build_analyzer()(doc)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text(alphabet=st.sampled_from("的小区噪音 aA1😀"), max_size=4), max_size=12),
    st.sampled_from([(1, 1), (1, 2), (1, 3), (2, 2), (2, 3), (3, 3)]),
)
def test_word_ngrams_equal_scikit_learns(tokens, ngram_range):
    # The word view as build_features makes it: tokens cut already, nothing lowercased or dropped.
    vec = TfidfVectorizer(
        tokenizer=doc_tokens, token_pattern=None, lowercase=False, ngram_range=ngram_range
    )
    doc = Doc("", tuple(tokens))
    assert word_ngrams(doc, doc_tokens, ngram_range) == list(vec.build_analyzer()(doc))


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.sampled_from("的小区噪音 a1😀\u3000\t\n"), max_size=40),
    st.text(max_size=40),
    st.sampled_from([(1, 1), (1, 2), (1, 3), (2, 3), (3, 3)]),
    st.booleans(),
)
def test_packed_char_ngrams_find_the_same_columns_as_strings(seen, text, ngram_range, fitted):
    # The vocabulary is what another text (and part of this one) produced, so some of the document's
    # n-grams are known and some are not, as in serving.
    vocab_terms = dict.fromkeys(
        char_wb_ngrams(Doc(seen + text[: len(text) // 2], ()), doc_text, ngram_range)
    )
    # Numbered in sorted order, as scikit-learn numbers what it fits (columns are then the keys'
    # ranks), or in reverse order, as a hand-made vocabulary might be.
    vocabulary = {t: i for i, t in enumerate(sorted(vocab_terms, reverse=not fitted))}
    # NUL never survives normalisation; a vocabulary holding one is declined (tested below).
    assume("\x00" not in seen + text[: len(text) // 2])
    assert CharNgramIndex.supports(ngram_range, vocabulary)
    index = CharNgramIndex(vocabulary, doc_text, ngram_range)
    assert index.ranked == (fitted or len(vocabulary) < 2)
    doc = Doc(text, ())
    expected = Counter(
        vocabulary[t] for t in char_wb_ngrams(doc, doc_text, ngram_range) if t in vocabulary
    )
    columns, counts = index.counts(doc)
    assert columns.tolist() == sorted(expected)
    assert counts.tolist() == [expected[c] for c in sorted(expected)]


def test_char_ngram_index_declines_what_it_cannot_pack():
    assert not CharNgramIndex.supports((2, 4), {"ab": 0})
    assert not CharNgramIndex.supports((1, 3), {"a\x00": 0})
    assert CharNgramIndex.supports((1, 3), {" 甲 ": 0, "😀": 1})
    empty = CharNgramIndex({}, doc_text, (1, 3))
    assert empty.counts(Doc("任何文本", ()))[0].tolist() == []


def test_compiled_features_are_scikit_learns_bit_for_bit(tiny_model_dir):
    router, _ = load_router(tiny_model_dir)
    expected = sp.csr_matrix(router.features.transform(TICKETS))
    compiled = compile_features(router.features)
    # The character view's columns are numbered by frequency (number_by_frequency), not in its
    # keys' order, so the look-up goes through columns_of_keys.
    assert [v.char_keys.ranked for v in compiled.views if v.char_keys is not None] == [False]
    got = compiled.transform(TICKETS)  # many tickets: each view's arithmetic once per chunk
    assert got.shape == expected.shape and got.dtype == expected.dtype
    assert (got != expected).nnz == 0
    assert got.nnz > 0
    one_by_one = sp.vstack([compiled.transform([t]) for t in TICKETS], format="csr")
    assert (one_by_one != expected).nnz == 0
    np.testing.assert_array_equal(one_by_one.indptr, got.indptr)
    np.testing.assert_array_equal(one_by_one.indices, got.indices)
    # A batch larger than one piece of transform_docs (its pieces are stacked).
    many = compiled.transform(TICKETS * 30)
    assert many.dtype == expected.dtype and many.shape == (len(TICKETS) * 30, expected.shape[1])
    assert (many != sp.vstack([expected] * 30, format="csr")).nnz == 0


def test_one_tickets_row_is_scipys_own_without_its_checks(tiny_model_dir, monkeypatch):
    # One ticket's row skips csr_matrix's checks (they cost more than the row's arithmetic): it
    # must still be the row scipy would build from the same arrays, with the same index types,
    # and truly canonical (sorted, no duplicates), since it says so without a scan.
    router, _ = load_router(tiny_model_dir)
    compiled = compile_features(router.features)
    compiled.transform([TICKETS[0]])  # the template row, built once by scipy
    checked = []
    monkeypatch.setattr(
        sp.csr_matrix, "check_format", lambda self, full_check=True: checked.append(self)
    )
    rows = [compiled.transform([t]) for t in TICKETS]
    assert checked == []
    monkeypatch.undo()
    assert any(row.nnz for row in rows) and any(not row.nnz for row in rows)
    batch = compiled.transform(TICKETS)  # many tickets: the general path
    for i, row in enumerate(rows):
        assert (row != batch[i]).nnz == 0
        built = sp.csr_matrix((row.data, row.indices, row.indptr), shape=row.shape)
        for name in ("data", "indices", "indptr"):
            assert getattr(row, name).dtype == getattr(built, name).dtype, name
            np.testing.assert_array_equal(getattr(row, name), getattr(built, name))
        row.check_format(full_check=True)
        assert row.has_canonical_format and row.has_sorted_indices
        assert built.has_canonical_format and built.has_sorted_indices  # scanned, not told


def test_views_numbered_by_frequency_compute_the_same_values(tiny_config):
    features = build_features(tiny_config)
    docs = features[:2].fit(TICKETS).transform(TICKETS)
    views = features.named_steps["views"]
    before = sp.csr_matrix(views.fit_transform(docs))
    words = len(views.transformer_list[0][1].vocabulary_)
    new_of_old = number_by_frequency(views)
    # A permutation that keeps the word view's columns first.
    assert sorted(new_of_old.tolist()) == list(range(before.shape[1]))
    assert set(new_of_old[:words].tolist()) == set(range(words))
    after = sp.csr_matrix(views.transform(docs))
    assert after.has_sorted_indices
    # The rows produced before, renumbered in place (in pieces smaller than a row), are the rows
    # the renumbered views produce: column j before is column new_of_old[j] after.
    X = before.copy()
    renumber_columns(X, new_of_old, piece=7)
    assert X.has_sorted_indices and (after != X).nnz == 0
    for _, vec in views.transformer_list:
        idf = np.asarray(vec.idf_)
        assert np.all(np.diff(idf) >= 0), "most common terms first"
        # Ties (same document frequency) keep the alphabetical order scikit-learn gave them.
        names = vec.get_feature_names_out()
        tied = np.flatnonzero(np.diff(idf) == 0)
        assert tied.size and all(names[i] < names[i + 1] for i in tied)
    # The compiled path reads the renumbered views too.
    assert (compile_features(features).transform(TICKETS) != after).nnz == 0


def test_latent_view_of_one_row_is_its_row_of_many():
    rng = np.random.default_rng(5)
    X = sp.csr_matrix(rng.random((40, 30)) * (rng.random((40, 30)) < 0.3), dtype=np.float32)
    X[7] = 0  # a ticket with no known feature
    X.eliminate_zeros()
    view = LatentView.fit(X, n_components=6, min_df=2, weight=1.0, seed=0)
    assert view is not None
    many = view.transform(X)
    for i in range(X.shape[0]):
        np.testing.assert_array_equal(view.transform(X[i]), many[i : i + 1])
    assert not many[7].any()


def test_latent_view_follows_a_renumbering_of_the_columns():
    rng = np.random.default_rng(3)
    X = sp.csr_matrix(rng.random((30, 12)) * (rng.random((30, 12)) < 0.4), dtype=np.float32)
    view = LatentView.fit(X, n_components=4, min_df=3, weight=0.5, seed=0)
    assert view is not None
    expected = view.transform(X)
    new_of_old = rng.permutation(12)
    view.renumber(new_of_old)
    assert np.all(np.diff(view.columns) > 0)
    moved = X.copy()
    renumber_columns(moved, new_of_old)
    np.testing.assert_allclose(view.transform(moved), expected, atol=1e-6)


def test_trained_models_number_columns_by_frequency(tiny_model_dir):
    router, _ = load_router(tiny_model_dir)
    for _, vec in router.features.named_steps["views"].transformer_list:
        assert np.all(np.diff(np.asarray(vec.idf_)) >= 0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.text(alphabet=st.sampled_from("的小区噪音 a1😀\u3000\t\n"), max_size=30), max_size=6
    ),
    st.sampled_from([(1, 1), (1, 3), (2, 3), (3, 3)]),
    st.booleans(),
)
def test_char_ngrams_of_a_chunk_equal_each_documents_own(texts, ngram_range, fitted):
    terms = dict.fromkeys(char_wb_ngrams(Doc("的小区 噪音a 1😀区", ()), doc_text, ngram_range))
    vocabulary = {t: i for i, t in enumerate(sorted(terms, reverse=not fitted))}
    index = CharNgramIndex(vocabulary, doc_text, ngram_range)
    docs = [Doc(t, ()) for t in texts]
    doc_of, columns, counts = index.entries(docs)
    assert doc_of.tolist() == sorted(doc_of.tolist())
    for i, doc in enumerate(docs):
        expected = Counter(
            vocabulary[t] for t in char_wb_ngrams(doc, doc_text, ngram_range) if t in vocabulary
        )
        assert columns[doc_of == i].tolist() == sorted(expected)
        assert counts[doc_of == i].tolist() == [expected[c] for c in sorted(expected)]
        own_columns, own_counts = index.counts(doc)
        assert columns[doc_of == i].tolist() == own_columns.tolist()
        assert counts[doc_of == i].tolist() == own_counts.tolist()


@pytest.mark.parametrize("blended", [False, True], ids=["plain", "blended"])
def test_compiled_heads_give_scikit_learns_probabilities(blended, request):
    model_dir = request.getfixturevalue("blended_model_dir" if blended else "tiny_model_dir")
    router, _ = load_router(model_dir)
    # The department head reads the latent view and the category head's probabilities too.
    assert router.latent is not None and router.stacked == {"department": "category"}
    X = router.transform(TICKETS)
    fast = router.compiled()[1]
    assert set(fast.folds) == set(router.heads)
    scores = fast.scores(X)
    upstream: dict[str, np.ndarray] = {}
    # Both heads take the all-folds-at-once path; the per-fold path must agree with it too.
    assert set(fast.whole) == set(router.heads)
    # With the option only the department head blends in a multinomial regression; by default none.
    assert isinstance(router.heads["department"].classifier, BlendedClassifier) == blended
    assert not isinstance(router.heads["category"].classifier, BlendedClassifier)
    assert set(fast.multinomials) == ({"department"} if blended else set())
    per_fold = copy.copy(fast)
    per_fold.whole = {}
    for name in router.head_order():
        head = router.heads[name]
        whole = router.head_input(name, X, upstream)
        expected = head.classifier.predict_proba(whole)
        # Extras multiplied separately instead of stacked onto the sparse rows: the same result.
        got = fast.predict_proba(name, scores, router.extras(name, X, upstream))
        # The weights are float32; scikit-learn adds the extra columns inside its float32 product,
        # the compiled heads add them in float64: the probabilities differ in float32's last digits.
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
        looped = per_fold.predict_proba(name, scores, router.extras(name, X, upstream))
        np.testing.assert_allclose(looped, got, rtol=0, atol=1e-12)
        # One ticket at a time, from its gathered weight rows, as predict does it.
        for i in range(X.shape[0]):
            row = X[i]
            one = fast.predict_proba(
                name,
                fast.scores(row, fast.gather(row)),
                router.extras(name, row, {k: v[i : i + 1] for k, v in upstream.items()}),
            )
            np.testing.assert_allclose(one, expected[i : i + 1], rtol=0, atol=1e-6)
            # The same floats as the ticket's row of the batch: its scores and its latent row are
            # summed in the sparse products' order, so the page and batch labelling show the same
            # probability to the last digit.
            np.testing.assert_array_equal(one, got[i : i + 1])
        upstream[name] = expected


def test_binary_head_compiles_too(tiny_model_dir):
    router, _ = load_router(tiny_model_dir)
    X = router.transform(TICKETS[:18])
    y = np.array(["人社" if d == "人社" else "其他" for _, _, d, _ in TINY_TICKETS])
    head = router.fit_head("binary", X, y, threshold=0.5)
    fast = router.compiled()[1]
    assert "binary" in fast
    np.testing.assert_allclose(
        fast.predict_proba("binary", fast.scores(X)), head.classifier.predict_proba(X), atol=1e-12
    )


@pytest.mark.parametrize("blended", [False, True], ids=["plain", "blended"])
def test_compiled_class_weights_are_the_heads_mean_coefficients(blended, request):
    # Evidence reads these; Head.mean_coef is the readable definition.
    model_dir = request.getfixturevalue("blended_model_dir" if blended else "tiny_model_dir")
    router, _ = load_router(model_dir)
    X = router.transform(TICKETS[:18])
    y = np.array(["人社" if d == "人社" else "其他" for _, _, d, _ in TINY_TICKETS])
    router.fit_head("binary", X, y, threshold=0.5)
    fast = router.compiled()[1]
    columns = np.array([0, 3, 7, X.shape[1] - 1])
    for name, head in router.heads.items():
        for label in range(len(head.labels)):
            np.testing.assert_allclose(
                fast.class_weights(name, label, fast.weights[columns]),
                head.mean_coef(np.array([label]), columns)[0],
                atol=1e-12,
            )


def test_fused_weights_are_saved_once_and_the_folds_read_them(blended_model_dir):
    router, _ = load_router(blended_model_dir)
    weights = router._weights
    assert weights is not None and weights.flags.c_contiguous
    for head in router.heads.values():
        for calibrated in head.classifier.calibrated_classifiers_:
            assert np.shares_memory(calibrated.estimator.coef_, weights)
    assert np.shares_memory(router.heads["department"].classifier.multinomial_.coef_, weights)
    # Pickling leaves the live router's coefficients in place.
    import pickle

    copy = pickle.loads(pickle.dumps(router))
    assert all(
        c.estimator.coef_ is not None
        for h in router.heads.values()
        for c in h.classifier.calibrated_classifiers_
    )
    assert router.heads["department"].classifier.multinomial_.coef_ is not None
    for name in router.head_order():
        np.testing.assert_array_equal(
            copy.heads[name].classifier.calibrated_classifiers_[0].estimator.coef_,
            router.heads[name].classifier.calibrated_classifiers_[0].estimator.coef_,
        )
    np.testing.assert_array_equal(
        copy.predict_proba(TICKETS)["category"], router.predict_proba(TICKETS)["category"]
    )


def test_blend_is_the_weighted_mean_of_its_two_classifiers(tiny_model_dir):
    assert TrainingConfig().multinomial_weight == 0  # an option, not the default
    router, _ = load_router(tiny_model_dir)
    X = router.transform(TICKETS)
    y = np.array([d for _, _, d, _ in TINY_TICKETS])
    counts = np.unique(y, return_counts=True)[1].tolist()
    config = TrainingConfig(calibration_cv=2, multinomial_weight=0.3)
    blend = build_classifier(config, counts, "department").fit(X[: len(y)], y)
    assert isinstance(blend, BlendedClassifier) and blend.multinomial_weight == 0.3
    calibrated = super(BlendedClassifier, blend).predict_proba(X)
    multinomial = blend.multinomial_.predict_proba(X)
    assert not np.allclose(calibrated, multinomial)  # two different classifiers
    np.testing.assert_allclose(
        blend.predict_proba(X), 0.7 * calibrated + 0.3 * multinomial, rtol=0, atol=1e-15
    )
    # Only the department head blends, only with a weight above 0, and only over two classes.
    assert not isinstance(build_classifier(config, counts, "category"), BlendedClassifier)
    off = TrainingConfig(multinomial_weight=0.0)
    assert not isinstance(build_classifier(off, counts, "department"), BlendedClassifier)
    assert not isinstance(build_classifier(config, [5, 5], "department"), BlendedClassifier)


def test_compiled_heads_pickled_before_the_blend_still_predict(tiny_model_dir):
    router, _ = load_router(tiny_model_dir)
    fast = router.compiled()[1]
    X = router.transform(TICKETS)
    scores = fast.scores(X)
    state = dict(fast.__dict__)
    del state["multinomials"]  # such a pickle has no such attribute
    restored = type(fast).__new__(type(fast))
    restored.__setstate__(state)
    assert restored.multinomials == {}
    for name in router.head_order():
        extras = router.extras(name, X, {"category": fast.predict_proba("category", scores)})
        np.testing.assert_array_equal(
            restored.predict_proba(name, scores, extras), fast.predict_proba(name, scores, extras)
        )


def test_blended_model_saves_loads_and_serves_the_same(blended_model_dir):
    whole, _ = load_router(blended_model_dir)
    serving, _ = load_router(blended_model_dir, serving=True)
    assert serving.heads["department"].classifier is None  # no scikit-learn object
    assert [r.model_dump() for r in serving.predict(TICKETS)] == [
        r.model_dump() for r in whole.predict(TICKETS)
    ]


def test_routers_pickled_before_the_fused_weights_still_predict(tiny_model_dir):
    # Such a pickle has no _weights and each fold keeps its own coefficients.
    router, _ = load_router(tiny_model_dir)
    expected = [r.model_dump() for r in router.predict(TICKETS)]
    state = {k: v for k, v in router.__dict__.items() if k not in ("_weights", "_weight_layout")}
    for head in state["heads"].values():
        for calibrated in head.classifier.calibrated_classifiers_:
            calibrated.estimator.coef_ = np.array(calibrated.estimator.coef_)  # own copy
    old = Router.__new__(Router)
    old.__setstate__(state | {"_compiled": None})
    assert old._weights is None
    assert [r.model_dump() for r in old.predict(TICKETS)] == expected


def test_isotonic_heads_fall_back_to_scikit_learn(tiny_model_dir):
    router, _ = load_router(tiny_model_dir)
    expected = router.predict_proba(TICKETS)["category"]
    head = router.heads["category"]
    head.classifier.method = "isotonic"  # only the compile check reads it
    assert not compilable(head.classifier)
    router._compiled = None
    router._weights = router._weight_layout = None
    assert "category" not in router.compiled()[1]
    # Still sigmoid underneath, so scikit-learn's own path gives the same probabilities.
    np.testing.assert_allclose(router.predict_proba(TICKETS)["category"], expected, atol=1e-12)
    assert router.predict(TICKETS)[0].category is not None


def test_predict_and_predict_proba_agree_with_the_slow_path(tiny_model_dir):
    router, _ = load_router(tiny_model_dir)
    X = sp.csr_matrix(router.features.transform(TICKETS))
    proba = router.predict_proba(TICKETS)
    results = router.predict(TICKETS)
    upstream: dict[str, np.ndarray] = {}
    for name in router.head_order():
        head = router.heads[name]
        slow = head.classifier.predict_proba(router.head_input(name, X, upstream))
        upstream[name] = slow  # a stacked head reads the classifier's own probabilities
        shown, rank = head.scores(slow)
        np.testing.assert_allclose(proba[name], shown, atol=1e-6)  # float32 weights, see above
        best = rank.argmax(axis=1)
        assert [getattr(r, name).label for r in results] == [head.labels[i] for i in best]
        scores = [getattr(r, name).score for r in results]
        np.testing.assert_allclose(scores, shown[np.arange(len(best)), best], atol=1e-4)


def test_one_row_is_ranked_as_in_a_batch_and_without_walking_every_column(
    tiny_model_dir, monkeypatch
):
    # A file of one ticket, or a chunk's last row: its weight rows are gathered as predict
    # gathers them (the same ranking as for that row among many, the scores to the last bits of
    # a double, as predict's of one ticket are).
    from model.compiled import CompiledHeads
    from model.router import Candidate, shown_scores

    router, _ = load_router(tiny_model_dir)
    X = router.transform(TICKETS)
    many = router.rank(X)
    walked = []
    product = CompiledHeads.scores

    def scores(self, X, gathered=None):
        walked.append(gathered is None)
        return product(self, X, gathered)

    monkeypatch.setattr(CompiledHeads, "scores", scores)
    for i in range(len(TICKETS)):
        one = router.rank(X[i : i + 1])
        for name, ranking in one.items():
            np.testing.assert_array_equal(ranking.order[0], many[name].order[i])
            np.testing.assert_allclose(ranking.scores[0], many[name].scores[i], rtol=0, atol=1e-12)
        answer = router.predict([TICKETS[i]], similar_k=0, explain=False)[0]
        for name, ranking in one.items():
            assert getattr(answer, name).candidates == [
                Candidate(label=ranking.labels[j], score=p)
                for j, p in zip(
                    ranking.order[0].tolist(),
                    shown_scores(ranking.scores[0], ranking.head.threshold),
                    strict=True,
                )
            ]
    assert walked and not any(walked)


def random_index(rows: int, features: int, seed: int) -> SimilarIndex:
    rng = np.random.default_rng(seed)
    m = sp.random(rows, features, density=0.05, random_state=rng, format="csr", dtype=np.float32)
    return SimilarIndex(
        matrix=sp.csr_matrix(normalize(m), dtype=np.float32),
        ids=np.array([f"T{i}" for i in range(rows)], dtype=object),
        titles=np.array([f"title {i}" for i in range(rows)], dtype=object),
        departments=np.array(["人社"] * rows, dtype=object),
        categories=np.array([""] * rows, dtype=object),
    )


def test_pruned_search_finds_the_nearest_and_reports_exact_similarities(monkeypatch):
    queries_rows = [5, 17, 2_999]  # stored tickets: each is its own nearest neighbour
    exact_index = random_index(3_000, 2_000, seed=1)
    queries = sp.csr_matrix(exact_index.matrix[queries_rows])
    exact = exact_index.query(queries, 3_000)  # every ticket with any shared feature
    monkeypatch.setattr(router_module, "EXACT_SEARCH_MAX", 100)
    pruned_index = random_index(3_000, 2_000, seed=1)
    pruned = pruned_index.query(queries, 5)
    assert pruned_index.postings().nnz == 3_000 * router_module.PRUNED_TERMS
    assert exact_index.postings().nnz == exact_index.matrix.nnz
    for e, p, own in zip(exact, pruned, queries_rows, strict=True):
        assert p[0].id == f"T{own}" and p[0].similarity == pytest.approx(1.0, abs=1e-4)
        exact_sims = {s.id: s.similarity for s in e}
        assert all(exact_sims[s.id] == s.similarity for s in p)  # rescored exactly
        assert [s.similarity for s in p] == sorted((s.similarity for s in p), reverse=True)
        assert len(p) == 5


def test_pruned_search_of_a_query_that_meets_no_posting_finds_nothing(monkeypatch):
    # Rows of one batch: an empty query, one whose features every stored ticket has only among its
    # weakest (so the pruned postings hold none of them), and a stored ticket itself.
    monkeypatch.setattr(router_module, "EXACT_SEARCH_MAX", 100)
    index = random_index(3_000, 2_000, seed=1)
    weak = sp.csr_matrix(np.full((3_000, 3), 1e-4, dtype=np.float32))
    index.matrix = sp.csr_matrix(normalize(sp.hstack([index.matrix, weak])), dtype=np.float32)
    queries = sp.csr_matrix(
        np.vstack(
            [
                np.zeros(2_003),
                np.r_[np.zeros(2_000), np.ones(3)],
                index.matrix[42].toarray().ravel(),
            ]
        ),
        dtype=np.float32,
    )
    assert index.postings()[2_000:].nnz == 0
    empty, unposted, own = index.query(queries, 5)
    assert empty == [] and unposted == []
    assert own[0].id == "T42" and len(own) == 5
    assert [index.query(queries[i], 5)[0] for i in range(3)] == [empty, unposted, own]


def test_exact_search_matches_a_brute_force_cosine():
    index = random_index(300, 200, seed=3)
    rng = np.random.default_rng(4)
    Q = sp.csr_matrix(rng.random((4, 200)) * (rng.random((4, 200)) < 0.1), dtype=np.float32)
    brute = (normalize(Q) @ index.matrix.T).toarray()
    for row, hits in zip(brute, index.query(Q, 5), strict=True):
        best = np.argsort(-row, kind="stable")[:5]
        assert [h.id for h in hits] == [f"T{i}" for i in best]
        np.testing.assert_allclose([h.similarity for h in hits], np.round(row[best], 4), atol=1e-4)


@pytest.mark.parametrize("pruned", [False, True], ids=["exact", "pruned"])
@pytest.mark.parametrize("block", [router_module.QUERY_BLOCK, 7])
def test_search_with_many_queries_equals_one_by_one(monkeypatch, block, pruned):
    # 40 queries: one block as shipped, six blocks (the last one short) at a block size of 7.
    # Exact, a block's queries share one sparse product; pruned, each is scored on its own.
    monkeypatch.setattr(router_module, "QUERY_BLOCK", block)
    monkeypatch.setattr(router_module, "SIMILAR_CANDIDATES", 20)
    if pruned:
        monkeypatch.setattr(router_module, "EXACT_SEARCH_MAX", 100)
    index = random_index(500, 300, seed=2)
    queries = sp.csr_matrix(index.matrix[:40])
    together = index.query(queries, 3)
    alone = [index.query(queries[i], 3)[0] for i in range(40)]
    assert len(together) == 40
    assert [[(s.id, s.similarity) for s in r] for r in together] == [
        [(s.id, s.similarity) for s in r] for r in alone
    ]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.sampled_from([0.0, 0.0, 0.1, 0.2, 0.25, 0.5, 1.0]), min_size=0, max_size=1_500),
    st.integers(1, 12),
)
def test_dense_shortlist_is_every_score_as_good_as_the_nth_best(values, size):
    # Few distinct values: ties at the size-th best are the rule. Above 32 × size entries the
    # shortlist starts from a strided sample; the answer must not depend on it.
    scores = np.array(values, dtype=np.float32)
    positive = np.flatnonzero(scores > 0)
    expected = (
        positive
        if len(positive) <= size
        else positive[scores[positive] >= np.sort(scores[positive])[::-1][size - 1]]
    )
    np.testing.assert_array_equal(_shortlist_dense(scores, size), expected)
    np.testing.assert_array_equal(
        np.sort(_shortlist(positive[::-1], scores[positive][::-1], size)), expected
    )


def test_dense_shortlist_when_the_sample_misses_the_best():
    # The strided sample (every 8th entry) sees only zeros: the shortlist still finds the best.
    scores = np.zeros(10_000, dtype=np.float32)
    scores[[3, 4_001, 9_999]] = [0.5, 0.9, 0.5]
    np.testing.assert_array_equal(_shortlist_dense(scores, 2), [3, 4_001, 9_999])
    np.testing.assert_array_equal(_shortlist_dense(scores, 1), [4_001])


def test_top_gives_ties_to_the_first_stored_whatever_the_order_rows_come_in():
    rows = np.arange(40)
    sims = np.where(rows % 3 == 0, 0.5, 0.25).astype(np.float32)
    sims[[7, 30]] = [0.75, 0.0]
    rng = np.random.default_rng(0)
    for _ in range(20):
        order = rng.permutation(40)
        top_rows, top_sims = _top(rows[order], sims[order], 5)
        assert top_rows.tolist() == [7, 0, 3, 6, 9]
        assert top_sims.tolist() == [0.75, 0.5, 0.5, 0.5, 0.5]
    assert _top(rows[[30, 2]], sims[[30, 2]], 5)[0].tolist() == [2]  # no zero similarity
    assert _top(rows[:0], sims[:0], 5)[0].tolist() == []


def test_prune_rows_keeps_each_rows_largest_entries():
    m = sp.csr_matrix(np.array([[0.1, 0.5, 0.3, 0.0], [0.0, 0.2, 0.0, 0.0], [0.4, 0.1, 0.9, 0.6]]))
    pruned = _prune_rows(m, 2).toarray()
    np.testing.assert_array_equal(
        pruned, [[0.0, 0.5, 0.3, 0.0], [0.0, 0.2, 0.0, 0.0], [0.0, 0.0, 0.9, 0.6]]
    )


def test_compiled_path_is_not_pickled(tiny_model_dir):
    import pickle

    router, _ = load_router(tiny_model_dir)
    router.warm_up()
    state = pickle.loads(pickle.dumps(router)).__dict__
    assert state["_compiled"] is None and state["_feature_names"] is None


def test_row_lengths_are_euclidean_and_one_for_empty_rows():
    from model.router import _row_lengths

    X = sp.csr_matrix(
        np.array([[0, 0, 0], [3, 4, 0], [0, 0, 0], [1, 1, 1], [0, 0, 0]], dtype=np.float32)
    )
    np.testing.assert_allclose(_row_lengths(X), [1, 5, 1, np.sqrt(3), 1])


def test_evidence_is_the_same_whether_names_are_merged_or_not(tiny_model_dir):
    # With one column per name (the default word unigrams) evidence walks the ranked words and stops
    # early; the merging path, for word n-grams whose joined names can collide, must agree with it.
    router, _ = load_router(tiny_model_dir)
    assert router._word_names_unique()
    walked = [r.model_dump() for r in router.predict(TICKETS)]
    assert any(r["department"]["evidence"] for r in walked)
    router._names_unique = False
    assert [r.model_dump() for r in router.predict(TICKETS)] == walked


def test_evidence_merges_word_ngrams_that_read_the_same(tiny_model_dir):
    router, _ = load_router(tiny_model_dir)
    head = router.heads["department"]
    fast = router.compiled()[1]
    label = 0
    weights = fast.class_weights("department", label, fast.weights[: router._word_width()])
    a, b = np.argsort(-weights)[:2]  # the two words that push this label most
    names = router._word_names().copy()
    names[b] = names[a]  # they now read the same, as "小区 电梯" and "小区电梯" would
    router._feature_names = names
    router._names_unique = None
    assert not router._word_names_unique()
    cols = np.sort(np.array([a, b], dtype=np.int32))
    X = sp.csr_matrix(
        (np.array([0.5, 0.25], dtype=np.float32), cols, np.array([0, 2])),
        shape=(1, router.compiled()[0].n_features),
    )
    evidence = router._evidence(head, X, 0, label)
    expected = 0.5 * weights[cols[0]] + 0.25 * weights[cols[1]]
    assert [e.term for e in evidence] == [names[a]]
    assert evidence[0].weight == pytest.approx(round(float(expected), 4), abs=1e-4)


def test_evidence_leaves_out_terms_far_weaker_than_the_strongest(tiny_model_dir):
    # A term that pushed the label less than evidence_min_share (5 %) of the strongest one's push is
    # no reason a dispatcher could weigh ("b" of B座 at 0.0007 beside 电梯 at 0.197): the list stops
    # before it. The scores are the same either way.
    router, _ = load_router(tiny_model_dir)
    assert router.config.evidence_min_share == 0.05
    head = router.heads["department"]
    fast = router.compiled()[1]
    label = 0
    weights = fast.class_weights("department", label, fast.weights[: router._word_width()])
    strong, mid, weak = np.argsort(-weights)[:3]  # three words that push this label
    assert weights[weak] > 0
    # Values that make the pushes 1, 0.06 and 0.04 of the strongest one's.
    push = weights[strong] * 0.5
    values = {strong: 0.5, mid: 0.06 * push / weights[mid], weak: 0.04 * push / weights[weak]}
    cols = np.sort(np.array(list(values), dtype=np.int32))
    X = sp.csr_matrix(
        (np.array([values[c] for c in cols], dtype=np.float32), cols, np.array([0, 3])),
        shape=(1, router.compiled()[0].n_features),
    )
    names = router._word_names()
    assert [e.term for e in router._evidence(head, X, 0, label)] == [names[strong], names[mid]]
    router.config = dataclasses.replace(router.config, evidence_min_share=0.0)
    every = [e.term for e in router._evidence(head, X, 0, label)]
    assert every == [names[strong], names[mid], names[weak]]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.lists(st.floats(0, 1e3, width=32, allow_subnormal=True), max_size=60),
        min_size=2,
        max_size=5,
    )
)
def test_one_rows_length_is_its_length_in_a_batch_bit_for_bit(rows):
    # One query (the dispatcher's ticket) takes its own short path; its cosines must not move.
    from model.router import _row_lengths

    width = max(1, *(len(r) for r in rows))
    X = sp.csr_matrix(np.array([r + [0.0] * (width - len(r)) for r in rows], dtype=np.float32))
    together = _row_lengths(X)
    alone = np.concatenate([_row_lengths(X[i]) for i in range(X.shape[0])])
    assert alone.dtype == together.dtype
    assert alone.tobytes() == together.tobytes()


def test_one_tickets_whole_answer_is_its_answer_in_a_batch(tiny_model_dir):
    # One ticket (the dispatcher's case) takes the one-row paths: its weight rows gathered once
    # for the scores and the evidence, its known words found from its first column. A batch
    # takes the general ones. Every field must agree: labels, shown scores, decisions and
    # reasons, evidence terms and weights, similar tickets.
    router, _ = load_router(tiny_model_dir)
    batch = [r.model_dump() for r in router.predict(TICKETS)]
    assert any(r["department"]["evidence"] for r in batch)
    assert any(r["department"]["reason"] == "no_known_terms" for r in batch)
    assert any(r["similar"] for r in batch)
    assert [router.predict([t])[0].model_dump() for t in TICKETS] == batch


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["", "甲", "乙", "丙"]),
            st.sampled_from([-1.0, -0.0, 0.0, 0.25, 0.5, 1.0, float("nan")]),
        ),
        max_size=12,
    )
)
def test_evidence_walk_is_the_positive_words_sorted_alone(words):
    # Evidence walks a stable sort of every word and stops at the first that is not positive:
    # the same words in the same order as sorting the positive ones alone (ties in column
    # order), unnamed columns skipped.
    names = np.array([name for name, _ in words], dtype=object)
    contrib = np.array([c for _, c in words], dtype=np.float64)
    cols = list(range(len(words)))
    walked = list(
        router_module._positive_first(
            names, cols, contrib.tolist(), np.argsort(-contrib, kind="stable")
        )
    )
    positive = np.flatnonzero(contrib > 0)
    alone = positive[np.argsort(-contrib[positive], kind="stable")]
    assert walked == [(names[k], contrib[k]) for k in alone.tolist() if names[k]]


def test_a_fold_whose_sigmoids_all_vanish_counts_as_uniform_on_both_paths(tiny_model_dir):
    # scikit-learn gives a calibration fold whose sigmoids are all 0 for a row the uniform
    # distribution; the all-folds-at-once path divides only where every sum is non-zero and must
    # otherwise fall back to the same answer as the per-fold loop.
    router, _ = load_router(tiny_model_dir)
    X = router.transform(TICKETS)
    fast = copy.copy(router.compiled()[1])
    name = "category"  # reads no other head's probabilities
    folds = list(fast.folds[name])
    first = folds[0]
    folds[0] = dataclasses.replace(first, b=np.full_like(first.b, 1e4))  # sigmoid(-(as+1e4)) = 0
    fast.folds = {**fast.folds, name: folds}
    whole = fast.whole[name]
    b = whole.b.copy()
    b[: len(first.b)] = 1e4
    fast.whole = {**fast.whole, name: dataclasses.replace(whole, b=b)}
    per_fold = copy.copy(fast)
    per_fold.whole = {}
    scores, extras = fast.scores(X), router.extras(name, X, {})
    got = fast.predict_proba(name, scores, extras)
    np.testing.assert_allclose(got, per_fold.predict_proba(name, scores, extras), atol=1e-12)
    # The first fold's share is the uniform distribution, the other folds' as before.
    rest = copy.copy(per_fold)
    rest.folds = {**fast.folds, name: folds[1:]}
    others = rest.predict_proba(name, scores, extras)
    n_folds, n_classes = len(folds), len(fast.classes[name])
    expected = (1 / n_classes + (n_folds - 1) * others) / n_folds
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert not np.allclose(got, router.compiled()[1].predict_proba(name, scores, extras))


def test_similar_tickets_and_joint_advice_are_each_fields_stored_values(tiny_model_dir):
    # Router.predict gives RouteResult its similar tickets and joint-dispatch advice as plain
    # dicts, read from the index's arrays for all five at once: each must still be what the
    # stored arrays say, field by field, and the advice co_dispatch's of those tickets.
    from model.router import JOINT_JOINER, SimilarTicket, co_dispatch, without_salutation

    router, _ = load_router(tiny_model_dir)
    index = router.index
    n = index.matrix.shape[0]
    # Two stored tickets in three jointly dispatched, to every other department (so that any
    # suggested department gets advice), some without a department at all.
    labels = sorted({str(d) for d in index.departments if d})
    index.co_departments = np.array(
        [
            JOINT_JOINER.join(d for d in labels if d != index.departments[i]) if i % 3 else ""
            for i in range(n)
        ],
        dtype=object,
    )
    index.departments = np.array(
        [index.departments[i] if i % 5 else "" for i in range(n)], dtype=object
    )
    seen_joint = seen_snippet = 0
    for ticket in TICKETS:
        X = router.transform([ticket])
        [result] = router.predict([ticket])
        if not result.similar:
            continue
        [(rows, sims)] = index.nearest(X, 5)
        expected = [
            SimilarTicket(
                id=str(index.ids[i]),
                title=str(index.titles[i]),
                snippet=without_salutation(index.snippets[i]) or None,
                department=str(index.departments[i]) or None,
                co_departments=str(index.co_departments[i]).split(JOINT_JOINER)
                if index.co_departments[i]
                else [],
                category=str(index.categories[i]) or None,
                similarity=round(float(s), 4),
            )
            for i, s in zip(rows, sims, strict=True)
        ]
        assert result.similar == expected
        assert result.co_departments == co_dispatch(result.department.label, expected)
        seen_joint += bool(result.co_departments)
        seen_snippet += any(s.snippet for s in result.similar)
        [without] = router.predict([ticket], snippets=False)
        assert [s.snippet for s in without.similar] == [None] * len(expected)
        assert without.model_dump(exclude={"similar": {"__all__": {"snippet"}}}) == (
            result.model_dump(exclude={"similar": {"__all__": {"snippet"}}})
        )
    assert seen_joint and seen_snippet


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), density=st.sampled_from([0.0, 0.01, 0.1, 0.5]))
def test_one_query_is_scipys_product_without_its_python(seed, density):
    # One query of the complete index is scored by scipy's own product kernel, called directly:
    # the same stored rows in the same order and the same float32 scores as `X @ postings`,
    # without the product's Python (index types checked three times, a pass to size the result).
    index = random_index(300, 200, seed=seed % 1_000)
    rng = np.random.default_rng(seed)
    query = sp.csr_matrix(rng.random((1, 200)) * (rng.random((1, 200)) < density), dtype=np.float32)
    postings = index.postings()
    expected = query @ postings
    rows, scores = router_module._product_row(query, postings)
    assert rows.tolist() == expected.indices.tolist()
    assert scores.dtype == expected.data.dtype and scores.tobytes() == expected.data.tobytes()


def test_one_query_of_the_complete_index_does_not_call_scipys_product(monkeypatch):
    index = random_index(300, 200, seed=5)
    queries = sp.csr_matrix(index.matrix[:3])
    in_batch = index.nearest(queries, 5)

    def refused(*args, **kwargs):
        raise AssertionError("one query took scipy's sparse product")

    monkeypatch.setattr(sp.csr_matrix, "_matmul_sparse", refused)
    for j, (rows, sims) in enumerate(in_batch):
        [(alone_rows, alone_sims)] = index.nearest(queries[j], 5)
        assert alone_rows.tolist() == rows.tolist() and alone_sims.tobytes() == sims.tobytes()


def _chosen_terms_one_by_one(ranked, limit, min_share):
    # The evidence walk as it was written before one search replaced the loop over chosen terms.
    chosen, weights, floor = [], [], 0.0
    for term, weight in ranked:
        if weight < floor:
            break
        if any(term in other for other in chosen):
            continue
        if not chosen:
            floor = weight * min_share
        chosen.append(term)
        weights.append(weight)
        if len(chosen) == limit:
            break
    return [(t, round(w, 4)) for t, w in zip(chosen, weights, strict=True)]


@settings(max_examples=300, deadline=None)
@given(
    terms=st.lists(st.text(alphabet="ab\0 油烟", max_size=4), max_size=12),
    weights=st.lists(st.floats(0.0001, 1.0), min_size=12, max_size=12),
    limit=st.integers(1, 8),
    min_share=st.sampled_from([0.0, 0.05, 0.5]),
)
def test_evidence_terms_chosen_as_one_by_one(terms, weights, limit, min_share):
    # Terms inside terms, terms holding the NUL that separates the chosen ones, empty terms.
    ranked = list(zip(terms, sorted(weights, reverse=True), strict=False))
    assert router_module._chosen_terms(ranked, limit, min_share) == _chosen_terms_one_by_one(
        ranked, limit, min_share
    )


def test_snippets_stored_bare_are_shown_without_the_greeting_search(tiny_model_dir, monkeypatch):
    # A model trained since snippets skip greetings (model.text.snippet) says so in its index,
    # and its snippets are shown as stored, without searching them for a greeting again; an
    # index that does not say so (a model trained before) still has its greetings cut at show.
    router, _ = load_router(tiny_model_dir)
    index = router.index
    assert index.bare_snippets
    rows = np.arange(min(5, index.matrix.shape[0]))
    sims = np.linspace(0.9, 0.5, len(rows)).astype(np.float32)
    shown = index.plain(rows, sims)
    assert [s["snippet"] for s in shown] == [index.snippets[i] or None for i in rows.tolist()]

    def refused(text):
        raise AssertionError("a bare snippet was searched for a greeting")

    monkeypatch.setattr(router_module, "without_salutation", refused)
    assert index.plain(rows, sims) == shown
    older = dataclasses.replace(
        index,
        snippets=router_module.PackedTexts.of(["尊敬的张市长:您好!楼下烧烤店油烟很大"] * len(rows)),
    )
    del older.__dict__["bare_snippets"]  # as unpickled from a model trained before the flag
    monkeypatch.undo()
    assert not older.bare_snippets
    assert [s["snippet"] for s in older.plain(rows, sims)] == ["楼下烧烤店油烟很大"] * len(rows)


def _kernel_that_changed(*args):
    raise TypeError("csr_matmat expected 12 arguments, got 11")  # as a later scipy might say


@pytest.mark.parametrize("kernel", [None, _kernel_that_changed], ids=["moved", "changed"])
def test_one_query_without_scipys_kernel_takes_the_public_product(monkeypatch, kernel):
    # A scipy whose kernel moved (no import) or takes other arguments: one query is still
    # answered, by the public product, as before the kernel was called directly.
    index = random_index(300, 200, seed=6)
    queries = sp.csr_matrix(index.matrix[:3])
    expected = [index.nearest(queries[j], 5)[0] for j in range(3)]
    monkeypatch.setattr(router_module, "_csr_matmat", kernel)
    for j, (rows, sims) in enumerate(expected):
        [(alone_rows, alone_sims)] = index.nearest(queries[j], 5)
        assert alone_rows.tolist() == rows.tolist() and alone_sims.tobytes() == sims.tobytes()
