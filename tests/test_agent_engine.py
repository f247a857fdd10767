"""The rollout engine and its backends with the tiny random Gemma 3 model and a real BM25 index.

The random model writes no protocol tags at all (the natural malformed case). Exact
trajectories (searches, answers, invented information) are driven through the
teacher-forced backend, which feeds given text through the same real model.
"""

from __future__ import annotations

import pytest

from crosearch.agent.backends import HFBackend, SamplingParams, StopChecker, TeacherForcedBackend
from crosearch.agent.engine import STOP_STRINGS, RolloutEngine, RolloutRequest, to_trl
from crosearch.agent.prompts import PromptBuilder, read_prompt_file
from crosearch.agent.scoring import sequence_logprobs
from crosearch.config import AgentConfig, CrossLingualConfig, load_config
from crosearch.crosslingual.integration import Integrator
from crosearch.data.formats import load_squad, squad_examples, squad_passages, xquad_dir
from crosearch.errors import CrosearchError
from crosearch.retrieval.local import LocalRetriever, build_index

LANGS = ("en", "de")


@pytest.fixture(scope="module")
def tiny():
    from crosearch.models import load_policy

    policy = load_policy("tiny", dtype="float32", device="cpu", show_progress=False)
    return policy.model.eval(), policy.tokenizer


@pytest.fixture(scope="module")
def xquad():
    passages, questions = [], []
    for lang in LANGS:
        squad = load_squad(xquad_dir() / f"xquad.{lang}.json.gz", lang)
        passages += [p for p in squad_passages(squad) if p.article in ("xquad-a00", "xquad-a01")]
        questions += [q for q in squad_examples(squad) if q.article == "xquad-a00"][:2]
    return passages, questions


@pytest.fixture(scope="module")
def retriever(xquad, tmp_path_factory):
    out = tmp_path_factory.mktemp("agent") / "index"
    build_index(xquad[0], out, progress=False)
    return LocalRetriever(out)


def _integration(retriever, tokenizer, budget=60):
    integrator = Integrator(retriever, CrossLingualConfig(strategy="mono", token_budget=budget), tokenizer=tokenizer)
    return lambda queries: integrator.gather(queries, k=2)


def _requests(tokenizer, questions, n=2):
    builder = PromptBuilder("base")
    return [
        RolloutRequest(builder.encode(tokenizer, q.question, q.lang), q.lang, q.exclude, q.id) for q in questions[:n]
    ]


def _short_requests(questions, n=1):
    """Plain-text prompts: cheap to re-read every turn where the template does not matter."""
    return [RolloutRequest(f"Question: {q.question}\n", q.lang, q.exclude, q.id) for q in questions[:n]]


def _segments(rollout):
    """Maximal runs of equal env_mask value: [(mask, ids), ...]."""
    out: list[tuple[int, list[int]]] = []
    for tok, m in zip(rollout.completion_ids, rollout.env_mask):
        if out and out[-1][0] == m:
            out[-1][1].append(tok)
        else:
            out.append((m, [tok]))
    return out


def _check_invariants(rollout, config):
    n = len(rollout.completion_ids)
    assert n > 0 and len(rollout.env_mask) == n and len(rollout.logprobs) == n
    assert set(rollout.env_mask) <= {0, 1}
    assert all(lp == 0.0 for lp, m in zip(rollout.logprobs, rollout.env_mask) if m == 0)
    assert all(lp <= 0.0 for lp in rollout.logprobs)
    assert len(rollout.prompt_ids) + n <= config.max_total_tokens


def test_searches_insert_information_as_env_tokens(tiny, retriever, xquad):
    model, tok = tiny
    question = xquad[1][0]

    def responder(context: str) -> str:
        if context.endswith("<answer>"):
            return "Denver Broncos</answer>"
        if context.endswith("</information>\n\n"):
            return "<think>found it</think>\n<answer>Denver Broncos</answer> trailing words"
        return f"<think>I should search.</think>\n<search>{question.question}</search> extra"

    full = load_config(
        overrides=[
            "agent.max_turns=3",
            "agent.max_new_tokens=48",
            "agent.answer_tokens=8",
            "crosslingual.strategy=mono",
            "crosslingual.token_budget=60",
            "retrieval.k=2",
        ]
    )
    config = full.agent
    engine = RolloutEngine.from_config(TeacherForcedBackend(model, tok, responder), retriever, full)
    [r] = engine.run(_requests(tok, [question], 1))
    _check_invariants(r, config)
    assert r.stop_reason == "answered" and r.answer == "Denver Broncos" and r.n_searches == 1
    search, answer = r.turns
    assert search.action == "search" and search.query == question.question
    # Generation stops at the closing tags: nothing written after them is kept.
    assert search.text.endswith("</search>") and answer.text.endswith("</answer>")
    assert "extra" not in tok.decode(r.completion_ids) and "trailing" not in tok.decode(r.completion_ids)

    segments = _segments(r)
    assert [m for m, _ in segments] == [1, 0, 1]
    info = tok.decode(segments[1][1])
    assert info == search.information
    assert info.startswith("\n\n<information>Doc 1(Title: ") and info.endswith("</information>\n\n")
    # Model segments decode to exactly the kept turn texts; excluded passages never appear.
    assert tok.decode(segments[0][1]) == search.text and tok.decode(segments[2][1]) == answer.text
    assert search.docs and all(d.lang == question.lang for d in search.docs)
    assert not {d.doc_id for d in search.docs} & set(question.exclude)


def test_text_after_a_lenient_closing_tag_is_trimmed_token_exactly(tiny, xquad):
    model, tok = tiny
    reply = "<think>ok</think><answer>Broncos</ answer> and then more words"
    config = AgentConfig(max_turns=2, max_new_tokens=40, answer_tokens=4)
    [r] = RolloutEngine(TeacherForcedBackend(model, tok, lambda ctx: reply), None, config).run(
        _short_requests(xquad[1])
    )
    _check_invariants(r, config)
    [turn] = r.turns
    assert r.stop_reason == "answered" and r.answer == "Broncos"
    assert turn.text == "<think>ok</think><answer>Broncos</ answer>" and turn.trimmed_tokens > 0
    # What is kept is a prefix of the ids the model "wrote".
    full = tok(reply, add_special_tokens=False)["input_ids"]
    assert r.completion_ids == full[: len(r.completion_ids)] and all(m == 1 for m in r.env_mask)


def test_ten_searches_in_a_row_end_in_a_forced_answer(tiny, retriever, xquad):
    model, tok = tiny

    def responder(context: str) -> str:
        if context.endswith("<answer>"):
            return " Broncos </answer>"
        return "<search>Super Bowl 50 winner</search>"

    config = AgentConfig(max_turns=10, max_new_tokens=16, answer_tokens=8, max_total_tokens=4096)
    engine = RolloutEngine(TeacherForcedBackend(model, tok, responder), _integration(retriever, tok, 30), config)
    [r] = engine.run(_short_requests(xquad[1]))
    _check_invariants(r, config)
    assert r.n_searches == 10 and r.stop_reason == "max_turns" and r.answer == "Broncos"
    assert [t.kind for t in r.turns] == ["generate"] * 10 + ["force_answer"]
    assert all("repeat_query" in t.problems for t in r.turns[1:10]) and "repeat_query" not in r.turns[0].problems
    info_blocks = [tok.decode(ids) for m, ids in _segments(r) if m == 0]
    # Ten <information> blocks; the last one runs straight into the forced <answer> prefix.
    assert len(info_blocks) == 10 and all(b.startswith("\n\n<information>Doc 1(") for b in info_blocks)
    assert info_blocks[-1].endswith("</information>\n\n" + read_prompt_file("force_answer"))


def test_invented_information_and_budget(tiny, retriever, xquad):
    model, tok = tiny
    invented = "<think>I know</think>\n<information>Doc 1(Title: fake) made up</information>"
    config = AgentConfig(max_turns=4, max_new_tokens=40, answer_tokens=4, max_total_tokens=520)
    engine = RolloutEngine(TeacherForcedBackend(model, tok, lambda ctx: invented), _integration(retriever, tok), config)
    [r] = engine.run(_requests(tok, xquad[1], 1))
    _check_invariants(r, config)
    first = r.turns[0]
    assert "invented_information" in first.problems
    # The invented tag is kept as the model's own tokens (trained on, so GRPO can push it down);
    # the invented text after it is not.
    assert first.text == "<think>I know</think>\n<information>"
    model_text = "".join(tok.decode(ids) for m, ids in _segments(r) if m == 1)
    assert "<information>" in model_text and "made up" not in model_text
    # Each invalid turn got the correction inserted until the token budget ran out.
    assert r.stop_reason in ("budget", "max_turns") and r.turns[-1].kind == "force_answer"
    feedback = read_prompt_file("invalid_action")
    assert any(tok.decode(ids) == feedback for m, ids in _segments(r) if m == 0)

    tight = AgentConfig(max_turns=4, max_new_tokens=40, answer_tokens=4, max_total_tokens=400)
    [b] = RolloutEngine(TeacherForcedBackend(model, tok, lambda ctx: invented), None, tight).run(
        _requests(tok, xquad[1], 1)
    )
    _check_invariants(b, tight)
    assert b.stop_reason == "budget"


def test_sampled_logprobs_match_a_teacher_forced_forward_pass(tiny, retriever, xquad):
    model, tok = tiny
    config = AgentConfig(
        max_turns=2, max_new_tokens=6, answer_tokens=4, temperature=0.7, top_p=0.9, batch_size=2, seed=3
    )
    engine = RolloutEngine(HFBackend(model, tok), _integration(retriever, tok), config)
    rollouts = engine.run(_requests(tok, xquad[1], 2))
    for r in rollouts:
        _check_invariants(r, config)
        # Garbage from a random model: no tags, so invalid turns, corrections and a forced answer.
        assert r.stop_reason == "max_turns" and r.turns[-1].kind == "force_answer"
        assert 0 in r.env_mask and 1 in r.env_mask
    recomputed = sequence_logprobs(
        model,
        [r.prompt_ids for r in rollouts],
        [r.completion_ids for r in rollouts],
        temperature=0.7,
        pad_token_id=tok.pad_token_id,
    )
    for r, ref in zip(rollouts, recomputed):
        model_positions = [i for i, m in enumerate(r.env_mask) if m == 1]
        diffs = [abs(r.logprobs[i] - ref[i]) for i in model_positions]
        assert max(diffs) < 1e-4

    out = to_trl(rollouts)
    assert set(out) >= {"prompt_ids", "completion_ids", "logprobs", "env_mask", "answer", "trace"}
    assert out["env_mask"] == [r.env_mask for r in rollouts] and len(out["trace"]) == 2


def test_seeded_sampling_is_reproducible_and_caps_are_per_row(tiny):
    model, tok = tiny
    backend = HFBackend(model, tok)
    prompts = [tok("Question: who?")["input_ids"], tok("Hi")["input_ids"]]
    a = backend.generate(prompts, [5, 2], ["</search>"], SamplingParams(temperature=1.0, seed=7))
    b = backend.generate(prompts, [5, 2], ["</search>"], SamplingParams(temperature=1.0, seed=7))
    c = backend.generate(prompts, [5, 2], ["</search>"], SamplingParams(temperature=1.0, seed=8))
    assert [g.ids for g in a] == [g.ids for g in b] and [g.ids for g in a] != [g.ids for g in c]
    assert [len(g.ids) for g in a] == [5, 2] and [g.finish for g in a] == ["length", "length"]
    assert all(len(g.logprobs) == len(g.ids) for g in a)


def test_greedy_and_stop_on_eos_without_answer(tiny, xquad):
    model, tok = tiny
    config = AgentConfig(max_turns=2, max_new_tokens=5, answer_tokens=3, temperature=0.0, on_invalid="stop")
    backend = HFBackend(model, tok)
    rs = RolloutEngine(backend, None, config).run(_short_requests(xquad[1], 2))
    assert all(r.prompt_ids[0] == tok.bos_token_id for r in rs)  # text prompts get the BOS token
    for r in rs:
        _check_invariants(r, config)
        assert r.stop_reason == "invalid_action" and r.answer is None and len(r.turns) == 1
    greedy = backend.generate([rs[0].prompt_ids], 5, [], SamplingParams(temperature=0.0))[0]
    assert greedy.ids == rs[0].completion_ids

    eos = tok.eos_token_id
    forced = TeacherForcedBackend(model, tok, lambda ctx: [tok.convert_tokens_to_ids("▁hello"), eos, eos])
    [r] = RolloutEngine(forced, None, config).run(_short_requests(xquad[1]))
    assert r.stop_reason == "eos_without_answer" and r.completion_ids[-1] == eos
    assert r.completion_ids.count(eos) == 1


def test_stop_checker_cuts_right_after_the_stop_string(tiny):
    _, tok = tiny
    checker = StopChecker(tok, STOP_STRINGS, [tok.eos_token_id])
    ids = tok("<think>a</think><search>b c</search>\n\nmore text here", add_special_tokens=False)["input_ids"]
    n, reason, stop = checker.end_of(ids, 100)
    assert (
        reason == "stop"
        and stop == "</search>"
        and tok.decode(ids[:n]).startswith("<think>a</think><search>b c</search>")
    )
    assert "</search>" not in tok.decode(ids[: n - 1])
    assert checker.end_of(ids, 3) == (3, "length", None)


def test_zero_turns_goes_straight_to_the_forced_answer(tiny, xquad):
    model, tok = tiny
    config = AgentConfig(max_turns=0, answer_tokens=6)
    forced = TeacherForcedBackend(model, tok, lambda ctx: " 308 points</answer>")
    [r] = RolloutEngine(forced, None, config).run(_short_requests(xquad[1]))
    _check_invariants(r, config)
    assert r.stop_reason == "max_turns" and r.answer == "308 points" and [t.kind for t in r.turns] == ["force_answer"]
    assert r.env_mask[: len(r.env_mask) - r.turns[0].model_tokens] == [0] * (len(r.env_mask) - r.turns[0].model_tokens)


def test_teacher_forcing_without_a_model_gives_the_same_turns_with_zero_logprobs(tiny, xquad):
    """The warm start builds its data without a model: same ids and stops, nothing scored."""
    model, tok = tiny
    config = AgentConfig(max_turns=0, answer_tokens=6)
    reply = " 308 points</answer> and more"
    [scored] = RolloutEngine(TeacherForcedBackend(model, tok, lambda ctx: reply), None, config).run(
        _short_requests(xquad[1])
    )
    unscored_backend = TeacherForcedBackend(None, tok, lambda ctx: reply, eos_token_ids=[tok.eos_token_id])
    [unscored] = RolloutEngine(unscored_backend, None, config).run(_short_requests(xquad[1]))
    assert unscored.completion_ids == scored.completion_ids and unscored.answer == scored.answer == "308 points"
    assert any(lp != 0.0 for lp in scored.logprobs)
    assert all(lp == 0.0 for lp in unscored.logprobs) and len(unscored.logprobs) == len(scored.logprobs)


def test_prompt_that_leaves_no_room_is_a_clear_error(tiny, xquad):
    model, tok = tiny
    config = AgentConfig(max_total_tokens=100)
    with pytest.raises(CrosearchError, match="max_total_tokens"):
        RolloutEngine(HFBackend(model, tok), None, config).run(_requests(tok, xquad[1], 1))


@pytest.mark.slow
def test_bundled_model_rollouts_are_token_exact(retriever, xquad):
    """The real Gemma 3 270M, sampled as in training: ids, mask and log-probs hold up."""
    from crosearch.models import load_policy

    policy = load_policy("bundled", dtype="float32", device="cpu", show_progress=False)
    model, tok = policy.model, policy.tokenizer
    full = load_config(
        overrides=[
            "agent.max_turns=2",
            "agent.max_new_tokens=40",
            "agent.answer_tokens=16",
            "agent.temperature=0.8",
            "crosslingual.strategy=mono",
            "retrieval.k=2",
            "crosslingual.token_budget=120",
        ]
    )
    engine = RolloutEngine.from_config(HFBackend(model, tok), retriever, full)
    rollouts = engine.run(_requests(tok, xquad[1], 2))
    recomputed = sequence_logprobs(
        model,
        [r.prompt_ids for r in rollouts],
        [r.completion_ids for r in rollouts],
        temperature=0.8,
        pad_token_id=tok.pad_token_id,
    )
    for r, ref in zip(rollouts, recomputed):
        _check_invariants(r, full.agent)
        assert r.turns and r.stop_reason in (
            "answered",
            "answer_truncated",
            "max_turns",
            "budget",
            "eos_without_answer",
        )
        diffs = [abs(r.logprobs[i] - ref[i]) for i, m in enumerate(r.env_mask) if m == 1]
        print(
            r.stop_reason,
            r.n_searches,
            repr(r.answer),
            f"max |dlogp| {max(diffs):.2e}",
            [(t.action, t.problems) for t in r.turns],
        )
        assert max(diffs) < 1e-3
        for turn in r.turns:
            if turn.information:  # a query sharing no term with the collection finds nothing
                assert turn.information.startswith("\n\n<information>")
                assert bool(turn.docs) != ("No results found." in turn.information)
