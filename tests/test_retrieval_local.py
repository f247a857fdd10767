"""Index directories (atomic, resumable builds) and the LocalRetriever (languages, fusion, exclusions)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crosearch.errors import CrosearchError
from crosearch.retrieval.base import Retriever
from crosearch.retrieval.local import IndexSettings, LocalRetriever, build_index, read_manifest
from crosearch.types import Passage, SearchQuery

# Two parallel "paragraphs" (p-moon, p-nile) plus distractors, in four languages.
TEXTS = {
    "en": {
        "p-moon": "Apollo 11 landed on the Moon in 1969; Neil Armstrong was the first person to walk on it.",
        "p-nile": "The Nile is a major river in Africa that flows north into the Mediterranean Sea.",
        "p-tea": "Tea is an aromatic beverage prepared by pouring hot water over cured tea leaves.",
        "p-ice": "Antarctica is covered by an ice sheet that holds most of the fresh water on Earth.",
    },
    "de": {
        "p-moon": "Apollo 11 landete 1969 auf dem Mond; Neil Armstrong betrat ihn als erster Mensch.",
        "p-nile": "Der Nil ist ein großer Fluss in Afrika, der nach Norden ins Mittelmeer fließt.",
        "p-tea": "Tee ist ein aromatisches Getränk, das mit heißem Wasser aus Teeblättern bereitet wird.",
    },
    "zh": {
        "p-moon": "阿波罗11号于1969年登陆月球，尼尔·阿姆斯特朗是第一个在月球上行走的人。",
        "p-nile": "尼罗河是非洲的一条主要河流，向北流入地中海。",
        "p-tea": "茶是一种用热水冲泡茶叶制成的芳香饮料。",
    },
    "th": {
        "p-moon": "ยานอะพอลโล 11 ลงจอดบนดวงจันทร์ในปี 1969",
        "p-nile": "แม่น้ำไนล์เป็นแม่น้ำสายสำคัญในทวีปแอฟริกา ไหลไปทางเหนือลงสู่ทะเลเมดิเตอร์เรเนียน",
        "p-tea": "ชาเป็นเครื่องดื่มที่มีกลิ่นหอม ชงด้วยน้ำร้อน",
        "p-phuket": "ภูเก็ตเป็นเกาะที่ใหญ่ที่สุดของประเทศไทย ตั้งอยู่ในทะเลอันดามัน",
    },
}


def passages() -> list[Passage]:
    return [
        Passage(id=f"{lang}/{par}", lang=lang, title=par, text=text, paragraph=par)
        for lang, items in TEXTS.items()
        for par, text in items.items()
    ]


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("idx") / "index"
    report = build_index(passages(), out, IndexSettings(), progress=False)
    assert sorted(report.built) == sorted(f"{k}/{lang}" for lang in TEXTS for k in ("store", "bm25"))
    return out


@pytest.fixture(scope="module")
def retriever(index_dir) -> LocalRetriever:
    return LocalRetriever(index_dir)


def test_implements_protocol_and_languages(retriever):
    assert isinstance(retriever, Retriever)
    assert retriever.languages == ["de", "en", "th", "zh"]
    assert retriever.num_passages == len(passages())


def test_monolingual_search_per_language(retriever):
    queries = [
        SearchQuery("Who walked on the Moon first?", "en", ["en"]),
        SearchQuery("Welcher Fluss fließt ins Mittelmeer?", "de", ["de"]),
        SearchQuery("哪条河流入地中海？", "zh", ["zh"]),
        SearchQuery("เกาะที่ใหญ่ที่สุดของประเทศไทยคือเกาะอะไร", "th", ["th"]),
    ]
    results = retriever.search(queries, k=2)
    assert [r[0].paragraph for r in results] == ["p-moon", "p-nile", "p-nile", "p-phuket"]
    for query, hits in zip(queries, results):
        assert all(h.lang == query.search_langs[0] for h in hits)
        assert all(h.method == "bm25" for h in hits)
    top = results[0][0]
    assert top.doc_id == "en/p-moon" and top.title == "p-moon" and "Armstrong" in top.text


def test_all_languages_fuses_and_prefers_own_language_on_ties(retriever):
    hits = retriever.search([SearchQuery("Apollo 11 1969", "de")], k=4)[0]
    # Every language has the Apollo paragraph; RRF gives the four top hits equal scores.
    assert {h.paragraph for h in hits} == {"p-moon"}
    assert {h.lang for h in hits} == {"en", "de", "zh", "th"}
    assert hits[0].lang == "de"
    assert hits[0].score == pytest.approx(1 / 61)


def test_exclude_is_honoured_per_query(retriever):
    q = "Apollo 11 1969 Armstrong"
    free, blocked = retriever.search(
        [SearchQuery(q, "en", ["en"]), SearchQuery(q, "en", ["en"], frozenset({"en/p-moon"}))], k=3
    )
    assert free[0].doc_id == "en/p-moon"
    assert "en/p-moon" not in {h.doc_id for h in blocked}
    allhits = retriever.search([SearchQuery(q, "en", None, frozenset({"en/p-moon", "de/p-moon"}))], k=10)[0]
    assert {"en/p-moon", "de/p-moon"}.isdisjoint({h.doc_id for h in allhits})
    assert "zh/p-moon" in {h.doc_id for h in allhits}


def test_single_list_keeps_bm25_scores_and_score_fusion(index_dir):
    bm25_only = LocalRetriever(index_dir).search([SearchQuery("Nile Africa", "en", ["en"])], k=3)[0]
    assert bm25_only[0].score > 1.0  # a raw BM25 score, not a fused one
    fused = LocalRetriever(index_dir, fusion="score").search([SearchQuery("Nile Africa 1969", "en")], k=3)[0]
    assert fused[0].paragraph == "p-nile" and fused[0].score == pytest.approx(1.0)


def test_unknown_language_and_bad_k_are_clear_errors(retriever):
    with pytest.raises(CrosearchError, match="not in the index"):
        retriever.search([SearchQuery("x", "en", ["fr"])], k=3)
    with pytest.raises(CrosearchError, match="k must be"):
        retriever.search([SearchQuery("x")], k=0)
    with pytest.raises(CrosearchError, match="not in this index"):
        retriever.search([SearchQuery("x")], k=1, method="dense")


def test_empty_and_unmatched_queries(retriever):
    assert retriever.search([SearchQuery(""), SearchQuery("qqqq zzzz")], k=3) == [[], []]
    assert retriever.search([], k=3) == []


def test_manifest_records_collection(index_dir):
    manifest = read_manifest(index_dir)
    assert manifest["passages"] == len(passages())
    assert manifest["languages"]["th"]["passages"] == 4
    assert manifest["methods"] == ["bm25"]
    assert (index_dir / "bm25" / "zh" / "manifest.json").exists()


def test_missing_or_foreign_directories(tmp_path):
    with pytest.raises(CrosearchError, match="not found"):
        LocalRetriever(tmp_path / "nope")
    (tmp_path / "half").mkdir()
    with pytest.raises(CrosearchError, match="not a complete index"):
        LocalRetriever(tmp_path / "half")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(CrosearchError, match="refusing"):
        build_index(passages(), tmp_path / "mine", progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_rebuild_touches_only_changed_languages(tmp_path):
    out = tmp_path / "index"
    build_index(passages(), out, progress=False)
    changed = [
        Passage(p.id, p.lang, p.title, p.text + (" Extra." if p.lang == "de" else ""), paragraph=p.paragraph)
        for p in passages()
    ]
    report = build_index(changed, out, progress=False)
    assert sorted(report.built) == ["bm25/de", "store/de"]
    assert len(report.reused) == 6
    hit = LocalRetriever(out).search([SearchQuery("Extra", "de", ["de"])], k=1)[0][0]
    assert hit.lang == "de" and "Extra" in hit.text
    # A changed setting rebuilds the BM25 units but keeps the passage stores.
    report = build_index(changed, out, IndexSettings(zh_segmenter="jieba"), progress=False)
    assert sorted(report.built) == sorted(f"bm25/{lang}" for lang in TEXTS)


def _synthetic_collection(path: Path, per_lang: int) -> None:
    rng = random.Random(0)
    words = [f"w{i}" for i in range(3000)]
    with open(path, "w", encoding="utf-8") as handle:
        for lang in ("ar", "de", "en", "zh"):
            for i in range(per_lang):
                text = " ".join(rng.choices(words, k=40))
                handle.write(json.dumps({"id": f"{lang}-{i}", "lang": lang, "title": "", "text": text}) + "\n")


@pytest.mark.subprocess
def test_killed_build_is_not_loadable_and_resumes(tmp_path):
    collection = tmp_path / "collection.jsonl"
    _synthetic_collection(collection, per_lang=1500)
    out = tmp_path / "index"
    staging = tmp_path / ".index.partial"
    proc = subprocess.Popen(
        [sys.executable, "-m", "crosearch.cli", "index", "-q", "--collection", str(collection), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    first_unit = staging / "bm25" / "ar" / "manifest.json"
    deadline = time.monotonic() + 120
    while not first_unit.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first_unit.exists(), "the build should have completed its first language before the kill"
    assert not (staging / "manifest.json").exists(), "the build finished before it could be killed"
    assert not out.exists()
    with pytest.raises(CrosearchError, match="interrupted build"):
        LocalRetriever(staging)

    from crosearch.retrieval.store import read_collection

    report = build_index(read_collection(collection), out, progress=False)
    assert "bm25/ar" in report.reused and "store/ar" in report.reused
    assert "bm25/zh" in report.built
    assert not staging.exists()
    resumed = LocalRetriever(out)
    fresh_dir = tmp_path / "fresh"
    build_index(read_collection(collection), fresh_dir, progress=False)
    fresh = LocalRetriever(fresh_dir)
    queries = [SearchQuery("w1 w2 w3 w4", lang) for lang in ("ar", "zh")]
    assert resumed.search(queries, 5) == fresh.search(queries, 5)
    assert read_manifest(out)["collection_hash"] == read_manifest(fresh_dir)["collection_hash"]


def test_cli_index_and_eval(tmp_path):
    from typer.testing import CliRunner

    from crosearch.cli import app

    runner = CliRunner()
    bench = tmp_path / "bench"
    source = Path(__file__).parent / "data" / "parallel"
    result = runner.invoke(app, ["data", "build", "--source", str(source), "--out", str(bench), "--setting", "full"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["index", "-q", "--collection", str(bench), "--out", str(tmp_path / "idx")])
    assert result.exit_code == 0, result.output
    out = tmp_path / "metrics.json"
    result = runner.invoke(
        app,
        [
            "eval",
            "retrieval",
            "--benchmark",
            str(bench),
            "--index",
            str(tmp_path / "idx"),
            "--k",
            "1,3",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["ks"] == [1, 3]
    # Thai is given by path only (not a shipped language) and has no spaces between words.
    assert metrics["scopes"]["mono"]["th"]["recall"]["1"] == 1.0
    assert metrics["scopes"]["mono"]["en"]["recall"]["1"] == 1.0
    assert set(metrics["scopes"]["all"]) == {"en", "th", "avg"}
    bad = runner.invoke(
        app, ["eval", "retrieval", "--benchmark", str(bench), "--index", str(tmp_path / "idx"), "--k", "a,b"]
    )
    assert bad.exit_code != 0


def test_collapse_keeps_the_best_passage_of_each_paragraph(tmp_path):
    # Each paragraph split into two windows, in English and German: a query mostly about the
    # Moon matches both windows of p-moon in both languages before anything else.
    windows = []
    for lang in ("en", "de"):
        for par, text in TEXTS[lang].items():
            first, _, second = text.partition(" ")
            for w, part in enumerate((text, f"{second} {first}")):
                windows.append(Passage(id=f"{lang}/{par}/w{w}", lang=lang, title=par, text=part, paragraph=par))
    windows.append(Passage(id="en/loose", lang="en", title="", text="A loose note on tea", paragraph=None))
    out = tmp_path / "index"
    build_index(windows, out, IndexSettings(), progress=False)
    query = [SearchQuery("Apollo 11 Moon 1969 Armstrong landed, a river, tea, an ice sheet", "en")]
    plain = LocalRetriever(out).search(query, 4)[0]
    assert [h.paragraph for h in plain].count("p-moon") >= 3
    by_window = LocalRetriever(out, collapse="window").search(query, 6)[0]
    keys = [(h.paragraph, h.lang) for h in by_window if h.paragraph]
    assert len(keys) == len(set(keys)) and ("p-moon", "en") in keys and ("p-moon", "de") in keys
    by_paragraph = LocalRetriever(out, collapse="paragraph").search(query, 5)[0]
    paragraphs = [h.paragraph for h in by_paragraph if h.paragraph]
    assert len(paragraphs) == len(set(paragraphs)) == 4 and len(by_paragraph) == 5
    assert by_paragraph[0].paragraph == "p-moon" and by_paragraph[0].doc_id == plain[0].doc_id
    # a passage without a paragraph id is never merged with another
    assert any(h.doc_id == "en/loose" for h in by_paragraph)
    with pytest.raises(CrosearchError, match="collapse"):
        LocalRetriever(out, collapse="sentence")  # type: ignore[arg-type]
