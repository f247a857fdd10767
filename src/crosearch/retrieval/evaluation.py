"""Retrieval evaluation: recall@k and MRR per question language.

Gold = the question's paragraph in any language (``hit.paragraph ==
question.paragraph``), so a parallel copy in another language counts: that is
the knowledge a cross-lingual system can use. Two scopes:

- ``mono``: search only the question's own language;
- ``all``: search every language of the index, fused.

Each question's ``exclude`` list is honoured (the ``no-native`` setting hides
its own-language gold copy), so ``mono`` recall there measures leakage only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from crosearch.progress import track
from crosearch.retrieval.base import Retriever
from crosearch.types import QAExample, SearchQuery

Scope = Literal["mono", "all"]


@dataclass
class ScopeResult:
    """Metrics of one scope (mono or all) for one language (or the average)."""

    questions: int
    recall: dict[int, float]
    mrr: float

    def to_dict(self) -> dict:
        return {"questions": self.questions, "recall": {str(k): v for k, v in self.recall.items()}, "mrr": self.mrr}


@dataclass
class RetrievalReport:
    """Per-language and macro-averaged metrics, per scope."""

    ks: list[int]
    scopes: dict[str, dict[str, ScopeResult]] = field(default_factory=dict)  # scope -> lang/"avg" -> result
    skipped: int = 0

    def to_dict(self) -> dict:
        return {
            "ks": self.ks,
            "skipped_without_paragraph": self.skipped,
            "scopes": {s: {lang: r.to_dict() for lang, r in by.items()} for s, by in self.scopes.items()},
        }


def gold_rank(paragraphs: Sequence[str | None], gold: str) -> int | None:
    """1-based rank of the first hit from the gold paragraph, or None."""
    for rank, paragraph in enumerate(paragraphs, start=1):
        if paragraph == gold:
            return rank
    return None


def evaluate_retrieval(
    retriever: Retriever,
    questions: Sequence[QAExample],
    ks: Sequence[int] = (1, 5, 10),
    scopes: Sequence[Scope] = ("mono", "all"),
    batch_size: int = 256,
    progress: bool = True,
    translations: Mapping[str, dict[str, str]] | None = None,
) -> RetrievalReport:
    """Search every question (batched) in each scope and compute recall@k and MRR@max(k) per language.

    ``translations`` (question id -> language -> text) go with each ``all``-scope query: the
    BM25 list of a language is then searched with the question's text in that language.
    """
    ks = sorted(set(int(k) for k in ks))
    depth = ks[-1]
    usable = [q for q in questions if q.paragraph]
    report = RetrievalReport(ks=list(ks), skipped=len(questions) - len(usable))
    available = set(retriever.languages)
    for scope in scopes:
        if scope == "mono":
            subset = [q for q in usable if q.lang in available]
        else:
            subset = usable
        queries = [
            SearchQuery(
                text=q.question,
                lang=q.lang,
                search_langs=[q.lang] if scope == "mono" else None,
                exclude=frozenset(q.exclude),
                translations=translations.get(q.id) if translations and scope == "all" else None,
            )
            for q in subset
        ]
        ranks: list[int | None] = []
        batches = range(0, len(queries), batch_size)
        for start in track(batches, f"retrieval {scope}", enabled=progress, transient=True):
            results = retriever.search(queries[start : start + batch_size], depth)
            for q, hits in zip(subset[start : start + batch_size], results):
                assert q.paragraph is not None
                ranks.append(gold_rank([h.paragraph for h in hits], q.paragraph))
        report.scopes[scope] = _aggregate(subset, ranks, ks)
    return report


def _aggregate(
    questions: Sequence[QAExample], ranks: Sequence[int | None], ks: Sequence[int]
) -> dict[str, ScopeResult]:
    by_lang: dict[str, list[int | None]] = {}
    for q, r in zip(questions, ranks):
        by_lang.setdefault(q.lang, []).append(r)
    out: dict[str, ScopeResult] = {}
    for lang in sorted(by_lang):
        rs = by_lang[lang]
        out[lang] = ScopeResult(
            questions=len(rs),
            recall={k: sum(1 for r in rs if r is not None and r <= k) / len(rs) for k in ks},
            mrr=sum(1.0 / r for r in rs if r is not None) / len(rs),
        )
    if out:
        # Macro average: every language counts the same, however many questions it has.
        langs = list(out.values())
        out["avg"] = ScopeResult(
            questions=sum(r.questions for r in langs),
            recall={k: sum(r.recall[k] for r in langs) / len(langs) for k in ks},
            mrr=sum(r.mrr for r in langs) / len(langs),
        )
    return out


def report_tables(report: RetrievalReport, title: str = "retrieval") -> list:
    """Rich tables, one per scope: a row per language (and the macro average), recall@k and MRR."""
    from rich.table import Table

    tables = []
    for scope, by in report.scopes.items():
        label = "own language only" if scope == "mono" else "all languages"
        table = Table(title=f"{title}: {scope} ({label})")
        table.add_column("lang")
        table.add_column("questions", justify="right")
        for k in report.ks:
            table.add_column(f"R@{k}", justify="right")
        table.add_column(f"MRR@{report.ks[-1]}", justify="right")
        for lang, r in by.items():
            table.add_row(
                lang,
                str(r.questions),
                *[f"{r.recall[k]:.3f}" for k in report.ks],
                f"{r.mrr:.3f}",
                style="bold" if lang == "avg" else None,
            )
        tables.append(table)
    return tables
