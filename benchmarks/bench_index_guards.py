"""What the index guards cost: file hashes at build time, size checks at every open.

Baseline in the same run: the build itself (hashing is part of it; its share is measured by
hashing the finished index again) and opening the index (the size check is timed alone and
compared with the whole open). Prints the load average with the numbers.

    python benchmarks/bench_index_guards.py [--passages N] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from crosearch.io import check_files, describe_files
from crosearch.retrieval.local import MANIFEST, LocalRetriever, build_index, read_manifest
from crosearch.types import Passage


def synthetic(n: int, seed: int = 0) -> list[Passage]:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(50_000)]
    langs = ("ar", "de", "en", "zh")
    return [Passage(f"{langs[i % 4]}-{i}", langs[i % 4], "", " ".join(rng.choices(words, k=60))) for i in range(n)]


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    passages = synthetic(args.passages)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "idx"
        start = time.perf_counter()
        build_index(passages, out, progress=False)
        build_s = time.perf_counter() - start
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        hash_s = timed(lambda: describe_files(out, skip=(MANIFEST,)), args.repeat)
        files = read_manifest(out)["files"]
        sizes_s = timed(lambda: check_files(out, files), args.repeat)
        open_s = timed(lambda: LocalRetriever(out).close(), args.repeat)
    print(f"load average {os.getloadavg()[0]:.1f} {os.getloadavg()[1]:.1f} {os.getloadavg()[2]:.1f}")
    print(f"{args.passages} passages, index {size / 1e6:.1f} MB in {len(files)} files")
    print(f"build {build_s:.2f} s; hashing every file {hash_s:.3f} s = {hash_s / build_s:.1%} of the build")
    print(f"open {open_s * 1e3:.1f} ms; size check {sizes_s * 1e3:.2f} ms = {sizes_s / open_s:.1%} of the open")


if __name__ == "__main__":
    main()
