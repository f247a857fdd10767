"""The committable side of an experiment: stage markers and the small files each stage keeps.

Only committed files survive between work sessions on the development machine, so every stage
writes what the comparison needs later into ``results_dir/<stage name>/``: the marker
``stage.json`` (times, load average, the stage's key number), metrics, training summaries and
curves, predictions without their traces (what the bootstrap needs), and optionally the final
LoRA adapter in bf16. The marker is written last, atomically: a stage is done exactly when it exists.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from crosearch.errors import DataFormatError
from crosearch.io import atomic_dir, atomic_open, atomic_write_json, dumps_line, read_json
from crosearch.names import path_under

MARKER = "stage.json"
ADAPTER = "adapter"
# What a PEFT adapter directory needs to be loaded again on top of the base model.
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def stage_path(root: str | Path, name: str) -> Path:
    """``root/<name>``, refused if the name would lead outside ``root``."""
    return path_under(root, *name.split("/"))


def read_marker(directory: Path) -> dict[str, Any] | None:
    """The stage marker in ``directory``; None when the stage has not finished (or the marker is unreadable)."""
    try:
        marker = read_json(directory / MARKER, what="stage marker")
    except DataFormatError:
        return None
    return marker if isinstance(marker, dict) and "finished" in marker else None


def write_marker(directory: Path, record: dict[str, Any]) -> None:
    atomic_write_json(directory / MARKER, record)


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def copy_file(source: Path, target: Path) -> Path:
    """Copy ``source`` to ``target`` atomically (a temporary sibling, then a rename)."""
    with source.open("rb") as src, atomic_open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return target


def slim_predictions(source: Path, target: Path) -> int:
    """Copy prediction records without their traces: the scores, searches and evidence the statistics read.

    A full record carries every turn's text and evidence (tens of KB); the slim one a few hundred bytes.
    """
    from crosearch.eval.qa import read_predictions

    records = read_predictions(source)
    with atomic_open(target) as handle:
        for record in records:
            handle.write(dumps_line({k: v for k, v in record.items() if k != "trace"}) + "\n")
    return len(records)


def keep_adapter(final: Path, target: Path) -> Path:
    """Copy a saved LoRA adapter's config and weights into ``target``, the weights cast to bf16.

    bf16 halves the size (the bundled model's r=16 adapter: about 7.6 MB) and loses nothing an
    evaluation can see: PEFT casts the weights back to the model's dtype when loading them.
    """
    import torch
    from safetensors.torch import load_file, save_file

    with atomic_dir(target) as tmp:
        copy_file(final / "adapter_config.json", tmp / "adapter_config.json")
        tensors = load_file(str(final / "adapter_model.safetensors"))
        save_file(
            {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in tensors.items()},
            str(tmp / "adapter_model.safetensors"),
            metadata={"format": "pt"},
        )
    return target


def adapter_complete(directory: Path) -> bool:
    return all((directory / name).is_file() for name in ADAPTER_FILES)
