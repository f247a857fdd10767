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

Multi-turn search (``sft.multi_search``): a seeded share of the trajectories may search
again while the evidence inserted so far lacks a gold answer, with a reformulated query
(``sft.reformulation``: the question's parallel version in another language, or its
content words), up to ``sft.max_searches`` searches; it answers after the evidence that
holds the answer, or after the last search. A trajectory whose first evidence holds the
answer searches once, so the policy sees both: one search when it suffices, more when
it does not. With ``sft.strategies`` the questions are shared out among several
integration strategies, so one warm start has seen the evidence of each.
"""

from __future__ import annotations

import random
import time
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import regex

from crosearch.config import Config, SFTConfig
from crosearch.errors import CrosearchError
from crosearch.io import atomic_write_json, write_jsonl
from crosearch.rl.common import console
from crosearch.types import QAExample

IGNORE = -100
TRAJECTORIES = "trajectories.jsonl"
TRAJECTORY_SUMMARY = "trajectories-summary.json"


@dataclass(slots=True)
class Trajectory:
    """One training sequence: ids, labels (-100 = no loss), and what it was built from.

    ``queries`` and ``query_kinds`` list the searches in order (``question``, ``parallel:<lang>``,
    ``keywords`` or ``keywords:<lang>``); ``evidence_has_answer`` says for each search whether
    the evidence it inserted holds a gold answer (of any language version of the question: the
    versions are parallel, so an English passage with the English gold answers a German
    question); ``answer_in_evidence`` whether any did; ``evidence_has_gold_paragraph`` whether
    the evidence held a passage of the gold paragraph, in any language.
    """

    qid: str
    lang: str
    input_ids: list[int]
    labels: list[int]
    answer_in_evidence: bool
    strategy: str = ""
    queries: list[str] = field(default_factory=list)
    query_kinds: list[str] = field(default_factory=list)
    evidence_has_answer: list[bool] = field(default_factory=list)
    evidence_has_gold_paragraph: list[bool] = field(default_factory=list)

    @property
    def searches(self) -> int:
        return len(self.queries)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _contains(text: str, answers: Sequence[str]) -> bool:
    low = text.lower()
    return any(a and a.lower() in low for a in answers)


_WORD = regex.compile(r"[\p{L}\p{M}\p{N}]+")


def keyword_query(text: str, lang: str) -> str:
    """The content words of ``text``: its words without the language's stopwords, each once, in order.

    Scripts without spaces (Chinese) keep their runs whole: the words are what lies between punctuation.
    """
    from crosearch.retrieval.analyzers import stopwords_for

    stop = stopwords_for(lang)
    words = [w for w in _WORD.findall(text) if unicodedata.normalize("NFKC", w).casefold() not in stop]
    return " ".join(dict.fromkeys(words))


def search_plan(question: QAExample, parallel: dict[str, QAExample], sft: SFTConfig) -> list[tuple[str, str]]:
    """The queries a trajectory allowed to search again may use, in order, as ``(query, kind)``.

    The question itself first; then, by ``sft.reformulation``, the parallel versions in
    ``sft.parallel_langs`` (the question's own language skipped), or the content words of the
    question and then of those versions. Queries equal to an earlier one are dropped (the
    rollout engine flags a repeated query); at most ``sft.max_searches``.
    """
    from crosearch.agent.parsing import normalize_query

    plan = [(question.question.strip(), "question")]
    langs = [lang for lang in sft.parallel_langs if lang != question.lang and lang in parallel]
    if sft.reformulation == "parallel":
        extra = [(parallel[lang].question.strip(), f"parallel:{lang}") for lang in langs]
    else:
        extra = [(keyword_query(question.question, question.lang), "keywords")]
        extra += [(keyword_query(parallel[lang].question, lang), f"keywords:{lang}") for lang in langs]
    seen = {normalize_query(plan[0][0])}
    for text, kind in extra:
        key = normalize_query(text)
        if key and key not in seen:
            plan.append((text, kind))
            seen.add(key)
    return plan[: sft.max_searches]


def allowed_to_search_again(question: QAExample, sft: SFTConfig) -> bool:
    """A seeded draw per question: true for a ``sft.multi_search`` share of the questions."""
    if sft.multi_search <= 0.0:
        return False
    return random.Random(f"crosearch-sft-multi:{sft.seed}:{question.id}").random() < sft.multi_search


def build_trajectories(
    questions: Sequence[QAExample],
    config: Config,
    tokenizer: Any,
    integration: Any,
    eos_token_ids: Sequence[int],
    batch_size: int = 32,
    *,
    pool: Sequence[QAExample] | None = None,
    strategy: str | None = None,
) -> list[Trajectory]:
    """Run the rollout engine with scripted turns over ``questions``; one trajectory per question.

    ``integration`` is the engine's evidence hook (an :class:`~crosearch.crosslingual.integration.Integrator`'s
    ``gather`` with ``k`` bound), so the inserted text is what a GRPO rollout would see. ``pool``
    (default ``questions``) is where the parallel versions of a question are looked up (the train
    split: versions share their ``group`` and their article, so they never come from another split);
    ``strategy`` labels the trajectories (default ``crosslingual.strategy``).
    """
    from crosearch.agent.backends import TeacherForcedBackend
    from crosearch.agent.engine import RolloutEngine, RolloutRequest
    from crosearch.agent.prompts import PromptBuilder
    from crosearch.progress import track

    builder = PromptBuilder.from_config(config.agent)
    sft = config.sft
    versions: dict[str, dict[str, QAExample]] = {}
    for v in pool if pool is not None else questions:
        if v.group is not None:
            versions.setdefault(v.group, {})[v.lang] = v
    # The responder sees decoded text; each prompt (decoded with its special tokens) names its question.
    by_prompt: dict[str, QAExample] = {}
    plans: dict[str, list[tuple[str, str]]] = {}
    # Evidence holds the answer when it holds a gold answer of any language version: an English
    # passage answers a German question when it has the English gold (the versions are parallel).
    golds: dict[str, list[str]] = {}
    requests: list[RolloutRequest] = []
    for q in questions:
        if not q.answers:
            continue
        ids = builder.encode(tokenizer, q.question, q.lang)
        key = tokenizer.decode(ids, skip_special_tokens=False)
        if key in by_prompt:  # the same prompt twice would make the responder ambiguous
            continue
        by_prompt[key] = q
        parallel = versions.get(q.group or "", {})
        plan = search_plan(q, parallel, sft)
        golds[key] = list(dict.fromkeys([*q.answers, *(a for v in parallel.values() for a in v.answers)]))
        plans[key] = plan if allowed_to_search_again(q, sft) else plan[:1]
        requests.append(RolloutRequest(prompt=ids, lang=q.lang, exclude=frozenset(q.exclude), id=q.id))
    lengths = sorted({len(k) for k in by_prompt})

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    # Tokens a further search needs besides its own turn: the fullest evidence block (budget plus
    # tags, with a margin for re-tokenisation), the answer turn, and what the engine reserves for a
    # forced answer. A search that would not fit is not written: the trajectory answers instead.
    from crosearch.agent.engine import INFO_CLOSE, INFO_OPEN
    from crosearch.agent.prompts import read_prompt_file

    evidence_room = config.crosslingual.token_budget + count(INFO_OPEN + INFO_CLOSE) + 8
    reserve = count(read_prompt_file("force_answer")) + config.agent.answer_tokens

    def responder(context: str) -> str:
        key = next((context[:n] for n in lengths if context[:n] in by_prompt), None)
        if key is None:
            raise CrosearchError("scripted warm-start turn for an unknown prompt")
        q, plan = by_prompt[key], plans[key]
        tail = context[len(key) :]
        done = tail.count("</information>")
        answer = f"<think>{sft.answer_think}</think>\n<answer>{q.answers[0]}</answer>"
        if done and (done >= len(plan) or _contains(tail.rsplit("<information>", 1)[-1], golds[key])):
            return answer
        think = sft.think if done == 0 else sft.search_again_think
        search = f"<think>{think}</think>\n<search>{plan[done][0]}</search>"
        if done and count(context + search) + evidence_room + count(answer) + reserve > config.agent.max_total_tokens:
            return answer
        return search

    # One turn per search of the longest plan, and one for the answer.
    turns = 1 + max((len(p) for p in plans.values()), default=1)
    agent = config.agent.model_copy(update={"max_turns": turns, "temperature": 0.0})
    # No model: the turns are given, and SFT needs their ids, not their log-probs.
    backend = TeacherForcedBackend(None, tokenizer, responder, eos_token_ids=eos_token_ids)
    engine = RolloutEngine(backend, integration, agent)
    label = strategy or config.crosslingual.strategy
    out: list[Trajectory] = []
    for start in track(
        range(0, len(requests), batch_size),
        description=f"building warm-start trajectories ({label})",
        console=console,
    ):
        for r, req in zip(engine.run(requests[start : start + batch_size]), requests[start : start + batch_size]):
            key = tokenizer.decode(req.prompt, skip_special_tokens=False)
            q = by_prompt[key]
            if r.stop_reason != "answered" or r.n_searches < 1:
                continue  # the scripted turns did not fit the budget: skip rather than train on a cut episode
            ids = r.prompt_ids + r.completion_ids
            labels = [IGNORE] * len(r.prompt_ids) + [t if m else IGNORE for t, m in zip(r.completion_ids, r.env_mask)]
            searched = [t for t in r.turns if t.action == "search"]
            found = [_contains(t.information or "", golds[key]) for t in searched]
            kinds = dict(plans[key])
            out.append(
                Trajectory(
                    q.id,
                    q.lang,
                    ids,
                    labels,
                    any(found),
                    strategy=label,
                    queries=[t.query or "" for t in searched],
                    query_kinds=[kinds.get(t.query or "", "question") for t in searched],
                    evidence_has_answer=found,
                    evidence_has_gold_paragraph=[
                        q.paragraph is not None and any(d.paragraph == q.paragraph for d in t.docs) for t in searched
                    ],
                )
            )
    return out


def _coverage(trajectories: Sequence[Trajectory], max_length: int) -> dict[str, Any]:
    n = len(trajectories)
    searches = Counter(t.searches for t in trajectories)
    again = [t for t in trajectories if t.searches > 1]
    return {
        "trajectories": n,
        # The gold answer inside the first search's evidence (what a one-search warm start shows) ...
        "answer_in_first_evidence": sum(t.evidence_has_answer[0] for t in trajectories) / n,
        # ... and inside any search's evidence (after the further searches).
        "answer_in_evidence": sum(t.answer_in_evidence for t in trajectories) / n,
        "gold_paragraph_in_first_evidence": sum(t.evidence_has_gold_paragraph[0] for t in trajectories) / n,
        "gold_paragraph_in_evidence": sum(any(t.evidence_has_gold_paragraph) for t in trajectories) / n,
        "searches_histogram": {str(k): searches[k] for k in sorted(searches)},
        "searches_per_trajectory": sum(t.searches for t in trajectories) / n,
        "searched_again": len(again),
        "found_by_searching_again": sum(any(t.evidence_has_answer[1:]) for t in again),
        "longer_than_max_length": sum(len(t.input_ids) > max_length for t in trajectories),
    }


def summarize_trajectories(trajectories: Sequence[Trajectory], sft: SFTConfig) -> dict[str, Any]:
    """Answer coverage before/after the further searches, searches per trajectory, per strategy and query kind.

    ``by_query_kind`` counts every search of that kind and how often its evidence held a gold answer
    and the gold paragraph.
    """
    if not trajectories:
        raise CrosearchError("no warm-start trajectory could be built (check agent.max_total_tokens and the data)")
    kinds: dict[str, list[int]] = {}
    for t in trajectories:
        for kind, found, paragraph in zip(t.query_kinds, t.evidence_has_answer, t.evidence_has_gold_paragraph):
            counts = kinds.setdefault(kind, [0, 0, 0])
            counts[0] += 1
            counts[1] += int(found)
            counts[2] += int(paragraph)
    strategies = sorted({t.strategy for t in trajectories})
    return {
        **_coverage(trajectories, sft.max_length),
        "by_strategy": {s: _coverage([t for t in trajectories if t.strategy == s], sft.max_length) for s in strategies},
        "by_query_kind": {
            k: {"searches": n, "answer_in_evidence": found / n, "gold_paragraph_in_evidence": para / n}
            for k, (n, found, para) in sorted(kinds.items())
        },
        "multi_search": sft.multi_search,
        "max_searches": sft.max_searches,
        "max_length": sft.max_length,
        "reformulation": sft.reformulation,
        "parallel_langs": list(sft.parallel_langs),
    }


def warm_start_strategies(config: Config) -> list[str]:
    """The integration strategies the trajectories' evidence comes from (``sft.strategies`` or the configured one)."""
    return list(dict.fromkeys(config.sft.strategies or [config.crosslingual.strategy]))


def build_warm_start_data(
    config: Config,
    train: Sequence[QAExample],
    retriever: Any,
    tokenizer: Any,
    eos_token_ids: Sequence[int],
    *,
    policy: tuple[Any, Any] | None = None,
) -> list[Trajectory]:
    """The warm start's trajectories from the train split: ``sft.languages``' questions, shuffled and cut by seed.

    With several strategies the k-th question goes to strategy k mod n, so the trajectory count
    (and the training budget) is the same as with one. ``policy`` is reused as the query
    translator of the crosslingual strategy (loaded from ``config.model`` when needed and absent).
    """
    from functools import partial

    from crosearch.crosslingual.integration import build_integrator
    from crosearch.rl.common import select_questions

    sft = config.sft
    questions = select_questions(list(train), sft.languages, sft.max_examples, sft.seed)
    strategies = warm_start_strategies(config)
    out: list[Trajectory] = []
    for index, strategy in enumerate(strategies):
        section = config.crosslingual.model_copy(update={"strategy": strategy})
        cfg = config.model_copy(update={"crosslingual": section})
        integrator = build_integrator(cfg, retriever, tokenizer=tokenizer, policy=policy)
        k = section.k or sft.k
        out += build_trajectories(
            questions[index :: len(strategies)],
            cfg,
            tokenizer,
            partial(integrator.gather, k=k),
            eos_token_ids,
            pool=train,
            strategy=strategy,
        )
    return out


def print_summary(summary: dict[str, Any]) -> None:
    hist = ", ".join(f"{k}: {v}" for k, v in summary["searches_histogram"].items())
    console.print(
        f"{summary['trajectories']} trajectories; gold answer inside the first evidence for "
        f"{summary['answer_in_first_evidence']:.0%}, inside any evidence for {summary['answer_in_evidence']:.0%}; "
        f"searches per trajectory {hist}"
    )
    if summary["longer_than_max_length"]:
        console.print(
            f"[yellow]{summary['longer_than_max_length']} trajectories are longer than sft.max_length "
            f"({summary['max_length']} tokens) and will be cut from the right, their answer lost: raise it[/]"
        )


def build_only(config: Config) -> dict[str, Any]:
    """``crosearch sft --trajectories-only``: write the trajectories and their summary, train nothing.

    Needs the tokenizer, the benchmark and the index, not the model (unless the crosslingual
    strategy translates queries with the policy).
    """
    from crosearch.agent.backends import model_eos_ids
    from crosearch.models import load_tokenizer
    from crosearch.rl.common import ensure_benchmark, ensure_retriever

    sft = config.sft
    bench = ensure_benchmark(config, sft.benchmark)
    retriever = ensure_retriever(config, bench)
    tokenizer = load_tokenizer(config.model)
    started = time.perf_counter()
    trajectories = build_warm_start_data(config, bench.train, retriever, tokenizer, model_eos_ids(None, tokenizer))
    summary = summarize_trajectories(trajectories, sft)
    summary["build_seconds"] = time.perf_counter() - started
    _write(config, trajectories, summary)
    return summary


def _write(config: Config, trajectories: Sequence[Trajectory], summary: dict[str, Any]) -> None:
    from pathlib import Path

    out = Path(config.sft.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / TRAJECTORIES, (t.to_dict() for t in trajectories))
    atomic_write_json(out / TRAJECTORY_SUMMARY, summary)
    print_summary(summary)


def run_sft(config: Config, *, resume: bool = False, trajectories_only: bool = False) -> dict[str, Any]:
    """Build trajectories, train (LoRA by default), save the adapter (or model) to ``sft.output_dir/final``.

    ``trajectories_only``: write the trajectories and their summary and stop (:func:`build_only`).
    """
    if trajectories_only:
        return build_only(config)
    from transformers import TrainingArguments

    from crosearch.agent.backends import model_eos_ids
    from crosearch.models import load_policy
    from crosearch.rl.checkpoints import CompletionMarkerCallback
    from crosearch.rl.common import lora_config, model_device
    from crosearch.rl.run import finish_run, prepare_run, train_bf16, train_resumable
    from crosearch.rl.sft_loss import MaskedLMTrainer, pad_collate

    sft = config.sft
    ctx = prepare_run(config, output_dir=sft.output_dir, benchmark=sft.benchmark, seed=sft.seed, resume=resume)
    policy = load_policy(config.model)
    model, tokenizer = policy.model, policy.tokenizer

    started = time.perf_counter()
    trajectories = build_warm_start_data(
        config, ctx.bench.train, ctx.retriever, tokenizer, model_eos_ids(model, tokenizer), policy=(model, tokenizer)
    )
    coverage = summarize_trajectories(trajectories, sft)
    build_seconds = time.perf_counter() - started
    coverage["build_seconds"] = build_seconds
    _write(config, trajectories, coverage)

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
            "answer_in_evidence": coverage["answer_in_evidence"],
            "answer_in_first_evidence": coverage["answer_in_first_evidence"],
            "searches_histogram": coverage["searches_histogram"],
            "strategies": warm_start_strategies(config),
            "trajectories_per_strategy": dict(Counter(t.strategy for t in trajectories)),
            "trajectory_summary": coverage,
            "build_seconds": build_seconds,
            "train_seconds": outcome.seconds,
            "bf16": bf16,
            "lora": peft is not None,
        },
    )
