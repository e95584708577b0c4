"""The model root: one immutable directory per version and an atomically updated ``current`` pointer."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from model.artifact import METADATA_FILE, ModelLoadError

CURRENT_FILE = "current"


def versions(root: str | Path) -> list[str]:
    """Model versions under ``root`` (directories with a ``metadata.json``), oldest first by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir()
        and not p.is_symlink()
        and not p.name.startswith(".")
        and (p / METADATA_FILE).is_file()
    )


def current_version(root: str | Path) -> str | None:
    """The version named by ``root/current``, or the newest version when no pointer was set yet."""
    root = Path(root)
    pointer = root / CURRENT_FILE
    if pointer.is_file():
        name = pointer.read_text(encoding="utf-8").strip()
        if name:
            return name
    found = versions(root)
    return found[-1] if found else None


def current_dir(root: str | Path) -> Path | None:
    """Directory of the current model under ``root``, or ``None`` when the root holds no model."""
    version = current_version(root)
    if version is None:
        return None
    path = Path(root) / version
    if Path(version).name != version or not (path / METADATA_FILE).is_file():
        raise ModelLoadError(
            f"{Path(root) / CURRENT_FILE} names {version!r}, which is not a model under {root}"
        )
    return path


def set_current(root: str | Path, version: str) -> None:
    """Point ``root/current`` at ``version`` atomically (write a temporary file, then rename)."""
    root = Path(root)
    if version not in versions(root):
        raise ModelLoadError(f"no model version {version!r} under {root}")
    fd, tmp = tempfile.mkstemp(prefix=".current.", dir=root)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(version + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, root / CURRENT_FILE)
