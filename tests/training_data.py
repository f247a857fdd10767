"""The data the training tests share: an en+de XQuAD benchmark and its BM25 index under one directory."""

from __future__ import annotations

from pathlib import Path


def write_en_de_benchmark_and_index(root: Path) -> Path:
    """Write ``root/benchmark`` (en+de XQuAD, sentence windows) and ``root/index`` (BM25); returns ``root``."""
    from crosearch.config import DataConfig
    from crosearch.data.benchmark import build_benchmark, write_benchmark
    from crosearch.retrieval.local import IndexSettings, build_index

    bench = build_benchmark(DataConfig(languages=["en", "de"], passages="sentences"))
    write_benchmark(bench, root / "benchmark")
    build_index(bench.collection, root / "index", IndexSettings(), progress=False)
    return root
