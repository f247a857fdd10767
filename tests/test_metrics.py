"""Answer metrics: hand-checked cases per language and agreement with the official SQuAD/MLQA scripts."""

from __future__ import annotations

import gzip
import json
import random
import re
import string
import sys
import unicodedata
from collections import Counter
from importlib import resources

import pytest

from crosearch.config import MetricsConfig, load_config
from crosearch.errors import CrosearchError
from crosearch.eval.metrics import (
    QAScores,
    aggregate_scores,
    answer_language_match,
    answer_tokens,
    char3_recall,
    exact_match,
    f1_score,
    normalize_answer,
    score_prediction,
)

XQUAD = resources.files("crosearch") / "resources" / "xquad"


def load_xquad(lang: str) -> list[tuple[str, str, int]]:
    """(context, answer text, answer start) for every question of one XQuAD language."""
    with gzip.open(str(XQUAD / f"xquad.{lang}.json.gz"), "rt", encoding="utf-8") as handle:
        data = json.load(handle)
    return [
        (p["context"], a["text"], a["answer_start"])
        for article in data["data"]
        for p in article["paragraphs"]
        for q in p["qas"]
        for a in q["answers"]
    ]


# --- the official SQuAD v1.1 evaluate script's logic, re-implemented as the reference ---


def squad_normalize_answer(s):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def squad_f1_score(prediction, ground_truth):
    prediction_tokens = squad_normalize_answer(prediction).split()
    ground_truth_tokens = squad_normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def squad_exact_match_score(prediction, ground_truth):
    return squad_normalize_answer(prediction) == squad_normalize_answer(ground_truth)


# --- the official MLQA evaluate script's logic (mlqa_evaluation_v1.py), re-implemented ---

MLQA_PUNCT = {chr(i) for i in range(sys.maxunicode) if unicodedata.category(chr(i)).startswith("P")}.union(
    string.punctuation
)
MLQA_WHITESPACE_LANGS = ["en", "es", "hi", "vi", "de", "ar"]
MLQA_MIXED_SEGMENTATION_LANGS = ["zh"]


def mlqa_mixed_segmentation(text):
    segs_out = []
    temp_str = ""
    for char in text:
        if re.search(r"[\u4e00-\u9fa5]", char) or char in MLQA_PUNCT:
            if temp_str != "":
                segs_out.extend(temp_str.split())
                temp_str = ""
            segs_out.append(char)
        else:
            temp_str += char
    if temp_str != "":
        segs_out.extend(temp_str.split())
    return segs_out


def mlqa_normalize_answer(s, lang):
    def remove_articles(text, lang):
        if lang == "en":
            return re.sub(r"\b(a|an|the)\b", " ", text)
        if lang == "de":
            return re.sub(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b", " ", text)
        if lang == "zh":
            return text
        raise ValueError(lang)

    def white_space_fix(text, lang):
        if lang in MLQA_WHITESPACE_LANGS:
            tokens = text.split()
        elif lang in MLQA_MIXED_SEGMENTATION_LANGS:
            tokens = mlqa_mixed_segmentation(text)
        else:
            raise ValueError(lang)
        return " ".join([t for t in tokens if t.strip() != ""])

    def remove_punc(text):
        return "".join(ch for ch in text if ch not in MLQA_PUNCT)

    return white_space_fix(remove_articles(remove_punc(s.lower()), lang), lang)


def mlqa_f1_score(prediction, ground_truth, lang):
    prediction_tokens = mlqa_normalize_answer(prediction, lang).split()
    ground_truth_tokens = mlqa_normalize_answer(ground_truth, lang).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def mlqa_exact_match_score(prediction, ground_truth, lang):
    return mlqa_normalize_answer(prediction, lang) == mlqa_normalize_answer(ground_truth, lang)


def make_pairs(lang: str, n: int = 300, seed: int = 0) -> list[tuple[str, str]]:
    """(prediction, gold) pairs from XQuAD: golds against exact, extended, truncated and unrelated spans."""
    rng = random.Random(seed)
    items = rng.sample(load_xquad(lang), n)
    # Chinese has no spaces: move span edges by characters there, by words elsewhere.
    unit = "char" if lang == "zh" else "word"
    pairs = []
    for i, (context, gold, start) in enumerate(items):
        end = start + len(gold)
        kind = i % 6
        if kind == 0:
            pred = gold
        elif kind in (1, 2):  # widen the span on one or both sides
            left, right = rng.randint(0, 3), rng.randint(1, 3)
            pred = _widen(context, start, end, left if kind == 2 else 0, right, unit)
        elif kind == 3:  # cut the span short
            cut = max(1, len(gold) // 2) if unit == "char" else gold.rfind(" ")
            pred = gold[:cut] if cut > 0 else gold[: max(1, len(gold) - 2)]
        elif kind == 4:  # an unrelated stretch of the same context
            a = rng.randrange(0, max(1, len(context) - 20))
            pred = context[a : a + rng.randint(3, 40)]
        else:  # case, punctuation and article noise around the exact answer
            pred = rng.choice(["The ", "", "« ", "("]) + gold.upper() + rng.choice([".", "!", ")", " ,", ""])
        pairs.append((pred, gold))
    return pairs


def _widen(context: str, start: int, end: int, left: int, right: int, unit: str) -> str:
    if unit == "char":
        return context[max(0, start - left) : end + right]
    before = context[:start].split(" ")
    after = context[end:].split(" ")
    prefix = " ".join(before[len(before) - left :]) if left else ""
    suffix = " ".join(after[: right + 1])
    return (prefix + context[start:end] + suffix).strip()


def _has_unicode_punct(text: str) -> bool:
    return any(unicodedata.category(ch).startswith("P") and ch not in string.punctuation for ch in text)


# --------------------------------------------------------------------------------------------
# hand-checked cases, one block per language
# --------------------------------------------------------------------------------------------


def test_english_articles_case_punctuation():
    assert normalize_answer("The Denver Broncos!", "en") == "denver broncos"
    assert exact_match("the Denver Broncos", ["Carolina Panthers", "Denver Broncos"], "en") == 1.0
    # pred: denver broncos won (3), gold: denver broncos (2): P=2/3, R=1
    assert f1_score("Denver Broncos won", ["The Denver Broncos"], "en") == pytest.approx(0.8)
    assert f1_score("Panthers", ["Denver Broncos"], "en") == 0.0


def test_spanish_articles():
    assert exact_match("La Universidad de Salamanca", ["universidad de Salamanca"], "es") == 1.0
    # pred: reyes católicos de españa (4), gold: reyes católicos (2)
    assert f1_score("los Reyes Católicos de España", ["Reyes Católicos"], "es") == pytest.approx(2 / 3)
    # English articles are not Spanish ones
    assert normalize_answer("the casa", "es") == "the casa"


def test_german_articles():
    assert exact_match("Die Universität zu Köln", ["Universität zu Köln"], "de") == 1.0
    assert normalize_answer("dem Rhein", "de") == "rhein"
    # pred: in jahr 1990 (3), gold: 1990 (1): P=1/3, R=1
    assert f1_score("in dem Jahr 1990", ["1990"], "de") == pytest.approx(0.5)


def test_hindi_keeps_vowel_signs_and_drops_danda():
    assert answer_tokens("नई दिल्ली", "hi") == ["नई", "दिल्ली"]
    assert exact_match("नई दिल्ली।", ["नई दिल्ली"], "hi") == 1.0
    # 5 tokens against 2, both gold tokens found
    assert f1_score("भारत की राजधानी नई दिल्ली", ["नई दिल्ली"], "hi") == pytest.approx(2 * 0.4 / 1.4)


def test_vietnamese_articles():
    assert exact_match("những chiếc xe", ["xe"], "vi") == 1.0
    assert f1_score("thành phố Hà Nội", ["Hà Nội"], "vi") == pytest.approx(2 / 3)


def test_russian_guillemets_and_case():
    assert exact_match("«Москва»", ["москва"], "ru") == 1.0
    assert f1_score("Москва, Россия", ["Москва"], "ru") == pytest.approx(2 / 3)


def test_chinese_character_tokens():
    assert answer_tokens("北京大学（PKU）", "zh") == ["北", "京", "大", "学", "pku"]
    assert answer_tokens("136次", "zh") == answer_tokens("136 次", "zh") == ["136", "次"]
    assert exact_match("北京大学。", ["北京 大学"], "zh") == 1.0
    # 4 characters against 2, both found: P=1/2, R=1
    assert f1_score("北京大学", ["北京"], "zh") == pytest.approx(2 / 3)
    # full-width digits equal ASCII ones
    assert exact_match("２０１４年", ["2014年"], "zh") == 1.0


def test_arabic_article_prefix_and_diacritics():
    assert normalize_answer("الجامعة العربية", "ar") == "جامعة عربية"
    assert exact_match("القاهرة", ["قاهرة"], "ar") == 1.0
    assert f1_score("جامعة القاهرة", ["القاهرة"], "ar") == pytest.approx(2 / 3)
    # "ال" inside a word is not an article (MLQA's pattern would cut this word)
    assert normalize_answer("مال", "ar") == "مال"
    assert exact_match("مُحَمَّد", ["محمد"], "ar") == 1.0


def test_thai_goes_through_the_script_path():
    # Thai is not a shipped language; a made-up code must segment the same way
    tokens = answer_tokens("กรุงเทพ", "th")
    assert tokens == ["ก", "รุ", "ง", "เ", "ท", "พ"]  # vowel marks stay with their consonant
    assert answer_tokens("กรุงเทพ", "xx") == tokens == answer_tokens("กรุงเทพ", None)
    assert f1_score("กรุงเทพมหานคร", ["กรุงเทพ"], "th") == pytest.approx(2 / 3)
    assert exact_match("กรุงเทพมหานคร", ["กรุงเทพ"], "th") == 0.0
    assert char3_recall("กรุงเทพมหานคร", ["กรุงเทพ"], "th") == 1.0


def test_french_elided_article():
    assert exact_match("l'Homme", ["homme"], "fr") == 1.0
    assert exact_match("L’Aquila", ["Aquila"], "it") == 1.0


def test_char3_recall_partial_credit_for_transliteration():
    # gold 3-grams: pek eki kin ing; the prediction has the first three
    assert char3_recall("Pekin", ["Peking"]) == pytest.approx(0.75)
    assert f1_score("Pekin", ["Peking"]) == 0.0
    assert char3_recall("Tchaikovski", ["Tchaikovsky", "Chaikovsky"]) == pytest.approx(8 / 9)
    assert char3_recall("Berlin", ["Peking"]) == 0.0
    # words shorter than three characters count whole; in Han runs they are found inside longer runs
    assert char3_recall("UN", ["UN"]) == 1.0
    assert char3_recall("UNESCO", ["UN"]) == 0.0
    assert char3_recall("北京大学", ["北京"], "zh") == 1.0
    assert char3_recall("莫斯科", ["北京"], "zh") == 0.0
    # 3-grams of 卡万肖特: 卡万肖 万肖特; the prediction has the first
    assert char3_recall("卡万肖", ["卡万·肖特"], "zh") == pytest.approx(0.5)


def test_max_over_golds_and_input_errors():
    assert f1_score("Denver", ["Denver Broncos", "Denver"], "en") == 1.0
    assert exact_match("Denver", "Denver", "en") == 1.0  # a lone string is one gold, not characters
    with pytest.raises(CrosearchError, match="no gold answers"):
        f1_score("x", [], "en")
    with pytest.raises(CrosearchError, match="prediction must be a string"):
        exact_match(None, ["x"], "en")  # type: ignore[arg-type]
    with pytest.raises(CrosearchError, match="must be strings"):
        char3_recall("x", ["x", 3])  # type: ignore[list-item]


# --------------------------------------------------------------------------------------------
# agreement with the official scripts on XQuAD
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["en", "de", "zh", "es", "hi", "vi", "ru", "ar"])
def test_xquad_gold_answers_match_themselves(lang):
    golds = [gold for _, gold, _ in load_xquad(lang)]
    assert len(golds) == 1190
    assert all(exact_match(g, [g], lang) == 1.0 for g in golds)
    assert all(f1_score(g, [g], lang) == 1.0 for g in golds)
    assert all(char3_recall(g, [g], lang) == 1.0 for g in golds)


def _spread(values: list[float]) -> tuple[int, int, int]:
    return sum(v == 1.0 for v in values), sum(0.0 < v < 1.0 for v in values), sum(v == 0.0 for v in values)


def test_english_agrees_with_official_squad_v11():
    pairs = make_pairs("en")
    compared = differing = 0
    for pred, gold in pairs:
        ours_em, ours_f1 = exact_match(pred, [gold], "en"), f1_score(pred, [gold], "en")
        # MLQA's English = SQuAD's plus Unicode punctuation removal: must agree everywhere
        assert ours_em == float(mlqa_exact_match_score(pred, gold, "en")), (pred, gold)
        assert ours_f1 == pytest.approx(mlqa_f1_score(pred, gold, "en")), (pred, gold)
        ref_em, ref_f1 = float(squad_exact_match_score(pred, gold)), squad_f1_score(pred, gold)
        if _has_unicode_punct(pred + gold):
            differing += (ours_em, round(ours_f1, 9)) != (ref_em, round(ref_f1, 9))
            continue
        compared += 1
        assert ours_em == ref_em, (pred, gold)
        assert ours_f1 == pytest.approx(ref_f1), (pred, gold)
    assert compared >= 250
    assert differing <= 15
    f1s = [f1_score(p, [g], "en") for p, g in pairs]
    full, partial, zero = _spread(f1s)
    assert full >= 50 and partial >= 50 and zero >= 20  # the pairs exercise every outcome


@pytest.mark.parametrize("lang", ["de", "zh"])
def test_agrees_with_official_mlqa(lang):
    pairs = make_pairs(lang)
    for pred, gold in pairs:
        assert exact_match(pred, [gold], lang) == float(mlqa_exact_match_score(pred, gold, lang)), (pred, gold)
        assert f1_score(pred, [gold], lang) == pytest.approx(mlqa_f1_score(pred, gold, lang)), (pred, gold)
    full, partial, zero = _spread([f1_score(p, [g], lang) for p, g in pairs])
    assert full >= 50 and partial >= 50 and zero >= 20


# --------------------------------------------------------------------------------------------
# answer language
# --------------------------------------------------------------------------------------------

GERMAN = "Der Rhein fließt durch die Schweiz, Deutschland und die Niederlande in die Nordsee."


def test_german_sentence_is_german_not_english():
    assert answer_language_match(GERMAN, "de") == 1.0
    assert answer_language_match(GERMAN, "en") == 0.0
    assert answer_language_match("The Rhine flows through Germany into the North Sea.", "en") == 1.0


def test_chinese_and_arabic():
    assert answer_language_match("北京是中华人民共和国的首都", "zh") == 1.0
    assert answer_language_match("北京是中华人民共和国的首都", "en") == 0.0
    assert answer_language_match("جامعة القاهرة هي جامعة حكومية في مصر", "ar") == 1.0
    assert answer_language_match("جامعة القاهرة", "zh-CN") == 0.0
    # kana marks Japanese
    assert answer_language_match("東京タワーです", "zh") == 0.0
    assert answer_language_match("東京タワーです", "ja") == 1.0


def test_detect_language_chooses_among_the_collection_languages():
    from crosearch.eval.langid import detect_language

    assert detect_language(GERMAN, ["en", "de", "zh"]) == "de"
    assert detect_language("北京是中华人民共和国的首都", ["en", "de", "zh"]) == "zh"
    assert detect_language(GERMAN) == "de"  # no candidates: every lingua language
    # one language lingua knows among the candidates: that one, without asking lingua
    assert detect_language("anything at all", ["th", "xx"]) == "th"
    assert detect_language("12345 !!", ["en", "de"]) is None


def test_short_answers_and_undecidable_cases():
    # a short name in the question's script counts; an obviously foreign phrase does not
    assert answer_language_match("Albert Einstein", "de") == 1.0
    assert answer_language_match("Albert Einstein", "zh") == 0.0
    assert answer_language_match("Москва", "ru") == 1.0
    assert answer_language_match("die Universität", "en") == 0.0
    assert answer_language_match("", "en") is None
    assert answer_language_match("1990 – 2014", "de") is None
    assert answer_language_match("Paris", "xx") is None  # lingua does not know the language


def test_language_match_config_is_used():
    strict = MetricsConfig(lang_sure=0.05)  # lingua overrules script matches almost always
    assert answer_language_match("Albert Einstein", "en", strict) == 0.0
    config = load_config(None, ["metrics.lang_min_words=2"])
    assert config.metrics.lang_min_words == 2


# --------------------------------------------------------------------------------------------
# scores and aggregation
# --------------------------------------------------------------------------------------------


def test_score_prediction_and_aggregate():
    de = score_prediction(GERMAN, ["Rhein"], "de")
    assert de.em == 0.0 and de.char3 == 1.0 and de.lang_match == 1.0
    # 13 words minus der/die/die/die = 9 tokens, the gold one among them: P=1/9, R=1
    assert de.f1 == pytest.approx(0.2)
    zh = score_prediction("北京", ["北京"], "zh", language_match=False)
    assert zh == QAScores(em=1.0, f1=1.0, char3=1.0, lang_match=None)

    items = [("zh", zh), ("zh", QAScores(0.0, 0.5, 0.5, 0.0)), ("de", de)]
    report = aggregate_scores(items)
    assert list(report.per_language) == ["de", "zh"]
    assert report.per_language["zh"].em == 0.5
    assert report.per_language["zh"].lang_match == 0.0 and report.per_language["zh"].lang_match_n == 1
    assert report.macro.em == pytest.approx((0.0 + 0.5) / 2)
    assert report.micro.em == pytest.approx(1 / 3)
    assert report.macro.lang_match == pytest.approx(0.5)
    assert report.macro.n == 3
    as_percent = report.to_dict(scale=100)
    assert as_percent["per_language"]["zh"]["f1"] == pytest.approx(75.0)
    assert aggregate_scores([]).macro is None
