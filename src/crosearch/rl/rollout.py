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

Search-language groups (``train.group_mode: search-langs``, the language-coupled rollout
of the authors' LcRL code): every rollout of a group is asked the same question, and is
scored against its golds, but the k-th repeat of the row aims its searches at language
``search_langs[k mod n]`` (``RolloutRequest.search_lang``, which the engine passes on to
the integration as the search's primary language).

Each call can append one line per rollout to ``rollouts.jsonl`` (:class:`RolloutLog`),
so what each rollout searched, in which language, and what came back can be analysed.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crosearch.config import Config
from crosearch.errors import ConfigError
from crosearch.rl.trl_compat import metric_logger
from crosearch.types import Hit, QAExample, SearchQuery


@dataclass(slots=True)
class TrainRow:
    """One dataset row: the language versions its rollouts are asked in (first = the row's own).

    ``search_langs`` (search-language groups only): the language the k-th rollout's searches
    go to is entry k mod n; ``None`` = each rollout searches as its question's language.
    """

    key: str
    versions: list[QAExample]
    search_langs: list[str] | None = None


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
    search_langs: Sequence[str] | None = None,
) -> list[TrainRow]:
    """Dataset rows for GRPO.

    Without multilingual groups, one row per question. With them, one row per
    question whose parallel versions exist in at least one other language: the
    question first, then ``group_languages - 1`` other versions drawn by ``seed``
    (fewer when fewer exist), looked up in ``pool`` (default: ``questions``), so a
    subsample of rows still finds its partners. Questions without a parallel
    version are kept as single-language rows. ``search_langs`` (search-language
    groups; ``"self"`` = the question's language) is resolved for each row.
    """
    if search_langs is not None and multilingual:
        raise ConfigError("search-language groups keep one question per group: they exclude multilingual groups")
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
        resolved = [q.lang if s == "self" else s for s in search_langs] if search_langs is not None else None
        rows.append(TrainRow(key=f"[{q.id}] {q.question}", versions=versions, search_langs=resolved))
    return rows


def check_group_mode(config: Config, index_languages: Sequence[str] | None = None) -> None:
    """Refuse the ``train.group_mode`` combinations that make no sense, naming the keys to change.

    With ``index_languages`` (once the retriever is loaded) every named search language must be in the index.
    """
    t = config.train
    if t.group_mode != "search-langs":
        return
    if t.multilingual_groups:
        raise ConfigError(
            "train.group_mode 'search-langs' keeps one question per group and varies the search language; "
            "train.multilingual_groups varies the question's language: choose one (set multilingual_groups: false, "
            "or group_mode: question)"
        )
    strategy = config.crosslingual.strategy
    if strategy == "concat":
        raise ConfigError(
            "train.group_mode 'search-langs' with crosslingual.strategy 'concat': concat searches every language for "
            "every rollout, so the rollouts of a group would differ only in the order of the evidence blocks; use "
            "strategy 'mono' (each rollout searches its language alone) or 'crosslingual' (its language is primary)"
        )
    missing = sorted({s for s in t.search_langs if s != "self"} - set(index_languages or []))
    if index_languages is not None and missing:
        raise ConfigError(
            f"train.search_langs: {', '.join(missing)} not in the index (it holds {', '.join(sorted(index_languages))})"
        )


def training_rows(config: Config, train: Sequence[QAExample]) -> list[TrainRow]:
    """The GRPO rows of a run: ``train.languages``' questions of the train split, shuffled and cut by seed.

    Only the benchmark's train split is ever passed here (never validation or test questions).
    """
    from crosearch.rl.common import select_questions

    t = config.train
    questions = select_questions(list(train), t.languages, t.max_questions, t.seed, t.question_ids)
    pool = [q for q in train if t.languages is None or q.lang in t.languages]
    return build_rows(
        questions,
        multilingual=t.multilingual_groups,
        group_languages=t.group_languages,
        seed=t.seed,
        pool=pool,
        search_langs=t.search_langs if t.group_mode == "search-langs" else None,
    )


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
class RolloutLog:
    """``rollouts.jsonl``: one line per rollout, appended (and flushed) after each rollout call.

    A line holds the optimizer step the rollout trains (``step``), the question (``id``,
    ``lang``), the language its searches went to (``search_lang``), its queries, the
    languages and ids of the evidence each search inserted, whether the gold paragraph was
    among it, the answer, the number of searches and how the rollout ended. Rewards are in
    the trainer's log (``search_lang/<reward>/<lang>`` per search language). A resumed run
    redoes the steps after its checkpoint: their lines are dropped before the first new one.
    """

    path: Path
    _resumed: bool = False

    def write(
        self, step: int, rollouts: Sequence[Any], questions: Sequence[QAExample], search_langs: Sequence[str | None]
    ) -> None:
        from crosearch.eval.qa import append_predictions, read_predictions
        from crosearch.io import write_jsonl

        if not self._resumed:
            self._resumed = True
            done = read_predictions(self.path, repair=True)
            kept = [r for r in done if int(r.get("step", 0)) < step]
            if len(kept) != len(done):
                write_jsonl(self.path, kept)
        records = []
        for r, q, search_lang in zip(rollouts, questions, search_langs):
            searches = [t for t in r.turns if t.action == "search" and t.query is not None]
            records.append(
                {
                    "step": step,
                    "id": q.id,
                    "lang": q.lang,
                    "search_lang": search_lang or q.lang,
                    "queries": [t.query for t in searches],
                    "evidence_langs": [[d.lang for d in t.docs] for t in searches],
                    "evidence": [[d.doc_id for d in t.docs] for t in searches],
                    "gold_in_evidence": (
                        any(d.paragraph == q.paragraph for t in searches for d in t.docs) if q.paragraph else None
                    ),
                    "answer": r.answer,
                    "searches": r.n_searches,
                    "stop_reason": r.stop_reason,
                    "model_tokens": sum(r.env_mask),
                }
            )
        append_predictions(self.path, records)


@dataclass
class RolloutFunction:
    """The callable handed to ``GRPOTrainer(rollout_func=...)``.

    ``make_engine(model)`` builds the rollout engine around the model being
    trained (called once, with the trainer's unwrapped model, so generation
    always uses the current weights) and the timed retriever; ``prompt_builder``
    is the agent's :class:`~crosearch.agent.prompts.PromptBuilder`. ``log_dir``
    (when given) receives the rollout log (``rollouts.jsonl``, see :class:`RolloutLog`).
    """

    rows: Sequence[TrainRow]
    make_engine: Any
    retriever: TimedRetriever
    prompt_builder: Any
    log_dir: Path | None = None
    times: PhaseTimes = field(default_factory=PhaseTimes)
    _engine: Any = None
    _table: dict[str, TrainRow] = field(default_factory=dict)
    _log: RolloutLog | None = None
    search_lang_groups: bool = False

    def __post_init__(self) -> None:
        self._table = {row.key: row for row in self.rows}
        if len(self._table) != len(self.rows):
            raise ValueError("training rows must have unique keys")
        self.search_lang_groups = any(row.search_langs for row in self.rows)

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

    def assign_search_langs(self, prompts: Sequence[str]) -> list[str | None]:
        """The language each received prompt's searches go to (k-th repeat -> entry k mod n; None = its own)."""
        seen: dict[str, int] = defaultdict(int)
        chosen: list[str | None] = []
        for key in prompts:
            langs = self._table[key].search_langs
            chosen.append(langs[seen[key] % len(langs)] if langs else None)
            seen[key] += 1
        return chosen

    def requests(
        self, questions: Sequence[QAExample], tokenizer: Any, search_langs: Sequence[str | None] | None = None
    ) -> list[Any]:
        """Engine requests: the agent's prompt for each question version, its own exclusions, its search language."""
        from crosearch.agent.engine import RolloutRequest

        langs = search_langs if search_langs is not None else [None] * len(questions)
        return [
            RolloutRequest(
                prompt=self.prompt_builder.encode(tokenizer, q.question, q.lang),
                lang=q.lang,
                exclude=frozenset(q.exclude),
                id=q.id,
                search_lang=search_lang,
            )
            for q, search_lang in zip(questions, langs)
        ]

    def __call__(self, prompts: list[str], trainer: Any) -> dict[str, list[Any]]:
        model = trainer.accelerator.unwrap_model(trainer.model)
        if self._engine is None:
            self._engine = self.make_engine(model)
        questions = self.assign(prompts)
        search_langs = self.assign_search_langs(prompts)
        requests = self.requests(questions, self._engine.tokenizer, search_langs)
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
            if self.search_lang_groups:
                for lang in sorted({s for s in search_langs if s}):
                    picked = [r for r, s in zip(results, search_langs) if s == lang]
                    log(f"search_lang/searches/{lang}", sum(r.n_searches for r in picked) / len(picked))
        if self.log_dir is not None:
            if self._log is None:
                rank = int(getattr(getattr(trainer, "accelerator", None), "process_index", 0) or 0)
                self._log = RolloutLog(self.log_dir / ("rollouts.jsonl" if rank == 0 else f"rollouts.rank{rank}.jsonl"))
            self._log.write(int(trainer.state.global_step) + 1, results, questions, search_langs)
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
        if self.search_lang_groups:
            # The rewards log themselves per search language too (search_lang/<reward>/<lang>).
            batch["search_lang"] = [s or q.lang for s, q in zip(search_langs, questions)]
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
