"""The supervised warm start (``crosearch sft``): teach the protocol before GRPO.

A base model rarely completes a search-answer episode, so GRPO from it has
almost no reward signal (measured: reward about 0.03 over 22 steps). The warm
start trains on trajectories in the exact rollout format, built *by the rollout
engine itself*: a teacher-forced backend (no model: ids only) writes the model turns

    <think>{sft.think}</think>\\n<search>{question}</search>
    <think>{sft.answer_think}</think>\\n<answer>{gold answer}</answer>

and the engine inserts the real ``<information>`` of the configured integration
strategy between them, exactly as during GRPO and evaluation (same template,
same rendering, same token concatenation). Labels are the model-turn tokens;
the prompt and every inserted token get -100 (taken from the engine's env mask).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from crosearch.config import Config
from crosearch.errors import CrosearchError
from crosearch.io import write_jsonl
from crosearch.rl.common import console
from crosearch.types import QAExample

IGNORE = -100


@dataclass(slots=True)
class Trajectory:
    """One training sequence: ids, labels (-100 = no loss), and what it was built from."""

    qid: str
    lang: str
    input_ids: list[int]
    labels: list[int]
    answer_in_evidence: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _contains(text: str, answers: Sequence[str]) -> bool:
    low = text.lower()
    return any(a and a.lower() in low for a in answers)


def build_trajectories(
    questions: Sequence[QAExample],
    config: Config,
    tokenizer: Any,
    integration: Any,
    eos_token_ids: Sequence[int],
    batch_size: int = 32,
) -> list[Trajectory]:
    """Run the rollout engine with scripted turns over ``questions``; one trajectory per question.

    ``integration`` is the engine's evidence hook (an :class:`~crosearch.crosslingual.integration.Integrator`'s
    ``gather`` with ``k`` bound), so the inserted text is what a GRPO rollout would see.
    """
    from crosearch.agent.backends import TeacherForcedBackend
    from crosearch.agent.engine import RolloutEngine, RolloutRequest
    from crosearch.agent.prompts import PromptBuilder
    from crosearch.progress import track

    builder = PromptBuilder.from_config(config.agent)
    sft = config.sft
    # The responder sees decoded text; each prompt (decoded with its special tokens) names its question.
    by_prompt: dict[str, QAExample] = {}
    requests: list[RolloutRequest] = []
    for q in questions:
        if not q.answers:
            continue
        ids = builder.encode(tokenizer, q.question, q.lang)
        key = tokenizer.decode(ids, skip_special_tokens=False)
        if key in by_prompt:  # the same prompt twice would make the responder ambiguous
            continue
        by_prompt[key] = q
        requests.append(RolloutRequest(prompt=ids, lang=q.lang, exclude=frozenset(q.exclude), id=q.id))
    lengths = sorted({len(k) for k in by_prompt})

    def responder(context: str) -> str:
        q = next((by_prompt[context[:n]] for n in lengths if context[:n] in by_prompt), None)
        if q is None:
            raise CrosearchError("scripted warm-start turn for an unknown prompt")
        if context.rstrip().endswith("</information>"):
            return f"<think>{sft.answer_think}</think>\n<answer>{q.answers[0]}</answer>"
        return f"<think>{sft.think}</think>\n<search>{q.question.strip()}</search>"

    agent = config.agent.model_copy(update={"max_turns": 2, "temperature": 0.0})
    # No model: the turns are given, and SFT needs their ids, not their log-probs.
    backend = TeacherForcedBackend(None, tokenizer, responder, eos_token_ids=eos_token_ids)
    engine = RolloutEngine(backend, integration, agent)
    out: list[Trajectory] = []
    for start in track(
        range(0, len(requests), batch_size), description="building warm-start trajectories", console=console
    ):
        for r, q in zip(
            engine.run(requests[start : start + batch_size]),
            (
                by_prompt[tokenizer.decode(req.prompt, skip_special_tokens=False)]
                for req in requests[start : start + batch_size]
            ),
        ):
            if r.stop_reason != "answered" or r.n_searches != 1:
                continue  # the scripted turns did not fit the budget: skip rather than train on a cut episode
            ids = r.prompt_ids + r.completion_ids
            labels = [IGNORE] * len(r.prompt_ids) + [t if m else IGNORE for t, m in zip(r.completion_ids, r.env_mask)]
            info = " ".join(t.information or "" for t in r.turns)
            out.append(Trajectory(q.id, q.lang, ids, labels, _contains(info, q.answers)))
    return out


def run_sft(config: Config, *, resume: bool = False) -> dict[str, Any]:
    """Build trajectories, train (LoRA by default), save the adapter (or model) to ``sft.output_dir/final``."""
    from transformers import TrainingArguments

    from crosearch.agent.backends import model_eos_ids
    from crosearch.crosslingual.integration import build_integrator
    from crosearch.models import load_policy
    from crosearch.rl.checkpoints import CompletionMarkerCallback
    from crosearch.rl.common import lora_config, model_device, select_questions
    from crosearch.rl.run import finish_run, prepare_run, train_bf16, train_resumable
    from crosearch.rl.sft_loss import MaskedLMTrainer, pad_collate

    sft = config.sft
    ctx = prepare_run(config, output_dir=sft.output_dir, benchmark=sft.benchmark, seed=sft.seed, resume=resume)
    policy = load_policy(config.model)
    model, tokenizer = policy.model, policy.tokenizer
    questions = select_questions(ctx.bench.train, sft.languages, sft.max_examples, sft.seed)

    started = time.perf_counter()
    k = config.crosslingual.k or sft.k
    # One warm start can show the evidence of several strategies (the policies GRPO then trains
    # under each start from the same adapter): question i goes to strategy i mod n.
    strategies = list(sft.strategies or [config.crosslingual.strategy])
    trajectories: list[Trajectory] = []
    per_strategy: dict[str, int] = {}
    for i, strategy in enumerate(strategies):
        shown = config.model_copy(
            update={"crosslingual": config.crosslingual.model_copy(update={"strategy": strategy})}
        )
        integrator = build_integrator(shown, ctx.retriever, tokenizer=tokenizer, policy=(model, tokenizer))
        built = build_trajectories(
            questions[i :: len(strategies)],
            shown,
            tokenizer,
            functools.partial(integrator.gather, k=k),
            model_eos_ids(model, tokenizer),
        )
        per_strategy[strategy] = len(built)
        trajectories += built
    if not trajectories:
        raise CrosearchError("no warm-start trajectory could be built (check agent.max_total_tokens and the data)")
    build_seconds = time.perf_counter() - started
    coverage = sum(t.answer_in_evidence for t in trajectories) / len(trajectories)
    write_jsonl(ctx.out / "trajectories.jsonl", (t.to_dict() for t in trajectories))
    console.print(
        f"{len(trajectories)} trajectories in {build_seconds:.0f}s; gold answer inside the inserted "
        f"evidence for {coverage:.0%}"
    )

    features = [
        {"input_ids": t.input_ids[: sft.max_length], "labels": t.labels[: sft.max_length]} for t in trajectories
    ]
    peft = lora_config(sft.lora)
    if peft is not None:
        from peft import get_peft_model

        model = get_peft_model(model, peft)
    model.train()
    bf16 = train_bf16(sft.bf16, model)
    args = TrainingArguments(
        output_dir=str(ctx.out),
        max_steps=sft.max_steps,
        per_device_train_batch_size=sft.batch_size,
        gradient_accumulation_steps=sft.gradient_accumulation_steps,
        learning_rate=sft.learning_rate,
        lr_scheduler_type=sft.lr_scheduler_type,
        warmup_steps=sft.warmup_ratio,
        logging_steps=sft.logging_steps,
        save_strategy="steps" if sft.save_steps else "no",
        save_steps=sft.save_steps or 500,
        bf16=bf16,
        use_cpu=model_device(model) == "cpu",
        report_to=["tensorboard"],
        seed=sft.seed,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )
    trainer = MaskedLMTrainer(
        model=model,
        args=args,
        train_dataset=features,
        data_collator=pad_collate(tokenizer.pad_token_id or 0),
        callbacks=[CompletionMarkerCallback()],
    )
    outcome = train_resumable(ctx, trainer)
    return finish_run(
        ctx,
        trainer,
        model,
        tokenizer,
        outcome,
        {
            "trajectories": len(trajectories),
            "trajectories_per_strategy": per_strategy,
            "answer_in_evidence": coverage,
            "build_seconds": build_seconds,
            "train_seconds": outcome.seconds,
            "bf16": bf16,
            "lora": peft is not None,
        },
    )
