from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.artifact import load_router
from model.router import REASON_NO_KNOWN_TERMS


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


def test_input_forms_agree(tiny_model_dir):
    router, _ = load_router(tiny_model_dir)
    a = router.predict([("欠薪", "老板不发工资")], similar_k=0)[0]
    b = router.predict([{"title": "欠薪", "text": "老板不发工资"}], similar_k=0)[0]
    assert a == b
    assert router.predict([]) == []


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
