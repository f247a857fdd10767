"""BM25 over one language's passages, with bm25s as the engine.

We give bm25s token lists from our own analyzers (its built-in tokenizer treats a
whole Han run as one token, splits Hindi words at vowel signs and removes English
stopwords in every language).

Scoring variant: bm25s's ``lucene`` by default (idf = log(1 + (N - df + .5)/(df + .5)),
never negative, so a term present in most passages of a small language still
counts a little). ``robertson`` equals rank_bm25's ``BM25Okapi`` up to a constant
factor (k1 + 1) for every term present in fewer than half of the passages; for
more frequent terms bm25s clips idf at 0 where rank_bm25 substitutes
``epsilon * mean idf``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from crosearch.errors import CrosearchError

Bm25Method = Literal["lucene", "robertson", "atire", "bm25l", "bm25+"]


@dataclass(frozen=True)
class Bm25Params:
    """Parameters fixed at build time."""

    k1: float = 1.5
    b: float = 0.75
    method: Bm25Method = "lucene"


class Vocabulary:
    """Maps terms to integer ids while passages are analyzed, so a large build
    holds one small int per token instead of a string."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def encode(self, tokens: list[str]) -> list[int]:
        ids = self.ids
        return [ids.setdefault(t, len(ids)) for t in tokens]


def build_bm25(doc_ids: list[list[int]], vocab: Vocabulary, params: Bm25Params):
    """Index passages given as term ids of ``vocab``; returns a ``bm25s.BM25``."""
    import bm25s

    if not vocab.ids:
        # bm25s cannot build an empty vocabulary; a placeholder term no query can
        # produce (analyzers never emit control characters) keeps the index valid.
        vocab.ids["\x00"] = 0
        doc_ids = [[0]] + list(doc_ids[1:]) if doc_ids else [[0]]
    model = bm25s.BM25(k1=params.k1, b=params.b, method=params.method)
    model.index((doc_ids, vocab.ids), show_progress=False)
    return model


def build_bm25_from_tokens(token_lists: list[list[str]], params: Bm25Params):
    """Index pre-tokenised passages (a convenience over :func:`build_bm25`)."""
    vocab = Vocabulary()
    return build_bm25([vocab.encode(t) for t in token_lists], vocab, params)


def save_bm25(model, directory: Path) -> None:
    """Save with bm25s's own format (numpy arrays + vocab + params)."""
    model.save(str(directory), show_progress=False)


class Bm25Index:
    """A loaded per-language BM25 index answering batches of analyzed queries."""

    def __init__(self, model, analyzer: Callable[[str], list[str]]) -> None:
        self.model = model
        self.analyzer = analyzer
        self.num_docs = int(model.scores["num_docs"])
        self._vocab: dict[str, int] = model.vocab_dict
        self._csr = None

    @classmethod
    def load(cls, directory: Path, analyzer: Callable[[str], list[str]], *, mmap: bool = True) -> Bm25Index:
        """Load a saved index; arrays are memory-mapped so large indexes open instantly."""
        import bm25s

        try:
            model = bm25s.BM25.load(str(directory), mmap=mmap, show_progress=False)
        except (OSError, ValueError) as exc:
            raise CrosearchError(f"{directory}: BM25 index is unreadable ({exc}); rebuild the index") from None
        return cls(model, analyzer)

    def _matrix(self):
        """bm25s's term x passage score matrix as scipy CSR (no copy of the memory-mapped arrays)."""
        if self._csr is None:
            import scipy.sparse as sp

            s = self.model.scores
            self._csr = sp.csr_matrix(
                (s["data"], s["indices"], s["indptr"]), shape=(len(s["indptr"]) - 1, self.num_docs), copy=False
            )
        return self._csr

    def search_tokens(
        self, token_lists: Sequence[list[str]], k: int, excludes: Sequence[set[int]] | None = None
    ) -> list[list[tuple[int, float]]]:
        """Top ``k`` ``(position, score)`` per query, best first, without excluded positions.

        Scores are bm25s's (its precomputed per-term passage scores, summed over the
        query terms, repeated terms counted again), but a whole batch is scored with
        one sparse matrix product instead of one dense numpy pass per query. Retrieval goes ``k + len(exclude)``
        deep (the excluded passages can take at most that many places), so filtering
        never leaves a list short. Passages sharing no term with the query are not returned.
        """
        import scipy.sparse as sp

        n = len(token_lists)
        excludes = excludes or [set()] * n
        out: list[list[tuple[int, float]]] = [[] for _ in range(n)]
        ids = [[self._vocab[t] for t in tokens if t in self._vocab] for tokens in token_lists]
        live = [i for i in range(n) if ids[i]]
        if not live or k <= 0:
            return out
        matrix = self._matrix()
        rows = np.repeat(np.arange(len(live)), [len(ids[i]) for i in live])
        cols = np.fromiter((t for i in live for t in ids[i]), dtype=np.int64, count=len(rows))
        # Duplicate (row, col) pairs are summed: a repeated query term counts twice, as in bm25s.
        queries = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(live), matrix.shape[0])
        )
        nonocc = getattr(self.model, "nonoccurrence_array", None)
        # The product stays sparse: only passages sharing a term with the query are
        # candidates, so the cost follows the postings read, not the collection size.
        scores = (queries @ matrix).tocsr()
        for row, i in enumerate(live):
            lo, hi = scores.indptr[row], scores.indptr[row + 1]
            docs, values = scores.indices[lo:hi], scores.data[lo:hi]
            depth = min(len(values), k + len(excludes[i]))
            if depth < len(values):
                keep = np.argpartition(-values, depth - 1)[:depth]
                docs, values = docs[keep], values[keep]
            # Ties broken by passage position, so results do not depend on the batch.
            order = np.lexsort((docs, -values))
            # BM25L/BM25+ add a per-query constant for absent terms: same for every passage.
            shift = float(nonocc[ids[i]].sum()) if nonocc is not None else 0.0
            hits = out[i]
            banned = excludes[i]
            for doc, score in zip(docs[order].tolist(), values[order].tolist()):
                if score <= 0.0:
                    break
                if doc in banned:
                    continue
                hits.append((doc, score + shift))
                if len(hits) == k:
                    break
        return out

    def search(
        self, texts: Sequence[str], k: int, excludes: Sequence[set[int]] | None = None
    ) -> list[list[tuple[int, float]]]:
        """Analyze ``texts`` with this language's analyzer and search."""
        return self.search_tokens([self.analyzer(t) for t in texts], k, excludes)

    def scores(self, text: str) -> np.ndarray:
        """Scores of every passage for one query (for tests and diagnostics)."""
        ids = [self._vocab[t] for t in self.analyzer(text) if t in self._vocab]
        if not ids:
            return np.zeros(self.num_docs, dtype=np.float32)
        return self.model.get_scores(ids)
