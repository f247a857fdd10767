"""Every use of TRL's private API, in one place, checked against the installed TRL.

GRPO training needs four things TRL does not publish: the per-step metrics dict
(``GRPOTrainer._metrics``, to log phase times and memory beside TRL's own), the
per-batch metric logger (``_log_metric``, the same one TRL hands reward functions
as ``log_metric``), the method that generates and scores one batch
(``_generate_and_score_completions``, overridden to time it and to observe the
batch), and the colocated vLLM engine (``vllm_generation.llm``). They can move in
any TRL release, so :func:`check_trl` runs before training starts and names the
TRL version and the missing internal instead of failing mid-run with an
``AttributeError``; ``tests/test_trl_compat.py`` checks them on the installed TRL.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from crosearch.errors import TrlCompatError

# The range pyproject.toml allows; the internals below were read from TRL 1.16.
TRL_MIN, TRL_BELOW = "1.16", "2"
# Methods the trainer class must have, and the instance attributes GRPOTrainer.__init__ must set.
METHODS = ("_generate_and_score_completions", "_log_metric")
INSTANCE_ATTRIBUTES = ("_metrics", "vllm_generation")

# The overridden methods, with the leading parameters the overrides rely on (their names and order).
LOGPS_METHODS = {
    "_compute_loss": ("self", "model", "inputs"),
    "_get_per_token_logps_and_entropies": (
        "self", "model", "input_ids", "attention_mask", "logits_to_keep", "batch_size", "compute_entropy",
        "compute_aux_loss",
    ),
}  # fmt: skip

BatchObserver = Callable[[dict[str, Any], float], None]


def trl_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("trl")
    except PackageNotFoundError:
        raise TrlCompatError("TRL is not installed; GRPO training needs trl>=1.16,<2") from None


def missing_internals(trainer_class: type) -> list[str]:
    """The internals this module uses that ``trainer_class`` lacks (empty when all are there)."""
    missing = [name for name in METHODS if not callable(getattr(trainer_class, name, None))]
    try:
        init = inspect.getsource(getattr(trainer_class, "__init__"))  # noqa: B009 - mypy rejects .__init__ on a type
    except (OSError, TypeError):
        init = ""
    # Instance attributes exist only once a trainer is built; their assignment in __init__ is what we can check first.
    missing += [name for name in INSTANCE_ATTRIBUTES if f"self.{name} =" not in init]
    return missing


def missing_logps_internals(trainer_class: type) -> list[str]:
    """The overridden log-prob internals that ``trainer_class`` lacks or whose parameters changed."""
    missing = []
    for name, params in LOGPS_METHODS.items():
        method = getattr(trainer_class, name, None)
        try:
            ok = callable(method) and tuple(inspect.signature(method).parameters)[: len(params)] == params
        except (TypeError, ValueError):
            ok = False
        if not ok:
            missing.append(f"{name}({', '.join(params[1:])})")
    return missing


def check_trl(version: str | None = None, trainer_class: type | None = None) -> str:
    """Raise :class:`TrlCompatError` unless the installed TRL is in range and has every internal used here.

    ``version`` and ``trainer_class`` default to the installed TRL's; returns the version checked.
    """
    from packaging.version import InvalidVersion, Version

    version = version or trl_version()
    try:
        in_range = Version(TRL_MIN) <= Version(version) < Version(TRL_BELOW)
    except InvalidVersion:
        in_range = False
    if not in_range:
        raise TrlCompatError(
            f"TRL {version} is installed; crosearch's GRPO training needs trl>={TRL_MIN},<{TRL_BELOW} "
            f"(pip install 'trl>={TRL_MIN},<{TRL_BELOW}')"
        )
    if trainer_class is None:
        from trl import GRPOTrainer

        trainer_class = GRPOTrainer
    missing = missing_internals(trainer_class) + missing_logps_internals(trainer_class)
    if missing:
        raise TrlCompatError(
            f"TRL {version}: {trainer_class.__name__} no longer has {', '.join(missing)}, which "
            f"crosearch/rl/trl_compat.py relies on; install trl>={TRL_MIN},<{TRL_BELOW} as tested, "
            "or adapt that module"
        )
    return version


@functools.cache
def grpo_trainer_class() -> type:
    """GRPOTrainer that hands every batch it generated and scored to its ``batch_observers``.

    Its update computes log-probs and entropies only where the loss mask (completion mask times env
    mask) is 1; ``score_model_tokens=False`` leaves TRL's per-token log-prob method as it is.
    """
    from trl import GRPOTrainer

    from crosearch.rl.model_token_logps import model_token_logps, supports

    class ObservedGRPOTrainer(GRPOTrainer):
        def __init__(
            self,
            *args: Any,
            batch_observers: list[BatchObserver] | None = None,
            score_model_tokens: bool = True,
            **kwargs: Any,
        ) -> None:
            super().__init__(*args, **kwargs)
            self.batch_observers = list(batch_observers or [])
            self.score_model_tokens = score_model_tokens
            # The loss mask of the batch _compute_loss is scoring; None outside it. Old and reference
            # log-probs (beta > 0, vLLM importance sampling) are computed in _generate_and_score_completions,
            # before TRL has built the mask, so they take TRL's path, which scores every completion position.
            self.score_mask: Any = None

        def _compute_loss(self, model, inputs):  # noqa: ANN001, ANN202 - TRL signature
            if self.score_model_tokens:
                mask = inputs["completion_mask"]
                self.score_mask = mask if "tool_mask" not in inputs else mask * inputs["tool_mask"]
            try:
                return super()._compute_loss(model, inputs)
            finally:
                self.score_mask = None

        def _get_per_token_logps_and_entropies(  # noqa: ANN202 - TRL signature
            self,
            model,  # noqa: ANN001
            input_ids,  # noqa: ANN001
            attention_mask,  # noqa: ANN001
            logits_to_keep,  # noqa: ANN001
            batch_size=None,  # noqa: ANN001
            compute_entropy=False,  # noqa: ANN001
            **kwargs: Any,
        ):
            causal_lm = self._scored_model(model, input_ids, logits_to_keep, kwargs)
            if causal_lm is None:
                return super()._get_per_token_logps_and_entropies(
                    model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, **kwargs
                )
            with self.accelerator.autocast():
                logps, entropies = model_token_logps(
                    causal_lm,
                    input_ids,
                    attention_mask,
                    self.score_mask,
                    temperature=self.temperature,
                    compute_entropy=compute_entropy,
                    batch_size=batch_size,
                    cast_lm_head_to_fp32=getattr(self.args, "cast_lm_head_to_fp32", False),
                )
            return logps, entropies, None

        def _scored_model(self, model: Any, input_ids: Any, logits_to_keep: int, kwargs: dict[str, Any]) -> Any:
            """The causal LM to score model tokens with, or None where TRL's own path must run."""
            mask = self.score_mask
            if mask is None or tuple(mask.shape) != (input_ids.size(0), logits_to_keep):
                return None
            if any(value not in (None, False) for value in kwargs.values()):
                return None  # images, token types or the MoE auxiliary loss: TRL's forward handles them
            # A distributed wrapper (DDP, FSDP, DeepSpeed) must see the forward itself: only a bare model here.
            if self.accelerator.unwrap_model(model) is not model:
                return None
            causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
            return causal_lm if supports(causal_lm) else None

        def _generate_and_score_completions(self, inputs):  # noqa: ANN001 - TRL signature
            start = time.perf_counter()
            output = super()._generate_and_score_completions(inputs)
            elapsed = time.perf_counter() - start
            for observe in self.batch_observers:
                observe(output, elapsed)
            return output

    return ObservedGRPOTrainer


def step_metrics(trainer: Any) -> MutableMapping[str, list[float]]:
    """The trainer's training metrics of the current logging step (name -> values; TRL logs their mean)."""
    return trainer._metrics["train"]


def metric_logger(trainer: Any) -> Callable[[str, float], None] | None:
    """TRL's per-batch metric logger (what reward functions get as ``log_metric``), or None outside a trainer."""
    return getattr(trainer, "_log_metric", None)


def vllm_llm(trainer: Any) -> Any:
    """The vLLM engine TRL built for colocated generation (``use_vllm``, ``vllm_mode: colocate``)."""
    generation = getattr(trainer, "vllm_generation", None)
    if generation is None:
        raise TrlCompatError(
            "train.use_vllm: TRL built no vLLM engine in this process; vLLM generation needs "
            "train.trl_args.vllm_mode: colocate and a GPU"
        )
    return generation.llm
