"""The one entry point: ``crosearch``.

Each area keeps its commands beside its code (``crosearch/<area>/commands.py``)
and this module only wires them together, so heavy libraries (torch,
transformers) are imported only by the commands that need them.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from crosearch import __version__
from crosearch.errors import CrosearchError

app = typer.Typer(
    name="crosearch",
    help="Multilingual search-augmented reasoning trained with GRPO (CroSearch-R1).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"crosearch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Multilingual search-augmented reasoning trained with GRPO (CroSearch-R1)."""


def _register() -> None:
    from crosearch.commands import register_all

    register_all(app)


def main() -> None:
    _register()
    try:
        app()
    except CrosearchError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
