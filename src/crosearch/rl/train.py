"""GRPO training (``crosearch train``): TRL's GRPOTrainer with our rollout engine as ``rollout_func``.

TRL does the optimisation (group advantages, clipped policy loss, KL, LoRA via
PEFT, accelerate/DeepSpeed, TensorBoard); we provide the rollouts
(:mod:`crosearch.rl.rollout`), the rewards (:mod:`crosearch.rl.rewards`),
checkpoints that are never resumed half-written (:mod:`crosearch.rl.checkpoints`)
and per-phase timings. The set-up shared with the warm start is :mod:`crosearch.rl.run`;
TRL's private API is reached only through :mod:`crosearch.rl.trl_compat`.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import resource
import sys
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from crosearch.config import Config
from crosearch.errors import ConfigError
from crosearch.rl.trl_compat import step_metrics, trl_version


def _peak_rss_gb() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024**3 if sys.platform == "darwin" else 1024**2)


def _current_rss_gb() -> float | None:
    """Resident memory now (Linux only): the peak alone cannot show whether memory creeps over steps."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * resource.getpagesize() / 1024**3


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or None where there is none (macOS, musl)."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _release_freed_memory() -> None:
    """Hands freed heap back to the OS after each step.

    Rollouts of varying length leave glibc's arenas fragmented, which shows up as resident
    memory creeping over steps although nothing is leaked; ``malloc_trim`` returns it.
    """
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class PhaseTimer(TrainerCallback):
    """Adds per-optimizer-step phase times and memory to the trainer's logged metrics.

    ``time/generation`` and ``time/retrieval`` come from the rollout function,
    ``time/logprobs`` is TRL's scoring of the generated batch (old/reference
    log-probs, rewards, advantages) and ``time/update`` the forward/backward
    passes and optimizer step. :meth:`on_batch` observes each generated batch
    (see :func:`crosearch.rl.trl_compat.grpo_trainer_class`).

    Wall times move with whatever else runs on the machine, so the step also logs this
    process's CPU seconds (``time/step_cpu``, and ``time/update_cpu`` from the last generated
    batch to the step's end: the update when a step generates once, as the CPU recipes do) and
    the tokens it trained on (``tokens/total``: prompt + completion, ``tokens/model``: positions
    in the loss), so that cost per token can be compared across steps of different lengths.
    """

    def __init__(self, rollout: Any) -> None:
        self.rollout = rollout
        self.trainer: Any = None
        self._step_start = 0.0
        self._cpu_start = 0.0
        self._cpu_after_batch: float | None = None
        self._rollout_seen = 0.0
        self.phases = {"score": 0.0, "rollout": 0.0}
        self.tokens = {"total": 0.0, "model": 0.0}

    def on_batch(self, output: dict[str, Any], seconds: float) -> None:
        # Rollouts run only inside batch generation, so the rollout time since the last batch is this batch's.
        spent_rolling = self.rollout.times.rollout_total - self._rollout_seen
        self._rollout_seen = self.rollout.times.rollout_total
        self.phases["rollout"] += spent_rolling
        self.phases["score"] += seconds - spent_rolling
        self._cpu_after_batch = time.process_time()
        completion = output.get("completion_mask")
        if completion is not None:
            prompt = output.get("prompt_mask")
            env = output.get("tool_mask")
            self.tokens["total"] += float(completion.sum()) + (float(prompt.sum()) if prompt is not None else 0.0)
            self.tokens["model"] += float((completion * env).sum() if env is not None else completion.sum())

    def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001 - TrainerCallback signature
        self._step_start = time.perf_counter()
        self._cpu_start = time.process_time()
        self._cpu_after_batch = None
        self._rollout_seen = self.rollout.times.rollout_total
        self.phases = {"score": 0.0, "rollout": 0.0}
        self.tokens = {"total": 0.0, "model": 0.0}
        return control

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if self.trainer is None:
            return control
        total = time.perf_counter() - self._step_start
        metrics = step_metrics(self.trainer)
        metrics["time/step"].append(total)
        metrics["time/logprobs"].append(self.phases["score"])
        metrics["time/update"].append(max(0.0, total - self.phases["score"] - self.phases["rollout"]))
        cpu_now = time.process_time()
        metrics["time/step_cpu"].append(cpu_now - self._cpu_start)
        if self._cpu_after_batch is not None:
            metrics["time/update_cpu"].append(cpu_now - self._cpu_after_batch)
        if self.tokens["total"]:
            metrics["tokens/total"].append(self.tokens["total"])
            metrics["tokens/model"].append(self.tokens["model"])
        metrics["memory/peak_rss_gb"].append(_peak_rss_gb())
        _release_freed_memory()
        rss = _current_rss_gb()
        if rss is not None:
            metrics["memory/rss_gb"].append(rss)
        return control


def _keep_batch(kept: list[dict[str, Any]]) -> Any:
    """A batch observer that keeps the masks, ids and advantages TRL built (for checks and tests)."""

    def observe(output: dict[str, Any], seconds: float) -> None:
        kept.append(
            {
                k: v.detach().cpu() if hasattr(v, "detach") else v
                for k, v in output.items()
                if k in ("completion_ids", "completion_mask", "tool_mask", "advantages")
            }
        )

    return observe


# GRPOConfig options crosearch sets itself, from its own keys or because the rollout function needs them.
OWN_OPTIONS = {
    "output_dir": "train.output_dir",
    "num_generations": "train.num_generations",
    "per_device_train_batch_size": "train.micro_batch_size",
    "gradient_accumulation_steps": "train.micro_batch_size",
    "max_steps": "train.max_steps",
    "learning_rate": "train.learning_rate",
    "beta": "train.beta",
    "reward_weights": "train.reward_weights",
    "bf16": "train.bf16",
    "use_cpu": "model.device",
    "save_steps": "train.save_steps",
    "seed": "train.seed",
    "use_vllm": "train.use_vllm",
    "temperature": "agent.temperature",
    "max_completion_length": "agent.max_total_tokens",
    "mask_truncated_completions": None,
    "remove_unused_columns": None,
    "save_strategy": None,
    "report_to": None,
}
# Where crosearch's defaults differ from GRPOConfig's; train.trl_args overrides them.
TRL_DEFAULTS: dict[str, Any] = {
    "lr_scheduler_type": "constant",  # GRPOConfig: linear (decays to 0 by max_steps)
    # GRPOConfig: True (recomputes activations in backward; the CPU recipes need no memory relief)
    "gradient_checkpointing": False,
    "save_total_limit": 3,  # GRPOConfig: None (every checkpoint kept)
    "logging_steps": 1,  # GRPOConfig: 10 (short runs would log almost nothing)
    "disable_tqdm": False,  # GRPOConfig: None (then off above the warning log level)
}


def check_trl_args(trl_args: dict[str, Any]) -> None:
    """Reject ``train.trl_args`` keys that GRPOConfig does not have or that crosearch sets itself."""
    import dataclasses
    import difflib

    from trl import GRPOConfig

    known = {f.name for f in dataclasses.fields(GRPOConfig)}
    unknown = sorted(set(trl_args) - known)
    if unknown:
        hints = [
            f"{k} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(k, known, n=1)) else k for k in unknown
        ]
        raise ConfigError(f"train.trl_args: not options of TRL's GRPOConfig (TRL {trl_version()}): {', '.join(hints)}")
    own = sorted(set(trl_args) & set(OWN_OPTIONS))
    if own:
        where = [
            f"{k} (set from {OWN_OPTIONS[k]})" if OWN_OPTIONS[k] else f"{k} (fixed: the rollout function needs it)"
            for k in own
        ]
        raise ConfigError(f"train.trl_args: crosearch sets these GRPOConfig options itself: {', '.join(where)}")


def _grpo_args(config: Config, out: Path, bf16: bool, use_cpu: bool) -> Any:
    from trl import GRPOConfig

    from crosearch.rl.rewards import build_rewards

    t = config.train
    per_step = t.num_generations * t.questions_per_step
    micro = t.micro_batch_size or per_step
    if per_step % micro:
        raise ConfigError(
            f"train.micro_batch_size ({micro}) must divide num_generations x questions_per_step ({per_step})"
        )
    _, weights = build_rewards(t.reward_weights)
    agent = config.agent
    check_trl_args(t.trl_args)
    try:
        return GRPOConfig(
            output_dir=str(out),
            num_generations=t.num_generations,
            per_device_train_batch_size=micro,
            gradient_accumulation_steps=per_step // micro,
            max_steps=t.max_steps,
            learning_rate=t.learning_rate,
            beta=t.beta,
            reward_weights=weights,
            # TRL recomputes log-probs at this temperature; it must be the sampling temperature.
            temperature=agent.temperature if agent.temperature > 0 else 1.0,
            max_completion_length=agent.max_total_tokens,
            mask_truncated_completions=False,
            bf16=bf16,
            use_cpu=use_cpu,
            save_strategy="steps",
            save_steps=t.save_steps,
            seed=t.seed,
            remove_unused_columns=False,
            use_vllm=t.use_vllm,
            report_to=["tensorboard"],
            **{**TRL_DEFAULTS, **t.trl_args},
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"TRL's GRPOConfig refused the training options (train.* and train.trl_args): {exc}"
        ) from None


def _adapter_identity(adapter: str | None) -> dict[str, Any] | None:
    """Where an adapter is and what its files hold, so a retrained adapter at the same path is told apart."""
    if not adapter:
        return None
    from crosearch.io import describe_files

    files = describe_files(adapter)
    return {"path": str(Path(adapter).resolve()), "files": {name: info["sha256"] for name, info in files.items()}}


def _prepare_model(config: Config, out: Path) -> tuple[Any, Any, Any]:
    """The policy to train and the PEFT config TRL should apply (None when the model is already a PeftModel)."""
    from crosearch.adapters import resolve_adapter
    from crosearch.models import load_policy
    from crosearch.rl.common import lora_config

    t = config.train
    adapter = resolve_adapter(config.model.adapter, model=config.model.name)
    policy = load_policy(config.model.model_copy(update={"adapter": None}))
    model: Any = policy.model
    tokenizer = policy.tokenizer
    peft = lora_config(t.lora)
    if adapter:
        if not (Path(adapter) / "adapter_config.json").exists():
            raise ConfigError(f"model.adapter: {adapter} is not a PEFT adapter directory (no adapter_config.json)")
        from peft import PeftModel

        if t.adapter_mode == "continue":
            if peft is None:
                raise ConfigError(
                    "train.adapter_mode=continue keeps training a LoRA adapter: it needs train.lora.enabled"
                )
            model = PeftModel.from_pretrained(model, adapter, is_trainable=True)
            peft = None
        else:
            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    if t.beta > 0 and peft is None and not hasattr(model, "peft_config"):
        # Without LoRA, TRL builds the reference model from the model's path: make it a real one.
        from crosearch.rl.common import ensure_reference_model

        path = out / "reference-model"
        source = {"model": config.model.name, "adapter": _adapter_identity(adapter), "adapter_mode": t.adapter_mode}
        ensure_reference_model(model, tokenizer, path, source)
        model.config.name_or_path = str(path)
    return model, tokenizer, peft


def run_train(
    config: Config,
    *,
    resume: bool = False,
    keep_batches: bool = False,
    backend_factory: Any = None,
    score_model_tokens: bool = True,
) -> dict[str, Any]:
    """Train with GRPO; returns a summary (also written to ``train.output_dir/summary.json``).

    ``backend_factory(model, tokenizer)`` replaces the generation backend (default:
    :class:`~crosearch.agent.backends.HFBackend`, or vLLM with ``train.use_vllm``);
    ``keep_batches`` keeps the batches TRL built (masks, ids, advantages) in the summary;
    ``score_model_tokens=False`` runs TRL's own per-token log-probs (the LM head at every position),
    the baseline ``benchmarks/bench_grpo_step.py`` compares with.
    """
    from crosearch.agent.backends import HFBackend
    from crosearch.agent.engine import RolloutEngine
    from crosearch.agent.prompts import PromptBuilder
    from crosearch.rl.checkpoints import CompletionMarkerCallback
    from crosearch.rl.common import model_device
    from crosearch.rl.rewards import build_rewards
    from crosearch.rl.rollout import (
        RolloutFunction,
        TimedRetriever,
        check_group_mode,
        rows_to_dataset,
        training_rows,
    )
    from crosearch.rl.run import finish_run, prepare_run, train_bf16, train_resumable
    from crosearch.rl.trl_compat import check_trl, grpo_trainer_class, vllm_llm

    t = config.train
    # These fail in seconds, before the benchmark, the index or the model are built.
    check_trl()
    check_trl_args(t.trl_args)
    check_group_mode(config)
    ctx = prepare_run(config, output_dir=t.output_dir, benchmark=t.benchmark, seed=t.seed, resume=resume)
    retriever = TimedRetriever(ctx.retriever)
    check_group_mode(config, retriever.languages)
    rows = training_rows(config, ctx.bench.train)
    model, tokenizer, peft = _prepare_model(config, ctx.out)

    def make_engine(policy_model: Any) -> Any:
        if backend_factory is not None:
            backend = backend_factory(policy_model, tokenizer)
        elif t.use_vllm:
            from crosearch.agent.backends import VLLMBackend

            backend = VLLMBackend(vllm_llm(trainer), tokenizer)
        else:
            backend = HFBackend(policy_model, tokenizer)
        return RolloutEngine.from_config(backend, retriever, config, model=policy_model)

    rollout = RolloutFunction(
        rows=rows,
        make_engine=make_engine,
        retriever=retriever,
        prompt_builder=PromptBuilder.from_config(config.agent),
        log_dir=ctx.out if t.rollout_log else None,
    )
    reward_funcs, _ = build_rewards(t.reward_weights)
    timer = PhaseTimer(rollout)
    kept: list[dict[str, Any]] = []
    trainer = grpo_trainer_class()(
        model=model,
        reward_funcs=reward_funcs,
        args=_grpo_args(config, ctx.out, train_bf16(t.bf16, model), model_device(model) == "cpu"),
        train_dataset=rows_to_dataset(rows),
        processing_class=tokenizer,
        peft_config=peft,
        rollout_func=rollout,
        callbacks=[CompletionMarkerCallback(), timer],
        batch_observers=[timer.on_batch, *([_keep_batch(kept)] if keep_batches else [])],
        score_model_tokens=score_model_tokens,
    )
    timer.trainer = trainer
    outcome = train_resumable(ctx, trainer)
    summary = finish_run(
        ctx,
        trainer,
        trainer.model,
        tokenizer,
        outcome,
        {
            "seconds": outcome.seconds,
            "peak_rss_gb": _peak_rss_gb(),
            "rows": len(rows),
        },
    )
    if keep_batches:
        summary["kept_batches"] = kept
        summary["trainer"] = trainer
    return summary
