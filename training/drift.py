"""``paidan drift``: how recent traffic differs from what the current model was trained on.

Figures:

- population stability index (PSI) of the department and category distributions: the model's
  training label counts (from its metadata) against the dispatchers' final decisions;
- the out-of-vocabulary rate: the share of tokens in recent tickets that the model's word
  vocabulary does not know;
- the share of ``review`` suggestions per day (or week, over long spans);
- frequent new terms that are not in the vocabulary, each used by ``MIN_TERM_TICKETS`` or more
  distinct tickets: candidates for the jieba user dictionary.

Traffic is a list of feedback records (plain dicts; the CLI reads them from the feedback database).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from model.router import Router
from model.text import PLACEHOLDERS, clean, join_cleaned, mask_label
from model.tickets import LABELS, as_utc, label_value
from training.validate import find_merged, merged_mapping

# PSI bands commonly used in credit scoring: below 0.1 stable, 0.1–0.25 moderate, above 0.25 major.
PSI_MODERATE = 0.1
PSI_MAJOR = 0.25
PSI_EPSILON = 1e-4  # share given to a label absent on one side, so the logarithm stays finite
# Sampling noise: the PSI that as many records drawn from the training distribution itself exceed
# PSI_NOISE_LEVEL of the time, estimated from PSI_NOISE_DRAWS simulated samples (fixed seed).
PSI_NOISE_DRAWS = 1_000
PSI_NOISE_LEVEL = 0.05
# A new term is suggested when this many distinct tickets use it (document frequency), not when it
# occurs this often: a title is counted twice, so one ticket's word in its title and text occurred
# three times, and the report listed one complainant's given name and WeChat id. A ticket is its
# masked title and text: a decision saved again, or the same complaint filed twice, counts once.
MIN_TERM_TICKETS = 3
MAX_TERMS = 30
# Feedback records tokenised at a time: the tokens of a whole window (200,000 records) took about
# 1.2 GB at once.
CHUNK_RECORDS = 2_000
# Spans longer than this are bucketed by ISO week instead of by day.
DAILY_LIMIT_DAYS = 62
# What masking put in a text is not a word of it: the segmenter would cut [银行卡号] into 银行卡 and
# 号, new terms of every week with a card number in it, so the placeholders go before it cuts.
_PLACEHOLDERS = re.compile("|".join(re.escape(p) for p in PLACEHOLDERS))
# A dictionary candidate: at least two characters and at least one Chinese character or letter.
_TERM = re.compile(r"^(?=.*[\u4e00-\u9fffA-Za-z]).{2,}$")


def psi(expected: Mapping[str, float], actual: Mapping[str, float]) -> dict[str, Any]:
    """Population stability index of two label distributions (counts or shares).

    Parameters
    ----------
    expected : mapping
        Reference counts per label (the training data).
    actual : mapping
        Recent counts per label.

    Returns
    -------
    dict
        ``psi``; its ``band``: ``stable``, ``moderate`` or ``major``, or ``noise`` when a PSI above
        ``stable`` is no larger than ``noise`` (:func:`psi_noise`: what the same number of records
        drawn from the training distribution itself reach by chance; a few dozen records spread
        over twenty labels reach "major" without any drift); ``records`` and ``per_label`` rows
        (expected share, actual share, contribution), largest contribution first.
    """
    e_total = float(sum(expected.values()))
    a_total = float(sum(actual.values()))
    if e_total <= 0 or a_total <= 0:
        return {"psi": None, "band": "no data", "noise": None, "records": 0, "per_label": []}
    rows: list[dict[str, Any]] = []
    total = 0.0
    for label in sorted(set(expected) | set(actual)):
        e = max(expected.get(label, 0) / e_total, PSI_EPSILON)
        a = max(actual.get(label, 0) / a_total, PSI_EPSILON)
        part = (a - e) * math.log(a / e)
        total += part
        rows.append(
            {
                # Feedback's labels are free text: a dispatcher may have typed a phone number.
                "label": mask_label(label),
                "expected": expected.get(label, 0) / e_total,
                "actual": actual.get(label, 0) / a_total,
                "contribution": part,
            }
        )
    rows.sort(key=lambda r: -r["contribution"])
    records = round(a_total)
    noise = psi_noise(expected, records)
    if total < PSI_MODERATE:
        band = "stable"
    elif total <= noise:
        band = "noise"
    else:
        band = "moderate" if total < PSI_MAJOR else "major"
    return {"psi": total, "band": band, "noise": noise, "records": records, "per_label": rows}


def psi_noise(expected: Mapping[str, float], records: int, seed: int = 0) -> float:
    """The PSI that ``records`` records drawn from ``expected`` exceed by chance alone.

    Its ``1 - PSI_NOISE_LEVEL`` quantile over :data:`PSI_NOISE_DRAWS` simulated samples, with
    the training distribution taken as exact (it holds far more rows than recent traffic).
    Labels absent from a sample get :data:`PSI_EPSILON`, as in :func:`psi`, which is why a small
    sample over many labels has a large PSI.

    Parameters
    ----------
    expected : mapping
        Training counts (or shares) per label.
    records : int
        Size of the recent sample.
    seed : int, default 0
        Seed of the simulated samples, so that a report can be reproduced.

    Returns
    -------
    float
        The noise level; 0 for no records.
    """
    if records <= 0:
        return 0.0
    share = np.array([float(v) for v in expected.values()])
    share /= share.sum()
    draws = np.random.default_rng(seed).multinomial(records, share, size=PSI_NOISE_DRAWS)
    e = np.maximum(share, PSI_EPSILON)
    a = np.maximum(draws / records, PSI_EPSILON)
    return float(np.quantile(((a - e) * np.log(a / e)).sum(axis=1), 1 - PSI_NOISE_LEVEL))


def suggestion_decision(suggestion: Any) -> str | None:
    """``auto``/``review`` of a stored suggestion (a ``/v1/route`` answer), or ``None``."""
    if not isinstance(suggestion, Mapping):
        return None
    if suggestion.get("decision") in ("auto", "review"):
        return suggestion["decision"]
    heads = [suggestion[h] for h in LABELS if isinstance(suggestion.get(h), Mapping)]
    decisions = [h.get("decision") for h in heads]
    if not decisions or any(d not in ("auto", "review") for d in decisions):
        return None
    return "auto" if all(d == "auto" for d in decisions) else "review"


def word_vocabulary(router: Router) -> set[str]:
    """Single-token terms of the router's word view."""
    view = router.compiled()[0].views[0]
    if view.name != "word":
        return set()
    return {t for t in view.vocabulary if " " not in t}


def drift(
    router: Router,
    metadata: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    since: datetime | None = None,
) -> dict[str, Any]:
    """Compare recent feedback records with the model's training data.

    Parameters
    ----------
    router : Router
        The model the traffic is compared with (its tokenizer and vocabulary are used).
    metadata : mapping
        Its metadata (training label counts per head).
    records : sequence of mapping
        Feedback records: ``text``, ``title``, ``department``, ``category``, ``suggestion``,
        ``created_at``.
    since : datetime, optional
        Reported as the start of the window.

    Returns
    -------
    dict
        ``psi`` per head, ``oov`` (overall and per period), ``review_share`` per period,
        ``new_terms`` (words the vocabulary lacks that ``MIN_TERM_TICKETS`` or more distinct
        tickets use, most widely used first, each with its ``tickets`` and its occurrences
        ``count``) and the window's facts.
    """
    vocab = word_vocabulary(router)
    features = router.compiled()[0]
    times = [_as_utc(r.get("created_at")) for r in records]
    span_days = (max(times) - min(times)).days if times else 0
    period = _day if span_days <= DAILY_LIMIT_DAYS else _week

    report: dict[str, Any] = {
        "model_version": router.version,
        "since": since.isoformat() if since else None,
        "records": len(records),
        "first": min(times).isoformat() if times else None,
        "last": max(times).isoformat() if times else None,
        "period": "day" if period is _day else "week",
        "psi": {},
    }
    heads = metadata.get("heads", {})
    # The training counts are those after rare labels were merged into 其他: the decisions are
    # counted the same way, or unchanged traffic read as drift.
    merged = merged_mapping(metadata, {h: list(head.labels) for h, head in router.heads.items()})
    for head in LABELS:
        trained = heads.get(head, {}).get("counts", {})
        # A joint dispatch counts for its lead department, as it does in training.
        given = Counter(label_value(head, r.get(head)) for r in records)
        learnt = router.heads[head].labels if head in router.heads else ()
        into_other = find_merged(merged.get(head, {}), given, learnt)
        recent: Counter[str] = Counter()
        for v, n in given.items():
            recent[into_other.get(v, v)] += n
        recent.pop("", None)
        if trained:
            report["psi"][head] = psi(trained, recent)

    tokens_by_period: dict[str, list[int]] = {}
    review_by_period: dict[str, list[int]] = {}
    new_terms: Counter[str] = Counter()
    # Per distinct ticket (a digest of its masked title and text), the new terms it uses.
    ticket_terms: dict[bytes, set[str]] = {}
    known = unknown = 0
    for start in range(0, len(records), CHUNK_RECORDS):
        part = records[start : start + CHUNK_RECORDS]
        texts = [
            (
                _PLACEHOLDERS.sub(" ", clean(str(r.get("title") or ""), features.script)),
                _PLACEHOLDERS.sub(" ", clean(str(r.get("text") or ""), features.script)),
            )
            for r in part
        ]
        docs = features.segmenter.transform(prepared(texts, features.title_repeat))
        when_part = times[start : start + CHUNK_RECORDS]
        for r, when, ticket, doc in zip(part, when_part, texts, docs, strict=True):
            key = period(when)
            tokens = doc.tokens
            miss = [t for t in tokens if t not in vocab]
            k, u = len(tokens) - len(miss), len(miss)
            known, unknown = known + k, unknown + u
            counts = tokens_by_period.setdefault(key, [0, 0])
            counts[0] += k
            counts[1] += u
            terms = [t for t in miss if _TERM.match(t)]
            new_terms.update(terms)
            ticket_terms.setdefault(_digest(ticket), set()).update(terms)
            decision = suggestion_decision(r.get("suggestion"))
            if decision is not None:
                rv = review_by_period.setdefault(key, [0, 0])
                rv[0] += decision == "review"
                rv[1] += 1
    total = known + unknown
    report["oov"] = {
        "rate": unknown / total if total else None,
        "tokens": total,
        "by_period": [
            {"period": p, "rate": u / (k + u) if k + u else None, "tokens": k + u}
            for p, (k, u) in sorted(tokens_by_period.items())
        ],
    }
    reviewed = sum(v[0] for v in review_by_period.values())
    decided = sum(v[1] for v in review_by_period.values())
    report["review_share"] = {
        "share": reviewed / decided if decided else None,
        "with_suggestion": decided,
        "by_period": [
            {"period": p, "share": r / n, "tickets": n}
            for p, (r, n) in sorted(review_by_period.items())
        ],
    }
    in_tickets = Counter(t for terms in ticket_terms.values() for t in terms)
    frequent = [t for t, n in in_tickets.items() if n >= MIN_TERM_TICKETS]
    frequent.sort(key=lambda t: (-in_tickets[t], -new_terms[t], t))
    report["new_terms"] = [
        {"term": t, "count": new_terms[t], "tickets": in_tickets[t]} for t in frequent[:MAX_TERMS]
    ]
    return report


def prepared(tickets: Sequence[tuple[str, str]], title_repeat: int) -> list[str]:
    """The texts the segmenter cuts, from titles and texts already cleaned (placeholders taken out):
    as ``features.texts`` prepares them, without cleaning each a second time.

    Taking a placeholder out leaves spaces that cleaning would collapse (a title that was only a
    number is then empty, and left out as ``combine`` leaves out an empty title); collapsing them
    is all the second cleaning did on the 17,000 titles and texts of the shared data. It could
    only mask anew digits that a placeholder's removal brought next to a keyword (``qq号[手机号]
    12345``), and put back a placeholder for the segmenter to cut into words (``qq``, ``号``),
    which is what taking them out is for."""
    return [
        join_cleaned(" ".join(title.split()), " ".join(text.split()), title_repeat)
        for title, text in tickets
    ]


def _digest(ticket: tuple[str, str]) -> bytes:
    """A ticket's masked title and text as a 16-byte key, so the window's texts are not held twice."""
    title, text = ticket
    return hashlib.blake2b(f"{title}\x00{text}".encode(), digest_size=16).digest()


def write_drift(report: Mapping[str, Any], json_path: str | Path) -> list[Path]:
    """Write the report as JSON and a small PNG beside it (``<stem>.png``)."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    png = json_path.with_suffix(".png")
    drift_png(report, png)
    return [json_path, png]


def drift_png(report: Mapping[str, Any], path: Path) -> Path:
    """Three panels: PSI per head (with the bands), OOV rate and review share per period."""
    from training import plots

    plt = plots.plt
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    heads = [h for h in LABELS if report["psi"].get(h, {}).get("psi") is not None]
    values = [report["psi"][h]["psi"] for h in heads]
    axes[0].bar(heads, values, color="#3b6ea5")
    axes[0].axhline(PSI_MODERATE, color="orange", linestyle="--", label="moderate")
    axes[0].axhline(PSI_MAJOR, color="red", linestyle="--", label="major")
    axes[0].set_title("label PSI vs training")
    axes[0].legend(fontsize=7)
    for ax, key, field, title in (
        (axes[1], "oov", "rate", "out-of-vocabulary token rate"),
        (axes[2], "review_share", "share", "share sent to review"),
    ):
        rows = [r for r in report[key]["by_period"] if r[field] is not None]
        x = np.arange(len(rows))
        ax.plot(x, [r[field] for r in rows], marker="o")
        ax.set_xticks(x, [r["period"] for r in rows], rotation=60, fontsize=6)
        ax.set_ylim(0, 1)
        ax.set_title(f"{title} per {report['period']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _day(when: datetime) -> str:
    return when.strftime("%Y-%m-%d")


def _week(when: datetime) -> str:
    year, week, _ = when.isocalendar()
    return f"{year}-W{week:02d}"


def _as_utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, datetime):
        raise ValueError(f"feedback record without a valid created_at: {value!r}")
    return as_utc(value)
