"""Both tokenizer backends: same contract (pickle, clone, user dictionary), close agreement."""

import json
import pickle
import sys
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone

from model import resources
from model.artifact import load_router
from model.config import TrainingConfig
from model.tokenizer import BACKENDS, JiebaTokenizer, Segmenter

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
def test_tokenizers_with_the_same_words_share_one_segmenter_and_no_other(backend):
    # Building rjieba's segmenter took 0.13 s and 25 MB for every model loaded or trained in a
    # process (a retrain's champion and challenger, a served model and the one a reload brings).
    words = [("烧烤摊点位", 5000, "n")]
    first = Segmenter(tuple(words), backend=backend)
    again = pickle.loads(pickle.dumps(Segmenter([list(w) for w in words], backend=backend)))
    assert first._segmenter() is again._segmenter()
    plain = Segmenter((), backend=backend)
    assert plain._segmenter() is not first._segmenter()
    other = "jieba" if backend == "rjieba" else "rjieba"
    assert Segmenter(tuple(words), backend=other)._segmenter() is not first._segmenter()
    # A third dictionary, so the first may be dropped from the cache: each cuts with its own words.
    third = Segmenter((("摊点", 9000, "n"),), backend=backend)
    assert "烧烤摊点位" in first.tokenize("烧烤摊点位")
    assert "烧烤摊点位" in Segmenter(tuple(words), backend=backend).tokenize("烧烤摊点位")
    assert "烧烤摊点位" not in plain.tokenize("烧烤摊点位")
    assert "烧烤摊点位" not in third.tokenize("烧烤摊点位")


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


def test_a_model_whose_backend_cannot_be_imported_is_refused_in_one_line(
    tiny_model_dir, tmp_path, monkeypatch
):
    # rjieba has no wheel for some platforms; jieba is only needed by jieba models. predict and
    # serve ended in a traceback from the first cut, once the model had loaded.
    from typer.testing import CliRunner

    from model.artifact import ModelLoadError, read_metadata
    from paidan.cli import app
    from tests.serve.test_cli_serve import free_port

    backend = read_metadata(tiny_model_dir)["config"]["tokenizer"]
    monkeypatch.setitem(sys.modules, backend, None)  # how Python sees a package not installed
    with pytest.raises(ModelLoadError, match=f"the {backend} tokenizer.*: pip install {backend}"):
        load_router(tiny_model_dir, serving=True)
    runner = CliRunner()
    env = {"PAIDAN_MODEL_ROOT": str(tiny_model_dir.parent), "PAIDAN_DATA_DIR": str(tmp_path)}
    for args in (
        ["predict", str(tiny_model_dir), "拖欠工资"],
        ["serve", "--model", str(tiny_model_dir), "--port", free_port()],
        # The supervisor looks whether the package is installed, without importing it.
        ["serve", "--model", str(tiny_model_dir), "--workers", "2", "--port", free_port()],
    ):
        r = runner.invoke(app, args, env=env)
        assert r.exit_code == 2, (args, r.output)
        line = " ".join(r.output.split())
        assert (
            f"was trained with the {backend} tokenizer" in line and f"pip install {backend}" in line
        )
        assert "Traceback" not in r.output and "serving" not in r.output, r.output


@pytest.mark.parametrize("backend", BACKENDS)
def test_training_with_a_backend_that_cannot_be_imported_is_one_line(
    backend, tmp_path, tiny_csv, monkeypatch
):
    from typer.testing import CliRunner

    from paidan.cli import app

    monkeypatch.setitem(sys.modules, backend, None)
    r = CliRunner().invoke(
        app, ["train", str(tiny_csv), "--out", str(tmp_path / "m"), "--tokenizer", backend]
    )
    assert r.exit_code == 2, r.output
    line = " ".join(r.output.split())
    assert f"cannot train with --tokenizer {backend}" in line and f"pip install {backend}" in line
    assert "Traceback" not in r.output and not (tmp_path / "m").exists()


@pytest.mark.parametrize("backend", BACKENDS)
def test_search_cut_adds_the_dictionary_words_inside_a_compound(backend, tmp_path):
    # The user dictionary's 路灯不亮 swallowed 路灯: a ticket that wrote the compound shared no
    # word with the tickets that wrote 路灯, and its evidence could not name it.
    ud = tmp_path / "ud.txt"
    ud.write_text("路灯不亮 500 n\n", encoding="utf-8")
    text = "小区路灯不亮，住房公积金提取"
    precise = fitted(backend, userdict=ud).tokenize(text)
    search = fitted(backend, userdict=ud, cut="search").tokenize(text)
    assert "路灯不亮" in precise and "路灯" not in precise
    assert {"路灯不亮", "路灯", "公积金", "住房"} <= set(search)
    assert set(precise) <= set(search)  # the longest words are kept
    restored = pickle.loads(pickle.dumps(fitted(backend, userdict=ud, cut="search")))
    assert restored.tokenize(text) == search
    assert pickle.loads(pickle.dumps(restored.segmenter())).tokenize(text) == search


def test_an_unknown_word_cut_is_refused_at_fit():
    with pytest.raises(ValueError, match="word cut 'all' is not one of precise, search"):
        JiebaTokenizer(cut="all").fit()


def test_a_tokenizer_pickled_before_the_search_cut_cuts_precisely():
    tok = fitted("rjieba", cut="precise")
    state = tok.__getstate__()
    del state["cut"]
    old = JiebaTokenizer.__new__(JiebaTokenizer)
    old.__setstate__(state)
    assert old.get_params()["cut"] == "precise"
    seg_state = dict(tok.segmenter().__getstate__())
    del seg_state["cut"]
    seg = type(tok.segmenter()).__new__(type(tok.segmenter()))
    seg.__setstate__(seg_state)
    assert seg.tokenize("住房公积金提取") == tok.tokenize("住房公积金提取")


@pytest.mark.parametrize("cut", ["precise", "search"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_placeholder_is_one_word_its_name(backend, cut):
    # Cut, masking's [微信号] gave 信号 (signal) and [手机号] 手机 (mobile phone): every ticket with
    # a contact number taught the model the words of the tickets about phones and their signal.
    from model.text import PLACEHOLDERS, clean

    tok = fitted(
        backend,
        userdict=resources.default_userdict(),
        stopwords=resources.default_stopwords(),
        cut=cut,
    )
    for placeholder in PLACEHOLDERS:
        name = placeholder[1:-1]
        expected = () if name in tok.stopwords_ else (name,)
        assert tok.tokenize(f"噪音{placeholder}扰民") == ("噪音", *expected, "扰民")
    text = clean("手机信号一直很差，加我微信wx_abc123，电话13800001234")
    assert "[微信号]" in text and "[手机号]" in text
    words = tok.tokenize(text)
    assert words.count("信号") == words.count("手机") == (1 if cut == "search" else 0)
    assert "微信号" in words and "手机号" not in words  # 手机号 is a stopword


def test_a_tokenizer_pickled_before_whole_placeholders_still_cuts_them():
    tok = fitted("rjieba", stopwords=resources.default_stopwords())
    state = tok.__getstate__()
    del state["whole_placeholders"]
    old = JiebaTokenizer.__new__(JiebaTokenizer)
    old.__setstate__(state)
    assert old.get_params()["whole_placeholders"] is False
    assert "信号" in old.tokenize("加我[微信号]")  # as the model was trained, it is served
    seg_state = dict(tok.segmenter().__getstate__())
    del seg_state["whole_placeholders"]
    seg = Segmenter.__new__(Segmenter)
    seg.__setstate__(seg_state)
    assert seg.tokenize("加我[微信号]") == old.tokenize("加我[微信号]")
    assert tok.tokenize("加我[微信号]") == ("加", "微信号")


def test_a_process_keeps_one_rjieba_dictionary_not_two() -> None:
    # Importing rjieba builds its module's own Jieba (32 MiB, jieba's whole dictionary), which
    # paidan never cut with: every worker and every labelling process then built a second one
    # for the model's user words (24 MiB more). The first segmenter built is the module's own.
    import subprocess

    script = (
        "import rjieba\n"
        "from model.tokenizer import _shared_segmenter\n"
        "words = (('住房公积金', None, None),)\n"
        "seg = _shared_segmenter('rjieba', words)\n"
        "print(seg is rjieba._DEFAULT_JIEBA, '住房公积金' in seg.cut('我的住房公积金'))\n"
        "print(_shared_segmenter('rjieba', ()) is not seg)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.stdout.split() == ["True", "True", "True"], proc.stderr[-2000:]
