"""``crosearch report --html DIR``: one static, self-contained page with the tables, plots and a trajectory browser.

Everything is inline: the style and script (``resources/report/``), the figures (PNG as
data URIs) and the runs' predictions (JSON in a ``<script type="application/json">``),
so the page opens from disk and makes no request. The script renders only the current
page of questions, so runs with thousands of trajectories stay fast.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Mapping, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

from crosearch.io import atomic_write_text

PAGE = "index.html"
_THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.S)


def _thought(text: str) -> str:
    """The reasoning of a turn: its ``<think>`` content, else the text before the first action tag."""
    match = _THINK.search(text or "")
    if match:
        return match.group(1).strip()
    return re.split(r"<(?:search|answer)>", text or "", maxsplit=1)[0].strip()


def _evidence(ev: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not ev:
        return None
    trace = ev.get("trace") or {}
    return {
        "query": ev.get("query"),
        "strategy": trace.get("strategy"),
        "query_translations": trace.get("query_translations") or {},
        "duplicates": len(trace.get("duplicates") or []),
        "dropped": trace.get("dropped_for_budget") or [],
        "passages": [
            {
                "rank": rank,
                "doc_id": p.get("doc_id"),
                "lang": p.get("lang"),
                "role": p.get("role"),
                "translated": bool(p.get("translated")),
                "translation": p.get("translation"),
                "title": p.get("title"),
                "shown": p.get("shown"),
                "score": p.get("score"),
            }
            for rank, p in enumerate(ev.get("passages") or [], start=1)
        ],
    }


def _turn(turn: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "index": turn.get("index"),
        "kind": turn.get("kind"),
        "action": turn.get("action"),
        # A forced answer's text is the answer itself, not reasoning.
        "thought": _thought(str(turn.get("text") or "")) if turn.get("kind") != "force_answer" else "",
        "text": turn.get("text"),
        "query": turn.get("query"),
        "answer": turn.get("answer"),
        "problems": turn.get("problems") or [],
        "evidence": _evidence(turn.get("evidence")),
        # Without the integration trace (e.g. a run of an older version) the engine's doc list still says what came in.
        "docs": [
            {"doc_id": d.get("doc_id"), "lang": d.get("lang"), "role": d.get("role")} for d in turn.get("docs") or []
        ]
        if not turn.get("evidence")
        else [],
    }


def _result(record: Mapping[str, Any]) -> dict[str, Any]:
    """What the browser shows of one run's answer to one question."""
    trace = record.get("trace") or {}
    scores = record.get("scores") or {}
    return {
        "prediction": record.get("prediction"),
        "em": scores.get("em"),
        "f1": scores.get("f1"),
        "stop_reason": record.get("stop_reason"),
        "searches": record.get("searches"),
        "evidence_hit": record.get("evidence_hit"),
        "prompt_evidence": [_evidence(ev) for ev in trace.get("prompt_evidence") or []],
        "turns": [_turn(t) for t in trace.get("turns") or []],
    }


def page_data(runs: Sequence[Any], title: str) -> dict[str, Any]:
    """The browser's data: runs, and every question (parallel versions together) with each run's result or null."""
    questions: dict[str, dict[str, Any]] = {}
    for k, run in enumerate(runs):
        for r in run.records:
            q = questions.setdefault(
                r["id"],
                {
                    "id": r["id"],
                    "lang": r.get("lang"),
                    "group": r.get("group") or r["id"],
                    "question": r.get("question"),
                    "golds": r.get("golds") or [],
                    "results": [None] * len(runs),
                },
            )
            q["results"][k] = _result(r)
    ordered = sorted(questions.values(), key=lambda q: (str(q["group"]), str(q["lang"]), q["id"]))
    return {
        "title": title,
        "runs": [{"label": r.label, "description": r.description()} for r in runs],
        "questions": ordered,
    }


def _resource(name: str) -> str:
    return files("crosearch").joinpath("resources", "report", name).read_text(encoding="utf-8")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr{}>{}</tr>".format(
            ' class="macro"' if row[0] == "macro" else "", "".join(f"<td>{html.escape(c)}</td>" for c in row)
        )
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _json_script(data: Any) -> str:
    # "<" only occurs inside JSON strings, where \u003c means the same: no "</script>" can end the block early.
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def build_page(report: Any, figures: Mapping[str, bytes], *, title: str = "crosearch report") -> str:
    """The whole page as one string."""
    from crosearch.eval.report import difference_rows, interval_rows, macro_difference_rows, macro_rows

    runs = "".join(f"<li><code>{html.escape(r.label)}</code>: {html.escape(r.description())}</li>" for r in report.runs)
    notes = "".join(f'<p class="warning">warning: {html.escape(w)}</p>' for w in report.warnings)
    level = f"{100 * report.confidence:.0f}%"
    method = (
        f"<p>Intervals: {level} percentile bootstrap over questions, {report.resamples} resamples, "
        f"seed {report.seed}, languages resampled separately.</p>"
        if report.resamples
        else ""
    )
    tables = "<h3>Macro average over languages</h3>" + _table(*macro_rows(report))
    if report.comparisons:
        tables += _table(*macro_difference_rows(report))
    tables += "<h3>By language</h3>" + "".join(_table(*interval_rows(report, m)) for m in report.metrics)
    if report.comparisons:
        tables += (
            f"<h3>Paired differences against <code>{html.escape(str(report.baseline))}</code></h3>"
            "<p>On the questions both runs answered; p&gt;0 is the share of resamples in which the run "
            "is above the baseline.</p>"
        )
        tables += "".join(_table(*difference_rows(report, m)) for m in report.metrics if m != "n")
    images = "".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f"<figcaption>{html.escape(name)}</figcaption></figure>"
        for name, png in figures.items()
    )
    return _resource("page.html").format(
        title=html.escape(title),
        style=_resource("report.css"),
        script=_resource("report.js"),
        runs=runs,
        notes=notes,
        method=method,
        tables=tables,
        figures=images,
        data=_json_script(page_data(report.runs, title)),
    )


def write_page(
    report: Any, out_dir: str | Path, figures: Mapping[str, bytes], *, title: str = "crosearch report"
) -> Path:
    """Write ``DIR/index.html`` atomically; returns its path."""
    path = Path(out_dir) / PAGE
    atomic_write_text(path, build_page(report, figures, title=title))
    return path
