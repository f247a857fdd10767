"""Pieces shared by the warm start and GRPO: data, retriever, LoRA, output directory, oneDNN caps, final save.

:mod:`crosearch.rl.run` puts them together into the one run skeleton both use.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

from rich.console import Console

from crosearch.config import Config, LoraSection
from crosearch.errors import ConfigError, CrosearchError, DataFormatError
from crosearch.io import atomic_dir, atomic_write_json, check_files, describe_files, pid_lock, read_json
from crosearch.types import QAExample

console = Console(stderr=True)


def ensure_benchmark(config: Config, benchmark_dir: str | Path) -> Any:
    """Load the benchmark at ``benchmark_dir``, building it from ``config.data`` first when it is missing."""
    from crosearch.data.benchmark import build_benchmark, load_benchmark, write_benchmark

    path = Path(benchmark_dir)
    if not (path / "meta.json").exists():
        console.print(f"[cyan]building the benchmark ({config.data.setting}) into {path}[/]")
        write_benchmark(build_benchmark(config.data, progress=True), path)
    return load_benchmark(path)


def ensure_retriever(config: Config, bench: Any) -> Any:
    """The retriever the config names; a missing local index is built from the benchmark's collection."""
    from crosearch.retrieval.local import IndexSettings, build_index, load_retriever

    if not config.retrieval.url and not (Path(config.retrieval.index_dir) / "manifest.json").exists():
        console.print(f"[cyan]building the index into {config.retrieval.index_dir}[/]")
        build_index(bench.collection, config.retrieval.index_dir, IndexSettings.from_config(config.retrieval))
    return load_retriever(config)


def select_questions(
    questions: list[QAExample],
    languages: list[str] | None,
    limit: int | None,
    seed: int,
    ids: list[str] | None = None,
) -> list[QAExample]:
    """Questions of the wanted languages (and ``ids``, when given), shuffled by ``seed`` and cut to ``limit``."""
    if ids is not None:
        known = {q.id for q in questions}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise CrosearchError(
                f"train.question_ids: not training questions of the benchmark: {', '.join(unknown[:5])}"
            )
        wanted = set(ids)
        questions = [q for q in questions if q.id in wanted]
    chosen = [q for q in questions if languages is None or q.lang in languages]
    if not chosen:
        have = sorted({q.lang for q in questions})
        raise CrosearchError(f"no training questions in languages {languages}; the benchmark has {have}")
    random.Random(seed).shuffle(chosen)
    return chosen[:limit] if limit else chosen


def lora_config(section: LoraSection) -> Any:
    """A PEFT ``LoraConfig`` for a causal LM, or ``None`` for full fine-tuning."""
    if not section.enabled:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=section.r,
        lora_alpha=section.alpha,
        lora_dropout=section.dropout,
        target_modules=section.target_modules,
        task_type="CAUSAL_LM",
    )


# Enough for the shapes of a few micro-batches; measured in benchmarks/bench_onednn_cache.py.
ONEDNN_CACHE_CAPACITY = 64
ONEDNN_CACHES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")


def bound_onednn_cache() -> None:
    """Caps the oneDNN primitive caches, each unless the user already set its variable.

    Under bf16 autocast on CPUs with AVX512-BF16/AMX, matmuls run through oneDNN, and both
    oneDNN (``ONEDNN_PRIMITIVE_CACHE_CAPACITY``) and PyTorch's ideep layer above it
    (``LRU_CACHE_CAPACITY``) keep one compiled primitive per input shape, 1024 by default.
    Rollouts have a new length every step, so the default caches grow resident memory step after
    step and gc/malloc_trim cannot return it. Both are read when the first primitive is created,
    so this runs before any training computation.
    """
    for name in ONEDNN_CACHES:
        os.environ.setdefault(name, str(ONEDNN_CACHE_CAPACITY))


def model_device(model: Any) -> str:
    return str(next(model.parameters()).device)


def check_output_dir(path: str | Path, resume: bool) -> Path:
    """A fresh run refuses to mix its checkpoints with an earlier run's."""
    out = Path(path)
    if not resume and out.is_dir() and any(p.name.startswith("checkpoint-") for p in out.iterdir()):
        raise ConfigError(
            f"{out} already holds checkpoints: pass --resume to continue that run, "
            "or choose another output directory (--set train.output_dir=...)"
        )
    out.mkdir(parents=True, exist_ok=True)
    # transformers 5 takes the TensorBoard directory from the environment only; one fixed
    # directory per run keeps a resumed run's curves with the interrupted one's.
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(out / "tensorboard")
    return out


def save_atomically(model: Any, tokenizer: Any, final: Path) -> None:
    """Save into a sibling temp dir and rename, so ``final`` is either the old or the new save, never half."""
    import json
    import time

    with atomic_dir(final) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "crosearch-complete.json").write_text(json.dumps({"time": time.time()}) + "\n")


REFERENCE_MARKER = "crosearch-reference.json"


def reference_model_intact(path: Path, source: dict[str, Any]) -> bool:
    """Whether ``path`` is a finished reference model saved from ``source`` with every file at its recorded size."""
    try:
        marker = read_json(path / REFERENCE_MARKER)
    except DataFormatError:
        return False
    if not isinstance(marker, dict) or marker.get("source") != source or not isinstance(marker.get("files"), dict):
        return False
    return "config.json" in marker["files"] and not check_files(path, marker["files"])


def ensure_reference_model(model: Any, tokenizer: Any, path: Path, source: dict[str, Any]) -> bool:
    """Save the frozen copy TRL loads as the reference model (``beta > 0``, no LoRA); True when (re)written.

    Reused only when its marker names the same ``source`` (model, adapter and its content) and
    every file has the size recorded at save time: a save killed half-way, a truncated weights
    file or a copy of another model is written again. The save goes to a temporary sibling,
    renamed into place complete (files, then the marker listing them).
    """
    if reference_model_intact(path, source):
        return False
    with pid_lock(path.parent / f".{path.name}.lock", what=f"saving the reference model {path}"):
        with atomic_dir(path) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            atomic_write_json(tmp / REFERENCE_MARKER, {"source": source, "files": describe_files(tmp)})
    return True
