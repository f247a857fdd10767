"""``crosearch report``: runs of ``crosearch eval qa`` side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crosearch.cli.options import unshown
from crosearch.errors import CrosearchError


def report(
    runs: Annotated[list[Path], typer.Argument(help="Run directories of `crosearch eval qa` (or metrics.json files).")],
    metrics: Annotated[
        str,
        typer.Option(
            "--metrics",
            help="Comma-separated: em, f1, char3, lang_match, searches, evidence_hit, tokens_per_retrieval, "
            "seconds, n.",
        ),
    ] = "em,f1,char3,lang_match,searches",
    baseline: Annotated[
        Path | None,
        unshown(
            "--baseline", help="Run to compare every other run with: paired bootstrap differences on shared questions."
        ),
    ] = None,
    resamples: Annotated[
        int,
        typer.Option(
            "--resamples",
            min=0,
            help="Bootstrap resamples for the 95% intervals (0: point estimates only; as markdown "
            "without --baseline/--html/--plots they come from metrics.json alone).",
        ),
    ] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap resampling.")] = 0,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="markdown, json, or table (rich, for the terminal).")
    ] = "markdown",
    out: Annotated[
        Path | None, unshown("--out", "-o", help="Also write the report here (JSON with --format json, else markdown).")
    ] = None,
    html_dir: Annotated[
        Path | None,
        unshown("--html", help="Write a self-contained page (tables, plots, trajectory browser) to DIR/index.html."),
    ] = None,
    plots_dir: Annotated[Path | None, unshown("--plots", help="Write the figures (PNG) into this directory.")] = None,
    training: Annotated[
        list[Path] | None,
        unshown("--training", help="A warm-start or GRPO run directory whose curve joins the plots (repeatable)."),
    ] = None,
) -> None:
    """Several runs side by side with 95% intervals: the macro averages, then one table per metric by language."""
    import json as json_lib

    from crosearch.eval import report as rep
    from crosearch.io import atomic_write_text

    names = [m.strip() for m in metrics.split(",") if m.strip()]
    if not names:
        raise CrosearchError("--metrics needs at least one metric name")
    if fmt not in ("markdown", "json", "table"):
        raise CrosearchError(f"--format must be markdown, json or table, got '{fmt}'")
    if resamples == 0 and baseline is None and html_dir is None and plots_dir is None and fmt == "markdown":
        text = rep.compare_runs(runs, names)  # metrics.json alone suffices
    else:
        report = rep.build_report(runs, names, baseline=baseline, resamples=resamples, seed=seed)
        text = (
            json_lib.dumps(report.to_dict(), ensure_ascii=False, indent=2) + "\n"
            if fmt == "json"
            else rep.report_markdown(report)
        )
        if html_dir is not None or plots_dir is not None:
            from crosearch.eval.plots import write_png
            from crosearch.rl.curve import read_log_history

            curves = [(path.name, read_log_history(path)[0]) for path in training or []]
            figures = rep.report_figures(report, curves)
            if plots_dir is not None:
                for name, png in figures.items():
                    typer.echo(f"wrote {write_png(plots_dir / name, png)}", err=True)
            if html_dir is not None:
                from crosearch.eval.html_report import write_page

                typer.echo(f"wrote {write_page(report, html_dir, figures)}", err=True)
        if fmt == "table":
            from rich.console import Console

            rep.print_report(report, Console())
    if fmt != "table":
        typer.echo(text, nl=False)
    if out is not None:
        atomic_write_text(out, text)
        typer.echo(f"wrote {out}", err=True)
