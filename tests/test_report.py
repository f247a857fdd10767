"""``crosearch report``: bootstrap intervals (checked against scipy), paired differences, the three views, plots,
and the HTML trajectory browser opened in headless Chromium. Runs are real tiny-model evaluations."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats as scipy_stats
from typer.testing import CliRunner

from crosearch.agent.backends import TeacherForcedBackend
from crosearch.agent.pipelines import Policy, load_policy_backend
from crosearch.cli import app
from crosearch.config import DataConfig, ModelConfig
from crosearch.data.benchmark import build_benchmark, load_benchmark, write_benchmark
from crosearch.errors import CrosearchError, DataFormatError
from crosearch.eval.html_report import PAGE, write_page
from crosearch.eval.qa import PREDICTIONS, QARun, read_predictions, run_qa_eval
from crosearch.eval.report import (
    build_report,
    difference_cell,
    estimate_cell,
    interval_rows,
    macro_difference_rows,
    macro_rows,
    print_report,
    report_figures,
    report_markdown,
)
from crosearch.eval.stats import paired_differences, run_intervals
from crosearch.retrieval.local import LocalRetriever, build_index
from test_eval_qa import make_config

LANGS = ["en", "de", "zh"]
RIGHT_LANGS = ("en", "de")  # the gold-trajectory agent answers these correctly, zh wrongly
PER_LANG = 4


def _records(values: dict[str, list[float]], metric: str = "f1") -> list[dict]:
    """Prediction records as predictions.jsonl holds them (only the fields the statistics read)."""
    return [
        {
            "id": f"q{i}/{lang}",
            "lang": lang,
            "scores": {"em": 0.0, "f1": 0.0, "char3": 0.0, "lang_match": None, metric: float(v)},
        }
        for lang, vs in values.items()
        for i, v in enumerate(vs)
    ]


# ---- statistics ----


def test_percentile_intervals_agree_with_scipy_bootstrap():
    rng = np.random.default_rng(7)
    f1 = {"en": rng.random(80).tolist(), "de": (rng.random(50) ** 3).tolist()}
    em = {"en": (rng.random(80) < 0.3).astype(float).tolist()}
    ours = run_intervals("a", _records(f1), ["f1"], resamples=20000, seed=1).metrics["f1"]
    ours_em = run_intervals("a", _records(em, "em"), ["em"], resamples=20000, seed=1).metrics["em"]
    for lang, values, mine in [
        ("en", f1["en"], ours["en"]),
        ("de", f1["de"], ours["de"]),
        ("en", em["en"], ours_em["en"]),
    ]:
        ref = scipy_stats.bootstrap(
            (np.array(values),), np.mean, method="percentile", n_resamples=20000, random_state=0
        ).confidence_interval
        assert mine.value == pytest.approx(np.mean(values))
        # Monte Carlo error of a 2.5% quantile over 20000 resamples is well below 0.01 here.
        assert mine.low == pytest.approx(ref.low, abs=0.01) and mine.high == pytest.approx(ref.high, abs=0.01), lang
    assert ours["macro"].value == pytest.approx((np.mean(f1["en"]) + np.mean(f1["de"])) / 2)
    assert ours["macro"].low < ours["macro"].value < ours["macro"].high


def test_paired_differences_agree_with_scipy_paired_bootstrap():
    rng = np.random.default_rng(3)
    base = rng.random(60)
    better = np.clip(base + rng.normal(0.05, 0.1, 60), 0, 1)
    diff = paired_differences(
        ("b", _records({"en": better.tolist()})),
        ("a", _records({"en": base.tolist()})),
        ["f1"],
        resamples=20000,
        seed=0,
    ).metrics["f1"]["en"]
    ref = scipy_stats.bootstrap(
        (better, base),
        lambda x, y: np.mean(x) - np.mean(y),
        paired=True,
        method="percentile",
        n_resamples=20000,
        random_state=0,
    ).confidence_interval
    assert diff.value == pytest.approx(np.mean(better) - np.mean(base))
    assert diff.low == pytest.approx(ref.low, abs=0.005) and diff.high == pytest.approx(ref.high, abs=0.005)
    assert 0.9 < diff.above_zero <= 1.0 and diff.n == 60


def test_resampling_is_seeded():
    records = _records({"en": np.random.default_rng(1).random(30).tolist()})
    first = run_intervals("a", records, ["f1"], resamples=500, seed=5).to_dict()
    assert run_intervals("a", records, ["f1"], resamples=500, seed=5).to_dict() == first
    assert run_intervals("a", records, ["f1"], resamples=500, seed=6).to_dict() != first


# ---- real runs ----


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory) -> Path:
    bench = build_benchmark(DataConfig(languages=LANGS, setting="no-native", seed=0))
    return write_benchmark(bench, tmp_path_factory.mktemp("bench") / "b")


@pytest.fixture(scope="module")
def runs(bench_dir, tmp_path_factory) -> dict[str, Path]:
    """``direct`` (the tiny model), ``agent`` (the tiny model teacher-forced through gold search trajectories,
    right in en/de, wrong in zh) and ``direct-small`` (direct on half the questions)."""
    root = tmp_path_factory.mktemp("runs")
    bench = load_benchmark(bench_dir)
    build_index(bench.collection, root / "index")
    retriever = LocalRetriever(root / "index")
    policy = load_policy_backend(ModelConfig(name="tiny"))
    by_text = {q.question: q for q in bench.test}

    def respond(context: str) -> str:
        tail = context.split("Question:")[-1]
        q = next(q for text, q in by_text.items() if text in tail)
        if "</information>" not in tail:
            return f"<think>I should look this up.</think><search>{q.question}</search>"
        answer = q.answers[0] if q.lang in RIGHT_LANGS else "1889"
        return f"<think>The evidence says it.</think><answer>{answer}</answer>"

    forced = Policy(policy.model, policy.tokenizer, TeacherForcedBackend(policy.model, policy.tokenizer, respond))
    out = {}
    for name, pipeline, backend, per_lang, extra in [
        ("direct", "direct", policy, PER_LANG, []),
        ("direct-small", "direct", policy, PER_LANG // 2, []),
        ("agent", "search-agent", forced, PER_LANG, ["crosslingual.strategy=concat", "agent.max_new_tokens=64"]),
    ]:
        run = QARun(pipeline=pipeline, benchmark=bench_dir, out_dir=root / name, per_lang=per_lang, langs=LANGS)
        run_qa_eval(run, make_config(root, *extra), policy=backend, retriever=retriever, progress=False)
        out[name] = run.out_dir
    return out


def test_point_estimates_are_the_metrics_json_numbers(runs):
    names = ["em", "f1", "char3", "lang_match", "searches", "evidence_hit", "tokens_per_retrieval", "seconds"]
    report = build_report([runs["agent"], runs["direct"]], names, resamples=50)
    for run, intervals in zip(report.runs, report.intervals):
        for metric in names:
            for lang, values in run.metrics["per_language"].items():
                assert intervals.metrics[metric][lang].value == pytest.approx(values.get(metric)), (run.label, metric)
            assert intervals.metrics[metric]["macro"].value == pytest.approx(run.metrics["macro"].get(metric))


def test_paired_differences_and_the_three_views_print_the_same_numbers(runs):
    from rich.console import Console

    report = build_report(
        [runs["direct"], runs["agent"]], ["em", "f1", "n"], baseline=runs["direct"], resamples=300, seed=3
    )
    assert report.baseline == "direct" and not report.warnings
    (comparison,) = report.comparisons
    assert comparison.run == "agent" and comparison.shared == PER_LANG * len(LANGS)
    em = comparison.metrics["em"]
    assert all(em[lang].value == 1.0 and em[lang].above_zero == 1.0 for lang in RIGHT_LANGS)
    assert em["zh"].value == 0.0 and em["zh"].above_zero == 0.0
    assert em["macro"].value == pytest.approx(2 / 3)

    data = json.loads(json.dumps(report.to_dict()))
    markdown = report_markdown(report)
    console = Console(record=True, width=400)
    print_report(report, console)
    terminal = console.export_text()
    agent = next(r for r in data["runs"] if r["label"] == "agent")
    for _lang, est in agent["metrics"]["f1"].items():
        cell = estimate_cell(SimpleNamespace(**est), True)
        assert f"| {cell} |" in markdown or f"| **{cell}** |" in markdown
        assert cell in terminal
    for lang, diff in data["comparisons"][0]["metrics"]["em"].items():
        cell = difference_cell(SimpleNamespace(**diff), True)
        assert cell in markdown and cell in terminal, lang
    assert "p>0 1.00" in markdown and "| **macro** |" in markdown


def test_the_macro_tables_come_first_and_repeat_the_per_metric_macro_rows(runs):
    from rich.console import Console

    report = build_report([runs["direct"], runs["agent"]], ["em", "f1", "n"], baseline=runs["direct"], resamples=200)
    header, rows = macro_rows(report)
    assert header == ["run", "EM", "F1", "n"] and [r[0] for r in rows] == ["direct", "agent"]
    assert [r[3] for r in rows] == [str(PER_LANG * len(LANGS))] * 2
    for col, metric in [(1, "em"), (2, "f1")]:
        _, by_lang = interval_rows(report, metric)
        macro = next(r for r in by_lang if r[0] == "macro")
        assert [r[col] for r in rows] == macro[1:], metric
    diff_header, (diff,) = macro_difference_rows(report)
    assert diff_header == ["run - direct", "EM", "F1"] and diff[0] == "agent"
    assert diff[1].startswith("+66.7 [") and diff[1].endswith("p>0 1.00")  # the agent is right in 2 of 3 languages
    markdown = report_markdown(report)
    assert markdown.index("| agent | " + " | ".join(rows[1][1:]) + " |") < markdown.index("| EM | direct | agent |")
    assert markdown.index("| agent | " + " | ".join(diff[1:]) + " |") < markdown.index("| EM | direct | agent |")
    console = Console(record=True, width=400)
    print_report(report, console)
    assert diff[2] in console.export_text()


def test_a_run_named_twice_is_reported_once(runs):
    report = build_report(
        [runs["direct"], runs["agent"], runs["direct"] / "metrics.json"], ["f1"], baseline=runs["direct"], resamples=20
    )
    assert [r.label for r in report.runs] == ["direct", "agent"]
    assert [c.run for c in report.comparisons] == ["agent"]


def test_runs_without_the_same_questions_are_flagged(runs):
    report = build_report([runs["direct"], runs["direct-small"]], ["f1"], baseline=runs["direct-small"], resamples=50)
    assert [r.label for r in report.runs] == ["direct-small", "direct"]  # the baseline comes first
    (warning,) = report.warnings
    assert "do not share the same questions" in warning and f"{PER_LANG // 2 * len(LANGS)} shared" in warning
    assert report.comparisons[0].shared == PER_LANG // 2 * len(LANGS)
    assert report.comparisons[0].only_run == (PER_LANG - PER_LANG // 2) * len(LANGS)


def test_cli_writes_json_plots_and_page(runs, tmp_path):
    grpo = tmp_path / "grpo"  # a finished training run: its summary.json holds the trainer's log history
    grpo.mkdir()
    (grpo / "summary.json").write_text(json.dumps({"log_history": [{"step": s, "reward": 0.1 * s} for s in (1, 2, 3)]}))
    result = CliRunner().invoke(
        app,
        [
            "report",
            str(runs["direct"]),
            str(runs["agent"]),
            "--baseline",
            str(runs["direct"]),
            "--metrics",
            "em,f1",
            "--resamples",
            "200",
            "--format",
            "json",
            "--out",
            str(tmp_path / "r.json"),
            "--html",
            str(tmp_path / "html"),
            "--plots",
            str(tmp_path / "plots"),
            "--training",
            str(grpo),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert data["resamples"] == 200 and data["baseline"] == "direct" and data["comparisons"][0]["run"] == "agent"
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert pngs == ["em_by_language.png", "f1_by_language.png", "training.png"]
    assert all((tmp_path / "plots" / p).read_bytes().startswith(b"\x89PNG") for p in pngs)
    page = (tmp_path / "html" / PAGE).read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 3 and "http://" not in page and "https://" not in page


def test_missing_predictions_is_a_clear_error(runs, tmp_path):
    only_metrics = tmp_path / "copy"
    only_metrics.mkdir()
    shutil.copy(runs["direct"] / "metrics.json", only_metrics / "metrics.json")
    with pytest.raises(CrosearchError, match="no predictions.jsonl"):
        build_report([only_metrics], ["f1"])
    (only_metrics / PREDICTIONS).write_text('{"id": "q1/en", "lang": "en"}\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"predictions.jsonl, record q1/en, field 'scores'"):
        build_report([only_metrics], ["f1"])
    (only_metrics / PREDICTIONS).unlink()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-m", "crosearch.cli", "report", str(only_metrics), "--html", str(tmp_path / "h")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and PREDICTIONS in proc.stderr
    # Point estimates alone still come from metrics.json.
    proc = subprocess.run(
        [sys.executable, "-m", "crosearch.cli", "report", str(only_metrics), "--resamples", "0"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0 and "| **macro** |" in proc.stdout


def test_training_curves_join_the_figures(runs):
    report = build_report([runs["direct"]], ["f1"], resamples=20)
    history = [{"step": s, "reward": 0.1 * s} for s in range(1, 6)]
    figures = report_figures(report, [("grpo", history), ("sft", [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}])])
    assert set(figures) == {"f1_by_language.png", "training.png"}
    assert figures["training.png"].startswith(b"\x89PNG")


# ---- the page in a real browser ----


def _chromium() -> str:
    path = os.environ.get("CROSEARCH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.skip("chromium is not installed (apt-get install -y chromium; `.ci/run` does this)")
    return path


def test_page_in_headless_chromium(runs, tmp_path):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
    )
    executable = _chromium()
    report = build_report([runs["agent"], runs["direct"]], ["em", "f1"], baseline=runs["direct"], resamples=100)
    page_path = write_page(report, tmp_path / "html", report_figures(report))
    url = page_path.resolve().as_uri()
    total = PER_LANG * len(LANGS)
    assert len(read_predictions(runs["agent"] / PREDICTIONS)) == total

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable)
        try:
            page = browser.new_page()
            requests, errors = [], []
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.route("**/*", lambda route: route.continue_() if route.request.url == url else route.abort())
            page.goto(url)
            cards = page.locator("article.question")

            def shown() -> list[str]:
                return cards.evaluate_all("els => els.map(e => e.dataset.lang)")

            # The baseline comes first: run A is direct, run B the agent, side by side.
            assert page.locator("#run-a").input_value() == "0" and page.locator("#run-b").input_value() == "1"
            assert len(shown()) == total
            first = cards.first
            assert first.locator(".result").count() == 2
            agent = first.locator(".result[data-run='agent']")
            assert "turn 1 · search" in agent.inner_text() and "search: " in agent.inner_text()
            passages = agent.locator("details.passage")
            assert passages.count() >= 2 and len(set(passages.evaluate_all("els => els.map(e => e.dataset.lang)"))) >= 2
            assert "stop: answered" in agent.inner_text() and "EM " in agent.inner_text()
            assert "forced answer" in first.locator(".result[data-run='direct']").inner_text()

            # Paging: only one page of questions is in the DOM.
            page.select_option("#page-size", "10")
            assert len(shown()) == 10
            page.click("#next")
            assert len(shown()) == total - 10

            page.select_option("#lang", "zh")
            assert shown() == ["zh"] * PER_LANG

            page.select_option("#lang", label="all")
            page.select_option("#outcome", "a-right-b-wrong")
            assert shown() == [] and "no question matches" in page.inner_text("#count")  # direct right, agent wrong
            page.select_option("#run-a", label="agent")
            page.select_option("#run-b", label="direct")
            assert sorted(set(shown())) == sorted(RIGHT_LANGS) and len(shown()) == PER_LANG * len(RIGHT_LANGS)
            assert cards.first.locator(".result").first.get_attribute("data-run") == "agent"
        finally:
            browser.close()
    assert not errors
    assert requests and set(requests) == {url}


def test_quickstart_writes_the_page_for_its_runs(runs, tmp_path):
    from crosearch.cli.quickstart import _write_report

    # No sft/grpo directories: the page goes without training curves.
    page = _write_report(tmp_path, [runs["direct"], runs["agent"]], train=True)
    assert page == tmp_path / "report" / PAGE
    text = page.read_text(encoding="utf-8")
    assert "crosearch quickstart" in text and "Paired differences against <code>direct</code>" in text
