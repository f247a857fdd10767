"""Embeddings of the vendored XQuAD passages, shipped with the package, so their dense index builds in seconds.

The benchmark's passages (sentence windows of the eight vendored languages) are
deterministic, so their embeddings by the bundled encoder can be computed once and
shipped: 4,419 vectors in float16, about 3.4 MB. Each vector is keyed by the SHA-1 of
its passage text (the key of :class:`~crosearch.retrieval.encoders.EmbeddingCache`),
and the file names the encoder identity it was made with and carries a SHA-256 of its
contents. A vector is used only for a text with that exact key, by an encoder of that
exact identity, from a file whose checksum holds; anything else is encoded as usual.
float16 keeps cosines within 1e-3 of float32 (vectors are re-normalised on loading).

The file is written by :func:`write_shipped` from a complete embedding cache
(``make shipped-embeddings``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np

from crosearch.errors import CrosearchError

SHIPPED = Path(__file__).resolve().parent.parent / "resources" / "embeddings" / "xquad-sentences.npz"


def _checksum(identity: str, keys: np.ndarray, vectors: np.ndarray) -> str:
    digest = hashlib.sha256(identity.encode("utf-8"))
    digest.update(np.ascontiguousarray(keys).tobytes())
    digest.update(np.ascontiguousarray(vectors).tobytes())
    return digest.hexdigest()


def write_shipped(texts: Sequence[str], vectors: np.ndarray, identity: str, path: Path = SHIPPED) -> Path:
    """Write the shipped file for ``texts`` and their float32 ``vectors`` (atomically)."""
    from crosearch.io import atomic_open

    if len(texts) != len(vectors):
        raise CrosearchError(f"{len(texts)} texts but {len(vectors)} vectors")
    keys = np.array([hashlib.sha1(t.encode("utf-8")).hexdigest() for t in texts], dtype="S40")
    half = np.ascontiguousarray(vectors, dtype=np.float16)
    with atomic_open(path, "wb") as handle:
        np.savez_compressed(
            handle,
            identity=np.array(identity),
            keys=keys,
            vectors=half,
            sha256=np.array(_checksum(identity, keys, half)),
        )
    return path


@cache
def _load(path: Path) -> tuple[str, dict[str, int], np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            identity, keys, vectors = str(data["identity"]), data["keys"], data["vectors"]
            checksum = str(data["sha256"])
    except (OSError, ValueError, KeyError) as exc:
        raise CrosearchError(f"{path}: shipped embeddings are unreadable ({exc}); reinstall crosearch") from None
    if _checksum(identity, keys, vectors) != checksum:
        raise CrosearchError(f"{path}: shipped embeddings fail their checksum; reinstall crosearch")
    return identity, {k.decode("ascii"): i for i, k in enumerate(keys)}, vectors


def shipped_vectors(identity: str, keys: Sequence[str], path: Path = SHIPPED) -> dict[str, np.ndarray]:
    """Shipped float32 vectors of those ``keys`` (text SHA-1s) it holds, if made by encoder ``identity``."""
    loaded = _load(path)
    if loaded is None or loaded[0] != identity:
        return {}
    _, rows, vectors = loaded
    out: dict[str, np.ndarray] = {}
    for key in keys:
        row = rows.get(key)
        if row is not None:
            vector = vectors[row].astype(np.float32)
            out[key] = vector / max(float(np.linalg.norm(vector)), 1e-12)
    return out


def build_shipped(cache_dir: str | None = None, path: Path = SHIPPED) -> Path:
    """Encode the vendored benchmark's sentence windows (all languages) and write the shipped file.

    ``cache_dir``: an embedding cache to take finished vectors from (and to fill), so that the
    file can be written from a resumable encoding run.
    """
    from crosearch.config import DataConfig
    from crosearch.data.benchmark import build_benchmark
    from crosearch.progress import Bars
    from crosearch.retrieval.encoders import BUNDLED, EmbeddingCache, encode_passages_cached, make_encoder

    texts = sorted({p.text for p in build_benchmark(DataConfig(setting="full", passages="sentences")).collection})
    encoder = make_encoder(BUNDLED)
    identity = encoder.identity  # type: ignore[attr-defined]
    cache = EmbeddingCache(cache_dir, identity) if cache_dir else None
    with Bars() as bars:
        task = bars.add("shipped embeddings", len(texts))
        vectors = encode_passages_cached(encoder, texts, cache, task.advance, shipped=False)
    return write_shipped(texts, vectors, identity, path)
