"""Is a GRPO run's step time flat? The first steps against the last, at equal token counts.

    crosearch train --config configs/grpo-cpu.yaml --set train.output_dir=runs/grpo-flat
    python benchmarks/step_flatness.py runs/grpo-flat --out benchmarks/results/step_flatness.json

Reads the run's log history (TRL's, one entry per optimizer step; from ``summary.json`` or, while
the run goes on, its newest checkpoint, as ``crosearch curve`` does) and compares the first
``--window`` steps with the last: seconds per 1,000 tokens of the update and of the whole step (a
step's tokens vary with the rollouts' lengths, so raw seconds would mix growth with longer
rollouts), resident and peak memory. The ratio last / first is the
number the speed issue's target reads (within 10%: 0.9-1.1). The first step is left out of the
first window: it includes one-time loading (lingua, kernel warm-up).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from crosearch.errors import CrosearchError
from crosearch.io import atomic_write_json
from crosearch.rl.curve import read_log_history


def per_step(history: list[dict]) -> list[dict]:
    """One row per optimizer step: seconds, tokens of that step, memory."""
    rows, previous = [], 0.0
    for entry in history:
        if "time/step" not in entry:
            continue
        seen = float(entry.get("num_tokens", 0.0))
        tokens = seen - previous
        previous = seen
        rows.append(
            {
                "step": entry.get("step", len(rows) + 1),
                "tokens": tokens,
                "step_seconds": entry["time/step"],
                "update_seconds": entry["time/update"],
                "generation_seconds": entry["time/generation"],
                "update_per_1k_tokens": 1000 * entry["time/update"] / max(tokens, 1.0),
                "step_per_1k_tokens": 1000 * entry["time/step"] / max(tokens, 1.0),
                "rss_gb": entry.get("memory/rss_gb", float("nan")),
                "peak_rss_gb": entry.get("memory/peak_rss_gb", float("nan")),
            }
        )
    return rows


def compare(rows: list[dict], window: int) -> dict:
    """Means of the first window (after step 1) and the last window, and last / first."""
    if len(rows) < 2 * window + 1:
        raise SystemExit(f"need at least {2 * window + 1} steps for a window of {window}, the summary has {len(rows)}")
    first, last = rows[1 : window + 1], rows[-window:]
    keys = ("tokens", "step_seconds", "update_seconds", "update_per_1k_tokens", "step_per_1k_tokens", "rss_gb")
    parts = {"first": first, "last": last}
    means = {name: {k: statistics.mean(r[k] for r in part) for k in keys} for name, part in parts.items()}
    ratios = {k: means["last"][k] / means["first"][k] for k in keys}
    return {
        "steps": len(rows),
        "window": window,
        "first_steps": [first[0]["step"], first[-1]["step"]],
        "last_steps": [last[0]["step"], last[-1]["step"]],
        "means": means,
        "last_over_first": ratios,
        "peak_rss_gb": {"first": max(r["peak_rss_gb"] for r in first), "last": max(r["peak_rss_gb"] for r in last)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a `crosearch train` output directory (or its summary.json)")
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    try:
        history, source = read_log_history(args.run.parent if args.run.is_file() else args.run)
    except CrosearchError as exc:
        sys.exit(str(exc))
    rows = per_step(history)
    result = {"summary": str(source), **compare(rows, args.window), "per_step": rows}
    r = result["last_over_first"]
    print(
        f"{result['steps']} steps; last {args.window} / first {args.window} (steps {result['first_steps']} vs "
        f"{result['last_steps']}): update per 1k tokens {r['update_per_1k_tokens']:.2f}, step per 1k tokens "
        f"{r['step_per_1k_tokens']:.2f}, tokens {r['tokens']:.2f}, resident memory {r['rss_gb']:.2f}; peak RSS "
        f"{result['peak_rss_gb']['first']:.2f} -> {result['peak_rss_gb']['last']:.2f} GB"
    )
    if args.out:
        atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
