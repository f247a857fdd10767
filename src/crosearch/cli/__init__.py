"""The one entry point: ``crosearch``.

Every command lives in this package, one module per command group, and is
registered here in plain sight. Command modules import only typer and the
config at the top; torch, transformers and the indexes are imported inside
command bodies, so ``crosearch --help`` stays fast.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from crosearch import __version__
from crosearch.cli import (
    ask,
    bench,
    crosslingual,
    data,
    eval,
    experiment,
    index,
    model,
    quickstart,
    report,
    serve,
    train,
)
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
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        help="Show library warnings, their progress bars and TRL's logged metrics on the terminal "
        "(by default they go to crosearch.log in the output directory).",
    ),
) -> None:
    """Multilingual search-augmented reasoning trained with GRPO (CroSearch-R1)."""
    from crosearch import console

    routing = console.route(verbose=verbose, command=ctx.invoked_subcommand or "")

    def close() -> None:
        warnings = routing.handler.warnings
        console.finish()
        if warnings and not verbose:
            err_console.print(
                f"[dim]{warnings} library message(s) in {console.log_path()} (--verbose shows them here)[/]",
                highlight=False,
            )

    ctx.call_on_close(close)


app.add_typer(data.app, name="data")
app.command("serve")(serve.serve)
app.add_typer(index.app, name="index")
app.add_typer(eval.app, name="eval")
app.add_typer(crosslingual.app, name="crosslingual")
app.command("ask")(ask.ask)
app.command("sft")(train.sft)
app.command("train")(train.train)
app.command("curve")(train.curve)
app.add_typer(model.app, name="model")
app.command("quickstart")(quickstart.quickstart)
app.command("report")(report.report)
app.command("bench")(bench.bench)
app.add_typer(experiment.app, name="experiment")


def main() -> None:
    try:
        app()
    except CrosearchError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
    except Exception as exc:  # a bug, not bad input: the traceback goes to the log, a pointer to the terminal
        from crosearch import console

        path = console.record_crash(exc)
        if console.shows_tracebacks():
            raise
        err_console.print(
            f"[bold red]crashed:[/] {type(exc).__name__}: {exc}\nthe traceback is in {path} "
            "(please include it when reporting the problem)",
            highlight=False,
        )
        sys.exit(1)
