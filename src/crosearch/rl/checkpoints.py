"""Checkpoints that are never picked up half-written.

The HF Trainer writes ``checkpoint-N/`` in place (weights, then optimizer,
scheduler, RNG state, and ``trainer_state.json``); a process killed in between
leaves a directory that looks like a checkpoint but cannot resume correctly, and
``transformers.trainer_utils.get_last_checkpoint`` would pick it because it only
looks at the highest number. :class:`CompletionMarkerCallback` writes a marker
file (atomically) once the Trainer has finished a save; :func:`latest_complete_checkpoint`
only considers marked directories, and :func:`discard_incomplete_checkpoints`
removes the others before a resumed run could write into them.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

from transformers import TrainerCallback

from crosearch.io import atomic_write_json

MARKER = "crosearch-complete.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")

# Files the HF Trainer must have written for a checkpoint to resume with the same
# optimizer and RNG state; checked in addition to the marker.
REQUIRED_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt")


def checkpoint_dirs(output_dir: str | Path) -> list[tuple[int, Path]]:
    """Every ``checkpoint-N`` directory under ``output_dir`` as ``(N, path)``, by step."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _CHECKPOINT.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


def is_complete(path: str | Path) -> bool:
    """A checkpoint is complete when its marker and the files needed to resume exist."""
    path = Path(path)
    return (path / MARKER).is_file() and all((path / name).is_file() for name in REQUIRED_FILES)


def latest_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """The highest-numbered complete checkpoint, or ``None``."""
    for _, path in reversed(checkpoint_dirs(output_dir)):
        if is_complete(path):
            return path
    return None


def discard_incomplete_checkpoints(output_dir: str | Path) -> list[Path]:
    """Delete checkpoint directories without a completion marker; returns what was removed."""
    removed = []
    for _, path in checkpoint_dirs(output_dir):
        if not is_complete(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _backend() -> str | None:
    """The torch.distributed backend of this run (gloo on CPU, nccl on GPUs), None when not distributed."""
    import torch.distributed as dist

    return str(dist.get_backend()) if dist.is_available() and dist.is_initialized() else None


class CompletionMarkerCallback(TrainerCallback):
    """Marks ``checkpoint-<global_step>`` complete once the Trainer's save has returned.

    ``on_save`` runs after ``_save_checkpoint`` wrote every file (model,
    optimizer, scheduler, RNG, trainer state), so the marker proves the whole
    write finished. Only the main process writes it.
    """

    def on_save(self, args, state, control, **kwargs):  # noqa: ANN001 - TrainerCallback signature
        if not state.is_world_process_zero:
            return control
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if path.is_dir():
            # How many processes trained it: a resumed run on a different world size is then visible.
            atomic_write_json(
                path / MARKER,
                {
                    "global_step": state.global_step,
                    "time": time.time(),
                    "world_size": args.world_size,
                    "backend": _backend(),
                },
            )
        return control
