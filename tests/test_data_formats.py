import gzip
import json
import shutil
from pathlib import Path

import pytest

from crosearch.data.formats import (
    lang_from_filename,
    load_mkqa,
    load_squad,
    load_xor_tydi,
    read_corpus,
    read_qa,
    squad_examples,
    squad_passages,
    write_corpus,
    write_qa,
    xquad_dir,
)
from crosearch.errors import DataFormatError
from crosearch.types import Passage, QAExample

DATA = Path(__file__).parent / "data"
MKQA = DATA / "formats" / "mkqa.sample.jsonl.gz"
XOR = DATA / "formats" / "xor-tydi.dev.sample.jsonl"
TINY = DATA / "parallel"


def test_xquad_dir_holds_eight_languages():
    langs = sorted(p.name.split(".")[1] for p in xquad_dir().glob("xquad.*.json.gz"))
    assert langs == ["ar", "de", "en", "es", "hi", "ru", "vi", "zh"]


def test_load_vendored_xquad_german():
    squad = load_squad(xquad_dir() / "xquad.de.json.gz")
    assert (squad.name, squad.lang, squad.context_lang) == ("xquad", "de", "de")
    assert len(squad.articles) == 48
    assert squad.num_paragraphs == 240 and squad.num_questions == 1190
    first = squad.articles[0].paragraphs[0]
    # the BOM some translated files start with is stripped
    assert not first.context.startswith("\ufeff")
    examples = squad_examples(squad)
    assert len(examples) == 1190
    ex = examples[0]
    assert ex.id == f"{ex.group}/de" and ex.lang == "de"
    assert ex.paragraph == "xquad-a00-p00" and ex.article == "xquad-a00"
    # every answer of XQuAD is a span of its paragraph
    contexts = {p.paragraph: p.text for p in squad_passages(squad)}
    assert all(any(a in contexts[e.paragraph] for a in e.answers) for e in examples)


def test_thai_file_by_path_infers_language():
    squad = load_squad(TINY / "tiny.th.json")
    assert squad.lang == "th" and squad.name == "tiny"
    examples = squad_examples(squad)
    assert [e.id for e in examples] == ["tiny-q1/th", "tiny-q2/th", "tiny-q3/th", "tiny-q4/th"]
    assert examples[0].answers == ["กรุงเทพมหานคร"]
    passages = squad_passages(squad)
    assert [p.id for p in passages] == ["th/tiny-a00-p00", "th/tiny-a01-p00"]


def test_language_from_file_names():
    assert lang_from_filename("xquad.zh.json.gz") == ("xquad", "zh", "zh")
    assert lang_from_filename("data.zh_cn.json") == ("data", "zh_cn", "zh_cn")
    assert lang_from_filename("dev-context-de-question-en.json") == ("dev", "en", "de")
    assert lang_from_filename("test-context-hi-question-hi.json.gz") == ("test", "hi", "hi")
    with pytest.raises(DataFormatError, match="cannot infer the language"):
        lang_from_filename("questions.json")


def test_mlqa_named_file_takes_question_language(tmp_path):
    path = tmp_path / "dev-context-th-question-en.json"
    shutil.copy(TINY / "tiny.en.json", path)
    squad = load_squad(path)
    assert squad.lang == "en" and squad.context_lang == "th"
    assert squad_passages(squad)[0].id.startswith("th/")


def test_explicit_language_overrides_the_name(tmp_path):
    path = tmp_path / "anything.json"
    shutil.copy(TINY / "tiny.th.json", path)
    squad = load_squad(path, "th")
    assert squad.lang == "th"


def test_mkqa_sample():
    examples = load_mkqa(MKQA)
    by_id = {e.id: e for e in examples}
    en = by_id["36228854473990432/en"]
    assert en.question == "when did help me help you come out"
    assert en.group == "36228854473990432"
    # text then aliases, deduplicated in order
    assert en.answers[:3] == ["2017", "2017-05-18", "18/05/2017"]
    assert len(en.answers) == len(set(en.answers))
    # unanswerable / long-answer examples (null texts) are skipped in every language
    assert not any(e.group in {"7721692200040168186", "2961317153244610375"} for e in examples)
    # zh_cn entries may lack "aliases"
    assert by_id["-7449157003522518870/zh_cn"].answers == ["大力士魔山"]
    filtered = load_mkqa(MKQA, languages=["en", "ja"])
    assert {e.lang for e in filtered} == {"en", "ja"}
    assert len(filtered) == 2 * 3  # three answerable examples
    kept = load_mkqa(MKQA, languages=["en"], keep_unanswerable=True)
    assert len(kept) == 6 and sum(not e.answers for e in kept) == 3


def test_xor_tydi_sample():
    examples = load_xor_tydi(XOR)
    assert len(examples) == 7 * 30
    assert {e.lang for e in examples} == {"ar", "bn", "fi", "ja", "ko", "ru", "te"}
    te = next(e for e in examples if e.id == "-1024677970375145871")
    assert te.lang == "te" and te.answers == ["ఇంగ్లాండ్", "భారత ఉపఖండం"]
    assert len(load_xor_tydi(XOR, languages=["fi"])) == 30


def test_corpus_and_qa_round_trip(tmp_path):
    passages = [
        Passage("de/x-a00-p00", "de", "Titel", "Ein Text.", "x-a00", "x-a00-p00"),
        Passage("th/1", "th", "", "ข้อความ"),
    ]
    questions = [
        QAExample(
            "q1/de",
            "de",
            "Wer?",
            ["Er"],
            group="q1",
            paragraph="x-a00-p00",
            exclude=["de/x-a00-p00"],
            answer_passages=["de/x-a00-p00"],
            native_available=False,
        ),
        QAExample("q2", "th", "ใคร", ["เขา"]),
    ]
    assert write_corpus(tmp_path / "c.jsonl", passages) == 2
    assert write_qa(tmp_path / "q.jsonl", questions) == 2
    assert read_corpus(tmp_path / "c.jsonl") == passages
    assert read_qa(tmp_path / "q.jsonl") == questions
    # gzip input works for every JSONL reader
    with gzip.open(tmp_path / "c.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write((tmp_path / "c.jsonl").read_text(encoding="utf-8"))
    assert read_corpus(tmp_path / "c.jsonl.gz") == passages


# --------------------------------------------------------------------------- malformed input


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _error(func, *args) -> DataFormatError:
    with pytest.raises(DataFormatError) as info:
        func(*args)
    return info.value


def test_bad_json_line_names_file_and_line(tmp_path):
    path = _write(tmp_path / "corpus.jsonl", ['{"id": "a", "lang": "en", "title": "", "text": "x"}', '{"id": "b", '])
    err = _error(read_corpus, path)
    assert err.line == 2 and "corpus.jsonl" in str(err) and "line 2" in str(err) and "invalid JSON" in str(err)


def test_missing_field_names_it(tmp_path):
    path = _write(
        tmp_path / "qa.jsonl",
        ['{"id": "a", "lang": "en", "question": "q", "answers": ["x"]}', '{"id": "b", "lang": "en", "answers": ["x"]}'],
    )
    err = _error(read_qa, path)
    assert (err.line, err.field) == (2, "question")
    assert "qa.jsonl, line 2, field 'question'" in str(err) and "missing" in str(err)


def test_wrong_type_names_field_and_types(tmp_path):
    path = _write(tmp_path / "qa.jsonl", ['{"id": "a", "lang": "en", "question": "q", "answers": "x"}'])
    err = _error(read_qa, path)
    assert err.field == "answers" and "expected a list" in str(err) and "got str" in str(err)
    path = _write(tmp_path / "qa2.jsonl", ['{"id": "a", "lang": "en", "question": "q", "answers": ["x", 3]}'])
    err = _error(read_qa, path)
    assert err.field == "answers[1]" and "got int" in str(err)


def test_duplicate_passage_id(tmp_path):
    row = '{"id": "a", "lang": "en", "title": "", "text": "x"}'
    err = _error(read_corpus, _write(tmp_path / "c.jsonl", [row, "", row]))
    assert err.line == 3 and "duplicate" in str(err) and "line 1" in str(err)


def test_squad_errors_name_the_record_path(tmp_path):
    data = json.loads((TINY / "tiny.en.json").read_text(encoding="utf-8"))
    del data["data"][1]["paragraphs"][0]["qas"][1]["question"]
    path = tmp_path / "broken.en.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    err = _error(load_squad, path)
    assert err.record == "data[1].paragraphs[0].qas[1]" and err.field == "question"
    assert "broken.en.json, record data[1].paragraphs[0].qas[1], field 'question'" in str(err)

    data = json.loads((TINY / "tiny.en.json").read_text(encoding="utf-8"))
    data["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["text"] = 7
    path.write_text(json.dumps(data), encoding="utf-8")
    err = _error(load_squad, path)
    assert err.record == "data[0].paragraphs[0].qas[0]" and err.field == "answers[0].text"

    data["data"][0]["paragraphs"] = {"context": "x"}
    path.write_text(json.dumps(data), encoding="utf-8")
    err = _error(load_squad, path)
    assert err.record == "data[0]" and err.field == "paragraphs" and "expected a list" in str(err)


def test_squad_invalid_json_and_gzip(tmp_path):
    path = tmp_path / "x.en.json"
    path.write_text('{"data": [\n  {"title": "a",\n  }', encoding="utf-8")
    err = _error(load_squad, path)
    assert err.line == 3 and "invalid JSON" in str(err)
    bad_gz = tmp_path / "x.de.json.gz"
    bad_gz.write_bytes(b"not gzip at all")
    assert "gzip" in str(_error(load_squad, bad_gz))
    assert "file not found" in str(_error(load_squad, tmp_path / "missing.en.json"))


def test_mkqa_malformed(tmp_path):
    good = gzip.open(MKQA, "rt", encoding="utf-8").readline().strip()
    obj = json.loads(good)
    obj["queries"]["de"] = 5
    path = _write(tmp_path / "mkqa.jsonl", [good, json.dumps(obj)])
    err = _error(load_mkqa, path)
    assert (err.line, err.field) == (2, "queries.de")
    obj = json.loads(good)
    obj["answers"]["en"][0]["aliases"] = "2017"
    err = _error(load_mkqa, _write(tmp_path / "mkqa2.jsonl", [json.dumps(obj)]))
    assert err.field == "answers.en[0].aliases"
    obj = json.loads(good)
    del obj["example_id"]
    err = _error(load_mkqa, _write(tmp_path / "mkqa3.jsonl", [json.dumps(obj)]))
    assert (err.line, err.field) == (1, "example_id")


def test_xor_tydi_malformed(tmp_path):
    path = _write(
        tmp_path / "xor.jsonl",
        [
            '{"id": "1", "question": "q", "answers": ["a"], "lang": "fi"}',
            '{"id": "2", "question": "q", "answers": ["a"]}',
        ],
    )
    err = _error(load_xor_tydi, path)
    assert (err.line, err.field) == (2, "lang") and "xor.jsonl" in str(err)
