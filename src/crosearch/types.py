"""Records that cross component boundaries: passages, questions, search queries and hits.

Dataclasses (not pydantic models) because collections hold up to millions of
passages; validation of user files happens once, in :mod:`crosearch.data.formats`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class Passage:
    """One retrievable unit of the collection.

    ``paragraph`` is language-independent: the parallel copies of one XQuAD
    paragraph share it, so gold evidence can be matched in any language.
    """

    id: str
    lang: str
    title: str
    text: str
    article: str | None = None
    paragraph: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class QAExample:
    """One question in one language.

    ``group`` links the parallel versions of one question across languages.
    ``paragraph`` is the language-independent id of the gold paragraph (if known).
    ``exclude`` lists passage ids this question may not retrieve (the ``no-native``
    setting hides the question's own-language copy of its gold paragraph from it alone).
    ``answer_passages`` lists the passages of the question's language that contain a gold answer.
    ``native_available`` says whether this question may retrieve its gold paragraph in its own
    language (``False`` when the ``gap`` setting dropped it or ``no-native`` excludes it;
    ``None`` when unknown, e.g. for QA sets without a collection).
    """

    id: str
    lang: str
    question: str
    answers: list[str]
    group: str | None = None
    article: str | None = None
    paragraph: str | None = None
    exclude: list[str] = field(default_factory=list)
    answer_passages: list[str] = field(default_factory=list)
    native_available: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class SearchQuery:
    """A batched retrieval request for one query.

    ``lang`` is the language the query is written in; ``search_langs`` the
    collection languages to search (``None`` = every language of the index).
    ``exclude`` holds passage ids that must never be returned for this query.
    ``translations`` maps a collection language to the query's text in that language:
    that language's BM25 list is searched with it (languages without one, and the dense
    ranking, use ``text``), so BM25 can match passages the original words never would.
    """

    text: str
    lang: str | None = None
    search_langs: list[str] | None = None
    exclude: frozenset[str] = frozenset()
    translations: dict[str, str] | None = None

    def text_for(self, lang: str) -> str:
        """The text to match lexically against passages of ``lang``."""
        if self.translations and lang in self.translations:
            return self.translations[lang]
        return self.text


@dataclass(slots=True)
class Hit:
    """One retrieved passage with its score and the method that found it."""

    doc_id: str
    lang: str
    title: str
    text: str
    score: float
    method: str = "bm25"
    paragraph: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
