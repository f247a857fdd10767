"""TRL's private API that GRPO training relies on, checked on the installed TRL.

When a TRL release moves one of these internals, this file fails first and names it;
``crosearch train`` then stops at start-up with the same message instead of mid-run.
"""

from __future__ import annotations

import inspect
from collections import defaultdict

import pytest

from crosearch.errors import CrosearchError, TrlCompatError
from crosearch.rl.trl_compat import (
    TRL_BELOW,
    TRL_MIN,
    check_trl,
    grpo_trainer_class,
    metric_logger,
    missing_internals,
    step_metrics,
    trl_version,
    vllm_llm,
)


def test_installed_trl_is_supported_and_has_every_internal():
    from trl import GRPOTrainer

    assert missing_internals(GRPOTrainer) == []
    assert check_trl() == trl_version()


def test_grpo_trainer_still_routes_batches_through_the_overridden_method():
    """Our subclass observes batches by overriding ``_generate_and_score_completions``: TRL must still call it."""
    from trl import GRPOTrainer

    source = inspect.getsource(GRPOTrainer)
    assert "self._generate_and_score_completions(" in source
    params = list(inspect.signature(GRPOTrainer._generate_and_score_completions).parameters)
    assert params == ["self", "inputs"]
    assert list(inspect.signature(GRPOTrainer._log_metric).parameters) == ["self", "name", "value"]
    observed = grpo_trainer_class()
    assert issubclass(observed, GRPOTrainer)
    assert "_generate_and_score_completions" in vars(observed)


def test_grpo_trainer_metrics_are_per_split_lists():
    """``step_metrics`` appends to ``_metrics["train"][name]``: GRPOTrainer must build it as dicts of lists."""
    from trl import GRPOTrainer

    init = inspect.getsource(GRPOTrainer.__init__)
    assert 'self._metrics = {"train": defaultdict(list)' in init
    holder = type("Holder", (), {})()
    holder._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    step_metrics(holder)["time/step"].append(1.5)
    assert holder._metrics["train"]["time/step"] == [1.5]


def test_trl_outside_the_supported_range_is_a_clear_error():
    with pytest.raises(TrlCompatError) as info:
        check_trl(version="2.0.0")
    message = str(info.value)
    assert "TRL 2.0.0" in message and f"trl>={TRL_MIN},<{TRL_BELOW}" in message
    assert isinstance(info.value, CrosearchError)
    with pytest.raises(TrlCompatError, match="TRL 1.15.2"):
        check_trl(version="1.15.2")


def test_a_trainer_whose_internals_moved_is_named_with_the_missing_ones():
    class MovedGRPOTrainer:
        """What a TRL release with renamed internals would look like."""

        def __init__(self) -> None:
            self.metrics = {}

        def _generate_and_score(self, inputs):  # noqa: ANN001
            return inputs

        def _log_metric(self, name, value):  # noqa: ANN001
            return None

    assert missing_internals(MovedGRPOTrainer) == ["_generate_and_score_completions", "_metrics", "vllm_generation"]
    with pytest.raises(TrlCompatError) as info:
        check_trl(version="1.16.0", trainer_class=MovedGRPOTrainer)
    message = str(info.value)
    assert "TRL 1.16.0" in message and "MovedGRPOTrainer" in message
    assert "_generate_and_score_completions, _metrics, vllm_generation" in message


def test_missing_vllm_engine_and_logger_outside_a_trainer():
    assert metric_logger(object()) is None
    with pytest.raises(TrlCompatError, match="use_vllm"):
        vllm_llm(object())


def test_trl_args_are_checked_against_grpo_config():
    from crosearch.errors import ConfigError
    from crosearch.rl.train import check_trl_args

    check_trl_args({"epsilon": 0.3, "loss_type": "grpo", "warmup_steps": 0.05, "vllm_mode": "colocate"})
    with pytest.raises(ConfigError) as info:
        check_trl_args({"epsilom": 0.3})
    assert "train.trl_args" in str(info.value) and "epsilom (did you mean epsilon?)" in str(info.value)
    assert f"TRL {trl_version()}" in str(info.value)
    with pytest.raises(ConfigError, match=r"max_steps \(set from train.max_steps\)"):
        check_trl_args({"max_steps": 3})


def test_the_overridden_log_prob_methods_are_checked_by_name_and_parameters():
    """The update overrides ``_compute_loss`` and ``_get_per_token_logps_and_entropies``: a change is named."""
    from trl import GRPOTrainer

    from crosearch.rl.trl_compat import missing_logps_internals

    assert missing_logps_internals(GRPOTrainer) == []

    class ReorderedGRPOTrainer(GRPOTrainer):
        def _get_per_token_logps_and_entropies(self, model, input_ids, logits_to_keep, attention_mask):  # noqa: ANN001, ANN202
            return None

    missing = missing_logps_internals(ReorderedGRPOTrainer)
    assert len(missing) == 1 and missing[0].startswith("_get_per_token_logps_and_entropies(model, input_ids")
    with pytest.raises(TrlCompatError, match="_get_per_token_logps_and_entropies"):
        check_trl(version="1.16.0", trainer_class=ReorderedGRPOTrainer)
