"""Is an answer written in the question's language?  (answer-language consistency)

Multilingual RAG models often answer in the language of the evidence instead of the
question's (BERGEN calls this a main failure mode), so evaluation reports how often
the answer is in the expected language.

The decision uses the writing system first and ``lingua`` second:

1. No letters at all (empty, numbers, punctuation): undecidable -> ``None``.
2. The answer's dominant script is not one the language is written in -> 0.0
   (a Latin-script answer to a Chinese question).
3. Only one lingua language uses that script (Thai, Greek, Hangul, ...; Han for
   zh/ja, kana for ja alone) -> 1.0 without asking lingua.
4. Shared scripts (Latin, Cyrillic, Arabic, Devanagari): lingua's confidence values.
   The language matches when its confidence is at least ``lang_ratio`` of the top
   one.  Short answers (fewer than ``lang_min_words`` words) are mostly names and
   numbers that read the same in many languages, and lingua's confidences on them
   are spread thin: a script match suffices unless lingua is sure (top confidence
   ``>= lang_sure``) of another language.

``detect_language`` names the language of a question that comes without one
(``crosearch ask``), with the same lingua languages.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import regex

from crosearch.config import MetricsConfig

# Codes are mapped to lingua languages in one place, below this layer; re-exported here for callers of langid.
from crosearch.crosslingual.languages import lingua_language

if TYPE_CHECKING:  # lingua is imported lazily: building a detector is the costly part
    from lingua import LanguageDetector

# Scripts by the lingua languages that use them; every language not listed here
# writes in Latin script.  Serbian is listed under both Cyrillic and Latin.
_NON_LATIN: dict[str, tuple[str, ...]] = {
    "ar": ("Arabic",),
    "fa": ("Arabic",),
    "ur": ("Arabic",),
    "be": ("Cyrillic",),
    "bg": ("Cyrillic",),
    "kk": ("Cyrillic",),
    "mk": ("Cyrillic",),
    "mn": ("Cyrillic",),
    "ru": ("Cyrillic",),
    "uk": ("Cyrillic",),
    "sr": ("Cyrillic", "Latin"),
    "hi": ("Devanagari",),
    "mr": ("Devanagari",),
    "bn": ("Bengali",),
    "gu": ("Gujarati",),
    "pa": ("Gurmukhi",),
    "ta": ("Tamil",),
    "te": ("Telugu",),
    "el": ("Greek",),
    "he": ("Hebrew",),
    "hy": ("Armenian",),
    "ka": ("Georgian",),
    "th": ("Thai",),
    "ko": ("Hangul",),
    "zh": ("Han",),
    "ja": ("Han", "Kana"),
}

# Scripts told apart when counting letters; kana (Hiragana + Katakana) counts as one.
_SCRIPTS = (
    "Latin",
    "Cyrillic",
    "Arabic",
    "Devanagari",
    "Han",
    "Hangul",
    "Greek",
    "Hebrew",
    "Thai",
    "Bengali",
    "Gujarati",
    "Gurmukhi",
    "Tamil",
    "Telugu",
    "Armenian",
    "Georgian",
    "Kannada",
    "Malayalam",
    "Sinhala",
    "Lao",
    "Khmer",
    "Myanmar",
    "Ethiopic",
    "Tibetan",
)
_SCRIPT_RE = {name: regex.compile(rf"\p{{Script={name}}}") for name in _SCRIPTS}
_SCRIPT_RE["Kana"] = regex.compile(r"[\p{Script=Hiragana}\p{Script=Katakana}]")
_LETTER = regex.compile(r"[\p{L}\p{M}]")
_WORD = regex.compile(r"\p{L}[\p{L}\p{M}]*")
# Ideographs and kana carry a word's worth of meaning in one or two characters: weight
# them up so that "iPhone 手机" is not decided by the longer Latin run.
_WEIGHT = {"Han": 3, "Kana": 3, "Hangul": 2}
# Only the beginning decides: answers are short and this keeps the cost bounded.
_MAX_CHARS = 2000


def script_counts(text: str) -> Counter[str]:
    """Weighted letter counts per script (letters of other scripts are ignored)."""
    counts: Counter[str] = Counter()
    for ch in _LETTER.findall(text[:_MAX_CHARS]):
        for name, pattern in _SCRIPT_RE.items():
            if pattern.match(ch):
                counts[name] += _WEIGHT.get(name, 1)
                break
    return counts


def dominant_script(text: str) -> str | None:
    """The script most of the text's letters are written in (``None`` when it has no letters)."""
    counts = script_counts(text)
    return counts.most_common(1)[0][0] if counts else None


def language_scripts(lang: str) -> tuple[str, ...]:
    """Scripts a language (ISO 639-1 code) is written in; Latin for anything not listed."""
    return _NON_LATIN.get(lang, ("Latin",))


@functools.cache
def _script_languages() -> dict[str, frozenset[str]]:
    """Script -> the lingua languages written in it."""
    table: dict[str, set[str]] = {}
    for code in _lingua_codes():
        for script in language_scripts(code):
            table.setdefault(script, set()).add(code)
    return {script: frozenset(codes) for script, codes in table.items()}


@functools.cache
def _lingua_codes() -> frozenset[str]:
    from lingua import Language

    return frozenset(language.iso_code_639_1.name.lower() for language in Language.all())


@functools.cache
def get_detector(accuracy: str = "high") -> LanguageDetector:
    """The process-wide lingua detector (built once per accuracy mode; models load lazily per script)."""
    from lingua import LanguageDetectorBuilder

    builder = LanguageDetectorBuilder.from_all_languages()
    if accuracy == "low":
        builder = builder.with_low_accuracy_mode()
    return builder.build()


def detect_language(text: str, candidates: Sequence[str] = ()) -> str | None:
    """ISO 639-1 code of ``text``, chosen among ``candidates`` (the collection's languages) when given.

    Restricting lingua to the candidates keeps it small and fast, and a question
    can only be answered from languages the collection holds anyway. ``None``
    when lingua cannot tell.
    """
    known = {code: language for code in candidates if (language := lingua_language(code)) is not None}
    if len(known) == 1:
        return next(iter(known))
    if len(known) > 1:
        from lingua import LanguageDetectorBuilder

        detector = LanguageDetectorBuilder.from_languages(*known.values()).build()
    else:
        detector = get_detector()
    found = detector.detect_language_of(text)
    return None if found is None else found.iso_code_639_1.name.lower()


def answer_language_match(prediction: str, lang: str | None, config: MetricsConfig | None = None) -> float | None:
    """1.0 if ``prediction`` is in language ``lang``, 0.0 if not, ``None`` if that cannot be decided.

    ``None`` means: ``lang`` is unknown to lingua, or the prediction has no letters
    (empty, numbers only).  See the module docstring for the decision rules.
    """
    config = config or MetricsConfig()
    language = lingua_language(lang)
    if language is None:
        return None
    code = language.iso_code_639_1.name.lower()
    counts = script_counts(prediction)
    if not counts:
        return None
    script = counts.most_common(1)[0][0]
    if script not in language_scripts(code):
        return 0.0
    candidates = _script_languages().get(script, frozenset())
    if counts.get("Kana"):
        candidates = frozenset({"ja"})  # kana anywhere means Japanese, even in a mostly-kanji answer
    if code not in candidates:
        return 0.0
    # Kanji-only answers are normal in Japanese, so Han text matches both zh and ja
    # (lingua would call every such answer Chinese).
    if script in ("Han", "Kana") or len(candidates) == 1:
        return 1.0
    return _decide_with_lingua(prediction[:_MAX_CHARS], language, config)


def _decide_with_lingua(text: str, language: Any, config: MetricsConfig) -> float:
    values = get_detector(config.lang_detector).compute_language_confidence_values(text)
    if not values:
        return 1.0  # lingua has no opinion; the script already matched
    top = values[0].value
    own = next((v.value for v in values if v.language == language), 0.0)
    if own >= config.lang_ratio * top:
        return 1.0
    short = len(_WORD.findall(text)) < config.lang_min_words
    if short and top < config.lang_sure:
        return 1.0
    return 0.0
