"""Descriptive statistics of a benchmark: what each language holds and what its questions can reach."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from crosearch.data.benchmark import Benchmark
from crosearch.types import Passage, QAExample


@dataclass
class LangStats:
    """Counts for one language (or ``lang='all'`` for the whole benchmark).

    ``test_native``: test questions that may retrieve their gold paragraph in their own language
    (present in the collection and not in the question's ``exclude``); ``test_cross_only``: those
    whose gold paragraph is reachable only in other languages; ``test_unreachable``: nowhere.
    ``answer_in_passage``: among questions (train and test) whose own-language gold paragraph
    is in the collection, the share with a gold answer string fully inside one passage of it,
    which measures how often passage cutting splits an answer from itself.
    """

    lang: str
    passages: int = 0
    paragraphs: int = 0
    mean_passage_chars: float = 0.0
    train_questions: int = 0
    validation_questions: int = 0
    test_questions: int = 0
    test_native: int = 0
    test_cross_only: int = 0
    test_unreachable: int = 0
    answer_in_passage: float = 0.0
    answer_in_passage_of: int = 0


@dataclass
class BenchmarkStats:
    """Per-language statistics plus the totals (``total.lang == 'all'``)."""

    setting: str
    languages: list[LangStats] = field(default_factory=list)
    total: LangStats = field(default_factory=lambda: LangStats(lang="all"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _contains(text: str, answers: list[str]) -> bool:
    folded = text.casefold()
    return any(a and a.casefold() in folded for a in answers)


def compute_stats(bench: Benchmark) -> BenchmarkStats:
    """Compute :class:`BenchmarkStats` for a loaded benchmark."""
    copies: dict[tuple[str, str | None], list[Passage]] = defaultdict(list)
    for passage in bench.collection:
        copies[(passage.lang, passage.paragraph)].append(passage)
    langs_of_paragraph: dict[str | None, set[str]] = defaultdict(set)
    for lang, paragraph in copies:
        langs_of_paragraph[paragraph].add(lang)

    langs = sorted(
        set(bench.languages)
        | {p.lang for p in bench.collection}
        | {q.lang for q in bench.train + bench.validation + bench.test}
    )
    per = {lang: LangStats(lang=lang) for lang in langs}
    chars: dict[str, int] = defaultdict(int)
    for passage in bench.collection:
        per[passage.lang].passages += 1
        chars[passage.lang] += len(passage.text)
    for lang, _paragraph in copies:
        per[lang].paragraphs += 1

    hits: dict[str, int] = defaultdict(int)

    def visit(question: QAExample, split: str) -> None:
        row = per[question.lang]
        own = copies.get((question.lang, question.paragraph), [])
        if own:
            row.answer_in_passage_of += 1
            if any(_contains(p.text, question.answers) for p in own):
                hits[question.lang] += 1
        if split != "test":
            if split == "train":
                row.train_questions += 1
            else:
                row.validation_questions += 1
            return
        row.test_questions += 1
        excluded = set(question.exclude)
        if any(p.id not in excluded for p in own):
            row.test_native += 1
            return
        others = langs_of_paragraph.get(question.paragraph, set()) - {question.lang}
        if any(p.id not in excluded for lang in others for p in copies[(lang, question.paragraph)]):
            row.test_cross_only += 1
        else:
            row.test_unreachable += 1

    for split in ("train", "validation", "test"):
        for question in getattr(bench, split):
            visit(question, split)

    total = LangStats(lang="all")
    for lang, row in per.items():
        row.mean_passage_chars = round(chars[lang] / row.passages, 1) if row.passages else 0.0
        row.answer_in_passage = round(hits[lang] / row.answer_in_passage_of, 4) if row.answer_in_passage_of else 0.0
        for name in (
            "passages",
            "paragraphs",
            "train_questions",
            "validation_questions",
            "test_questions",
            "test_native",
            "test_cross_only",
            "test_unreachable",
            "answer_in_passage_of",
        ):
            setattr(total, name, getattr(total, name) + getattr(row, name))
    total.mean_passage_chars = round(sum(chars.values()) / total.passages, 1) if total.passages else 0.0
    total.answer_in_passage = (
        round(sum(hits.values()) / total.answer_in_passage_of, 4) if total.answer_in_passage_of else 0.0
    )
    return BenchmarkStats(setting=bench.setting, languages=[per[lang] for lang in langs], total=total)


def stats_table(stats: BenchmarkStats):  # -> rich.table.Table (rich imported lazily)
    """A rich table of the statistics, one row per language and a total row."""
    from rich import box
    from rich.table import Table

    # Borderless and tightly padded so ten columns fit an 80-column terminal.
    table = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
        title=f"benchmark statistics (setting: {stats.setting})",
        caption="own / cross: test questions whose gold paragraph is reachable in their own "
        "language / only in other languages; 1-psg: share of questions with an answer "
        "inside one passage",
    )
    for header in ("lang", "psgs", "paras", "chars", "train", "test", "own", "cross", "none", "1-psg"):
        table.add_column(header, justify="left" if header == "lang" else "right", no_wrap=True)

    def row(s: LangStats, style: str | None = None) -> None:
        def share(n: int) -> str:
            return f"{n} {n / s.test_questions:.0%}" if s.test_questions else str(n)

        table.add_row(
            s.lang,
            str(s.passages),
            str(s.paragraphs),
            f"{s.mean_passage_chars:.0f}",
            str(s.train_questions),
            str(s.test_questions),
            share(s.test_native),
            share(s.test_cross_only),
            str(s.test_unreachable),
            f"{s.answer_in_passage:.1%}",
            style=style,
        )

    for s in stats.languages:
        row(s)
    row(stats.total, style="bold")
    return table
