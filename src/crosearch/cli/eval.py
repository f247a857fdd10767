"""``crosearch eval``: ``qa`` (one pipeline over a benchmark split) and ``retrieval`` (recall@k and MRR)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crosearch.cli.options import (
    AdapterOption,
    BenchmarkOption,
    ConfigOption,
    IndexOption,
    ModelOption,
    RetrieverUrlOption,
    SetOption,
    SplitOption,
    resolve_config,
    unshown,
    with_model_and_retriever,
)
from crosearch.errors import CrosearchError

app = typer.Typer(help="Evaluate retrieval and QA.", no_args_is_help=True)

PipelineOption = Annotated[
    str, typer.Option("--pipeline", "-p", help="direct, rag-mono, rag-concat, rag-crosslingual or search-agent.")
]


@app.command("qa")
def eval_qa(
    pipeline: PipelineOption,
    benchmark: BenchmarkOption,
    split: SplitOption = "test",
    per_lang: Annotated[
        int | None,
        unshown(
            "--per-lang",
            help="Questions per language, the same parallel questions in every language "
            "(default: eval.per_lang, None = all).",
        ),
    ] = None,
    langs: Annotated[str | None, unshown("--langs", help="Comma-separated question languages (default: all).")] = None,
    index_dir: IndexOption = None,
    retriever_url: RetrieverUrlOption = None,
    model: ModelOption = None,
    adapter: AdapterOption = None,
    out: Annotated[
        Path | None,
        unshown(
            "--out", "-o", help="Run directory for predictions.jsonl and metrics.json (default: runs/eval/PIPELINE)."
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Answer a benchmark split with one pipeline; write predictions.jsonl (resumable) and metrics.json."""
    from rich.console import Console

    from crosearch.console import LOG_NAME, log_to
    from crosearch.eval.qa import QARun, metrics_table, run_qa_eval

    extra = list(overrides or [])
    if per_lang is not None:
        extra.append(f"eval.per_lang={per_lang}")
    cfg = with_model_and_retriever(
        resolve_config(config, extra), model=model, adapter=adapter, index_dir=index_dir, retriever_url=retriever_url
    )
    lang_list = [x.strip() for x in langs.split(",") if x.strip()] if langs else None
    run = QARun(
        pipeline=pipeline,
        benchmark=benchmark,
        out_dir=out or Path("runs/eval") / pipeline,
        split=split,
        per_lang=cfg.eval.per_lang,
        langs=lang_list,
    )
    log_to(run.out_dir / LOG_NAME)
    console = Console(stderr=True)
    metrics = run_qa_eval(run, cfg, progress=not quiet, console=console)
    adapter_note = f", {cfg.model.adapter}" if cfg.model.adapter else ""
    title = f"{pipeline} on {metrics['setting']}/{split} ({cfg.model.name}{adapter_note})"
    Console().print(metrics_table(metrics, title=title))
    console.print(f"wrote {run.out_dir / 'predictions.jsonl'} and {run.out_dir / 'metrics.json'}")


def _parse_ks(text: str) -> list[int]:
    try:
        ks = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise CrosearchError(f"--k must be comma-separated integers like 1,5,10, got '{text}'") from None
    if not ks or ks[0] < 1:
        raise CrosearchError(f"--k values must be at least 1, got '{text}'")
    return ks


@app.command("retrieval")
def eval_retrieval(
    benchmark: BenchmarkOption,
    index_dir: IndexOption = None,
    ks: Annotated[str, typer.Option("--k", help="Cut-offs for recall, comma-separated.")] = "1,5,10",
    split: SplitOption = "test",
    scopes: Annotated[
        str, typer.Option("--scopes", help="mono (own language), all (every language), or both.")
    ] = "mono,all",
    out: Annotated[Path | None, unshown("--out", "-o", help="Write the metrics as JSON here.")] = None,
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Recall@k and MRR per language, searching the question's language (mono) and all languages (all)."""
    from rich.console import Console

    from crosearch.data.benchmark import SPLITS, load_benchmark
    from crosearch.io import atomic_write_json
    from crosearch.retrieval.evaluation import evaluate_retrieval, report_tables
    from crosearch.retrieval.local import load_retriever

    if split not in SPLITS:
        raise CrosearchError(f"--split must be one of {', '.join(SPLITS)}, got '{split}'")
    scope_list = [s.strip() for s in scopes.split(",") if s.strip()]
    bad = [s for s in scope_list if s not in ("mono", "all")]
    if bad or not scope_list:
        raise CrosearchError(f"--scopes takes mono and/or all, got '{scopes}'")
    k_list = _parse_ks(ks)
    cfg = with_model_and_retriever(resolve_config(config, overrides), index_dir=index_dir)
    console = Console(stderr=True)
    bench = load_benchmark(benchmark)
    questions = bench.split(split)
    retriever = load_retriever(cfg)
    report = evaluate_retrieval(retriever, questions, k_list, scope_list)  # type: ignore[arg-type]
    result = {
        "benchmark": str(benchmark),
        "setting": bench.setting,
        "split": split,
        "index": cfg.retrieval.url or cfg.retrieval.index_dir,
        "methods": cfg.retrieval.methods,
        "fusion": cfg.retrieval.fusion,
        "dense_align": cfg.retrieval.dense_align,
        "hybrid_weight": cfg.retrieval.hybrid_weight,
        **report.to_dict(),
    }
    if out is not None:
        atomic_write_json(out, result)
    for table in report_tables(report, title=f"{bench.setting}/{split}"):
        Console().print(table)
    if out is not None:
        console.print(f"wrote {out}")
