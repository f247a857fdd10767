"""QA evaluation: run one pipeline over a benchmark split, score it, and tabulate per language.

Predictions are appended to ``predictions.jsonl`` and flushed to disk after every
batch, so a killed run resumes where it stopped: ids already present are skipped,
and a torn last line (the process died mid-write) is dropped. ``metrics.json``
is rewritten atomically from every prediction at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crosearch.config import Config, MetricsConfig
from crosearch.errors import CrosearchError, DataFormatError
from crosearch.progress import bar
from crosearch.types import QAExample

if TYPE_CHECKING:
    from rich.console import Console

    from crosearch.agent.pipelines import Pipeline, PipelineOutput, Policy
    from crosearch.retrieval.base import Retriever

PREDICTIONS = "predictions.jsonl"
METRICS = "metrics.json"
# Columns of the per-language table: (key in metrics.json, header, shown as a percentage).
COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("em", "EM", True),
    ("f1", "F1", True),
    ("char3", "char3 recall", True),
    ("lang_match", "answer lang", True),
    ("searches", "searches/q", False),
    ("evidence_hit", "gold in context", True),
    ("tokens_per_retrieval", "tokens/retrieval", False),
    ("seconds", "s/question", False),
    ("n", "n", False),
)


def _rank_key(seed: int, group: str) -> str:
    return hashlib.sha256(f"{seed}:{group}".encode()).hexdigest()


def sample_questions(
    questions: Sequence[QAExample], per_lang: int | None, langs: Sequence[str] | None = None, seed: int = 0
) -> list[QAExample]:
    """A deterministic per-language sample, stratified by language.

    Each language keeps its ``per_lang`` questions of smallest ``sha256(seed:group)``.
    Parallel versions of a question share the group, so the same questions are
    picked in every language, in every run and for every pipeline. The result is
    ordered by that rank, then language (a batch then holds parallel versions).
    """
    if langs:
        have = {q.lang for q in questions}
        missing = [lang for lang in langs if lang not in have]
        if missing:
            raise CrosearchError(
                f"no questions in language(s) {', '.join(missing)}; this split has {', '.join(sorted(have))}"
            )
    chosen = [q for q in questions if not langs or q.lang in langs]
    ranked = sorted(chosen, key=lambda q: (_rank_key(seed, q.group or q.id), q.lang, q.id))
    return ranked if per_lang is None else first_per_lang(ranked, per_lang)


def first_per_lang(questions: Sequence[QAExample], per_lang: int) -> list[QAExample]:
    """The first ``per_lang`` questions of each language, in the given order."""
    counts: dict[str, int] = {}
    kept = []
    for q in questions:
        if counts.get(q.lang, 0) < per_lang:
            counts[q.lang] = counts.get(q.lang, 0) + 1
            kept.append(q)
    return kept


def read_predictions(path: str | Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """Records of a predictions file; a torn last line is dropped (and cut from the file when ``repair``).

    A malformed line anywhere but at the end is an error: that file was not written by an interrupted run.
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    records: list[dict[str, Any]] = []
    good_end = 0
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, start=1):
        last = number == len(lines)
        if not raw.strip():
            if not last:
                good_end += len(raw) + 1
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
            if not isinstance(obj, dict) or "id" not in obj:
                raise ValueError("not a prediction record")
        except (ValueError, UnicodeDecodeError) as exc:
            if last:
                break  # torn final write: dropped, the question is run again
            raise DataFormatError(
                path, f"not a prediction record ({exc}); delete the file to start over", line=number
            ) from None
        records.append(obj)
        good_end += len(raw) + (0 if last else 1)
    if repair and good_end != len(data):
        with open(path, "r+b") as handle:
            handle.truncate(good_end)
            if good_end and not data[:good_end].endswith(b"\n"):
                handle.seek(good_end)
                handle.write(b"\n")
    return records


def append_predictions(path: str | Path, records: Sequence[dict[str, Any]]) -> None:
    """Append records and force them to disk, so a later kill loses at most the batch in flight."""
    from crosearch.io import dumps_line

    with open(path, "a", encoding="utf-8", newline="\n") as handle:
        handle.write("".join(dumps_line(r) + "\n" for r in records))
        handle.flush()
        os.fsync(handle.fileno())


def prediction_record(
    output: PipelineOutput, metrics_config: MetricsConfig, seconds: float | None = None
) -> dict[str, Any]:
    """One predictions.jsonl line: the question, its golds, the prediction, its scores, its cost and the full trace.

    ``seconds`` is the question's share of its batch's wall time (generation, retrieval, translation).
    """
    from crosearch.eval.metrics import score_prediction

    q = output.question
    scores = score_prediction(output.prediction, q.answers, q.lang, config=metrics_config)
    blocks = output.evidence_blocks()
    return {
        "id": q.id,
        "lang": q.lang,
        "group": q.group,
        "question": q.question,
        "golds": list(q.answers),
        "native_available": q.native_available,
        "pipeline": output.pipeline,
        "prediction": output.prediction,
        "scores": scores.to_dict(),
        "searches": output.searches,
        "evidence_hit": output.evidence_hit(),
        "retrievals": len(blocks),
        "evidence_tokens": sum(int(b["trace"].get("tokens", 0)) for b in blocks),
        "seconds": round(seconds, 3) if seconds is not None else None,
        "stop_reason": output.rollout.stop_reason,
        "trace": output.trace(),
    }


def _per_retrieval(rows: Sequence[dict[str, Any]]) -> float | None:
    retrievals = sum(int(r.get("retrievals") or 0) for r in rows)
    return sum(int(r.get("evidence_tokens") or 0) for r in rows) / retrievals if retrievals else None


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def summarise(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-language means (EM, F1, char3, answer language, searches, gold in context, n), macro and micro.

    ``searches_histogram`` counts the questions by number of searches, per language and over all
    (``{"all": {"0": n, "1": n, ...}, "de": {...}}``): a mean of 1.0 can hide a mix of 0 and 2.
    """
    from crosearch.eval.metrics import QAScores, aggregate_scores

    report = aggregate_scores((r["lang"], QAScores(**r["scores"])) for r in records)
    out: dict[str, Any] = report.to_dict()
    by_lang: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_lang.setdefault(r["lang"], []).append(r)
    extras: dict[str, dict[str, float | None]] = {}
    for lang, rows in by_lang.items():
        hits = [float(r["evidence_hit"]) for r in rows if r.get("evidence_hit") is not None]
        extras[lang] = {
            "searches": _mean([float(r["searches"]) for r in rows]),
            "evidence_hit": _mean(hits),
            "tokens_per_retrieval": _per_retrieval(rows),
            "seconds": _mean([float(r["seconds"]) for r in rows if r.get("seconds") is not None]),
        }
        out["per_language"][lang].update(extras[lang])
    for key in ("searches", "evidence_hit", "seconds"):
        langs = [v[key] for v in extras.values() if v[key] is not None]
        if out["macro"] is not None:
            out["macro"][key] = _mean(langs)
        pooled = [float(r[key]) for r in records if r.get(key) is not None]
        if out["micro"] is not None:
            out["micro"][key] = _mean(pooled)
    out["searches_histogram"] = {
        key: _count(str(int(r["searches"])) for r in rows)
        for key, rows in [("all", list(records)), *sorted(by_lang.items())]
    }
    langs = [v["tokens_per_retrieval"] for v in extras.values() if v["tokens_per_retrieval"] is not None]
    if out["macro"] is not None:
        out["macro"]["tokens_per_retrieval"] = _mean(langs)
    if out["micro"] is not None:
        out["micro"]["tokens_per_retrieval"] = _per_retrieval(records)
    return out


def metrics_table(metrics: dict[str, Any], title: str | None = None) -> Any:
    """The per-language table (percentages) with the macro and micro averages as the last rows."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("lang")
    for _, header, _ in COLUMNS:
        table.add_column(header, justify="right")
    for lang, values in metrics["per_language"].items():
        table.add_row(lang, *(format_value(values.get(key), pct) for key, _, pct in COLUMNS))
    table.add_section()
    for name in ("macro", "micro"):
        if metrics.get(name):
            table.add_row(name, *(format_value(metrics[name].get(key), pct) for key, _, pct in COLUMNS))
    return table


def format_value(value: Any, percent: bool) -> str:
    """A table cell: percentages with one decimal, other floats with two, counts as integers."""
    if value is None:
        return "-"
    if isinstance(value, int) and not percent:
        return str(value)
    return f"{100 * value:.1f}" if percent else f"{value:.2f}"


@dataclass(slots=True)
class QARun:
    """What to evaluate and where to write it."""

    pipeline: str
    benchmark: Path
    out_dir: Path
    split: str = "test"
    per_lang: int | None = None
    langs: list[str] | None = None


def run_qa_eval(
    run: QARun,
    config: Config,
    *,
    policy: Policy | None = None,
    retriever: Retriever | None = None,
    progress: bool = True,
    console: Console | None = None,
) -> dict[str, Any]:
    """Evaluate ``run.pipeline`` and write predictions.jsonl + metrics.json into ``run.out_dir``.

    ``policy`` (a :class:`~crosearch.agent.pipelines.Policy`) and ``retriever`` are
    loaded from ``config`` when not given. Returns the metrics dict.
    """
    from rich.console import Console

    from crosearch.agent.pipelines import PIPELINES, Pipeline, load_policy_backend, pipeline_strategy
    from crosearch.data.benchmark import SPLITS, load_benchmark
    from crosearch.io import atomic_write_json

    console = console or Console(stderr=True)
    if run.pipeline not in PIPELINES:
        raise CrosearchError(f"unknown pipeline '{run.pipeline}'; choose one of {', '.join(PIPELINES)}")
    if run.split not in SPLITS:
        raise CrosearchError(f"--split must be one of {', '.join(SPLITS)}, got '{run.split}'")
    bench = load_benchmark(run.benchmark)
    pool = bench.split(run.split)
    questions = sample_questions(pool, run.per_lang, run.langs, config.eval.seed)
    if not questions:
        raise CrosearchError(f"{run.benchmark}: no {run.split} questions to evaluate")

    run.out_dir.mkdir(parents=True, exist_ok=True)
    pred_path = run.out_dir / PREDICTIONS
    done = read_predictions(pred_path, repair=True)
    other = sorted({str(r.get("pipeline")) for r in done} - {run.pipeline})
    if other:
        raise CrosearchError(
            f"{pred_path} holds predictions of pipeline {other[0]}, not {run.pipeline}: choose another --out"
        )
    done_ids = {r["id"] for r in done}
    todo = [q for q in questions if q.id not in done_ids]
    if done:
        console.print(
            f"resuming: {len(done_ids & {q.id for q in questions})} of {len(questions)} questions "
            f"already in {pred_path}"
        )

    if todo:
        if run.pipeline != "direct" and retriever is None:
            from crosearch.retrieval.local import load_retriever

            retriever = load_retriever(config)
        if policy is None:
            console.print(f"loading the policy ({config.model.name})...")
            policy = load_policy_backend(config.model)
        pipeline = Pipeline(
            run.pipeline,
            policy,
            retriever if run.pipeline != "direct" else None,
            config,
            temperature=config.eval.temperature,
        )
        began = time.perf_counter()
        _evaluate(pipeline, todo, pred_path, config, progress=progress, console=console)
        seconds = time.perf_counter() - began
        throughput = {
            "questions": len(todo),
            "seconds": round(seconds, 3),
            "questions_per_second": round(len(todo) / seconds, 4) if seconds > 0 else None,
        }
        console.print(
            f"{run.pipeline}: {len(todo)} questions in {seconds:.1f} s "
            f"({throughput['questions_per_second']} questions/s, model loading excluded)"
        )
    else:
        # A resumed run with nothing left to do measured nothing.
        throughput = {"questions": 0, "seconds": None, "questions_per_second": None}

    wanted = {q.id for q in questions}
    records = [r for r in read_predictions(pred_path) if r["id"] in wanted]
    metrics = {
        "pipeline": run.pipeline,
        "benchmark": str(run.benchmark),
        "setting": bench.setting,
        "split": run.split,
        "per_lang": run.per_lang,
        "langs": run.langs or sorted({q.lang for q in questions}),
        "model": config.model.name,
        "adapter": config.model.adapter,
        "strategy": pipeline_strategy(run.pipeline, config),
        "retriever": None if run.pipeline == "direct" else (config.retrieval.url or config.retrieval.index_dir),
        "n": len(records),
        "stop_reasons": _count(r["stop_reason"] for r in records),
        # Of this invocation only (a resumed run counts the questions it evaluated itself).
        "throughput": throughput,
        **summarise(records),
        "config": config.model_dump(mode="json"),
    }
    atomic_write_json(run.out_dir / METRICS, metrics)
    return metrics


def _count(items: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return dict(sorted(counts.items()))


def _evaluate(
    pipeline: Pipeline, todo: list[QAExample], pred_path: Path, config: Config, *, progress: bool, console: Console
) -> None:
    size = int(config.eval.batch_size)
    with bar(f"eval {pipeline.name}", len(todo), enabled=progress, console=console) as task:
        for start in range(0, len(todo), size):
            batch = todo[start : start + size]
            began = time.perf_counter()
            outputs = pipeline.run(batch)
            share = (time.perf_counter() - began) / max(1, len(batch))
            append_predictions(pred_path, [prediction_record(o, config.metrics, share) for o in outputs])
            task.advance(len(batch))
