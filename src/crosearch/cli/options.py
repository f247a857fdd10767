"""Options shared by many commands (config recipe, overrides, model and retriever flags)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from crosearch.config import Config, load_config


def unshown(*names: str, help: str) -> Any:
    """An option whose default is not shown in --help: it is None (the recipe's value) or computed."""
    return typer.Option(*names, help=help, show_default=False)


ConfigOption = Annotated[Path | None, unshown("--config", "-c", help="YAML recipe (see configs/).")]
SetOption = Annotated[
    list[str] | None, unshown("--set", "-s", help="Override a config value: section.key=value (repeatable).")
]
ModelOption = Annotated[
    str | None, unshown("--model", "-m", help="bundled, tiny, or a HF model path/id (default: model.name).")
]
AdapterOption = Annotated[
    Path | None, unshown("--adapter", help="A PEFT adapter directory (warm start or GRPO checkpoint).")
]
IndexOption = Annotated[Path | None, unshown("--index", help="Index directory (default: retrieval.index_dir).")]
RetrieverUrlOption = Annotated[
    str | None,
    unshown(
        "--retriever-url",
        help="A running `crosearch serve` (or Search-R1 server, with "
        "--set retrieval.url_protocol=search-r1) instead of a local index.",
    ),
]
BenchmarkOption = Annotated[Path, typer.Option("--benchmark", "-b", help="Benchmark directory (crosearch data build).")]
SplitOption = Annotated[str, typer.Option("--split", help="Question split: test, validation or train.")]


def resolve_config(config: Path | None, overrides: list[str] | None) -> Config:
    return load_config(config, overrides or [])


def with_model_and_retriever(
    config: Config,
    *,
    model: str | None = None,
    adapter: Path | None = None,
    index_dir: Path | None = None,
    retriever_url: str | None = None,
) -> Config:
    """A copy of ``config`` with the shared --model/--adapter/--index/--retriever-url flags applied.

    A flag left at ``None`` keeps the recipe's value; a flag given wins over the recipe and ``--set``.
    """
    model_update = {key: value for key, value in (("name", model), ("adapter", adapter)) if value is not None}
    retrieval_update = {
        key: value for key, value in (("index_dir", index_dir), ("url", retriever_url)) if value is not None
    }
    # model_copy does not validate; the fields are plain strings, so convert the paths here.
    return config.model_copy(
        update={
            "model": config.model.model_copy(update={k: str(v) for k, v in model_update.items()}),
            "retrieval": config.retrieval.model_copy(update={k: str(v) for k, v in retrieval_update.items()}),
        }
    )
