"""Language-aware text analyzers for BM25: text -> list of index terms.

One analyzer per collection language. The pipeline is the same everywhere:

1. NFKC-normalise and case-fold (full-width forms, ligatures, Turkish/Greek case).
2. Split into runs with the ``regex`` module (Python's ``re`` does not count
   Devanagari vowel signs as ``\\w``, which cuts Hindi words apart).
3. Runs of scripts written without spaces are segmented by script, whatever the
   language code says: Han runs become unigrams + bigrams (or jieba words, as an
   option), Thai/Lao/Khmer/Myanmar/Japanese kana runs become character bigrams.
4. Other runs are words: stopwords (per language) are dropped and a Snowball
   stemmer (PyStemmer) is applied where Snowball has one for the language.

Unknown language codes get the generic path (steps 1-3, no stopwords or
stemming), so any language in the collection can be indexed; it never raises.

Bump :data:`ANALYZER_VERSION` whenever the output of any analyzer changes: the
index manifest records it, and an index built with another version is rebuilt.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import regex

ANALYZER_VERSION = "1"

ZhSegmenter = Literal["bigrams", "jieba"]

# ISO 639-1 code -> Snowball algorithm name (only those PyStemmer ships).
SNOWBALL: dict[str, str] = {
    "ar": "arabic",
    "hy": "armenian",
    "eu": "basque",
    "ca": "catalan",
    "cs": "czech",
    "da": "danish",
    "nl": "dutch",
    "en": "english",
    "eo": "esperanto",
    "et": "estonian",
    "fi": "finnish",
    "fr": "french",
    "de": "german",
    "el": "greek",
    "hi": "hindi",
    "hu": "hungarian",
    "id": "indonesian",
    "ga": "irish",
    "it": "italian",
    "lt": "lithuanian",
    "ne": "nepali",
    "no": "norwegian",
    "nb": "norwegian",
    "nn": "norwegian",
    "fa": "persian",
    "pl": "polish",
    "pt": "portuguese",
    "ro": "romanian",
    "ru": "russian",
    "sr": "serbian",
    "st": "sesotho",
    "es": "spanish",
    "sv": "swedish",
    "ta": "tamil",
    "tr": "turkish",
    "yi": "yiddish",
}

# Small built-in lists for shipped languages that bm25s has no list for. Kept
# short on purpose: only function words frequent enough to hurt ranking.
_EXTRA_STOPWORDS: dict[str, tuple[str, ...]] = {
    "ar": (
        "في",
        "من",
        "على",
        "إلى",
        "الى",
        "عن",
        "أن",
        "ان",
        "إن",
        "و",
        "أو",
        "او",
        "ما",
        "ماذا",
        "هو",
        "هي",
        "هذا",
        "هذه",
        "ذلك",
        "التي",
        "الذي",
        "الذين",
        "كان",
        "كانت",
        "مع",
        "لم",
        "لا",
        "قد",
        "كل",
        "بين",
        "حتى",
        "عند",
        "ثم",
        "أي",
        "كم",
        "متى",
        "أين",
        "كيف",
        "لماذا",
        "هل",
    ),
    "hi": (
        "का",
        "के",
        "की",
        "है",
        "हैं",
        "था",
        "थे",
        "थी",
        "में",
        "से",
        "को",
        "और",
        "या",
        "पर",
        "भी",
        "ने",
        "यह",
        "वह",
        "ये",
        "वे",
        "एक",
        "हो",
        "होता",
        "होती",
        "तो",
        "कि",
        "जो",
        "इस",
        "उस",
        "किस",
        "क्या",
        "कौन",
        "कब",
        "कहाँ",
        "कैसे",
        "कितने",
        "कितना",
        "लिए",
        "द्वारा",
    ),
    "vi": (
        "của",
        "và",
        "là",
        "các",
        "có",
        "được",
        "trong",
        "cho",
        "với",
        "những",
        "một",
        "này",
        "đã",
        "không",
        "để",
        "khi",
        "từ",
        "người",
        "như",
        "cũng",
        "thì",
        "đó",
        "nào",
        "gì",
    ),
}

_BM25S_STOPWORDS: dict[str, str] = {
    "en": "STOPWORDS_EN",
    "de": "STOPWORDS_GERMAN",
    "nl": "STOPWORDS_DUTCH",
    "fr": "STOPWORDS_FRENCH",
    "es": "STOPWORDS_SPANISH",
    "pt": "STOPWORDS_PORTUGUESE",
    "it": "STOPWORDS_ITALIAN",
    "ru": "STOPWORDS_RUSSIAN",
    "sv": "STOPWORDS_SWEDISH",
    "no": "STOPWORDS_NORWEGIAN",
    "nb": "STOPWORDS_NORWEGIAN",
    "tr": "STOPWORDS_TURKISH",
    "da": "STOPWORDS_DANISH",
}

# Scripts segmented by characters rather than by spaces. Han is handled on its
# own (unigrams carry meaning in Chinese); the others only as bigrams.
_NO_SPACE = r"\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}\p{Hiragana}\p{Katakana}\u30fc"
_TOKEN_RE = regex.compile(rf"(?P<han>\p{{Han}}+)|(?P<nospace>[{_NO_SPACE}]+)|(?P<word>[^\W\p{{Han}}{_NO_SPACE}]+)")


@functools.cache
def stopwords_for(lang: str) -> frozenset[str]:
    """The stopword set for ``lang`` (empty for languages without a list)."""
    words: set[str] = set(_EXTRA_STOPWORDS.get(lang, ()))
    name = _BM25S_STOPWORDS.get(lang)
    if name is not None:
        from bm25s import stopwords as bm25s_stopwords

        words.update(getattr(bm25s_stopwords, name))
    return frozenset(unicodedata.normalize("NFKC", w).casefold() for w in words)


_GRAPHEME_RE = regex.compile(r"\X")


def _char_bigrams(run: str) -> list[str]:
    # Bigrams of grapheme clusters, not code points: a Thai tone mark or a
    # Myanmar vowel sign stays with its consonant instead of forming a term.
    chars = _GRAPHEME_RE.findall(run)
    if len(chars) == 1:
        return chars
    return [chars[i] + chars[i + 1] for i in range(len(chars) - 1)]


def _han_unigrams_bigrams(run: str) -> list[str]:
    if len(run) == 1:
        return [run]
    return list(run) + [run[i : i + 2] for i in range(len(run) - 1)]


@functools.lru_cache(maxsize=1)
def _jieba() -> Callable[[str], list[str]]:
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return lambda run: [w for w in jieba.cut_for_search(run) if w.strip()]


@dataclass(frozen=True)
class AnalyzerSpec:
    """What an analyzer does for one language, recorded in the index manifest."""

    lang: str
    stemmer: str | None
    stopwords: int
    zh_segmenter: ZhSegmenter

    @property
    def name(self) -> str:
        stem = self.stemmer or "none"
        return f"{self.lang}:stem={stem}:stop={self.stopwords}:han={self.zh_segmenter}:v{ANALYZER_VERSION}"


class Analyzer:
    """Turns text of one collection language into index terms."""

    def __init__(self, lang: str | None, zh_segmenter: ZhSegmenter = "bigrams") -> None:
        code = (lang or "").strip().lower().replace("_", "-").split("-")[0]
        self.lang = code or "und"
        self._stopwords = stopwords_for(self.lang)
        algo = SNOWBALL.get(self.lang)
        self._stemmer = None
        if algo is not None:
            import Stemmer

            self._stemmer = Stemmer.Stemmer(algo)
        self._han = _jieba() if zh_segmenter == "jieba" else _han_unigrams_bigrams
        self.spec = AnalyzerSpec(self.lang, algo, len(self._stopwords), zh_segmenter)

    def __call__(self, text: str) -> list[str]:
        """Index terms of ``text`` in order (duplicates kept: BM25 counts them)."""
        if not text:
            return []
        text = unicodedata.normalize("NFKC", text).casefold()
        terms: list[str] = []
        words: list[str] = []
        stop = self._stopwords
        for match in _TOKEN_RE.finditer(text):
            kind = match.lastgroup
            run = match.group()
            if kind == "word":
                if run not in stop:
                    words.append(run)
                continue
            # Flush words first so the term order follows the text.
            if words:
                terms.extend(self._stem(words))
                words = []
            terms.extend(self._han(run) if kind == "han" else _char_bigrams(run))
        if words:
            terms.extend(self._stem(words))
        return terms

    def _stem(self, words: list[str]) -> list[str]:
        if self._stemmer is None:
            return words
        return self._stemmer.stemWords(words)

    def many(self, texts: list[str]) -> list[list[str]]:
        """Analyze a batch of texts."""
        return [self(t) for t in texts]


@functools.lru_cache(maxsize=256)
def get_analyzer(lang: str | None, zh_segmenter: ZhSegmenter = "bigrams") -> Analyzer:
    """The (cached) analyzer for a language code; unknown codes get the generic Unicode path."""
    if zh_segmenter not in ("bigrams", "jieba"):
        from crosearch.errors import ConfigError

        raise ConfigError(f"unknown Chinese segmenter '{zh_segmenter}' (choose 'bigrams' or 'jieba')")
    return Analyzer(lang, zh_segmenter)
