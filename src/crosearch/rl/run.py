"""The run skeleton shared by the warm start (``run_sft``) and GRPO (``run_train``).

Both do the same around their own trainer: cap oneDNN's caches, claim the output
directory, seed, make sure the benchmark and the retriever exist
(:func:`prepare_run`); decide bf16 (:func:`train_bf16`); resume from the latest
complete checkpoint and train (:func:`train_resumable`); save the final model
atomically and write ``summary.json`` (:func:`finish_run`). What differs (how the
data is built, which trainer) stays in :mod:`crosearch.rl.sft` and
:mod:`crosearch.rl.train`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crosearch.config import Config
from crosearch.errors import CrosearchError
from crosearch.io import atomic_write_json
from crosearch.rl.common import (
    bound_onednn_cache,
    check_output_dir,
    console,
    ensure_benchmark,
    ensure_retriever,
    model_device,
    save_atomically,
)


@dataclass(slots=True)
class RunContext:
    """A prepared run: its output directory, whether it resumes, its seed, benchmark and retriever."""

    out: Path
    resume: bool
    seed: int
    bench: Any
    retriever: Any


@dataclass(slots=True)
class TrainOutcome:
    """What ``trainer.train`` returned, the checkpoint it resumed from (or None) and its wall time."""

    result: Any
    resumed_from: Path | None
    seconds: float


def prepare_run(config: Config, *, output_dir: str, benchmark: str, seed: int, resume: bool) -> RunContext:
    """Set up a training run before any model computation (the oneDNN caps must come first)."""
    import torch

    bound_onednn_cache()
    out = check_output_dir(output_dir, resume)
    torch.manual_seed(seed)
    bench = ensure_benchmark(config, benchmark)
    return RunContext(out=out, resume=resume, seed=seed, bench=bench, retriever=ensure_retriever(config, bench))


def train_bf16(setting: bool | str, model: Any) -> bool:
    """Whether to train under bf16 autocast: ``auto`` where the model's device multiplies bf16 natively."""
    if isinstance(setting, bool):
        return setting
    from crosearch.models import has_fast_bf16

    return has_fast_bf16(model_device(model))


def resume_checkpoint(ctx: RunContext) -> Path | None:
    """With ``--resume``: drop half-written checkpoints and return the latest complete one (None: from step 0)."""
    from crosearch.rl.checkpoints import discard_incomplete_checkpoints, latest_complete_checkpoint

    if not ctx.resume:
        return None
    for path in discard_incomplete_checkpoints(ctx.out):
        console.print(f"[yellow]removed incomplete checkpoint {path}[/]")
    checkpoint = latest_complete_checkpoint(ctx.out)
    if checkpoint is None:
        console.print("[yellow]--resume: no complete checkpoint yet, starting from step 0[/]")
    else:
        console.print(f"resuming from {checkpoint}")
    return checkpoint


def train_resumable(ctx: RunContext, trainer: Any) -> TrainOutcome:
    """Run ``trainer.train``, from the latest complete checkpoint when the run resumes.

    The terminal shows one line per logged step (:mod:`crosearch.rl.step_line`), not the trainer's dictionaries.
    """
    from crosearch.rl.step_line import attach_step_line

    attach_step_line(trainer, console)
    checkpoint = resume_checkpoint(ctx)
    started = time.perf_counter()
    try:
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except KeyError as exc:
        # A dataset row the data pipeline does not know: the checkpoint or the data changed under the run.
        raise CrosearchError(f"training data mismatch: {exc}") from None
    return TrainOutcome(result=result, resumed_from=checkpoint, seconds=time.perf_counter() - started)


def finish_run(
    ctx: RunContext, trainer: Any, model: Any, tokenizer: Any, outcome: TrainOutcome, summary: dict[str, Any]
) -> dict[str, Any]:
    """Save ``model`` to ``out/final`` atomically and write ``out/summary.json``; returns the summary.

    ``summary`` holds what is particular to the run; steps, loss, resume point, output and the
    trainer's log history are added here, so both commands report them alike.
    """
    final = ctx.out / "final"
    save_atomically(model, tokenizer, final)
    summary = {
        "steps": trainer.state.global_step,
        "train_loss": outcome.result.training_loss,
        **summary,
        "resumed_from": str(outcome.resumed_from) if outcome.resumed_from else None,
        "output": str(final),
        "log_history": trainer.state.log_history,
    }
    atomic_write_json(ctx.out / "summary.json", summary)
    return summary
