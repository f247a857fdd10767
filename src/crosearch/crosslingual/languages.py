"""Language names and parallel few-shot examples for prompting a causal LM to translate.

The examples are three short parallel sentences (two questions, because search
queries are mostly questions, and one statement, because passages are
statements). For any source/target pair the prompt shows the same three
sentences in both languages, so one table serves every direction.
"""

from __future__ import annotations

LANGUAGE_NAMES: dict[str, str] = {
    "en": "English", "de": "German", "es": "Spanish", "fr": "French", "it": "Italian", "pt": "Portuguese",
    "ro": "Romanian", "ru": "Russian", "el": "Greek", "tr": "Turkish", "ar": "Arabic", "hi": "Hindi",
    "vi": "Vietnamese", "th": "Thai", "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "nl": "Dutch",
    "pl": "Polish", "uk": "Ukrainian", "fa": "Persian", "id": "Indonesian", "bn": "Bengali", "sw": "Swahili",
    "te": "Telugu", "fi": "Finnish", "sv": "Swedish", "da": "Danish", "no": "Norwegian", "hu": "Hungarian",
    "cs": "Czech", "he": "Hebrew", "km": "Khmer", "ms": "Malay",
}

FEW_SHOT: dict[str, tuple[str, str, str]] = {
    "en": ("When was the university founded?", "How many people live in the city?",
           "The river flows through three countries before it reaches the sea."),
    "de": ("Wann wurde die Universität gegründet?", "Wie viele Menschen leben in der Stadt?",
           "Der Fluss fließt durch drei Länder, bevor er das Meer erreicht."),
    "es": ("¿Cuándo se fundó la universidad?", "¿Cuántas personas viven en la ciudad?",
           "El río atraviesa tres países antes de llegar al mar."),
    "fr": ("Quand l'université a-t-elle été fondée ?", "Combien de personnes vivent dans la ville ?",
           "Le fleuve traverse trois pays avant d'atteindre la mer."),
    "it": ("Quando è stata fondata l'università?", "Quante persone vivono in città?",
           "Il fiume attraversa tre paesi prima di raggiungere il mare."),
    "pt": ("Quando a universidade foi fundada?", "Quantas pessoas vivem na cidade?",
           "O rio atravessa três países antes de chegar ao mar."),
    "ro": ("Când a fost fondată universitatea?", "Câți oameni locuiesc în oraș?",
           "Râul traversează trei țări înainte de a ajunge la mare."),
    "ru": ("Когда был основан университет?", "Сколько людей живёт в городе?",
           "Река протекает через три страны, прежде чем достигает моря."),
    "el": ("Πότε ιδρύθηκε το πανεπιστήμιο;", "Πόσοι άνθρωποι ζουν στην πόλη;",
           "Ο ποταμός διασχίζει τρεις χώρες πριν φτάσει στη θάλασσα."),
    "tr": ("Üniversite ne zaman kuruldu?", "Şehirde kaç kişi yaşıyor?",
           "Nehir denize ulaşmadan önce üç ülkeden geçer."),
    "ar": ("متى تأسست الجامعة؟", "كم عدد الأشخاص الذين يعيشون في المدينة؟",
           "يمر النهر عبر ثلاث دول قبل أن يصل إلى البحر."),
    "hi": ("विश्वविद्यालय की स्थापना कब हुई थी?", "शहर में कितने लोग रहते हैं?",
           "समुद्र तक पहुँचने से पहले नदी तीन देशों से होकर बहती है।"),
    "vi": ("Trường đại học được thành lập khi nào?", "Có bao nhiêu người sống trong thành phố?",
           "Con sông chảy qua ba quốc gia trước khi đổ ra biển."),
    "th": ("มหาวิทยาลัยก่อตั้งขึ้นเมื่อใด", "มีคนอาศัยอยู่ในเมืองกี่คน",
           "แม่น้ำไหลผ่านสามประเทศก่อนจะไหลลงสู่ทะเล"),
    "zh": ("这所大学是什么时候成立的？", "这座城市有多少人口？",
           "这条河在流入大海之前流经三个国家。"),
    "ja": ("その大学はいつ設立されましたか？", "その都市には何人が住んでいますか？",
           "その川は海に達する前に三つの国を流れる。"),
    "ko": ("그 대학은 언제 설립되었습니까?", "그 도시에는 몇 명이 살고 있습니까?",
           "그 강은 바다에 이르기 전에 세 나라를 흐른다."),
}

# Hugging Face seq2seq translators name languages differently: NLLB-200 uses
# FLORES-200 codes, M2M100 ISO 639-1, multi-target Marian models ISO 639-3 tags.
NLLB_CODES: dict[str, str] = {
    "en": "eng_Latn", "de": "deu_Latn", "es": "spa_Latn", "fr": "fra_Latn", "it": "ita_Latn", "pt": "por_Latn",
    "ro": "ron_Latn", "ru": "rus_Cyrl", "el": "ell_Grek", "tr": "tur_Latn", "ar": "arb_Arab", "hi": "hin_Deva",
    "vi": "vie_Latn", "th": "tha_Thai", "zh": "zho_Hans", "ja": "jpn_Jpan", "ko": "kor_Hang", "nl": "nld_Latn",
    "pl": "pol_Latn", "uk": "ukr_Cyrl", "fa": "pes_Arab", "id": "ind_Latn", "bn": "ben_Beng", "sw": "swh_Latn",
    "te": "tel_Telu", "fi": "fin_Latn", "sv": "swe_Latn", "da": "dan_Latn", "no": "nob_Latn", "hu": "hun_Latn",
    "cs": "ces_Latn", "he": "heb_Hebr", "km": "khm_Khmr", "ms": "zsm_Latn",
}
ISO639_3: dict[str, str] = {
    "en": "eng", "de": "deu", "es": "spa", "fr": "fra", "it": "ita", "pt": "por", "ro": "ron", "ru": "rus",
    "el": "ell", "tr": "tur", "ar": "ara", "hi": "hin", "vi": "vie", "th": "tha", "zh": "zho", "ja": "jpn",
    "ko": "kor", "nl": "nld", "pl": "pol", "uk": "ukr", "fa": "fas", "id": "ind", "bn": "ben", "sw": "swa",
    "fi": "fin", "sv": "swe", "da": "dan", "hu": "hun", "cs": "ces", "he": "heb",
}


def language_name(code: str) -> str:
    """English name of a language code (the code itself when unknown)."""
    return LANGUAGE_NAMES.get(code, code)
