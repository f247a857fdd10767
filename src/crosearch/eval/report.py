"""Side-by-side comparison of several QA runs (``metrics.json`` of ``crosearch eval qa``) as markdown tables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crosearch.errors import CrosearchError, DataFormatError
from crosearch.eval.qa import COLUMNS, METRICS, format_value

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
        what = ", ".join(f"{k} {m.get(k)}" for k in ("pipeline", "strategy", "model", "adapter", "setting", "split", "n")
                         if m.get(k) is not None)
        out.append(f"- `{label}`: {what}")
    for metric in metrics:
        out.append("")
        out.append(compare_table(runs, metric))
    return "\n".join(out) + "\n"
