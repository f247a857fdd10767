"""Loaders and writers for the QA and corpus formats crosearch reads.

Every loader validates as it parses and raises :class:`~crosearch.errors.DataFormatError`
naming the file, the line (JSONL) or record path (JSON, e.g.
``data[3].paragraphs[2].qas[5]``) and the field, so a broken file is fixed in
one look instead of being debugged from a ``KeyError`` deep in training.

Formats:

- SQuAD v1.1 JSON (SQuAD, XQuAD, MLQA, any language; ``.gz`` ok): :func:`load_squad`;
- MKQA JSONL (``example_id``, ``query``, ``queries``, ``answers``): :func:`load_mkqa`;
- XOR-TyDi QA JSONL (``id``, ``question``, ``answers``, ``lang``): :func:`load_xor_tydi`;
- crosearch corpus / QA JSONL: :func:`read_corpus`, :func:`read_qa`, :func:`write_corpus`, :func:`write_qa`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import regex

from crosearch.errors import DataFormatError
from crosearch.io import read_json, read_jsonl, write_jsonl
from crosearch.types import Passage, QAExample

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
        path, "cannot infer the language from the file name; name it <name>.<lang>.json[.gz] "
        "(or *context-<lang>-question-<lang>.json for MLQA), or pass the language explicitly"
    )


# --------------------------------------------------------------------------- validation


def _require(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], path: str | Path, *,
             line: int | None = None, record: str | None = None, optional: bool = False) -> Any:
    """Fetch ``obj[key]`` checking its type; a missing or mistyped field names itself."""
    if key not in obj or obj[key] is None:
        if optional:
            return None
        raise DataFormatError(path, "missing required field", line=line, record=record, field=key)
    value = obj[key]
    # bool is an int subclass; an id of `true` is a bug in the file, not a number.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise DataFormatError(path, f"expected {_kind_name(kind)}, got bool", line=line, record=record, field=key)
    if not isinstance(value, kind):
        raise DataFormatError(path, f"expected {_kind_name(kind)}, got {type(value).__name__}",
                              line=line, record=record, field=key)
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "an object",
             bool: "a boolean"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _string_list(value: Any, path: str | Path, *, line: int | None = None, record: str | None = None,
                 field_name: str) -> list[str]:
    if not isinstance(value, list):
        raise DataFormatError(path, f"expected a list of strings, got {type(value).__name__}",
                              line=line, record=record, field=field_name)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise DataFormatError(path, f"expected a string, got {type(item).__name__}",
                                  line=line, record=record, field=f"{field_name}[{i}]")
    return list(value)


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
    result = SquadFile(path=str(path), name=name or inferred_name or path.name.split(".")[0],
                       lang=lang, context_lang=(context_lang if question_lang == lang else None) or lang)
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise DataFormatError(path, f"expected a JSON object with a 'data' list, got {type(raw).__name__}")
    data = _require(raw, "data", list, path)
    for ai, art in enumerate(data):
        where = f"data[{ai}]"
        if not isinstance(art, dict):
            raise DataFormatError(path, f"expected an object, got {type(art).__name__}", record=where)
        title = _require(art, "title", str, path, record=where, optional=True) or ""
        paragraphs = _require(art, "paragraphs", list, path, record=where)
        article = SquadArticle(title=clean_text(title).replace("_", " "), paragraphs=[])
        for pi, par in enumerate(paragraphs):
            pwhere = f"{where}.paragraphs[{pi}]"
            if not isinstance(par, dict):
                raise DataFormatError(path, f"expected an object, got {type(par).__name__}", record=pwhere)
            context = clean_text(_require(par, "context", str, path, record=pwhere))
            qas = _require(par, "qas", list, path, record=pwhere)
            questions = []
            for qi, qa in enumerate(qas):
                qwhere = f"{pwhere}.qas[{qi}]"
                if not isinstance(qa, dict):
                    raise DataFormatError(path, f"expected an object, got {type(qa).__name__}", record=qwhere)
                qid = _require(qa, "id", (str, int), path, record=qwhere)
                question = _require(qa, "question", str, path, record=qwhere)
                answers_raw = _require(qa, "answers", list, path, record=qwhere)
                texts = []
                for ni, ans in enumerate(answers_raw):
                    if not isinstance(ans, dict):
                        raise DataFormatError(path, f"expected an object, got {type(ans).__name__}",
                                              record=qwhere, field=f"answers[{ni}]")
                    if not isinstance(ans.get("text"), str):
                        got = type(ans.get("text")).__name__ if "text" in ans else "nothing"
                        raise DataFormatError(path, f"expected a string, got {got}",
                                              record=qwhere, field=f"answers[{ni}].text")
                    texts.append(clean_text(ans["text"]))
                questions.append(SquadQuestion(id=str(qid), question=clean_text(question), answers=dedup(texts)))
            article.paragraphs.append(SquadParagraph(context=context, questions=questions))
        result.articles.append(article)
    return result


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
            out.append(Passage(id=f"{squad.context_lang}/{pid}", lang=squad.context_lang, title=art.title,
                               text=par.context, article=article_id(squad.name, ai, widths[0]), paragraph=pid))
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
                out.append(QAExample(id=f"{q.id}/{squad.lang}", lang=squad.lang, question=q.question,
                                     answers=list(q.answers), group=q.id,
                                     article=article_id(squad.name, ai, widths[0]),
                                     paragraph=paragraph_id(squad.name, ai, pi, widths)))
    return out


# --------------------------------------------------------------------------- MKQA, XOR-TyDi


def load_mkqa(path: str | Path, languages: Iterable[str] | None = None, *,
              keep_unanswerable: bool = False) -> list[QAExample]:
    """Load MKQA JSONL(.gz): one QAExample per (example, language), ``group`` = ``example_id``.

    Answers are each answer's ``text`` followed by its ``aliases`` (deduplicated, order kept);
    null texts (MKQA's unanswerable / long-answer types) are skipped, and a language left
    without any answer is skipped unless ``keep_unanswerable``. Language codes are MKQA's
    (``zh_cn``, ``zh_hk``, ``zh_tw``, ...).
    """
    path = Path(path)
    wanted = None if languages is None else {lang.lower() for lang in languages}
    out: list[QAExample] = []
    for line, obj in read_jsonl(path):
        example_id = str(_require(obj, "example_id", (str, int), path, line=line))
        queries = _require(obj, "queries", dict, path, line=line)
        answers = _require(obj, "answers", dict, path, line=line)
        for lang in sorted(queries):
            if wanted is not None and lang.lower() not in wanted:
                continue
            query = queries[lang]
            if not isinstance(query, str):
                raise DataFormatError(path, f"expected a string, got {type(query).__name__}",
                                      line=line, field=f"queries.{lang}")
            entries = answers.get(lang, [])
            if not isinstance(entries, list):
                raise DataFormatError(path, f"expected a list, got {type(entries).__name__}",
                                      line=line, field=f"answers.{lang}")
            texts: list[str] = []
            for i, entry in enumerate(entries):
                where = f"answers.{lang}[{i}]"
                if not isinstance(entry, dict):
                    raise DataFormatError(path, f"expected an object, got {type(entry).__name__}",
                                          line=line, field=where)
                text = entry.get("text")
                if text is None:
                    continue
                if not isinstance(text, str):
                    raise DataFormatError(path, f"expected a string or null, got {type(text).__name__}",
                                          line=line, field=f"{where}.text")
                texts.append(text)
                texts.extend(_string_list(entry.get("aliases") or [], path, line=line, field_name=f"{where}.aliases"))
            final = dedup(texts)
            if not final and not keep_unanswerable:
                continue
            out.append(QAExample(id=f"{example_id}/{lang}", lang=lang, question=query.strip(), answers=final,
                                 group=example_id))
    return out


def load_xor_tydi(path: str | Path, languages: Iterable[str] | None = None) -> list[QAExample]:
    """Load XOR-TyDi QA JSONL (``id``, ``question``, ``answers``, ``lang``); ids are kept as given."""
    path = Path(path)
    wanted = None if languages is None else {lang.lower() for lang in languages}
    out = []
    for line, obj in read_jsonl(path):
        qid = str(_require(obj, "id", (str, int), path, line=line))
        lang = _require(obj, "lang", str, path, line=line).lower()
        if wanted is not None and lang not in wanted:
            continue
        question = _require(obj, "question", str, path, line=line)
        answers = _string_list(_require(obj, "answers", list, path, line=line), path, line=line, field_name="answers")
        out.append(QAExample(id=qid, lang=lang, question=question.strip(), answers=dedup(answers)))
    return out


# --------------------------------------------------------------------------- crosearch JSONL


def read_corpus(path: str | Path) -> list[Passage]:
    """Read a corpus JSONL (``id``, ``lang``, ``title``, ``text``, optional ``article``, ``paragraph``)."""
    path = Path(path)
    out = []
    seen: dict[str, int] = {}
    for line, obj in read_jsonl(path):
        pid = _require(obj, "id", str, path, line=line)
        if pid in seen:
            raise DataFormatError(path, f"duplicate passage id {pid!r} (first on line {seen[pid]})",
                                  line=line, field="id")
        seen[pid] = line
        out.append(Passage(
            id=pid,
            lang=_require(obj, "lang", str, path, line=line),
            title=_require(obj, "title", str, path, line=line, optional=True) or "",
            text=_require(obj, "text", str, path, line=line),
            article=_require(obj, "article", str, path, line=line, optional=True),
            paragraph=_require(obj, "paragraph", str, path, line=line, optional=True),
        ))
    return out


def read_qa(path: str | Path) -> list[QAExample]:
    """Read a QA JSONL (``id``, ``lang``, ``question``, ``answers`` and the optional QAExample fields)."""
    path = Path(path)
    out = []
    for line, obj in read_jsonl(path):
        def strings(key: str) -> list[str]:
            value = obj.get(key)
            return [] if value is None else _string_list(value, path, line=line, field_name=key)

        native = obj.get("native_available")
        if native is not None and not isinstance(native, bool):
            raise DataFormatError(path, f"expected a boolean, got {type(native).__name__}",
                                  line=line, field="native_available")
        out.append(QAExample(
            id=_require(obj, "id", str, path, line=line),
            lang=_require(obj, "lang", str, path, line=line),
            question=_require(obj, "question", str, path, line=line),
            answers=_string_list(_require(obj, "answers", list, path, line=line), path, line=line,
                                 field_name="answers"),
            group=_require(obj, "group", str, path, line=line, optional=True),
            article=_require(obj, "article", str, path, line=line, optional=True),
            paragraph=_require(obj, "paragraph", str, path, line=line, optional=True),
            exclude=strings("exclude"),
            answer_passages=strings("answer_passages"),
            native_available=native,
        ))
    return out


def write_corpus(path: str | Path, passages: Iterable[Passage]) -> int:
    """Write passages as canonical JSONL (atomically); returns the count."""
    return write_jsonl(path, (p.to_dict() for p in passages))


def write_qa(path: str | Path, examples: Iterable[QAExample]) -> int:
    """Write QA examples as canonical JSONL (atomically); returns the count."""
    return write_jsonl(path, (e.to_dict() for e in examples))
