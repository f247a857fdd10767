"""How BM25 indexing and search scale with collection size (10k -> 100k -> 1M passages).

Synthetic multilingual collections: for each of en, de, es, ru, zh, ar, words are
sampled by frequency from wordfreq's list of the language's 20,000 most frequent
words (Zipf-like term statistics, real scripts; zh words are joined without
spaces, as Chinese is written). Passages hold ``--words`` words each; the
languages share the collection equally.

Each size runs in its own process (so peak RSS is that size's alone) through the
real pipeline: ``build_index`` (passage store + per-language bm25s index), then
``LocalRetriever`` over the saved, memory-mapped index. Reported: build time,
index size on disk, peak RSS (includes the collection held in memory, as the CLI
holds it), query latency p50/p95 (one query per call, own language, top 10, 300
queries of 4 words drawn from the same distribution) and batched throughput. The
baseline is the smallest size of the same run: ratios are size-N / smallest.

    python benchmarks/bench_scaling.py --sizes 10000,100000,1000000 --out scaling.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LANGS = ("en", "de", "es", "ru", "zh", "ar")


def _vocabulary(lang: str, size: int = 20000) -> tuple[list[str], np.ndarray]:
    from wordfreq import top_n_list, word_frequency

    words = top_n_list(lang, size)
    freqs = np.array([word_frequency(w, lang) for w in words], dtype=np.float64)
    return words, freqs / freqs.sum()


def generate(n: int, words_per_passage: int, seed: int = 0):
    """``n`` synthetic passages spread over LANGS, plus a sampler of queries per language."""
    from crosearch.types import Passage

    rng = np.random.default_rng(seed)
    passages = []
    samplers = {}
    per_lang = [n // len(LANGS) + (1 if i < n % len(LANGS) else 0) for i in range(len(LANGS))]
    for lang, count in zip(LANGS, per_lang):
        words, probs = _vocabulary(lang)
        samplers[lang] = (words, probs)
        sep = "" if lang == "zh" else " "
        draws = rng.choice(len(words), size=(count, words_per_passage), p=probs)
        for i, row in enumerate(draws):
            passages.append(Passage(id=f"{lang}-{i}", lang=lang, title="", text=sep.join(words[j] for j in row)))
    return passages, samplers


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_one(n: int, words_per_passage: int, queries: int, workdir: Path) -> dict:
    """Build and query one size in this process."""
    from crosearch.retrieval.local import LocalRetriever, build_index
    from crosearch.types import SearchQuery

    t0 = time.perf_counter()
    passages, samplers = generate(n, words_per_passage)
    generate_s = time.perf_counter() - t0
    rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = workdir / f"index-{n}"
    t0 = time.perf_counter()
    build_index(passages, out, progress=sys.stderr.isatty())
    build_s = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del passages

    t0 = time.perf_counter()
    retriever = LocalRetriever(out)
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(1)
    qs = []
    for i in range(queries):
        lang = LANGS[i % len(LANGS)]
        words, probs = samplers[lang]
        sep = "" if lang == "zh" else " "
        qs.append(SearchQuery(sep.join(words[j] for j in rng.choice(len(words), size=4, p=probs)), lang, [lang]))
    retriever.search(qs[:10], 10)  # warm the memory-mapped pages and code paths
    latencies = []
    for q in qs:
        t0 = time.perf_counter()
        retriever.search([q], 10)
        latencies.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    retriever.search(qs, 10)
    batch_qps = len(qs) / (time.perf_counter() - t0)
    result = {
        "passages": n,
        "words_per_passage": words_per_passage,
        "generate_s": generate_s,
        "build_s": build_s,
        "build_passages_per_s": n / build_s,
        "index_bytes": _dir_size(out),
        "load_s": load_s,
        "peak_rss_mb": peak_kb / 1024,
        "rss_before_build_mb": rss_before_kb / 1024,
        "latency_p50_ms": 1000 * statistics.median(latencies),
        "latency_p95_ms": 1000 * float(np.percentile(latencies, 95)),
        "batch_qps": batch_qps,
    }
    shutil.rmtree(out, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--words", type=int, default=24, help="words per passage")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--workdir", default=None, help="where indexes are built (default: a temp dir)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # child process mode
    args = parser.parse_args()

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="crosearch-scaling-"))
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.words, args.queries, workdir)))
        return

    results = []
    for n in [int(s) for s in args.sizes.split(",")]:
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                str(n),
                "--words",
                str(args.words),
                "--queries",
                str(args.queries),
                "--workdir",
                str(workdir),
            ],
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        )
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = results[-1]
        base = results[0]
        print(
            f"{n:>9} passages: build {r['build_s']:7.1f} s ({r['build_passages_per_s']:,.0f}/s), "
            f"index {r['index_bytes'] / 2**20:7.1f} MB, peak RSS {r['peak_rss_mb']:7.0f} MB, "
            f"p50 {r['latency_p50_ms']:6.2f} ms (x{r['latency_p50_ms'] / base['latency_p50_ms']:.1f} "
            f"for x{n / base['passages']:.0f} passages), p95 {r['latency_p95_ms']:6.2f} ms, "
            f"batch {r['batch_qps']:,.0f} q/s",
            flush=True,
        )
        if args.out:
            from crosearch.io import atomic_write_json

            atomic_write_json(args.out, {"results": results, "cpus": os.cpu_count()})
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
