"""Answer metrics for multilingual QA: EM, F1, character 3-gram recall, answer language.

Normalisation follows the official SQuAD v1.1 and MLQA evaluation scripts so that
numbers are comparable with published ones: lowercase, drop punctuation (every
Unicode ``P*`` character plus the ASCII symbols of ``string.punctuation``, as MLQA
does), drop articles of the answer's language, collapse whitespace.  Deliberate
differences, all of which only make equal answers compare equal:

- NFKC first, so full-width digits/letters (``２０１４``) and ligatures match their
  plain forms, and Arabic tashkeel and tatweel are removed (golds rarely carry them).
- Tokens: whitespace words, except that characters of scripts written without
  spaces (Han, kana, Thai, Lao, Khmer, Myanmar) are one token each (a grapheme
  cluster, so Thai vowel and tone marks stay with their consonant).  The script of
  the text decides, not the language code, so any language works; for Chinese this
  is MLQA's "mixed segmentation".  Korean (spaced Hangul) is tokenised on whitespace,
  as in MKQA.
- Arabic: the article ``ال`` is removed only as a word prefix (MLQA's pattern removes
  it anywhere, splitting words such as ``مال``); French/Italian elided articles
  (``l'``, ``d'``, ``un'``) are separated before punctuation removal so they can be
  dropped; article sets for other languages follow MKQA.

Every metric takes the maximum over the gold answers and lies in 0..1.
"""

from __future__ import annotations

import functools
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import regex

from crosearch.config import MetricsConfig
from crosearch.crosslingual.languages import base_language
from crosearch.errors import CrosearchError
from crosearch.eval.langid import answer_language_match

__all__ = [
    "QAScores",
    "MetricSummary",
    "ScoreReport",
    "normalize_answer",
    "answer_tokens",
    "exact_match",
    "f1_score",
    "char3_recall",
    "answer_language_match",
    "score_prediction",
    "aggregate_scores",
]

# Unicode punctuation plus the ASCII symbols string.punctuation adds (MLQA's PUNCT set).
_PUNCT = regex.compile(r"[\p{P}$+<=>^`|~]+")
_ARABIC_MARKS = regex.compile(r"[\u0610-\u061A\u064B-\u065F\u0670\u06D6-\u06DC\u06DF-\u06E8\u06EA-\u06ED\u0640]")
# Scripts written without spaces between words: one token per character.
_UNSPACED = regex.compile(
    r"[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\u30FC"
    r"\p{Script=Thai}\p{Script=Lao}\p{Script=Khmer}\p{Script=Myanmar}]"
)
_GRAPHEME = regex.compile(r"\X")

_ARTICLES: dict[str, tuple[str, ...]] = {
    "en": ("a", "an", "the"),
    "es": ("un", "una", "unos", "unas", "el", "la", "los", "las"),
    "de": ("ein", "eine", "einen", "einem", "eines", "einer", "der", "die", "das", "den", "dem", "des"),
    "vi": ("của", "là", "cái", "chiếc", "những"),
    "fr": ("le", "la", "les", "l", "un", "une", "des", "du", "de", "d"),
    "it": (
        "il",
        "lo",
        "la",
        "l",
        "i",
        "gli",
        "le",
        "un",
        "uno",
        "una",
        "del",
        "dello",
        "della",
        "dei",
        "degli",
        "delle",
    ),
    "pt": ("o", "a", "os", "as", "um", "uma", "uns", "umas"),
    "ca": ("el", "la", "els", "les", "l", "un", "una", "uns", "unes"),
    "nl": ("de", "het", "een", "des", "der", "den"),
    "sv": ("en", "ett"),
    "da": ("en", "et"),
    "nb": ("en", "et", "ei"),
    "nn": ("ein", "eit", "ei"),
    "fi": ("se", "yks", "yksi"),
    "hu": ("a", "az", "egy"),
    "el": (
        "ο",
        "η",
        "το",
        "οι",
        "τα",
        "του",
        "της",
        "των",
        "τον",
        "την",
        "τους",
        "τις",
        "ένας",
        "μια",
        "μία",
        "ένα",
        "έναν",
    ),
}
_ARTICLE_RE = {lang: regex.compile(r"\b(?:" + "|".join(words) + r")\b") for lang, words in _ARTICLES.items()}
# Article + apostrophe fused to the next word ("l'homme"); split before punctuation goes.
_ELISION_RE = {lang: regex.compile(r"(?<!\w)(l|d|un)['’](?=\w)") for lang in ("fr", "it", "ca")}
# "ال" as a word prefix, keeping at least two letters of the word.
_ARABIC_ARTICLE = regex.compile(r"(?<!\w)ال(?=\w\w)")


def _clean(text: str, lang: str | None) -> str:
    """Normalised text with words separated by single spaces (unspaced scripts not yet split)."""
    code = base_language(lang)
    text = unicodedata.normalize("NFKC", text).lower()
    elision = _ELISION_RE.get(code or "")
    if elision is not None:
        text = elision.sub(r"\1 ", text)
    text = _PUNCT.sub("", text)
    text = _ARABIC_MARKS.sub("", text)
    if code == "ar":
        text = _ARABIC_ARTICLE.sub("", text)
    elif code in _ARTICLE_RE:
        text = _ARTICLE_RE[code].sub(" ", text)
    return " ".join(text.split())


def _segment(word: str) -> list[str]:
    if not _UNSPACED.search(word):
        return [word]
    tokens: list[str] = []
    run = ""
    for grapheme in _GRAPHEME.findall(word):
        if _UNSPACED.match(grapheme):
            if run:
                tokens.append(run)
                run = ""
            tokens.append(grapheme)
        else:
            run += grapheme
    if run:
        tokens.append(run)
    return tokens


@functools.lru_cache(maxsize=65536)
def _analyse(text: str, lang: str | None) -> tuple[str, tuple[str, ...]]:
    # Cached: a GRPO group scores many rollouts against the same golds, and
    # score_prediction needs both forms of every text.
    cleaned = _clean(text, lang)
    return cleaned, tuple(token for word in cleaned.split() for token in _segment(word))


def answer_tokens(text: str, lang: str | None = None) -> list[str]:
    """The tokens EM and F1 compare: normalised whitespace words, unspaced scripts split per character."""
    return list(_analyse(text, lang)[1])


def normalize_answer(text: str, lang: str | None = None) -> str:
    """Language-aware SQuAD/MLQA-style normalisation; tokens joined by single spaces.

    ``lang`` (ISO 639-1, region suffixes ignored) selects the articles to drop; an
    unknown or missing code still gets case, punctuation, whitespace and script-based
    segmentation.
    """
    return " ".join(_analyse(text, lang)[1])


def _check(prediction: object, golds: object) -> list[str]:
    if not isinstance(prediction, str):
        raise CrosearchError(f"prediction must be a string, got {type(prediction).__name__}")
    if isinstance(golds, str):
        return [golds]  # a lone gold string would otherwise be iterated character by character
    if not isinstance(golds, Iterable):
        raise CrosearchError(f"gold answers must be a list of strings, got {type(golds).__name__}")
    golds = list(golds)
    if not golds:
        raise CrosearchError("no gold answers given: every scored question needs at least one")
    for gold in golds:
        if not isinstance(gold, str):
            raise CrosearchError(f"gold answers must be strings, got {type(gold).__name__}: {gold!r}")
    return golds


def _f1_tokens(pred: Sequence[str], gold: Sequence[str]) -> float:
    # SQuAD v1.1 semantics: no common token (including two empty answers) scores 0.
    common = Counter(pred) & Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred)
    recall = same / len(gold)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, golds: Sequence[str] | str, lang: str | None = None) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer, else 0.0."""
    golds = _check(prediction, golds)
    pred = normalize_answer(prediction, lang)
    return float(any(pred == normalize_answer(gold, lang) for gold in golds))


def f1_score(prediction: str, golds: Sequence[str] | str, lang: str | None = None) -> float:
    """Token-overlap F1 between prediction and the best-matching gold answer."""
    golds = _check(prediction, golds)
    pred = _analyse(prediction, lang)[1]
    return max(_f1_tokens(pred, _analyse(gold, lang)[1]) for gold in golds)


def _char_ngrams(text: str, n: int = 3, *, short_unspaced: bool = False) -> list[str]:
    """Character n-grams within each word; words shorter than ``n`` count whole, as in BERGEN.

    ``short_unspaced`` adds the shorter substrings of words in unspaced scripts, so that
    a two-character Chinese gold word (北京) is found inside a longer run (北京大学)
    as it would be found among the words of a spaced language.
    """
    grams: list[str] = []
    for word in text.split():
        if len(word) < n:
            grams.append(word)
            continue
        grams.extend(word[i : i + n] for i in range(len(word) - n + 1))
        if short_unspaced and _UNSPACED.search(word):
            grams.extend(word[i : i + k] for k in range(1, n) for i in range(len(word) - k + 1))
    return grams


def char3_recall(prediction: str, golds: Sequence[str] | str, lang: str | None = None) -> float:
    """Share of the gold answer's character 3-grams found in the prediction (BERGEN's Recall_char3gram).

    Computed per word on normalised text (3-grams do not cross spaces; Han or Thai
    runs are one word), as a multiset overlap, max over golds.  A gold word shorter
    than three characters counts whole; in unspaced scripts it may also be found
    inside a longer run of the prediction.  Partial credit for
    inflected or transliterated names ("Pekin" vs "Peking") where F1 gives none.
    """
    golds = _check(prediction, golds)
    pred = Counter(_char_ngrams(_analyse(prediction, lang)[0], short_unspaced=True))
    best = 0.0
    for gold in golds:
        gold_grams = Counter(_char_ngrams(_analyse(gold, lang)[0]))
        total = sum(gold_grams.values())
        if total:
            best = max(best, sum((pred & gold_grams).values()) / total)
    return best


@dataclass(slots=True)
class QAScores:
    """Scores of one prediction, each in 0..1; ``lang_match`` is ``None`` when undecidable."""

    em: float
    f1: float
    char3: float
    lang_match: float | None

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


def score_prediction(
    prediction: str,
    golds: Sequence[str] | str,
    lang: str | None,
    *,
    config: MetricsConfig | None = None,
    language_match: bool = True,
) -> QAScores:
    """Every answer metric for one prediction against its gold answers in language ``lang``.

    ``language_match=False`` skips answer-language detection (``lang_match`` is then
    ``None``), e.g. in a reward function that does not use it.
    """
    golds = _check(prediction, golds)
    return QAScores(
        em=exact_match(prediction, golds, lang),
        f1=f1_score(prediction, golds, lang),
        char3=char3_recall(prediction, golds, lang),
        lang_match=answer_language_match(prediction, lang, config) if language_match else None,
    )


@dataclass(slots=True)
class MetricSummary:
    """Mean scores over a set of predictions; ``lang_match`` averages only the decidable ones."""

    n: int
    em: float
    f1: float
    char3: float
    lang_match: float | None
    lang_match_n: int

    def to_dict(self, scale: float = 1.0) -> dict[str, float | int | None]:
        """As a dict; ``scale=100`` gives percentages for reports."""
        out = asdict(self)
        for key in ("em", "f1", "char3", "lang_match"):
            if out[key] is not None:
                out[key] = out[key] * scale
        return out


@dataclass(slots=True)
class ScoreReport:
    """Per-language means, their unweighted mean over languages (``macro``) and the pooled mean (``micro``)."""

    per_language: dict[str, MetricSummary] = field(default_factory=dict)
    macro: MetricSummary | None = None
    micro: MetricSummary | None = None

    def to_dict(self, scale: float = 1.0) -> dict[str, object]:
        return {
            "per_language": {lang: s.to_dict(scale) for lang, s in self.per_language.items()},
            "macro": self.macro.to_dict(scale) if self.macro else None,
            "micro": self.micro.to_dict(scale) if self.micro else None,
        }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _summarise(scores: list[QAScores]) -> MetricSummary:
    matches = [s.lang_match for s in scores if s.lang_match is not None]
    return MetricSummary(
        n=len(scores),
        em=_mean([s.em for s in scores]),
        f1=_mean([s.f1 for s in scores]),
        char3=_mean([s.char3 for s in scores]),
        lang_match=_mean(matches) if matches else None,
        lang_match_n=len(matches),
    )


def aggregate_scores(items: Iterable[tuple[str, QAScores]]) -> ScoreReport:
    """Average ``(lang, scores)`` pairs per language, then macro (mean of languages) and micro (pooled).

    The macro average is the headline number: each language weighs the same however
    many questions it has.  ``lang_match`` of the macro is the mean over languages
    where it was decidable at least once.
    """
    by_lang: dict[str, list[QAScores]] = {}
    for lang, scores in items:
        by_lang.setdefault(lang, []).append(scores)
    if not by_lang:
        return ScoreReport()
    per_language = {lang: _summarise(by_lang[lang]) for lang in sorted(by_lang)}
    summaries = list(per_language.values())
    matches = [s.lang_match for s in summaries if s.lang_match is not None]
    macro = MetricSummary(
        n=sum(s.n for s in summaries),
        em=_mean([s.em for s in summaries]),
        f1=_mean([s.f1 for s in summaries]),
        char3=_mean([s.char3 for s in summaries]),
        lang_match=_mean(matches) if matches else None,
        lang_match_n=sum(s.lang_match_n for s in summaries),
    )
    micro = _summarise([s for lang in per_language for s in by_lang[lang]])
    return ScoreReport(per_language=per_language, macro=macro, micro=micro)
