"""The batched multi-turn rollout engine: generate, parse, search (batched), insert, repeat.

Token exactness: a rollout's ids are built by concatenation only. Model turns are
a prefix of the ids the backend sampled; inserted text (``<information>`` blocks,
the invalid-action correction, the forced ``<answer>`` prefix) is tokenised on its
own and appended. Nothing is ever re-tokenised, so the ids trained on are the ids
sampled, and ``env_mask`` marks which is which.

Output layout (what TRL's ``rollout_func`` returns, see :func:`to_trl`):
``completion_ids``, ``env_mask`` (1 = model token, 0 = inserted) and ``logprobs``
are parallel lists; ``logprobs`` holds the sampling log-prob of each model token
and ``0.0`` at inserted positions (TRL's own tool loop uses the same placeholder;
the mask keeps them out of every loss and ratio).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from crosearch.agent.backends import Generation, GenerationBackend, SamplingParams
from crosearch.agent.parsing import TurnParse, normalize_query, parse_forced_answer, parse_turn
from crosearch.agent.prompts import read_prompt_file
from crosearch.config import AgentConfig, Config
from crosearch.errors import CrosearchError
from crosearch.progress import bar

if TYPE_CHECKING:
    from crosearch.crosslingual.integration import Evidence, IntegrationQuery
    from crosearch.retrieval.base import Retriever

StopReason = Literal["answered", "answer_truncated", "max_turns", "budget", "eos_without_answer", "invalid_action"]

INFO_OPEN = "\n\n<information>"
INFO_CLOSE = "</information>\n\n"
STOP_STRINGS = ("</search>", "</answer>", "<information>")
FORCED_STOP_STRINGS = ("</answer>", "<information>")


def information_block(body: str) -> str:
    """Evidence text exactly as the engine inserts it after a search."""
    return f"{INFO_OPEN}{body}{INFO_CLOSE}"


NO_RESULTS = "No results found."


@dataclass(slots=True)
class RolloutRequest:
    """One rollout to run.

    ``prompt`` is text (tokenised with the tokenizer's special tokens, i.e. BOS) or
    token ids used as given. ``lang`` is the question's language; ``exclude`` the
    passage ids this question may never see. ``search_lang`` aims this rollout's searches
    at another language (``None`` = the question's; see ``IntegrationQuery.search_lang``):
    the question, and so the prompt and the golds, stay the question's own.
    ``id`` and ``meta`` are carried through.
    """

    prompt: str | Sequence[int]
    lang: str
    exclude: frozenset[str] | Sequence[str] = frozenset()
    id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    search_lang: str | None = None


@dataclass(slots=True)
class DocRef:
    """A passage inserted by a search (enough to score retrieval without the text)."""

    doc_id: str
    lang: str
    role: str | None = None
    paragraph: str | None = None
    score: float | None = None


@dataclass(slots=True)
class Turn:
    """One step of a rollout: what the model wrote, what it asked for, what was inserted after it."""

    index: int
    kind: Literal["generate", "force_answer"]
    text: str
    action: Literal["search", "answer", "invalid"]
    finish: str
    query: str | None = None
    answer: str | None = None
    problems: list[str] = field(default_factory=list)
    model_tokens: int = 0
    trimmed_tokens: int = 0
    env_tokens: int = 0
    information: str | None = None
    docs: list[DocRef] = field(default_factory=list)


@dataclass(slots=True)
class Rollout:
    """A finished rollout, ready for rewards (``answer``) and for the policy loss (ids, mask, log-probs)."""

    id: str | None
    lang: str
    prompt_ids: list[int]
    completion_ids: list[int]
    env_mask: list[int]
    logprobs: list[float]
    turns: list[Turn]
    answer: str | None
    n_searches: int
    stop_reason: StopReason
    meta: dict[str, Any] = field(default_factory=dict)
    search_lang: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def trace(self) -> dict[str, Any]:
        """The rollout without token-level lists (for logs and reward functions)."""
        return {
            "id": self.id,
            "lang": self.lang,
            "search_lang": self.search_lang or self.lang,
            "answer": self.answer,
            "n_searches": self.n_searches,
            "stop_reason": self.stop_reason,
            "turns": [asdict(t) for t in self.turns],
        }


def to_trl(rollouts: Sequence[Rollout]) -> dict[str, list[Any]]:
    """The dict TRL's ``GRPOTrainer`` expects from ``rollout_func`` (one entry per rollout).

    Besides the required ``prompt_ids``/``completion_ids``/``logprobs`` and the
    optional ``env_mask``, the other keys reach the reward functions as keyword arguments.
    """
    return {
        "prompt_ids": [r.prompt_ids for r in rollouts],
        "completion_ids": [r.completion_ids for r in rollouts],
        "logprobs": [r.logprobs for r in rollouts],
        "env_mask": [r.env_mask for r in rollouts],
        "answer": [r.answer for r in rollouts],
        "n_searches": [r.n_searches for r in rollouts],
        "stop_reason": [r.stop_reason for r in rollouts],
        "trace": [r.trace() for r in rollouts],
    }


# The integration seam: a batch of (query text, question language, excluded ids) in,
# one evidence per query out, with ``.body`` (the <information> text) and ``.passages``.
# :meth:`crosearch.crosslingual.integration.Integrator.gather` (with its k bound) is one.
InformationHook = Callable[[Sequence["IntegrationQuery"]], Sequence["Evidence"]]


@dataclass(slots=True)
class _State:
    request: RolloutRequest
    prompt_ids: list[int]
    exclude: frozenset[str]
    completion: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    queries: set[str] = field(default_factory=set)
    n_searches: int = 0
    answer: str | None = None
    stop: StopReason | None = None
    done: bool = False

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.completion)

    def context(self) -> list[int]:
        return self.prompt_ids + self.completion

    def add_model(self, ids: Sequence[int], logprobs: Sequence[float]) -> None:
        self.completion.extend(ids)
        self.mask.extend([1] * len(ids))
        self.logprobs.extend(logprobs)

    def add_env(self, ids: Sequence[int]) -> None:
        self.completion.extend(ids)
        self.mask.extend([0] * len(ids))
        self.logprobs.extend([0.0] * len(ids))


class RolloutEngine:
    """Runs Search-R1-style rollouts for a batch of requests.

    ``integration`` turns a batch of queries into inserted evidence (see
    :data:`InformationHook`); it is called once per turn with the searches of all
    active rollouts. ``config`` is the ``agent`` section.
    """

    def __init__(
        self,
        backend: GenerationBackend,
        integration: InformationHook | None,
        config: AgentConfig,
        *,
        progress: bool = False,
    ) -> None:
        self.backend = backend
        self.tokenizer = backend.tokenizer
        self.integration = integration
        self.config = config
        self.progress = progress
        self._calls = 0
        # The backend of the current run: a KV-caching session of ``backend`` when it offers one.
        self._active: GenerationBackend = backend
        self.last_session: GenerationBackend | None = None
        encode = self._encode
        self._force_ids = encode(read_prompt_file("force_answer"))
        self._invalid_ids = encode(read_prompt_file("invalid_action"))
        self._info_open = encode(INFO_OPEN)
        self._info_close = encode(INFO_CLOSE)
        self._reserve = len(self._force_ids) + int(config.answer_tokens)

    @classmethod
    def from_config(
        cls,
        backend: GenerationBackend,
        retriever: Retriever,
        config: Config,
        *,
        model: Any = None,
        progress: bool = False,
    ) -> RolloutEngine:
        """An engine whose searches go through the integration strategy of ``config.crosslingual``.

        ``config`` is the whole configuration (agent, crosslingual, retrieval); ``model`` (the policy)
        is reused as the query translator when that strategy asks for one.
        """
        from functools import partial

        from crosearch.crosslingual.integration import build_integrator

        policy = (model, backend.tokenizer) if model is not None else None
        integrator = build_integrator(config, retriever, tokenizer=backend.tokenizer, policy=policy)
        k = config.crosslingual.k or config.retrieval.k
        return cls(backend, partial(integrator.gather, k=k), config.agent, progress=progress)

    # ------------------------------------------------------------------ helpers

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def _sampling(self) -> SamplingParams:
        cfg = self.config
        # A distinct, reproducible seed per generate call: same config -> same rollouts.
        digest = hashlib.sha256(f"{cfg.seed}:{self._calls}".encode()).digest()
        self._calls += 1
        return SamplingParams(
            temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k, seed=int.from_bytes(digest[:4], "little")
        )

    def _prefix(self, ids: list[int], parse: TurnParse, text: str) -> int:
        """How many of ``ids`` make up the first ``parse.end`` characters of their text."""
        if parse.end >= len(text):
            return len(ids)

        def length(k: int) -> int:
            return len(self._decode(ids[:k]))

        low, high = 0, len(ids)
        if parse.end_inclusive:  # smallest k whose text reaches end
            while low < high:
                mid = (low + high) // 2
                if length(mid) >= parse.end:
                    high = mid
                else:
                    low = mid + 1
            return low
        while low < high:  # largest k whose text stays within end
            mid = (low + high + 1) // 2
            if length(mid) <= parse.end:
                low = mid
            else:
                high = mid - 1
        return low

    def _prepare(self, request: RolloutRequest, index: int) -> _State:
        if isinstance(request.prompt, str):
            prompt_ids = list(self.tokenizer(request.prompt)["input_ids"])
        else:
            prompt_ids = [int(t) for t in request.prompt]
        name = request.id or f"#{index}"
        if not prompt_ids:
            raise CrosearchError(f"rollout request {name}: the prompt is empty")
        room = int(self.config.max_total_tokens) - len(prompt_ids) - self._reserve
        if room < 1:
            raise CrosearchError(
                f"rollout request {name}: the prompt has {len(prompt_ids)} tokens, which leaves no room within "
                f"agent.max_total_tokens={self.config.max_total_tokens} (the forced answer needs {self._reserve})"
            )
        return _State(request=request, prompt_ids=prompt_ids, exclude=frozenset(request.exclude))

    def _room(self, state: _State) -> int:
        """Tokens still free before the reserve kept for a forced answer."""
        return int(self.config.max_total_tokens) - state.length - self._reserve

    def _generate(self, states: list[_State], caps: list[int], stops: Sequence[str]) -> list[Generation]:
        """Generate for many states in micro-batches of similar length."""
        out: list[Generation | None] = [None] * len(states)
        order = sorted(range(len(states)), key=lambda i: states[i].length)
        size = int(self.config.batch_size)
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            gens = self._active.generate(
                [states[i].context() for i in chunk], [caps[i] for i in chunk], list(stops), self._sampling()
            )
            for i, gen in zip(chunk, gens):
                out[i] = gen
        return [g for g in out if g is not None]

    def _fit_information(self, state: _State, body: str) -> list[int] | None:
        """The ids of one ``<information>`` block, cut to the room left (None if not even the tags fit)."""
        inner = self._encode(body)
        room = self._room(state) - len(self._info_open) - len(self._info_close)
        if room < 0:
            return None
        return self._info_open + inner[:room] + self._info_close

    # ------------------------------------------------------------------ the loop

    def run(self, requests: Sequence[RolloutRequest]) -> list[Rollout]:
        """Run every request to completion; malformed model output ends a rollout, never raises."""
        states = [self._prepare(r, i) for i, r in enumerate(requests)]
        session = getattr(self.backend, "session", None)
        self._active = session() if self.config.kv_cache and session is not None else self.backend
        self.last_session = self._active
        try:
            self._loop(states)
        finally:
            close = getattr(self._active, "close", None)
            if close is not None and self._active is not self.backend:
                close()
            self._active = self.backend
        return [self._rollout(s) for s in states]

    def _loop(self, states: list[_State]) -> None:
        with bar("rollouts", len(states), enabled=self.progress and bool(states), transient=True) as progress:
            for turn_index in range(int(self.config.max_turns)):
                active = [s for s in states if not s.done and s.stop is None]
                if not active:
                    break
                progress.describe(f"rollouts (turn {turn_index + 1}, {len(active)} active)")
                ready = []
                for s in active:
                    if self._room(s) < 1:
                        s.stop = "budget"
                    else:
                        ready.append(s)
                if not ready:
                    break
                caps = [min(int(self.config.max_new_tokens), self._room(s)) for s in ready]
                gens = self._generate(ready, caps, STOP_STRINGS)
                searches: list[tuple[_State, Turn, str]] = []
                for s, gen in zip(ready, gens):
                    turn = self._model_turn(s, gen, turn_index)
                    if turn.action == "search" and turn.query is not None:
                        searches.append((s, turn, turn.query))
                    elif turn.action == "invalid" and not s.done:
                        self._after_invalid(s, turn, gen)
                self._search(searches)
                progress.advance(sum(1 for s in ready if s.done))

            pending = [s for s in states if not s.done]
            for s in pending:
                if s.stop is None:
                    s.stop = "max_turns"
            if pending:
                progress.describe(f"rollouts (forced answers, {len(pending)} active)")
                self._force_answers(pending)
                progress.advance(len(pending))

    def _model_turn(self, s: _State, gen: Generation, turn_index: int) -> Turn:
        text = self._decode(gen.ids)
        parse = parse_turn(text, s.queries)
        keep = self._prefix(gen.ids, parse, text)
        s.add_model(gen.ids[:keep], gen.logprobs[:keep])
        turn = Turn(
            index=turn_index,
            kind="generate",
            text=self._decode(gen.ids[:keep]),
            action=parse.action,
            finish=gen.finish,
            query=parse.query,
            answer=parse.answer,
            problems=list(parse.problems),
            model_tokens=keep,
            trimmed_tokens=len(gen.ids) - keep,
        )
        s.turns.append(turn)
        if parse.action == "answer":
            s.answer = parse.answer
            # An answer cut by the token cap (no closing tag, no EOS) is kept but marked.
            s.stop = "answered" if parse.closed or gen.finish == "eos" else "answer_truncated"
            s.done = True
        elif parse.action == "search":
            s.queries.add(normalize_query(parse.content or ""))
            s.n_searches += 1
        return turn

    def _after_invalid(self, s: _State, turn: Turn, gen: Generation) -> None:
        if gen.finish == "eos":
            s.stop, s.done = "eos_without_answer", True
            return
        if self.config.on_invalid == "stop":
            s.stop, s.done = "invalid_action", True
            return
        if len(self._invalid_ids) > self._room(s):
            s.stop = "budget"
            return
        s.add_env(self._invalid_ids)
        turn.env_tokens = len(self._invalid_ids)

    def _search(self, searches: list[tuple[_State, Turn, str]]) -> None:
        """All searches of one turn as one batched integration call, then insert the results."""
        if not searches:
            return
        if self.integration is None:
            raise CrosearchError("the model searched, but this rollout engine has no retriever/integration")
        from crosearch.crosslingual.integration import IntegrationQuery

        queries = [
            IntegrationQuery(text=q, lang=s.request.lang, exclude=s.exclude, search_lang=s.request.search_lang)
            for s, _, q in searches
        ]
        evidences = list(self.integration(queries))
        if len(evidences) != len(queries):
            raise CrosearchError(f"the integration returned {len(evidences)} results for {len(queries)} searches")
        for (s, turn, _), ev in zip(searches, evidences):
            body = ev.body.strip() or NO_RESULTS
            ids = self._fit_information(s, body)
            if ids is None:
                s.stop = "budget"
                turn.problems.append("information_over_budget")
                continue
            s.add_env(ids)
            turn.env_tokens = len(ids)
            turn.information = self._decode(ids)
            turn.docs = [
                DocRef(doc_id=p.doc_id, lang=p.lang, role=p.role, paragraph=p.paragraph, score=p.score)
                for p in ev.passages
            ]

    def _force_answers(self, states: list[_State]) -> None:
        """Insert the ``<answer>`` prefix and let the model write only the answer."""
        for s in states:
            s.add_env(self._force_ids)
        limit = int(self.config.max_total_tokens)
        caps = [max(0, min(int(self.config.answer_tokens), limit - s.length)) for s in states]
        gens = self._generate(states, caps, FORCED_STOP_STRINGS)
        for s, gen in zip(states, gens):
            text = self._decode(gen.ids)
            parse = parse_forced_answer(text)
            keep = self._prefix(gen.ids, parse, text)
            s.add_model(gen.ids[:keep], gen.logprobs[:keep])
            s.answer = parse.answer
            s.done = True
            s.turns.append(
                Turn(
                    index=len(s.turns),
                    kind="force_answer",
                    text=self._decode(gen.ids[:keep]),
                    action="answer",
                    finish=gen.finish,
                    answer=parse.answer,
                    problems=list(parse.problems),
                    model_tokens=keep,
                    trimmed_tokens=len(gen.ids) - keep,
                    env_tokens=len(self._force_ids),
                )
            )

    def _rollout(self, s: _State) -> Rollout:
        return Rollout(
            id=s.request.id,
            lang=s.request.lang,
            prompt_ids=s.prompt_ids,
            completion_ids=s.completion,
            env_mask=s.mask,
            logprobs=s.logprobs,
            turns=s.turns,
            answer=s.answer,
            n_searches=s.n_searches,
            stop_reason=s.stop or "max_turns",
            meta=dict(s.request.meta),
            search_lang=s.request.search_lang,
        )
