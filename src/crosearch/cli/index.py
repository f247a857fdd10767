"""``crosearch index``: build the retrieval indexes; ``crosearch index verify``: check one against its manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crosearch.cli.options import ConfigOption, SetOption, resolve_config, unshown

app = typer.Typer(invoke_without_command=True)


@app.callback()
def index(
    ctx: typer.Context,
    collection: Annotated[
        Path | None,
        unshown("--collection", help="A collection JSONL (id, lang, title, text, ...) or a benchmark directory."),
    ] = None,
    out: Annotated[Path | None, unshown("--out", "-o", help="Index directory (default: retrieval.index_dir).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Build the per-language BM25 indexes (and dense indexes when retrieval.dense_model is set).

    Given a benchmark directory, the dense alignment maps are fitted on its train split.

    An interrupted build resumes where it stopped when run again with the same --out;
    only languages whose passages or settings changed are rebuilt. A second build of the
    same --out while one runs is refused. `crosearch index verify DIR` checks an index's files.
    """
    if ctx.invoked_subcommand is not None:
        return
    if collection is None:
        raise typer.BadParameter("--collection is required to build an index", param_hint="--collection")
    from rich.console import Console

    from crosearch.retrieval.local import IndexSettings, build_index
    from crosearch.retrieval.store import read_collection, train_paragraphs

    cfg = resolve_config(config, overrides)
    target = out or Path(cfg.retrieval.index_dir)
    console = Console(stderr=True)
    settings = IndexSettings.from_config(cfg.retrieval)
    passages = read_collection(collection)
    report = build_index(
        passages,
        target,
        settings,
        progress=not quiet,
        train_paragraphs=train_paragraphs(collection) if settings.dense_model else None,
    )
    langs = ", ".join(f"{lang} {n}" for lang, n in report.languages.items())
    console.print(
        f"index {target}: {sum(report.languages.values())} passages ({langs}); "
        f"built {len(report.built)} units, reused {len(report.reused)}, {report.seconds:.1f} s"
    )


@app.command("verify")
def verify(
    directory: Annotated[Path, typer.Argument(help="An index directory (from `crosearch index`).")],
) -> None:
    """Check every file of an index against the sizes and SHA-256 hashes in its manifest (exit 1 if any differ)."""
    from crosearch.retrieval.local import verify_index

    problems = verify_index(directory)
    for problem in problems:
        typer.echo(f"{directory}: {problem}", err=True)
    if problems:
        typer.echo(f"{directory}: damaged ({len(problems)} file(s)); rebuild it with `crosearch index`", err=True)
        raise typer.Exit(1)
    typer.echo(f"{directory}: ok")
