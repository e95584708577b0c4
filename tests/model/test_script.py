"""A ticket typed in traditional characters is read as the same ticket in simplified ones."""

from __future__ import annotations

import dataclasses

import pytest

from model.artifact import load_router, load_serving_router
from tests.conftest import train_tiny

SIMPLIFIED = ("饭店油烟扰民", "楼下烧烤店油烟很大，晚上十二点还在营业")
TRADITIONAL = ("飯店油煙擾民", "樓下燒烤店油煙很大，晚上十二點還在營業")


def routed(router, ticket):
    [result] = router.predict([ticket], similar_k=3)
    head = result.department
    return head.label, round(head.score, 6), [e.term for e in head.evidence], result.similar


@pytest.mark.parametrize("loader", [load_router, load_serving_router])
def test_a_traditional_ticket_is_routed_as_its_simplified_form(tiny_model_dir, loader):
    router, meta = loader(tiny_model_dir)
    assert meta["config"]["script"] == "simplified"
    label, score, evidence, similar = routed(router, TRADITIONAL)
    assert (label, score, evidence, similar) == routed(router, SIMPLIFIED)
    assert label == "执法" and "油烟" in evidence  # shown as the model reads it


@pytest.fixture(scope="module")
def as_written_dir(tmp_path_factory, tiny_config):
    config = dataclasses.replace(tiny_config, script="as_written")
    return train_tiny(tmp_path_factory, "tiny-as-written", config)


@pytest.mark.parametrize("loader", [load_router, load_serving_router])
def test_a_model_trained_as_written_reads_traditional_characters_as_written(as_written_dir, loader):
    router, meta = loader(as_written_dir)
    assert meta["config"]["script"] == "as_written"
    evidence = routed(router, TRADITIONAL)[2]
    assert "油烟" not in evidence and evidence != routed(router, SIMPLIFIED)[2]


def _without_script(obj):
    """``obj`` as a model pickled before the setting holds it: without its script."""
    state = dict(obj.__getstate__())
    del state["script"]
    old = type(obj).__new__(type(obj))
    old.__setstate__(state)
    return old


def test_a_model_pickled_before_the_setting_reads_text_as_written(tiny_model_dir):
    # A model saved before the setting existed has no script in its pickled text preparation:
    # it featurises a ticket as written, as it did when it was trained.
    router, _ = load_router(tiny_model_dir)
    preparer = router.features.named_steps["prepare"]
    compiled = router.compiled()[0]
    for old in (_without_script(preparer), _without_script(compiled)):
        assert old.script == "as_written"
    assert _without_script(preparer).transform([TRADITIONAL]) == [
        "飯店油煙擾民。飯店油煙擾民。樓下燒烤店油煙很大,晚上十二點還在營業"
    ]
    assert _without_script(compiled).texts([TRADITIONAL]) == _without_script(preparer).transform(
        [TRADITIONAL]
    )
    assert compiled.texts([TRADITIONAL]) == compiled.texts([SIMPLIFIED])


def test_paidan_train_records_the_script_it_is_given(tmp_path):
    from typer.testing import CliRunner

    from model.artifact import read_metadata
    from paidan.cli import app
    from tests.conftest import write_tiny_csv

    runner = CliRunner()
    data = write_tiny_csv(tmp_path / "tiny.csv")
    out = tmp_path / "m"
    options = ["train", str(data), "--out", str(out), "--min-examples", "3"]
    r = runner.invoke(app, [*options, "--script", "as_written"])
    assert r.exit_code == 0, r.output
    assert read_metadata(out)["config"]["script"] == "as_written"
    wrong = runner.invoke(app, [*options, "--force", "--script", "traditional"])
    assert wrong.exit_code == 2 and "--script" in wrong.output


def test_warm_up_loads_opencc_only_for_a_model_that_reads_simplified(
    tiny_model_dir, as_written_dir
):
    # Its tables take about 120 ms to build: at start-up, not on the first Chinese ticket.
    from model import text

    for model_dir, loaded in ((as_written_dir, 0), (tiny_model_dir, 1)):
        router, _ = load_serving_router(model_dir)
        text._converter.cache_clear()
        router.warm_up()
        assert text._converter.cache_info().currsize == loaded
