"""paidan against its peers, side by side: speed, memory and size, and fastText's accuracy.

Peers, all trained on the same rows:

* **paidan** with each tokenizer backend (``jieba``, ``rjieba``), trained as ``paidan train`` does
  (inner cross-validation for the thresholds included in the training time), and served through
  ``Router.predict`` with its defaults (both heads, top-3 candidates, evidence, 5 similar tickets);
* **baseline**: the plain pipeline jieba → ``TfidfVectorizer()`` → ``LinearSVC()`` (one head per
  pipeline, the way it is usually deployed);
* **fastText** supervised on jieba-segmented text (``lr=0.5``, 50 epochs, word bigrams in 200,000
  hash buckets, one thread and a fixed seed; chosen beforehand, not tuned on the test folds). Its Python ``predict`` breaks
  under NumPy 2, so the low-level ``model.f.predict`` is used.

Subcommands:

``speed``
    Trains every peer on ``department_train.csv`` (both heads for paidan, the department for the
    others), saves it, then measures each one **in a fresh subprocess** (so peak RSS is that peer's
    own): load time, single-ticket latency (p50/p99) for 50-, 400- and 2,000-character tickets built
    from the real unlabelled tickets, batch throughput on those tickets, peak RSS and size on disk.
    Each peer is measured ``--repeats`` times (default 3), peers taken in turn, and the median of
    each figure is reported with every run kept: on this shared VM two runs of the same model
    differed by up to 1.7× in p50. Writes ``benchmarks/results/peers.json``.
``fasttext-f1``
    fastText's macro-F1 on exactly the folds of ``benchmarks/accuracy.py`` (same seed, same rare-label
    merge, same tokens as the baseline). Writes ``benchmarks/results/fasttext_accuracy.json``.
``search``
    Similar-ticket search over a synthetic 100,000-ticket index of realistic sparsity (the real
    tickets' feature rows, resampled, each non-zero scaled by a random factor in [0.5, 1.5] and
    renormalised so that no two rows are equal): latency of the exact search and of the pruned
    index, and the pruned index's recall of the exact top 5. Writes ``benchmarks/results/search.json``.
``agreement``
    Token agreement of the rjieba backend with jieba on the real tickets (identical documents, token
    F1, speed ratio). Writes ``benchmarks/results/tokenizer_agreement.json``.

Run ``benchmarks/run_all.py`` to get everything in one run. Ticket texts are never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SHARED = ROOT.parent / "shared" / "datasets" / "tipdm2020c"
RESULTS = ROOT / "benchmarks" / "results"
LENGTHS = (50, 400, 2_000)
# bucket: 200,000 hashed bigram rows instead of 2 million (an 80 MB model, not 800 MB; these
# corpora have far fewer distinct bigrams).
FASTTEXT_PARAMS = {
    "lr": 0.5,
    "epoch": 50,
    "wordNgrams": 2,
    "dim": 100,
    "minCount": 1,
    "bucket": 200_000,
}


# -- peers' models ------------------------------------------------------------------------------
def jieba_analyzer(text: str) -> list[str]:
    """The baseline's analyzer: jieba's default cut of the normalised text (module-level: picklable)."""
    import jieba

    from model.text import normalize

    return jieba.lcut(normalize(text))


def baseline_pipeline() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import Pipeline
    from sklearn.svm import LinearSVC

    # TfidfVectorizer's defaults, with jieba as the analyzer (its default pattern cannot cut Chinese).
    return Pipeline([("tfidf", TfidfVectorizer(analyzer=jieba_analyzer)), ("svc", LinearSVC())])


def fasttext_line(text: str) -> str:
    """One ticket as fastText reads it: jieba tokens separated by spaces, on one line."""
    return " ".join(t for t in jieba_analyzer(text) if t.strip())


def train_fasttext(texts: list[str], labels: list[str], out: Path) -> Any:
    import fasttext

    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".train.txt"), "w", encoding="utf-8") as f:
        for text, label in zip(texts, labels, strict=True):
            f.write(f"__label__{label.replace(' ', '_')} {fasttext_line(text)}\n")
    model = fasttext.train_supervised(
        input=str(out.with_suffix(".train.txt")), thread=1, seed=42, verbose=0, **FASTTEXT_PARAMS
    )
    out.with_suffix(".train.txt").unlink()
    return model


def fasttext_predict(model: Any, text: str) -> str:
    # model.f.predict(text, k, threshold, on_unicode_error) -> [(prob, label)]
    return model.f.predict(fasttext_line(text), 1, 0.0, "strict")[0][1].removeprefix("__label__")


# -- data ---------------------------------------------------------------------------------------
def latency_tickets(n: int, seed: int = 0) -> dict[int, list[str]]:
    """``n`` texts of exactly each length in :data:`LENGTHS`, cut from the real unlabelled tickets.

    A text shorter than the length is continued with the next tickets, so long tickets are real
    sentences too.
    """
    from model.tickets import read_tickets

    df = read_tickets([SHARED / "unlabelled.csv"])
    pool = [f"{t}。{x}" for t, x in zip(df["title"], df["text"], strict=True)]
    rng = np.random.default_rng(seed)
    out: dict[int, list[str]] = {}
    for length in LENGTHS:
        texts = []
        for start in rng.integers(0, len(pool), size=n):
            s, j = "", int(start)
            while len(s) < length:
                s += pool[j % len(pool)]
                j += 1
            texts.append(s[:length])
        out[length] = texts
    return out


def batch_tickets(n: int) -> list[str]:
    from model.tickets import read_tickets

    df = read_tickets([SHARED / "unlabelled.csv"])
    pool = [f"{t}。{x}" for t, x in zip(df["title"], df["text"], strict=True)]
    return [pool[i % len(pool)] for i in range(n)]


def peak_rss() -> int:
    """This process's peak resident set in bytes (VmHWM: reset by exec, unlike ru_maxrss)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def dir_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- speed: train, then measure each peer in its own process ---------------------------------------
def check_peers(peers: list[str]) -> None:
    """Exit 2 with one line at a peer :func:`train_all` cannot train, before any ticket is read.

    ``paidan-<backend>`` was built as ``TrainingConfig(tokenizer=backend)`` while training, after
    the tickets were read and the peers before it trained: ``paidan-foo`` was a ``ConfigError``
    traceback, ``paidan`` an ``IndexError`` and ``svm`` a ``ValueError``.
    """
    from model.config import ConfigError, TrainingConfig

    for peer in peers:
        if peer in ("baseline", "fasttext"):
            continue
        name, dash, backend = peer.partition("-")
        if name == "paidan" and dash:
            try:
                TrainingConfig(tokenizer=backend)  # type: ignore[arg-type]
                continue
            except ConfigError as e:
                message = f"--peers {peer}: {e}"
        else:
            message = f"--peers {peer}: expected baseline, fasttext or paidan-<tokenizer>"
        print(f"peers.py: {message}", file=sys.stderr)
        raise SystemExit(2)


def train_all(workdir: Path, peers: list[str]) -> dict[str, dict[str, Any]]:
    """Train every peer on department_train.csv; return where each is saved and how long it took."""
    import joblib

    from model import resources
    from model.config import TrainingConfig
    from model.tickets import read_tickets
    from training.train import train_frame

    df = read_tickets([SHARED / "department_train.csv"])
    texts = [f"{t} {x}" for t, x in zip(df["title"], df["text"], strict=True)]
    labels = df["department"].tolist()
    out: dict[str, dict[str, Any]] = {}
    for peer in peers:
        path = workdir / peer
        t0 = time.perf_counter()
        if peer.startswith("paidan"):
            backend = peer.split("-", 1)[1]
            train_frame(
                df,
                path,
                TrainingConfig(tokenizer=backend),
                userdict=resources.default_userdict(),
                stopwords=resources.default_stopwords(),
            )
        elif peer == "baseline":
            pipe = baseline_pipeline().fit(texts, labels)
            fit_s = time.perf_counter() - t0
            joblib.dump(pipe, path.with_suffix(".joblib"))
            path = path.with_suffix(".joblib")
        elif peer == "fasttext":
            model = train_fasttext(texts, labels, path)
            fit_s = time.perf_counter() - t0
            model.save_model(str(path.with_suffix(".bin")))
            path = path.with_suffix(".bin")
        else:
            raise ValueError(f"unknown peer {peer!r}")
        if peer.startswith("paidan"):
            fit_s = time.perf_counter() - t0  # includes writing the model directory
        out[peer] = {"path": str(path), "train_seconds": round(fit_s, 2), "size_mb": 0.0}
        out[peer]["size_mb"] = round(dir_size(path) / 1e6, 2)
        print(f"trained {peer} in {fit_s:.1f} s", file=sys.stderr)
    return out


def measure(peer: str, path: str, calls: int, batch: int) -> dict[str, Any]:
    """Load one peer and time it (runs in its own process; see :func:`speed`)."""
    import psutil

    tickets = latency_tickets(calls)
    backlog = batch_tickets(batch)
    # Calls timed beside the peer's own (paidan: its labels alone), not compared with a target.
    extra: dict[str, Any] = {}
    rss_before = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    if peer.startswith("paidan"):
        from model.artifact import load_router

        router, _ = load_router(path)
        router.warm_up()

        def one(text: str) -> Any:
            return router.predict([text])

        def many(texts: list[str]) -> Any:
            return router.predict(texts, similar_k=0, explain=False)

        def labels_only(text: str) -> Any:
            # Both heads' labels, scores and decisions: the routing decision, without the
            # evidence and the similar tickets a dispatcher is shown beside it.
            return router.predict([text], similar_k=0, explain=False)

        extra["labels_only"] = labels_only

    elif peer == "baseline":
        import jieba
        import joblib

        pipe = joblib.load(path)
        jieba.initialize()

        def one(text: str) -> Any:
            return pipe.predict([text])

        def many(texts: list[str]) -> Any:
            return pipe.predict(texts)

    else:
        import fasttext
        import jieba

        model = fasttext.load_model(path)
        jieba.initialize()

        def one(text: str) -> Any:
            return fasttext_predict(model, text)

        def many(texts: list[str]) -> Any:
            return [fasttext_predict(model, t) for t in texts]

    load_s = time.perf_counter() - t0
    latency = timed(one, tickets)
    others = {f"latency_{name}": timed(call, tickets) for name, call in extra.items()}
    s = time.perf_counter()
    for start in range(0, len(backlog), 1_000):
        many(backlog[start : start + 1_000])
    batch_s = time.perf_counter() - s
    return {
        "load_and_warm_up_s": round(load_s, 2),
        "latency": latency,
        **others,
        "batch_tickets_per_s": round(len(backlog) / batch_s, 1),
        "batch_tickets": len(backlog),
        "peak_rss_mb": round(peak_rss() / 2**20, 1),
        "rss_before_model_mb": round(rss_before / 2**20, 1),
    }


def timed(call: Callable[[str], Any], tickets: dict[int, list[str]]) -> dict[str, Any]:
    """p50 and p99 of ``call`` on each length's tickets, in ms (20 calls first, untimed)."""
    latency: dict[str, Any] = {}
    for length, texts in tickets.items():
        for text in texts[:20]:  # warm caches (not timed)
            call(text)
        times = []
        for text in texts:
            s = time.perf_counter()
            call(text)
            times.append((time.perf_counter() - s) * 1000)
        latency[str(length)] = {
            "p50_ms": round(float(np.percentile(times, 50)), 3),
            "p99_ms": round(float(np.percentile(times, 99)), 3),
            "calls": len(times),
        }
    return latency


def speed(peers: list[str], calls: int, batch: int, repeats: int = 3) -> dict[str, Any]:
    """Train every peer once, then measure each ``repeats`` times, peers interleaved.

    On a shared 2-core VM one process's p50 can differ from the next one's by 1.5× for the same
    model (measured), so each peer is measured in ``repeats`` fresh processes, round-robin so that
    a slow spell hits every peer alike, and the median of each figure is reported (all runs kept).
    """
    with tempfile.TemporaryDirectory(prefix="paidan-peers-") as tmp:
        trained = train_all(Path(tmp), peers)
        runs: dict[str, list[dict[str, Any]]] = {peer: [] for peer in trained}
        errors: dict[str, list[str]] = {}
        for rep in range(repeats):
            for peer, info in trained.items():
                proc = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "measure",
                        peer,
                        info["path"],
                        str(calls),
                        str(batch),
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if proc.returncode != 0:
                    errors[peer] = proc.stderr.strip().splitlines()[-1:]
                    continue
                runs[peer].append(json.loads(proc.stdout.strip().splitlines()[-1]))
                print(f"measured {peer} ({rep + 1}/{repeats})", file=sys.stderr)
        results: dict[str, Any] = {}
        for peer, info in trained.items():
            entry = {k: v for k, v in info.items() if k != "path"}
            if peer in errors:
                results[peer] = entry | {"error": errors[peer]}
            if runs[peer]:
                results[peer] = entry | _median_run(runs[peer]) | {"runs": runs[peer]}
    return {
        "trained_on": "department_train.csv (all rows)",
        "latency_tickets": "texts of exactly 50, 400 and 2,000 characters cut from unlabelled.csv",
        "paidan_call": "Router.predict([text]) with defaults: both heads, top-3, evidence, 5 similar",
        "paidan_labels_only_call": "Router.predict([text], similar_k=0, explain=False): both "
        "heads' labels, scores and decisions, without evidence or similar tickets "
        "(latency_labels_only; for comparison, not a target)",
        "baseline_call": "pipeline.predict([text]): jieba → TfidfVectorizer() → LinearSVC(), one head",
        "fasttext_call": "jieba cut + model.f.predict(text, 1, 0.0), one head",
        "batch_call": "chunks of 1,000 in one process; paidan with similar_k=0, explain=False",
        "peers": results,
    }


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per figure, the median over repeated measurements (peak RSS: the largest)."""

    def med(values: list[float]) -> float:
        return round(float(np.median(values)), 3)

    def latency(key: str) -> dict[str, Any]:
        return {
            length: {
                figure: med([r[key][length][figure] for r in runs])
                for figure in ("p50_ms", "p99_ms")
            }
            | {"calls": runs[0][key][length]["calls"]}
            for length in runs[0][key]
        }

    return {
        "load_and_warm_up_s": med([r["load_and_warm_up_s"] for r in runs]),
        "latency": latency("latency"),
        **{key: latency(key) for key in runs[0] if key.startswith("latency_")},
        "batch_tickets_per_s": med([r["batch_tickets_per_s"] for r in runs]),
        "batch_tickets": runs[0]["batch_tickets"],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "rss_before_model_mb": med([r["rss_before_model_mb"] for r in runs]),
        "repeats": len(runs),
    }


# -- fastText accuracy on accuracy.py's folds ----------------------------------------------------
def fasttext_f1(seeds: list[int], folds: int, tasks: list[str]) -> dict[str, Any]:
    import accuracy  # benchmarks/accuracy.py: same data, same rare-label merge, same folds
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold

    from model.config import TrainingConfig
    from model.tickets import read_tickets

    config = TrainingConfig()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="paidan-ft-") as tmp:
        for task in tasks:
            df = read_tickets([accuracy.SHARED / accuracy.TASKS[task]])
            df = accuracy.merge_rare(
                df[df[task].str.strip() != ""].reset_index(drop=True), task, config.min_examples
            )
            y = df[task].to_numpy(dtype=str)
            texts = [f"{t} {x}" for t, x in zip(df["title"], df["text"], strict=True)]
            runs = []
            for seed in seeds:
                skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
                for k, (train, test) in enumerate(skf.split(df, y)):
                    t0 = time.perf_counter()
                    model = train_fasttext(
                        [texts[i] for i in train], y[train].tolist(), Path(tmp) / "ft"
                    )
                    fit_s = time.perf_counter() - t0
                    pred = np.array([fasttext_predict(model, texts[i]) for i in test])
                    runs.append(
                        {
                            "seed": seed,
                            "fold": k,
                            "macro_f1": float(
                                f1_score(
                                    y[test],
                                    pred,
                                    labels=sorted(set(y[test])),
                                    average="macro",
                                    zero_division=0,
                                )
                            ),
                            "accuracy": float((pred == y[test]).mean()),
                            "fit_seconds": fit_s,
                        }
                    )
            out[task] = {
                "rows": len(df),
                "runs": runs,
                "macro_f1": _mean_std([r["macro_f1"] for r in runs]),
                "accuracy": _mean_std([r["accuracy"] for r in runs]),
                "fit_seconds": _mean_std([r["fit_seconds"] for r in runs]),
            }
            print(f"fastText {task}: {out[task]['macro_f1']['mean']:.3f}", file=sys.stderr)
    return {"params": FASTTEXT_PARAMS, "seeds": seeds, "folds": folds, "tasks": out}


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


# -- similar-ticket search at 100,000 stored tickets ----------------------------------------------
def search(rows: int, queries: int, k: int = 5) -> dict[str, Any]:
    import scipy.sparse as sp
    from sklearn.preprocessing import normalize

    from model import router as router_module
    from model.config import TrainingConfig
    from model.router import SimilarIndex, build_router
    from model.tickets import read_tickets

    frames = [read_tickets([SHARED / f]) for f in ("unlabelled.csv", "department_train.csv")]
    tickets = [(t, x) for df in frames for t, x in zip(df["title"], df["text"], strict=True)]
    router = build_router(TrainingConfig(tokenizer="rjieba"))
    X = router.fit_features(tickets)
    rng = np.random.default_rng(0)
    order = rng.permutation(X.shape[0])
    query_rows, pool_rows = order[:queries], order[queries:]
    M = sp.csr_matrix(X[rng.choice(pool_rows, size=rows, replace=True)], dtype=np.float32)
    M.data *= rng.uniform(0.5, 1.5, size=M.nnz).astype(np.float32)
    M = sp.csr_matrix(normalize(M), dtype=np.float32)
    index = SimilarIndex(
        matrix=M,
        ids=np.array([str(i) for i in range(rows)], dtype=object),
        titles=np.array([""] * rows, dtype=object),
        departments=np.array([""] * rows, dtype=object),
        categories=np.array([""] * rows, dtype=object),
    )
    Q = sp.csr_matrix(X[query_rows])
    t0 = time.perf_counter()
    index.postings()
    build_s = time.perf_counter() - t0

    def exact_search() -> tuple[list[list[str]], list[float]]:
        # Every stored ticket scored: index × dense query, top k (what the router did before).
        hits, times = [], []
        for j in range(Q.shape[0]):
            s = time.perf_counter()
            q = normalize(Q[j]).toarray().ravel().astype(np.float32)
            sims = M @ q
            top = np.argpartition(-sims, k - 1)[:k]
            top = top[np.argsort(-sims[top], kind="stable")]
            times.append((time.perf_counter() - s) * 1000)
            hits.append([str(i) for i in top if sims[i] > 0])
        return hits, times

    def pruned_search() -> tuple[list[list[str]], list[float]]:
        hits, times = [], []
        for j in range(Q.shape[0]):
            s = time.perf_counter()
            [found] = index.query(Q[j], k)
            times.append((time.perf_counter() - s) * 1000)
            hits.append([h.id for h in found])
        return hits, times

    assert rows > router_module.EXACT_SEARCH_MAX, "the pruned index is only used above this size"
    exact_hits, exact_ms = exact_search()
    pruned_hits, pruned_ms = pruned_search()
    recall = np.mean(
        [
            len(set(a) & set(b)) / max(1, len(a))
            for a, b in zip(exact_hits, pruned_hits, strict=True)
        ]
    )
    return {
        "stored_tickets": rows,
        "features": M.shape[1],
        "mean_nonzeros_per_ticket": round(M.nnz / rows, 1),
        "queries": int(Q.shape[0]),
        "pruned_terms_per_ticket": router_module.PRUNED_TERMS,
        "candidates_rescored": router_module.SIMILAR_CANDIDATES,
        "postings_build_s": round(build_s, 2),
        "exact": _pcts(exact_ms),
        "pruned": _pcts(pruned_ms),
        "pruned_recall_at_5": round(float(recall), 4),
    }


def _pcts(ms: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
    }


# -- tokenizer agreement -------------------------------------------------------------------------
def agreement(limit: int | None = None, cut: str | None = None) -> dict[str, Any]:
    """How often rjieba cuts a ticket exactly as jieba does, with the bundled user dictionary.

    ``cut`` is the word cut compared, by default the one a model is trained with
    (``TrainingConfig.word_cut``), so the agreement is that of the tokens the model reads.
    """
    from model import resources
    from model.config import TrainingConfig
    from model.pipeline import JiebaTokenizer, TextPreparer

    cut = cut or TrainingConfig().word_cut
    from model.tickets import read_tickets

    frames = [read_tickets([SHARED / f]) for f in ("unlabelled.csv", "department_train.csv")]
    tickets = [(t, x) for df in frames for t, x in zip(df["title"], df["text"], strict=True)][
        :limit
    ]
    texts = TextPreparer().transform(tickets)
    toks = {
        b: JiebaTokenizer(
            userdict=resources.default_userdict(),
            stopwords=resources.default_stopwords(),
            backend=b,
            cut=cut,
        ).fit()
        for b in ("jieba", "rjieba")
    }
    tokens: dict[str, list[tuple[str, ...]]] = {}
    seconds: dict[str, float] = {}
    for b, tok in toks.items():
        tok.warm_up()
        t0 = time.perf_counter()
        tokens[b] = [tok.tokenize(t) for t in texts]
        seconds[b] = time.perf_counter() - t0
    same = sum(a == b for a, b in zip(tokens["jieba"], tokens["rjieba"], strict=True))
    # Token-level F1 of rjieba's bag of tokens against jieba's, pooled over documents.
    overlap = total_a = total_b = 0
    for a, b in zip(tokens["jieba"], tokens["rjieba"], strict=True):
        ca, cb = Counter(a), Counter(b)
        overlap += sum((ca & cb).values())
        total_a += len(a)
        total_b += len(b)
    chars = sum(len(t) for t in texts)
    return {
        "documents": len(texts),
        "characters": chars,
        "identical_documents": round(same / len(texts), 4),
        "token_f1": round(2 * overlap / (total_a + total_b), 4),
        "chars_per_second": {b: round(chars / s) for b, s in seconds.items()},
        "speedup": round(seconds["jieba"] / seconds["rjieba"], 1),
        "word_cut": cut,
        "note": "after paidan's preparation, with the bundled user dictionary and stopwords",
    }


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("speed")
    p.add_argument(
        "--peers", nargs="+", default=["paidan-jieba", "paidan-rjieba", "baseline", "fasttext"]
    )
    p.add_argument("--calls", type=int, default=300, help="single-ticket calls per length")
    p.add_argument("--batch", type=int, default=5_000, help="tickets in the throughput run")
    p.add_argument(
        "--repeats", type=int, default=3, help="fresh processes per peer (medians reported)"
    )
    p.add_argument("--out", type=Path, default=RESULTS / "peers.json")
    p = sub.add_parser("fasttext-f1")
    p.add_argument("--seeds", type=int, nargs="+", default=[42])
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--tasks", nargs="+", default=["category", "department"])
    p.add_argument("--out", type=Path, default=RESULTS / "fasttext_accuracy.json")
    p = sub.add_parser("search")
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--out", type=Path, default=RESULTS / "search.json")
    p = sub.add_parser("agreement")
    p.add_argument("--limit", type=int)
    p.add_argument(
        "--word-cut",
        choices=["search", "precise"],
        help="the word cut compared (default: the one paidan trains with)",
    )
    p.add_argument("--out", type=Path, default=RESULTS / "tokenizer_agreement.json")
    p = sub.add_parser("measure", help=argparse.SUPPRESS)
    p.add_argument("peer")
    p.add_argument("path")
    p.add_argument("calls", type=int)
    p.add_argument("batch", type=int)
    args = parser.parse_args()
    if args.command == "speed":
        check_peers(args.peers)
    if not SHARED.is_dir():
        sys.exit(f"skipped: the real tickets are not here ({SHARED} is absent)")
    if args.command == "measure":
        print(json.dumps(measure(args.peer, args.path, args.calls, args.batch)))
        return
    started = datetime.now(UTC).isoformat(timespec="seconds")
    if args.command == "speed":
        result = speed(args.peers, args.calls, args.batch, args.repeats)
    elif args.command == "search":
        result = search(args.rows, args.queries)
    elif args.command == "fasttext-f1":
        result = fasttext_f1(args.seeds, args.folds, args.tasks)
    else:
        result = agreement(args.limit, args.word_cut)
    result = {"date": started, "machine": machine(), **result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
