"""Data that would build silently into a wrong benchmark is refused, naming file, record and field."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crosearch.cli import app
from crosearch.config import DataConfig
from crosearch.data.benchmark import build_benchmark, load_benchmark, write_benchmark
from crosearch.data.formats import load_squad, load_xor_tydi, read_corpus, read_qa
from crosearch.errors import CrosearchError, DataFormatError

TINY = Path(__file__).parent / "data" / "parallel"
runner = CliRunner()


def _tiny(tmp_path: Path, edit) -> Path:
    """A copy of the tiny parallel source whose English file ``edit`` changed (the Thai one kept)."""
    source = tmp_path / "src"
    source.mkdir(exist_ok=True)
    shutil.copy(TINY / "tiny.th.json", source / "tiny.th.json")
    data = json.loads((TINY / "tiny.en.json").read_text(encoding="utf-8"))
    edit(data)
    (source / "tiny.en.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return source


def _error(tmp_path: Path, edit) -> DataFormatError:
    source = _tiny(tmp_path, edit)
    with pytest.raises(DataFormatError) as info:
        load_squad(source / "tiny.en.json")
    return info.value


def _qa(data) -> dict:
    return data["data"][0]["paragraphs"][0]["qas"][0]


def test_duplicate_question_ids_in_a_squad_file(tmp_path):
    def edit(data):
        data["data"][1]["paragraphs"][0]["qas"][0]["id"] = _qa(data)["id"]

    err = _error(tmp_path, edit)
    assert (err.record, err.field) == ("data[1].paragraphs[0].qas[0]", "id")
    assert "duplicate question id" in str(err) and "first at data[0].paragraphs[0].qas[0]" in str(err)


def test_empty_question_and_blank_context(tmp_path):
    err = _error(tmp_path, lambda data: _qa(data).update(question=" \u200b "))
    assert (err.record, err.field, err.reason) == ("data[0].paragraphs[0].qas[0]", "question", "empty question")

    def blank(data):
        data["data"][1]["paragraphs"][0]["context"] = "\ufeff  \n"

    err = _error(tmp_path, blank)
    assert (err.record, err.field, err.reason) == ("data[1].paragraphs[0]", "context", "empty context")


def test_empty_data_list(tmp_path):
    err = _error(tmp_path, lambda data: data.update(data=[]))
    assert err.field == "data" and "no articles" in str(err)
    with pytest.raises(DataFormatError, match="no articles"):
        build_benchmark(DataConfig(source=str(tmp_path / "src")))


def test_answer_start_outside_the_context_is_an_error(tmp_path):
    err = _error(tmp_path, lambda data: _qa(data)["answers"][0].update(answer_start=10_000))
    assert (err.record, err.field) == ("data[0].paragraphs[0].qas[0]", "answers[0].answer_start")
    assert "outside the context" in str(err)
    err = _error(tmp_path, lambda data: _qa(data)["answers"][0].update(answer_start=-1))
    assert err.field == "answers[0].answer_start"


def test_answer_text_absent_from_the_context_is_an_error(tmp_path):
    err = _error(tmp_path, lambda data: _qa(data)["answers"][0].update(text="nowhere to be found"))
    assert (err.record, err.field) == ("data[0].paragraphs[0].qas[0]", "answers[0].text")
    assert "does not occur in the context" in str(err)


def test_answer_start_pointing_elsewhere_is_repaired_with_a_warning(tmp_path, caplog):
    def shift(data):
        answer = _qa(data)["answers"][0]
        answer["answer_start"] += 1

    source = _tiny(tmp_path, shift)
    with caplog.at_level(logging.WARNING, logger="crosearch.data.formats"):
        squad = load_squad(source / "tiny.en.json")
    expected = load_squad(TINY / "tiny.en.json")
    assert squad.articles == expected.articles
    assert "1 answer(s) whose answer_start does not point at their text" in caplog.text
    assert "data[0].paragraphs[0].qas[0].answers[0]" in caplog.text


def test_a_benchmark_without_questions_is_an_error(tmp_path):
    def unanswerable(data):
        for art in data["data"]:
            for par in art["paragraphs"]:
                for qa in par["qas"]:
                    qa["answers"] = []

    source = _tiny(tmp_path, unanswerable)
    with pytest.raises(CrosearchError, match="would hold no questions"):
        build_benchmark(DataConfig(source=str(source), languages=["en"]))
    result = runner.invoke(
        app, ["data", "build", "--source", str(source), "--langs", "en", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code != 0 and isinstance(result.exception, CrosearchError)
    assert not (tmp_path / "o" / "meta.json").exists()


def test_jsonl_loaders_refuse_duplicates_blanks_and_bad_languages(tmp_path):
    qa = tmp_path / "qa.jsonl"
    row = {"id": "q1", "lang": "en", "question": "Who?", "answers": ["x"]}
    qa.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"line 2, field 'id': duplicate question id 'q1' \(first on line 1\)"):
        read_qa(qa)
    qa.write_text(json.dumps({**row, "question": "  "}) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"line 1, record q1, field 'question': empty question"):
        read_qa(qa)
    qa.write_text(json.dumps({**row, "lang": "../x"}) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"record q1, field 'lang': invalid language code '../x'"):
        read_qa(qa)
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"id": "p", "lang": "en", "title": "", "text": "\t"}) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"record p, field 'text': empty passage text"):
        read_corpus(corpus)
    xor = tmp_path / "xor.jsonl"
    item = {"id": "1", "question": "q", "answers": ["a"], "lang": "fi"}
    xor.write_text(json.dumps(item) + "\n" + json.dumps(item) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"line 2, field 'id': duplicate id '1'"):
        load_xor_tydi(xor)


def test_data_build_refuses_a_foreign_non_empty_output(tmp_path):
    bench = build_benchmark(DataConfig(source=str(TINY)))
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    with pytest.raises(CrosearchError, match="not a previous benchmark build; refusing"):
        write_benchmark(bench, home)
    assert [p.name for p in home.iterdir()] == ["thesis.tex"]
    result = runner.invoke(app, ["data", "build", "--source", str(TINY), "--out", str(home)])
    assert result.exit_code != 0 and [p.name for p in home.iterdir()] == ["thesis.tex"]
    # A previous build is rewritten, also one interrupted before meta.json was written.
    out = write_benchmark(bench, tmp_path / "b")
    write_benchmark(bench, out)
    (out / "meta.json").unlink()
    write_benchmark(bench, out)
    assert len(load_benchmark(out).collection) == len(bench.collection)
