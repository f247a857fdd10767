"""Options shared by many commands (config recipe and overrides)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from crosearch.config import Config, load_config

ConfigOption = Annotated[
    Optional[Path], typer.Option("--config", "-c", help="YAML recipe (see configs/).", show_default=False)
]
SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override a config value: section.key=value (repeatable).", show_default=False),
]


def resolve_config(config: Path | None, overrides: list[str] | None) -> Config:
    return load_config(config, overrides or [])
