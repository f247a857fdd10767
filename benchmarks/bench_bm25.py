"""Our BM25 (bm25s over crosearch analyzers) against rank_bm25's BM25Okapi, in the same run.

Both engines get the very same token lists (our analyzers; tokenisation time is
reported once, separately), the same k1/b, one index per language, and the same
queries (real XQuAD questions, each searched in its own language, top 10).

Collections:
- ``xquad``: every paragraph of the 8 vendored XQuAD languages (1,920 passages);
- ``synthetic``: XQuAD paragraphs repeated with shuffled words (``--synthetic-per-lang``
  passages per language), to show how the gap grows with collection size.

rank_bm25 scores every passage of the language in pure Python per query term, so
its throughput is measured on a sample of ``--rank-bm25-queries`` queries.

    python benchmarks/bench_bm25.py
    python benchmarks/bench_bm25.py --synthetic-per-lang 3000 --rank-bm25-queries 80
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np


def load_xquad() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    from crosearch.config import DataConfig
    from crosearch.data.benchmark import build_benchmark

    bench = build_benchmark(DataConfig(setting="full", passages="paragraph"))
    passages: dict[str, list[str]] = {}
    for p in bench.collection:
        passages.setdefault(p.lang, []).append(p.text)
    questions: dict[str, list[str]] = {}
    for q in bench.test:
        questions.setdefault(q.lang, []).append(q.question)
    return passages, questions


def synthetic(passages: dict[str, list[str]], per_lang: int, seed: int = 0) -> dict[str, list[str]]:
    """Passages built by shuffling the tokens of real paragraphs (keeps each language's term statistics)."""
    from crosearch.retrieval.analyzers import get_analyzer

    rng = random.Random(seed)
    out = {}
    for lang, texts in passages.items():
        pool = [get_analyzer(lang)(t) for t in texts]
        docs = []
        for i in range(per_lang):
            tokens = list(pool[i % len(pool)])
            rng.shuffle(tokens)
            docs.append(tokens)
        out[lang] = docs
    return out


def run(name: str, docs: dict[str, list[list[str]]], queries: dict[str, list[list[str]]], rank_sample: int) -> dict:
    from rank_bm25 import BM25Okapi

    from crosearch.retrieval.bm25 import Bm25Index, Bm25Params, build_bm25_from_tokens

    # robertson idf = BM25Okapi's for all but very frequent terms, so the top-1 agreement is meaningful.
    k1, b, k = 1.5, 0.75, 10
    t0 = time.perf_counter()
    ours = {
        lang: Bm25Index(build_bm25_from_tokens(d, Bm25Params(k1=k1, b=b, method="robertson")), analyzer=str.split)
        for lang, d in docs.items()
    }
    ours_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs = {lang: BM25Okapi(d, k1=k1, b=b) for lang, d in docs.items()}
    theirs_build = time.perf_counter() - t0

    total = sum(len(q) for q in queries.values())
    t0 = time.perf_counter()
    for lang, qs in queries.items():
        ours[lang].search_tokens(qs, k)  # one batched call per language
    ours_qps = total / (time.perf_counter() - t0)

    rng = random.Random(0)
    sample = [(lang, q) for lang, qs in queries.items() for q in qs]
    sample = rng.sample(sample, min(rank_sample, len(sample)))
    t0 = time.perf_counter()
    agree = 0
    for lang, q in sample:
        scores = theirs[lang].get_scores(q)
        top = np.argsort(-scores)[:k]
        mine = ours[lang].search_tokens([q], 1)[0]
        # Our top-1 is rank_bm25's best too (ties, frequent in the synthetic copies, included).
        agree += int(bool(mine) and scores[mine[0][0]] >= scores[top[0]] - 1e-9)
    theirs_elapsed = time.perf_counter() - t0
    # Subtract our own top-1 calls made for the agreement check (they are cheap but not free).
    t1 = time.perf_counter()
    for lang, q in sample:
        ours[lang].search_tokens([q], 1)
    theirs_qps = len(sample) / max(theirs_elapsed - (time.perf_counter() - t1), 1e-9)

    n_docs = sum(len(d) for d in docs.values())
    return {
        "collection": name,
        "passages": n_docs,
        "queries": total,
        "rank_bm25_queries": len(sample),
        "build_s": {
            "ours": ours_build,
            "rank_bm25": theirs_build,
            "ratio_rank_bm25_over_ours": theirs_build / ours_build,
        },
        "qps": {"ours": ours_qps, "rank_bm25": theirs_qps, "ratio_ours_over_rank_bm25": ours_qps / theirs_qps},
        "top1_agreement": agree / len(sample),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic-per-lang", type=int, default=3000)
    parser.add_argument("--rank-bm25-queries", type=int, default=200)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()

    from crosearch.retrieval.analyzers import get_analyzer

    texts, questions = load_xquad()
    t0 = time.perf_counter()
    docs = {lang: [get_analyzer(lang)(t) for t in ts] for lang, ts in texts.items()}
    tokenize_s = time.perf_counter() - t0
    queries = {lang: [get_analyzer(lang)(q) for q in qs] for lang, qs in questions.items()}
    results = [run("xquad", docs, queries, args.rank_bm25_queries)]
    if args.synthetic_per_lang:
        results.append(
            run(
                f"synthetic-{args.synthetic_per_lang}/lang",
                synthetic(texts, args.synthetic_per_lang),
                queries,
                max(20, args.rank_bm25_queries // 4),
            )
        )
    print(f"tokenising the XQuAD collection with our analyzers: {tokenize_s:.2f} s (shared by both engines)")
    print(
        f"{'collection':<24} {'passages':>8} {'build ours':>10} {'build r_bm25':>12} {'qps ours':>9} "
        f"{'qps r_bm25':>10} {'qps ratio':>9} {'top1 agree':>10}"
    )
    for r in results:
        print(
            f"{r['collection']:<24} {r['passages']:>8} {r['build_s']['ours']:>9.2f}s "
            f"{r['build_s']['rank_bm25']:>11.2f}s "
            f"{r['qps']['ours']:>9.0f} {r['qps']['rank_bm25']:>10.1f} {r['qps']['ratio_ours_over_rank_bm25']:>8.0f}x "
            f"{r['top1_agreement']:>10.2f}"
        )
    if args.out:
        from crosearch.io import atomic_write_json

        atomic_write_json(args.out, {"tokenize_s": tokenize_s, "results": results})


if __name__ == "__main__":
    main()
