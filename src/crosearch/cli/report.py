"""``crosearch report``: runs of ``crosearch eval qa`` side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from crosearch.errors import CrosearchError


def report(
    runs: Annotated[list[Path], typer.Argument(help="Run directories of `crosearch eval qa` (or metrics.json files).")],
    metrics: Annotated[str, typer.Option(
        "--metrics", help="Comma-separated: em, f1, char3, lang_match, searches, evidence_hit, n.")] = "em,f1,char3,lang_match,searches",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Also write the markdown here.",
                                                show_default=False)] = None,
) -> None:
    """Several runs side by side, one markdown table per metric (languages as rows, runs as columns)."""
    from crosearch.eval.report import compare_runs
    from crosearch.io import atomic_write_text

    names = [m.strip() for m in metrics.split(",") if m.strip()]
    if not names:
        raise CrosearchError("--metrics needs at least one metric name")
    text = compare_runs(runs, names)
    typer.echo(text, nl=False)
    if out is not None:
        atomic_write_text(out, text)
        typer.echo(f"wrote {out}", err=True)
