import pytest

from crosearch.data.passages import paragraph_to_passages, split_sentences, window_spans
from crosearch.types import Passage


def test_english_abbreviations_initials_and_decimals():
    text = (
        "Dr. Smith joined the U.S. Army in 1942. He earned 3.5 million dollars! Why? "
        "J. R. R. Tolkien wrote it, e.g. in Oxford. The end"
    )
    assert split_sentences(text) == [
        "Dr. Smith joined the U.S. Army in 1942.",
        "He earned 3.5 million dollars!",
        "Why?",
        "J. R. R. Tolkien wrote it, e.g. in Oxford.",
        "The end",
    ]


def test_quotes_close_a_sentence_and_lowercase_continues_it():
    assert split_sentences('He said "Stop." Then he left. and so on') == ['He said "Stop."', "Then he left. and so on"]


def test_chinese_needs_no_space():
    text = "过去，体罚是最常见的课堂纪律之一。大部分西方国家已经禁止！为什么？因为它有害"
    assert split_sentences(text) == [
        "过去，体罚是最常见的课堂纪律之一。",
        "大部分西方国家已经禁止！",
        "为什么？",
        "因为它有害",
    ]


def test_hindi_danda_with_and_without_space():
    text = "यह पहला वाक्य है। यह दूसरा वाक्य है।यह तीसरा है॥ अंत"
    assert split_sentences(text) == ["यह पहला वाक्य है।", "यह दूसरा वाक्य है।", "यह तीसरा है॥", "अंत"]


def test_arabic_question_mark_and_period():
    text = "هذه جملة أولى. هل هذه جملة ثانية؟ نعم! والأخيرة"
    assert split_sentences(text) == ["هذه جملة أولى.", "هل هذه جملة ثانية؟", "نعم!", "والأخيرة"]


def test_thai_spaces_end_sentences_but_not_before_abbreviations():
    text = "กรุงเทพมหานครเป็นเมืองหลวง แม่น้ำเจ้าพระยาไหลผ่านเมือง ก่อตั้งในปี พ.ศ. 2325"
    assert split_sentences(text) == ["กรุงเทพมหานครเป็นเมืองหลวง", "แม่น้ำเจ้าพระยาไหลผ่านเมือง", "ก่อตั้งในปี พ.ศ. 2325"]


def test_no_text_is_lost():
    text = "  One.  Two!\n Three?  "
    assert split_sentences(text) == ["One.", "Two!", "Three?"]
    assert split_sentences("") == [] and split_sentences("   ") == []


def test_window_spans_cover_every_sentence():
    assert window_spans(5, 3, 2) == [(0, 3), (2, 5)]
    assert window_spans(6, 3, 2) == [(0, 3), (2, 5), (4, 6)]
    assert window_spans(2, 3, 2) == [(0, 2)]
    assert window_spans(3, 1, 1) == [(0, 1), (1, 2), (2, 3)]
    assert window_spans(0, 3, 2) == []
    for n in range(1, 12):
        covered = {i for a, b in window_spans(n, 3, 2) for i in range(a, b)}
        assert covered == set(range(n))
    with pytest.raises(ValueError):
        window_spans(3, 0, 1)


def test_paragraph_to_passages_windows_are_exact_slices():
    base = Passage("en/x-a00-p00", "en", "T", "A one. B two. C three. D four. E five.", "x-a00", "x-a00-p00")
    windows = paragraph_to_passages(base, "sentences", 3, 2)
    assert [w.id for w in windows] == ["en/x-a00-p00/w0", "en/x-a00-p00/w1"]
    assert [w.text for w in windows] == ["A one. B two. C three.", "C three. D four. E five."]
    assert all(
        w.text in base.text and (w.lang, w.title, w.article, w.paragraph) == ("en", "T", "x-a00", "x-a00-p00")
        for w in windows
    )
    assert paragraph_to_passages(base, "paragraph") == [base]
