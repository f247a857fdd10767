"""Cross-language duplicate detection without gold ids.

Two passages that state the same content in two languages look alike once one
is translated into the other's language. Character 3-grams (over lowercased
word characters) compare them robustly to inflection, transliteration and the
small errors of a small translator, and work for scripts written without spaces.
Aligned embeddings (see :mod:`crosearch.retrieval.alignment`) compare passages
without any translation: two passages whose cosine reaches ``vector_threshold``
are duplicates too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import regex

_WORD_RE = regex.compile(r"\w+")


def char_ngrams(text: str, n: int = 3) -> frozenset[str]:
    """The set of character n-grams of a text, after lowercasing and collapsing non-word characters."""
    norm = " ".join(_WORD_RE.findall(text.lower()))
    if len(norm) < n:
        return frozenset([norm]) if norm else frozenset()
    return frozenset(norm[i : i + n] for i in range(len(norm) - n + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """Jaccard similarity of two sets (0 when both are empty)."""
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


@dataclass(slots=True)
class DuplicateDrop:
    """One candidate removed as a duplicate of a kept one."""

    dropped: int
    kept: int
    similarity: float
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {
            "dropped": self.dropped,
            "kept": self.kept,
            "similarity": round(self.similarity, 4),
            "reason": self.reason,
        }


def deduplicate(
    texts: Sequence[str],
    langs: Sequence[str],
    preferred_lang: str,
    threshold: float,
    n: int = 3,
    vectors: np.ndarray | None = None,
    vector_threshold: float = 1.0,
) -> tuple[list[int], list[DuplicateDrop]]:
    """Group near-duplicate texts (given best first) and keep one per group.

    ``texts`` should be comparable (already translated into one language).
    Within a group the passage in ``preferred_lang`` (the question's language)
    is kept; otherwise the best-ranked one. The kept passage takes the group's
    best rank. Returns the kept indices in rank order and what was dropped.
    """
    if len(texts) != len(langs):
        raise ValueError("texts and langs differ in length")
    grams = [char_ngrams(t, n) for t in texts]
    cosine = vectors @ vectors.T if vectors is not None and vector_threshold < 1.0 else None
    groups: list[list[int]] = []
    for i in range(len(texts)):
        match, match_sim = None, 0.0
        for g, members in enumerate(groups):
            for m in members:
                sim = jaccard(grams[i], grams[m]) if threshold < 1.0 else 0.0
                close = threshold < 1.0 and sim >= threshold
                if cosine is not None and cosine[i, m] >= vector_threshold:
                    close, sim = True, max(sim, float(cosine[i, m]))
                if close and sim > match_sim:
                    match, match_sim = g, sim
        if match is None:
            groups.append([i])
        else:
            groups[match].append(i)
    kept: list[int] = []
    drops: list[DuplicateDrop] = []
    for members in groups:
        native = [m for m in members if langs[m] == preferred_lang]
        keep = native[0] if native else members[0]
        kept.append(keep)
        for m in members:
            if m == keep:
                continue
            if langs[keep] == preferred_lang and langs[m] != preferred_lang:
                reason = f"same content as a {preferred_lang} passage (question language preferred)"
            else:
                reason = "same content as a better-ranked passage"
            similarity = jaccard(grams[m], grams[keep])
            if cosine is not None and cosine[m, keep] >= vector_threshold and similarity < threshold:
                similarity = float(cosine[m, keep])
                reason += ", by embedding"
            drops.append(DuplicateDrop(dropped=m, kept=keep, similarity=similarity, reason=reason))
    return kept, drops
