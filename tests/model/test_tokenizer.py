import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone

from model import resources
from model.tokenizer import JiebaTokenizer


def fitted(**kw):
    return JiebaTokenizer(**kw).fit()


TOKENIZER = fitted(userdict=resources.default_userdict(), stopwords=resources.default_stopwords())


def test_userdict_keeps_domain_terms_whole(tmp_path):
    ud = tmp_path / "ud.txt"
    ud.write_text("接诉即办 2000 n\n飞线充电 800 n\n", encoding="utf-8")
    plain = fitted().tokenize("落实接诉即办，整治飞线充电")
    with_dict = fitted(userdict=ud).tokenize("落实接诉即办，整治飞线充电")
    assert "接诉即办" not in plain and "飞线充电" not in plain
    assert "接诉即办" in with_dict and "飞线充电" in with_dict


def test_stopwords_punctuation_and_numbers_are_dropped(tmp_path):
    sw = tmp_path / "sw.txt"
    sw.write_text("请\n尽快\n", encoding="utf-8")
    tokens = fitted(stopwords=sw).tokenize("请尽快处理，2023年12000元的欠薪！")
    assert "请" not in tokens and "尽快" not in tokens
    assert not any(t.isdigit() or t in "，！" for t in tokens)
    assert "欠薪" in tokens


def test_user_dictionary_does_not_leak_into_other_tokenizers(tmp_path):
    ud = tmp_path / "ud.txt"
    ud.write_text("烧烤摊点位 5000 n\n", encoding="utf-8")
    fitted(userdict=ud).tokenize("烧烤摊点位")
    assert "烧烤摊点位" not in fitted().tokenize("烧烤摊点位")


def test_entries_match_texts_written_in_capitals_or_full_width(tmp_path):
    # Texts are NFKC-normalised and lower-cased before they are cut; "ETC卡", "APP" and "ＱＱ" as
    # written could never match "etc卡", "app", "qq", and were silently dead.
    from model.text import combine
    from model.tokenizer import read_stopwords, read_userdict

    ud = tmp_path / "ud.txt"
    ud.write_text("ETC卡 20000 n\netc卡 30000 nz\n", encoding="utf-8")
    sw = tmp_path / "sw.txt"
    sw.write_text("APP\nＱＱ\napp\n", encoding="utf-8")
    assert read_userdict(ud) == (("etc卡", 30000, "nz"),)  # once, as its last line gives it
    assert read_stopwords(sw) == {"app", "qq"}
    text = combine("", "手机APP和ＱＱ都无法办理ETC卡")
    for backend in ("jieba", "rjieba"):
        tokens = fitted(userdict=ud, stopwords=sw, backend=backend).tokenize(text)
        assert "etc卡" in tokens and "app" not in tokens and "qq" not in tokens, (backend, tokens)


def test_a_tokenizer_fitted_with_words_as_written_still_cuts_with_them():
    # Models trained before entries were normalised hold them as written; they cut as they did.
    from model.tokenizer import Segmenter

    old = Segmenter([("ETC卡", 20000, "n")], frozenset({"APP"}))
    restored = pickle.loads(pickle.dumps(old))
    assert restored.user_words == (("ETC卡", 20000, "n"),)
    assert restored.tokenize("app办理etc卡") == ("app", "办理", "etc", "卡")


def test_userdict_reads_jiebas_word_tag_lines(tmp_path):
    # jieba's format is "word [freq] [tag]", both optional: a dictionary exported from another
    # jieba project as "word tag" was refused with "frequency 'nt' is not a number".
    from model.tokenizer import read_userdict

    ud = tmp_path / "ud.txt"
    ud.write_text("市住建局 nt\n烧烤摊点位 20 n\n", encoding="utf-8")
    assert read_userdict(ud) == (("市住建局", None, "nt"), ("烧烤摊点位", 20, "n"))
    for backend in ("jieba", "rjieba"):
        tokens = fitted(userdict=ud, backend=backend).tokenize("市住建局不管烧烤摊点位")
        assert tokens == ("市住建局", "不管", "烧烤摊点位"), (backend, tokens)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("市住建局 ²\n", "line 1: frequency '²' is not a number (nor a part-of-speech tag)"),
        ("路灯 5\n市住建局 ³ nt\n", "line 2: frequency '³' is not a number"),
        ("路灯 5.0\n", "line 1: frequency '5.0' is not a number"),
        (
            "路灯\n市住\x00建局 5\n",
            "line 2: the user dictionary holds the control character U+0000",
        ),
    ],
)
def test_userdict_lines_jieba_cannot_read_are_one_clear_error(tmp_path, content, message):
    from model.tokenizer import ResourceFileError, read_userdict

    ud = tmp_path / "ud.txt"
    ud.write_text(content, encoding="utf-8")
    with pytest.raises(ResourceFileError) as e:
        read_userdict(ud)
    assert str(e.value).startswith(f"{ud}, {message}"), str(e.value)


def test_a_stopword_list_in_utf16_without_a_bom_is_refused(tmp_path):
    # It decoded as GB18030 into words with NULs and was accepted: no stopword applied, no word.
    from model.tokenizer import ResourceFileError, read_stopwords

    sw = tmp_path / "sw.txt"
    for text in ("市住建局\n投诉\n", "app\n"):
        sw.write_bytes(text.encode("utf-16-le"))
        with pytest.raises(ResourceFileError, match=r"line 1: the stopword list holds the control"):
            read_stopwords(sw)


def test_pickle_and_clone_survive_and_cut_the_same():
    tok = fitted(userdict=resources.default_userdict(), stopwords=resources.default_stopwords())
    text = "小区楼下烧烤店油烟很大，晚上十二点还在营业"
    before = tok.tokenize(text)
    restored = pickle.loads(pickle.dumps(tok))
    assert restored.tokenize(text) == before
    cloned = clone(tok).fit()
    assert cloned.tokenize(text) == before
    # The loaded dictionary is rebuilt after unpickling, never pickled.
    assert "_segmenter" in tok.__dict__ and tok.segmenter()._cache is not None
    assert "_segmenter" not in pickle.loads(pickle.dumps(tok)).__dict__
    assert pickle.loads(pickle.dumps(tok.segmenter()))._cache is None


def test_bundled_resources_load():
    tok = fitted(userdict=resources.default_userdict(), stopwords=resources.default_stopwords())
    assert len(tok.user_words_) > 500
    assert "的" in tok.stopwords_
    assert "拖欠农民工工资" in tok.tokenize("公司拖欠农民工工资三个月")


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_tokenize_never_raises_on_any_unicode(s):
    tokens = TOKENIZER.tokenize(s)
    assert all(isinstance(t, str) and t.strip() == t and t for t in tokens)


RJIEBA = fitted(
    userdict=resources.default_userdict(), stopwords=resources.default_stopwords(), backend="rjieba"
)


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=st.sampled_from("的小区噪音了一㐀鿿豈 a1,。、“😀\u3000"), max_size=30)
    | st.text()
)
def test_tokens_kept_are_exactly_the_meaningful_non_stopwords(s):
    # tokenize's fast check for a leading ideograph must keep exactly what the definition keeps.
    from model.tokenizer import _MEANINGFUL

    for tok in (TOKENIZER, RJIEBA):
        seg = tok.segmenter()._segmenter()
        pieces = seg.cut(s, tok.hmm) if tok.backend_ == "rjieba" else seg.cut(s, HMM=tok.hmm)
        expected = tuple(t for t in pieces if t not in tok.stopwords_ and _MEANINGFUL.search(t))
        assert tok.tokenize(s) == expected


def test_the_bundled_resources_are_written_as_texts_are_read():
    # The bundled user dictionary held B超 and X光, so every `paidan train`, retrain, the notebook
    # and the default model of `paidan serve` warned that the administrator's dictionary had words
    # normalised (B超 → b超), naming a file inside paidan that no administrator wrote or can fix.
    from model.tokenizer import changed_by_normalizing

    assert changed_by_normalizing(resources.default_userdict(), "user dictionary") == []
    assert changed_by_normalizing(resources.default_stopwords(), "stopword list") == []


@pytest.mark.parametrize("backend", ["jieba", "rjieba"])
@pytest.mark.parametrize(
    "wrapped",
    [
        "12345热线来电:{}",
        "市长热线市民来电反映:{}",
        "【诉求类型】投诉【诉求内容】{}【联系人】先生",
        "尊敬的市长您好:{}。盼复!此致 敬礼! 一位普通市民",
        "尊敬的领导:{}。此致敬礼!",
    ],
)
def test_the_bundled_stopwords_cut_nothing_from_channel_boilerplate(backend, wrapped):
    # A letter's sign-off, a form's field names and the hotline's own names were words, and so
    # evidence (敬礼, 内容, 热线); cut for search, 此致敬礼 also gave 致敬.
    tok = fitted(
        userdict=resources.default_userdict(),
        stopwords=resources.default_stopwords(),
        backend=backend,
        cut="search",
    )
    complaint = "楼下烧烤店油烟扰民"
    assert set(tok.tokenize(wrapped.format(complaint))) - {"普通"} == set(tok.tokenize(complaint))
