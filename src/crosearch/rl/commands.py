"""``crosearch sft`` (warm start) and ``crosearch train`` (GRPO)."""

from __future__ import annotations

from typing import Annotated

import typer

from crosearch.cli_options import ConfigOption, SetOption, resolve_config

ResumeOption = Annotated[bool, typer.Option(
    "--resume", help="Continue from the latest complete checkpoint in the output directory "
                     "(same step count, optimizer and RNG state).")]


def _print_summary(summary: dict, keys: tuple[str, ...]) -> None:
    from rich.console import Console

    console = Console(stderr=True)
    shown = ", ".join(f"{k}={summary[k]:.4g}" if isinstance(summary.get(k), float) else f"{k}={summary.get(k)}"
                      for k in keys if k in summary)
    console.print(f"[green]done[/]: {shown}")


def sft(config: ConfigOption = None, overrides: SetOption = None, resume: ResumeOption = False) -> None:
    """Warm start: supervised training on protocol trajectories built from the train split (LoRA by default)."""
    from crosearch.rl.sft import run_sft

    summary = run_sft(resolve_config(config, overrides), resume=resume)
    _print_summary(summary, ("trajectories", "answer_in_evidence", "steps", "train_loss", "train_seconds", "output"))


def train(config: ConfigOption = None, overrides: SetOption = None, resume: ResumeOption = False) -> None:
    """GRPO training with TRL's GRPOTrainer and the crosearch rollout engine (multi-turn search, masked evidence)."""
    from crosearch.rl.train import run_train

    summary = run_train(resolve_config(config, overrides), resume=resume)
    _print_summary(summary, ("steps", "train_loss", "seconds", "peak_rss_gb", "resumed_from", "output"))
