"""The training recipe's data: multi-search warm-start trajectories, search-language rows, the validation split.

Real parts: the bundled tokenizer (no model weights: the warm-start turns are scripted), a
real BM25 index over an en+de XQuAD benchmark in the ``no-native`` setting (each question's
own-language gold paragraph is hidden from it, so its first search in its own language misses)
with a validation split carved out of the train articles.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crosearch.config import DataConfig, load_config
from crosearch.data.benchmark import build_benchmark, write_benchmark
from crosearch.errors import ConfigError
from crosearch.rl.rollout import RolloutFunction, TimedRetriever, build_rows, check_group_mode, training_rows
from crosearch.rl.sft import IGNORE, Trajectory, build_warm_start_data, keyword_query

LANGS = ["de", "en"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from crosearch.retrieval.local import build_index

    root = tmp_path_factory.mktemp("recipe")
    bench = build_benchmark(DataConfig(languages=LANGS, setting="no-native", validation_fraction=0.2))
    write_benchmark(bench, root / "benchmark")
    build_index(bench.collection, root / "index", progress=False)
    return root, bench


@pytest.fixture(scope="module")
def tokenizer():
    from crosearch.models import load_tokenizer

    return load_tokenizer("tiny")


def _config(root: Path, *overrides: str):
    return load_config(
        None,
        [
            "model.name=tiny",
            f"retrieval.index_dir={root / 'index'}",
            "crosslingual.strategy=concat",
            "crosslingual.translator=none",
            "crosslingual.token_budget=300",
            "crosslingual.k=2",
            "agent.max_total_tokens=2048",
            "sft.languages=[de]",
            "sft.max_examples=16",
            "sft.parallel_langs=[en]",
            *overrides,
        ],
    )


def _trajectories(root: Path, bench, tokenizer, *overrides: str) -> list[Trajectory]:
    from crosearch.agent.backends import model_eos_ids
    from crosearch.retrieval.local import load_retriever

    config = _config(root, *overrides)
    retriever = load_retriever(config)
    return build_warm_start_data(config, bench.train, retriever, tokenizer, model_eos_ids(None, tokenizer))


def _check_masks(t: Trajectory, tokenizer) -> None:
    """Labels are the model turns exactly; every inserted <information> block is masked."""
    ids, labels = t.input_ids, t.labels
    trained = [i for i, lab in enumerate(labels) if lab != IGNORE]
    assert all(labels[i] == ids[i] for i in trained)
    trained_text = tokenizer.decode([ids[i] for i in trained])
    assert trained_text.count("<search>") == t.searches and "<answer>" in trained_text
    assert "<information>" not in trained_text and "Question:" not in trained_text
    inserted = tokenizer.decode([ids[i] for i, lab in enumerate(labels) if lab == IGNORE and i > trained[0]])
    assert inserted.count("<information>") == inserted.count("</information>") == t.searches


def test_multi_search_searches_again_with_the_parallel_question(data, tokenizer):
    root, bench = data
    one = {t.qid: t for t in _trajectories(root, bench, tokenizer)}
    many = {t.qid: t for t in _trajectories(root, bench, tokenizer, "sft.multi_search=1.0")}
    assert set(one) == set(many) and len(one) == 16
    english = {q.group: q for q in bench.train if q.lang == "en"}
    by_id = {q.id: q for q in bench.train}
    # The default warm start: one search with the question itself.
    assert all(t.searches == 1 and t.query_kinds == ["question"] for t in one.values())
    again = [t for t in many.values() if t.searches >= 2]
    assert again, "no-native hides the German gold paragraph: some first searches must miss"
    for t in many.values():
        _check_masks(t, tokenizer)
        q = by_id[t.qid]
        assert t.queries[0] == q.question.strip()
        if t.evidence_has_answer[0]:
            # The first evidence held the answer: the same single-search trajectory as without multi-search.
            assert t.searches == 1 and t.input_ids == one[t.qid].input_ids
        else:
            # It searches again with the English version of the question, and stops once evidence holds the answer.
            assert t.queries[1] == english[q.group].question.strip() and t.query_kinds[1] == "parallel:en"
            assert not any(t.evidence_has_answer[:-1])
    # The English question reaches the English copy of the gold paragraph, which the German one could not.
    assert any(t.evidence_has_gold_paragraph[1] and not t.evidence_has_gold_paragraph[0] for t in again)


def test_keyword_reformulation_drops_stopwords(data, tokenizer):
    root, bench = data
    # "war" and "der" (twice) are German stopwords; the question word is not.
    assert keyword_query("Wer war der erste Präsident der USA?", "de") == "Wer erste Präsident USA"
    trajectories = _trajectories(root, bench, tokenizer, "sft.multi_search=1.0", "sft.reformulation=keywords")
    by_id = {q.id: q for q in bench.train}
    again = [t for t in trajectories if t.searches >= 2]
    assert again
    for t in again:
        assert t.query_kinds[1] == "keywords" and t.queries[1] == keyword_query(by_id[t.qid].question, "de")


def test_strategies_share_the_questions_out(data, tokenizer):
    root, bench = data
    trajectories = _trajectories(root, bench, tokenizer, "sft.strategies=[mono, concat]")
    assert [t.strategy for t in trajectories].count("mono") == 8
    assert [t.strategy for t in trajectories].count("concat") == 8
    # mono searches German alone, where no-native hides the gold paragraph; concat also reaches English.
    assert not any(t.evidence_has_gold_paragraph[0] for t in trajectories if t.strategy == "mono")
    assert any(t.evidence_has_gold_paragraph[0] for t in trajectories if t.strategy == "concat")


def test_validation_questions_never_reach_training(data, tokenizer):
    root, bench = data
    validation = {q.id for q in bench.validation}
    texts = {q.question.strip() for q in bench.validation}
    assert validation
    config = _config(root, "train.languages=[de, en]", "train.multilingual_groups=true")
    rows = training_rows(config, bench.train)
    assert len(rows) == len(bench.train)
    assert not {v.id for row in rows for v in row.versions} & validation
    for t in _trajectories(root, bench, tokenizer, "sft.multi_search=1.0", "sft.max_examples=64"):
        assert t.qid not in validation and not set(t.queries) & texts


def test_search_language_rows_and_refused_combinations(data):
    root, bench = data
    config = _config(
        root, "train.group_mode=search-langs", "train.search_langs=[self, en]", "crosslingual.strategy=mono"
    )
    check_group_mode(config, ["de", "en"])
    rows = training_rows(config, bench.train)
    row = next(r for r in rows if r.versions[0].lang == "de")
    assert row.search_langs == ["de", "en"] and len(row.versions) == 1
    fn = RolloutFunction(rows=rows, make_engine=None, retriever=TimedRetriever(None), prompt_builder=None)
    received = [row.key] * 4
    assert fn.assign_search_langs(received) == ["de", "en", "de", "en"]
    assert {q.id for q in fn.assign(received)} == {row.versions[0].id}  # one question, its own golds
    with pytest.raises(ConfigError, match="'concat'"):
        check_group_mode(_config(root, "train.group_mode=search-langs"))
    with pytest.raises(ConfigError, match="multilingual_groups"):
        check_group_mode(_config(root, "train.group_mode=search-langs", "train.multilingual_groups=true"))
    with pytest.raises(ConfigError, match="es not in the index"):
        check_group_mode(_config(root, "train.group_mode=search-langs", "crosslingual.strategy=mono"), ["de", "en"])
    with pytest.raises(ConfigError, match="exclude multilingual"):
        build_rows(bench.train[:2], multilingual=True, group_languages=2, search_langs=["self", "en"])


def test_rollout_log_of_a_resumed_run_drops_the_steps_it_redoes(tmp_path, data):
    from crosearch.agent.engine import DocRef, Rollout, Turn
    from crosearch.eval.qa import read_predictions
    from crosearch.rl.rollout import RolloutLog

    _, bench = data
    q = bench.train[0]
    search = Turn(0, "generate", "<search>x</search>", "search", "stop", query="x")
    search.docs = [DocRef(doc_id=f"en/{q.paragraph}/w0", lang="en", paragraph=q.paragraph)]
    answer = Turn(1, "generate", "<answer>y</answer>", "answer", "stop", answer="y")
    rollout = Rollout(q.id, q.lang, [1], [2, 3], [1, 0], [0.0, 0.0], [search, answer], "y", 1, "answered")
    path = tmp_path / "rollouts.jsonl"
    first = RolloutLog(path)
    for step in (1, 2, 3):
        first.write(step, [rollout], [q], ["en"])
    # Resumed from the checkpoint of step 2: step 3 is trained again, its old lines go.
    RolloutLog(path).write(3, [rollout, rollout], [q, q], [None, "en"])
    records = read_predictions(path)
    assert [r["step"] for r in records] == [1, 2, 3, 3]
    assert [r["search_lang"] for r in records[2:]] == [q.lang, "en"]
    assert records[0]["evidence_langs"] == [["en"]] and records[0]["gold_in_evidence"] is True


def test_sft_trajectories_only_writes_the_data_and_its_summary(data, tmp_path):
    import json

    import yaml
    from typer.testing import CliRunner

    from crosearch.cli import app

    root, _ = data
    recipe = {
        "model": {"name": "tiny"},
        "retrieval": {"index_dir": str(root / "index")},
        "crosslingual": {"strategy": "concat", "translator": "none", "token_budget": 300, "k": 2},
        "agent": {"max_total_tokens": 2048},
        "sft": {
            "benchmark": str(root / "benchmark"),
            "output_dir": str(tmp_path / "sft"),
            "languages": ["de"],
            "max_examples": 8,
            "multi_search": 1.0,
            "parallel_langs": ["en"],
            "max_length": 2048,
        },
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = CliRunner().invoke(app, ["sft", "--config", str(path), "--trajectories-only"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "sft" / "trajectories-summary.json").read_text())
    lines = (tmp_path / "sft" / "trajectories.jsonl").read_text().splitlines()
    assert summary["trajectories"] == len(lines) == 8
    histogram = {int(k): v for k, v in summary["searches_histogram"].items()}
    assert sum(histogram.values()) == 8 and max(histogram) >= 2 and summary["longer_than_max_length"] == 0
    assert summary["answer_in_evidence"] >= summary["answer_in_first_evidence"]
    assert not (tmp_path / "sft" / "final").exists()  # nothing was trained


def test_warm_start_trains_the_tiny_model_on_multi_search_trajectories(data, tokenizer, tmp_path):
    import json

    from crosearch.rl.sft import run_sft

    root, _ = data
    config = _config(
        root,
        f"sft.benchmark={root / 'benchmark'}",
        f"sft.output_dir={tmp_path / 'sft'}",
        "sft.multi_search=1.0",
        "sft.max_examples=6",
        "sft.max_length=2048",
        "sft.max_steps=1",
        "sft.batch_size=2",
        "sft.bf16=false",
        "model.dtype=float32",
        "model.device=cpu",
    )
    summary = run_sft(config)
    assert summary["steps"] == 1 and (tmp_path / "sft" / "final" / "adapter_config.json").exists()
    assert summary["searches_histogram"].get("2", 0) + summary["searches_histogram"].get("3", 0) > 0
    assert summary["trajectory_summary"]["longer_than_max_length"] == 0
    for line in (tmp_path / "sft" / "trajectories.jsonl").read_text().splitlines():
        _check_masks(Trajectory(**json.loads(line)), tokenizer)
