"""Loaders and writers for the QA and corpus formats crosearch reads.

Every loader validates each record against its model in :mod:`crosearch.data.records`
and raises :class:`~crosearch.errors.DataFormatError` naming the file, the line (JSONL)
or record path (JSON, e.g.
``data[3].paragraphs[2].qas[5]``) and the field, so a broken file is fixed in
one look instead of being debugged from a ``KeyError`` deep in training.

Formats:

- SQuAD v1.1 JSON (SQuAD, XQuAD, MLQA, any language; ``.gz`` ok): :func:`load_squad`;
- MKQA JSONL (``example_id``, ``query``, ``queries``, ``answers``): :func:`load_mkqa`;
- XOR-TyDi QA JSONL (``id``, ``question``, ``answers``, ``lang``): :func:`load_xor_tydi`;
- crosearch corpus / QA JSONL: :func:`read_corpus`, :func:`read_qa`, :func:`write_corpus`, :func:`write_qa`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import regex

from crosearch.data.records import (
    SQUAD_LEVELS,
    CorpusRecord,
    MkqaRecord,
    QARecord,
    SquadAnswerRecord,
    SquadRecord,
    XorTydiRecord,
    validate_record,
)
from crosearch.errors import DataFormatError
from crosearch.io import read_json, read_jsonl, write_jsonl
from crosearch.names import check_lang
from crosearch.types import Passage, QAExample

log = logging.getLogger(__name__)

# <name>.<lang>.json[.gz]: "xquad.de.json.gz", "mydata.zh_cn.json". The language is a
# 2-3 letter code with an optional region/script suffix (zh_cn, pt-BR, sr-Latn).
_PARALLEL_NAME = regex.compile(r"^(?P<name>.+)\.(?P<lang>[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,4})?)\.json(?:\.gz)?$")
# MLQA: "dev-context-de-question-en.json": contexts in one language, questions in another.
_MLQA_NAME = regex.compile(
    r"^(?P<name>.*?)-?context-(?P<context>[A-Za-z]{2,3})-question-(?P<question>[A-Za-z]{2,3})\.json(?:\.gz)?$"
)
# Byte-order marks and directional marks that some translated files carry at the edges of
# a context; they are invisible, break exact-match answer lookups and tokenisers alike.
_EDGE_JUNK = "\ufeff\u200e\u200f\u202a\u202b\u202c\u200b \t\r\n"


def clean_text(text: str) -> str:
    """Strip whitespace and invisible marks (BOM, LRM/RLM) at the edges of a text."""
    return text.replace("\ufeff", "").strip(_EDGE_JUNK)


def xquad_dir() -> Path:
    """The directory of the vendored XQuAD files (``xquad.<lang>.json.gz``)."""
    return Path(str(resources.files("crosearch") / "resources" / "xquad"))


def parse_parallel_name(filename: str) -> tuple[str, str] | None:
    """``(name, lang)`` of a ``<name>.<lang>.json[.gz]`` file name, or None if it does not match."""
    match = _PARALLEL_NAME.match(filename)
    if match is None:
        return None
    return match["name"], match["lang"].lower().replace("-", "_")


def lang_from_filename(path: str | Path) -> tuple[str, str, str]:
    """Return ``(name, question_lang, context_lang)`` read from a file name.

    ``xquad.de.json.gz`` gives ``("xquad", "de", "de")``;
    ``dev-context-de-question-en.json`` (MLQA) gives ``("dev", "en", "de")``.
    """
    base = Path(path).name
    match = _MLQA_NAME.match(base)
    if match:
        name = match["name"] or "mlqa"
        return name, match["question"].lower(), match["context"].lower()
    match = _PARALLEL_NAME.match(base)
    if match:
        lang = match["lang"].lower().replace("-", "_")
        return match["name"], lang, lang
    raise DataFormatError(
        path,
        "cannot infer the language from the file name; name it <name>.<lang>.json[.gz] "
        "(or *context-<lang>-question-<lang>.json for MLQA), or pass the language explicitly",
    )


# --------------------------------------------------------------------------- helpers


def dedup(items: Iterable[str]) -> list[str]:
    """Drop empty strings and repeats, keeping the first occurrence's order."""
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        item = item.strip()
        if item and item not in seen:
            seen.add(item)
            out.append(item)
    return out


def _check_unique(path: Path, seen: dict[str, int], value: str, line: int, field: str, *, what: str = "id") -> None:
    """Record ``value`` as seen on ``line``; a repeat is an error naming both lines."""
    if value in seen:
        raise DataFormatError(path, f"duplicate {what} {value!r} (first on line {seen[value]})", line=line, field=field)
    seen[value] = line


def _nonblank(path: Path, text: str, line: int, field: str, what: str, record: str | None = None) -> str:
    """``text`` stripped; an error naming the field if nothing is left."""
    stripped = text.strip()
    if not stripped:
        raise DataFormatError(path, f"empty {what}", line=line, record=record, field=field)
    return stripped


# --------------------------------------------------------------------------- SQuAD family


@dataclass(slots=True)
class SquadQuestion:
    id: str
    question: str
    answers: list[str]


@dataclass(slots=True)
class SquadParagraph:
    context: str
    questions: list[SquadQuestion]


@dataclass(slots=True)
class SquadArticle:
    title: str
    paragraphs: list[SquadParagraph]


@dataclass(slots=True)
class SquadFile:
    """One SQuAD-format file: its articles, the language of its questions and of its contexts."""

    path: str
    name: str
    lang: str
    context_lang: str
    articles: list[SquadArticle] = field(default_factory=list)

    @property
    def num_paragraphs(self) -> int:
        return sum(len(a.paragraphs) for a in self.articles)

    @property
    def num_questions(self) -> int:
        return sum(len(p.questions) for a in self.articles for p in a.paragraphs)


def load_squad(path: str | Path, lang: str | None = None, *, name: str | None = None) -> SquadFile:
    """Load a SQuAD v1.1-format JSON file (XQuAD, MLQA, SQuAD; ``.gz`` ok).

    ``lang`` defaults to the language in the file name (``<name>.<lang>.json[.gz]`` or MLQA's
    ``*context-<c>-question-<q>.json``, where the question language ``q`` is ``lang``).
    Questions without any answer text (SQuAD 2.0 unanswerables) keep an empty answer list.
    """
    path = Path(path)
    inferred_name, question_lang, context_lang = (None, None, None)
    if lang is None or name is None:
        try:
            inferred_name, question_lang, context_lang = lang_from_filename(path)
        except DataFormatError:
            if lang is None:
                raise
    lang = (lang or question_lang or "").lower()
    result = SquadFile(
        path=str(path),
        name=name or inferred_name or path.name.split(".")[0],
        lang=lang,
        context_lang=(context_lang if question_lang == lang else None) or lang,
    )
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise DataFormatError(path, f"expected a JSON object with a 'data' list, got {type(raw).__name__}")
    squad = validate_record(SquadRecord, raw, path, levels=SQUAD_LEVELS)
    if not squad.data:
        raise DataFormatError(path, "the file holds no articles (an empty 'data' list)", field="data")
    seen: dict[str, str] = {}
    repaired: list[str] = []
    for ai, art in enumerate(squad.data):
        article = SquadArticle(title=clean_text(art.title or "").replace("_", " "), paragraphs=[])
        for pi, par in enumerate(art.paragraphs):
            where = f"data[{ai}].paragraphs[{pi}]"
            context = clean_text(par.context)
            if not context:
                raise DataFormatError(path, "empty context", record=where, field="context")
            questions = []
            for qi, qa in enumerate(par.qas):
                record = f"{where}.qas[{qi}]"
                if qa.id in seen:
                    raise DataFormatError(
                        path, f"duplicate question id {qa.id!r} (first at {seen[qa.id]})", record=record, field="id"
                    )
                seen[qa.id] = record
                question = clean_text(qa.question)
                if not question:
                    raise DataFormatError(path, "empty question", record=record, field="question")
                for k, answer in enumerate(qa.answers):
                    if _answer_offset_wrong(path, par.context, answer, record, k):
                        repaired.append(f"{record}.answers[{k}]")
                questions.append(
                    SquadQuestion(id=qa.id, question=question, answers=dedup(clean_text(a.text) for a in qa.answers))
                )
            article.paragraphs.append(SquadParagraph(context=context, questions=questions))
        result.articles.append(article)
    if repaired:
        log.warning(
            "%s: %d answer(s) whose answer_start does not point at their text, which occurs elsewhere in the "
            "context; the offset is ignored (crosearch matches answers by text). First: %s",
            path,
            len(repaired),
            ", ".join(repaired[:3]),
        )
    return result


def _answer_offset_wrong(path: Path, context: str, answer: SquadAnswerRecord, record: str, k: int) -> bool:
    """Whether ``answer_start`` misses a text found elsewhere in ``context`` (repairable); raise if not repairable.

    An offset outside the context, or an answer whose text is nowhere in the context, is an
    error: the record is not what it claims. A text at another offset is a common slip of
    hand-made or translated files; the answer stays valid since only its text is used.
    """
    start = answer.answer_start
    if start is None or context[start : start + len(answer.text)] == answer.text:
        return False
    if start < 0 or start >= len(context):
        message = f"answer_start {start} is outside the context ({len(context)} characters)"
        raise DataFormatError(path, message, record=record, field=f"answers[{k}].answer_start")
    if answer.text not in context:
        message = f"answer text {answer.text!r} does not occur in the context (answer_start {start})"
        raise DataFormatError(path, message, record=record, field=f"answers[{k}].text")
    return True


def squad_ids(num_articles: int, max_paragraphs: int) -> tuple[int, int]:
    """Zero-padding widths for article and paragraph indices (at least 2 digits)."""
    return max(2, len(str(max(num_articles - 1, 0)))), max(2, len(str(max(max_paragraphs - 1, 0))))


def article_id(name: str, index: int, width: int = 2) -> str:
    """Language-independent article id, e.g. ``xquad-a07``."""
    return f"{name}-a{index:0{width}d}"


def paragraph_id(name: str, article_index: int, paragraph_index: int, widths: tuple[int, int] = (2, 2)) -> str:
    """Language-independent paragraph id, e.g. ``xquad-a07-p03``: the same in every parallel file."""
    return f"{article_id(name, article_index, widths[0])}-p{paragraph_index:0{widths[1]}d}"


def _squad_widths(squad: SquadFile) -> tuple[int, int]:
    return squad_ids(len(squad.articles), max((len(a.paragraphs) for a in squad.articles), default=1))


def squad_passages(squad: SquadFile) -> list[Passage]:
    """One passage per paragraph, id ``<lang>/<paragraph id>``."""
    widths = _squad_widths(squad)
    out = []
    for ai, art in enumerate(squad.articles):
        for pi, par in enumerate(art.paragraphs):
            pid = paragraph_id(squad.name, ai, pi, widths)
            out.append(
                Passage(
                    id=f"{squad.context_lang}/{pid}",
                    lang=squad.context_lang,
                    title=art.title,
                    text=par.context,
                    article=article_id(squad.name, ai, widths[0]),
                    paragraph=pid,
                )
            )
    return out


def squad_examples(squad: SquadFile, *, keep_unanswerable: bool = False) -> list[QAExample]:
    """One QAExample per question: id ``<qid>/<lang>``, group = qid, with paragraph and article ids."""
    widths = _squad_widths(squad)
    out = []
    for ai, art in enumerate(squad.articles):
        for pi, par in enumerate(art.paragraphs):
            for q in par.questions:
                if not q.answers and not keep_unanswerable:
                    continue
                out.append(
                    QAExample(
                        id=f"{q.id}/{squad.lang}",
                        lang=squad.lang,
                        question=q.question,
                        answers=list(q.answers),
                        group=q.id,
                        article=article_id(squad.name, ai, widths[0]),
                        paragraph=paragraph_id(squad.name, ai, pi, widths),
                    )
                )
    return out


# --------------------------------------------------------------------------- MKQA, XOR-TyDi


def load_mkqa(
    path: str | Path, languages: Iterable[str] | None = None, *, keep_unanswerable: bool = False
) -> list[QAExample]:
    """Load MKQA JSONL(.gz): one QAExample per (example, language), ``group`` = ``example_id``.

    Answers are each answer's ``text`` followed by its ``aliases`` (deduplicated, order kept);
    null texts (MKQA's unanswerable / long-answer types) are skipped, and a language left
    without any answer is skipped unless ``keep_unanswerable``. Language codes are MKQA's
    (``zh_cn``, ``zh_hk``, ``zh_tw``, ...).
    """
    path = Path(path)
    wanted = None if languages is None else {lang.lower() for lang in languages}
    out: list[QAExample] = []
    seen: dict[str, int] = {}
    for line, obj in read_jsonl(path):
        record = validate_record(MkqaRecord, obj, path, line=line)
        _check_unique(path, seen, record.example_id, line, "example_id")
        for lang in sorted(record.queries):
            if wanted is not None and lang.lower() not in wanted:
                continue
            check_lang(lang, path=path, line=line, field=f"queries.{lang}")
            texts: list[str] = []
            for entry in record.answers.get(lang, []):
                if entry.text is not None:
                    texts += [entry.text, *(entry.aliases or [])]
            final = dedup(texts)
            if not final and not keep_unanswerable:
                continue
            question = _nonblank(path, record.queries[lang], line, f"queries.{lang}", "question")
            out.append(
                QAExample(
                    id=f"{record.example_id}/{lang}",
                    lang=lang,
                    question=question,
                    answers=final,
                    group=record.example_id,
                )
            )
    return out


def load_xor_tydi(path: str | Path, languages: Iterable[str] | None = None) -> list[QAExample]:
    """Load XOR-TyDi QA JSONL (``id``, ``question``, ``answers``, ``lang``); ids are kept as given."""
    path = Path(path)
    wanted = None if languages is None else {lang.lower() for lang in languages}
    out = []
    seen: dict[str, int] = {}
    for line, obj in read_jsonl(path):
        record = validate_record(XorTydiRecord, obj, path, line=line)
        _check_unique(path, seen, record.id, line, "id")
        lang = check_lang(record.lang, path=path, line=line, record=record.id).lower()
        if wanted is not None and lang not in wanted:
            continue
        question = _nonblank(path, record.question, line, "question", "question", record.id)
        out.append(QAExample(id=record.id, lang=lang, question=question, answers=dedup(record.answers)))
    return out


# --------------------------------------------------------------------------- crosearch JSONL


def read_corpus(path: str | Path) -> list[Passage]:
    """Read a corpus JSONL (``id``, ``lang``, ``title``, ``text``, optional ``article``, ``paragraph``)."""
    path = Path(path)
    out = []
    seen: dict[str, int] = {}
    for line, obj in read_jsonl(path):
        record = validate_record(CorpusRecord, obj, path, line=line)
        check_lang(record.lang, path=path, line=line, record=record.id)
        _check_unique(path, seen, record.id, line, "id", what="passage id")
        _nonblank(path, record.text, line, "text", "passage text", record.id)
        out.append(
            Passage(
                id=record.id,
                lang=record.lang,
                title=record.title or "",
                text=record.text,
                article=record.article,
                paragraph=record.paragraph,
            )
        )
    return out


def read_qa(path: str | Path) -> list[QAExample]:
    """Read a QA JSONL (``id``, ``lang``, ``question``, ``answers`` and the optional QAExample fields)."""
    path = Path(path)
    out = []
    seen: dict[str, int] = {}
    for line, obj in read_jsonl(path):
        record = validate_record(QARecord, obj, path, line=line)
        _check_unique(path, seen, record.id, line, "id", what="question id")
        check_lang(record.lang, path=path, line=line, record=record.id)
        _nonblank(path, record.question, line, "question", "question", record.id)
        out.append(
            QAExample(
                id=record.id,
                lang=record.lang,
                question=record.question,
                answers=list(record.answers),
                group=record.group,
                article=record.article,
                paragraph=record.paragraph,
                exclude=record.exclude or [],
                answer_passages=record.answer_passages or [],
                native_available=record.native_available,
            )
        )
    return out


def write_corpus(path: str | Path, passages: Iterable[Passage]) -> int:
    """Write passages as canonical JSONL (atomically); returns the count."""
    return write_jsonl(path, (p.to_dict() for p in passages))


def write_qa(path: str | Path, examples: Iterable[QAExample]) -> int:
    """Write QA examples as canonical JSONL (atomically); returns the count."""
    return write_jsonl(path, (e.to_dict() for e in examples))
