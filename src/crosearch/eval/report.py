"""Several QA runs of ``crosearch eval qa`` side by side (``crosearch report``).

:func:`compare_runs` tabulates the point estimates of ``metrics.json``. :func:`build_report`
adds bootstrap intervals and paired differences (:mod:`crosearch.eval.stats`) from the
runs' ``predictions.jsonl``; its markdown, JSON and terminal views share the cell text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crosearch.errors import CrosearchError, DataFormatError
from crosearch.eval.qa import COLUMNS, METRICS, format_value

if TYPE_CHECKING:
    from crosearch.eval.stats import PairedComparison, RunIntervals

_PERCENT = {key: pct for key, _, pct in COLUMNS}
_HEADERS = {key: header for key, header, _ in COLUMNS}


def load_run(path: str | Path) -> dict[str, Any]:
    """``metrics.json`` of a run directory (or the file itself)."""
    from crosearch.io import read_json

    path = Path(path)
    file = path / METRICS if path.is_dir() else path
    if not file.exists():
        raise CrosearchError(f"{path}: no {METRICS} (run `crosearch eval qa --out {path}` first)")
    data = read_json(file)
    if not isinstance(data, dict) or not isinstance(data.get("per_language"), dict):
        raise DataFormatError(file, "not a crosearch QA metrics file", field="per_language")
    return data


def run_label(path: str | Path, metrics: dict[str, Any]) -> str:
    """A column name: the directory name, which users choose to tell runs apart."""
    path = Path(path)
    return (path if path.is_dir() else path.parent).name or str(metrics.get("pipeline", "?"))


def describe(metrics: dict[str, Any]) -> str:
    """What a run is, from its metrics.json: pipeline, strategy, model, adapter, setting, split, n."""
    keys = ("pipeline", "strategy", "model", "adapter", "setting", "split", "n")
    return ", ".join(f"{k} {metrics.get(k)}" for k in keys if metrics.get(k) is not None)


def compare_table(runs: Sequence[tuple[str, dict[str, Any]]], metric: str) -> str:
    """One markdown table: languages (then macro) as rows, runs as columns, ``metric`` in the cells."""
    if metric not in _PERCENT:
        raise CrosearchError(f"unknown metric '{metric}'; choose from {', '.join(_PERCENT)}")
    langs = sorted({lang for _, m in runs for lang in m["per_language"]})
    header = f"| {_HEADERS[metric]} | " + " | ".join(label for label, _ in runs) + " |"
    lines = [header, "|---|" + "---:|" * len(runs)]
    for lang in langs:
        cells = [format_value(m["per_language"].get(lang, {}).get(metric), _PERCENT[metric]) for _, m in runs]
        lines.append(f"| {lang} | " + " | ".join(cells) + " |")
    cells = [format_value((m.get("macro") or {}).get(metric), _PERCENT[metric]) for _, m in runs]
    lines.append("| **macro** | " + " | ".join(f"**{c}**" for c in cells) + " |")
    return "\n".join(lines)


def compare_runs(paths: Sequence[str | Path], metrics: Sequence[str]) -> str:
    """Markdown: a line per run (what it is), then one table per metric."""
    if not paths:
        raise CrosearchError("give at least one run directory")
    runs = []
    for path in paths:
        data = load_run(path)
        runs.append((run_label(path, data), data))
    labels = [label for label, _ in runs]
    if len(set(labels)) != len(labels):
        runs = [(str(path), data) for path, (_, data) in zip(paths, runs)]
    out = []
    for label, m in runs:
        out.append(f"- `{label}`: {describe(m)}")
    for metric in metrics:
        out.append("")
        out.append(compare_table(runs, metric))
    return "\n".join(out) + "\n"


# ---- statistics: intervals over questions and paired differences (``crosearch report``) ----


@dataclass(slots=True)
class LoadedRun:
    """A run directory's metrics and its per-question prediction records."""

    label: str
    path: Path
    metrics: dict[str, Any]
    records: list[dict[str, Any]]

    def description(self) -> str:
        return describe(self.metrics)


def _run_dir(path: Path) -> Path:
    return path if path.is_dir() else path.parent


def load_runs(paths: Sequence[str | Path]) -> list[LoadedRun]:
    """Each run's ``metrics.json`` and ``predictions.jsonl``, labelled by directory name (full path when ambiguous)."""
    from crosearch.eval.qa import PREDICTIONS, read_predictions

    if not paths:
        raise CrosearchError("give at least one run directory")
    runs = []
    for raw in paths:
        path = Path(raw)
        metrics = load_run(path)
        pred = _run_dir(path) / PREDICTIONS
        if not pred.is_file():
            raise CrosearchError(
                f"{path}: no {PREDICTIONS}; intervals and the trajectory browser need the "
                "per-question predictions of `crosearch eval qa` (or use --resamples 0)"
            )
        records = read_predictions(pred)
        for record in records:
            _check_record(pred, record)
        runs.append(LoadedRun(run_label(path, metrics), _run_dir(path), metrics, records))
    labels = [r.label for r in runs]
    if len(set(labels)) != len(labels):
        for run, raw in zip(runs, paths):
            run.label = str(raw)
    return runs


def _check_record(path: Path, record: dict[str, Any]) -> None:
    """The fields the statistics and the page rely on, named when missing."""
    if not isinstance(record.get("lang"), str):
        raise DataFormatError(path, "a prediction without a language", record=str(record["id"]), field="lang")
    if not isinstance(record.get("scores"), dict):
        raise DataFormatError(path, "a prediction without scores", record=str(record["id"]), field="scores")


@dataclass(slots=True)
class Report:
    """Everything ``crosearch report`` prints: per-run intervals, paired differences against a baseline, warnings."""

    runs: list[LoadedRun]
    metrics: list[str]
    intervals: list[RunIntervals]
    comparisons: list[PairedComparison] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    resamples: int = 2000
    seed: int = 0
    confidence: float = 0.95
    baseline: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "resamples": self.resamples,
            "seed": self.seed,
            "confidence": self.confidence,
            "metrics": self.metrics,
            "baseline": self.baseline,
            "warnings": self.warnings,
            "runs": [
                {"label": r.label, "path": str(r.path), "description": r.description(), **ivs.to_dict()}
                for r, ivs in zip(self.runs, self.intervals)
            ],
            "comparisons": [c.to_dict() for c in self.comparisons],
        }


def check_metrics(metrics: Sequence[str]) -> list[str]:
    unknown = [m for m in metrics if m not in _PERCENT]
    if unknown:
        raise CrosearchError(f"unknown metric '{unknown[0]}'; choose from {', '.join(_PERCENT)}")
    if not metrics:
        raise CrosearchError("give at least one metric")
    return list(metrics)


def build_report(
    paths: Sequence[str | Path],
    metrics: Sequence[str],
    *,
    baseline: str | Path | None = None,
    resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Report:
    """Load the runs (the baseline first, added when not among them) and compute every interval and difference."""
    from crosearch.eval.stats import paired_differences, run_intervals, sharing_warnings

    metrics = check_metrics(metrics)
    if resamples < 0:
        raise CrosearchError(f"--resamples must be 0 or more, got {resamples}")
    # A run named twice (`search-r1 eval/gap/*`) is one run: keep its first mention.
    unique: dict[Path, Path] = {}
    for p in paths:
        unique.setdefault(_run_dir(Path(p)).resolve(), Path(p))
    paths = list(unique.values())
    base_index = None
    if baseline is not None:
        wanted = _run_dir(Path(baseline)).resolve()
        if wanted in unique:
            base_index = list(unique).index(wanted)
        else:
            paths.insert(0, Path(baseline))
            base_index = 0
    runs = load_runs(paths)
    if base_index is not None:
        runs.insert(0, runs.pop(base_index))
    warnings = []
    for run in runs:
        if run.metrics.get("n") is not None and run.metrics["n"] != len(run.records):
            warnings.append(
                f"'{run.label}': {len(run.records)} predictions but metrics.json counts "
                f"{run.metrics['n']}; the tables here use every prediction"
            )
    pairs = [(r.label, r.records) for r in runs]
    warnings += sharing_warnings(pairs)
    shown = [m for m in metrics if m != "n"]
    intervals = [
        run_intervals(r.label, r.records, shown, resamples=resamples, seed=seed, confidence=confidence) for r in runs
    ]
    comparisons = []
    if base_index is not None:
        comparisons = [
            paired_differences(pair, pairs[0], shown, resamples=resamples, seed=seed, confidence=confidence)
            for pair in pairs[1:]
        ]
    return Report(
        runs,
        metrics,
        intervals,
        comparisons,
        warnings,
        resamples,
        seed,
        confidence,
        runs[0].label if base_index is not None else None,
    )


def _interval_cell(estimate: Any, number: Callable[[float], str]) -> str:
    """``value [low, high]`` in ``number``'s format; the bare value without an interval, ``-`` without a value."""
    if estimate is None or estimate.value is None:
        return "-"
    if estimate.low is None:
        return number(estimate.value)
    return f"{number(estimate.value)} [{number(estimate.low)}, {number(estimate.high)}]"


def estimate_cell(estimate: Any, percent: bool) -> str:
    """``value [low, high]`` with the table's number format; the bare value without an interval."""
    return _interval_cell(estimate, lambda value: format_value(value, percent))


def _signed(value: float, percent: bool) -> str:
    return f"{100 * value:+.1f}" if percent else f"{value:+.2f}"


def difference_cell(diff: Any, percent: bool) -> str:
    """``+d [low, high] p>0 share`` (share of resamples in which the run beats the baseline)."""
    cell = _interval_cell(diff, lambda value: _signed(value, percent))
    if diff is None or diff.value is None or diff.low is None:
        return cell
    return f"{cell} p>0 {diff.above_zero:.2f}"


def _languages(report: Report) -> list[str]:
    return sorted({str(r["lang"]) for run in report.runs for r in run.records})


def interval_rows(report: Report, metric: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows (languages, then macro) of one metric's table; markdown and terminal views share them."""
    from crosearch.eval.stats import MACRO

    header = [_HEADERS[metric], *(r.label for r in report.runs)]
    rows = []
    for lang in [*_languages(report), MACRO]:
        if metric == "n":
            counts = [sum(1 for r in run.records if lang in (MACRO, r["lang"])) for run in report.runs]
            rows.append([lang, *(str(c) for c in counts)])
        else:
            rows.append(
                [lang, *(estimate_cell(ivs.metrics[metric].get(lang), _PERCENT[metric]) for ivs in report.intervals)]
            )
    return header, rows


def difference_rows(report: Report, metric: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one metric's paired differences (every run minus the baseline)."""
    from crosearch.eval.stats import MACRO

    header = [f"{_HEADERS[metric]}: run - {report.baseline}", *(c.run for c in report.comparisons)]
    rows = [
        [lang, *(difference_cell(c.metrics[metric].get(lang), _PERCENT[metric]) for c in report.comparisons)]
        for lang in [*_languages(report), MACRO]
    ]
    return header, rows


def macro_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """The headline: one row per run, each metric's macro value with its interval (``n``: questions)."""
    from crosearch.eval.stats import MACRO

    header = ["run", *(_HEADERS[m] for m in report.metrics)]
    rows = []
    for run, ivs in zip(report.runs, report.intervals):
        cells = [
            str(len(run.records)) if m == "n" else estimate_cell(ivs.metrics[m].get(MACRO), _PERCENT[m])
            for m in report.metrics
        ]
        rows.append([run.label, *cells])
    return header, rows


def macro_difference_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """One row per run: each metric's macro paired difference against the baseline."""
    from crosearch.eval.stats import MACRO

    shown = [m for m in report.metrics if m != "n"]
    header = [f"run - {report.baseline}", *(_HEADERS[m] for m in shown)]
    rows = [
        [c.run, *(difference_cell(c.metrics[m].get(MACRO), _PERCENT[m]) for m in shown)] for c in report.comparisons
    ]
    return header, rows


def _what(report: Report) -> list[str]:
    level = f"{100 * report.confidence:.0f}%"
    lines = [f"- `{run.label}`: {run.description()}" for run in report.runs]
    if report.resamples:
        lines.append(
            f"- intervals: {level} percentile bootstrap over questions ({report.resamples} resamples, "
            f"seed {report.seed}; languages resampled separately)"
        )
    return lines


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table's lines; the ``macro`` row in bold."""
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for row in rows:
        cells = row if row[0] != "macro" else [f"**{c}**" for c in row]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def report_markdown(report: Report) -> str:
    """The run list, the macro tables, one interval table per metric, then one paired-difference table per metric."""
    out = [*_what(report)]
    out += [f"- warning: {w}" for w in report.warnings]
    out += ["", "Macro average over languages:", "", *markdown_table(*macro_rows(report))]
    if report.comparisons:
        out += ["", *markdown_table(*macro_difference_rows(report))]
    for metric in report.metrics:
        out += ["", *markdown_table(*interval_rows(report, metric))]
    if report.comparisons:
        shared = ", ".join(f"`{c.run}` {c.shared}" for c in report.comparisons)
        out += [
            "",
            f"Paired differences on the questions each run shares with `{report.baseline}` ({shared}); "
            "p>0: share of resamples in which the run is above the baseline.",
        ]
        for metric in report.metrics:
            if metric != "n":
                out += ["", *markdown_table(*difference_rows(report, metric))]
    return "\n".join(out) + "\n"


def report_tables(report: Report) -> list[Any]:
    """The same tables as :func:`report_markdown`, as rich tables for the terminal."""
    from rich.table import Table

    tables = []
    # (title, rows): the macro tables name their runs in the first column, the others their languages.
    specs: list[tuple[str | None, tuple[list[str], list[list[str]]]]] = [("macro", macro_rows(report))]
    if report.comparisons:
        specs.append(("macro", macro_difference_rows(report)))
    specs += [(None, interval_rows(report, m)) for m in report.metrics]
    if report.comparisons:
        specs += [(None, difference_rows(report, m)) for m in report.metrics if m != "n"]
    for title, (header, rows) in specs:
        table = Table(title=title or header[0])
        table.add_column(header[0] if title else "lang")
        for name in header[1:]:
            table.add_column(name, justify="right")
        for row in rows:
            if row[0] == "macro":
                table.add_section()
            table.add_row(*row)
        tables.append(table)
    return tables


def print_report(report: Report, console: Any) -> None:
    """The terminal view: the run list and warnings as in the markdown, then the rich tables."""
    from rich.markup import escape

    for line in _what(report):
        console.print(escape(line))
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    for table in report_tables(report):
        console.print(table)


TRAINING_METRICS = ("reward", "loss")


def report_figures(report: Report, training: Sequence[tuple[str, list[dict[str, Any]]]] = ()) -> dict[str, bytes]:
    """PNG figures by file name: per-language bars with whiskers for each metric, and the training curves."""
    from crosearch.eval.plots import language_bars, training_curves

    out = {}
    for metric in report.metrics:
        if metric == "n":
            continue
        runs = [(ivs.label, ivs.metrics[metric]) for ivs in report.intervals]
        out[f"{metric}_by_language.png"] = language_bars(runs, _HEADERS[metric], percent=_PERCENT[metric])
    if training:
        curves = training_curves(training, TRAINING_METRICS)
        if curves is not None:
            out["training.png"] = curves
    return out
