"""Both tokenizer backends: same contract (pickle, clone, user dictionary), close agreement."""

import json
import pickle
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone

from model import resources
from model.artifact import load_router
from model.config import TrainingConfig
from model.tokenizer import BACKENDS, JiebaTokenizer

from ..conftest import TINY_TICKETS

TEXTS = [f"{title}。{text}" for title, text, _, _ in TINY_TICKETS]


def fitted(backend, **kw):
    return JiebaTokenizer(backend=backend, **kw).fit()


@pytest.mark.parametrize("backend", BACKENDS)
def test_pickle_and_clone_keep_the_backend_and_cut_the_same(backend):
    tok = fitted(
        backend, userdict=resources.default_userdict(), stopwords=resources.default_stopwords()
    )
    before = [tok.tokenize(t) for t in TEXTS]
    restored = pickle.loads(pickle.dumps(tok))
    assert restored.backend_ == backend
    assert "_segmenter" not in restored.__dict__  # the loaded dictionary is never pickled
    assert [restored.tokenize(t) for t in TEXTS] == before
    cloned = clone(tok)
    assert cloned.get_params()["backend"] == backend
    assert [cloned.fit().tokenize(t) for t in TEXTS] == before


@pytest.mark.parametrize("backend", BACKENDS)
def test_user_dictionary_joins_domain_terms(backend, tmp_path):
    ud = tmp_path / "ud.txt"
    ud.write_text("接诉即办 2000 n\n飞线充电\n", encoding="utf-8")  # with and without a frequency
    text = "落实接诉即办，整治飞线充电"
    plain = fitted(backend).tokenize(text)
    with_dict = fitted(backend, userdict=ud).tokenize(text)
    assert "接诉即办" not in plain and "飞线充电" not in plain
    assert "接诉即办" in with_dict and "飞线充电" in with_dict


@pytest.mark.parametrize("backend", BACKENDS)
def test_user_words_stay_in_their_own_tokenizer(backend, tmp_path):
    ud = tmp_path / "ud.txt"
    ud.write_text("烧烤摊点位 5000 n\n", encoding="utf-8")
    assert "烧烤摊点位" in fitted(backend, userdict=ud).tokenize("烧烤摊点位")
    assert "烧烤摊点位" not in fitted(backend).tokenize("烧烤摊点位")


@pytest.mark.parametrize("backend", BACKENDS)
def test_bundled_dictionary_and_stopwords_apply(backend):
    tok = fitted(
        backend, userdict=resources.default_userdict(), stopwords=resources.default_stopwords()
    )
    tokens = tok.tokenize("请尽快处理：公司拖欠农民工工资三个月，2023年12000元！")
    assert "拖欠农民工工资" in tokens
    assert "的" not in tokens and not any(t.isdigit() or t in "，！：" for t in tokens)


def test_backends_mostly_agree():
    # The same dictionary and algorithm: on these tickets the bags of tokens nearly coincide.
    a = fitted("jieba", userdict=resources.default_userdict())
    b = fitted("rjieba", userdict=resources.default_userdict())
    overlap = total = 0
    for text in TEXTS:
        ca, cb = Counter(a.tokenize(text)), Counter(b.tokenize(text))
        overlap += sum((ca & cb).values())
        total += max(sum(ca.values()), sum(cb.values()))
    assert overlap / total > 0.9


def test_unknown_backend_is_refused_at_fit():
    with pytest.raises(ValueError, match="backend 'thulac' is not one of jieba, rjieba"):
        JiebaTokenizer(backend="thulac").fit()


def test_a_tokenizer_pickled_before_backends_existed_is_a_jieba_one():
    tok = fitted("jieba")
    state = tok.__getstate__()
    del state["backend"], state["backend_"]
    old = JiebaTokenizer.__new__(JiebaTokenizer)
    old.__setstate__(state)
    assert old.get_params()["backend"] == "jieba"
    assert old.tokenize("公司拖欠工资") == tok.tokenize("公司拖欠工资")


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_rjieba_never_raises_on_any_unicode(s):
    tokens = RJIEBA.tokenize(s)
    assert all(isinstance(t, str) and t.strip() == t and t for t in tokens)


RJIEBA = fitted("rjieba", userdict=resources.default_userdict())


def test_model_records_and_serves_with_its_backend(tmp_path, tiny_csv, tiny_config):
    from dataclasses import replace

    from training.train import train

    config = replace(tiny_config, tokenizer="rjieba")
    result = train([tiny_csv], tmp_path / "m", config=config)
    meta = json.loads((result.model_dir / "metadata.json").read_text(encoding="utf-8"))
    assert meta["config"]["tokenizer"] == "rjieba"
    router, _ = load_router(result.model_dir)
    tok = router.features.named_steps["tokenize"]
    assert tok.backend_ == "rjieba"
    [res] = router.predict([("欠薪", "老板拖欠农民工工资三个月不发")])
    assert res.department is not None and res.department.label == "人社"
    # The server's router, without the scikit-learn pipeline, cuts with the same backend.
    serving, _ = load_router(result.model_dir, serving=True)
    assert serving.features is None and serving.compiled()[0].segmenter.backend == "rjieba"
    assert serving.predict([("欠薪", "老板拖欠农民工工资三个月不发")]) == [res]


def test_config_default_backend_is_a_known_one():
    assert TrainingConfig().tokenizer in BACKENDS
    assert TrainingConfig.from_dict({"seed": 1}).tokenizer == TrainingConfig().tokenizer
