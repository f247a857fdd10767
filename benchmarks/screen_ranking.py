"""Screening of query-side ideas for the no-native all-language ranking, in numpy over cached embeddings.

Ideas that need new index contents (statistics of the train questions) are screened here
before any is built into the index; what carries is then implemented and measured through
:class:`LocalRetriever` with ``bench_unified.py``. Every variant ranks the sentence windows of
all eight languages by one cosine, the question's own-language gold excluded, over all test
questions, and counts the gold paragraph in any language (``evaluation.py``'s recall), with
windows of one paragraph collapsed to the best one (``retrieval.collapse: paragraph``).
Fitted statistics use the train split only (its questions and its paragraphs).

- ``centred``: passages and queries minus their language's mean passage (the index's ``center``);
- ``query means``: queries minus their language's mean *train question* instead;
- ``query maps``: centred queries through a per-language linear map fitted on the train
  questions, towards their gold paragraph's centred mean vector in the other languages
  (ridge towards the identity);
- ``prf m``: the centred query plus the mean of its top ``m`` passages, re-normalised;
- ``agreement w``: each window's cosine plus ``w`` x the mean, over the languages, of the
  best cosine of its paragraph's (not excluded) windows there (``retrieval.dense_agreement``).

``--split train`` screens on the train questions (where the agreement weight was chosen).

    python benchmarks/screen_ranking.py --cache runs/emb-cache
    python benchmarks/screen_ranking.py --cache runs/emb-cache --split train \
        --out benchmarks/results/screen_ranking_train.json
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default="runs/emb-cache")
    ap.add_argument("--queries", default="runs/question-embeddings.npz", help="cache of question embeddings")
    ap.add_argument("--out", default="benchmarks/results/screen_ranking.json")
    ap.add_argument("--split", default="test", choices=["test", "train"], help="questions to rank")
    return ap.parse_args()


def main() -> None:
    from crosearch.config import DataConfig
    from crosearch.data.benchmark import build_benchmark
    from crosearch.io import atomic_write_json
    from crosearch.retrieval.alignment import normalise
    from crosearch.retrieval.encoders import BundledEncoder, EmbeddingCache

    args = parse_args()
    bench = build_benchmark(DataConfig(setting="no-native", passages="sentences"))
    encoder = BundledEncoder()
    cache = EmbeddingCache(args.cache, encoder.identity)
    found = cache.get([cache.key(p.text) for p in bench.collection])
    collection = bench.collection
    if any(cache.key(p.text) not in found for p in collection):
        raise SystemExit(f"{args.cache}: not every passage is cached (run bench_unified.py encode)")
    passages = np.stack([found[cache.key(p.text)] for p in collection])
    plang = np.array([p.lang for p in collection])
    ppar = np.array([p.paragraph for p in collection])
    row = {p.id: i for i, p in enumerate(collection)}
    langs = sorted(set(plang.tolist()))
    train = [q for q in bench.train if q.paragraph]
    test = bench.test if args.split == "test" else train

    stored: dict[str, np.ndarray] = {}
    if os.path.exists(args.queries):
        with np.load(args.queries) as data:
            stored = dict(zip(data["texts"].tolist(), data["vectors"]))
    todo = sorted({q.question for q in test + train} - set(stored))
    if todo:
        stored.update(zip(todo, encoder.encode_queries(todo)))
        np.savez(args.queries, texts=np.array(list(stored)), vectors=np.stack(list(stored.values())))
    queries = np.stack([stored[q.question] for q in test])
    qlang = np.array([q.lang for q in test])
    gold = np.array([q.paragraph for q in test])
    excluded = [[row[x] for x in q.exclude if x in row] for q in test]

    pmean = {lang: passages[plang == lang].mean(0) for lang in langs}
    train_q = np.stack([stored[q.question] for q in train])
    tlang = np.array([q.lang for q in train])
    qmean = {lang: train_q[tlang == lang].mean(0) for lang in langs}

    def centre(x, labels, means):
        return normalise(x - np.stack([means[lang] for lang in labels]))

    cp = centre(passages, plang, pmean)
    cq = centre(queries, qlang, pmean)

    def scores(q: np.ndarray) -> np.ndarray:
        s = q @ cp.T
        for i, rows in enumerate(excluded):
            s[i, rows] = -np.inf
        return s

    results: dict[str, dict] = {}

    def evaluate(name: str, q: np.ndarray, given: np.ndarray | None = None) -> None:
        order = np.argsort(-(scores(q) if given is None else given), axis=1)[:, :300]
        ranks: list[int | None] = []
        for i in range(len(test)):
            seen: list[str] = []
            rank = None
            for j in order[i]:
                if ppar[j] in seen:
                    continue
                seen.append(ppar[j])
                if ppar[j] == gold[i]:
                    rank = len(seen)
                    break
                if len(seen) == 10:
                    break
            ranks.append(rank)
        by = {}
        for lang in langs:
            rs = [r for r, ql in zip(ranks, qlang) if ql == lang]
            by[lang] = {f"r{k}": float(np.mean([r is not None and r <= k for r in rs])) for k in (1, 5, 10)}
        avg = {m: float(np.mean([by[lang][m] for lang in langs])) for m in ("r1", "r5", "r10")}
        low = min(langs, key=lambda lang: by[lang]["r5"])
        results[name] = {"avg": avg, "by_lang": by, "lowest_r5": [low, by[low]["r5"]]}
        print(
            f"| {name} | {avg['r1']:.3f} | {avg['r5']:.3f} | {avg['r10']:.3f} | {by[low]['r5']:.3f} ({low}) |",
            flush=True,
        )

    print("| variant (collapse: paragraph) | R@1 | R@5 | R@10 | lowest R@5 |\n|---|---|---|---|---|")
    evaluate("centred", cq)
    evaluate("query means (train questions)", centre(queries, qlang, qmean))

    # per-language query maps towards the gold paragraph's centred vectors in the other languages
    vec = {}
    for lang in langs:
        for paragraph in set(ppar[plang == lang].tolist()):
            vec[(paragraph, lang)] = cp[(plang == lang) & (ppar == paragraph)].mean(0)
    targets = np.stack(
        [normalise(np.mean([vec[(q.paragraph, o)] for o in langs if o != q.lang], axis=0)) for q in train]
    )
    ctrain = centre(train_q, tlang, pmean)
    for ridge in (1.0, 10.0, 30.0):
        maps = {}
        for lang in langs:
            x, y = ctrain[tlang == lang].astype(np.float64), targets[tlang == lang].astype(np.float64)
            eye = np.eye(x.shape[1])
            maps[lang] = np.linalg.solve(x.T @ x + ridge * eye, x.T @ y + ridge * eye)
        evaluate(f"query maps (ridge {ridge:g})", normalise(np.stack([cq[i] @ maps[qlang[i]] for i in range(len(cq))])))

    for m, beta in ((3, 1.0), (5, 0.5), (5, 1.0), (10, 1.0)):
        top = np.argsort(-scores(cq), axis=1)[:, :m]
        evaluate(f"prf {m} (weight {beta:g})", normalise(cq + beta * cp[top].mean(1)))
        if (m, beta) == (5, 1.0):
            cqm = centre(queries, qlang, qmean)
            top = np.argsort(-scores(cqm), axis=1)[:, :m]
            evaluate("query means + prf 5", normalise(cqm + beta * cp[top].mean(1)))

    paragraphs = sorted(set(ppar.tolist()))
    column = np.searchsorted(paragraphs, ppar)

    def agreement(q: np.ndarray, weight: float) -> np.ndarray:
        s = scores(q)
        best = np.full((len(q), len(paragraphs), len(langs)), np.nan, dtype=np.float32)
        for li, lang in enumerate(langs):
            rows = np.flatnonzero(plang == lang)
            rows = rows[np.argsort(column[rows], kind="stable")]
            starts = np.r_[0, np.flatnonzero(np.diff(column[rows])) + 1]
            block = np.maximum.reduceat(s[:, rows], starts, axis=1)
            best[:, column[rows][starts], li] = np.where(np.isfinite(block), block, np.nan)
        with np.errstate(all="ignore"):
            mean = np.nanmean(best, axis=2)
        return s + weight * np.nan_to_num(mean, nan=0.0)[:, column]

    for weight in (1.0, 2.0, 4.0, 8.0, 16.0):
        evaluate(f"agreement {weight:g}", cq, agreement(cq, weight))

    results["load"] = [round(x, 2) for x in os.getloadavg()]
    atomic_write_json(Path(args.out), results)


if __name__ == "__main__":
    main()
