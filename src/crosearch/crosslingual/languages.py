"""Language codes and names (from lingua), and parallel few-shot examples for prompting a causal LM to translate.

The examples are three short parallel sentences (two questions, because search
queries are mostly questions, and one statement, because passages are
statements). For any source/target pair the prompt shows the same three
sentences in both languages, so one table serves every direction.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import regex

if TYPE_CHECKING:  # lingua is imported lazily: the package is large and most commands never need it
    from lingua import Language

FEW_SHOT: dict[str, tuple[str, str, str]] = {
    "en": (
        "When was the university founded?",
        "How many people live in the city?",
        "The river flows through three countries before it reaches the sea.",
    ),
    "de": (
        "Wann wurde die Universität gegründet?",
        "Wie viele Menschen leben in der Stadt?",
        "Der Fluss fließt durch drei Länder, bevor er das Meer erreicht.",
    ),
    "es": (
        "¿Cuándo se fundó la universidad?",
        "¿Cuántas personas viven en la ciudad?",
        "El río atraviesa tres países antes de llegar al mar.",
    ),
    "fr": (
        "Quand l'université a-t-elle été fondée ?",
        "Combien de personnes vivent dans la ville ?",
        "Le fleuve traverse trois pays avant d'atteindre la mer.",
    ),
    "it": (
        "Quando è stata fondata l'università?",
        "Quante persone vivono in città?",
        "Il fiume attraversa tre paesi prima di raggiungere il mare.",
    ),
    "pt": (
        "Quando a universidade foi fundada?",
        "Quantas pessoas vivem na cidade?",
        "O rio atravessa três países antes de chegar ao mar.",
    ),
    "ro": (
        "Când a fost fondată universitatea?",
        "Câți oameni locuiesc în oraș?",
        "Râul traversează trei țări înainte de a ajunge la mare.",
    ),
    "ru": (
        "Когда был основан университет?",
        "Сколько людей живёт в городе?",
        "Река протекает через три страны, прежде чем достигает моря.",
    ),
    "el": (
        "Πότε ιδρύθηκε το πανεπιστήμιο;",
        "Πόσοι άνθρωποι ζουν στην πόλη;",
        "Ο ποταμός διασχίζει τρεις χώρες πριν φτάσει στη θάλασσα.",
    ),
    "tr": (
        "Üniversite ne zaman kuruldu?",
        "Şehirde kaç kişi yaşıyor?",
        "Nehir denize ulaşmadan önce üç ülkeden geçer.",
    ),
    "ar": (
        "متى تأسست الجامعة؟",
        "كم عدد الأشخاص الذين يعيشون في المدينة؟",
        "يمر النهر عبر ثلاث دول قبل أن يصل إلى البحر.",
    ),
    "hi": ("विश्वविद्यालय की स्थापना कब हुई थी?", "शहर में कितने लोग रहते हैं?", "समुद्र तक पहुँचने से पहले नदी तीन देशों से होकर बहती है।"),
    "vi": (
        "Trường đại học được thành lập khi nào?",
        "Có bao nhiêu người sống trong thành phố?",
        "Con sông chảy qua ba quốc gia trước khi đổ ra biển.",
    ),
    "th": ("มหาวิทยาลัยก่อตั้งขึ้นเมื่อใด", "มีคนอาศัยอยู่ในเมืองกี่คน", "แม่น้ำไหลผ่านสามประเทศก่อนจะไหลลงสู่ทะเล"),
    "zh": ("这所大学是什么时候成立的？", "这座城市有多少人口？", "这条河在流入大海之前流经三个国家。"),
    "ja": (
        "その大学はいつ設立されましたか？",
        "その都市には何人が住んでいますか？",
        "その川は海に達する前に三つの国を流れる。",
    ),
    "ko": (
        "그 대학은 언제 설립되었습니까?",
        "그 도시에는 몇 명이 살고 있습니까?",
        "그 강은 바다에 이르기 전에 세 나라를 흐른다.",
    ),
}

# Hugging Face seq2seq translators name languages differently: NLLB-200 uses
# FLORES-200 codes, M2M100 ISO 639-1, multi-target Marian models ISO 639-3 tags
# (:func:`iso639_3`). FLORES codes name a script and pick one member of a macro-language
# (arb, pes, swh, zsm), which lingua does not know, so they stay a table.
NLLB_CODES: dict[str, str] = {
    "en": "eng_Latn",
    "de": "deu_Latn",
    "es": "spa_Latn",
    "fr": "fra_Latn",
    "it": "ita_Latn",
    "pt": "por_Latn",
    "ro": "ron_Latn",
    "ru": "rus_Cyrl",
    "el": "ell_Grek",
    "tr": "tur_Latn",
    "ar": "arb_Arab",
    "hi": "hin_Deva",
    "vi": "vie_Latn",
    "th": "tha_Thai",
    "zh": "zho_Hans",
    "ja": "jpn_Jpan",
    "ko": "kor_Hang",
    "nl": "nld_Latn",
    "pl": "pol_Latn",
    "uk": "ukr_Cyrl",
    "fa": "pes_Arab",
    "id": "ind_Latn",
    "bn": "ben_Beng",
    "sw": "swh_Latn",
    "te": "tel_Telu",
    "fi": "fin_Latn",
    "sv": "swe_Latn",
    "da": "dan_Latn",
    "no": "nob_Latn",
    "hu": "hun_Latn",
    "cs": "ces_Latn",
    "he": "heb_Hebr",
    "km": "khm_Khmr",
    "ms": "zsm_Latn",
}

# Names that lingua lacks or spells unlike the prompts: Khmer is not a lingua language, and
# lingua calls Norwegian Bokmål "Bokmal".
_EXTRA_NAMES: dict[str, str] = {"km": "Khmer", "nb": "Norwegian"}


def base_language(lang: str | None) -> str | None:
    """``'zh-CN'``, ``'pt_BR'``, ``'DE'`` -> ``'zh'``, ``'pt'``, ``'de'``; ``None``/empty -> ``None``."""
    if not lang:
        return None
    code = regex.split(r"[-_]", lang.strip().lower(), maxsplit=1)[0]
    return {"no": "nb", "iw": "he", "in": "id"}.get(code, code) or None


def lingua_language(lang: str | None) -> Language | None:
    """The lingua language for an ISO 639-1 (or 639-3) code, or ``None`` if lingua lacks it."""
    from lingua import IsoCode639_1, IsoCode639_3, Language

    code = base_language(lang)
    if code is None:
        return None
    try:
        if len(code) == 2:
            return Language.from_iso_code_639_1(IsoCode639_1.from_str(code))
        if len(code) == 3:
            return Language.from_iso_code_639_3(IsoCode639_3.from_str(code))
    except ValueError:
        return None
    return None


@functools.cache
def language_name(code: str) -> str:
    """English name of a language code (``de``, ``zh_cn``, ``pt-BR``), or the code itself when unknown.

    English, because the prompts around it are written in English: a base model follows
    "the answer must be written in German" better than an ISO code.
    """
    base = base_language(code)
    if base in _EXTRA_NAMES:
        return _EXTRA_NAMES[base]
    language = lingua_language(code)
    return language.name.title() if language is not None else code


def iso639_3(code: str) -> str:
    """The ISO 639-3 code of an ISO 639-1 code (``de`` -> ``deu``), or the code itself when lingua lacks it."""
    language = lingua_language(code)
    return language.iso_code_639_3.name.lower() if language is not None else code
