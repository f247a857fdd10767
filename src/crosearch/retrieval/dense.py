"""Optional dense retrieval: any sentence-transformers model + FAISS.

One FAISS index per collection language (not one index over all languages with a
filter): a language restriction is then exact and free, the per-query
``exclude`` over-fetch is bounded by that language's excluded passages, and the
dense lists fuse with the BM25 lists of the same languages the same way.
Embeddings are L2-normalised, so inner product = cosine similarity.

Index types: ``flat`` (exact, default), ``ivf`` (IVF-Flat, nlist = min(4 sqrt(N), N/39),
nprobe 16, for large collections) and ``hnsw`` (graph, M = 32). Small languages fall back
to flat when there are too few passages to train IVF.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from crosearch.errors import CrosearchError

DenseIndexType = Literal["flat", "ivf", "hnsw"]
INDEX_FILE = "index.faiss"
#: The passage embeddings themselves: alignment and duplicate detection need them, and FAISS
#: indexes other than flat cannot give them back.
EMBEDDINGS_FILE = "embeddings.npy"


class DenseEncoder:
    """A sentence-transformers model, loaded on first use, giving normalised float32 embeddings."""

    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        batch_size: int = 64,
        query_prefix: str = "",
        passage_prefix: str = "",
    ) -> None:
        self.model_name = model
        self.device = device
        self.batch_size = batch_size
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self._model = None

    @property
    def model(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            try:
                self._model = SentenceTransformer(self.model_name, device=self.device or "cpu")
            except (OSError, ValueError) as exc:
                raise CrosearchError(f"cannot load dense model '{self.model_name}': {exc}") from None
        return self._model

    def _encode(self, texts: Sequence[str], prefix: str, progress: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        emb = self.model.encode(
            [prefix + t for t in texts],
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.ascontiguousarray(emb, dtype=np.float32)

    def encode_passages(self, texts: Sequence[str], progress: bool = True) -> np.ndarray:
        """Embeddings of passages (batched, with a progress bar)."""
        return self._encode(texts, self.passage_prefix, progress)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of queries."""
        return self._encode(texts, self.query_prefix, False)

    @property
    def dimension(self) -> int:
        dim = self.model.get_sentence_embedding_dimension()
        if dim is None:
            dim = int(self.model.encode(["x"], convert_to_numpy=True).shape[1])
        return int(dim)


def build_faiss(embeddings: np.ndarray, kind: DenseIndexType = "flat"):
    """A FAISS inner-product index over normalised embeddings."""
    import faiss

    n, dim = embeddings.shape
    # FAISS wants >= 39 training points per centroid, so small languages get
    # fewer lists, and flat search below 2 lists.
    nlist = min(int(4 * math.sqrt(n)), n // 39)
    if kind == "ivf" and nlist >= 2:
        quantizer = faiss.IndexFlatIP(dim)
        index: Any = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(embeddings)
        index.nprobe = min(nlist, 16)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
    else:
        index = faiss.IndexFlatIP(dim)
    if n:
        index.add(embeddings)
    return index


def save_faiss(index, directory: Path) -> None:
    import faiss

    directory.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(directory / INDEX_FILE))


def save_embeddings(embeddings: np.ndarray, directory: Path) -> None:
    from crosearch.io import atomic_open

    directory.mkdir(parents=True, exist_ok=True)
    with atomic_open(directory / EMBEDDINGS_FILE, "wb") as handle:
        np.save(handle, np.ascontiguousarray(embeddings, dtype=np.float32))


def load_embeddings(directory: Path) -> np.ndarray:
    try:
        return np.load(directory / EMBEDDINGS_FILE, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise CrosearchError(f"{directory}: dense embeddings are unreadable ({exc}); rebuild the index") from None


class DenseIndex:
    """A loaded per-language FAISS index."""

    def __init__(self, index) -> None:
        self.index = index
        self.num_docs = int(index.ntotal)

    @classmethod
    def load(cls, directory: Path) -> DenseIndex:
        import faiss

        try:
            index = faiss.read_index(str(directory / INDEX_FILE))
        except RuntimeError as exc:
            raise CrosearchError(f"{directory}: dense index is unreadable ({exc}); rebuild the index") from None
        if hasattr(index, "hnsw"):
            index.hnsw.efSearch = 64
        return cls(index)

    def search(
        self, embeddings: np.ndarray, k: int, excludes: Sequence[set[int]] | None = None
    ) -> list[list[tuple[int, float]]]:
        """Top ``k`` ``(position, cosine)`` per query embedding, best first, excluded positions removed."""
        n = embeddings.shape[0]
        excludes = excludes or [set()] * n
        out: list[list[tuple[int, float]]] = [[] for _ in range(n)]
        if n == 0 or self.num_docs == 0 or k <= 0:
            return out
        depth = min(self.num_docs, k + max(len(e) for e in excludes))
        scores, docs = self.index.search(np.ascontiguousarray(embeddings, dtype=np.float32), depth)
        for i in range(n):
            for doc, score in zip(docs[i].tolist(), scores[i].tolist()):
                if doc < 0 or doc in excludes[i]:
                    continue
                out[i].append((doc, float(score)))
                if len(out[i]) == k:
                    break
        return out
