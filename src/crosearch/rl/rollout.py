"""TRL ``rollout_func``: our multi-turn search engine generates the GRPO completions.

Contract with TRL 1.16 (read from ``GRPOTrainer._generate``; checked by the tests):

- The dataset column ``prompt`` holds a *key* (``"[<row id>] <question>"``), not
  the model prompt: the function looks the row up, renders the real prompt with
  the agent's template, and returns its token ids. Keys are unique per row.
- TRL's sampler repeats each row ``num_generations`` times, consecutively, and
  the function receives that repeated list (not one entry per question, whatever
  the TRL docstring says); it returns one completion per received prompt, in order.
- Returned ``prompt_ids``/``completion_ids``/``logprobs`` are per completion;
  ``env_mask`` (1 = model token, 0 = inserted by the environment) becomes TRL's
  ``tool_mask`` and is multiplied into the loss mask; every other field reaches
  the reward functions (:mod:`crosearch.rl.rewards`). Prompt ids may differ
  inside a group.

Multilingual rollout groups (the method's part 3): a row may carry several
language versions of one question (parallel XQuAD questions share ``group``);
the k-th repeat of the row within a call is asked in version ``k mod n``. TRL
normalises advantages over the ``num_generations`` consecutive completions, so
one group mixes languages and each rollout is scored against its own language's
gold answers.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from crosearch.rl.trl_compat import metric_logger
from crosearch.types import Hit, QAExample, SearchQuery


@dataclass(slots=True)
class TrainRow:
    """One dataset row: the language versions its rollouts are asked in (first = the row's own)."""

    key: str
    versions: list[QAExample]


@dataclass(slots=True)
class PhaseTimes:
    """Seconds spent per phase in the latest rollout call (read by the trainer's timing metrics)."""

    rollout: float = 0.0
    rollout_total: float = 0.0
    retrieval: float = 0.0
    searches: int = 0


class TimedRetriever:
    """Passes searches through to a retriever and adds up the time they take.

    The engine's wall time minus this is generation time, so the trainer can
    report generation and retrieval separately.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.calls = 0

    def search(self, queries: Sequence[SearchQuery], k: int, **kwargs: Any) -> list[list[Hit]]:
        start = time.perf_counter()
        try:
            return self.inner.search(queries, k, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1

    @property
    def languages(self) -> list[str]:
        return self.inner.languages

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def build_rows(
    questions: Sequence[QAExample],
    *,
    multilingual: bool,
    group_languages: int,
    seed: int = 0,
    pool: Sequence[QAExample] | None = None,
) -> list[TrainRow]:
    """Dataset rows for GRPO.

    Without multilingual groups, one row per question. With them, one row per
    question whose parallel versions exist in at least one other language: the
    question first, then ``group_languages - 1`` other versions drawn by ``seed``
    (fewer when fewer exist), looked up in ``pool`` (default: ``questions``), so a
    subsample of rows still finds its partners. Questions without a parallel
    version are kept as single-language rows.
    """
    by_group: dict[str, list[QAExample]] = defaultdict(list)
    for q in pool if pool is not None else questions:
        if q.group is not None:
            by_group[q.group].append(q)
    rng = random.Random(seed)
    rows = []
    for q in questions:
        versions = [q]
        if multilingual and group_languages > 1 and q.group is not None:
            others = sorted((o for o in by_group[q.group] if o.lang != q.lang), key=lambda o: o.lang)
            rng.shuffle(others)
            versions += others[: group_languages - 1]
        rows.append(TrainRow(key=f"[{q.id}] {q.question}", versions=versions))
    return rows


def rows_to_dataset(rows: Sequence[TrainRow]) -> Any:
    """A ``datasets.Dataset`` of the rows (the ``prompt`` column holds the row keys)."""
    from datasets import Dataset

    return Dataset.from_list(
        [
            {
                "prompt": row.key,
                "row_id": row.versions[0].id,
                "row_lang": row.versions[0].lang,
                "group_langs": ",".join(v.lang for v in row.versions),
            }
            for row in rows
        ]
    )


@dataclass
class RolloutFunction:
    """The callable handed to ``GRPOTrainer(rollout_func=...)``.

    ``make_engine(model)`` builds the rollout engine around the model being
    trained (called once, with the trainer's unwrapped model, so generation
    always uses the current weights) and the timed retriever; ``prompt_builder``
    is the agent's :class:`~crosearch.agent.prompts.PromptBuilder`.
    """

    rows: Sequence[TrainRow]
    make_engine: Any
    retriever: TimedRetriever
    prompt_builder: Any
    times: PhaseTimes = field(default_factory=PhaseTimes)
    _engine: Any = None
    _table: dict[str, TrainRow] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._table = {row.key: row for row in self.rows}
        if len(self._table) != len(self.rows):
            raise ValueError("training rows must have unique keys")

    def assign(self, prompts: Sequence[str]) -> list[QAExample]:
        """The language version each received prompt is asked in (k-th repeat of a row -> version k mod n)."""
        seen: dict[str, int] = defaultdict(int)
        chosen = []
        for key in prompts:
            row = self._table.get(key)
            if row is None:
                raise KeyError(f"rollout_func received a prompt that is not a training row key: {key[:80]!r}")
            chosen.append(row.versions[seen[key] % len(row.versions)])
            seen[key] += 1
        return chosen

    def requests(self, questions: Sequence[QAExample], tokenizer: Any) -> list[Any]:
        """Engine requests: the agent's prompt for each question version, with its own exclusions."""
        from crosearch.agent.engine import RolloutRequest

        return [
            RolloutRequest(
                prompt=self.prompt_builder.encode(tokenizer, q.question, q.lang),
                lang=q.lang,
                exclude=frozenset(q.exclude),
                id=q.id,
            )
            for q in questions
        ]

    def __call__(self, prompts: list[str], trainer: Any) -> dict[str, list[Any]]:
        model = trainer.accelerator.unwrap_model(trainer.model)
        if self._engine is None:
            self._engine = self.make_engine(model)
        questions = self.assign(prompts)
        requests = self.requests(questions, self._engine.tokenizer)
        was_training = model.training
        model.eval()  # no dropout while sampling, so the sampled log-probs are the policy's
        retrieval_before, start = self.retriever.seconds, time.perf_counter()
        try:
            results = self._engine.run(requests)
        finally:
            model.train(was_training)
        elapsed = time.perf_counter() - start
        self.times.rollout = elapsed
        self.times.rollout_total += elapsed
        self.times.retrieval = self.retriever.seconds - retrieval_before
        self.times.searches = sum(r.n_searches for r in results)
        valid = [valid_format(r) for r in results]
        log = metric_logger(trainer)
        if log is not None:
            n = max(1, len(results))
            log("rollout/searches", self.times.searches / n)
            log("rollout/answered", sum(r.answer is not None for r in results) / n)
            log("rollout/valid_format", sum(valid) / n)
            log("rollout/model_tokens", sum(sum(r.env_mask) for r in results) / n)
            log("rollout/inserted_tokens", sum(len(r.env_mask) - sum(r.env_mask) for r in results) / n)
            log("time/generation", self.times.rollout - self.times.retrieval)
            log("time/retrieval", self.times.retrieval)
            for lang in sorted({q.lang for q in questions}):
                picked = [r for r, q in zip(results, questions) if q.lang == lang]
                log(f"lang/searches/{lang}", sum(r.n_searches for r in picked) / len(picked))
        from crosearch.agent.engine import to_trl

        batch = to_trl(results)
        # Full traces stay out of the batch: rewards need only the flat fields below.
        batch.pop("trace")
        batch.update(
            golds=[list(q.answers) for q in questions],
            lang=[q.lang for q in questions],
            qid=[q.id for q in questions],
            valid_format=valid,
            num_searches=batch.pop("n_searches"),
        )
        return batch


# Turn problems that make a rollout break the protocol (trailing text is only trimmed).
_FORMAT_PROBLEMS = frozenset(
    {
        "no_tags",
        "unclosed_search",
        "unclosed_answer",
        "empty_query",
        "empty_answer",
        "mismatched_tags",
        "close_without_open",
        "invented_information",
    }
)


def valid_format(rollout: Any) -> bool:
    """The rollout answered on its own (not forced), with a non-empty answer, and no turn broke the protocol."""
    if rollout.stop_reason != "answered" or not rollout.answer:
        return False
    return all(t.action != "invalid" and not (_FORMAT_PROBLEMS & set(t.problems)) for t in rollout.turns)
