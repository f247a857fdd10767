"""Our BM25 (bm25s over our analyzers) against rank_bm25, plus save/load and exclusions."""

from __future__ import annotations

import gzip
import json
import math
from importlib import resources

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from crosearch.retrieval.analyzers import get_analyzer
from crosearch.retrieval.bm25 import Bm25Index, Bm25Params, build_bm25_from_tokens, save_bm25


def _xquad_en(max_paragraphs: int = 60) -> tuple[list[str], list[str]]:
    path = resources.files("crosearch") / "resources" / "xquad" / "xquad.en.json.gz"
    data = json.loads(gzip.decompress(path.read_bytes()))["data"]
    contexts, questions = [], []
    for article in data:
        for paragraph in article["paragraphs"]:
            contexts.append(paragraph["context"])
            questions.append(paragraph["qas"][0]["question"])
    return contexts[:max_paragraphs], questions[:max_paragraphs]


@pytest.fixture(scope="module")
def corpus():
    texts, questions = _xquad_en()
    analyzer = get_analyzer("en")
    return [analyzer(t) for t in texts], [analyzer(q) for q in questions]


def _rare_terms(tokens: list[str], docs: list[list[str]]) -> list[str]:
    n = len(docs)
    return [t for t in tokens if 0 < sum(t in d for d in docs) < n / 2]


def test_robertson_matches_rank_bm25_okapi_up_to_k1_plus_1(corpus):
    docs, queries = corpus
    k1, b = 1.2, 0.75
    ours = Bm25Index(build_bm25_from_tokens(docs, Bm25Params(k1=k1, b=b, method="robertson")), analyzer=str.split)
    reference = BM25Okapi(docs, k1=k1, b=b)
    checked = 0
    for query in queries:
        # rank_bm25 floors negative idf at epsilon * mean idf, bm25s clips it at 0: compare
        # on terms present in fewer than half of the passages, where both use the same idf.
        terms = _rare_terms(query, docs)
        if not terms:
            continue
        mine = ours.model.get_scores([ours.model.vocab_dict[t] for t in terms]).astype(np.float64)
        theirs = np.asarray(reference.get_scores(terms))
        # bm25s's robertson term-frequency part lacks the constant (k1 + 1) factor.
        np.testing.assert_allclose(mine * (k1 + 1), theirs, rtol=1e-4, atol=1e-4)
        top_theirs = [int(i) for i in np.argsort(-theirs, kind="stable")[:5] if theirs[i] > 0]
        top_mine = [pos for pos, _ in ours.search_tokens([terms], 5)[0]]
        assert set(top_mine[:3]) == set(top_theirs[:3]) or np.allclose(
            sorted(theirs[top_mine[:3]]), sorted(theirs[top_theirs[:3]])
        )
        checked += 1
    assert checked >= 40


def test_lucene_scores_follow_the_lucene_formula(corpus):
    docs, queries = corpus
    k1, b = 1.5, 0.75
    index = Bm25Index(build_bm25_from_tokens(docs, Bm25Params(k1=k1, b=b, method="lucene")), analyzer=str.split)
    n = len(docs)
    avgdl = sum(len(d) for d in docs) / n
    query = sorted(set(queries[3]) & {t for d in docs for t in d})
    expected = np.zeros(n)
    for term in query:
        df = sum(term in d for d in docs)
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        for i, d in enumerate(docs):
            tf = d.count(term)
            expected[i] += idf * tf / (tf + k1 * (1 - b + b * len(d) / avgdl))
    got = index.model.get_scores([index.model.vocab_dict[t] for t in query])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_save_load_roundtrip_memory_mapped(tmp_path, corpus):
    docs, queries = corpus
    model = build_bm25_from_tokens(docs, Bm25Params())
    save_bm25(model, tmp_path / "bm25")
    before = Bm25Index(model, analyzer=str.split)
    after = Bm25Index.load(tmp_path / "bm25", analyzer=str.split, mmap=True)
    assert isinstance(after.model.scores["data"], np.memmap)
    assert after.search_tokens(queries[:20], 5) == before.search_tokens(queries[:20], 5)


def test_exclude_is_honoured_and_list_stays_full(corpus):
    docs, queries = corpus
    index = Bm25Index(build_bm25_from_tokens(docs, Bm25Params()), analyzer=str.split)
    full = index.search_tokens([queries[0]], 8)[0]
    banned = {full[0][0], full[2][0]}
    filtered = index.search_tokens([queries[0]], 6, [banned])[0]
    assert len(filtered) == 6
    assert not banned & {pos for pos, _ in filtered}
    assert filtered == [h for h in full if h[0] not in banned][:6]


def test_no_shared_terms_gives_no_hits_and_k_larger_than_collection(corpus):
    docs, _ = corpus
    index = Bm25Index(build_bm25_from_tokens(docs, Bm25Params()), analyzer=str.split)
    assert index.search_tokens([["zzzunknownzzz"], []], 5) == [[], []]
    hits = index.search_tokens([["panther"]], 10_000)[0]
    assert 0 < len(hits) <= len(docs)
    assert all(score > 0 for _, score in hits)
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)


def test_collection_without_terms_still_indexes():
    index = Bm25Index(build_bm25_from_tokens([[], []], Bm25Params()), analyzer=str.split)
    assert index.search_tokens([["anything"]], 3) == [[]]


@pytest.mark.parametrize("method", ["lucene", "robertson", "bm25+"])
def test_batched_search_equals_bm25s_scores(corpus, method):
    docs, queries = corpus
    index = Bm25Index(build_bm25_from_tokens(docs, Bm25Params(method=method)), analyzer=str.split)
    batch = queries[:30] + [queries[0] + queries[0]]  # a repeated term counts twice, as in bm25s
    results = index.search_tokens(batch, 7)
    for query, hits in zip(batch, results):
        ids = [index.model.vocab_dict[t] for t in query if t in index.model.vocab_dict]
        expected = np.asarray(index.model.get_scores(ids), dtype=np.float64)
        got = np.array([s for _, s in hits])
        np.testing.assert_allclose(got, np.sort(expected)[::-1][: len(hits)], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(expected[[d for d, _ in hits]], got, rtol=1e-5, atol=1e-5)
