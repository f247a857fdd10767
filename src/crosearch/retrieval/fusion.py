"""Fusing ranked lists (several languages, several methods) into one ranking.

Scores of different lists are not comparable (BM25 scores depend on each
language's collection statistics, cosine similarities live on another scale),
so the default is reciprocal rank fusion, which uses ranks only:
``score(d) = sum over lists containing d of 1 / (rrf_k + rank)``, ranks from 1
(Cormack, Clarke and Buettcher, SIGIR 2009). The alternative min-max normalises
each list to [0, 1] and sums (CombSUM over normalised scores).

Once dense embeddings are aligned across languages (:mod:`crosearch.retrieval.alignment`)
their cosines *are* comparable, and :func:`aligned_fusion` ranks by them directly,
adding BM25 scored relative to its own list's top.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Literal, TypeVar

Key = TypeVar("Key", bound=Hashable)
FusionMethod = Literal["rrf", "score", "aligned"]


def rrf(lists: Sequence[Sequence[tuple[Key, float]]], rrf_k: int = 60) -> list[tuple[Key, float]]:
    """Reciprocal rank fusion of ranked ``(key, score)`` lists; best first."""
    fused: dict[Key, float] = {}
    for ranked in lists:
        for rank, (key, _score) in enumerate(ranked, start=1):
            fused[key] = fused.get(key, 0.0) + 1.0 / (rrf_k + rank)
    return _sorted(fused)


def minmax_fusion(lists: Sequence[Sequence[tuple[Key, float]]]) -> list[tuple[Key, float]]:
    """Sum of per-list min-max normalised scores; a list whose scores are all equal counts 1 for each."""
    fused: dict[Key, float] = {}
    for ranked in lists:
        if not ranked:
            continue
        values = [s for _, s in ranked]
        low, high = min(values), max(values)
        span = high - low
        for key, score in ranked:
            norm = (score - low) / span if span > 0 else 1.0
            fused[key] = fused.get(key, 0.0) + norm
    return _sorted(fused)


HybridNorm = Literal["list", "query"]


def aligned_fusion(
    dense: Sequence[Sequence[tuple[Key, float]]],
    lexical: Sequence[Sequence[tuple[Key, float]]],
    weight: float = 0.0,
    norm: HybridNorm = "query",
) -> list[tuple[Key, float]]:
    """One ranking by aligned cosine, plus ``weight`` x a normalised BM25 score; best first.

    ``norm``: BM25 divided by the top BM25 score of its own list (``list``: every
    language's best match gets the full weight), or by the top over all the query's
    lists (``query``: a language whose best match is weak gets little). A passage
    that only BM25 found is given the lowest cosine any dense list returned for
    this query: it ranked below all of them there.
    """
    fused: dict[Key, float] = {}
    for ranked in dense:
        for key, score in ranked:
            fused[key] = max(score, fused.get(key, score))
    if weight > 0:
        floor = min(fused.values(), default=0.0)
        overall = max((ranked[0][1] for ranked in lexical if ranked), default=0.0)
        for ranked in lexical:
            top = (ranked[0][1] if ranked else 0.0) if norm == "list" else overall
            if top <= 0:
                continue
            for key, score in ranked:
                fused[key] = fused.get(key, floor) + weight * score / top
    return _sorted(fused)


def fuse(
    lists: Sequence[Sequence[tuple[Key, float]]], method: FusionMethod = "rrf", rrf_k: int = 60
) -> list[tuple[Key, float]]:
    """Fuse with the configured method. A single list passes through with its own scores."""
    non_empty = [r for r in lists if r]
    if len(non_empty) == 1:
        return list(non_empty[0])
    if method == "rrf":
        return rrf(non_empty, rrf_k)
    if method == "score":
        return minmax_fusion(non_empty)
    raise ValueError(f"unknown fusion method {method!r}")


def _sorted(fused: dict[Key, float]) -> list[tuple[Key, float]]:
    # Ties keep first-seen order (dicts are ordered, sort is stable), so the
    # result is deterministic for equal scores.
    return sorted(fused.items(), key=lambda item: -item[1])
