"""The supervised warm start (``crosearch sft``): teach the protocol before GRPO.

A base model rarely completes a search-answer episode, so GRPO from it has
almost no reward signal (measured: reward about 0.03 over 22 steps). The warm
start trains on trajectories in the exact rollout format, built *by the rollout
engine itself*: a scripted backend writes the model turns

    <think>{sft.think}</think>\\n<search>{question}</search>
    <think>{sft.answer_think}</think>\\n<answer>{gold answer}</answer>

and the engine inserts the real ``<information>`` of the configured integration
strategy between them, exactly as during GRPO and evaluation (same template,
same rendering, same token concatenation). Labels are the model-turn tokens;
the prompt and every inserted token get -100 (taken from the engine's env mask).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crosearch.config import Config
from crosearch.errors import CrosearchError
from crosearch.io import atomic_write_json, write_jsonl
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
        return {"qid": self.qid, "lang": self.lang, "input_ids": self.input_ids, "labels": self.labels,
                "answer_in_evidence": self.answer_in_evidence}


class ScriptedBackend:
    """Writes given text for each turn instead of sampling (ids only: no log-probs are needed for SFT).

    ``responder(context_text)`` returns the turn's text; it is tokenised on its
    own and cut by the engine's stop rule, as sampled text would be.
    """

    def __init__(self, tokenizer: Any, responder: Callable[[str], str], eos_token_ids: Sequence[int]) -> None:
        self.tokenizer = tokenizer
        self.responder = responder
        self._eos = list(eos_token_ids)

    @property
    def eos_token_ids(self) -> list[int]:
        return list(self._eos)

    def generate(self, prompts, max_new_tokens, stop_strings, sampling):  # noqa: ANN001 - GenerationBackend
        from crosearch.agent.backends import Generation, StopChecker, _caps

        caps = _caps(max_new_tokens, len(prompts))
        checker = StopChecker(self.tokenizer, stop_strings, self._eos)
        out = []
        for prompt, cap in zip(prompts, caps):
            reply = self.responder(self.tokenizer.decode(list(prompt), skip_special_tokens=False))
            ids = list(self.tokenizer(reply, add_special_tokens=False)["input_ids"])
            n, finish, stop = checker.end_of(ids, max(cap, 0))
            out.append(Generation(ids[:n], [0.0] * n, finish, stop))
        return out


def _contains(text: str, answers: Sequence[str]) -> bool:
    low = text.lower()
    return any(a and a.lower() in low for a in answers)


def build_trajectories(questions: Sequence[QAExample], config: Config, tokenizer: Any, integration: Any,
                       eos_token_ids: Sequence[int], batch_size: int = 32) -> list[Trajectory]:
    """Run the rollout engine with scripted turns over ``questions``; one trajectory per question.

    ``integration`` is the engine's evidence hook (an :class:`~crosearch.crosslingual.integration.Integrator`'s
    ``gather`` with ``k`` bound), so the inserted text is what a GRPO rollout would see.
    """
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
    engine = RolloutEngine(ScriptedBackend(tokenizer, responder, eos_token_ids), integration, agent)
    out: list[Trajectory] = []
    for start in track(range(0, len(requests), batch_size), description="building warm-start trajectories",
                       console=console):
        for r, q in zip(engine.run(requests[start: start + batch_size]),
                        (by_prompt[tokenizer.decode(req.prompt, skip_special_tokens=False)]
                         for req in requests[start: start + batch_size])):
            if r.stop_reason != "answered" or r.n_searches != 1:
                continue  # the scripted turns did not fit the budget: skip rather than train on a cut episode
            ids = r.prompt_ids + r.completion_ids
            labels = [IGNORE] * len(r.prompt_ids) + [t if m else IGNORE for t, m in zip(r.completion_ids, r.env_mask)]
            info = " ".join(t.information or "" for t in r.turns)
            out.append(Trajectory(q.id, q.lang, ids, labels, _contains(info, q.answers)))
    return out


def run_sft(config: Config, *, resume: bool = False) -> dict[str, Any]:
    """Build trajectories, train (LoRA by default), save the adapter (or model) to ``sft.output_dir/final``."""
    import torch
    from transformers import TrainingArguments

    from crosearch.crosslingual.integration import build_integrator
    from crosearch.models import load_policy
    from crosearch.rl.checkpoints import (CompletionMarkerCallback, discard_incomplete_checkpoints,
                                          latest_complete_checkpoint)
    from crosearch.rl.common import (bound_onednn_cache, check_output_dir, ensure_benchmark, ensure_retriever,
                                     lora_config, model_device, save_atomically, select_questions, use_bf16)
    from crosearch.rl.sft_loss import MaskedLMTrainer, pad_collate

    bound_onednn_cache()
    sft = config.sft
    out = check_output_dir(sft.output_dir, resume)
    torch.manual_seed(sft.seed)
    bench = ensure_benchmark(config, sft.benchmark)
    retriever = ensure_retriever(config, bench)
    policy = load_policy(config.model)
    model, tokenizer = policy.model, policy.tokenizer
    questions = select_questions(bench.train, sft.languages, sft.max_examples, sft.seed)

    started = time.perf_counter()
    integrator = build_integrator(config, retriever, tokenizer=tokenizer, policy=(model, tokenizer))
    k = config.crosslingual.k or sft.k

    def integration(queries: Sequence[Any]) -> Any:
        return integrator.gather(queries, k=k)

    eos = sorted({tokenizer.eos_token_id, *([model.generation_config.eos_token_id]
                                            if isinstance(model.generation_config.eos_token_id, int)
                                            else (model.generation_config.eos_token_id or []))} - {None})
    trajectories = build_trajectories(questions, config, tokenizer, integration, eos)
    if not trajectories:
        raise CrosearchError("no warm-start trajectory could be built (check agent.max_total_tokens and the data)")
    build_seconds = time.perf_counter() - started
    coverage = sum(t.answer_in_evidence for t in trajectories) / len(trajectories)
    write_jsonl(out / "trajectories.jsonl", (t.to_dict() for t in trajectories))
    console.print(f"{len(trajectories)} trajectories in {build_seconds:.0f}s; gold answer inside the inserted "
                  f"evidence for {coverage:.0%}")

    features = [{"input_ids": t.input_ids[: sft.max_length], "labels": t.labels[: sft.max_length]}
                for t in trajectories]
    peft = lora_config(sft.lora)
    if peft is not None:
        from peft import get_peft_model

        model = get_peft_model(model, peft)
    model.train()
    device = model_device(model)
    bf16 = use_bf16(sft.bf16, device)
    args = TrainingArguments(
        output_dir=str(out), max_steps=sft.max_steps, per_device_train_batch_size=sft.batch_size,
        gradient_accumulation_steps=sft.gradient_accumulation_steps, learning_rate=sft.learning_rate,
        lr_scheduler_type=sft.lr_scheduler_type, warmup_steps=sft.warmup_ratio, logging_steps=sft.logging_steps,
        save_strategy="steps" if sft.save_steps else "no", save_steps=sft.save_steps or 500,
        bf16=bf16, use_cpu=device == "cpu", report_to=["tensorboard"], seed=sft.seed, remove_unused_columns=False, dataloader_num_workers=0, disable_tqdm=False,
    )
    trainer = MaskedLMTrainer(model=model, args=args, train_dataset=features,
                              data_collator=pad_collate(tokenizer.pad_token_id or 0),
                              callbacks=[CompletionMarkerCallback()])
    checkpoint = None
    if resume:
        discard_incomplete_checkpoints(out)
        checkpoint = latest_complete_checkpoint(out)
    train_started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    final = out / "final"
    save_atomically(model, tokenizer, final)
    summary = {
        "trajectories": len(trajectories), "answer_in_evidence": coverage, "build_seconds": build_seconds,
        "train_seconds": time.perf_counter() - train_started, "steps": trainer.state.global_step,
        "train_loss": result.training_loss, "bf16": bf16, "lora": peft is not None, "output": str(final),
        "log_history": trainer.state.log_history,
    }
    atomic_write_json(out / "summary.json", summary)
    return summary
