"""Multilingual sentence splitting and sentence-window passages.

Whole XQuAD paragraphs (about 120 words) overflow the small evidence budget a
270M-parameter policy can read, and in most warm-start trajectories the answer
fell outside the truncated text; windows of a few sentences keep each passage
short while the overlap (stride < size) keeps an answer sentence together with
its neighbours.

The splitter is rule-based on purpose: it must behave the same for every
language, including those no model was trained on, and never drop a character
(passages are exact slices of the paragraph, so answer spans survive).
"""

from __future__ import annotations

import regex

from crosearch.types import Passage

# Terminators that need whitespace after them (Latin, Cyrillic, Greek, Arabic, ...):
# '.', '!', '?', Arabic '؟', Urdu full stop '۔', ellipsis '…', with closing quotes/brackets.
_SPACED_END = regex.compile(r"[.!?؟۔…]+[\"'”’»›)\]]*(?=\s|$)")
# Terminators that end a sentence with no space after them: CJK full-width marks and the
# Devanagari danda / double danda (Hindi often puts no space after '।' in running text).
# Also Myanmar '။', Khmer '។', Ethiopic '።' and Armenian '։'.
_UNSPACED_END = regex.compile(r"(?:[。！？]+|[।॥။។።։]+|[!?]+(?=[\p{Han}\p{Hiragana}\p{Katakana}]))[」』”’）)\"']*")
# Thai and Lao write no sentence punctuation: a space between two letters of the script
# is where a sentence (or clause) ends, words themselves are not separated; a space before
# an abbreviation such as Thai "พ.ศ." (Buddhist era, always followed by a year) is not.
_SCRIPT_SPACE = regex.compile(r"(?<=[\p{Thai}\p{Lao}])\s+(?=[\p{Thai}\p{Lao}])(?![\p{Thai}\p{Lao}]{1,3}\.)")
# A period after these words (case-insensitive) is an abbreviation, not a sentence end.
_ABBREVIATIONS = frozenset(
    """
mr mrs ms dr prof st jr sr vs etc eg ie cf al fig no nos vol pp ca approx gen col lt sgt capt rev hon mt ft
inc ltd co corp dept univ est jan feb mar apr jun jul aug sep sept oct nov dec
""".split()
)
_PREV_WORD = regex.compile(r"(\w+)\W*$")


def _is_abbreviation(text: str, end: int) -> bool:
    """True if the period ending at ``text[end-1]`` closes an abbreviation or an initial."""
    head = text[:end].rstrip("\"'”’»›)]")
    if not head.endswith("."):
        return False
    match = _PREV_WORD.search(head[:-1][-20:])
    if match is None:
        return False
    word = match.group(1)
    # Single letters are initials ("J. Smith", "U.S. Army"), unless they are a digit.
    if len(word) == 1 and not word.isdigit():
        return True
    return word.lower().replace(".", "") in _ABBREVIATIONS


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Split ``text`` into sentences; return ``(start, end)`` character spans, whitespace trimmed.

    A sentence ends at '.', '!', '?', '؟', '۔' or '…' followed by whitespace and then a
    character that is not a lowercase letter (so "e.g. this" and "3.5" do not split),
    unless the period closes an abbreviation or an initial; or at CJK '。！？' and the
    Devanagari danda '।' / '॥' (and the Myanmar, Khmer, Ethiopic, Armenian full stops), with
    or without a following space; in Thai and Lao, which mark sentence ends with a space
    only, at a space between two letters of that script.
    """
    cuts: set[int] = set()
    for match in _SPACED_END.finditer(text):
        end = match.end()
        rest = text[end:].lstrip()
        if not rest:
            continue
        if rest[0].islower():
            continue
        if "." in match.group(0) and not regex.search(r"[!?؟۔…]", match.group(0)) and _is_abbreviation(text, end):
            continue
        cuts.add(end)
    for match in _UNSPACED_END.finditer(text):
        cuts.add(match.end())
    for match in _SCRIPT_SPACE.finditer(text):
        cuts.add(match.start())
    spans = []
    start = 0
    for cut in sorted(cuts) + [len(text)]:
        span = _trim(text, start, cut)
        if span is not None:
            spans.append(span)
        start = cut
    return spans


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if end > start else None


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` (see :func:`sentence_spans`)."""
    return [text[s:e] for s, e in sentence_spans(text)]


def window_spans(num_sentences: int, size: int, stride: int) -> list[tuple[int, int]]:
    """Sentence index ranges ``[i, j)`` of windows of ``size`` sentences every ``stride``.

    Windows stop once one reaches the last sentence, so every sentence is covered
    (given ``stride <= size``) and no window is a strict subset of the previous one.
    """
    if size < 1 or stride < 1:
        raise ValueError("window size and stride must be positive")
    if num_sentences <= 0:
        return []
    out = []
    start = 0
    while True:
        end = min(start + size, num_sentences)
        out.append((start, end))
        if end >= num_sentences:
            return out
        start += stride


def paragraph_to_passages(base: Passage, mode: str, size: int = 3, stride: int = 2) -> list[Passage]:
    """Cut one paragraph passage into the passages of the collection.

    ``mode='paragraph'`` returns ``base`` unchanged; ``'sentences'`` returns windows with ids
    ``<base id>/w<k>``, each an exact slice of the paragraph text, keeping lang, title, article
    and paragraph.
    """
    if mode == "paragraph":
        return [base]
    if mode != "sentences":
        raise ValueError(f"unknown passage mode {mode!r}")
    spans = sentence_spans(base.text)
    if not spans:
        return []
    out = []
    for k, (i, j) in enumerate(window_spans(len(spans), size, stride)):
        text = base.text[spans[i][0] : spans[j - 1][1]]
        out.append(
            Passage(
                id=f"{base.id}/w{k}",
                lang=base.lang,
                title=base.title,
                text=text,
                article=base.article,
                paragraph=base.paragraph,
            )
        )
    return out
