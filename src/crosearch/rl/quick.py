"""The brief training part of ``crosearch quickstart``: a short warm start and two GRPO steps that have signal.

It only shrinks the recipes (``configs/sft-cpu.yaml``, ``configs/quickstart-cpu.yaml``) so the
whole main job stays within its time on 2 CPU cores; it shows the mechanics end to end, not a
trained model (the shipped adapters and docs/training.md are the real runs).

GRPO learns only from groups whose rollouts earn different rewards: a group that scores the same
everywhere has advantage 0 for every rollout and no gradient. Two steps on randomly drawn
questions mostly show exactly that, so the GRPO questions are chosen where the reward can vary: a
search with the question itself brings its gold answer into the evidence (some rollouts find it,
some do not), the answer is short (exact match is reachable), and the reward gives partial credit
(F1) and a small bonus for a well-formed rollout.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crosearch.config import Config, with_updates
from crosearch.types import QAExample, SearchQuery

# A few steps of each stage: enough to exercise every part, small enough for a CPU demo.
QUICK_SFT: dict[str, Any] = {
    "max_examples": 32,
    "max_steps": 8,
    "batch_size": 4,
    "learning_rate": 2e-4,
    "save_steps": 0,
    "logging_steps": 2,
    "lora": {"r": 16, "alpha": 32},
}
QUICK_GRPO: dict[str, Any] = {
    "max_steps": 2,
    "questions_per_step": 1,
    "num_generations": 4,
    "micro_batch_size": 4,
    "learning_rate": 1e-5,
    "save_steps": 1,
    "reward_weights": {"exact_match": 1.0, "f1": 0.5, "char3_recall": 0.0, "format": 0.1, "answer_language": 0.0},
}
# Answers of at most this many words: exact match stays within reach of a 270M model.
SHORT_ANSWER_WORDS = 3
# Training questions searched while looking for ones with their answer in the evidence (each search takes ms).
CANDIDATES = 400
# Of those, how many the warm-started policy answers SAMPLES times before GRPO (one generation batch of 16).
SAMPLED_CANDIDATES = 4
SAMPLES = 4


@dataclass(slots=True)
class QuickTraining:
    """What the brief training did: its directories, the GRPO questions and each step's advantages."""

    sft_dir: Path
    grpo_dir: Path
    questions: list[QAExample]
    advantages: list[list[float]] = field(default_factory=list)


def _with(config: Config, section: str, values: dict[str, Any]) -> Config:
    return with_updates(config, {f"{section}.{k}": v for k, v in values.items() if v is not None})


def questions_with_signal(
    questions: list[QAExample], retriever: Any, n: int, *, k: int, seed: int = 0
) -> list[QAExample]:
    """Up to ``n`` training questions, in different languages where possible, whose gold answer is short
    and appears in the top-``k`` passages a search with the question in its own language returns."""
    pool = list(questions)
    random.Random(seed).shuffle(pool)
    pool = [q for q in pool if q.answers and min(len(a.split()) for a in q.answers) <= SHORT_ANSWER_WORDS]
    pool = pool[:CANDIDATES]
    searchable = set(retriever.languages)
    pool = [q for q in pool if q.lang in searchable]
    queries = [SearchQuery(q.question, lang=q.lang, search_langs=[q.lang], exclude=frozenset(q.exclude)) for q in pool]
    hits = retriever.search(queries, k) if queries else []
    covered = []
    for q, found in zip(pool, hits):
        text = " ".join(f"{h.title} {h.text}" for h in found).casefold()
        if any(a.casefold() in text for a in q.answers):
            covered.append(q)
    chosen: list[QAExample] = []
    for q in covered:  # one per language first, then whatever is left
        if len(chosen) < n and q.lang not in {c.lang for c in chosen}:
            chosen.append(q)
    chosen += [q for q in covered if q not in chosen][: n - len(chosen)]
    return chosen


def rank_by_sampled_spread(
    candidates: list[QAExample], config: Config, retriever: Any, *, samples: int = SAMPLES
) -> tuple[list[QAExample], dict[str, float]]:
    """The candidates ordered by how much the F1 of ``samples`` sampled answers varies (most first; ties keep
    their order), and that spread by question id.

    The policy of ``config`` answers each candidate at the training temperature, as a GRPO group would:
    a candidate whose answers all score the same would most likely give a group with zero advantage.
    """
    from dataclasses import replace

    from crosearch.agent.pipelines import Pipeline, load_policy_backend
    from crosearch.eval.metrics import f1_score

    if not candidates:
        return [], {}
    policy = load_policy_backend(config.model)
    pipeline = Pipeline("search-agent", policy, retriever, config, temperature=config.agent.temperature)
    copies = [replace(q, id=f"{q.id}#{k}") for q in candidates for k in range(samples)]
    outputs = pipeline.run(copies)
    spread = {}
    for i, q in enumerate(candidates):
        scores = [f1_score(o.prediction, q.answers, q.lang) for o in outputs[i * samples : (i + 1) * samples]]
        spread[q.id] = max(scores) - min(scores)
    return sorted(candidates, key=lambda q: -spread[q.id]), spread


def quick_train(config: Config, out: Path, retriever: Any, bench: Any, console: Any) -> QuickTraining:
    """Warm-start, then two GRPO steps on questions with signal, into ``out/sft`` and ``out/grpo``."""
    from crosearch.rl.sft import run_sft
    from crosearch.rl.train import run_train

    sft_dir, grpo_dir = out / "sft", out / "grpo"
    benchmark = str(out / "benchmark")
    # Training searches its own language only: the warm start teaches the protocol, and
    # translating every query with the policy would dominate a CPU demo's time.
    mono = _with(config, "crosslingual", {"strategy": "mono"})
    sft_cfg = _with(mono, "sft", {**QUICK_SFT, "benchmark": benchmark, "output_dir": str(sft_dir)})
    if not (sft_dir / "final").exists():
        console.print(
            f"warm start: {QUICK_SFT['max_steps']} LoRA steps on {QUICK_SFT['max_examples']} protocol trajectories"
        )
        run_sft(sft_cfg, resume=sft_dir.exists())

    steps = QUICK_GRPO["max_steps"]
    result = QuickTraining(sft_dir=sft_dir, grpo_dir=grpo_dir, questions=[])
    if (grpo_dir / "final").exists():
        return result
    k = mono.crosslingual.k or mono.retrieval.k
    languages = mono.train.languages
    candidates = [q for q in bench.train if languages is None or q.lang in languages]
    covered = questions_with_signal(candidates, retriever, SAMPLED_CANDIDATES, k=k, seed=mono.train.seed)
    warm = _with(_with(mono, "model", {"adapter": str(sft_dir / "final")}), "agent", {"temperature": 0.8})
    ranked, spread = rank_by_sampled_spread(covered, warm, retriever)
    console.print(
        f"F1 spread of {SAMPLES} sampled answers per candidate (warm-started policy): "
        + ", ".join(f"{q.lang} {spread[q.id]:.2f}" for q in covered),
        highlight=False,
    )
    # Only questions whose sampled answers differ; when fewer than the steps, GRPO draws them again.
    result.questions = [q for q in ranked if spread[q.id] > 0][:steps] or ranked[:steps]
    grpo_cfg = _with(
        warm,
        "train",
        {
            **QUICK_GRPO,
            "benchmark": benchmark,
            "output_dir": str(grpo_dir),
            "question_ids": [q.id for q in result.questions] or None,
        },
    )
    for q in result.questions:
        console.print(f"GRPO question [{q.lang}] {q.question}  (gold: {q.answers[0]})", markup=False)
    console.print(
        f"GRPO: {steps} steps of {QUICK_GRPO['num_generations']} rollouts through TRL, the rollout engine as "
        "rollout_func; reward exact match + 0.5 F1 + 0.1 format"
    )
    summary = run_train(grpo_cfg, resume=grpo_dir.exists(), keep_batches=True)
    summary.pop("trainer", None)
    result.advantages = [
        [round(float(a), 3) for a in batch["advantages"].reshape(-1).tolist()]
        for batch in summary.get("kept_batches", [])
        if "advantages" in batch
    ]
    return result
