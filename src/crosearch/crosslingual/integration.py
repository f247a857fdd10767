"""Integration strategies: what one search turn inserts into the context, batched over many queries.

``mono``
    Search the question's language only.
``concat``
    The vanilla baseline: the raw top results of every language, concatenated
    language by language, with no alignment.
``crosslingual``
    (a) translate the query into each target language; (b) search every
    language with its own query in one batched retriever call, rank the pooled
    candidates on one scale (reciprocal rank fusion, or raw scores for
    multilingual dense retrieval), and drop cross-language duplicates (compared
    after translation into the question's language, and by aligned embedding
    similarity when the index has one), keeping the question's language; with
    ``ranking: aligned`` (a) is skipped and (b) is one search of all languages with
    the question's own text, ranked by the retriever's aligned dense score, so
    translating the query is optional (``aligned_query_translation`` translates it
    into each target language for that language's BM25 part of the hybrid score);
    (c) render foreign evidence aligned with the primary: translated
    into the question's language (or kept in the original with its language
    marked) and labelled as supplementary.

Every strategy honours each query's ``exclude`` set and holds the inserted text
within a token budget (lowest-ranked passages are dropped first, then the last
one is cut at a sentence boundary).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from crosearch.config import Config, CrossLingualConfig
from crosearch.crosslingual.dedup import deduplicate
from crosearch.crosslingual.languages import language_name
from crosearch.crosslingual.translate import Translator
from crosearch.errors import CrosearchError
from crosearch.retrieval.base import Retriever
from crosearch.types import Hit, SearchQuery

Strategy = Literal["mono", "concat", "crosslingual"]
STRATEGIES: tuple[str, ...] = ("mono", "concat", "crosslingual")


@dataclass(slots=True)
class IntegrationQuery:
    """One search request of one rollout: the query text, the question's language, its excluded passage ids.

    ``search_lang`` aims the search at another language than the question's (``None`` = the
    question's own): it takes the question language's place as the *primary* language, the
    one ``mono`` searches alone and ``concat``/``crosslingual`` search first, rank first on
    ties and keep among duplicates. Evidence is still rendered for the question (translated
    into ``lang`` under ``crosslingual`` with ``render: translate``).
    """

    text: str
    lang: str
    exclude: frozenset[str] = frozenset()
    search_lang: str | None = None

    @property
    def primary(self) -> str:
        """The language this search is aimed at."""
        return self.search_lang or self.lang


@dataclass(slots=True)
class EvidencePassage:
    """One passage as inserted: ``role`` is ``primary`` (question language) or ``supplementary``."""

    doc_id: str
    lang: str
    title: str
    text: str
    score: float
    role: Literal["primary", "supplementary"]
    translated: str | None = None
    translated_title: str | None = None
    paragraph: str | None = None
    shown: str = ""


@dataclass(slots=True)
class EvidenceTrace:
    """What happened on the way: languages searched, query translations, duplicates, translations, budget cuts."""

    strategy: str
    languages_searched: list[str] = field(default_factory=list)
    query_translations: dict[str, str] = field(default_factory=dict)
    candidates: int = 0
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    translated: list[str] = field(default_factory=list)
    dropped_for_budget: list[str] = field(default_factory=list)
    truncated: str | None = None
    tokens: int = 0


@dataclass(slots=True)
class Evidence:
    """The ordered passages of one search turn, the rendered ``<information>`` body, and its trace."""

    query: IntegrationQuery
    passages: list[EvidencePassage]
    body: str
    trace: EvidenceTrace

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["query"]["exclude"] = sorted(self.query.exclude)
        return out


class TokenCounter:
    """Counts tokens with the policy tokenizer when given, else characters."""

    def __init__(self, tokenizer: Any | None = None) -> None:
        self.tokenizer = tokenizer
        self.unit = "tokens" if tokenizer is not None else "characters"

    def __call__(self, text: str) -> int:
        if self.tokenizer is None:
            return len(text)
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def _doc_header(index: int, passage: EvidencePassage, strategy: str, render: str, question_lang: str | None) -> str:
    title = passage.translated_title if passage.translated_title else passage.title
    if strategy != "crosslingual":
        # The Search-R1 format, so that mono/concat are the plain baselines.
        return f"Doc {index}(Title: {title})"
    if passage.role == "primary":
        if question_lang is None or passage.lang == question_lang:
            return f"Doc {index} (primary; Title: {title})"
        # Primary evidence in another language than the question's: a search aimed at that language.
        if render == "translate" and passage.translated is not None:
            return f"Doc {index} (primary, from {passage.lang}; Title: {title})"
        return f"Doc {index} (primary, in {language_name(passage.lang)} [{passage.lang}]; Title: {title})"
    if render == "translate" and passage.translated is not None:
        return f"Doc {index} (supplementary, from {passage.lang}; Title: {title})"
    return f"Doc {index} (supplementary, in {language_name(passage.lang)} [{passage.lang}]; Title: {title})"


def _shown_text(passage: EvidencePassage, render: str) -> str:
    if render == "translate" and passage.translated is not None:
        return passage.translated
    return passage.text


def _cut_to_budget(text: str, prefix: str, budget: int, count: TokenCounter) -> str | None:
    """The longest sentence prefix of ``text`` such that ``prefix + text`` fits; None if not even one sentence fits."""
    from crosearch.data.passages import sentence_spans

    best = None
    for _start, end in sentence_spans(text):
        candidate = text[:end]
        if count(prefix + candidate) > budget:
            break
        best = candidate
    return best


def render_evidence(
    passages: list[EvidencePassage],
    strategy: str,
    render: str,
    budget: int,
    count: TokenCounter,
    trace: EvidenceTrace,
    question_lang: str | None = None,
) -> tuple[list[EvidencePassage], str]:
    """Render passages best first within ``budget``; fills ``shown`` and the trace's budget fields.

    ``question_lang`` marks primary passages of another language (searches aimed elsewhere).
    """
    kept: list[EvidencePassage] = []
    lines: list[str] = []
    for position, passage in enumerate(passages):
        header = _doc_header(len(kept) + 1, passage, strategy, render, question_lang)
        text = _shown_text(passage, render)
        line = f"{header} {text}"
        joined = "\n".join(lines + [line])
        if count(joined) <= budget:
            passage.shown = text
            kept.append(passage)
            lines.append(line)
            continue
        # Over budget: cut this passage at a sentence boundary if at least one sentence fits,
        # then stop; everything ranked lower is dropped.
        prefix = "\n".join(lines + [f"{header} "])
        cut = _cut_to_budget(text, prefix, budget, count)
        if cut is None and not kept:
            # Not even one sentence of the best passage fits: cut it hard, so that a
            # search never inserts nothing when something was found.
            cut = _hard_cut(text, prefix, budget, count)
        if cut:
            passage.shown = cut
            kept.append(passage)
            lines.append(f"{header} {cut}")
            trace.truncated = passage.doc_id
            trace.dropped_for_budget = [p.doc_id for p in passages[position + 1 :]]
        else:
            trace.dropped_for_budget = [p.doc_id for p in passages[position:]]
        break
    body = "\n".join(lines)
    trace.tokens = count(body) if body else 0
    return kept, body


def _hard_cut(text: str, prefix: str, budget: int, count: TokenCounter) -> str:
    low, high = 0, len(text)
    while low < high:  # binary search on characters: the longest prefix that fits
        mid = (low + high + 1) // 2
        if count(prefix + text[:mid]) <= budget:
            low = mid
        else:
            high = mid - 1
    return text[:low].rstrip()


class Integrator:
    """Turns search queries into inserted evidence with one of the strategies (see the module docstring)."""

    def __init__(
        self,
        retriever: Retriever,
        settings: CrossLingualConfig,
        *,
        translator: Translator | None = None,
        tokenizer: Any | None = None,
        rrf_k: int = 60,
    ) -> None:
        """``settings`` is the ``crosslingual`` section (its ``k`` is the caller's: see :meth:`gather`);
        ``rrf_k`` comes from the ``retrieval`` section; ``tokenizer`` (the policy's) counts the budget."""
        if settings.strategy not in STRATEGIES:
            raise CrosearchError(
                f"unknown integration strategy '{settings.strategy}'; choose one of {', '.join(STRATEGIES)}"
            )
        if settings.strategy == "crosslingual" and translator is None and settings.ranking != "aligned":
            raise CrosearchError(
                "the crosslingual strategy needs a translator (use translator 'none' for identity) "
                "unless its ranking is 'aligned'"
            )
        if settings.aligned_query_translation and settings.strategy == "crosslingual":
            if settings.ranking != "aligned":
                raise CrosearchError(
                    "crosslingual.aligned_query_translation applies to ranking 'aligned' only "
                    f"(ranking '{settings.ranking}' translates the query for every language anyway)"
                )
            if translator is None:
                raise CrosearchError(
                    "crosslingual.aligned_query_translation needs a translator (crosslingual.translator)"
                )
        self.retriever = retriever
        self.settings = settings
        self.translator = translator
        self.count = TokenCounter(tokenizer)
        self.target_langs = list(settings.target_langs) if settings.target_langs else None
        self.rrf_k = rrf_k

    @property
    def strategy(self) -> Strategy:
        return self.settings.strategy

    @property
    def token_budget(self) -> int:
        return self.settings.token_budget

    # ------------------------------------------------------------------ public API

    def gather(self, queries: Sequence[IntegrationQuery], k: int) -> list[Evidence]:
        """Evidence for each query (at most ``k`` passages each, within the token budget), batched."""
        if k < 1:
            raise CrosearchError(f"k must be at least 1 (got {k})")
        if not queries:
            return []
        if self.strategy == "mono":
            return self._mono(queries, k)
        if self.strategy == "concat":
            return self._concat(queries, k)
        return self._crosslingual(queries, k)

    def hook(self, k: int) -> Callable[[str, str, frozenset[str]], str]:
        """A per-turn callable ``(query text, question language, exclude) -> <information> body``."""

        def run(text: str, lang: str, exclude: frozenset[str] = frozenset()) -> str:
            return self.gather([IntegrationQuery(text, lang, frozenset(exclude))], k)[0].body

        return run

    # ------------------------------------------------------------------ helpers

    def _languages_for(self, lang: str) -> list[str]:
        """The question's language first, then the configured targets present in the collection."""
        available = list(self.retriever.languages)
        others = self.target_langs if self.target_langs is not None else available
        out = [lang] if lang in available else []
        out += [ln for ln in others if ln != lang and ln in available and ln not in out]
        return out

    def _search(self, requests: list[SearchQuery], k: int) -> list[list[Hit]]:
        results = self.retriever.search(requests, k) if requests else []
        # The retriever contract already forbids excluded ids; filtering again keeps
        # the guarantee even for a remote server that ignores the field.
        return [[h for h in hits if h.doc_id not in req.exclude] for req, hits in zip(requests, results)]

    @staticmethod
    def _passage(hit: Hit, primary_lang: str) -> EvidencePassage:
        role: Literal["primary", "supplementary"] = "primary" if hit.lang == primary_lang else "supplementary"
        return EvidencePassage(
            doc_id=hit.doc_id,
            lang=hit.lang,
            title=hit.title,
            text=hit.text,
            score=hit.score,
            role=role,
            paragraph=hit.paragraph,
        )

    def _finish(self, query: IntegrationQuery, passages: list[EvidencePassage], trace: EvidenceTrace) -> Evidence:
        kept, body = render_evidence(
            passages, self.strategy, self.settings.render, self.token_budget, self.count, trace, query.lang
        )
        return Evidence(query=query, passages=kept, body=body, trace=trace)

    # ------------------------------------------------------------------ strategies

    def _mono(self, queries: Sequence[IntegrationQuery], k: int) -> list[Evidence]:
        requests = [SearchQuery(text=q.text, lang=q.lang, search_langs=[q.primary], exclude=q.exclude) for q in queries]
        results = self._search(requests, k)
        out = []
        for q, hits in zip(queries, results):
            trace = EvidenceTrace(strategy="mono", languages_searched=[q.primary], candidates=len(hits))
            out.append(self._finish(q, [self._passage(h, q.primary) for h in hits[:k]], trace))
        return out

    def _concat(self, queries: Sequence[IntegrationQuery], k: int) -> list[Evidence]:
        per_lang = self.settings.per_lang_k or k
        requests: list[SearchQuery] = []
        spans: list[tuple[int, list[str]]] = []
        for q in queries:
            langs = self._languages_for(q.primary)
            spans.append((len(requests), langs))
            requests += [SearchQuery(text=q.text, lang=q.lang, search_langs=[ln], exclude=q.exclude) for ln in langs]
        results = self._search(requests, per_lang)
        out = []
        for q, (start, langs) in zip(queries, spans):
            # Rank-major (every language's first hit, then every second hit) so that a tight
            # token budget still shows other languages; no score is compared across languages.
            lists = [lst[:per_lang] for lst in results[start : start + len(langs)]]
            hits = [lst[rank] for rank in range(per_lang) for lst in lists if rank < len(lst)]
            trace = EvidenceTrace(strategy="concat", languages_searched=langs, candidates=len(hits))
            out.append(self._finish(q, [self._passage(h, q.primary) for h in hits], trace))
        return out

    def _translate_grouped(self, items: list[tuple[str, str, str]], max_new_tokens: int) -> list[str]:
        """Translate ``(text, src, tgt)`` items with one batched call per target language."""
        assert self.translator is not None
        out = [text for text, _, _ in items]
        by_tgt: dict[str, list[int]] = {}
        for i, (_text, src, tgt) in enumerate(items):
            if src != tgt:
                by_tgt.setdefault(tgt, []).append(i)
        for tgt, idx in by_tgt.items():
            translated = self.translator.translate(
                [items[i][0] for i in idx], [items[i][1] for i in idx], tgt, max_new_tokens=max_new_tokens
            )
            for i, text in zip(idx, translated):
                out[i] = text
        return out

    def _rank(self, lists: list[list[Hit]]) -> list[Hit]:
        """One ranking over per-language lists (the question's language comes first, so RRF ties favour it)."""
        if self.settings.ranking == "score":
            pooled = [h for lst in lists for h in lst]
            return sorted(pooled, key=lambda h: -h.score)
        from crosearch.retrieval.fusion import rrf

        by_id = {h.doc_id: h for lst in lists for h in lst}
        fused = rrf([[(h.doc_id, h.score) for h in lst] for lst in lists if lst], self.rrf_k)
        return [by_id[doc_id] for doc_id, _ in fused]

    def _crosslingual(self, queries: Sequence[IntegrationQuery], k: int) -> list[Evidence]:
        per_lang = self.settings.per_lang_k or k
        langs_per_query = [self._languages_for(q.primary) for q in queries]
        if self.settings.ranking == "aligned":
            return self._aligned(queries, langs_per_query, k)

        # (a) query translation, one batched call per target language.
        owners = [qi for qi, langs in enumerate(langs_per_query) for _ in langs]
        items = [(q.text, q.lang, ln) for q, langs in zip(queries, langs_per_query) for ln in langs]
        translated_queries = self._translate_grouped(items, self.settings.max_query_tokens)

        # (b) one batched search: each language with the query in that language.
        requests = [
            SearchQuery(text=text, lang=lang, search_langs=[lang], exclude=queries[qi].exclude)
            for text, (_, _, lang), qi in zip(translated_queries, items, owners)
        ]
        results = self._search(requests, per_lang)

        traces: list[EvidenceTrace] = []
        pools: list[list[Hit]] = []
        pos = 0
        for q, langs in zip(queries, langs_per_query):
            lists = [r[:per_lang] for r in results[pos : pos + len(langs)]]
            trace = EvidenceTrace(
                strategy="crosslingual",
                languages_searched=langs,
                query_translations={ln: translated_queries[pos + j] for j, ln in enumerate(langs) if ln != q.lang},
                candidates=sum(len(x) for x in lists),
            )
            pos += len(langs)
            # Keep a margin beyond k so that duplicates removed below can be replaced.
            pools.append(self._rank(lists)[: 2 * k])
            traces.append(trace)

        return self._select(queries, pools, traces, k)

    def _aligned(self, queries: Sequence[IntegrationQuery], langs_per_query: list[list[str]], k: int) -> list[Evidence]:
        """(b) as one search of all languages, ranked by the retriever's aligned score.

        With ``aligned_query_translation`` the query's translations into the other languages
        go with it: each language's BM25 part of the hybrid score matches its translation.
        """
        translations = (
            self._query_translations(queries, langs_per_query)
            if self.settings.aligned_query_translation
            else [{} for _ in queries]
        )
        requests = [
            SearchQuery(text=q.text, lang=q.lang, search_langs=langs, exclude=q.exclude, translations=t or None)
            for q, langs, t in zip(queries, langs_per_query, translations)
        ]
        # Keep a margin beyond k so that duplicates removed below can be replaced.
        pools = [hits[: 2 * k] for hits in self._search(requests, 2 * k)]
        traces = [
            EvidenceTrace(strategy="crosslingual", languages_searched=langs, query_translations=t, candidates=len(pool))
            for langs, pool, t in zip(langs_per_query, pools, translations)
        ]
        return self._select(queries, pools, traces, k)

    def _query_translations(
        self, queries: Sequence[IntegrationQuery], langs_per_query: list[list[str]]
    ) -> list[dict[str, str]]:
        """Each query translated into each of its other languages (one batched call per language).

        A translation equal to the query (the identity translator, a failed translation) is left
        out: the language's BM25 then matches the query itself, as without translations.
        """
        items = [(q.text, q.lang, ln) for q, langs in zip(queries, langs_per_query) for ln in langs if ln != q.lang]
        translated = iter(self._translate_grouped(items, self.settings.max_query_tokens))
        out: list[dict[str, str]] = []
        for q, langs in zip(queries, langs_per_query):
            pairs = ((ln, next(translated)) for ln in langs if ln != q.lang)
            out.append({ln: text for ln, text in pairs if text.strip() and text != q.text})
        return out

    def _select(
        self, queries: Sequence[IntegrationQuery], pools: list[list[Hit]], traces: list[EvidenceTrace], k: int
    ) -> list[Evidence]:
        """(c) translate and de-duplicate each ranked pool, keep the best ``k``, render them."""
        # Translate foreign candidates (texts and titles) into each question's language:
        # needed to compare them with the primary evidence, and to show them aligned.
        need_translation = self.translator is not None and (
            self.settings.render == "translate" or self.settings.dedup_threshold < 1.0
        )
        passages = [[self._passage(h, q.primary) for h in pool] for q, pool in zip(queries, pools)]
        if need_translation:
            text_items, title_items, where = [], [], []
            for qi, (q, plist) in enumerate(zip(queries, passages)):
                for pi, p in enumerate(plist):
                    if p.lang != q.lang:
                        text_items.append((p.text, p.lang, q.lang))
                        title_items.append((p.title, p.lang, q.lang))
                        where.append((qi, pi))
            texts = self._translate_grouped(text_items, self.settings.max_passage_tokens)
            titles = (
                self._translate_grouped(title_items, self.settings.max_query_tokens)
                if self.settings.render == "translate"
                else []
            )
            for j, (qi, pi) in enumerate(where):
                p = passages[qi][pi]
                # An output equal to the source means no translation happened (the identity
                # translator, or a fallback after a loop): the passage stays marked by language.
                if texts[j] != p.text:
                    p.translated = texts[j]
                    traces[qi].translated.append(p.doc_id)
                if titles and titles[j] != p.title:
                    p.translated_title = titles[j]

        embed = (
            getattr(self.retriever, "hit_embeddings", None) if self.settings.dedup_embedding_threshold < 1.0 else None
        )
        out = []
        for q, plist, pool, trace in zip(queries, passages, pools, traces):
            comparable = [p.translated if p.translated is not None else p.text for p in plist]
            vectors = embed(pool) if embed is not None else None
            keep, drops = deduplicate(
                comparable,
                [p.lang for p in plist],
                q.primary,
                self.settings.dedup_threshold,
                vectors=vectors,
                vector_threshold=self.settings.dedup_embedding_threshold,
            )
            for d in drops:
                trace.duplicates.append(
                    {
                        "dropped": plist[d.dropped].doc_id,
                        "dropped_lang": plist[d.dropped].lang,
                        "kept": plist[d.kept].doc_id,
                        "kept_lang": plist[d.kept].lang,
                        "similarity": round(d.similarity, 4),
                        "reason": d.reason,
                    }
                )
            selected = [plist[i] for i in keep][:k]
            if self.settings.render == "original":
                for p in selected:  # translations served only to compare; show the original text
                    p.translated_title = None
            out.append(self._finish(q, selected, trace))
        return out


def build_translator(
    config: Config, *, policy: tuple[Any, Any] | None = None, show_progress: bool = False
) -> Translator:
    """The configured translator, wrapped in the persistent cache (``none`` is not cached: nothing to save).

    ``config`` is a full :class:`crosearch.config.Config`; ``policy`` an already loaded
    ``(model, tokenizer)`` to reuse for the ``policy`` backend (loaded from ``config.model`` otherwise).
    """
    from crosearch.crosslingual.translate import (
        CachedTranslator,
        IdentityTranslator,
        PolicyTranslator,
        Seq2SeqTranslator,
        TranslationCache,
        default_cache_path,
    )

    cl = config.crosslingual
    if cl.translator == "none":
        return IdentityTranslator()
    if cl.translator == "hf-seq2seq":
        if not cl.translator_model:
            raise CrosearchError("crosslingual.translator is 'hf-seq2seq' but crosslingual.translator_model is not set")
        device = config.model.device if config.model.device != "auto" else "cpu"
        backend: Any = Seq2SeqTranslator(
            cl.translator_model,
            device=device,
            batch_size=cl.batch_size,
            max_new_tokens=cl.max_passage_tokens,
            show_progress=show_progress,
        )
    else:
        if policy is None:
            from crosearch.models import load_policy

            loaded = load_policy(config.model)
            policy = (loaded.model, loaded.tokenizer)
        model, tokenizer = policy
        backend = PolicyTranslator(
            model,
            tokenizer,
            model_id=f"{config.model.name}:{config.model.adapter or ''}",
            batch_size=cl.batch_size,
            max_new_tokens=cl.max_query_tokens,
            show_progress=show_progress,
        )
    cache = TranslationCache(cl.cache_path or default_cache_path())
    return CachedTranslator(backend, cache)


def build_integrator(
    config: Config,
    retriever: Retriever,
    *,
    translator: Translator | None = None,
    tokenizer: Any | None = None,
    policy: tuple[Any, Any] | None = None,
) -> Integrator:
    """The integrator described by ``config.crosslingual`` (and ``retrieval.rrf_k``) over ``retriever``.

    The budget is counted with ``tokenizer`` (the policy's) when given. The
    translator is built only for the ``crosslingual`` strategy.
    """
    cl = config.crosslingual
    if translator is None and cl.strategy == "crosslingual":
        translator = build_translator(config, policy=policy)
    if tokenizer is None and policy is not None:
        tokenizer = policy[1]
    return Integrator(retriever, cl, translator=translator, tokenizer=tokenizer, rrf_k=config.retrieval.rrf_k)
