"""GRPO training (``crosearch train``): TRL's GRPOTrainer with our rollout engine as ``rollout_func``.

TRL does the optimisation (group advantages, clipped policy loss, KL, LoRA via
PEFT, accelerate/DeepSpeed, TensorBoard); we provide the rollouts
(:mod:`crosearch.rl.rollout`), the rewards (:mod:`crosearch.rl.rewards`),
checkpoints that are never resumed half-written (:mod:`crosearch.rl.checkpoints`)
and per-phase timings.
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
from crosearch.errors import ConfigError, CrosearchError
from crosearch.io import atomic_write_json
from crosearch.rl.common import console


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
    """Adds per-optimizer-step phase times and peak memory to the trainer's logged metrics.

    ``time/generation`` and ``time/retrieval`` come from the rollout function,
    ``time/logprobs`` is TRL's scoring of the generated batch (old/reference
    log-probs, rewards, advantages) and ``time/update`` the forward/backward
    passes and optimizer step.
    """

    def __init__(self) -> None:
        self.trainer: Any = None
        self._step_start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001 - TrainerCallback signature
        self._step_start = time.perf_counter()
        if self.trainer is not None:
            self.trainer._phase_seconds = {"score": 0.0, "rollout": 0.0}
        return control

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        trainer = self.trainer
        if trainer is None:
            return control
        total = time.perf_counter() - self._step_start
        phases = getattr(trainer, "_phase_seconds", {"score": 0.0, "rollout": 0.0})
        metrics = trainer._metrics["train"]
        metrics["time/step"].append(total)
        metrics["time/logprobs"].append(phases["score"])
        metrics["time/update"].append(max(0.0, total - phases["score"] - phases["rollout"]))
        metrics["memory/peak_rss_gb"].append(_peak_rss_gb())
        _release_freed_memory()
        rss = _current_rss_gb()
        if rss is not None:
            metrics["memory/rss_gb"].append(rss)
        return control


def _trainer_class() -> type:
    from trl import GRPOTrainer

    class CrosearchGRPOTrainer(GRPOTrainer):
        """GRPOTrainer that times its phases and can keep the batches it built (for checks and tests)."""

        keep_batches: bool = False

        def _generate_and_score_completions(self, inputs):  # noqa: ANN001 - TRL signature
            rollout = self.rollout_func
            before = rollout.times.rollout_total if rollout is not None else 0.0
            start = time.perf_counter()
            output = super()._generate_and_score_completions(inputs)
            elapsed = time.perf_counter() - start
            spent_rolling = (rollout.times.rollout_total - before) if rollout is not None else 0.0
            phases = getattr(self, "_phase_seconds", None)
            if phases is not None:
                phases["rollout"] += spent_rolling
                phases["score"] += elapsed - spent_rolling
            if self.keep_batches:
                self.kept_batches.append({k: v.detach().cpu() if hasattr(v, "detach") else v
                                          for k, v in output.items()
                                          if k in ("completion_ids", "completion_mask", "tool_mask", "advantages")})
            return output

    return CrosearchGRPOTrainer


def _grpo_args(config: Config, out: Path, device: str) -> Any:
    from trl import GRPOConfig

    from crosearch.rl.common import use_bf16
    from crosearch.rl.rewards import build_rewards

    t = config.train
    per_step = t.num_generations * t.questions_per_step
    micro = t.micro_batch_size or per_step
    if per_step % micro:
        raise ConfigError(f"train.micro_batch_size ({micro}) must divide num_generations x questions_per_step "
                          f"({per_step})")
    _, weights = build_rewards(t.reward_weights)
    agent = config.agent
    extra = dict(t.trl_args)
    clash = sorted(set(extra) & {"num_generations", "beta", "epsilon", "loss_type", "output_dir", "max_steps"})
    if clash:
        raise ConfigError(f"train.trl_args repeats options that have their own train.* keys: {clash}")
    return GRPOConfig(
        output_dir=str(out),
        num_generations=t.num_generations,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=per_step // micro,
        max_steps=t.max_steps,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_ratio,
        beta=t.beta,
        epsilon=t.epsilon,
        loss_type=t.loss_type,
        scale_rewards=t.scale_rewards,
        num_iterations=t.num_iterations,
        max_grad_norm=t.max_grad_norm,
        reward_weights=weights,
        # TRL recomputes log-probs at this temperature; it must be the sampling temperature.
        temperature=agent.temperature if agent.temperature > 0 else 1.0,
        max_completion_length=agent.max_total_tokens,
        mask_truncated_completions=False,
        bf16=use_bf16(t.bf16, device),
        use_cpu=device == "cpu",
        gradient_checkpointing=t.gradient_checkpointing,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        logging_steps=t.logging_steps,
        report_to=["tensorboard"],
        seed=t.seed,
        remove_unused_columns=False,
        log_completions=False,
        use_vllm=t.use_vllm,
        disable_tqdm=False,
        **extra,
    )


def _prepare_model(config: Config, out: Path) -> tuple[Any, Any, Any]:
    """The policy to train and the PEFT config TRL should apply (None when the model is already a PeftModel)."""
    from crosearch.models import load_policy
    from crosearch.rl.common import lora_config

    t = config.train
    adapter = config.model.adapter
    policy = load_policy(config.model.model_copy(update={"adapter": None}))
    model, tokenizer = policy.model, policy.tokenizer
    peft = lora_config(t.lora)
    if adapter:
        if not (Path(adapter) / "adapter_config.json").exists():
            raise ConfigError(f"model.adapter: {adapter} is not a PEFT adapter directory (no adapter_config.json)")
        from peft import PeftModel

        if t.adapter_mode == "continue":
            if peft is None:
                raise ConfigError("train.adapter_mode=continue keeps training a LoRA adapter: it needs train.lora.enabled")
            model = PeftModel.from_pretrained(model, adapter, is_trainable=True)
            peft = None
        else:
            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    if t.beta > 0 and peft is None and not hasattr(model, "peft_config"):
        # Without LoRA, TRL builds the reference model from the model's path: make it a real one.
        path = out / "reference-model"
        if not (path / "config.json").exists():
            model.save_pretrained(path)
            tokenizer.save_pretrained(path)
        model.config._name_or_path = str(path)
    return model, tokenizer, peft


def run_train(config: Config, *, resume: bool = False, keep_batches: bool = False,
              backend_factory: Any = None) -> dict[str, Any]:
    """Train with GRPO; returns a summary (also written to ``train.output_dir/summary.json``).

    ``backend_factory(model, tokenizer)`` replaces the generation backend (default:
    :class:`~crosearch.agent.backends.HFBackend`, or vLLM with ``train.use_vllm``);
    ``keep_batches`` keeps the batches TRL built (masks, ids, advantages) in the summary.
    """
    import torch

    from crosearch.agent.backends import HFBackend
    from crosearch.agent.engine import RolloutEngine
    from crosearch.agent.prompts import PromptBuilder
    from crosearch.rl.checkpoints import (CompletionMarkerCallback, discard_incomplete_checkpoints,
                                          latest_complete_checkpoint)
    from crosearch.rl.common import (bound_onednn_cache, check_output_dir, ensure_benchmark, ensure_retriever,
                                     model_device, save_atomically, select_questions)
    from crosearch.rl.rewards import build_rewards
    from crosearch.rl.rollout import RolloutFunction, TimedRetriever, build_rows, rows_to_dataset

    bound_onednn_cache()
    t = config.train
    out = check_output_dir(t.output_dir, resume)
    torch.manual_seed(t.seed)
    bench = ensure_benchmark(config, t.benchmark)
    retriever = TimedRetriever(ensure_retriever(config, bench))
    questions = select_questions(bench.train, t.languages, t.max_questions, t.seed)
    pool = [q for q in bench.train if t.languages is None or q.lang in t.languages]
    rows = build_rows(questions, multilingual=t.multilingual_groups, group_languages=t.group_languages,
                      seed=t.seed, pool=pool)
    model, tokenizer, peft = _prepare_model(config, out)
    device = model_device(model)

    def make_engine(policy_model: Any) -> Any:
        if backend_factory is not None:
            backend = backend_factory(policy_model, tokenizer)
        elif t.use_vllm:
            from crosearch.agent.backends import VLLMBackend

            backend = VLLMBackend(trainer.vllm_generation.llm, tokenizer)
        else:
            backend = HFBackend(policy_model, tokenizer)
        return RolloutEngine.from_config(backend, retriever, config, model=policy_model)

    rollout = RolloutFunction(rows=rows, make_engine=make_engine, retriever=retriever,
                              prompt_builder=PromptBuilder.from_config(config.agent))
    reward_funcs, _ = build_rewards(t.reward_weights)
    timer = PhaseTimer()
    trainer = _trainer_class()(
        model=model, reward_funcs=reward_funcs, args=_grpo_args(config, out, device),
        train_dataset=rows_to_dataset(rows), processing_class=tokenizer, peft_config=peft,
        rollout_func=rollout, callbacks=[CompletionMarkerCallback(), timer],
    )
    timer.trainer = trainer
    trainer.keep_batches = keep_batches
    trainer.kept_batches = []

    checkpoint = None
    if resume:
        removed = discard_incomplete_checkpoints(out)
        for path in removed:
            console.print(f"[yellow]removed incomplete checkpoint {path}[/]")
        checkpoint = latest_complete_checkpoint(out)
        if checkpoint is None:
            console.print("[yellow]--resume: no complete checkpoint yet, starting from step 0[/]")
        else:
            console.print(f"resuming from {checkpoint}")
    started = time.perf_counter()
    try:
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except KeyError as exc:
        raise CrosearchError(f"training data mismatch: {exc}") from None
    final = out / "final"
    save_atomically(trainer.model, tokenizer, final)
    summary = {
        "steps": trainer.state.global_step, "train_loss": result.training_loss,
        "seconds": time.perf_counter() - started, "peak_rss_gb": _peak_rss_gb(), "rows": len(rows),
        "resumed_from": str(checkpoint) if checkpoint else None, "output": str(final),
        "log_history": trainer.state.log_history,
    }
    atomic_write_json(out / "summary.json", summary)
    if keep_batches:
        summary["kept_batches"] = trainer.kept_batches
        summary["trainer"] = trainer
    return summary
