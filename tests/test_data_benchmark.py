import filecmp
import json
import shutil
from collections import defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crosearch.cli import app
from crosearch.config import DataConfig
from crosearch.data.benchmark import build_benchmark, load_benchmark, write_benchmark
from crosearch.data.formats import read_qa, xquad_dir
from crosearch.data.stats import compute_stats
from crosearch.errors import ConfigError, CrosearchError, DataFormatError

TINY = Path(__file__).parent / "data" / "parallel"
LANGS = ["de", "en", "zh"]
runner = CliRunner()


@pytest.fixture(scope="module")
def gap():
    return build_benchmark(DataConfig(setting="gap", seed=3, languages=LANGS))


@pytest.fixture(scope="module")
def no_native():
    return build_benchmark(DataConfig(setting="no-native", seed=3, languages=LANGS))


def test_build_twice_gives_identical_bytes(tmp_path):
    config = DataConfig(setting="gap", seed=7, languages=LANGS)
    first = write_benchmark(build_benchmark(config), tmp_path / "a")
    second = write_benchmark(build_benchmark(config), tmp_path / "b")
    names = ["collection.jsonl", "train.jsonl", "test.jsonl", "meta.json"]
    match, mismatch, errors = filecmp.cmpfiles(first, second, names, shallow=False)
    assert match == names and not mismatch and not errors
    other = write_benchmark(build_benchmark(DataConfig(setting="gap", seed=8, languages=LANGS)), tmp_path / "c")
    assert not filecmp.cmp(first / "collection.jsonl", other / "collection.jsonl", shallow=False)


def test_full_build_of_all_xquad_languages():
    bench = build_benchmark(DataConfig(passages="paragraph"))
    assert bench.languages == ["ar", "de", "en", "es", "hi", "ru", "vi", "zh"]
    assert len(bench.collection) == 8 * 240
    assert len(bench.train) + len(bench.test) == 8 * 1190
    assert all(q.native_available and q.answer_passages == [f"{q.lang}/{q.paragraph}"] for q in bench.test)
    ids = [p.id for p in bench.collection]
    assert len(set(ids)) == len(ids)


def test_ids_are_parallel_across_languages(gap):
    paragraphs = {p.paragraph for p in gap.collection}
    assert "xquad-a07-p03" in paragraphs
    de = [p for p in gap.collection if p.id.startswith("de/")][0]
    assert de.id == f"de/{de.paragraph}/w0" and de.article == de.paragraph.rsplit("-", 1)[0]
    groups = defaultdict(set)
    for q in gap.train + gap.test:
        assert q.id == f"{q.group}/{q.lang}"
        groups[q.group].add((q.lang, q.paragraph))
    # every question exists in every language, with the same gold paragraph
    assert all(len(v) == len(LANGS) and len({p for _, p in v}) == 1 for v in groups.values())


def test_no_article_in_both_splits(gap):
    train_articles = {q.article for q in gap.train}
    test_articles = {q.article for q in gap.test}
    assert train_articles and test_articles and not train_articles & test_articles
    assert sorted(train_articles | test_articles) == sorted(
        gap.meta["splits"]["train_articles"] + gap.meta["splits"]["test_articles"]
    )
    assert len(test_articles) == 24  # test_fraction 0.5 of 48 articles


def test_validation_split_is_whole_train_articles_never_test_ones(gap, tmp_path):
    config = DataConfig(setting="gap", seed=3, languages=LANGS, validation_fraction=0.25)
    val = build_benchmark(config)
    articles = {q.article for q in val.validation}
    assert len(articles) == 6  # a quarter of the 24 train articles
    assert not articles & {q.article for q in val.test} and not articles & {q.article for q in val.train}
    assert val.meta["splits"]["validation_articles"] == sorted(articles)
    assert val.meta["counts"]["validation"] == len(val.validation)
    # Carved out of train alone: the test split and the collection are those of the build without it.
    assert [q.to_dict() for q in val.test] == [q.to_dict() for q in gap.test]
    assert [p.to_dict() for p in val.collection] == [p.to_dict() for p in gap.collection]
    assert sorted(q.id for q in val.train + val.validation) == sorted(q.id for q in gap.train)
    # Deterministic by seed; written, read back and selected by name.
    again = build_benchmark(config)
    assert [q.id for q in again.validation] == [q.id for q in val.validation]
    loaded = load_benchmark(write_benchmark(val, tmp_path / "v"))
    assert [q.to_dict() for q in loaded.split("validation")] == [q.to_dict() for q in val.validation]
    assert (tmp_path / "v" / "validation.jsonl").is_file()
    # Rebuilt without it in the same place: validation.jsonl goes, and the split is refused by name.
    loaded = load_benchmark(write_benchmark(gap, tmp_path / "v"))
    assert not (tmp_path / "v" / "validation.jsonl").exists()
    with pytest.raises(CrosearchError, match="no validation split"):
        loaded.split("validation")
    with pytest.raises(CrosearchError, match="--split must be one of"):
        loaded.split("dev")


def test_without_validation_nothing_of_it_is_written(gap, tmp_path):
    out = write_benchmark(gap, tmp_path / "b")
    assert sorted(p.name for p in out.iterdir()) == ["collection.jsonl", "meta.json", "test.jsonl", "train.jsonl"]
    meta = json.loads((out / "meta.json").read_text())
    # The config key too: a benchmark built before validation_fraction existed is rebuilt byte for byte.
    assert "validation_fraction" not in meta["config"]
    assert "validation" not in meta["counts"] and "validation_articles" not in meta["splits"]
    assert set(meta["config"]) == set(DataConfig.model_fields) - {"validation_fraction"}
    assert meta["version"] == 1


def test_gap_every_language_misses_what_another_has(gap):
    have = defaultdict(set)
    for p in gap.collection:
        have[p.lang].add(p.paragraph)
    everything = set().union(*have.values())
    assert len(everything) == 240  # every paragraph survives in some language
    for lang in LANGS:
        others = set().union(*(have[o] for o in LANGS if o != lang))
        assert others - have[lang], f"{lang} misses nothing"
        assert 100 <= len(have[lang]) <= 140  # gap_keep 0.5 (+ paragraphs given back)
    # the languages lose different paragraphs
    assert have["de"] != have["en"] != have["zh"]


def test_gap_questions_know_whether_their_paragraph_exists(gap):
    present = {(p.lang, p.paragraph) for p in gap.collection}
    passage_ids = {p.id for p in gap.collection}
    missing = 0
    for q in gap.train + gap.test:
        assert q.native_available == ((q.lang, q.paragraph) in present)
        assert set(q.answer_passages) <= passage_ids and not q.exclude
        missing += not q.native_available
        if not q.native_available:
            assert not q.answer_passages
    assert missing > 0


def test_no_native_excludes_exactly_the_own_language_gold_passages(no_native):
    by_copy = defaultdict(set)
    for p in no_native.collection:
        by_copy[(p.lang, p.paragraph)].add(p.id)
    assert {p.lang for p in no_native.collection} == set(LANGS)
    for q in no_native.train + no_native.test:
        assert set(q.exclude) == by_copy[(q.lang, q.paragraph)] and q.exclude
        assert q.native_available is False
        assert set(q.answer_passages) <= set(q.exclude)
    stats = compute_stats(no_native)
    assert stats.total.test_native == 0
    assert stats.total.test_cross_only == stats.total.test_questions > 0


def test_stats_add_up(gap, tmp_path):
    stats = compute_stats(gap)
    assert [s.lang for s in stats.languages] == LANGS and stats.setting == "gap"
    for s in stats.languages + [stats.total]:
        assert s.test_native + s.test_cross_only + s.test_unreachable == s.test_questions
        assert s.test_cross_only > 0 and s.test_unreachable == 0
        assert 0.9 < s.answer_in_passage <= 1.0 and s.mean_passage_chars > 50
    assert stats.total.passages == len(gap.collection)
    assert stats.total.test_questions == len(gap.test)
    # one-sentence windows split some answers away from any single passage
    narrow = compute_stats(build_benchmark(DataConfig(languages=["de"], window_sentences=1, window_stride=1)))
    assert narrow.total.answer_in_passage < 1.0


def test_thai_by_path_end_to_end(tmp_path):
    out = tmp_path / "bench"
    result = runner.invoke(
        app,
        [
            "data",
            "build",
            "--source",
            str(TINY),
            "--setting",
            "no-native",
            "--seed",
            "1",
            "--out",
            str(out),
            "--set",
            "data.test_fraction=0.5",
        ],
    )
    assert result.exit_code == 0, result.output
    bench = load_benchmark(out)
    assert bench.languages == ["en", "th"]
    th = [p for p in bench.collection if p.lang == "th"]
    assert {p.paragraph for p in th} == {"tiny-a00-p00", "tiny-a01-p00"}
    # Thai paragraphs are cut at the spaces that end its sentences; answers survive the cut
    assert len(th) == 2 and all(p.id.endswith("/w0") for p in th)
    q = next(q for q in bench.train + bench.test if q.id == "tiny-q1/th")
    assert q.answers == ["กรุงเทพมหานคร"] and q.exclude == ["th/tiny-a00-p00/w0"]
    assert len(bench.train) == len(bench.test) == 4
    stats = runner.invoke(app, ["data", "stats", str(out), "--json"])
    assert stats.exit_code == 0, stats.output
    data = json.loads(stats.output)
    assert data["total"]["test_questions"] == 4 and data["total"]["test_native"] == 0


def test_cli_flags_override_config(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data:\n  setting: full\n  passages: paragraph\n", encoding="utf-8")
    out = tmp_path / "b"
    result = runner.invoke(
        app,
        ["data", "build", "-c", str(recipe), "--setting", "gap", "--langs", "en,zh", "--seed", "2", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    assert meta["config"]["setting"] == "gap" and meta["config"]["passages"] == "paragraph"
    assert meta["languages"] == ["en", "zh"] and meta["config"]["seed"] == 2
    assert meta["counts"]["passages"] == sum(meta["counts"]["paragraphs_kept"].values())
    assert len(read_qa(out / "test.jsonl")) == meta["counts"]["test"]
    table = runner.invoke(app, ["data", "stats", str(out)])
    assert table.exit_code == 0 and "zh" in table.output and "all" in table.output


def test_non_parallel_files_are_rejected(tmp_path):
    shutil.copy(TINY / "tiny.en.json", tmp_path / "tiny.en.json")
    data = json.loads((TINY / "tiny.th.json").read_text(encoding="utf-8"))
    data["data"][1]["paragraphs"][0]["qas"][1]["id"] = "other-id"
    (tmp_path / "tiny.th.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        build_benchmark(DataConfig(source=str(tmp_path)))
    assert "tiny.th.json" in str(info.value) and "data[1].paragraphs[0]" in str(info.value)
    assert "other-id" in str(info.value)
    del data["data"][1]
    (tmp_path / "tiny.th.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(DataFormatError, match="has 1 articles but tiny.en.json has 2"):
        build_benchmark(DataConfig(source=str(tmp_path)))


def test_source_errors(tmp_path):
    with pytest.raises(CrosearchError, match="not found"):
        build_benchmark(DataConfig(source=str(tmp_path / "nowhere")))
    with pytest.raises(CrosearchError, match="no <name>.<lang>.json"):
        build_benchmark(DataConfig(source=str(tmp_path)))
    with pytest.raises(CrosearchError, match="available: ar, de, en"):
        build_benchmark(DataConfig(languages=["en", "th"]))
    shutil.copy(TINY / "tiny.en.json", tmp_path / "tiny.en.json")
    shutil.copy(xquad_dir() / "xquad.de.json.gz", tmp_path / "xquad.de.json.gz")
    with pytest.raises(CrosearchError, match="several datasets"):
        build_benchmark(DataConfig(source=str(tmp_path)))
    with pytest.raises(ConfigError, match="window_stride"):
        build_benchmark(DataConfig(window_sentences=2, window_stride=3))


def test_load_benchmark_errors(tmp_path):
    with pytest.raises(CrosearchError, match="not found"):
        load_benchmark(tmp_path / "none")
    with pytest.raises(CrosearchError, match="no meta.json"):
        load_benchmark(tmp_path)
    out = write_benchmark(build_benchmark(DataConfig(source=str(TINY))), tmp_path / "b")
    assert len(load_benchmark(out).collection) == 4
    lines = (out / "train.jsonl").read_text(encoding="utf-8").splitlines()
    (out / "train.jsonl").write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="meta.json says"):
        load_benchmark(out)
    (out / "meta.json").write_text('{"format": "other"}', encoding="utf-8")
    with pytest.raises(DataFormatError, match="not a crosearch benchmark"):
        load_benchmark(out)


def test_cli_reports_user_errors_without_traceback(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "crosearch.cli", "data", "build", "--out", str(tmp_path / "o"), "--setting", "partial"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "data.setting" in proc.stderr and "'gap'" in proc.stderr and "partial" in proc.stderr
    assert not (tmp_path / "o").exists()
