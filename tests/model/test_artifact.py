import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from model.artifact import (
    METADATA_FILE,
    ROUTER_FILE,
    ModelLoadError,
    load_router,
    read_metadata,
    save_router,
)
from model.registry import current_dir, set_current, versions

PROBES = ["楼下烧烤店油烟很大", "老板拖欠工资三个月", "电梯坏了物业不管", "hello 123"]


def writable_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    for p in dst.iterdir():
        p.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return dst


def test_model_directory_layout_and_metadata(tiny_model_dir):
    meta = read_metadata(tiny_model_dir)
    assert {ROUTER_FILE, "userdict.txt", "stopwords.txt"} <= set(meta["files"])
    for key in (
        "version",
        "created",
        "libraries",
        "heads",
        "training_data",
        "config",
        "cv_metrics",
    ):
        assert key in meta
    assert meta["heads"]["department"]["labels"] == ["人社", "住建", "执法"]
    assert meta["heads"]["department"]["counts"] == {"人社": 6, "住建": 6, "执法": 6}
    assert len(meta["training_data"]["sha256"]) == 64 and meta["training_data"]["rows"] == 18
    assert not os.access(tiny_model_dir / ROUTER_FILE, os.W_OK) or os.geteuid() == 0
    assert stat.S_IMODE((tiny_model_dir / ROUTER_FILE).stat().st_mode) & 0o222 == 0


def test_save_then_load_gives_identical_predictions(tiny_model_dir, tmp_path):
    router, meta = load_router(tiny_model_dir)
    before = [r.model_dump() for r in router.predict(PROBES)]
    again = save_router(router, tmp_path / "copy", {"heads": meta["heads"]})
    reloaded, _ = load_router(again)
    assert [r.model_dump() for r in reloaded.predict(PROBES)] == before


def test_existing_directory_is_refused_without_force(tiny_model_dir, tmp_path):
    router, _ = load_router(tiny_model_dir)
    out = tmp_path / "m"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="--force"):
        save_router(router, out, {})
    save_router(router, out, {}, force=True)
    assert not (out / "keep.txt").exists() and (out / METADATA_FILE).is_file()


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_tampered_or_truncated_pickle_is_refused(tiny_model_dir, tmp_path, damage):
    model = writable_copy(tiny_model_dir, tmp_path / "m")
    pkl = model / ROUTER_FILE
    data = pkl.read_bytes()
    if damage == "flip":
        pkl.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    elif damage == "truncate":
        pkl.write_bytes(data[: len(data) // 2])
    else:
        pkl.unlink()
    with pytest.raises(ModelLoadError, match=ROUTER_FILE):
        load_router(model)


def test_tampered_userdict_is_refused(tiny_model_dir, tmp_path):
    model = writable_copy(tiny_model_dir, tmp_path / "m")
    with open(model / "userdict.txt", "a", encoding="utf-8") as f:
        f.write("恶意词 99999 n\n")
    with pytest.raises(ModelLoadError, match=r"userdict\.txt"):
        load_router(model)


def test_metadata_naming_files_outside_is_refused(tiny_model_dir, tmp_path):
    model = writable_copy(tiny_model_dir, tmp_path / "m")
    meta = json.loads((model / METADATA_FILE).read_text())
    meta["files"]["../evil.joblib"] = "0" * 64
    (model / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="outside"):
        load_router(model)


def test_other_library_version_is_refused(tiny_model_dir, tmp_path):
    model = writable_copy(tiny_model_dir, tmp_path / "m")
    meta = json.loads((model / METADATA_FILE).read_text())
    meta["libraries"]["scikit-learn"] = "0.24.2"
    (model / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match=r"scikit-learn 0\.24\.2"):
        load_router(model)


def test_paths_outside_the_root_and_symlinks_are_refused(tiny_model_dir, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(ModelLoadError, match="outside the model root"):
        load_router(tiny_model_dir, root=root)
    link = root / "linked"
    link.symlink_to(tiny_model_dir, target_is_directory=True)
    with pytest.raises(ModelLoadError, match="symlink"):
        load_router(link, root=root)
    inside = writable_copy(tiny_model_dir, root / "v1")
    router, _ = load_router(inside, root=root)
    assert router.heads


def test_not_a_model_directory(tmp_path):
    with pytest.raises(ModelLoadError, match=r"no metadata\.json"):
        load_router(tmp_path)


def test_registry_current_pointer(tiny_model_dir, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    assert current_dir(root) is None
    writable_copy(tiny_model_dir, root / "20260101T000000Z-aaaa")
    writable_copy(tiny_model_dir, root / "20260102T000000Z-bbbb")
    assert versions(root) == ["20260101T000000Z-aaaa", "20260102T000000Z-bbbb"]
    assert current_dir(root) == root / "20260102T000000Z-bbbb"  # newest until a pointer is set
    set_current(root, "20260101T000000Z-aaaa")
    assert current_dir(root) == root / "20260101T000000Z-aaaa"
    with pytest.raises(ModelLoadError):
        set_current(root, "nope")
