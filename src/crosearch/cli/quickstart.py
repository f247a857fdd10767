"""``crosearch quickstart``: the main job on the embedded default, end to end on a CPU.

It runs the same components a user runs one by one (benchmark -> index -> model -> the agent
answering questions in three scripts -> a comparison of the policies with intervals [-> warm start
-> two GRPO steps] -> the HTML report) into one output directory. Every step is resumable: the
benchmark is rebuilt only when missing, the index build resumes, the model cache is reused,
evaluation skips questions already answered, and training continues from its last checkpoint.

The policies compared are the base model and every shipped adapter among :data:`POLICIES`
(``model.adapter: bundled:<name>``) trained on the configured model, each under the overrides it
was trained with (its ``settings.json``: the integration strategy of its arm); the agent of the
three questions is the best shipped one.
Library messages go to ``<out>/crosearch.log`` (``crosearch --verbose quickstart`` shows them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from crosearch.cli.options import ConfigOption, SetOption, resolve_config

# The base recipe of configs/experiment-cpu.yaml, under which the shipped adapters were trained:
# the `gap` benchmark of its 8 languages, BM25 plus the bundled dense encoder in one aligned
# ranking (the passages' embeddings ship with the package, so the index builds in seconds),
# three turns of up to 48 tokens, 160 tokens of evidence, other languages' passages shown as they
# are with their language marked (translating with the CPU policy is the slow part).
QUICK_DEFAULTS = [
    "data.setting=gap",
    "data.seed=0",
    "data.languages=[ar,de,en,es,hi,ru,vi,zh]",
    "retrieval.methods=[bm25,dense]",
    "retrieval.dense_model=bundled",
    "retrieval.fusion=aligned",
    "retrieval.hybrid_weight=0.03",
    "retrieval.dense_agreement=8",
    "retrieval.collapse=paragraph",
    "retrieval.k=2",
    "agent.max_turns=3",
    "agent.max_new_tokens=48",
    "agent.answer_tokens=32",
    "agent.max_total_tokens=900",
    "agent.batch_size=32",
    "crosslingual.ranking=aligned",
    "crosslingual.translator=none",
    "crosslingual.render=original",
    "crosslingual.token_budget=160",
    "crosslingual.k=2",
]


# The policies of the comparison, in order: the base model, then each adapter if the package ships it.
POLICIES = ("search-r1", "crosearch-r1")


@dataclass(frozen=True)
class Policy:
    """One policy of the comparison: a name, its adapter (None: the model alone) and its overrides."""

    name: str
    adapter: str | None
    settings: dict[str, Any] = field(default_factory=dict)

    def config(self, cfg):
        from crosearch.config import with_updates

        return with_updates(cfg, {**self.settings, "model.adapter": self.adapter})


# One question per script, so the demonstration shows the agent across writing systems: the first
# language of each group that the benchmark has.
SCRIPTS = (("Latin", ("en", "de", "es", "vi")), ("Han", ("zh",)), ("Arabic/Devanagari", ("ar", "hi")))


def quickstart(
    out: Annotated[Path, typer.Option("--out", help="Directory for everything the job writes.")] = Path(
        "runs/quickstart"
    ),
    per_lang: Annotated[
        int, typer.Option("--per-lang", min=1, help="Test questions per language in the comparison of policies.")
    ] = 3,
    train: Annotated[
        bool, typer.Option("--train/--no-train", help="Also warm-start and run two GRPO steps (brief).")
    ] = True,
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Build the benchmark and index, show the agent in three scripts, compare policies, train briefly, report."""
    from rich.console import Console

    from crosearch.console import LOG_NAME, log_to

    log_to(out / LOG_NAME)
    console = Console()
    cfg = resolve_config(config, QUICK_DEFAULTS + [f"retrieval.index_dir={out / 'index'}"] + list(overrides or []))
    started = time.perf_counter()
    steps = 7 if train else 6

    def step(number: int, title: str) -> None:
        console.rule(f"[bold]{number}/{steps} {title}[/]  ({time.perf_counter() - started:.0f} s)")

    step(1, f"benchmark ({cfg.data.setting}, seed {cfg.data.seed})")
    bench = _benchmark(cfg, out / "benchmark", console)

    step(2, f"index per language ({' + '.join(cfg.retrieval.methods or ['bm25'])})")
    from crosearch.retrieval.local import IndexSettings, LocalRetriever, build_index
    from crosearch.retrieval.store import train_paragraphs

    settings = IndexSettings.from_config(cfg.retrieval)
    # As `crosearch index` and the experiment do: the dense alignment is fitted on train paragraphs only.
    fit_on = train_paragraphs(out / "benchmark") if settings.dense_model else None
    build_index(bench.collection, out / "index", settings, progress=True, train_paragraphs=fit_on)
    retriever = LocalRetriever.from_config(cfg, out / "index")

    policies = _policies(cfg)
    shown = policies[-1]
    step(3, f"policy model ({cfg.model.name}{', adapter ' + shown.adapter if shown.adapter else ''})")
    from crosearch.agent.pipelines import load_policy_backend

    with console.status(f"loading {cfg.model.name}..."):
        agent = load_policy_backend(shown.config(cfg).model)
    console.print(f"loaded {cfg.model.name}: {sum(p.numel() for p in agent.model.parameters()) / 1e6:.0f}M parameters")

    questions = _script_questions(bench, cfg.crosslingual.target_langs)
    step(4, f"the search agent ({shown.name}) answers {len(questions)} questions in {len(questions)} scripts")
    _ask_examples(shown.config(cfg), questions, agent, retriever, console)

    names = " vs ".join(p.name for p in policies)
    step(5, f"{names}, {per_lang} per language")
    runs = []
    for p in policies:
        p_cfg = p.config(cfg)
        backend = agent if p == shown else load_policy_backend(p_cfg.model)
        runs.append(_evaluate(p_cfg, out / "benchmark", out / "eval" / p.name, per_lang, backend, retriever, console))
    del agent
    if len(policies) == 1:
        console.print(
            "[dim]no trained adapter ships with this installation: the table shows the base model only "
            "(adapters load as --set model.adapter=bundled:NAME; see docs/models.md)[/]"
        )
    _comparison(runs, console)

    if train:
        step(6, "warm start and two GRPO steps (brief)")
        from crosearch.rl.quick import quick_train

        trained = quick_train(cfg, out, retriever, bench, console)
        _print_advantages(trained.advantages, console)
    step(steps, "report")
    page = _write_report(out, runs, train)
    console.print(f"report with the trajectory browser: {page}")
    console.rule(f"[bold green]done in {time.perf_counter() - started:.0f} s[/]; outputs in {out}")


def _policies(cfg) -> list[Policy]:
    """The policies to compare: the base model (or the recipe's adapter), then each shipped adapter
    trained on the configured model, under the overrides it was trained with."""
    from crosearch.adapters import PREFIX, bundled_names, shipped_settings

    out = [Policy("base", cfg.model.adapter)]
    shipped = set(bundled_names())
    for name in POLICIES:
        if name in shipped:
            info = shipped_settings(name)
            if info.model == cfg.model.name:
                out.append(Policy(name, PREFIX + name, dict(info.settings)))
    return out


def _script_questions(bench, targets: list[str] | None) -> list:
    """One test question per script. The Han one (else the last one) has no gold paragraph in its own
    language (``gap``/``no-native``) while a language searched cross-lingually (``targets``) has it,
    so only evidence in another language can answer it."""
    held = {(p.lang, p.paragraph) for p in bench.collection}
    others = targets or bench.languages

    def crosslingual(q) -> bool:
        return q.native_available is False and any((t, q.paragraph) in held for t in others if t != q.lang)

    test = [q for q in bench.test if q.answers]
    chosen = []
    for position, (_, langs) in enumerate(SCRIPTS):
        lang = next((lang for lang in langs if any(q.lang == lang for q in test)), None)
        if lang is None:
            continue
        pool = [q for q in test if q.lang == lang]
        # The others find their answer in their own language, for contrast.
        wanted = [q for q in pool if (crosslingual(q) if position == 1 else q.native_available)]
        chosen.append((wanted or pool)[0])
    if chosen and not any(crosslingual(q) for q in chosen):
        fallback = next((q for q in test if crosslingual(q)), None)
        if fallback is not None:
            chosen[-1] = fallback
    return chosen


def _ask_examples(cfg, questions, policy, retriever, console) -> None:
    from crosearch.agent.pipelines import Pipeline
    from crosearch.cli.ask import show_trace

    pipeline = Pipeline("search-agent", policy, retriever, cfg, temperature=0.0)
    for q, output in zip(questions, pipeline.run(questions)):
        if q.native_available is False:
            console.print(
                f"[bold]no-native question[/]: the {q.lang} collection lacks its paragraph; "
                "only another language holds the answer"
            )
        show_trace(console, output.trace())
        console.print(f"gold answer: {q.answers[0]}", markup=False, highlight=False)


def _evaluate(cfg, benchmark: Path, run_dir: Path, per_lang: int, policy, retriever, console) -> Path:
    from crosearch.eval.qa import QARun, run_qa_eval

    run_qa_eval(
        QARun(pipeline="search-agent", benchmark=benchmark, out_dir=run_dir, per_lang=per_lang),
        cfg,
        policy=policy,
        retriever=retriever,
        console=console,
    )
    return run_dir


def _comparison(runs: list[Path], console) -> None:
    """Per-language F1 and EM with bootstrap intervals (and paired differences against the base model)."""
    from crosearch.eval.report import build_report, print_report

    print_report(build_report(runs, ["f1", "em"], baseline=runs[0]), console)


def _write_report(out: Path, runs: list[Path], train: bool) -> Path:
    """The HTML report over every evaluated run (and the training curves), against the first run."""
    from crosearch.eval.html_report import write_page
    from crosearch.eval.report import build_report, report_figures

    report = build_report(runs, ["em", "f1", "searches"], baseline=runs[0])
    curves = _curves(out / "sft", out / "grpo") if train else []
    return write_page(report, out / "report", report_figures(report, curves), title="crosearch quickstart")


def _print_advantages(advantages: list[list[float]], console) -> None:
    """GRPO learns from the spread of rewards within a group: show each step's advantages."""
    for number, values in enumerate(advantages, start=1):
        shown = " ".join(f"{v:+.3f}" for v in values)
        signal = "non-zero: this step has a gradient" if any(abs(v) > 1e-6 for v in values) else "all zero: no signal"
        console.print(f"GRPO step {number} advantages: {shown} ({signal})", highlight=False)


def _curves(sft_dir: Path, grpo_dir: Path) -> list:
    from crosearch.errors import CrosearchError
    from crosearch.rl.curve import read_log_history

    curves = []
    for directory in (sft_dir, grpo_dir):
        try:
            curves.append((directory.name, read_log_history(directory)[0]))
        except CrosearchError:  # an interrupted run without a log yet: the page goes without its curve
            pass
    return curves


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
