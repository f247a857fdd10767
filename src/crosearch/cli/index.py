"""``crosearch index``: build the retrieval indexes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crosearch.cli.options import ConfigOption, SetOption, resolve_config, unshown


def index(
    collection: Annotated[
        Path,
        typer.Option("--collection", help="A collection JSONL (id, lang, title, text, ...) or a benchmark directory."),
    ],
    out: Annotated[Path | None, unshown("--out", "-o", help="Index directory (default: retrieval.index_dir).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Build the per-language BM25 indexes (and dense indexes when retrieval.dense_model is set).

    An interrupted build resumes where it stopped when run again with the same --out;
    only languages whose passages or settings changed are rebuilt.
    """
    from rich.console import Console

    from crosearch.retrieval.local import IndexSettings, build_index
    from crosearch.retrieval.store import read_collection

    cfg = resolve_config(config, overrides)
    target = out or Path(cfg.retrieval.index_dir)
    console = Console(stderr=True)
    settings = IndexSettings.from_config(cfg.retrieval)
    passages = read_collection(collection)
    report = build_index(passages, target, settings, progress=not quiet)
    langs = ", ".join(f"{lang} {n}" for lang, n in report.languages.items())
    console.print(
        f"index {target}: {sum(report.languages.values())} passages ({langs}); "
        f"built {len(report.built)} units, reused {len(report.reused)}, {report.seconds:.1f} s"
    )
