"""Reading the action out of one model turn (Search-R1 tags), robust to malformed output.

Pure functions over text. The engine maps the character offsets they return back
to a token prefix, so what is kept of a turn is always a prefix of the sampled ids.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Literal

Action = Literal["search", "answer", "invalid"]

# Lenient about inner spaces ("</ search >") because small models write them; generation
# stops on the exact tags, so a lenient tag simply ends up being trimmed as trailing text.
_OPEN = re.compile(r"<\s*(search|answer)\s*>", re.IGNORECASE)
_CLOSE = re.compile(r"<\s*/\s*(search|answer)\s*>", re.IGNORECASE)
# The model imitating the environment: everything from here on is the model's invention.
_INFORMATION = re.compile(r"<\s*/?\s*information\s*>", re.IGNORECASE)
_SPACE = re.compile(r"\s+")

# Problems a turn can have; reward functions and reports read these from the trace.
NO_TAGS = "no_tags"
UNCLOSED_SEARCH = "unclosed_search"
UNCLOSED_ANSWER = "unclosed_answer"
EMPTY_QUERY = "empty_query"
EMPTY_ANSWER = "empty_answer"
REPEAT_QUERY = "repeat_query"
INVENTED_INFORMATION = "invented_information"
TRAILING_TEXT = "trailing_text"
MISMATCHED_TAGS = "mismatched_tags"
CLOSE_WITHOUT_OPEN = "close_without_open"


@dataclass(frozen=True, slots=True)
class TurnParse:
    """What one turn asks for.

    ``end`` is the length of the text prefix that belongs to the turn; text after it
    is dropped. ``end_inclusive`` says how to map ``end`` to tokens: ``True`` keeps the
    token that completes the prefix even if it carries a few more characters (the
    closing ``>`` of a tag often shares a token with a newline); ``False`` drops any
    token that reaches past ``end``.

    A turn that invents an ``<information>`` block keeps the invented tag and drops what
    follows it: the tag is the mistake, and only tokens kept in the turn are trained on.
    Dropping the tag too would leave GRPO blind to it (its probability could only grow as
    other tokens lose mass); a run of the experiment lost its format that way in three steps.
    """

    action: Action
    content: str | None = None
    end: int = 0
    end_inclusive: bool = True
    closed: bool = False
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def query(self) -> str | None:
        return self.content if self.action == "search" else None

    @property
    def answer(self) -> str | None:
        return self.content if self.action == "answer" else None


def normalize_query(query: str) -> str:
    """Key under which two queries count as the same (case and spacing ignored)."""
    return _SPACE.sub(" ", query).strip().casefold()


def _cut_invented_information(text: str) -> tuple[str, int | None]:
    """The text before an invented ``<information>`` tag, and where that tag ends (None without one).

    The tag itself stays in the turn (see :class:`TurnParse`), what follows it does not.
    """
    match = _INFORMATION.search(text)
    if match is None:
        return text, None
    return text[: match.start()], match.end()


def _unclosed_end(text: str, tag_end: int | None) -> tuple[int, bool]:
    """``(end, end_inclusive)`` of a turn without a closing tag: up to an invented tag, else all of it."""
    return (tag_end, False) if tag_end is not None else (len(text), True)


def _strip_partial_close(content: str) -> str:
    """Drop a closing tag the token cap cut in half (``Paris</ans``): it is not part of the answer."""
    start = content.rfind("<")
    if start >= 0 and "</answer>".startswith(_SPACE.sub("", content[start:])):
        return content[:start]
    return content


def parse_turn(text: str, previous_queries: Collection[str] = ()) -> TurnParse:
    """Parse one generated turn into a search, an answer, or an invalid action.

    The first closing tag decides (generation stops there); its opening tag is the
    last ``<search>``/``<answer>`` before it. Without a closing tag, an opened
    ``<answer>`` still yields its (unclosed) text, an opened ``<search>`` does not:
    a half-written query is not worth a retrieval call. ``previous_queries`` holds
    :func:`normalize_query` keys of this rollout's earlier searches.
    """
    problems: list[str] = []
    body, tag_end = _cut_invented_information(text)
    if tag_end is not None:
        problems.append(INVENTED_INFORMATION)
    # Offsets are into ``body``, a prefix of ``text``, so they hold for ``text`` too.
    default_end, default_inclusive = _unclosed_end(text, tag_end)

    close = _CLOSE.search(body)
    if close is not None:
        opens = [m for m in _OPEN.finditer(body, 0, close.start())]
        if not opens:
            problems.append(CLOSE_WITHOUT_OPEN)
            return TurnParse("invalid", None, close.end(), True, False, tuple(problems))
        opening = opens[-1]
        kind = opening.group(1).lower()
        if kind != close.group(1).lower():
            problems.append(MISMATCHED_TAGS)
        content = body[opening.end() : close.start()].strip()
        if body[close.end() :].strip():
            problems.append(TRAILING_TEXT)
        return _finish(kind, content, close.end(), True, True, problems, previous_queries)

    opens = list(_OPEN.finditer(body))
    if not opens:
        problems.append(NO_TAGS)
        return TurnParse("invalid", None, default_end, default_inclusive, False, tuple(problems))
    opening = opens[-1]
    kind = opening.group(1).lower()
    content = body[opening.end() :].strip()
    if kind == "search":
        problems.append(UNCLOSED_SEARCH)
        return TurnParse("invalid", content or None, default_end, default_inclusive, False, tuple(problems))
    problems.append(UNCLOSED_ANSWER)
    content = _strip_partial_close(content).strip()
    return _finish(kind, content, default_end, default_inclusive, False, problems, previous_queries)


def _finish(
    kind: str,
    content: str,
    end: int,
    inclusive: bool,
    closed: bool,
    problems: list[str],
    previous_queries: Collection[str],
) -> TurnParse:
    if kind == "search":
        if not content:
            problems.append(EMPTY_QUERY)
            return TurnParse("invalid", None, end, inclusive, closed, tuple(problems))
        if normalize_query(content) in previous_queries:
            problems.append(REPEAT_QUERY)
        return TurnParse("search", content, end, inclusive, closed, tuple(problems))
    if not content:
        problems.append(EMPTY_ANSWER)
    return TurnParse("answer", content or None, end, inclusive, closed, tuple(problems))


def parse_forced_answer(text: str) -> TurnParse:
    """Parse the continuation after an environment-inserted ``<answer>`` prefix.

    The answer is the text up to ``</answer>`` (or all of it when the budget cut it),
    also stopping at any tag the model starts instead of closing the answer.
    """
    problems: list[str] = []
    body, tag_end = _cut_invented_information(text)
    if tag_end is not None:
        problems.append(INVENTED_INFORMATION)
    close = _CLOSE.search(body)
    if close is not None:
        content, end, inclusive, closed = body[: close.start()], close.end(), True, True
        if body[close.end() :].strip():
            problems.append(TRAILING_TEXT)
    else:
        problems.append(UNCLOSED_ANSWER)
        content, closed = _strip_partial_close(body), False
        end, inclusive = _unclosed_end(text, tag_end)
    # A model that opens another tag inside its answer has left the answer behind.
    stray = _OPEN.search(content)
    if stray is not None:
        content = content[: stray.start()]
        problems.append(MISMATCHED_TAGS)
    content = content.strip()
    if not content:
        problems.append(EMPTY_ANSWER)
    return TurnParse("answer", content or None, end, inclusive, closed, tuple(problems))
