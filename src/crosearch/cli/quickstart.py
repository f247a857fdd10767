"""``crosearch quickstart``: the main job on the embedded default, end to end on a CPU.

It runs the same components a user runs one by one (benchmark -> index ->
model -> agent -> evaluation [-> warm start -> GRPO -> evaluation]) into one
output directory. Every step is resumable: the benchmark is rebuilt only when
missing, the index build resumes, the model cache is reused, evaluation skips
questions already answered, and training continues from its last checkpoint.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from crosearch.cli.options import ConfigOption, SetOption, resolve_config

# Overrides that keep the main job within about 15 minutes on 2 CPU cores.
QUICK_DEFAULTS = [
    "data.setting=gap",
    "data.seed=0",
    "agent.max_turns=2",
    "agent.max_new_tokens=96",
    "agent.answer_tokens=32",
    # Cross-lingual search with English as the supplementary language, evidence kept in the
    # original with its language marked: translating passages with a CPU policy is the slow part.
    "crosslingual.target_langs=[en]",
    "crosslingual.render=original",
]


def quickstart(
    out: Annotated[Path, typer.Option("--out", help="Directory for everything the job writes.")] = Path(
        "runs/quickstart"
    ),
    per_lang: Annotated[int, typer.Option("--per-lang", min=1, help="Test questions per language to evaluate.")] = 1,
    train: Annotated[bool, typer.Option("--train/--no-train", help="Also warm-start and GRPO-train briefly.")] = True,
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Build the benchmark, index it, answer questions with the search agent, compare pipelines (and train briefly)."""
    from rich.console import Console

    console = Console()
    cfg = resolve_config(config, QUICK_DEFAULTS + [f"retrieval.index_dir={out / 'index'}"] + list(overrides or []))
    started = time.perf_counter()
    steps = 6 if train else 5

    def step(number: int, title: str) -> None:
        console.rule(f"[bold]{number}/{steps} {title}[/]  ({time.perf_counter() - started:.0f} s)")

    step(1, f"benchmark ({cfg.data.setting}, seed {cfg.data.seed})")
    bench = _benchmark(cfg, out / "benchmark", console)

    step(2, "BM25 index per language")
    from crosearch.retrieval.local import IndexSettings, LocalRetriever, build_index

    build_index(bench.collection, out / "index", IndexSettings.from_config(cfg.retrieval), progress=True)
    retriever = LocalRetriever.from_config(cfg, out / "index")

    step(3, f"policy model ({cfg.model.name})")
    from crosearch.agent.pipelines import load_policy_backend

    policy = load_policy_backend(cfg.model)
    console.print(f"loaded {cfg.model.name}: {sum(p.numel() for p in policy.model.parameters()) / 1e6:.0f}M parameters")

    step(4, "the search agent answers two test questions")
    _ask_examples(cfg, bench, policy, retriever, console)

    step(5, f"pipelines on {per_lang} test question(s) per language")
    runs = _evaluate(
        cfg,
        out / "benchmark",
        out / "eval",
        per_lang,
        policy,
        retriever,
        console,
        pipelines=("direct", "rag-mono", "search-agent"),
    )
    _print_comparison(runs, console)

    if train:
        step(6, "warm start and GRPO (brief)")
        from crosearch.rl.quick import quick_train

        runs = quick_train(cfg, out, per_lang, retriever, runs, console)
    page = _write_report(out, runs, train)
    console.print(f"report with the trajectory browser: {page}")
    console.rule(f"[bold green]done in {time.perf_counter() - started:.0f} s[/]; outputs in {out}")


def _write_report(out: Path, runs: list[Path], train: bool) -> Path:
    """The HTML report over every evaluated run (and the training curves), against the first run."""
    from crosearch.errors import CrosearchError
    from crosearch.eval.html_report import write_page
    from crosearch.eval.report import build_report, report_figures
    from crosearch.rl.curve import read_log_history

    report = build_report(runs, ["em", "f1", "searches"], baseline=runs[0])
    curves = []
    for directory in (out / "sft", out / "grpo") if train else ():
        try:
            curves.append((directory.name, read_log_history(directory)[0]))
        except CrosearchError:  # an interrupted run without a log yet: the page goes without its curve
            pass
    return write_page(report, out / "report", report_figures(report, curves), title="crosearch quickstart")


def _benchmark(cfg, directory: Path, console):
    from crosearch.data.benchmark import build_benchmark, load_benchmark, write_benchmark
    from crosearch.data.stats import compute_stats, stats_table

    if (directory / "meta.json").exists():
        bench = load_benchmark(directory)
    else:
        bench = build_benchmark(cfg.data, progress=True)
        write_benchmark(bench, directory)
        bench = load_benchmark(directory)
    console.print(stats_table(compute_stats(bench)))
    return bench


def _ask_examples(cfg, bench, policy, retriever, console) -> None:
    from crosearch.agent.pipelines import Pipeline
    from crosearch.cli.ask import show_trace

    wanted = ("en", "de")
    questions = []
    for lang in wanted:
        questions.extend([q for q in bench.test if q.lang == lang][:1])
    pipeline = Pipeline("search-agent", policy, retriever, cfg, temperature=0.0)
    for output in pipeline.run(questions):
        show_trace(console, output.trace())


def _evaluate(cfg, benchmark: Path, out: Path, per_lang: int, policy, retriever, console, *, pipelines):
    from crosearch.eval.qa import QARun, run_qa_eval

    runs = []
    for name in pipelines:
        run_dir = out / name
        run_qa_eval(
            QARun(pipeline=name, benchmark=benchmark, out_dir=run_dir, per_lang=per_lang),
            cfg,
            policy=policy,
            retriever=None if name == "direct" else retriever,
            console=console,
        )
        runs.append(run_dir)
    return runs


def _print_comparison(runs, console) -> None:
    from crosearch.eval.report import compare_runs

    console.print(compare_runs(runs, ["f1", "em"]), markup=False, highlight=False)
