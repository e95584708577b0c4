"""Behavioural checks on the bundled sample's models (Made-With-ML style).

Each check runs on two models: the sample as ``paidan train`` trains it, and the default ``paidan
serve`` trains on an empty model root, which also learns the bundled 权责清单 (what a new user is
served; the README's first command).
"""

import pytest

from model.artifact import load_router

pytestmark = pytest.mark.slow

MODELS = {"trained": "sample_model_dir", "served": "served_default_dir"}


@pytest.fixture(scope="module", params=list(MODELS))
def router(request):
    return load_router(request.getfixturevalue(MODELS[request.param]))[0]


@pytest.mark.parametrize(
    ("text", "department"),
    [
        ("公司拖欠工资三个月不发，老板电话也不接", "市人社局"),
        ("小区楼下烧烤店油烟扰民，晚上十二点还在营业", "市行政执法局"),
        ("车险理赔拖了半年，保险公司一直推脱不赔", "金融监管分局"),
        ("在医院做手术后出现并发症，医生态度恶劣，要求医疗纠纷调解", "市卫健委"),
        ("单元楼梯扶手坏了，楼里的残疾人上下楼很危险，无障碍设施没人管", "市残联"),
        ("家里突然停水两天了，供水公司也没有提前通知", "公用事业单位"),
    ],
)
def test_minimum_functionality(router, text, department):
    assert router.predict([text])[0].department.label == department


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("王女士反映幸福里小区楼下烧烤店油烟扰民", "李先生反映滨江花园楼下烧烤店油烟扰民"),
        ("来电人反映公司拖欠工资，电话13800001234", "来电人反映公司拖欠工资，电话13912345678"),
        ("东城区建设路的网约车司机绕路多收费", "城南新区解放路的网约车司机绕路多收费"),
    ],
)
def test_invariance_to_names_places_and_numbers(router, a, b):
    pa, pb = router.predict([a, b])
    assert pa.department.label == pb.department.label
    assert pa.category.label == pb.category.label


def test_contact_details_are_not_evidence(router):
    # Masked, a mobile number is [手机号] and a WeChat id [微信号]; cut into words they gave 手机
    # (mobile phone) and 信号 (signal), and a bare contact number went to 公用事业单位 at 0.6.
    for text in ["联系电话13800001234", "请加我微信wx_abc123，或打13800001234"]:
        [p] = router.predict([text])
        for head in (p.department, p.category):
            assert {"手机", "信号"}.isdisjoint(e.term for e in head.evidence), (text, head)


def test_direction_more_evidence_more_confidence(router):
    base = "晚上楼下很吵"
    more = "晚上楼下烧烤店油烟很大，噪音也吵"
    labels = router.heads["department"].labels
    i = labels.index("市行政执法局")
    p_base, p_more = router.predict_proba([base, more])["department"][:, i]
    assert p_more > p_base


def test_b_ultrasound_is_a_word_so_block_b_is_not_a_hospital_matter(router):
    # jieba cut "B超" (ultrasound) into "b" + "超", and the sample's "b" was learnt for 市卫健委:
    # "B座电梯坏了" (block B's lift) went there, "b" its first evidence. The served default, which
    # also learns the remits, still sent it there (0.49) until the sample's addresses named blocks,
    # units and exits by letter in other departments' tickets too (data/README.md, 2026-12-07).
    [block] = router.predict(["B座电梯坏了"])
    assert block.department.label != "市卫健委"
    [scan] = router.predict(["体检中心收了B超的钱，B超项目根本没做"])
    assert scan.department.label == "市卫健委"
    assert "b超" in [e.term for e in scan.department.evidence]


def test_block_b_letter_is_no_evidence(router):
    # Found on 2026-12-06, when these checks first ran on the served default: "b" was block B's
    # first evidence. Since the sample's letters name blocks in many departments (2026-12-07) the
    # ticket goes to 市住建局, and "b" pushes it at 0.0007 against 0.197 for 电梯: below the 5 % of
    # the strongest push that evidence shows (evidence_min_share). Single letters as stopwords
    # cost top-3 on the real tickets (docs/accuracy.md, "Single Latin letters as stopwords").
    [block] = router.predict(["B座电梯坏了"])
    assert "b" not in [e.term for e in block.department.evidence]
    assert block.department.evidence  # 电梯 is


def test_evidence_terms_come_from_the_ticket(router):
    text = "公司拖欠农民工工资三个月，劳动监察大队也不管"
    result = router.predict([text])[0]
    assert result.department.evidence
    for e in result.department.evidence:
        assert e.term.replace(" ", "") in text


def test_odd_text_goes_to_review(router):
    for text in ["hello world, how are you", "1234567890", "😀😀😀", "\u202e\u200b"]:
        result = router.predict([text])[0]
        assert result.decision == "review"


@pytest.mark.parametrize(
    ("text", "department", "co"),
    [
        # The brief's example: a broken stair rail goes to 残联 with 住建 and the street office.
        (
            "楼道扶手断了很久，家里有残疾人和老人，下楼特别危险",
            "市残联",
            {"市住建局", "街道办事处"},
        ),
        ("小区一下大雨就积水，地下车库都淹了，排水管网堵塞", "市住建局", {"市水利局"}),
        ("晚上渣土车不盖篷布一路撒土，还超速闯红灯", "市行政执法局", {"市交通运输局", "市公安局"}),
    ],
)
def test_joint_dispatch_suggests_the_departments_of_similar_joint_tickets(
    router, text, department, co
):
    [result] = router.predict([text])
    assert result.department.label == department
    suggested = {c.label for c in result.co_departments}
    assert co <= suggested and department not in suggested
    joint = {s.id for s in result.similar if s.co_departments}
    for c in result.co_departments:
        assert len(c.tickets) >= 2 and set(c.tickets) <= joint


def test_a_single_department_matter_suggests_no_joint_dispatch(router):
    # A matter of a kind the sample never dispatched jointly. (The example was a company's unpaid
    # wages, a kind whose construction-site tickets go to 人社 with 住建: with words cut in search
    # mode its five similar tickets are all unpaid wages, two of them construction sites, and the
    # advice follows them; benchmarks/results/joint.json counts such single tickets with advice.)
    [result] = router.predict(["车险理赔拖了半年，保险公司一直推脱不赔"])
    assert result.department.label == "金融监管分局"
    assert result.co_departments == []


@pytest.mark.parametrize(
    ("web", "plain"),
    [
        # Found by an exploratory test of the hotline's channels: a web message's HTML remnants
        # were cut into words (nbsp, br, p, div, style) and character n-grams, which moved the
        # suggestion's score (0.63 to 0.54 for a real-data model) for the same complaint.
        ("楼道灯坏了，晚上看不见。<br>请尽快维修&nbsp;", "楼道灯坏了，晚上看不见。 请尽快维修"),
        (
            '<div style="font-size:14px"><p>小区楼下烧烤店油烟扰民</p><p>晚上十二点还在营业</p></div>',
            "小区楼下烧烤店油烟扰民 晚上十二点还在营业",
        ),
        ("公司拖欠工资三个月不发&lt;老板电话也不接&gt;", "公司拖欠工资三个月不发<老板电话也不接>"),
    ],
)
def test_invariance_to_web_markup(router, web, plain):
    probabilities = router.predict_proba([web, plain])
    for head, p in probabilities.items():
        assert p[0] == pytest.approx(p[1]), head
    pw, pp = router.predict([web, plain])
    assert [e.term for e in pw.department.evidence] == [e.term for e in pp.department.evidence]


# What the hotline's channels wrap a complaint in: a dispatcher's prefix, a mini-program form's
# field names, a letter's greeting and sign-off.
CHANNEL_WRAPPERS = [
    "12345热线来电：{}",
    "市长热线市民来电反映：{}，请相关部门核实处理。",
    "【诉求类型】投诉【诉求内容】{}【联系人】王先生",
    "尊敬的市长您好：{}。恳请尽快解决，盼复！此致 敬礼！ 一位普通市民",
    "尊敬的领导：{}。此致敬礼！",
]
BOILERPLATE = {"热线", "12345热线", "市长热线", "市长", "类型", "内容", "联系人", "盼复", "此致"}
BOILERPLATE |= {"敬礼", "此致敬礼", "致敬", "一位"}


@pytest.mark.parametrize(
    "complaint",
    [
        "楼道灯坏了好几天晚上看不见",
        "家里停水两天了",
        "楼下烧烤店油烟扰民",
        "邻居装修噪音太大影响休息",
    ],
)
def test_channel_boilerplate_is_not_evidence(router, complaint):
    # Found by an exploratory test of the hotline's channels: 热线 and 12345热线 (a dispatcher's
    # prefix), 内容 (a form's 【诉求内容】), 一位 and 敬礼 (a letter's sign-off) were evidence, and
    # on a model of the real tickets 敬礼 turned a damaged road from 城管执法 to 交通运输.
    texts = [wrapper.format(complaint) for wrapper in CHANNEL_WRAPPERS]
    for text, result in zip(texts, router.predict(texts), strict=True):
        for head in (result.department, result.category):
            assert BOILERPLATE.isdisjoint(e.term for e in head.evidence), (text, head.evidence)
