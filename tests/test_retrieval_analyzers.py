"""Analyzers: one per language, script-aware segmentation, a generic path that never raises."""

from __future__ import annotations

import pytest

from crosearch.retrieval.analyzers import ANALYZER_VERSION, get_analyzer, stopwords_for


def test_english_stems_and_drops_stopwords():
    terms = get_analyzer("en")("The Panthers were running to the stadiums")
    assert terms == ["panther", "were", "run", "stadium"]


def test_chinese_is_segmented_into_many_terms():
    text = "黑豹队的防守只丢了308分"
    terms = get_analyzer("zh")(text)
    # A whole Han run as one token is what breaks bm25s's default tokenizer.
    assert "黑豹队的防守只丢了" not in terms
    assert {"黑", "豹", "黑豹", "防守"} <= set(terms)
    assert "308" in terms
    jieba_terms = get_analyzer("zh", "jieba")(text)
    assert "黑豹" in jieba_terms and "防守" in jieba_terms and len(jieba_terms) > 3


def test_hindi_keeps_vowel_signs():
    terms = get_analyzer("hi")("पैंथर्स डिफ़ेंस लीग")
    # Python's re splits "पैंथर्स" at the vowel sign; the regex module keeps the word whole.
    assert terms[0] == "पैंथर्स"
    assert all(len(t) > 1 for t in terms)


def test_hindi_stopwords_removed():
    assert get_analyzer("hi")("लीग में अंक") == [t for t in get_analyzer("hi")("लीग अंक")]


def test_thai_is_segmented_by_script_whatever_the_code():
    text = "ภูเก็ตเป็นเกาะ"
    for code in ("th", None, "xx"):
        terms = get_analyzer(code)(text)
        assert len(terms) > 3
        # Grapheme bigrams: a tone/vowel mark never stands alone as a term.
        assert all(len(t) >= 2 for t in terms)
    assert "ก็ต" in get_analyzer("th")(text)  # consonant + vowel sign + tone mark + consonant


@pytest.mark.parametrize("code", ["xx", "tlh-Latn", "", None, "th_TH", "123"])
def test_unknown_codes_use_generic_path(code):
    terms = get_analyzer(code)("Ünïcödé ＡＢＣ ﬁne 日本語のテキスト 42")
    assert "ünïcödé" in terms and "abc" in terms and "fine" in terms and "42" in terms
    assert "日本" in terms  # Han bigram
    assert get_analyzer(code)("") == []
    assert get_analyzer(code)("  ,,, ") == []


def test_region_subtag_maps_to_language():
    assert get_analyzer("de-AT").spec.stemmer == "german"
    assert get_analyzer("EN").spec.stemmer == "english"


def test_arabic_russian_spanish_have_stemmers_and_stopwords():
    for code, name in (("ar", "arabic"), ("ru", "russian"), ("es", "spanish")):
        assert get_analyzer(code).spec.stemmer == name
        assert len(stopwords_for(code)) > 10
    assert get_analyzer("ru")("книги книгами") == ["книг", "книг"]
    assert "في" not in get_analyzer("ar")("في القاهرة")


def test_mixed_script_run_is_split_by_script():
    terms = get_analyzer("zh")("iPhone手机")
    assert "iphone" in terms and "手机" in terms


def test_spec_records_version():
    assert get_analyzer("vi").spec.name.endswith(f"v{ANALYZER_VERSION}")


def test_unknown_zh_segmenter_is_a_clear_error():
    from crosearch.errors import CrosearchError

    with pytest.raises(CrosearchError, match="segmenter"):
        get_analyzer("zh", "nope")  # type: ignore[arg-type]
