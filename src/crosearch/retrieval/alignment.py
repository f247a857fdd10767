"""Aligning per-language embeddings into one space, so cosines compare across languages.

A multilingual encoder places every text of a language near that language's mean:
ranked over all languages by raw cosine, passages in the query's language crowd out
better passages in other languages. Two corrections, each a ``retrieval.dense_align``
value:

- ``center``: subtract from each passage its language's mean passage embedding, and
  from each query the mean passage embedding of the query's language, then
  re-normalise. The means come from the indexed collection only, never from
  questions. A query of unknown language takes the language whose mean is nearest.
- ``map``: after centring, a per-language linear map into a shared space, fitted on
  parallel paragraphs of the benchmark's *train* split (the average of a
  paragraph's centred versions is the target), ridge-regularised towards the
  identity because there are far fewer pairs than dimensions.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from crosearch.errors import CrosearchError

AlignMode = Literal["none", "center", "map"]
MAPS_FILE = "maps.npz"


def normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def language_means(embeddings: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Mean passage embedding of each language."""
    return {lang: emb.mean(axis=0).astype(np.float32) for lang, emb in embeddings.items() if len(emb)}


def paragraph_vectors(
    embeddings: np.ndarray, paragraphs: Sequence[str | None], keep: Collection[str]
) -> dict[str, np.ndarray]:
    """One normalised vector per paragraph in ``keep``: the mean of its passages (sentence windows)."""
    rows: dict[str, list[int]] = {}
    for i, paragraph in enumerate(paragraphs):
        if paragraph is not None and paragraph in keep:
            rows.setdefault(paragraph, []).append(i)
    return {p: normalise(embeddings[r].mean(axis=0)) for p, r in rows.items()}


@dataclass
class FittedMaps:
    """Per-language maps and the paragraphs they were fitted on (all from the train split)."""

    maps: dict[str, np.ndarray]
    paragraphs: list[str] = field(default_factory=list)
    ridge: float = 1.0

    def save(self, directory: Path) -> None:
        from crosearch.io import atomic_open

        directory.mkdir(parents=True, exist_ok=True)
        with atomic_open(directory / MAPS_FILE, "wb") as handle:
            arrays: dict[str, Any] = {
                "langs": np.array(sorted(self.maps)),
                "paragraphs": np.array(self.paragraphs, dtype=str),
                "ridge": np.array(self.ridge),
                **{f"map_{lang}": self.maps[lang] for lang in sorted(self.maps)},
            }
            np.savez(handle, **arrays)

    @classmethod
    def load(cls, directory: Path) -> FittedMaps | None:
        path = directory / MAPS_FILE
        if not path.exists():
            return None
        try:
            with np.load(path) as data:
                langs = data["langs"].tolist()
                return cls(
                    {lang: data[f"map_{lang}"] for lang in langs}, data["paragraphs"].tolist(), float(data["ridge"])
                )
        except (OSError, ValueError, KeyError) as exc:
            raise CrosearchError(f"{path}: alignment maps are unreadable ({exc}); rebuild the index") from None


def fit_maps(
    embeddings: Mapping[str, np.ndarray],
    paragraphs: Mapping[str, Sequence[str | None]],
    train_paragraphs: Collection[str],
    ridge: float = 1.0,
) -> FittedMaps:
    """Fit one map per language on the parallel paragraphs in ``train_paragraphs`` (and only those).

    ``embeddings[lang]`` are the language's passage embeddings, ``paragraphs[lang]`` the
    paragraph id of each passage. A paragraph is used when at least two languages have it.
    """
    train = set(train_paragraphs)
    means = language_means(embeddings)
    vectors = {
        lang: paragraph_vectors(normalise(embeddings[lang] - means[lang]), paragraphs[lang], train)
        for lang in embeddings
        if lang in means
    }
    shared = sorted(
        p for p in set().union(*(v.keys() for v in vectors.values())) if sum(p in v for v in vectors.values()) >= 2
    )
    if not shared:
        raise CrosearchError("cannot fit alignment maps: no train-split paragraph is present in two languages")
    dim = next(iter(means.values())).shape[0]
    target = {p: normalise(np.mean([v[p] for v in vectors.values() if p in v], axis=0)) for p in shared}
    maps: dict[str, np.ndarray] = {}
    eye = np.eye(dim, dtype=np.float64)
    for lang, by_paragraph in vectors.items():
        used = [p for p in shared if p in by_paragraph]
        if not used:
            maps[lang] = eye.astype(np.float32)
            continue
        x = np.stack([by_paragraph[p] for p in used]).astype(np.float64)
        y = np.stack([target[p] for p in used]).astype(np.float64)
        # argmin ||xW - y||^2 + ridge ||W - I||^2
        maps[lang] = np.linalg.solve(x.T @ x + ridge * eye, x.T @ y + ridge * eye).astype(np.float32)
    return FittedMaps(maps, shared, ridge)


class Aligner:
    """Applies the configured alignment to passage and query embeddings."""

    def __init__(self, mode: AlignMode, means: Mapping[str, np.ndarray], maps: FittedMaps | None = None) -> None:
        if mode == "map" and maps is None:
            raise CrosearchError(
                "retrieval.dense_align is 'map' but the index has no fitted maps: build it from a "
                "benchmark directory (its train split fits them) or use 'center'"
            )
        self.mode = mode
        self.means = dict(means)
        self.maps = maps
        self._langs = sorted(self.means)
        self._mean_matrix = normalise(np.stack([self.means[lang] for lang in self._langs])) if self._langs else None

    def query_language(self, embedding: np.ndarray, lang: str | None) -> str | None:
        """The query's language, or (unknown or not in the index) the language whose mean is nearest."""
        if lang in self.means:
            return lang
        if self._mean_matrix is None:
            return None
        return self._langs[int(np.argmax(self._mean_matrix @ embedding))]

    def _apply(self, emb: np.ndarray, lang: str | None) -> np.ndarray:
        if self.mode == "none" or lang is None:
            return emb
        out = normalise(emb - self.means[lang])
        if self.mode == "map" and self.maps is not None and lang in self.maps.maps:
            out = normalise(out @ self.maps.maps[lang])
        return out

    def passages(self, lang: str, emb: np.ndarray) -> np.ndarray:
        return self._apply(emb, lang)

    def queries(self, emb: np.ndarray, langs: Sequence[str | None]) -> np.ndarray:
        """Each query row aligned with its language's correction (inferred when unknown)."""
        if self.mode == "none" or not len(emb):
            return emb
        out = np.empty_like(emb)
        for i, lang in enumerate(langs):
            out[i] = self._apply(emb[i : i + 1], self.query_language(emb[i], lang))[0]
        return out


ALIGN_DIR = "align"


def build_alignment_unit(
    index_dir: Path, groups: Mapping[str, Sequence], train_paragraphs: Collection[str] | None, ridge: float
) -> dict | None:
    """Fit the maps of an index being built (its ``dense/<lang>`` units done) and save them under ``align/``.

    Without ``train_paragraphs`` no maps are fitted (any earlier ones are removed): the
    index then offers ``none`` and ``center`` only.
    """
    import shutil

    from crosearch.retrieval.dense import load_embeddings

    directory = index_dir / ALIGN_DIR
    shutil.rmtree(directory, ignore_errors=True)
    if not train_paragraphs:
        return None
    embeddings = {lang: np.asarray(load_embeddings(index_dir / "dense" / lang)) for lang in groups}
    paragraphs = {lang: [p.paragraph for p in ps] for lang, ps in groups.items()}
    fitted = fit_maps(embeddings, paragraphs, train_paragraphs, ridge)
    fitted.save(directory)
    return {"paragraphs": len(fitted.paragraphs), "ridge": ridge}


class AlignedSpace:
    """An index's passages in the aligned space: per-language exact (flat) FAISS indexes built on first use.

    Aligned vectors are derived from ``dense/<lang>/embeddings.npy`` when the index is
    loaded, not stored, so ``dense_align`` can change without rebuilding.
    """

    def __init__(self, index_dir: Path, langs: Sequence[str], mode: AlignMode, fitted: dict | None = None) -> None:
        if mode not in ("none", "center", "map"):
            raise CrosearchError(f"unknown dense_align '{mode}' (choose 'none', 'center' or 'map')")
        if mode == "map" and not fitted:
            Aligner(mode, {}, None)  # raises the clear error now rather than at the first search
        self.index_dir = index_dir
        self.langs = list(langs)
        self.mode = mode
        self.fitted = fitted
        self._raw: dict[str, np.ndarray] = {}
        self._aligner: Aligner | None = None
        self._aligned: dict[str, np.ndarray] = {}
        self._indexes: dict[str, object] = {}

    @property
    def aligner(self) -> Aligner:
        # Loaded on first use: an index searched by rank fusion only never reads its embeddings.
        if self._aligner is None:
            from crosearch.retrieval.dense import load_embeddings

            self._raw = {lang: load_embeddings(self.index_dir / "dense" / lang) for lang in self.langs}
            maps = FittedMaps.load(self.index_dir / ALIGN_DIR) if self.fitted else None
            means = language_means({lang: np.asarray(e, dtype=np.float32) for lang, e in self._raw.items()})
            self._aligner = Aligner(self.mode, means, maps)
        return self._aligner

    def _vectors(self, lang: str) -> np.ndarray:
        if lang not in self._aligned:
            aligner = self.aligner
            self._aligned[lang] = aligner.passages(lang, np.asarray(self._raw[lang], dtype=np.float32))
        return self._aligned[lang]

    def index(self, lang: str, raw_index):
        """The searchable aligned index of ``lang`` (the raw one when alignment is off)."""
        if self.mode == "none":
            return raw_index
        if lang not in self._indexes:
            from crosearch.retrieval.dense import DenseIndex, build_faiss

            self._indexes[lang] = DenseIndex(build_faiss(self._vectors(lang), "flat"))
        return self._indexes[lang]

    def passages(self, lang: str, positions: Sequence[int]) -> np.ndarray:
        return self._vectors(lang)[list(positions)]

    def queries(self, embeddings: np.ndarray, langs: Sequence[str | None]) -> np.ndarray:
        return self.aligner.queries(embeddings, langs)
