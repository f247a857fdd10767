"""``crosearch eval qa`` (one pipeline over a benchmark split) and ``crosearch eval report`` (runs side by side)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from crosearch.cli_options import ConfigOption, SetOption, resolve_config
from crosearch.errors import CrosearchError

PipelineOption = Annotated[str, typer.Option(
    "--pipeline", "-p", help="direct, rag-mono, rag-concat, rag-crosslingual or search-agent.")]


def model_overrides(model: str | None, adapter: Path | None, index_dir: Path | None,
                    retriever_url: str | None) -> list[str]:
    """``--set`` items for the shared --model/--adapter/--index/--retriever-url flags."""
    items = []
    if model is not None:
        items.append(f"model.name={json.dumps(model)}")
    if adapter is not None:
        items.append(f"model.adapter={json.dumps(str(adapter))}")
    if index_dir is not None:
        items.append(f"retrieval.index_dir={json.dumps(str(index_dir))}")
    if retriever_url is not None:
        items.append(f"retrieval.url={json.dumps(retriever_url)}")
    return items


def eval_qa(
    pipeline: PipelineOption,
    benchmark: Annotated[Path, typer.Option("--benchmark", "-b", help="Benchmark directory (crosearch data build).")],
    split: Annotated[str, typer.Option("--split", help="Question split: test or train.")] = "test",
    per_lang: Annotated[Optional[int], typer.Option(
        "--per-lang", help="Questions per language, the same parallel questions in every language "
                           "(default: eval.per_lang, None = all).", show_default=False)] = None,
    langs: Annotated[Optional[str], typer.Option(
        "--langs", help="Comma-separated question languages (default: all).", show_default=False)] = None,
    index_dir: Annotated[Optional[Path], typer.Option(
        "--index", help="Index directory (default: retrieval.index_dir).", show_default=False)] = None,
    retriever_url: Annotated[Optional[str], typer.Option(
        "--retriever-url", help="A running `crosearch serve` (or Search-R1 server, with "
                                "--set retrieval.url_protocol=search-r1) instead of a local index.",
        show_default=False)] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", "-m", help="bundled, tiny, or a HF model path/id (default: model.name).", show_default=False)] = None,
    adapter: Annotated[Optional[Path], typer.Option(
        "--adapter", help="A PEFT adapter directory (warm start or GRPO checkpoint).", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Run directory for predictions.jsonl and metrics.json (default: runs/eval/PIPELINE).",
        show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Answer a benchmark split with one pipeline; write predictions.jsonl (resumable) and metrics.json."""
    from rich.console import Console

    from crosearch.eval.qa import QARun, metrics_table, run_qa_eval

    extra = list(overrides or []) + model_overrides(model, adapter, index_dir, retriever_url)
    if per_lang is not None:
        extra.append(f"eval.per_lang={per_lang}")
    cfg = resolve_config(config, extra)
    lang_list = [x.strip() for x in langs.split(",") if x.strip()] if langs else None
    run = QARun(pipeline=pipeline, benchmark=benchmark, out_dir=out or Path("runs/eval") / pipeline, split=split,
                per_lang=cfg.eval.per_lang, langs=lang_list)
    console = Console(stderr=True)
    metrics = run_qa_eval(run, cfg, progress=not quiet, console=console)
    title = f"{pipeline} on {metrics['setting']}/{split} ({cfg.model.name}{', ' + cfg.model.adapter if cfg.model.adapter else ''})"
    Console().print(metrics_table(metrics, title=title))
    console.print(f"wrote {run.out_dir / 'predictions.jsonl'} and {run.out_dir / 'metrics.json'}")


def eval_report(
    runs: Annotated[list[Path], typer.Argument(help="Run directories of `crosearch eval qa` (or metrics.json files).")],
    metrics: Annotated[str, typer.Option(
        "--metrics", help="Comma-separated: em, f1, char3, lang_match, searches, evidence_hit, tokens_per_retrieval, "
                          "seconds, n.")] = "em,f1,char3,lang_match,searches",
    baseline: Annotated[Optional[Path], typer.Option(
        "--baseline", help="Run to compare every other run with: paired bootstrap differences on shared questions.",
        show_default=False)] = None,
    resamples: Annotated[int, typer.Option(
        "--resamples", min=0, help="Bootstrap resamples for the 95% intervals (0: point estimates only; as markdown "
                                   "without --baseline/--html/--plots they come from metrics.json alone).")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap resampling.")] = 0,
    fmt: Annotated[str, typer.Option("--format", "-f", help="markdown, json, or table (rich, for the terminal).")] = "markdown",
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Also write the report here (JSON with --format json, else markdown).",
        show_default=False)] = None,
    html_dir: Annotated[Optional[Path], typer.Option(
        "--html", help="Write a self-contained page (tables, plots, trajectory browser) to DIR/index.html.",
        show_default=False)] = None,
    plots_dir: Annotated[Optional[Path], typer.Option(
        "--plots", help="Write the figures (PNG) into this directory.", show_default=False)] = None,
    training: Annotated[Optional[list[Path]], typer.Option(
        "--training", help="A warm-start or GRPO run directory whose curve joins the plots (repeatable).",
        show_default=False)] = None,
) -> None:
    """Several runs side by side: one table per metric (languages as rows, runs as columns) with 95% intervals."""
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
        text = (json_lib.dumps(report.to_dict(), ensure_ascii=False, indent=2) + "\n" if fmt == "json"
                else rep.report_markdown(report))
        if html_dir is not None or plots_dir is not None:
            from crosearch.eval.plots import write_png
            from crosearch.rl.curve import read_log_history

            curves = [(path.name, read_log_history(path)[0]) for path in training or []]
            figures = rep.report_figures(report, curves)
            for name, png in figures.items() if plots_dir is not None else ():
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
