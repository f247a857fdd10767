"""What the training tests share: an en+de XQuAD benchmark and its BM25 index, and waiting on a subprocess."""

from __future__ import annotations

import subprocess
import time
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


def wait_for(path: Path, proc: subprocess.Popen, timeout: float) -> None:
    """Return once ``path`` exists; fail if ``proc`` exits first (with its stderr) or ``timeout`` passes."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the subprocess exited early ({proc.returncode}): {proc.stderr.read()[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(f"{path} did not appear in {timeout}s")
