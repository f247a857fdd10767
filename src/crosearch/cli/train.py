"""``crosearch sft`` (warm start), ``crosearch train`` (GRPO) and ``crosearch curve`` (their training curves)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crosearch.cli.options import ConfigOption, SetOption, resolve_config

ResumeOption = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="Continue from the latest complete checkpoint in the output directory "
        "(same step count, optimizer and RNG state).",
    ),
]


def _print_summary(summary: dict, keys: tuple[str, ...]) -> None:
    from rich.console import Console

    console = Console(stderr=True)
    shown = ", ".join(
        f"{k}={summary[k]:.4g}" if isinstance(summary.get(k), float) else f"{k}={summary.get(k)}"
        for k in keys
        if k in summary
    )
    console.print(f"[green]done[/]: {shown}")


def sft(
    config: ConfigOption = None,
    overrides: SetOption = None,
    resume: ResumeOption = False,
    trajectories_only: Annotated[
        bool,
        typer.Option(
            "--trajectories-only",
            help="Build the trajectories (sft.output_dir/trajectories.jsonl and trajectories-summary.json), "
            "print their answer coverage and searches, and train nothing (needs no model weights).",
        ),
    ] = False,
) -> None:
    """Warm start: supervised training on protocol trajectories built from the train split (LoRA by default)."""
    from crosearch.console import LOG_NAME, log_to
    from crosearch.rl.sft import run_sft

    cfg = resolve_config(config, overrides)
    log_to(Path(cfg.sft.output_dir) / LOG_NAME)
    summary = run_sft(cfg, resume=resume, trajectories_only=trajectories_only)
    if trajectories_only:
        return
    _print_summary(summary, ("trajectories", "answer_in_evidence", "steps", "train_loss", "train_seconds", "output"))


def train(config: ConfigOption = None, overrides: SetOption = None, resume: ResumeOption = False) -> None:
    """GRPO training with TRL's GRPOTrainer and the crosearch rollout engine (multi-turn search, masked evidence)."""
    from crosearch.console import LOG_NAME, log_to
    from crosearch.rl.train import run_train

    cfg = resolve_config(config, overrides)
    log_to(Path(cfg.train.output_dir) / LOG_NAME)
    summary = run_train(cfg, resume=resume)
    _print_summary(summary, ("steps", "train_loss", "seconds", "peak_rss_gb", "resumed_from", "output"))


def curve(
    run_dir: Annotated[str, typer.Argument(help="A `crosearch train` or `crosearch sft` output directory.")],
    out: Annotated[str | None, typer.Option("--out", "-o", help="PNG to write (default: RUN_DIR/curve.png).")] = None,
    window: Annotated[int, typer.Option(min=1, help="Steps in the moving average of single-metric panels.")] = 5,
    span: Annotated[int, typer.Option(min=1, help="Steps averaged at the start and the end for the summary.")] = 5,
    title: Annotated[str, typer.Option(help="Figure title.")] = "",
) -> None:
    """Plot a training run's curves (reward, its components, searches, memory, step time) and summarise the reward."""
    from rich.console import Console

    from crosearch.rl.curve import is_grpo, plot_curve, read_log_history, summarize

    history, source = read_log_history(run_dir)
    path = plot_curve(history, out or f"{run_dir}/curve.png", window=window, title=title)
    console = Console()
    metric = "reward" if is_grpo(history) else "loss"
    s = summarize(history, metric, span)
    console.print(
        f"{source}: {s['steps']} logged steps; {metric} over the first {s['span']}: {s['first_mean']:.4f}, "
        f"last {s['span']}: {s['last_mean']:.4f} (change {s['change']:+.4f})"
    )
    console.print(f"[green]wrote[/] {path}")
