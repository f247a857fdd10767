"""Options shared by many commands (config recipe, overrides, model and retriever flags)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crosearch.config import Config, load_config

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML recipe (see configs/).", show_default=False)
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config value: section.key=value (repeatable).", show_default=False),
]


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
