"""The stage planner: an experiment recipe as an ordered list of stages.

A stage's name is also where it writes: ``work_dir/<name>`` for its bulky outputs and
``results_dir/<name>`` for its committable result. The order puts what the main comparison
needs first: data, the warm start, the tuning runs (variants of the shared recipe compared on
the validation split, when the recipe has a ``tuning`` section), the warm start's evaluations,
then each arm's GRPO run followed at once by that arm's evaluations (a trained adapter is
evaluated before anything else can lose it), then the untrained baselines, the extra seeds, and
the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from crosearch.config import Config
from crosearch.experiment.recipe import ResolvedRecipe

Kind = Literal["benchmark", "index", "warm-start", "train", "eval", "report"]
WARM_START = "warm-start"


@dataclass(frozen=True, slots=True)
class ReportPart:
    """One table group of the report: a setting's evaluations, compared with the baseline's."""

    title: str
    evals: tuple[str, ...]
    baseline: str | None


@dataclass(frozen=True, slots=True)
class Stage:
    """One unit of work; ``needs`` are stages whose outputs it reads (rebuilt first when missing)."""

    name: str
    kind: Kind
    needs: tuple[str, ...] = ()
    estimate: float = 0.0
    setting: str | None = None  # benchmark: its data.setting; eval: the setting it is evaluated in
    source: str | None = None  # benchmark: a data.source other than the recipe's
    benchmark: str | None = None  # the benchmark stage it reads
    index: str | None = None  # the index stage it searches
    arm: str | None = None  # train / eval of a trained arm: whose overrides apply
    variant: str | None = None  # train / eval of a tuning run: the variant's overrides apply on top of the arm's
    seed: int | None = None  # train: the training seed
    pipeline: str | None = None  # eval: the `crosearch eval qa` pipeline
    strategy: str | None = None  # eval of the warm start: the integration strategy
    adapter_from: str | None = None  # the stage whose final adapter the policy loads
    split: str = "test"
    per_lang: int | None = None  # eval: questions per language, when not evaluation.per_lang
    langs: tuple[str, ...] | None = None  # eval: question languages (None = every language of the benchmark)
    parts: tuple[ReportPart, ...] = field(default_factory=tuple)  # report: its tables
    curves: tuple[str, ...] = ()  # report: train stages whose curves are overlaid

    @property
    def label(self) -> str:
        """The last part of the name: the run's column in the report."""
        return self.name.rsplit("/", 1)[-1]


def run_name(arm: str, seed: int, first_seed: int) -> str:
    """A training run's name: the arm for its first seed, ``<arm>-seed<N>`` for the others."""
    return arm if seed == first_seed else f"{arm}-seed{seed}"


def _languages(config: Config, plan_langs: list[str] | None) -> int:
    return len(plan_langs or config.data.languages or []) or 8


def plan_experiment(resolved: ResolvedRecipe) -> list[Stage]:
    """Every stage of the recipe, in the order they run."""
    recipe = resolved.recipe
    ev = recipe.evaluation
    est = recipe.estimates
    base = resolved.config(evaluation=True)
    dense = base.retrieval.dense_model is not None
    settings = list(dict.fromkeys([recipe.train_setting, *ev.settings, *ev.trained_settings]))
    eval_seconds = (ev.per_lang or 100) * _languages(base, ev.languages) * est.eval_question

    stages: list[Stage] = []
    for setting in settings:
        stages.append(Stage(f"benchmark/{setting}", "benchmark", estimate=est.benchmark, setting=setting))
    for i, setting in enumerate(settings):
        # The first dense index encodes every passage; later ones read the shared embedding cache.
        cost = est.index_passage * est.passages if dense and i == 0 else est.index_cached
        stages.append(
            Stage(f"index/{setting}", "index", (f"benchmark/{setting}",), cost, benchmark=f"benchmark/{setting}")
        )
    train_data = (f"benchmark/{recipe.train_setting}", f"index/{recipe.train_setting}")
    stages.append(
        Stage(
            WARM_START,
            "warm-start",
            train_data,
            base.sft.max_steps * est.sft_step,
            benchmark=train_data[0],
            index=train_data[1],
        )
    )

    if recipe.tuning is not None:
        # Tuned first: its report is what the budget the arms share is chosen from.
        stages += tuning_stages(resolved, train_data)

    def evaluation(setting: str, label: str, **kw: str | None) -> Stage:
        adapter = kw.get("adapter_from")
        needs = (f"benchmark/{setting}", f"index/{setting}", *((adapter,) if adapter else ()))
        return Stage(
            f"eval/{setting}/{label}",
            "eval",
            needs,
            eval_seconds,
            setting=setting,
            benchmark=f"benchmark/{setting}",
            index=f"index/{setting}",
            split=ev.split,
            langs=tuple(ev.languages) if ev.languages else None,
            **kw,  # type: ignore[arg-type]
        )

    for setting in ev.settings:
        for strategy in ev.warm_start_strategies:
            stages.append(
                evaluation(
                    setting,
                    f"warm-start-{strategy}",
                    pipeline="search-agent",
                    strategy=strategy,
                    adapter_from=WARM_START,
                )
            )

    first = recipe.seeds[0]
    trained: list[str] = []

    def arm_stages(arm: str, seed: int) -> list[Stage]:
        config = resolved.config(arm=arm)
        t = config.train
        name = run_name(arm, seed, first)
        train = Stage(
            f"train/{name}",
            "train",
            (*train_data, WARM_START),
            t.max_steps * t.questions_per_step * t.num_generations * est.grpo_rollout,
            benchmark=train_data[0],
            index=train_data[1],
            arm=arm,
            seed=seed,
            adapter_from=WARM_START,
        )
        trained.append(train.name)
        evals = [
            evaluation(setting, name, pipeline="search-agent", arm=arm, adapter_from=train.name)
            for setting in dict.fromkeys([*ev.settings, *ev.trained_settings])
        ]
        return [train, *evals]

    for arm in recipe.arms:
        stages += arm_stages(arm, first)
    for setting in ev.settings:
        for pipeline in ev.baselines:
            stages.append(evaluation(setting, pipeline, pipeline=pipeline))
    for arm in recipe.arms:
        for seed in [*recipe.seeds[1:], *recipe.extra_seeds.get(arm, [])]:
            stages += arm_stages(arm, seed)

    stages.append(report_stage(stages, recipe.report.baseline, "report"))
    return stages


TUNING = "tune"


def tuning_stages(resolved: ResolvedRecipe, train_data: tuple[str, str]) -> list[Stage]:
    """The tuning runs: each variant trained briefly from the warm start, then every variant and the warm start
    itself evaluated on the same validation questions, and a report of each variant's rise over the warm start."""
    tuning = resolved.recipe.tuning
    assert tuning is not None
    est = resolved.recipe.estimates
    benchmark, index = train_data
    base = resolved.config(arm=tuning.arm, evaluation=True)
    eval_seconds = tuning.per_lang * _languages(base, None) * est.eval_question

    def validation(label: str, adapter: str, variant: str | None) -> Stage:
        return Stage(
            f"{TUNING}/eval/{label}",
            "eval",
            (benchmark, index, adapter),
            eval_seconds,
            benchmark=benchmark,
            index=index,
            arm=tuning.arm,
            variant=variant,
            pipeline="search-agent",
            adapter_from=adapter,
            split="validation",
            per_lang=tuning.per_lang,
        )

    stages = [validation(WARM_START, WARM_START, None)]
    for variant in tuning.variants:
        t = resolved.config(arm=tuning.arm, variant=variant).train
        train = Stage(
            f"{TUNING}/train/{variant}",
            "train",
            (*train_data, WARM_START),
            t.max_steps * t.questions_per_step * t.num_generations * est.grpo_rollout,
            benchmark=benchmark,
            index=index,
            arm=tuning.arm,
            variant=variant,
            seed=resolved.recipe.seeds[0],
            adapter_from=WARM_START,
        )
        stages += [train, validation(variant, train.name, variant)]
    evals = tuple(s.name for s in stages if s.kind == "eval")
    curves = tuple(s.name for s in stages if s.kind == "train")
    part = ReportPart("validation (tuning)", evals, evals[0])
    stages.append(Stage(f"{TUNING}/report", "report", estimate=30.0, parts=(part,), curves=curves))
    return stages


def report_stage(stages: list[Stage], baseline_label: str, name: str) -> Stage:
    """The report over every evaluation of ``stages``: one part per setting, the baseline first."""
    parts = []
    by_setting: dict[str, list[Stage]] = {}
    for stage in stages:
        if stage.kind == "eval" and stage.setting is not None:
            by_setting.setdefault(stage.setting, []).append(stage)
    for setting, evals in by_setting.items():
        base = next((s.name for s in evals if s.label == baseline_label), None)
        ordered = [s.name for s in evals if s.name == base] + [s.name for s in evals if s.name != base]
        parts.append(ReportPart(setting, tuple(ordered), base))
    curves = tuple(s.name for s in stages if s.kind == "train" and s.variant is None)
    return Stage(name, "report", estimate=30.0, parts=tuple(parts), curves=curves)


def plan_generalisation(resolved: ResolvedRecipe, source: str, name: str, setting: str = "full") -> list[Stage]:
    """The trained arms (first seeds) on a benchmark built from other XQuAD-format files, reported apart."""
    recipe = resolved.recipe
    est = recipe.estimates
    root = f"generalisation/{name}"
    base = resolved.config(evaluation=True)
    bench, index = f"{root}/benchmark", f"{root}/index"
    stages = [
        Stage(bench, "benchmark", estimate=est.benchmark, setting=setting, source=source),
        Stage(index, "index", (bench,), est.index_cached, benchmark=bench),
    ]
    per_run = (recipe.evaluation.per_lang or 100) * _languages(base, None) * est.eval_question
    for arm in recipe.arms:
        train = f"train/{arm}"
        stages.append(
            Stage(
                f"{root}/eval/{arm}",
                "eval",
                (bench, index, train),
                per_run,
                setting=setting,
                benchmark=bench,
                index=index,
                arm=arm,
                pipeline="search-agent",
                adapter_from=train,
                split=recipe.evaluation.split,
            )
        )
    report = report_stage(stages, recipe.report.baseline, f"{root}/report")
    stages.append(
        Stage(
            report.name,
            "report",
            estimate=report.estimate,
            parts=tuple(ReportPart(f"{name} ({setting})", p.evals, p.baseline) for p in report.parts),
        )
    )
    return stages
