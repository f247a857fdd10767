"""Integration strategies over a real BM25 index of parallel XQuAD paragraphs (en, de, zh)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crosearch.config import CrossLingualConfig, load_config
from crosearch.crosslingual.dedup import char_ngrams, deduplicate, jaccard
from crosearch.crosslingual.integration import (
    EvidencePassage,
    EvidenceTrace,
    IntegrationQuery,
    Integrator,
    TokenCounter,
    build_integrator,
    render_evidence,
)
from crosearch.crosslingual.translate import CachedTranslator, IdentityTranslator, TranslationCache
from crosearch.data.formats import load_squad, squad_examples, squad_passages, xquad_dir
from crosearch.errors import CrosearchError
from crosearch.retrieval.local import LocalRetriever, build_index

LANGS = ("en", "de", "zh")
ARTICLES = 4


@pytest.fixture(scope="module")
def xquad():
    """Paragraph passages and questions of the first articles, per language."""
    passages, questions = {}, {}
    for lang in LANGS:
        squad = load_squad(xquad_dir() / f"xquad.{lang}.json.gz", lang)
        keep = {f"xquad-a{i:02d}" for i in range(ARTICLES)}
        passages[lang] = [p for p in squad_passages(squad) if p.article in keep]
        questions[lang] = [q for q in squad_examples(squad) if q.article in keep]
    return passages, questions


@pytest.fixture(scope="module")
def retriever(xquad, tmp_path_factory) -> LocalRetriever:
    passages, _ = xquad
    out = tmp_path_factory.mktemp("xl") / "index"
    build_index([p for lang in LANGS for p in passages[lang]], out, progress=False)
    return LocalRetriever(out)


def _by_paragraph(passages, lang):
    return {p.paragraph: p for p in passages[lang]}


# ------------------------------------------------------------------ dedup


def test_dedup_keeps_one_of_two_parallel_paragraphs_preferring_question_language(xquad):
    passages, _ = xquad
    en, de = _by_paragraph(passages, "en"), _by_paragraph(passages, "de")
    pid, other = "xquad-a00-p00", "xquad-a00-p01"
    # Parallel en/de paragraphs share names and numbers; a neighbouring paragraph of the same article does not.
    assert jaccard(char_ngrams(en[pid].text), char_ngrams(de[pid].text)) > 0.3
    assert jaccard(char_ngrams(en[other].text), char_ngrams(de[pid].text)) < 0.3
    texts = [de[pid].text, en[other].text, en[pid].text]
    kept, drops = deduplicate(texts, ["de", "en", "en"], "en", threshold=0.3)
    # The en copy replaces the better-ranked de copy at its rank; the distinct paragraph stays.
    assert kept == [2, 1]
    assert [(d.dropped, d.kept) for d in drops] == [(0, 2)]
    assert "question language preferred" in drops[0].reason
    # Without a copy in the question's language the better-ranked one is kept.
    kept, drops = deduplicate(texts, ["de", "en", "en"], "zh", threshold=0.3)
    assert kept == [0, 1] and drops[0].dropped == 2


def test_dedup_on_translated_text():
    # What a translator returns for a German passage, next to the English original.
    original = "Tesla was born in 1856 in Smiljan, in the Austrian Empire. He studied engineering in Graz."
    translated = "Tesla was born 1856 in Smiljan in the Austrian Empire. He studied engineering at Graz."
    unrelated = "The Panthers defense gave up just 308 points, ranking sixth in the league."
    kept, drops = deduplicate([translated, unrelated, original], ["de", "en", "en"], "en", threshold=0.5)
    assert kept == [2, 1]
    assert drops[0].similarity > 0.5
    # A threshold of 1 switches detection off.
    kept, drops = deduplicate([translated, unrelated, original], ["de", "en", "en"], "en", threshold=1.0)
    assert kept == [0, 1, 2] and drops == []


# ------------------------------------------------------------------ strategies


def _question(xquad, lang, index=0):
    return xquad[1][lang][index]


def test_mono_searches_only_the_question_language(retriever, xquad):
    integ = Integrator(retriever, CrossLingualConfig(strategy="mono", token_budget=5000))
    queries = [IntegrationQuery(_question(xquad, lang).question, lang) for lang in LANGS]
    evidence = integ.gather(queries, 3)
    for q, ev in zip(queries, evidence):
        assert ev.trace.languages_searched == [q.lang]
        assert len(ev.passages) == 3
        assert {p.lang for p in ev.passages} == {q.lang}
        assert all(p.role == "primary" for p in ev.passages)
        assert ev.body.startswith("Doc 1(Title: ")


def test_concat_returns_every_language(retriever, xquad):
    integ = Integrator(retriever, CrossLingualConfig(strategy="concat", token_budget=100_000))
    # Untranslated, a query matches another script only through shared names and numbers.
    ev = integ.gather([IntegrationQuery("NFL AFC 308", "de")], 2)[0]
    assert ev.trace.languages_searched[0] == "de"
    assert set(ev.trace.languages_searched) == set(LANGS)
    assert [p.lang for p in ev.passages] == ["de", "en", "zh", "de", "en", "zh"]
    assert {p.role for p in ev.passages if p.lang != "de"} == {"supplementary"}


def test_concat_shows_other_languages_under_a_tight_budget(retriever, xquad):
    # A budget that holds about two passages must not be spent on the question's language alone.
    wide = Integrator(retriever, CrossLingualConfig(strategy="concat", token_budget=100_000))
    first_two = wide.gather([IntegrationQuery("NFL AFC 308", "de")], 2)[0].passages[:2]
    budget = len("\n".join(f"Doc {i + 1}(Title: {p.title}) {p.text}" for i, p in enumerate(first_two)))
    tight = Integrator(retriever, CrossLingualConfig(strategy="concat", token_budget=budget))
    ev = tight.gather([IntegrationQuery("NFL AFC 308", "de")], 2)[0]
    assert [p.lang for p in ev.passages] == ["de", "en"]
    assert ev.trace.dropped_for_budget


def test_exclude_is_honoured_by_every_strategy(retriever, xquad):
    q = _question(xquad, "en")
    copies = frozenset(f"{lang}/{q.paragraph}" for lang in LANGS)
    for strategy in ("mono", "concat", "crosslingual"):
        integ = Integrator(
            retriever, CrossLingualConfig(strategy=strategy, token_budget=100_000), translator=IdentityTranslator()
        )
        free = integ.gather([IntegrationQuery(q.question, "en")], 3)[0]
        assert f"en/{q.paragraph}" in {p.doc_id for p in free.passages}, strategy
        hidden = integ.gather([IntegrationQuery(q.question, "en", copies)], 3)[0]
        assert hidden.passages and not {p.doc_id for p in hidden.passages} & copies, strategy


def test_crosslingual_no_native_finds_foreign_copy_marked_supplementary(retriever, xquad):
    q = _question(xquad, "en")
    integ = Integrator(
        retriever,
        CrossLingualConfig(token_budget=100_000, dedup_threshold=1.0, per_lang_k=5),
        translator=IdentityTranslator(),
    )
    ev = integ.gather([IntegrationQuery(q.question, "en", frozenset({f"en/{q.paragraph}"}))], 10)[0]
    assert set(ev.trace.languages_searched) == set(LANGS)
    foreign = [p for p in ev.passages if p.lang != "en"]
    assert f"de/{q.paragraph}" in {p.doc_id for p in foreign}
    # The identity translator translates nothing, so foreign text is shown with its language marked.
    assert all(p.translated is None and p.role == "supplementary" for p in foreign)
    assert "(supplementary, in German [de]; Title:" in ev.body


def test_a_search_aimed_at_another_language_makes_it_primary(retriever, xquad):
    """search_lang (search-language groups): mono searches that language alone; crosslingual ranks it first,
    keeps it among duplicates, and marks its passages as primary evidence in that language."""
    q = _question(xquad, "de")
    mono = Integrator(retriever, CrossLingualConfig(strategy="mono", token_budget=5000))
    own, aimed = mono.gather(
        [IntegrationQuery(q.question, "de"), IntegrationQuery(q.question, "de", search_lang="en")], 3
    )
    assert {p.lang for p in own.passages} == {"de"}
    assert aimed.trace.languages_searched == ["en"] and {p.lang for p in aimed.passages} == {"en"}
    assert aimed.query.lang == "de"  # the question stays the German one
    cross = Integrator(
        retriever,
        CrossLingualConfig(token_budget=100_000, dedup_threshold=0.3, target_langs=["de", "zh"]),
        translator=IdentityTranslator(),
    )
    ev = cross.gather([IntegrationQuery(q.question, "de", search_lang="en")], 4)[0]
    assert ev.trace.languages_searched == ["en", "de", "zh"]
    assert ev.passages[0].lang == "en" and ev.passages[0].role == "primary"
    assert {p.role for p in ev.passages if p.lang != "en"} == {"supplementary"}
    assert all(d["kept_lang"] == "en" for d in ev.trace.duplicates if "en" in (d["kept_lang"], d["dropped_lang"]))
    assert ev.body.startswith("Doc 1 (primary, in English [en]; Title:")


def test_crosslingual_drops_parallel_copy_with_trace(retriever, xquad):
    # Latin-script parallel copies share enough names and numbers to be caught untranslated.
    q = _question(xquad, "de")
    integ = Integrator(
        retriever,
        CrossLingualConfig(target_langs=["en"], token_budget=100_000, dedup_threshold=0.3),
        translator=IdentityTranslator(),
    )
    ev = integ.gather([IntegrationQuery(q.question, "de")], 4)[0]
    assert ev.trace.duplicates, "expected the en copy of a retrieved de paragraph to be dropped"
    for dup in ev.trace.duplicates:
        assert dup["kept_lang"] == "de" and dup["dropped_lang"] == "en"
    paragraphs = [p.paragraph for p in ev.passages]
    assert len(paragraphs) == len(set(paragraphs))


def test_token_budget_is_respected_and_cut_at_sentence_boundary(retriever, xquad):
    counter = TokenCounter()  # characters
    for strategy in ("mono", "concat", "crosslingual"):
        integ = Integrator(
            retriever, CrossLingualConfig(strategy=strategy, token_budget=700), translator=IdentityTranslator()
        )
        queries = [IntegrationQuery(_question(xquad, lang, 3).question, lang) for lang in LANGS]
        for ev in integ.gather(queries, 3):
            assert counter(ev.body) <= 700 and ev.trace.tokens == counter(ev.body)
            assert ev.trace.dropped_for_budget or ev.trace.truncated, strategy
            if ev.trace.truncated:
                cut = next(p for p in ev.passages if p.doc_id == ev.trace.truncated)
                assert cut.shown != cut.text and cut.shown.rstrip()[-1] in ".!?。！？", cut.shown[-20:]


def test_budget_hard_cuts_a_single_sentence_too_long():
    trace = EvidenceTrace(strategy="mono")
    passage = EvidencePassage(doc_id="x", lang="en", title="T", text="word " * 200 + ".", score=1.0, role="primary")
    kept, body = render_evidence([passage], "mono", "translate", 50, TokenCounter(), trace)
    assert len(body) <= 50 and kept and trace.truncated == "x"


def test_cached_translator_in_the_loop(retriever, xquad, tmp_path: Path):
    backend = IdentityTranslator()
    translator = CachedTranslator(backend, TranslationCache(tmp_path / "c.sqlite"))
    integ = Integrator(retriever, CrossLingualConfig(), translator=translator)
    queries = [IntegrationQuery(_question(xquad, "zh").question, "zh")]
    first = integ.gather(queries, 3)
    calls = backend.calls
    assert calls > 0
    second = integ.gather(queries, 3)
    assert backend.calls == calls
    assert first[0].body == second[0].body
    assert set(first[0].trace.query_translations) == {"en", "de"}


def test_config_builds_integrator_and_rejects_bad_values(retriever):
    config = load_config(
        None,
        [
            "crosslingual.strategy=crosslingual",
            "crosslingual.translator=none",
            "crosslingual.target_langs=[en]",
            "crosslingual.token_budget=300",
        ],
    )
    integ = build_integrator(config, retriever)
    assert integ.strategy == "crosslingual" and integ.token_budget == 300
    assert integ._languages_for("de") == ["de", "en"]
    with pytest.raises(CrosearchError, match="crosslingual.render"):
        load_config(None, ["crosslingual.render=sideways"])
    with pytest.raises(CrosearchError, match="translator_model"):
        build_integrator(load_config(None, ["crosslingual.translator=hf-seq2seq"]), retriever)
    with pytest.raises(CrosearchError, match="unknown integration strategy"):
        # Past the config's own validation (model_construct), the integrator still refuses it.
        Integrator(retriever, CrossLingualConfig.model_construct(strategy="weird"))
