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
    missing = missing_internals(trainer_class)
    if missing:
        raise TrlCompatError(
            f"TRL {version}: {trainer_class.__name__} no longer has {', '.join(missing)}, which "
            f"crosearch/rl/trl_compat.py relies on; install trl>={TRL_MIN},<{TRL_BELOW} as tested, "
            "or adapt that module"
        )
    return version


@functools.cache
def grpo_trainer_class() -> type:
    """GRPOTrainer that hands every batch it generated and scored to its ``batch_observers``."""
    from trl import GRPOTrainer

    class ObservedGRPOTrainer(GRPOTrainer):
        def __init__(self, *args: Any, batch_observers: list[BatchObserver] | None = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.batch_observers = list(batch_observers or [])

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
