"""The shapes of the records crosearch reads, as strict pydantic models, and their validation.

Strict: no coercion, so a number where a string belongs is an error rather than a silent
``str()``. Unknown keys are ignored, since real files carry more than crosearch reads.
:func:`validate_record` turns pydantic's ValidationError into a
:class:`~crosearch.errors.DataFormatError` that names the file, the line (JSONL) or
record path (JSON, e.g. ``data[3].paragraphs[2].qas[5]``) and the field, read from the
error's ``loc``. The loaders in :mod:`crosearch.data.formats` turn records into
:class:`~crosearch.types.Passage` and :class:`~crosearch.types.QAExample`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, PlainValidator, ValidationError
from pydantic_core import PydanticCustomError

from crosearch.errors import DataFormatError


def _to_id(value: Any) -> str:
    # bool is an int subclass; an id of `true` is a bug in the file, not a number.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PydanticCustomError(
            "id_type", "expected a string or an integer, got {got}", {"got": type(value).__name__}
        )
    return str(value)


# Ids may be numbers in the wild (SQuAD-like dumps, MKQA's example_id); they are kept as text.
RecordId = Annotated[str, PlainValidator(_to_id)]


class _Record(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class SquadAnswerRecord(_Record):
    text: str
    answer_start: int | None = None  # character offset of ``text`` in the context (checked, see load_squad)


class SquadQARecord(_Record):
    id: RecordId
    question: str
    answers: list[SquadAnswerRecord]


class SquadParagraphRecord(_Record):
    context: str
    qas: list[SquadQARecord]


class SquadArticleRecord(_Record):
    title: str | None = None
    paragraphs: list[SquadParagraphRecord]


class SquadRecord(_Record):
    """A whole SQuAD v1.1 file: ``{"data": [article, ...]}``."""

    data: list[SquadArticleRecord]


class MkqaAnswerRecord(_Record):
    text: str | None = None  # null for MKQA's unanswerable and long-answer types
    aliases: list[str] | None = None


class MkqaRecord(_Record):
    example_id: RecordId
    queries: dict[str, str]
    answers: dict[str, list[MkqaAnswerRecord]]


class XorTydiRecord(_Record):
    id: RecordId
    lang: str
    question: str
    answers: list[str]


class CorpusRecord(_Record):
    """One line of a crosearch corpus JSONL (see :class:`~crosearch.types.Passage`)."""

    id: str
    lang: str
    title: str | None = None
    text: str
    article: str | None = None
    paragraph: str | None = None


class QARecord(_Record):
    """One line of a crosearch QA JSONL (see :class:`~crosearch.types.QAExample`)."""

    id: str
    lang: str
    question: str
    answers: list[str]
    group: str | None = None
    article: str | None = None
    paragraph: str | None = None
    exclude: list[str] | None = None
    answer_passages: list[str] | None = None
    native_available: bool | None = None


_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}
# Levels of a JSON file that are records (each named in errors as e.g. ``data[3].paragraphs[2]``).
SQUAD_LEVELS = frozenset({"data", "paragraphs", "qas"})

R = TypeVar("R", bound=BaseModel)


def _loc_text(loc: Sequence[int | str]) -> str:
    """``("answers", "en", 0, "aliases")`` -> ``answers.en[0].aliases``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _split_loc(loc: Sequence[int | str], levels: frozenset[str]) -> tuple[str | None, str | None]:
    """``(record path, field)`` of an error location: leading ``level[i]`` pairs make the record."""
    i = 0
    while i + 1 < len(loc) and loc[i] in levels and isinstance(loc[i + 1], int):
        i += 2
    return _loc_text(loc[:i]) or None, _loc_text(loc[i:]) or None


def validate_record(
    model: type[R], obj: Any, path: str | Path, *, line: int | None = None, levels: frozenset[str] = frozenset()
) -> R:
    """``model`` validated from ``obj``; the first problem raised as a DataFormatError naming where it is.

    ``levels`` are the keys whose list items count as records (``SQUAD_LEVELS``): the
    location's leading ``key[i]`` pairs become the record path, the rest the field.
    """
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = err["loc"]
        record, field_name = _split_loc(loc, levels)
        value = err.get("input")
        if err["type"] == "missing" or (value is None and loc and isinstance(loc[-1], str)):
            message = "missing required field"
        elif err["type"] in _EXPECTED:
            message = f"expected {_EXPECTED[err['type']]}, got {type(value).__name__}"
        else:
            message = err["msg"]
        raise DataFormatError(path, message, line=line, record=record, field=field_name) from None
