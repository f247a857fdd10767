"""Dense retrieval with a tiny sentence-transformers model built locally (no download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crosearch.config import load_config
from crosearch.retrieval.local import IndexSettings, LocalRetriever, build_index
from crosearch.types import Passage, SearchQuery

TEXTS = {
    "en": [
        "the moon landing in 1969",
        "the nile river flows north",
        "tea is a hot drink",
        "ice covers antarctica",
        "rome was not built in a day",
    ],
    "de": ["die mondlandung 1969", "der nil fliesst nach norden", "tee ist ein heisses getraenk"],
}


def make_tiny_model(directory: Path) -> Path:
    """A randomly initialised 2-layer BERT + mean pooling, with a WordPiece vocabulary of the test words."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    words = sorted({w for texts in TEXTS.values() for t in texts for w in t.split()})
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {
        token: i for i, token in enumerate(dict.fromkeys([*specials, *words, *"abcdefghijklmnopqrstuvwxyz0123456789"]))
    }
    backend = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    bert_dir = directory / "bert"
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(bert_dir)
    tokenizer.save_pretrained(bert_dir)
    transformer = models.Transformer(str(bert_dir), max_seq_length=32)
    dimension = getattr(transformer, "get_embedding_dimension", None) or transformer.get_word_embedding_dimension
    pooling = models.Pooling(dimension(), pooling_mode="mean")
    model_dir = directory / "st"
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(model_dir))
    return model_dir


def passages() -> list[Passage]:
    return [
        Passage(id=f"{lang}-{i}", lang=lang, title="", text=t, paragraph=f"p{i}")
        for lang, texts in TEXTS.items()
        for i, t in enumerate(texts)
    ]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_dense_finds_identical_text_first(tmp_path, model_dir, kind):
    out = tmp_path / "index"
    report = build_index(passages(), out, IndexSettings(dense_model=str(model_dir), dense_index=kind), progress=False)
    assert "dense/en" in report.built and "dense/de" in report.built
    retriever = LocalRetriever(out, methods=["dense"])
    queries = [SearchQuery(t, lang, [lang]) for lang in TEXTS for t in TEXTS[lang]]
    results = retriever.search(queries, k=3)
    for query, hits in zip(queries, results):
        assert hits[0].text == query.text
        assert hits[0].method == "dense"
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)  # cosine of a normalised vector with itself
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_dense_exclude_and_hybrid_fusion(tmp_path, model_dir):
    cfg = load_config(overrides=[f"retrieval.dense_model={model_dir}", "retrieval.methods=[bm25,dense]"])
    out = tmp_path / "index"
    build_index(passages(), out, IndexSettings.from_config(cfg.retrieval), progress=False)
    hybrid = LocalRetriever.from_config(cfg, out)
    assert hybrid.methods == ["bm25", "dense"]
    hits = hybrid.search([SearchQuery("the nile river flows north", "en", ["en"])], k=3)[0]
    assert hits[0].doc_id == "en-1" and hits[0].method == "bm25+dense"
    # Found by both lists at rank 1: RRF 2/61.
    assert hits[0].score == pytest.approx(2 / 61)
    assert any(h.method == "dense" for h in hits[1:])  # dense ranks passages sharing no term

    blocked = hybrid.search([SearchQuery("the nile river flows north", "en", ["en"], frozenset({"en-1"}))], k=4)[0]
    assert "en-1" not in {h.doc_id for h in blocked} and len(blocked) == 4
    # A per-call method restriction (what the server forwards).
    only_dense = hybrid.search([SearchQuery("tea is a hot drink", "en", ["en"])], k=2, method="dense")[0]
    assert {h.method for h in only_dense} == {"dense"}


def test_dense_unit_is_reused_when_only_bm25_settings_change(tmp_path, model_dir):
    out = tmp_path / "index"
    build_index(passages(), out, IndexSettings(dense_model=str(model_dir)), progress=False)
    before = np.fromfile(out / "dense" / "en" / "index.faiss", dtype=np.uint8)
    report = build_index(
        passages(),
        out,
        IndexSettings(dense_model=str(model_dir), bm25=IndexSettings().bm25.__class__(k1=1.2)),
        progress=False,
    )
    assert "dense/en" in report.reused and "bm25/en" in report.built
    assert np.array_equal(before, np.fromfile(out / "dense" / "en" / "index.faiss", dtype=np.uint8))


def test_ivf_is_used_for_large_collections_and_finds_itself():
    from crosearch.retrieval.dense import DenseIndex, build_faiss

    rng = np.random.default_rng(0)
    emb = rng.standard_normal((3000, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    index = build_faiss(emb, "ivf")
    assert type(index).__name__ == "IndexIVFFlat" and index.nlist > 1
    results = DenseIndex(index).search(emb[:20], 3, [{0}] + [set()] * 19)
    assert all(results[i][0][0] == i for i in range(1, 20))
    assert 0 not in {pos for pos, _ in results[0]}
