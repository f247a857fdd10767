"""Time one GRPO step by phase, peak memory, and training FLOP/s against this machine's matmul peak.

    python benchmarks/bench_grpo_step.py --config configs/grpo-cpu.yaml --steps 2 --out /tmp/grpo_bench.json

Two paths in one run, each in its own process (so that each has its own peak RSS), one after the
other with the same config, seed, warm-start adapter and questions: ``today`` (TRL's per-token
log-probs, the LM head at every position; with ``--baseline pre-issue``, the default, also without
the rollout engine's KV cache, i.e. the main before the speed work) and ``model-tokens`` (the head
only where the completion mask and the env mask are both 1); the ratios today / model-tokens are printed at the end.
``--path`` runs one of them alone.

Phases (seconds per optimizer step, from the trainer's own metrics): generation
(model sampling inside the rollout engine), retrieval (searches), log-probs
(TRL's scoring of the batch: old/reference log-probs, rewards, advantages) and
update (forward/backward passes and the optimizer step). The baseline measured
in the same run is a torch matmul loop in fp32 and bf16 (the machine's peak);
FLOP/s are reported as a fraction of it. FLOPs are estimated from token counts:
a forward pass costs 2 x (non-embedding parameters) per token plus
2 x hidden x vocabulary per position whose logits are computed (today, off
Triton devices: every position; model-tokens: the model tokens); backward about
twice the forward.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def matmul_peak(dtype_name: str, size: int = 1024, seconds: float = 3.0) -> float:
    """FLOP/s of a square matmul loop (the baseline peak of this machine for that dtype)."""
    import torch

    dtype = getattr(torch, dtype_name)
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    for _ in range(3):
        a @ b
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        n += 1
    return 2 * size**3 * n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/quickstart-cpu.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps (the first is reported separately)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--path", choices=PATHS, default=None, help="run one path only (default: both, compared)")
    parser.add_argument(
        "--baseline",
        choices=("pre-issue", "trl-head"),
        default="pre-issue",
        help="what `today` is in a comparison: the main before the speed work (TRL's head at every "
        "position and every turn re-reading its context, agent.kv_cache=false), or TRL's head with "
        "the KV cache kept (the update's change alone)",
    )
    args = parser.parse_args()
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    if args.path is None:
        compare(args)
        return

    from crosearch.config import load_config
    from crosearch.rl.train import run_train

    peaks = {"float32": matmul_peak("float32"), "bfloat16": matmul_peak("bfloat16")}
    with tempfile.TemporaryDirectory(prefix="grpo-bench-") as tmp:
        config = load_config(
            args.config,
            [
                *args.overrides,
                f"train.max_steps={args.steps}",
                f"train.output_dir={tmp}/run",
                f"train.save_steps={args.steps + 1}",
            ],
        )
        started = time.perf_counter()
        summary = run_train(config, keep_batches=True, score_model_tokens=args.path == "model-tokens")
        wall = time.perf_counter() - started
    trainer = summary.pop("trainer")
    steps = [e for e in summary["log_history"] if "time/step" in e]
    model = trainer.accelerator.unwrap_model(trainer.model)
    emb = model.get_input_embeddings().weight
    vocab, hidden = emb.shape
    total_params = sum(p.numel() for p in model.parameters())
    body_params = total_params - vocab * hidden  # the LM head is tied to the embedding

    rows = []
    previous_tokens = 0
    for entry, batch in zip(steps, _per_step(summary["kept_batches"], len(steps))):
        seen = entry.get("num_tokens", 0)
        all_tokens = seen - previous_tokens  # prompt + completion tokens of the step
        previous_tokens = seen
        completion_tokens = sum(int(b["completion_mask"].sum()) for b in batch)
        model_tokens = sum(int((b["completion_mask"] * b.get("tool_mask", b["completion_mask"])).sum()) for b in batch)
        # Positions the LM head projects: today (no Triton) every position but the last; else the model tokens.
        head_positions = model_tokens if args.path == "model-tokens" else all_tokens
        forward = 2 * body_params * all_tokens + 2 * hidden * vocab * head_positions
        update_flops = 3 * forward  # forward + backward (about twice the forward)
        # Sampling: every model token costs a forward of the body and the head; each turn also re-reads its context.
        generation_flops = 2 * (body_params + hidden * vocab) * model_tokens + 2 * body_params * all_tokens
        compute = entry["time/generation"] + entry["time/logprobs"] + entry["time/update"]
        rows.append(
            {
                "step": entry["step"],
                "seconds": entry["time/step"],
                "generation": entry["time/generation"],
                "retrieval": entry["time/retrieval"],
                "logprobs": entry["time/logprobs"],
                "update": entry["time/update"],
                # This process's CPU seconds: less sensitive than wall time to other jobs on a shared machine.
                "step_cpu": entry.get("time/step_cpu", float("nan")),
                "update_cpu": entry.get("time/update_cpu", float("nan")),
                "tokens": all_tokens,
                "completion_tokens": completion_tokens,
                "model_tokens": model_tokens,
                "peak_rss_gb": entry["memory/peak_rss_gb"],
                "update_flops_per_s": update_flops / max(entry["time/update"], 1e-9),
                "generation_flops_per_s": generation_flops / max(entry["time/generation"], 1e-9),
                "step_flops_per_s": (update_flops + generation_flops) / max(compute, 1e-9),
            }
        )
    bf16 = bool(trainer.args.bf16)
    peak = peaks["bfloat16" if bf16 else "float32"]
    later = rows[1:] or rows
    result = {
        "path": args.path,
        "load_average": os.getloadavg(),
        "config": args.config,
        "overrides": args.overrides,
        "steps": args.steps,
        "wall_seconds": wall,
        "matmul_peak_gflops": {k: v / 1e9 for k, v in peaks.items()},
        "bf16_training": bf16,
        "params": total_params,
        "vocab": vocab,
        "per_step": rows,
        "mean_after_first": {
            k: statistics.mean(r[k] for r in later)
            for k in ("seconds", "generation", "retrieval", "logprobs", "update", "step_cpu", "update_cpu")
        },
        "peak_rss_gb": max(r["peak_rss_gb"] for r in rows),
        "update_fraction_of_peak": statistics.mean(r["update_flops_per_s"] for r in later) / peak,
        "step_fraction_of_peak": statistics.mean(r["step_flops_per_s"] for r in later) / peak,
    }
    _write(result, args.out)


PATHS = ("today", "model-tokens")
COMPARED = ("seconds", "generation", "logprobs", "update", "step_cpu", "update_cpu")


def compare(args: argparse.Namespace) -> None:
    """Both paths, each in a fresh process, and the ratios today / model-tokens."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="grpo-compare-") as tmp:
        for path in PATHS:
            out = Path(tmp) / f"{path}.json"
            command = [sys.executable, __file__, "--config", args.config, "--steps", str(args.steps)]
            command += [f"--set={o}" for o in args.overrides] + ["--path", path, "--out", str(out)]
            if path == "today" and args.baseline == "pre-issue":
                command.append("--set=agent.kv_cache=false")
            print(f"[{path}] load average {os.getloadavg()}: {' '.join(command)}", file=sys.stderr, flush=True)
            subprocess.run(command, check=True)
            results[path] = json.loads(out.read_text())
    today, new = (results[p] for p in PATHS)
    ratios = {k: today["mean_after_first"][k] / max(new["mean_after_first"][k], 1e-9) for k in COMPARED}
    ratios["first_step_seconds"] = today["per_step"][0]["seconds"] / new["per_step"][0]["seconds"]
    ratios["peak_rss_gb"] = new["peak_rss_gb"] / today["peak_rss_gb"]  # below 1: the new path uses less
    _write(
        {
            "baseline": args.baseline,
            "paths": results,
            "speedup_today_over_model_tokens": ratios,
            "load_average": os.getloadavg(),
        },
        args.out,
    )


def _write(result: dict, out: str | None) -> None:
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        tmp = Path(out).with_suffix(".tmp")
        tmp.write_text(text + "\n")
        tmp.replace(out)


def _per_step(batches: list, n_steps: int) -> list[list]:
    """Split the kept generation batches evenly over the optimizer steps."""
    if n_steps == 0:
        return []
    per = max(1, len(batches) // n_steps)
    return [batches[i * per : (i + 1) * per] for i in range(n_steps)]


if __name__ == "__main__":
    main()
