"""The quickstart's choices: questions in three scripts (one cross-lingual), the policies it compares,
and GRPO questions whose rewards can differ within a group. Real XQuAD, real BM25 indexes."""

from __future__ import annotations

import pytest
import torch

from crosearch import adapters
from crosearch.adapters import AdapterCard, ship_adapter
from crosearch.config import DataConfig
from crosearch.types import SearchQuery


@pytest.fixture(scope="module")
def gap(tmp_path_factory):
    """A gap benchmark over one language per script, and its BM25 index."""
    from crosearch.data.benchmark import build_benchmark
    from crosearch.retrieval.local import IndexSettings, LocalRetriever, build_index

    bench = build_benchmark(DataConfig(languages=["en", "zh", "ar"], setting="gap", seed=0))
    root = tmp_path_factory.mktemp("quickstart")
    build_index(bench.collection, root / "index", IndexSettings(), progress=False)
    return bench, LocalRetriever(root / "index")


def test_three_scripts_and_the_cross_lingual_question_has_its_paragraph_elsewhere(gap):
    from crosearch.cli.quickstart import _script_questions

    bench, _ = gap
    chosen = _script_questions(bench, ["en"])
    assert [q.lang for q in chosen] == ["en", "zh", "ar"]
    latin, han, arabic = chosen
    held = {(p.lang, p.paragraph) for p in bench.collection}
    # The Han question: its own language lacks the paragraph, English (searched cross-lingually) has it.
    assert han.native_available is False and ("zh", han.paragraph) not in held and ("en", han.paragraph) in held
    # The others find their answer in their own language.
    assert latin.native_available and arabic.native_available
    assert ("en", latin.paragraph) in held and ("ar", arabic.paragraph) in held


def test_grpo_questions_find_their_short_answer_in_the_first_search(gap):
    from crosearch.rl.quick import SHORT_ANSWER_WORDS, questions_with_signal

    bench, retriever = gap
    chosen = questions_with_signal(bench.train, retriever, 2, k=2, seed=0)
    assert len(chosen) == 2 and len({q.lang for q in chosen}) == 2
    hits = retriever.search([SearchQuery(q.question, lang=q.lang, search_langs=[q.lang]) for q in chosen], 2)
    for q, found in zip(chosen, hits):
        assert min(len(a.split()) for a in q.answers) <= SHORT_ANSWER_WORDS
        text = " ".join(f"{h.title} {h.text}" for h in found).casefold()
        assert any(a.casefold() in text for a in q.answers), (q.question, q.answers)
    # Deterministic: the same seed picks the same questions.
    assert [q.id for q in questions_with_signal(bench.train, retriever, 2, k=2, seed=0)] == [q.id for q in chosen]


def test_the_comparison_grows_with_the_shipped_adapters_of_its_model(tmp_path, monkeypatch):
    from peft import LoraConfig, get_peft_model

    from crosearch.cli.quickstart import Policy, _policies
    from crosearch.config import load_config
    from crosearch.models import build_tiny_model, load_tokenizer

    cfg = load_config(None, ["model.name=tiny"])
    monkeypatch.setattr(adapters, "ADAPTERS_DIR", tmp_path / "adapters")
    assert _policies(cfg) == [Policy("base", None)]

    torch.manual_seed(0)
    model = get_peft_model(
        build_tiny_model(load_tokenizer("tiny", show_progress=False)),
        LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"]),
    )
    model.save_pretrained(tmp_path / "trained")
    fields = {"data": "d", "recipe": "r", "steps": 1, "seed": 0, "commit": "c", "metrics": "m", "model": "tiny"}
    card = AdapterCard(**fields, settings={"crosslingual.strategy": "crosslingual"})
    ship_adapter(tmp_path / "trained", "crosearch-r1", card)
    xl = Policy("crosearch-r1", "bundled:crosearch-r1", {"crosslingual.strategy": "crosslingual"})
    assert _policies(cfg) == [Policy("base", None), xl]
    ship_adapter(tmp_path / "trained", "search-r1", AdapterCard(**fields, settings={"crosslingual.strategy": "mono"}))
    mono = Policy("search-r1", "bundled:search-r1", {"crosslingual.strategy": "mono"})
    assert _policies(cfg) == [Policy("base", None), mono, xl]
    # Each policy is evaluated under the overrides it was trained with.
    assert mono.config(cfg).crosslingual.strategy == "mono" and mono.config(cfg).model.adapter == "bundled:search-r1"
    assert xl.config(cfg).crosslingual.strategy == "crosslingual"
    # An adapter trained on another model is left out, not loaded onto the wrong shapes.
    assert _policies(load_config(None, ["model.name=bundled"])) == [Policy("base", None)]


def test_sampled_answers_rank_the_grpo_candidates(gap, tmp_path):
    """The pre-pass samples answers with the real policy (the tiny model here) and ranks by their F1 spread."""
    from crosearch.config import load_config
    from crosearch.rl.quick import questions_with_signal, rank_by_sampled_spread

    bench, retriever = gap
    candidates = questions_with_signal(bench.train, retriever, 3, k=2, seed=0)
    cfg = load_config(
        None,
        [
            "model.name=tiny",
            "model.dtype=float32",
            "crosslingual.strategy=mono",
            "agent.temperature=0.8",
            "agent.max_turns=2",
            "agent.max_new_tokens=16",
            "agent.answer_tokens=8",
        ],
    )
    ranked, spread = rank_by_sampled_spread(candidates, cfg, retriever, samples=2)
    assert sorted(q.id for q in ranked) == sorted(q.id for q in candidates)
    assert set(spread) == {q.id for q in candidates} and all(0.0 <= v <= 1.0 for v in spread.values())
    assert [spread[q.id] for q in ranked] == sorted(spread.values(), reverse=True)
    assert rank_by_sampled_spread([], cfg, retriever) == ([], {})
