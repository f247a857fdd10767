"""Key/value states kept across the turns of one engine run, so each turn prefills only new tokens.

A multi-turn rollout re-enters ``generate`` with its whole context every turn: the
prompt, the model's earlier turns and the inserted ``<information>`` blocks. Without a
cache every turn prefills all of it again, and each of the G rollouts of a group
prefills the same prompt. :class:`CachedHFBackend` keeps, per sequence, the keys and
values it has already computed, looks each new context up by its longest common token
prefix (as vLLM's prefix caching does, but per run and without blocks), and feeds the
model only the tokens past that prefix. Contexts repeated within one call (the G copies
of a group prompt) are prefilled once and shared.

Exactness: the cached call builds the same left-padded layout as the uncached one (pads
then tokens, contiguous, so positions and sliding windows are unchanged), hands the
cached columns to ``model.generate`` as a ready cache and lets it run the same logits
processors, sampling and stopping. Only the floating-point order of the prefill differs,
so tokens and log-probs agree to rounding (the tests hold them to 1e-4).

Lifetime: one :meth:`HFBackend.session` per engine run; its memory is the KV of the
live rollouts (an entry is dropped once a longer one extends it) plus one entry per
shared prompt, and all of it is released with the session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crosearch.agent.backends import Generation, HFBackend, SamplingParams

if TYPE_CHECKING:
    import torch


@dataclass(slots=True)
class _Entry:
    """The KV of ``ids``: per layer (keys, values), each ``[kv_heads, len(ids), head_dim]``."""

    ids: torch.Tensor
    layers: list[tuple[torch.Tensor, torch.Tensor]]
    shared: bool = False

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass(slots=True)
class PrefixStore:
    """Entries looked up by the longest common token prefix with a query."""

    entries: list[_Entry] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(len(e) for e in self.entries)

    def match(self, ids: torch.Tensor) -> tuple[_Entry | None, int]:
        """The entry sharing the longest prefix with ``ids`` and that prefix's length."""
        best: _Entry | None = None
        best_n = 0
        for entry in self.entries:
            n = min(len(entry), int(ids.shape[0]))
            if n <= best_n:
                continue
            same = entry.ids[:n] == ids[:n]
            common = n if bool(same.all()) else int((~same).int().argmax())
            if common > best_n:
                best, best_n = entry, common
        return best, best_n

    def add(self, entry: _Entry) -> None:
        """Store ``entry``, replacing one with the same ids (the newest KV wins)."""
        self.entries = [e for e in self.entries if not (len(e) == len(entry) and bool((e.ids == entry.ids).all()))]
        self.entries.append(entry)

    def drop(self, entries: Sequence[_Entry]) -> None:
        gone = {id(e) for e in entries}
        self.entries = [e for e in self.entries if id(e) not in gone]


class CachedHFBackend:
    """An :class:`HFBackend` view that reuses key/value states across the calls of one run."""

    def __init__(self, backend: HFBackend) -> None:
        self.backend = backend
        self.tokenizer = backend.tokenizer
        self.store = PrefixStore()
        # Tokens prefilled by the model and tokens served from the cache, for benchmarks and tests.
        self.prefilled_tokens = 0
        self.reused_tokens = 0

    @property
    def eos_token_ids(self) -> list[int]:
        return self.backend.eos_token_ids

    def close(self) -> None:
        """Release every cached tensor."""
        self.store = PrefixStore()

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        max_new_tokens: int | Sequence[int],
        stop_strings: Sequence[str],
        sampling: SamplingParams,
    ) -> list[Generation]:
        """Same contract and results as :meth:`HFBackend.generate`; only the uncached suffixes are prefilled."""
        import torch

        contexts = [torch.tensor([int(t) for t in p], dtype=torch.long) for p in prompts]
        self._share_repeated(contexts)
        matches = [self.store.match(c) if len(c) > 1 else (None, 0) for c in contexts]
        # At least the last token is fed: its logits start the continuation.
        prefixes = [(e, min(n, len(c) - 1)) for (e, n), c in zip(matches, contexts)]
        batches: list[_CacheBatch] = []

        def prepare(live: list[int], width: int) -> dict[str, Any]:
            batch = _CacheBatch.build(
                self.backend, live, [contexts[i] for i in live], [prefixes[i] for i in live], width
            )
            self.prefilled_tokens += batch.fed
            self.reused_tokens += batch.reused
            batches.append(batch)
            return {"cache": batch.cache}

        results = self.backend.generate(prompts, max_new_tokens, stop_strings, sampling, prepare=prepare)
        # An entry extended by this call is superseded; a shared prompt stays for the rest of its group.
        self.store.drop([e for e, _ in prefixes if e is not None and not e.shared])
        for batch in batches:
            for entry in batch.entries(results):
                self.store.add(entry)
        return results

    def _share_repeated(self, contexts: list[torch.Tensor]) -> None:
        """Prefill once, as a shared entry, every uncached context that occurs more than once in this call."""
        counts: dict[tuple[int, ...], int] = {}
        for c in contexts:
            key = tuple(c.tolist())
            counts[key] = counts.get(key, 0) + 1
        repeated = []
        for key, count in counts.items():
            if count < 2 or len(key) < 2:
                continue
            ids = contexts[[tuple(c.tolist()) for c in contexts].index(key)]
            _, n = self.store.match(ids)
            if n < len(key) - 1:
                repeated.append(ids[:-1])
        if not repeated:
            return
        for entry in _prefill(self.backend, repeated):
            entry.shared = True
            self.store.add(entry)
            self.prefilled_tokens += len(entry)


def _prefill(backend: HFBackend, sequences: Sequence[torch.Tensor]) -> list[_Entry]:
    """One left-padded forward pass over ``sequences`` returning the KV of each."""
    import torch
    from transformers import DynamicCache

    width = max(int(s.shape[0]) for s in sequences)
    ids = torch.full((len(sequences), width), backend.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, s in enumerate(sequences):
        ids[row, width - s.shape[0] :] = s
        mask[row, width - s.shape[0] :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache()
    device = backend.device
    with torch.no_grad():
        backend.model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            cache=cache,
            use_cache=True,
        )
    layers = _layers(cache)
    return [
        _Entry(
            s.clone(),
            [(k[row, :, width - s.shape[0] :].clone(), v[row, :, width - s.shape[0] :].clone()) for k, v in layers],
        )
        for row, s in enumerate(sequences)
    ]


def _layers(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


@dataclass(slots=True)
class _CacheBatch:
    """One generate call's layout: rows left-padded to ``width``, the first ``start`` columns served from the cache."""

    live: list[int]
    rows: list[torch.Tensor]
    width: int
    start: int
    cache: Any
    fed: int
    reused: int

    @classmethod
    def build(
        cls,
        backend: HFBackend,
        live: list[int],
        rows: list[torch.Tensor],
        prefixes: list[tuple[_Entry | None, int]],
        width: int,
    ) -> _CacheBatch:
        from transformers import DynamicCache

        # Every row is fed from column ``start`` on; a row whose cached prefix ends later is re-fed the
        # difference (rows of one micro-batch have similar lengths, so this stays small).
        start = width - max(len(r) - n for r, (_, n) in zip(rows, prefixes))
        fed = sum(min(len(r), width - start) for r in rows)
        if start <= 0:
            # Passed even when nothing is reused, so the KV of this call can be kept afterwards.
            return cls(live, rows, width, 0, DynamicCache(), fed, 0)
        layer_count = max(len(e.layers) for e, _ in prefixes if e is not None)
        reference = next(e for e, _ in prefixes if e is not None).layers
        data = []
        for layer in range(layer_count):
            k0, v0 = reference[layer]
            keys = k0.new_zeros((len(rows), k0.shape[0], start, k0.shape[2]))
            values = v0.new_zeros((len(rows), v0.shape[0], start, v0.shape[2]))
            for row, (r, (entry, _)) in enumerate(zip(rows, prefixes)):
                cached = len(r) - (width - start)  # this row's tokens that lie left of ``start``
                if cached > 0 and entry is not None:
                    k, v = entry.layers[layer]
                    keys[row, :, start - cached :] = k[:, :cached]
                    values[row, :, start - cached :] = v[:, :cached]
            data.append((keys, values))
        device = backend.device
        cache = DynamicCache(ddp_cache_data=[(k.to(device), v.to(device)) for k, v in data])
        reused = sum(max(0, len(r) - (width - start)) for r in rows)
        return cls(live, rows, width, start, cache, fed, reused)

    def entries(self, results: Sequence[Generation]) -> list[_Entry]:
        """The KV of each row's context plus the generated tokens whose KV the call computed."""
        import torch

        layers = _layers(self.cache)
        total = int(layers[0][0].shape[2])
        computed = total - self.width  # generated tokens that were fed back (all but the last step's)
        out = []
        for row, (r, i) in enumerate(zip(self.rows, self.live)):
            gen = results[i]
            keep = max(0, min(len(gen.ids), computed))
            ids = torch.cat([r, torch.tensor(gen.ids[:keep], dtype=torch.long)])
            lo, hi = self.width - len(r), self.width + keep
            out.append(_Entry(ids, [(k[row, :, lo:hi].clone(), v[row, :, lo:hi].clone()) for k, v in layers]))
        return out
