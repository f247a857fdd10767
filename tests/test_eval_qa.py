"""QA evaluation over the five pipelines: the tiny model, a real BM25 index over three XQuAD languages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crosearch.agent.engine import information_block
from crosearch.agent.pipelines import PIPELINES, Pipeline, Policy, load_policy_backend
from crosearch.config import DataConfig, ModelConfig, load_config
from crosearch.data.benchmark import build_benchmark, load_benchmark, write_benchmark
from crosearch.errors import CrosearchError, DataFormatError
from crosearch.eval.qa import PREDICTIONS, QARun, read_predictions, run_qa_eval, sample_questions
from crosearch.eval.report import compare_runs
from crosearch.retrieval.local import LocalRetriever, build_index

LANGS = ["en", "de", "zh"]


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory) -> Path:
    # no-native: each question's own-language gold paragraph is excluded, so exclude handling is visible.
    bench = build_benchmark(DataConfig(languages=LANGS, setting="no-native", seed=0))
    return write_benchmark(bench, tmp_path_factory.mktemp("bench") / "b")


@pytest.fixture(scope="module")
def bench(bench_dir):
    return load_benchmark(bench_dir)


@pytest.fixture(scope="module")
def index_dir(bench, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("index") / "idx"
    build_index(bench.collection, out)
    return out


@pytest.fixture(scope="module")
def retriever(index_dir):
    return LocalRetriever(index_dir)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy_backend(ModelConfig(name="tiny"))


def make_config(tmp_path: Path, *extra: str):
    return load_config(
        None,
        [
            "agent.max_new_tokens=6",
            "agent.answer_tokens=4",
            "agent.max_turns=2",
            "agent.max_total_tokens=1024",
            "crosslingual.strategy=mono",
            f"crosslingual.cache_path={tmp_path / 'tcache.sqlite'}",
            "eval.batch_size=4",
            "metrics.lang_detector=low",
            *extra,
        ],
    )


def evaluate(tmp_path, bench_dir, pipeline, policy, retriever, per_lang=2, out=None, **kw):
    run = QARun(
        pipeline=pipeline, benchmark=bench_dir, out_dir=out or tmp_path / pipeline, per_lang=per_lang, langs=LANGS
    )
    metrics = run_qa_eval(run, make_config(tmp_path), policy=policy, retriever=retriever, progress=False, **kw)
    return run, metrics


@pytest.mark.parametrize("name", PIPELINES)
def test_each_pipeline_writes_predictions_and_metrics(name, tmp_path, bench_dir, policy, retriever):
    run, metrics = evaluate(tmp_path, bench_dir, name, policy, retriever)
    records = read_predictions(run.out_dir / PREDICTIONS)
    assert len(records) == 6 and len({r["id"] for r in records}) == 6
    assert {r["lang"] for r in records} == set(LANGS)
    assert all(r["pipeline"] == name and isinstance(r["prediction"], str) for r in records)
    assert all(set(r["scores"]) == {"em", "f1", "char3", "lang_match"} for r in records)
    assert all(r["trace"]["turns"] and r["trace"]["turns"][-1]["action"] == "answer" for r in records)
    saved = json.loads((run.out_dir / "metrics.json").read_text())
    assert saved["n"] == 6 and saved["pipeline"] == name
    assert (
        saved["strategy"]
        == {
            "direct": None,
            "rag-mono": "mono",
            "rag-concat": "concat",
            "rag-crosslingual": "crosslingual",
            "search-agent": "mono",
        }[name]
    )
    assert {lang: v["n"] for lang, v in saved["per_language"].items()} == {lang: 2 for lang in LANGS}
    assert saved["macro"]["n"] == 6 and 0.0 <= saved["macro"]["f1"] <= 1.0
    if name == "direct":
        assert saved["macro"]["evidence_hit"] is None
    else:
        assert saved["macro"]["evidence_hit"] is not None
    # Cost per question: each retrieval's evidence tokens (as the integration counted them) and wall time.
    for r in records:
        blocks = r["trace"]["prompt_evidence"] + [t["evidence"] for t in r["trace"]["turns"] if "evidence" in t]
        assert (
            r["retrievals"]
            == len(blocks)
            == (0 if name == "direct" else 1 if name.startswith("rag") else r["searches"])
        )
        assert r["evidence_tokens"] == sum(b["trace"]["tokens"] for b in blocks)
        assert r["seconds"] > 0
    if name.startswith("rag"):
        assert 0 < saved["macro"]["tokens_per_retrieval"] <= 400  # crosslingual.token_budget
    assert saved["macro"]["seconds"] > 0
    throughput = saved["throughput"]
    assert throughput["questions"] == 6 and throughput["questions_per_second"] > 0
    assert throughput["questions_per_second"] == pytest.approx(6 / throughput["seconds"], rel=1e-2)


def test_direct_never_searches(tmp_path, bench_dir, policy, retriever):
    run, metrics = evaluate(tmp_path, bench_dir, "direct", policy, None)
    for r in read_predictions(run.out_dir / PREDICTIONS):
        assert r["searches"] == 0 and r["trace"]["prompt_evidence"] == []
        assert [t["kind"] for t in r["trace"]["turns"]] == ["force_answer"]
        assert r["trace"]["inserted_tokens"] > 0  # only the forced "<answer>" prefix
    assert metrics["macro"]["searches"] == 0.0


def test_rag_mono_evidence_is_own_language_and_honours_exclude(tmp_path, bench_dir, bench, policy, retriever):
    run, _ = evaluate(tmp_path, bench_dir, "rag-mono", policy, retriever, per_lang=3)
    excludes = {q.id: set(q.exclude) for q in bench.test}
    for r in read_predictions(run.out_dir / PREDICTIONS):
        (evidence,) = r["trace"]["prompt_evidence"]
        docs = evidence["passages"]
        assert docs, "BM25 finds something for every question"
        assert excludes[r["id"]], "no-native lists the own-language gold copy"
        assert all(d["lang"] == r["lang"] for d in docs)
        assert not {d["doc_id"] for d in docs} & excludes[r["id"]]
        assert evidence["trace"]["languages_searched"] == [r["lang"]]
        assert r["searches"] == 0 and r["trace"]["turns"][0]["kind"] == "force_answer"
        assert evidence["query"] == r["question"]


def test_rag_concat_mixes_languages(tmp_path, bench_dir, policy, retriever):
    run, _ = evaluate(tmp_path, bench_dir, "rag-concat", policy, retriever, per_lang=1)
    for r in read_predictions(run.out_dir / PREDICTIONS):
        (evidence,) = r["trace"]["prompt_evidence"]
        assert set(evidence["trace"]["languages_searched"]) == set(LANGS)
        assert evidence["trace"]["languages_searched"][0] == r["lang"]


def test_rag_crosslingual_translates_the_query_and_ranks_every_language(tmp_path, bench_dir, policy, retriever):
    run, _ = evaluate(tmp_path, bench_dir, "rag-crosslingual", policy, retriever, per_lang=1)
    excludes = {q.id: set(q.exclude) for q in load_benchmark(bench_dir).test}
    for r in read_predictions(run.out_dir / PREDICTIONS):
        (evidence,) = r["trace"]["prompt_evidence"]
        trace = evidence["trace"]
        assert trace["strategy"] == "crosslingual"
        assert set(trace["languages_searched"]) == set(LANGS)
        # Every other language got a query translation (the tiny policy's, however poor).
        assert set(trace["query_translations"]) == set(LANGS) - {r["lang"]}
        docs = evidence["passages"]
        assert not {d["doc_id"] for d in docs} & excludes[r["id"]]
        assert {d["role"] for d in docs if d["lang"] != r["lang"]} <= {"supplementary"}


class CountingBackend:
    """The real tiny-model backend, counting the prompts it is asked to continue."""

    def __init__(self, inner) -> None:
        self.inner, self.tokenizer, self.prompts = inner, inner.tokenizer, 0

    @property
    def eos_token_ids(self):
        return self.inner.eos_token_ids

    def generate(self, prompts, *args, **kwargs):
        self.prompts += len(prompts)
        return self.inner.generate(prompts, *args, **kwargs)


def test_resume_skips_done_ids_and_drops_torn_line(tmp_path, bench_dir, policy, retriever):
    run, _ = evaluate(tmp_path, bench_dir, "direct", policy, None, per_lang=1)
    path = run.out_dir / PREDICTIONS
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    assert len(lines) == 3
    # A run killed after two questions, in the middle of writing the third line.
    path.write_text(lines[0] + lines[1] + lines[2][: len(lines[2]) // 2], encoding="utf-8")
    counting = Policy(policy.model, policy.tokenizer, CountingBackend(policy.backend))
    evaluate(tmp_path, bench_dir, "direct", counting, None, per_lang=1)
    assert counting.backend.prompts == 1  # only the question whose line was torn ran again
    again = path.read_text(encoding="utf-8").splitlines(keepends=True)
    assert again[:2] == lines[:2] and len(again) == 3
    assert json.loads(again[2])["id"] == json.loads(lines[2])["id"]
    metrics = json.loads((run.out_dir / "metrics.json").read_text())
    assert metrics["n"] == 3
    assert metrics["throughput"]["questions"] == 1  # the rate counts this invocation's questions only


def test_malformed_middle_line_is_a_clear_error(tmp_path):
    path = tmp_path / PREDICTIONS
    path.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match="line 2"):
        read_predictions(path)


def test_other_pipeline_in_out_dir_is_refused(tmp_path, bench_dir, policy):
    out = tmp_path / "shared"
    evaluate(tmp_path, bench_dir, "direct", policy, None, per_lang=1, out=out)
    with pytest.raises(CrosearchError, match="pipeline direct"):
        evaluate(tmp_path, bench_dir, "rag-mono", policy, None, per_lang=1, out=out)


def test_per_lang_sample_is_stratified_and_deterministic(bench):
    a = sample_questions(bench.test, 3, LANGS, seed=0)
    assert a == sample_questions(bench.test, 3, LANGS, seed=0)
    by_lang = {lang: [q.group for q in a if q.lang == lang] for lang in LANGS}
    assert all(len(groups) == 3 for groups in by_lang.values())
    assert by_lang["en"] == by_lang["de"] == by_lang["zh"]  # the same parallel questions everywhere
    smaller = sample_questions(bench.test, 2, LANGS, seed=0)
    assert {q.id for q in smaller} < {q.id for q in a}  # growing N only adds questions
    other = sample_questions(bench.test, 3, LANGS, seed=1)
    assert {q.group for q in other} != {q.group for q in a}
    with pytest.raises(CrosearchError, match="xx"):
        sample_questions(bench.test, 1, ["xx"])


def _forced_search_backend(policy):
    """The real tiny model, teacher-forced through a search turn and an answer turn."""
    from crosearch.agent.backends import TeacherForcedBackend

    def respond(context: str) -> str:
        if "</information>" in context.split("Question:")[-1]:
            return "<think>found</think><answer>1889</answer>"
        return "<think>I need to search.</think><search>Eiffel Tower opening</search>"

    return Policy(policy.model, policy.tokenizer, TeacherForcedBackend(policy.model, policy.tokenizer, respond))


def test_search_agent_uses_engine_searches_and_keeps_the_integration_trace(tmp_path, bench, policy, retriever):
    forced = _forced_search_backend(policy)
    cfg = make_config(tmp_path, "crosslingual.strategy=concat", "agent.max_new_tokens=40")
    pipe = Pipeline("search-agent", forced, retriever, cfg, temperature=0.0)
    q = sample_questions(bench.test, 1, ["de"])[0]
    (out,) = pipe.run([q])
    trace = out.trace()
    assert out.searches == 1 and out.prediction == "1889" and trace["stop_reason"] == "answered"
    search = trace["turns"][0]
    assert search["query"] == "Eiffel Tower opening"
    ev = search["evidence"]
    assert ev["trace"]["strategy"] == "concat" and len({p["lang"] for p in ev["passages"]}) >= 2
    assert [p["doc_id"] for p in ev["passages"]] == [d["doc_id"] for d in search["docs"]]
    assert not {d["doc_id"] for d in search["docs"]} & set(q.exclude)
    # The RAG pipelines render prompt evidence exactly as the engine inserts it after a search.
    body = "\n".join(f"Doc {i}(Title: {p['title']}) {p['shown']}" for i, p in enumerate(ev["passages"], 1))
    assert search["information"] == information_block(body)


def test_unknown_pipeline_and_missing_retriever_are_clear_errors(tmp_path, policy):
    cfg = make_config(tmp_path)
    with pytest.raises(CrosearchError, match="unknown pipeline"):
        Pipeline("closed-book", policy, None, cfg)
    with pytest.raises(CrosearchError, match="needs a retriever"):
        Pipeline("rag-mono", policy, None, cfg)


def test_report_puts_runs_side_by_side(tmp_path, bench_dir, policy, retriever):
    a, _ = evaluate(tmp_path, bench_dir, "direct", policy, None, per_lang=1)
    b, _ = evaluate(tmp_path, bench_dir, "rag-mono", policy, retriever, per_lang=1)
    text = compare_runs([a.out_dir, b.out_dir], ["f1", "searches"])
    assert "| F1 | direct | rag-mono |" in text and "| searches/q | direct | rag-mono |" in text
    assert all(f"| {lang} |" in text for lang in LANGS) and "**macro**" in text
    with pytest.raises(CrosearchError, match="unknown metric"):
        compare_runs([a.out_dir], ["bleu"])
    with pytest.raises(CrosearchError, match="no metrics.json"):
        compare_runs([tmp_path / "nothing"], ["f1"])


def test_validation_split_is_evaluated_by_name_and_counts_searches(tmp_path, bench_dir, policy):
    bench = build_benchmark(DataConfig(languages=LANGS, setting="no-native", seed=0, validation_fraction=0.2))
    path = write_benchmark(bench, tmp_path / "with-validation")
    run = QARun("direct", path, tmp_path / "val", split="validation", per_lang=2, langs=LANGS)
    metrics = run_qa_eval(run, make_config(tmp_path), policy=policy, progress=False)
    ids = {r["id"] for r in read_predictions(run.out_dir / PREDICTIONS)}
    assert metrics["split"] == "validation" and len(ids) == 6
    assert ids <= {q.id for q in bench.validation} and not ids & {q.id for q in bench.train + bench.test}
    # The closed-book pipeline never searches: every question sits in the 0 bin, in every language.
    assert metrics["searches_histogram"] == {"all": {"0": 6}, **{lang: {"0": 2} for lang in sorted(LANGS)}}
    other = QARun("direct", bench_dir, tmp_path / "none", split="validation", per_lang=1, langs=LANGS)
    with pytest.raises(CrosearchError, match="no validation split"):
        run_qa_eval(other, make_config(tmp_path), policy=policy, progress=False)
