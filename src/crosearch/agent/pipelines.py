"""The five QA pipelines, each one configuration of the one rollout engine.

``direct``
    Closed book: a prompt without evidence, the engine run with ``max_turns=0``
    (so it goes straight to the forced ``<answer>`` turn).
``rag-mono``
    One-shot RAG: the question is the query, searched in the question's language
    through the ``mono`` integration strategy (per-question ``exclude`` honoured);
    the evidence is put in the prompt as the engine's ``<information>`` block,
    then the engine forces the answer (``max_turns=0``).
``rag-concat``
    The same with the ``concat`` strategy: the raw top-k of every language.
``rag-crosslingual``
    The same with the ``crosslingual`` strategy (translated queries, one ranking,
    de-duplication, aligned supplementary evidence), configured by ``crosslingual.*``.
``search-agent``
    The multi-turn engine with the integration strategy of ``crosslingual.strategy``.

Evaluation and ``crosearch ask`` use these, so an evaluated answer is produced by
exactly the code that produces training rollouts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crosearch.config import Config, ModelConfig
from crosearch.errors import ConfigError, CrosearchError
from crosearch.types import QAExample

if TYPE_CHECKING:
    from crosearch.agent.backends import GenerationBackend
    from crosearch.agent.engine import InformationHook, Rollout
    from crosearch.crosslingual.integration import Evidence, IntegrationQuery, Integrator
    from crosearch.retrieval.base import Retriever

PIPELINES: tuple[str, ...] = ("direct", "rag-mono", "rag-concat", "rag-crosslingual", "search-agent")
_RAG_STRATEGY = {"rag-mono": "mono", "rag-concat": "concat", "rag-crosslingual": "crosslingual"}


def pipeline_strategy(name: str, config: Config) -> str | None:
    """The integration strategy that produces a pipeline's evidence (None for ``direct``)."""
    if name == "search-agent":
        return str(config.crosslingual.strategy)
    return _RAG_STRATEGY.get(name)


def bundled_or_path(template: str) -> str:
    """A bundled prompt name (``crosearch/prompts/<name>.txt``) resolved to its file, or ``template`` (a path)."""
    if "/" not in template and not template.endswith(".txt"):
        bundled = resources.files("crosearch").joinpath("prompts", f"{template}.txt")
        if bundled.is_file():
            return str(bundled)
    if not Path(template).is_file():
        raise ConfigError(f"prompt template '{template}' is neither a bundled prompt nor an existing file")
    return template


@dataclass(slots=True)
class Policy:
    """A loaded policy: the model, its tokenizer and the generation backend around them."""

    model: Any
    tokenizer: Any
    backend: GenerationBackend


def load_policy_backend(model_config: ModelConfig) -> Policy:
    """Load the policy named by ``config.model`` (bundled, tiny, a path or HF id, plus adapter) for generation."""
    from crosearch.agent.backends import HFBackend
    from crosearch.models import load_policy

    loaded = load_policy(model_config)
    model, tokenizer = loaded.model, loaded.tokenizer
    model.eval()
    return Policy(model=model, tokenizer=tokenizer, backend=HFBackend(model, tokenizer))


def evidence_summary(evidence: Evidence) -> dict[str, Any]:
    """What one search inserted: passages with language and role, and the integration trace."""
    return {
        "query": evidence.query.text,
        "passages": [
            {
                "doc_id": p.doc_id,
                "lang": p.lang,
                "role": p.role,
                "paragraph": p.paragraph,
                "score": p.score,
                "title": p.translated_title or p.title,
                "translated": p.translated is not None,
                "translation": p.translated,
                "shown": p.shown,
            }
            for p in evidence.passages
        ],
        "trace": asdict(evidence.trace),
    }


class _EvidenceRecorder:
    """Wraps the engine's integration hook to keep each search's full evidence trace.

    The engine records only which documents it inserted; the integration's trace
    (query translations, dropped duplicates, budget cuts) is kept here, keyed by
    the search request, so that reports and ``ask`` can show it.
    """

    def __init__(self, inner: InformationHook) -> None:
        self.inner = inner
        self.seen: dict[tuple[str, str, frozenset[str]], dict[str, Any]] = {}

    def __call__(self, queries: Sequence[IntegrationQuery]) -> Sequence[Evidence]:
        evidences = list(self.inner(queries))
        for q, ev in zip(queries, evidences):
            self.seen[(q.text, q.lang, frozenset(q.exclude))] = evidence_summary(ev)
        return evidences


@dataclass(slots=True)
class PipelineOutput:
    """One answered question: the engine's rollout plus the evidence each retrieval inserted."""

    question: QAExample
    pipeline: str
    rollout: Rollout
    prompt_evidence: list[dict[str, Any]] = field(default_factory=list)
    search_evidence: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def prediction(self) -> str:
        return self.rollout.answer or ""

    @property
    def searches(self) -> int:
        """Search turns of the model (the one-shot retrieval of the RAG pipelines is not one)."""
        return int(self.rollout.n_searches)

    def inserted_docs(self) -> list[dict[str, Any]]:
        """Every passage that entered the context (the prompt's evidence and every search's)."""
        docs = [p for ev in self.prompt_evidence for p in ev["passages"]]
        for turn in self.rollout.turns:
            docs += [asdict(d) for d in turn.docs]
        return docs

    def evidence_blocks(self) -> list[dict[str, Any]]:
        """Each retrieval's evidence summary: the prompt's (RAG pipelines) and every search turn's."""
        return [*self.prompt_evidence, *(self.search_evidence[i] for i in sorted(self.search_evidence))]

    def evidence_hit(self) -> float | None:
        """1.0 if the gold paragraph (in any language) entered the context; None without evidence or gold."""
        if self.pipeline == "direct" or self.question.paragraph is None:
            return None
        return float(any(d.get("paragraph") == self.question.paragraph for d in self.inserted_docs()))

    def trace(self) -> dict[str, Any]:
        """The full trace: turns (with each search's integration trace), the prompt evidence, token counts."""
        trace = {"question": self.question.question, "lang": self.question.lang, **self.rollout.trace()}
        trace["pipeline"] = self.pipeline
        trace["prompt_evidence"] = self.prompt_evidence
        for turn in trace["turns"]:
            if turn["index"] in self.search_evidence:
                turn["evidence"] = self.search_evidence[turn["index"]]
        trace["prompt_tokens"] = len(self.rollout.prompt_ids)
        trace["model_tokens"] = int(sum(self.rollout.env_mask))
        trace["inserted_tokens"] = len(self.rollout.env_mask) - trace["model_tokens"]
        return trace


class Pipeline:
    """One of :data:`PIPELINES` over a policy and a retriever, configured by a full :class:`~crosearch.config.Config`.

    ``temperature`` overrides ``agent.temperature`` (evaluation decodes greedily by default).
    """

    def __init__(
        self,
        name: str,
        policy: Policy,
        retriever: Retriever | None,
        config: Config,
        *,
        temperature: float | None = None,
        progress: bool = False,
    ) -> None:
        from crosearch.agent.engine import RolloutEngine
        from crosearch.agent.prompts import PromptBuilder

        if name not in PIPELINES:
            raise CrosearchError(f"unknown pipeline '{name}'; choose one of {', '.join(PIPELINES)}")
        if name != "direct" and retriever is None:
            raise CrosearchError(f"the {name} pipeline needs a retriever (--index or --retriever-url)")
        self.name = name
        self.policy = policy
        self.config = config
        agent = config.agent
        if temperature is not None:
            agent = agent.model_copy(update={"temperature": float(temperature)})
        self.agent = agent
        self._recorder: _EvidenceRecorder | None = None
        self._integrator: Integrator | None = None
        if name == "search-agent":
            assert retriever is not None  # checked above; the type checker cannot see it
            self.prompts = PromptBuilder.from_config(agent)
            self.engine = RolloutEngine.from_config(
                policy.backend,
                retriever,
                config.model_copy(update={"agent": agent}),
                model=policy.model,
                progress=progress,
            )
            assert self.engine.integration is not None  # from_config always wires one
            self._recorder = _EvidenceRecorder(self.engine.integration)
            self.engine.integration = self._recorder
            return
        chat = PromptBuilder.from_config(agent).chat
        template = config.eval.direct_template if name == "direct" else config.eval.rag_template
        self.prompts = PromptBuilder(template=bundled_or_path(template), use_chat_template=chat)
        # Zero turns: the engine runs only its forced-answer turn (one-shot pipelines).
        self.engine = RolloutEngine(policy.backend, None, agent.model_copy(update={"max_turns": 0}), progress=progress)
        if name in _RAG_STRATEGY:
            from crosearch.crosslingual.integration import build_integrator

            assert retriever is not None
            cl = config.crosslingual.model_copy(
                update={
                    "strategy": _RAG_STRATEGY[name],
                    "token_budget": config.eval.rag_token_budget or config.crosslingual.token_budget,
                }
            )
            self._k = cl.k or config.retrieval.k
            self._integrator = build_integrator(
                config.model_copy(update={"crosslingual": cl}), retriever, tokenizer=policy.tokenizer
            )

    def _encode(self, text: str) -> list[int]:
        # A chat template writes BOS itself; plain prompts get the tokenizer's special tokens.
        return list(self.policy.tokenizer(text, add_special_tokens=not self.prompts.chat)["input_ids"])

    def run(self, questions: Sequence[QAExample]) -> list[PipelineOutput]:
        """Answer a batch of questions (one engine call; retrieval batched as well)."""
        from crosearch.agent.engine import NO_RESULTS, RolloutRequest, information_block

        if not questions:
            return []
        tokenizer = self.policy.tokenizer
        evidence: list[list[dict[str, Any]]] = [[] for _ in questions]
        prompts = [self.prompts.render(tokenizer, q.question, q.lang) for q in questions]
        if self._integrator is not None:
            from crosearch.crosslingual.integration import IntegrationQuery

            evidences = self._integrator.gather(
                [IntegrationQuery(q.question, q.lang, frozenset(q.exclude)) for q in questions], self._k
            )
            for i, ev in enumerate(evidences):
                prompts[i] += information_block(ev.body.strip() or NO_RESULTS)
                evidence[i].append(evidence_summary(ev))
        requests = [
            RolloutRequest(prompt=self._encode(p), lang=q.lang, exclude=frozenset(q.exclude), id=q.id)
            for p, q in zip(prompts, questions)
        ]
        if self._recorder is not None:
            self._recorder.seen.clear()
        rollouts = self.engine.run(requests)
        outputs = [
            PipelineOutput(question=q, pipeline=self.name, rollout=rollout, prompt_evidence=evs)
            for q, rollout, evs in zip(questions, rollouts, evidence)
        ]
        if self._recorder is not None:
            self._attach_search_traces(outputs)
        return outputs

    def _attach_search_traces(self, outputs: list[PipelineOutput]) -> None:
        assert self._recorder is not None
        for out in outputs:
            key_exclude = frozenset(out.question.exclude)
            for turn in out.rollout.turns:
                if turn.action == "search" and turn.query is not None:
                    summary = self._recorder.seen.get((turn.query, out.question.lang, key_exclude))
                    if summary is not None:
                        out.search_evidence[turn.index] = summary
