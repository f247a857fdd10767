"""Resident memory of bf16 training steps with variable sequence lengths, by oneDNN cache size.

    python benchmarks/bench_onednn_cache.py --out benchmarks/results/onednn_cache.json

On CPUs with AVX512-BF16/AMX, bf16 autocast sends matmuls to oneDNN, which compiles and caches
one primitive per distinct input shape: oneDNN's own primitive cache
(``ONEDNN_PRIMITIVE_CACHE_CAPACITY``) and the cache of PyTorch's ideep layer above it
(``LRU_CACHE_CAPACITY``), 1024 entries each by default. GRPO rollouts have a different length
every step, so both caches, and resident memory with them, grow step after step; gc and
malloc_trim cannot return it. Each case runs in its own process with the same layers (the
bundled Gemma 3 270M's widths) and the same sequence lengths: forward, backward and an
optimizer step under bf16 autocast, one distinct length per step. The baseline in the same run
is the default capacity; the ratios compare growth and time with a bounded cache. fp32 without
autocast (matmuls outside oneDNN) is shown for reference.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from crosearch.models import has_fast_bf16
from crosearch.rl.common import ONEDNN_CACHES

WORKER = r"""
import json, random, sys, time
import torch
from crosearch.rl.train import _current_rss_gb, _release_freed_memory  # what training does after each step

steps, hidden, inner, autocast = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "bf16"
torch.manual_seed(0)
layers = torch.nn.Sequential(*[torch.nn.Sequential(torch.nn.Linear(hidden, inner), torch.nn.GELU(),
                                                  torch.nn.Linear(inner, hidden)) for _ in range(4)])
opt = torch.optim.AdamW(layers.parameters(), lr=1e-4)
def step(length):
    x = torch.randn(4, length, hidden)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = layers(x).float().pow(2).mean()
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)

# Distinct lengths in random order, so later steps are not larger than earlier ones; the
# longest runs first, so the allocator has seen the largest footprint before measuring.
lengths = random.Random(0).sample(range(100, 100 + 3 * steps), steps)
step(100 + 3 * steps)
_release_freed_memory()
start_rss, start = _current_rss_gb(), time.perf_counter()
trace = []
for length in lengths:
    step(length)  # a new length each step, as rollouts have
    _release_freed_memory()
    trace.append(round(_current_rss_gb(), 4))
print(json.dumps({"start_rss_gb": start_rss, "end_rss_gb": trace[-1], "seconds": time.perf_counter() - start,
                  "rss_gb": trace}))
"""


def run_case(
    capacity: str | None,
    steps: int,
    hidden: int,
    inner: int,
    precision: str = "bf16",
    caches: tuple[str, ...] = ONEDNN_CACHES,
) -> dict:
    """One case in a fresh process: the named caches capped at ``capacity``, the others at their default."""
    env = {k: v for k, v in os.environ.items() if k not in ONEDNN_CACHES}
    if capacity is not None:
        env.update({name: capacity for name in caches})
    out = subprocess.run(
        [sys.executable, "-c", WORKER, str(steps), str(hidden), str(inner), precision],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["growth_gb"] = result["end_rss_gb"] - result["start_rss_gb"]
    half = result["rss_gb"][len(result["rss_gb"]) // 2 - 1]
    result["second_half_growth_gb"] = result["end_rss_gb"] - half  # ~0 once a bounded cache is full
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120, help="training steps, each with a new sequence length")
    parser.add_argument("--hidden", type=int, default=640)
    parser.add_argument("--inner", type=int, default=2048)
    parser.add_argument("--capacity", default="64", help="the bounded size of both caches, compared with the default")
    parser.add_argument("--caches", default=",".join(ONEDNN_CACHES), help="comma-separated variables to cap")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    caches = tuple(args.caches.split(","))

    cases = {"default (1024)": None, f"capacity {args.capacity}": args.capacity}
    results = {name: run_case(cap, args.steps, args.hidden, args.inner, caches=caches) for name, cap in cases.items()}
    results["fp32, no autocast"] = run_case(None, args.steps, args.hidden, args.inner, precision="fp32")
    base, bounded = results["default (1024)"], results[f"capacity {args.capacity}"]
    report = {
        "cpu_runs_bf16_fast": has_fast_bf16("cpu"),
        "steps": args.steps,
        "cases": {name: {k: v for k, v in r.items() if k != "rss_gb"} for name, r in results.items()},
        "growth_ratio_bounded_vs_default": bounded["growth_gb"] / base["growth_gb"] if base["growth_gb"] > 0 else None,
        "time_ratio_bounded_vs_default": bounded["seconds"] / base["seconds"],
    }
    for name, r in results.items():
        print(
            f"{name:>16}: resident {r['start_rss_gb']:.3f} -> {r['end_rss_gb']:.3f} GB "
            f"(+{r['growth_gb'] * 1024:.0f} MB over {args.steps} steps, "
            f"+{r['second_half_growth_gb'] * 1024:.0f} MB over the second half), {r['seconds']:.1f} s"
        )
    print(f"growth ratio (bounded / default): {report['growth_ratio_bounded_vs_default']}")
    print(f"time ratio (bounded / default): {report['time_ratio_bounded_vs_default']:.2f}")
    if not report["cpu_runs_bf16_fast"]:
        print("note: this CPU has no AVX512-BF16/AMX; bf16 matmuls may not go through oneDNN here")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
