"""The rollout engine with the KV cache kept across turns gives the rollouts of the uncached engine.

The tiny random model writes no protocol tags, so every turn is an invalid action followed
by the inserted correction (env tokens): each later turn appends inserted tokens to the
cache, as an ``<information>`` block does. Prompt lengths and the token budget are chosen
so that the rollouts of one batch run 1, 2 and 3 turns.
"""

from __future__ import annotations

import pytest
import torch

from crosearch.agent.backends import HFBackend
from crosearch.agent.engine import RolloutEngine, RolloutRequest
from crosearch.agent.kv_cache import CachedHFBackend, PrefixStore, _Entry
from crosearch.config import AgentConfig

TEXT = (
    "Question: which river flows through the city where the treaty was signed, and in which year did the "
    "city first appear in a written record? Frage: Welcher Fluss fliesst durch die Stadt, in der der Vertrag "
    "unterzeichnet wurde, und in welchem Jahr wurde die Stadt zum ersten Mal schriftlich erwähnt? "
) * 3


@pytest.fixture(scope="module")
def tiny():
    from crosearch.models import load_policy

    policy = load_policy("tiny", dtype="float32", device="cpu", show_progress=False)
    return policy.model.eval(), policy.tokenizer


def _run(backend, requests, *, kv_cache: bool, temperature: float):
    # 8 tokens a turn plus the 54-token correction: prompts of 5, 40 and 100 tokens get 3, 2 and 1 turns.
    config = AgentConfig(
        max_turns=3,
        max_new_tokens=8,
        answer_tokens=4,
        max_total_tokens=150,
        temperature=temperature,
        seed=7,
        batch_size=4,
        kv_cache=kv_cache,
    )
    engine = RolloutEngine(backend, None, config)
    return engine.run(requests), engine.last_session


@pytest.mark.parametrize("temperature", [0.0, 1.0], ids=["greedy", "seeded-sampling"])
def test_cached_engine_gives_the_tokens_and_logprobs_of_the_uncached_one(tiny, temperature):
    model, tokenizer = tiny
    ids = list(tokenizer(TEXT)["input_ids"])
    # Three groups of two rollouts (one prompt per group), ragged lengths, groups split across micro-batches.
    requests = [RolloutRequest(ids[:n], "en", id=f"q{n}") for n in (5, 40, 100) for _ in range(2)]
    backend = HFBackend(model, tokenizer)
    plain, _ = _run(backend, requests, kv_cache=False, temperature=temperature)
    cached, session = _run(backend, requests, kv_cache=True, temperature=temperature)

    turns = sorted({sum(t.kind == "generate" for t in r.turns) for r in plain})
    assert turns == [1, 2, 3]
    assert any(0 in r.env_mask for r in plain)
    for a, b in zip(plain, cached):
        assert b.completion_ids == a.completion_ids
        assert b.env_mask == a.env_mask
        assert b.stop_reason == a.stop_reason
        assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs)) <= 1e-4

    assert isinstance(session, CachedHFBackend)
    assert session.reused_tokens > 0
    # Without the cache every call prefills each whole context; with it, far fewer tokens are prefilled.
    assert session.prefilled_tokens < 0.5 * sum(_context_lengths(r) for r in plain)
    assert session.store.entries == []  # released when the run ended


def _context_lengths(rollout) -> int:
    """Tokens the uncached engine prefills for one rollout: its whole context at every generate call."""
    total, length = 0, len(rollout.prompt_ids)
    for turn in rollout.turns:
        if turn.kind == "force_answer":
            length += turn.env_tokens
        total += length
        length += turn.model_tokens + (turn.env_tokens if turn.kind == "generate" else 0)
    return total


def test_prefix_store_finds_the_longest_common_prefix():
    def entry(ids):
        return _Entry(torch.tensor(ids), [])

    store = PrefixStore()
    short, long = entry([1, 2, 3]), entry([1, 2, 3, 4, 5, 6])
    store.add(short)
    store.add(long)
    assert store.match(torch.tensor([1, 2, 3, 4, 9])) == (long, 4)
    assert store.match(torch.tensor([1, 2])) == (short, 2)
    assert store.match(torch.tensor([7, 8])) == (None, 0)
    store.add(entry([1, 2, 3]))  # same ids: the newer entry replaces the older
    assert len(store.entries) == 2 and short not in store.entries
    store.drop([long])
    assert store.match(torch.tensor([1, 2, 3, 4]))[1] == 3
