"""Parsing of single turns (pure functions) and the prompt templates."""

from __future__ import annotations

import pytest

from crosearch.agent import parsing as P
from crosearch.agent.parsing import normalize_query, parse_forced_answer, parse_turn
from crosearch.agent.prompts import PromptBuilder, language_name, load_template
from crosearch.errors import ConfigError, CrosearchError


def test_closed_search_is_a_search_and_the_end_is_after_the_tag():
    text = "<think>need year</think>\n<search> Eiffel Tower  opened </search>\n"
    p = parse_turn(text)
    assert p.action == "search" and p.query == "Eiffel Tower  opened" and p.closed
    assert text[: p.end].endswith("</search>") and p.end_inclusive and p.problems == ()


def test_closed_answer_with_trailing_text_is_trimmed():
    text = "<think>ok</think><answer>1889</answer> and then I keep talking"
    p = parse_turn(text)
    assert p.action == "answer" and p.answer == "1889"
    assert text[: p.end] == "<think>ok</think><answer>1889</answer>"
    assert P.TRAILING_TEXT in p.problems


def test_no_tags_is_invalid():
    p = parse_turn("the model rambles on without any protocol")
    assert p.action == "invalid" and p.content is None and p.problems == (P.NO_TAGS,)


def test_unclosed_search_is_invalid_but_unclosed_answer_is_an_answer():
    s = parse_turn("<think>x</think><search>who wrote the")
    assert s.action == "invalid" and P.UNCLOSED_SEARCH in s.problems
    a = parse_turn("<think>x</think><answer>Paris")
    assert a.action == "answer" and a.answer == "Paris" and not a.closed and P.UNCLOSED_ANSWER in a.problems


def test_empty_query_and_empty_answer():
    e = parse_turn("<search>   </search>")
    assert e.action == "invalid" and P.EMPTY_QUERY in e.problems
    a = parse_turn("<answer> </answer>")
    assert a.action == "answer" and a.answer is None and P.EMPTY_ANSWER in a.problems


def test_repeated_query_is_flagged_but_still_searched():
    previous = {normalize_query("Capital of  FRANCE")}
    p = parse_turn("<search>capital of france</search>", previous)
    assert p.action == "search" and P.REPEAT_QUERY in p.problems
    assert P.REPEAT_QUERY not in parse_turn("<search>capital of spain</search>", previous).problems


def test_invented_information_keeps_the_tag_and_drops_what_follows():
    text = "<think>I know this</think>\n<information>Doc 1(Title: made up) ...</information>"
    p = parse_turn(text)
    assert p.action == "invalid" and P.INVENTED_INFORMATION in p.problems
    # The tag is the mistake: it stays in the turn (and so in training); the invented text does not.
    assert text[: p.end] == "<think>I know this</think>\n<information>" and not p.end_inclusive
    f = parse_forced_answer("Paris<information>fake")
    assert f.answer == "Paris" and "Paris<information>fake"[: f.end] == "Paris<information>"
    # A search written before the invention still counts; everything after it is dropped.
    q = parse_turn("<search>nile length</search><information>fake")
    assert q.action == "search" and q.query == "nile length"


def test_first_closing_tag_decides_and_mismatched_or_orphan_tags():
    p = parse_turn("<search>a</search><answer>b</answer>")
    assert p.action == "search" and p.query == "a"
    m = parse_turn("<search>paris</answer>")
    assert m.action == "search" and P.MISMATCHED_TAGS in m.problems
    o = parse_turn("text </answer>")
    assert o.action == "invalid" and P.CLOSE_WITHOUT_OPEN in o.problems


def test_lenient_tag_spelling():
    p = parse_turn("< search >q1</ search >")
    assert p.action == "search" and p.query == "q1"


def test_forced_answer_parsing():
    closed = parse_forced_answer(" Denver Broncos </answer>\nmore")
    assert closed.answer == "Denver Broncos" and closed.closed and P.TRAILING_TEXT in closed.problems
    cut = parse_forced_answer(" a very long answer that ran out")
    assert cut.answer == "a very long answer that ran out" and P.UNCLOSED_ANSWER in cut.problems
    half = parse_forced_answer(" 308 points</ans")  # the token cap cut the closing tag
    assert half.answer == "308 points" and not half.closed
    assert parse_turn("<answer>Paris <").answer == "Paris"
    assert parse_forced_answer("x < y").answer == "x < y"
    stray = parse_forced_answer("Paris<search>more</search>")
    assert stray.answer == "Paris" and P.MISMATCHED_TAGS in stray.problems
    empty = parse_forced_answer("</answer>")
    assert empty.answer is None and P.EMPTY_ANSWER in empty.problems


def test_base_template_names_the_language_and_ends_with_the_question():
    text = PromptBuilder("base").text("Wer schrieb Faust?", "de")
    assert "The question is in German; the answer must be written in German." in text
    assert text.endswith("Question: Wer schrieb Faust?\n")
    assert "<search>" in text and "<information>" in text and "<answer>" in text
    assert language_name("zh") == "Chinese" and language_name("xx") == "xx"


def test_chat_template_needs_a_tokenizer_with_one():
    class NoChat:
        chat_template = None

    with pytest.raises(CrosearchError, match="chat template"):
        PromptBuilder("chat").render(NoChat(), "q?", "en")


def test_user_template_file_is_checked(tmp_path):
    good = tmp_path / "mine.txt"
    good.write_text("Q ({lang}, {language}): {question}\n", encoding="utf-8")
    assert PromptBuilder(str(good)).text("why?", "es") == "Q (es, Spanish): why?\n"
    bad = tmp_path / "bad.txt"
    bad.write_text("{question} {answer}", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown field"):
        load_template(str(bad))
    with pytest.raises(ConfigError, match="neither a built-in"):
        load_template(str(tmp_path / "missing.txt"))
