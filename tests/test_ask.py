"""``crosearch ask`` end to end through the CLI: tiny model, a real BM25 index of the tiny en/th collection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crosearch.cli import app
from crosearch.config import DataConfig
from crosearch.data.benchmark import build_benchmark
from crosearch.retrieval.local import build_index

TINY = Path(__file__).parent / "data" / "parallel"
runner = CliRunner()

FAST = [
    "--model",
    "tiny",
    "--set",
    "agent.max_new_tokens=6",
    "--set",
    "agent.answer_tokens=4",
    "--set",
    "agent.max_turns=1",
    "--set",
    "crosslingual.strategy=mono",
]


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory) -> Path:
    bench = build_benchmark(DataConfig(source=str(TINY), passages="paragraph"))
    out = tmp_path_factory.mktemp("ask") / "index"
    build_index(bench.collection, out)
    return out


def test_ask_prints_the_trace_and_answer(index_dir):
    result = runner.invoke(
        app, ["ask", "What is the capital of Thailand?", "--lang", "en", "--index", str(index_dir), *FAST]
    )
    assert result.exit_code == 0, result.output
    assert "question [en]" in result.output and "search-agent" in result.output
    assert "answer" in result.output and "forced answer" in result.output
    assert "stop reason:" in result.output


def test_ask_json_and_rag_evidence_in_the_detected_language(index_dir):
    result = runner.invoke(
        app, ["ask", "เมืองหลวงของประเทศไทยคืออะไร", "--pipeline", "rag-mono", "--json", "--index", str(index_dir), *FAST]
    )
    assert result.exit_code == 0, result.output
    trace = json.loads(result.stdout)
    assert trace["lang"] == "th"  # detected among the collection's languages (en, th)
    (evidence,) = trace["prompt_evidence"]
    assert evidence["passages"] and {p["lang"] for p in evidence["passages"]} == {"th"}
    assert trace["n_searches"] == 0 and trace["turns"][-1]["kind"] == "force_answer"


def test_ask_bad_input_is_a_clear_error(index_dir):
    result = runner.invoke(
        app, ["ask", "What?", "--pipeline", "nope", "--lang", "en", "--index", str(index_dir), *FAST]
    )
    assert result.exit_code != 0
    assert "unknown pipeline" in str(result.exception)
