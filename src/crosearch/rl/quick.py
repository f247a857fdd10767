"""The brief training part of ``crosearch quickstart``: a short warm start, GRPO steps, and the before/after table.

It only shrinks the recipes (``configs/sft-cpu.yaml``, ``configs/quickstart-cpu.yaml``)
so the whole main job stays within about 15 minutes on 2 CPU cores; it shows the
mechanics end to end, not a trained model (see docs/training.md for real runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crosearch.config import Config

# A few steps of each stage: enough to exercise every part, small enough for a CPU demo.
QUICK_SFT = {
    "max_examples": 32,
    "max_steps": 8,
    "batch_size": 4,
    "learning_rate": 2e-4,
    "save_steps": 0,
    "logging_steps": 2,
    "lora": {"r": 16, "alpha": 32},
}
QUICK_GRPO = {
    "max_steps": 1,
    "questions_per_step": 1,
    "num_generations": 4,
    "micro_batch_size": 4,
    "learning_rate": 1e-5,
    "save_steps": 1,
}


def _with(config: Config, section: str, values: dict[str, Any]) -> Config:
    raw = config.model_dump(mode="json")
    raw[section] = {**raw[section], **{k: v for k, v in values.items() if v is not None}}
    return Config.model_validate(raw)


def quick_train(
    config: Config, out: Path, per_lang: int, retriever: Any, base_runs: list[Path], console: Any
) -> list[Path]:
    """Warm-start then GRPO briefly into ``out``, evaluate the result on the same sample, print the table.

    Returns the run directories of the table: ``base_runs`` and the two trained ones.
    """
    from crosearch.eval.qa import QARun, run_qa_eval
    from crosearch.eval.report import compare_runs
    from crosearch.rl.sft import run_sft
    from crosearch.rl.train import run_train

    sft_dir, grpo_dir = out / "sft", out / "grpo"
    benchmark = str(out / "benchmark")
    # Training searches its own language only: the warm start teaches the protocol, and
    # translating every query with the policy would dominate a CPU demo's time.
    mono = _with(config, "crosslingual", {"strategy": "mono"})
    sft_cfg = _with(mono, "sft", {**QUICK_SFT, "benchmark": benchmark, "output_dir": str(sft_dir)})
    if not (sft_dir / "final").exists():
        console.print(
            f"warm start: {QUICK_SFT['max_steps']} LoRA steps on {QUICK_SFT['max_examples']} protocol trajectories"
        )
        run_sft(sft_cfg, resume=sft_dir.exists())
    adapter = str(sft_dir / "final")

    grpo_cfg = _with(mono, "train", {**QUICK_GRPO, "benchmark": benchmark, "output_dir": str(grpo_dir)})
    grpo_cfg = _with(grpo_cfg, "model", {"adapter": adapter})
    grpo_cfg = _with(grpo_cfg, "agent", {"temperature": 0.8})
    if not (grpo_dir / "final").exists():
        console.print("GRPO: one step of 4 rollouts through TRL with the rollout engine as rollout_func")
        summary = run_train(grpo_cfg, resume=grpo_dir.exists())
        rewards = [h for h in summary["log_history"] if "reward" in h]
        if rewards:
            console.print(f"GRPO step reward {rewards[-1]['reward']:.3f}")

    from crosearch.agent.pipelines import load_policy_backend

    runs = list(base_runs)
    for label, adapter_dir in (("search-agent+sft", sft_dir / "final"), ("search-agent+grpo", grpo_dir / "final")):
        cfg = _with(config, "model", {"adapter": str(adapter_dir)})
        policy = load_policy_backend(cfg.model)
        run_dir = out / "eval" / label
        run_qa_eval(
            QARun(pipeline="search-agent", benchmark=Path(benchmark), out_dir=run_dir, per_lang=per_lang),
            cfg,
            policy=policy,
            retriever=retriever,
            console=console,
        )
        runs.append(run_dir)
    console.print(compare_runs(runs, ["f1", "em", "searches"]), markup=False, highlight=False)
    return runs
