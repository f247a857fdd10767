"""The committed CPU experiment: its evaluations reproduce its report and the tables of docs/experiments.md.

``crosearch experiment run --config configs/experiment-cpu.yaml`` wrote
``benchmarks/results/experiment/``; the report stage's JSON names the runs of each setting, in
order, with the bootstrap's resamples and seed. Recomputing the report from the committed
``predictions.jsonl`` files must give the same numbers, and the macro tables in the docs must be
those numbers, so that no table there can drift from the results it cites.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from crosearch.eval.report import Report, build_report, macro_difference_rows, macro_rows, markdown_table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "experiment"
REPORT = RESULTS / "report"
DOCS = ROOT / "docs" / "experiments.md"
SETTINGS = ["gap", "no-native", "full"]


def _recompute(setting: str) -> tuple[dict[str, Any], Report]:
    saved = json.loads((REPORT / f"{setting}.json").read_text(encoding="utf-8"))
    paths = [RESULTS / "eval" / setting / run["label"] for run in saved["runs"]]
    report = build_report(
        paths,
        saved["metrics"],
        baseline=paths[0] if saved["baseline"] else None,
        resamples=saved["resamples"],
        seed=saved["seed"],
    )
    return saved, report


def _numbers(data: dict[str, Any]) -> dict[str, Any]:
    """The report's numbers, without the run paths and descriptions (they depend on where it was run from)."""
    runs = [{k: v for k, v in run.items() if k not in ("path", "description")} for run in data["runs"]]
    return {**data, "runs": runs}


@pytest.mark.parametrize("setting", SETTINGS)
def test_the_committed_evaluations_reproduce_the_report(setting):
    saved, report = _recompute(setting)
    assert report.baseline == "search-r1" and report.resamples >= 1000
    assert {len(run.records) for run in report.runs} == {240}  # 30 questions in each of 8 languages
    assert _numbers(json.loads(json.dumps(report.to_dict()))) == _numbers(saved)


@pytest.mark.parametrize("setting", SETTINGS)
def test_the_docs_macro_tables_are_the_reports(setting):
    _, report = _recompute(setting)
    docs = DOCS.read_text(encoding="utf-8")
    for header, rows in [macro_rows(report), macro_difference_rows(report)]:
        table = "\n".join(markdown_table(header, rows))
        assert table in docs, f"docs/experiments.md lacks the {setting} table:\n{table}"
