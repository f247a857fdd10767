"""Reward functions and multilingual GRPO rows (no model needed)."""

from __future__ import annotations

import pytest

from crosearch.errors import ConfigError
from crosearch.rl.checkpoints import MARKER, REQUIRED_FILES, discard_incomplete_checkpoints, latest_complete_checkpoint
from crosearch.rl.rewards import REWARDS, build_rewards
from crosearch.rl.rollout import RolloutFunction, TimedRetriever, build_rows
from crosearch.types import QAExample


def _fields(answers, golds, langs, valid=None):
    logged = {}

    def log_metric(name, value):
        logged.setdefault(name, []).append(value)

    kwargs = {
        "answer": answers,
        "golds": golds,
        "lang": langs,
        "valid_format": valid if valid is not None else [True] * len(answers),
        "log_metric": log_metric,
    }
    return kwargs, logged


def test_answer_rewards_score_each_rollout_against_its_own_language():
    kwargs, logged = _fields(
        ["Berlin", "Paris", None, "北京"], [["Berlin"], ["Berlin"], ["x"], ["北京市"]], ["de", "en", "en", "zh"]
    )
    em = REWARDS["exact_match"]([None] * 4, [""] * 4, **kwargs)
    f1 = REWARDS["f1"]([None] * 4, [""] * 4, **kwargs)
    assert em == [1.0, 0.0, 0.0, 0.0]
    assert f1[0] == 1.0 and f1[2] == 0.0
    assert 0.0 < f1[3] < 1.0  # character-level F1 for Chinese: partial credit
    assert logged["lang/exact_match/de"] == [1.0]
    assert logged["lang/exact_match/en"] == [0.0]


def test_format_reward():
    kwargs, logged = _fields(["Berlin", None], [["Berlin"], ["a"]], ["de", "de"], valid=[True, False])
    assert REWARDS["format"]([None] * 2, [""] * 2, **kwargs) == [1.0, 0.0]
    assert logged["lang/format/de"] == [0.5]


@pytest.mark.slow  # loads lingua's language models (tens of seconds)
def test_answer_language_reward():
    kwargs, _ = _fields(["Die Hauptstadt ist Berlin", None], [["Berlin"], ["a"]], ["de", "de"])
    lang = REWARDS["answer_language"]([None] * 2, [""] * 2, **kwargs)
    assert lang[1] == 0.0 and lang[0] in (1.0, None)


def test_reward_missing_trace_field_is_a_clear_error():
    with pytest.raises(ValueError, match="'golds'"):
        REWARDS["exact_match"]([None], [""], answer=["x"], lang=["en"])


def test_build_rewards_weights_and_names():
    funcs, weights = build_rewards({"exact_match": 1.0, "format": 0.1})
    assert [f.__name__ for f in funcs] == ["exact_match", "format"] and weights == [1.0, 0.1]
    with pytest.raises(ConfigError, match="unknown reward"):
        build_rewards({"bleu": 1.0})
    with pytest.raises(ConfigError, match="every weight is 0"):
        build_rewards({"exact_match": 0.0})


def _parallel():
    qs = []
    for lang, text, ans in (("en", "Who?", "Bob"), ("de", "Wer?", "Bob DE"), ("zh", "谁?", "鲍勃")):
        qs.append(
            QAExample(id=f"q1/{lang}", lang=lang, question=text, answers=[ans], group="q1", exclude=[f"{lang}/p1"])
        )
    qs.append(QAExample(id="q2/en", lang="en", question="Where?", answers=["Here"], group="q2"))
    return qs


def test_multilingual_rows_map_the_kth_repeat_to_the_kth_language_version():
    rows = build_rows(_parallel(), multilingual=True, group_languages=2, seed=0)
    assert len(rows) == 4
    first = rows[0]
    assert first.versions[0].id == "q1/en" and len(first.versions) == 2
    assert first.versions[1].group == "q1" and first.versions[1].lang != "en"
    assert len(rows[3].versions) == 1  # no parallel version: a single-language row
    fn = RolloutFunction(rows=rows, make_engine=None, retriever=TimedRetriever(None), prompt_builder=None)
    # TRL hands the rollout function each key repeated num_generations (4) times, consecutively.
    received = [first.key] * 4 + [rows[3].key] * 4
    chosen = fn.assign(received)
    assert [q.lang for q in chosen[:4]] == [first.versions[i % 2].lang for i in range(4)]
    assert {q.lang for q in chosen[4:]} == {"en"}
    # Each version keeps its own exclusions and golds.
    assert chosen[1].exclude == [f"{chosen[1].lang}/p1"] and chosen[1].answers != chosen[0].answers


def test_monolingual_rows_and_unknown_prompt():
    rows = build_rows(_parallel(), multilingual=False, group_languages=3)
    assert all(len(r.versions) == 1 for r in rows)
    fn = RolloutFunction(rows=rows, make_engine=None, retriever=TimedRetriever(None), prompt_builder=None)
    with pytest.raises(KeyError):
        fn.assign(["not a row"])


def test_incomplete_checkpoints_are_never_picked(tmp_path):
    for step, complete in ((2, True), (4, True), (6, False)):
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        for name in REQUIRED_FILES:
            (d / name).write_text("{}")
        if complete:
            (d / MARKER).write_text("{}")
    # A marker without the optimizer file (write interrupted) is not complete either.
    (tmp_path / "checkpoint-4" / "optimizer.pt").unlink()
    assert latest_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-2"
    removed = discard_incomplete_checkpoints(tmp_path)
    assert sorted(p.name for p in removed) == ["checkpoint-4", "checkpoint-6"]
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-2"]
