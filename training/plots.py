"""PNG plots for reports: confusion matrices, reliability diagrams."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import font_manager

# Fonts that can draw Chinese labels, best first; without one, labels fall back to their index.
_CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "SimHei",
    "Microsoft YaHei",
    "PingFang SC",
    "Source Han Sans SC",
    "AR PL UMing CN",
    "Source Han Sans CN",
    "Noto Serif CJK SC",
    "Noto Serif CJK JP",
    "Source Han Serif SC",
    "Source Han Serif CN",
    "AR PL UKai CN",
    "SimSun",
    "NSimSun",
    "Droid Sans Fallback",
)


# File names of the fonts above (and of other CJK fonts that distributions ship), as found on disk.
_CJK_FONT_FILES = re.compile(
    r"notosanscjk|notoserifcjk|sourcehan|wqy|simhei|simsun|msyh|pingfang|uming|ukai|droidsansfallback",
    re.IGNORECASE,
)
_rescanned = False


def cjk_font() -> str | None:
    """Name of an installed font that can draw Chinese, or ``None``.

    matplotlib lists the system's fonts once and caches the list (``~/.cache/matplotlib``): a CJK
    font installed after that (``apt install fonts-noto-cjk`` on a server that had drawn a plot)
    was never seen, and every plot numbered its labels for ever. When the cached list has none,
    the font directories are looked at once per process and the CJK fonts found there added.
    """
    global _rescanned
    found = _listed_cjk_font()
    if found is None and not _rescanned:
        _rescanned = True
        known = {f.fname for f in font_manager.fontManager.ttflist}
        for path in font_manager.findSystemFonts():
            if path not in known and _CJK_FONT_FILES.search(Path(path).name):
                try:
                    font_manager.fontManager.addfont(path)
                except Exception:  # a font file matplotlib cannot read: one fewer to try
                    continue
        found = _listed_cjk_font()
    return found


def _listed_cjk_font() -> str | None:
    """The best font of :data:`_CJK_FONTS` in matplotlib's list, else any listed font whose file is
    a CJK font's (:data:`_CJK_FONT_FILES`): the rescan added such a font (Droid Sans Fallback,
    SimSun, a family named in another language), and then said no font that draws Chinese was
    found."""
    listed = font_manager.fontManager.ttflist
    installed = {f.name for f in listed}
    found = next((f for f in _CJK_FONTS if f in installed), None)
    if found is None:
        found = next((f.name for f in listed if _CJK_FONT_FILES.search(Path(f.fname).name)), None)
    return found


def _labels(labels: list[str]) -> list[str]:
    font = cjk_font()
    if font:
        plt.rcParams["font.sans-serif"] = [font, "DejaVu Sans"]
        return labels
    # No CJK font: number the labels rather than draw empty boxes; the Markdown report gives the
    # key under each confusion plot (evaluate.markdown_report).
    return [f"{i}" if not label.isascii() else label for i, label in enumerate(labels)]


def confusion_png(confusion: dict[str, Any], title: str, path: Path) -> Path:
    """Row-normalised confusion matrix with counts in the cells."""
    labels = confusion["labels"]
    m = np.asarray(confusion["matrix"], dtype=float)
    rows = m.sum(axis=1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    size = max(5.0, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    shown = _labels(labels)
    ax.set_xticks(range(len(labels)), shown, rotation=90)
    ax.set_yticks(range(len(labels)), shown)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if len(labels) <= 30:
        for i in range(len(labels)):
            for j in range(len(labels)):
                if m[i, j]:
                    ax.text(
                        j,
                        i,
                        str(int(m[i, j])),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black",
                    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def reliability_png(bins_by_head: dict[str, list[dict[str, float]]], path: Path) -> Path:
    """Reliability diagram: accuracy against mean confidence per bin, one line per head."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    for head, bins in bins_by_head.items():
        pts = [(b["confidence"], b["accuracy"], b["count"]) for b in bins if b["count"]]
        if pts:
            x, y, _ = zip(*pts, strict=True)
            ax.plot(x, y, marker="o", label=head)
            for xi, yi, ni in pts:
                ax.annotate(
                    str(ni), (xi, yi), fontsize=6, xytext=(2, 2), textcoords="offset points"
                )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean confidence")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability (numbers: tickets per bin)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def bar_png(counts: dict[str, int], title: str, path: Path, key_note: str = "") -> Path:
    """Horizontal bar chart of counts per label, largest first (at the top).

    Without a CJK font a label that is not ASCII is its number in ``counts``' order, from 0 (the
    first, most tickets first as a summary lists them, at the top), and ``key_note`` (where the
    key is) is added under the title.
    """
    numbered = {label: label if label.isascii() else str(i) for i, label in enumerate(counts)}
    order = {label: i for i, label in enumerate(counts)}
    # The last bar is drawn at the top: within a tie too, counts' first comes last.
    items = sorted(counts.items(), key=lambda kv: (kv[1], -order[kv[0]]))
    fig, ax = plt.subplots(figsize=(6, max(3.0, 0.3 * len(items) + 1)))
    names = _labels([k for k, _ in items])
    if names != [k for k, _ in items]:  # numbered: by the order of counts, not of the bars
        names = [numbered[k] for k, _ in items]
        # Wrapped to the figure's width (a line of it ran off both edges).
        title = "\n".join([title, *textwrap.wrap(key_note, 48)]) if key_note else title
    ax.barh(names, [v for _, v in items], color="#3b6ea5")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def histogram_png(values: np.ndarray, title: str, path: Path, bins: int = 20) -> Path:
    """Histogram of values in [0, 1], e.g. confidence."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(values, bins=bins, range=(0, 1), color="#3b6ea5")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
