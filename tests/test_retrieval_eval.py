"""Retrieval evaluation on the real vendored XQuAD (8 languages) and on a language given by path (Thai)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crosearch.config import DataConfig
from crosearch.eval.qa import first_per_lang
from crosearch.retrieval.evaluation import evaluate_retrieval, gold_rank
from crosearch.retrieval.local import LocalRetriever, build_index
from crosearch.types import QAExample

SHIPPED = ["ar", "de", "en", "es", "hi", "ru", "vi", "zh"]


def test_gold_rank():
    assert gold_rank(["a", None, "g", "g"], "g") == 3
    assert gold_rank([], "g") is None


@pytest.fixture(scope="module")
def xquad(tmp_path_factory):
    from crosearch.data.benchmark import build_benchmark

    bench = build_benchmark(DataConfig(setting="full", passages="paragraph", seed=0))
    out = tmp_path_factory.mktemp("xquad") / "index"
    build_index(bench.collection, out, progress=False)
    return bench, LocalRetriever(out)


def _sample(questions: list[QAExample], per_lang: int) -> list[QAExample]:
    return first_per_lang(questions, per_lang)


def test_monolingual_recall_at_5_in_every_shipped_language(xquad):
    bench, retriever = xquad
    assert retriever.languages == SHIPPED
    report = evaluate_retrieval(retriever, _sample(bench.test, 60), ks=[1, 5], scopes=["mono"], progress=False)
    mono = report.scopes["mono"]
    assert set(mono) == {*SHIPPED, "avg"}
    for lang in SHIPPED:
        assert mono[lang].questions == 60
        # Measured 0.96-1.00 on the full test split; a broken analyzer (zh as whole Han
        # runs, hi cut at vowel signs) drops far below.
        assert mono[lang].recall[5] >= 0.9, (lang, mono[lang].recall)
        assert mono[lang].recall[1] <= mono[lang].recall[5]


def test_no_native_exclusion_hides_the_own_language_copy(xquad):
    bench, retriever = xquad
    questions = _sample([q for q in bench.test if q.lang in ("en", "de")], 30)
    native_ids = {p.paragraph: {} for p in bench.collection}
    for p in bench.collection:
        native_ids[p.paragraph][p.lang] = p.id
    hidden = [
        QAExample(q.id, q.lang, q.question, q.answers, paragraph=q.paragraph, exclude=[native_ids[q.paragraph][q.lang]])
        for q in questions
    ]
    report = evaluate_retrieval(retriever, hidden, ks=[5], progress=False)
    # Own language only, with the gold copy hidden: nothing left to find.
    assert report.scopes["mono"]["avg"].recall[5] == 0.0
    # All languages: the parallel copies (shared names and numbers in de/es/vi/...) are found.
    assert report.scopes["all"]["avg"].recall[5] > 0.3


def test_language_given_by_path_thai(tmp_path):
    from crosearch.data.benchmark import build_benchmark

    source = Path(__file__).parent / "data" / "parallel"
    bench = build_benchmark(DataConfig(source=str(source), setting="full", passages="sentences", test_fraction=0.5))
    assert "th" in bench.languages
    build_index(bench.collection, tmp_path / "index", progress=False)
    retriever = LocalRetriever(tmp_path / "index")
    questions = bench.test + bench.train
    report = evaluate_retrieval(retriever, questions, ks=[1, 3], progress=False)
    assert report.scopes["mono"]["th"].questions == 4
    assert report.scopes["mono"]["th"].recall[3] == 1.0
    assert report.scopes["mono"]["th"].mrr >= 0.75
