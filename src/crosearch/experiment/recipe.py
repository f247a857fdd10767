"""The experiment recipe: a base crosearch configuration, named arms, a shared budget, the evaluation plan.

An arm is a mapping of dotted overrides (``crosslingual.strategy: mono``), applied to the base the
way ``--set`` is. Every arm is validated when the recipe is loaded, so a typo fails at once with the
arm's name and the key, not hours later when that arm's training starts. Keys the runner sets
itself (where each stage reads and writes) and keys the shared budget fixes cannot be set by an
arm: the arms differ only in what the comparison is about.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from crosearch.config import Config, apply_overrides, as_overrides, read_yaml_mapping, validate_config
from crosearch.errors import ConfigError, CrosearchError
from crosearch.names import check_name

Setting = Literal["full", "gap", "no-native"]
Baseline = Literal["direct", "rag-mono", "rag-concat", "rag-crosslingual"]
Strategy = Literal["mono", "concat", "crosslingual"]

# Keys each stage sets from the plan (where it reads and writes); an arm or the budget setting them
# would be overwritten silently, so they are refused with this reason.
RUNNER_KEYS = {
    "data.setting": "the setting of each benchmark comes from evaluation.settings and train_setting",
    "sft.benchmark": "the runner builds the benchmarks under work_dir",
    "sft.output_dir": "the runner places the warm start under work_dir",
    "train.benchmark": "the runner builds the benchmarks under work_dir",
    "train.output_dir": "the runner places each GRPO run under work_dir",
    "train.seed": "training seeds come from seeds and extra_seeds",
    "retrieval.index_dir": "the runner builds one index per setting under work_dir",
    "model.adapter": "the arms start from the shared warm start",
    "eval.per_lang": "evaluation.per_lang fixes the test sample",
    "eval.seed": "evaluation.seed fixes the test sample",
}
# Sections shared by every arm: one benchmark and one warm start serve the whole comparison.
SHARED_SECTIONS = {"data": "the benchmark is shared by every arm", "sft": "the warm start is shared by every arm"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EvaluationPlan(_Strict):
    """What is evaluated where: one fixed, stratified test sample for every run."""

    settings: list[Setting] = Field(
        default_factory=lambda: list[Setting](["gap", "no-native"]),
        min_length=1,
        description="settings every run is evaluated in",
    )
    trained_settings: list[Setting] = Field(
        default_factory=lambda: list[Setting](["full"]),
        description="further settings for the trained arms only (a sanity check)",
    )
    # Any split `crosearch eval qa --split` accepts (it checks the name).
    split: str = "test"
    per_lang: int | None = Field(30, ge=1, description="questions per language (the same parallel groups in each)")
    seed: int = Field(0, description="seed of the per-language sample")
    languages: list[str] | None = Field(None, description="question languages (None = every benchmark language)")
    baselines: list[Baseline] = Field(
        default_factory=lambda: list[Baseline](["direct", "rag-mono", "rag-concat", "rag-crosslingual"]),
        description="untrained pipelines of `crosearch eval qa` (the base model, no adapter)",
    )
    warm_start_strategies: list[Strategy] = Field(
        default_factory=lambda: list[Strategy](["mono", "concat", "crosslingual"]),
        description="the warm start alone, as a search agent, under each of these strategies",
    )
    overrides: dict[str, Any] = Field(
        default_factory=lambda: {"eval.temperature": 0.0},
        description="dotted overrides every evaluation gets (greedy decoding by default)",
    )


class ReportPlan(_Strict):
    """The statistics of ``crosearch report`` over the evaluations of each setting."""

    baseline: str = Field("search-r1", description="the arm every other run is compared with, question by question")
    metrics: list[str] = Field(
        default_factory=lambda: ["em", "f1", "char3", "lang_match", "searches", "evidence_hit", "n"],
        description="metrics of the tables (names of `crosearch report --metrics`)",
    )
    resamples: int = Field(2000, ge=1, description="bootstrap resamples of the 95% intervals")
    seed: int = 0
    curves: list[str] = Field(
        default_factory=lambda: [
            "reward",
            "rewards/exact_match/mean",
            "rewards/f1/mean",
            "rewards/format/mean",
            "rollout/searches",
            "rollout/model_tokens",
        ],
        description="logged training metrics drawn in the overlaid curves (one panel each)",
    )


class TuningPlan(_Strict):
    """Short GRPO runs of the shared recipe's variants, compared on the validation split before the arms run.

    Each variant is a mapping of dotted overrides on top of the budget and the tuned arm (sampling
    temperature, group size and questions per step, TRL's loss type, the reward mix, the learning
    rate). It trains ``max_steps`` steps from the shared warm start and is evaluated greedily on
    ``per_lang`` validation questions per language, next to the warm start on the same questions;
    the tuning report gives each variant's paired difference from the warm start (its rise). The
    recipe's author then writes the chosen variant into the budget: the pick is a decision on the
    record, not a side effect of a run.
    """

    arm: str = Field(description="the arm whose configuration is tuned (the baseline arm tunes in its favour)")
    max_steps: int = Field(10, ge=1, description="GRPO steps of each variant's run")
    per_lang: int = Field(10, ge=1, description="validation questions per language")
    variants: dict[str, dict[str, Any]] = Field(min_length=1, description="variant name -> dotted overrides")

    @field_validator("variants")
    @classmethod
    def _variant_names(cls, variants: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, overrides in variants.items():
            _checked_name(name, "tuning variant name")
            if not isinstance(overrides, dict):
                kind = type(overrides).__name__
                raise ValueError(f"variant '{name}' must be a mapping of dotted overrides, got {kind}")
        return variants


class Estimates(_Strict):
    """Seconds per unit of work, for the planned budget (``--dry-run``); measured on the 2-core machine.

    Defaults: GRPO 67.5 s per step of 8 rollouts (configs/grpo-cpu.yaml, bf16, docs/training.md);
    the warm start 75 steps in 10 minutes; dense encoding 2.2 passages/s at nice 10
    (docs/retrieval.md); greedy search-agent evaluation 2.4-2.5 s per question (issue 17).
    A finished stage's own wall time replaces its estimate.
    """

    benchmark: float = Field(30.0, ge=0, description="seconds per benchmark build")
    index_passage: float = Field(0.45, ge=0, description="seconds per passage of the first index (dense encoding)")
    index_cached: float = Field(30.0, ge=0, description="seconds per later index (embeddings from the shared cache)")
    sft_step: float = Field(8.0, ge=0, description="seconds per warm-start step")
    grpo_rollout: float = Field(8.5, ge=0, description="seconds per GRPO rollout (a step is groups x group size)")
    eval_question: float = Field(2.5, ge=0, description="seconds per evaluated question")
    passages: int = Field(4419, ge=1, description="passages of the largest collection (8 XQuAD languages, windows)")


class Recipe(_Strict):
    """A whole comparison: what to train, how much, and how to evaluate and report it."""

    name: str = Field(description="the experiment's name (lock file, messages)")
    base: str | dict[str, Any] = Field(
        description="the base configuration: a crosearch YAML recipe path, or its sections inline"
    )
    results_dir: str = Field(
        "benchmarks/results/experiment",
        description="small, committable results: stage markers, metrics, summaries, curves, report tables",
    )
    work_dir: str = Field(
        "runs/experiment", description="bulky outputs: benchmarks, indexes, checkpoints, full predictions"
    )
    keep_adapters: bool = Field(
        True,
        description="copy each final LoRA adapter into results_dir (bf16 safetensors, a few MB), so an "
        "evaluation never has to train an arm again when work_dir is lost",
    )
    train_setting: Setting = Field("gap", description="the setting whose train split the warm start and GRPO use")
    budget: dict[str, Any] = Field(
        default_factory=dict,
        description="dotted overrides every arm shares (steps, questions per step, group size, learning rate); "
        "an arm may not change them",
    )
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="training seeds of every arm")
    extra_seeds: dict[str, list[int]] = Field(
        default_factory=dict, description="further training seeds of some arms, run after every first-seed stage"
    )
    arms: dict[str, dict[str, Any]] = Field(min_length=1, description="arm name -> dotted overrides of the base")
    evaluation: EvaluationPlan = EvaluationPlan()
    report: ReportPlan = ReportPlan()
    tuning: TuningPlan | None = Field(None, description="variants of the shared recipe tried on validation first")
    estimates: Estimates = Estimates()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _checked_name(value, "experiment name")

    @field_validator("arms")
    @classmethod
    def _arm_names(cls, arms: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, overrides in arms.items():
            _checked_name(name, "arm name")
            if not isinstance(overrides, dict):
                raise ValueError(f"arm '{name}' must be a mapping of dotted overrides, got {type(overrides).__name__}")
        return arms

    @model_validator(mode="after")
    def _references(self) -> Recipe:
        for arm in self.extra_seeds:
            if arm not in self.arms:
                raise ValueError(f"extra_seeds names '{arm}', which is not an arm ({', '.join(self.arms)})")
        if self.report.baseline not in self.arms:
            raise ValueError(f"report.baseline '{self.report.baseline}' is not an arm ({', '.join(self.arms)})")
        if self.tuning is not None and self.tuning.arm not in self.arms:
            raise ValueError(f"tuning.arm '{self.tuning.arm}' is not an arm ({', '.join(self.arms)})")
        return self


def _checked_name(value: str, what: str) -> str:
    """:func:`check_name` inside a validator (pydantic collects ValueErrors into one report)."""
    try:
        return check_name(value, what)
    except CrosearchError as exc:
        raise ValueError(str(exc)) from None


def load_recipe(path: str | Path) -> ResolvedRecipe:
    """Read and validate an experiment recipe; every arm's configuration is checked here."""
    path = Path(path)
    raw = read_yaml_mapping(path, what="experiment keys (name, base, arms, ...)")
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        lines = [f"invalid experiment recipe ({path}):"]
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            message = err["msg"].removeprefix("Value error, ")
            lines.append(f"  {key}: {message}" if key else f"  {message}")
        raise ConfigError("\n".join(lines)) from None
    resolved = ResolvedRecipe(recipe, path)
    resolved.check_arms()
    return resolved


class ResolvedRecipe:
    """A recipe with its base loaded: builds the configuration of each stage."""

    def __init__(self, recipe: Recipe, path: str | Path) -> None:
        self.recipe = recipe
        self.path = Path(path)
        self.base = _load_base(recipe.base, self.path)

    def check_arms(self) -> None:
        """Refuse arms that set the runner's or the budget's keys, or whose configuration does not validate."""
        for key in self.recipe.budget:
            _refuse(key, RUNNER_KEYS, f"{self.path}, budget")
        for key in self.recipe.evaluation.overrides:
            _refuse(key, RUNNER_KEYS, f"{self.path}, evaluation.overrides")
        for arm, overrides in self.recipe.arms.items():
            where = f"{self.path}, arm '{arm}'"
            for key in overrides:
                _refuse(key, RUNNER_KEYS, where)
                section = key.split(".", 1)[0]
                if section in SHARED_SECTIONS:
                    raise ConfigError(f"{where}: '{key}' cannot differ between arms ({SHARED_SECTIONS[section]})")
                if key in self.recipe.budget:
                    raise ConfigError(
                        f"{where}: '{key}' is fixed by the shared budget ({self.recipe.budget[key]!r}); "
                        "every arm trains with the same budget"
                    )
            self.config(arm=arm, evaluation=True)
        self.config(evaluation=True)
        self._check_tuning()

    def _check_tuning(self) -> None:
        tuning = self.recipe.tuning
        if tuning is None:
            return
        if not self.config().data.validation_fraction:
            raise ConfigError(
                f"{self.path}, tuning: the variants are compared on the validation split, and the base has "
                "none: set data.validation_fraction (whole train articles become validation questions)"
            )
        for variant, overrides in tuning.variants.items():
            where = f"{self.path}, tuning variant '{variant}'"
            for key in overrides:
                _refuse(key, RUNNER_KEYS, where)
                section = key.split(".", 1)[0]
                if section in SHARED_SECTIONS:
                    raise ConfigError(f"{where}: '{key}' cannot be tuned here ({SHARED_SECTIONS[section]})")
            self.config(arm=tuning.arm, variant=variant, evaluation=True)

    def config(
        self,
        *,
        arm: str | None = None,
        variant: str | None = None,
        evaluation: bool = False,
        stage: dict[str, Any] | None = None,
    ) -> Config:
        """The base, then the budget, the arm's overrides, the tuning variant's (with the tuning's step
        count), the evaluation's (when ``evaluation``) and the stage's own keys (``stage``: where it
        reads and writes), validated."""
        raw = copy.deepcopy(self.base)
        layers: list[tuple[str, dict[str, Any]]] = [("budget", self.recipe.budget)]
        if arm is not None:
            layers.append((f"arm '{arm}'", self.recipe.arms[arm]))
        if variant is not None:
            tuning = self.recipe.tuning
            assert tuning is not None
            layers.append(
                (f"tuning variant '{variant}'", {**tuning.variants[variant], "train.max_steps": tuning.max_steps})
            )
        if evaluation:
            layers.append(("evaluation.overrides", self.recipe.evaluation.overrides))
        layers.append(("stage", stage or {}))
        source = f"{self.path}" + (f", arm '{arm}'" if arm else ", base")
        source += f", variant '{variant}'" if variant else ""
        for label, overrides in layers:
            try:
                apply_overrides(raw, as_overrides(overrides))
            except ConfigError as exc:
                raise ConfigError(f"{self.path}, {label}: {exc}") from None
        return validate_config(raw, source)


def _refuse(key: str, reserved: dict[str, str], where: str) -> None:
    if key in reserved:
        raise ConfigError(f"{where}: '{key}' is set by the experiment runner ({reserved[key]})")


def _load_base(base: str | dict[str, Any], recipe_path: Path) -> dict[str, Any]:
    """The base sections: inline, or read from a YAML recipe path (relative to the working directory)."""
    if isinstance(base, dict):
        return copy.deepcopy(base)
    try:
        return read_yaml_mapping(base)
    except ConfigError as exc:
        raise ConfigError(f"{recipe_path}, base: {exc}") from None
