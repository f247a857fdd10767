"""Percentile-bootstrap intervals over questions, and paired differences between runs.

Every metric of a language is a ratio of per-question sums: a mean is ``sum(value) /
count`` (questions without a value, e.g. an undecidable answer language, add 0 to
both), tokens per retrieval is ``sum(tokens) / sum(retrievals)``. So one resampling
of a language's questions serves every metric, and the point estimates are exactly
the numbers of ``metrics.json``. The macro average of a resample is the mean of its
language values, as in ``metrics.json``: languages are resampled separately
(stratified), each keeping its own number of questions.

Resamples are drawn from ``(seed, language)``, so a run's intervals do not change
when other runs join the report.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# Metrics with an interval: (numerator, denominator) of one question, see :func:`question_terms`.
INTERVAL_METRICS = ("em", "f1", "char3", "lang_match", "searches", "evidence_hit", "tokens_per_retrieval", "seconds")
SCORE_METRICS = ("em", "f1", "char3", "lang_match")
MACRO = "macro"


@dataclass(frozen=True, slots=True)
class Estimate:
    """A point estimate with its bootstrap interval; ``n`` counts the questions that have a value."""

    value: float | None
    low: float | None
    high: float | None
    n: int


@dataclass(frozen=True, slots=True)
class Difference:
    """``run - baseline`` on shared questions: the interval and the share of resamples above 0."""

    value: float | None
    low: float | None
    high: float | None
    above_zero: float | None
    n: int


@dataclass(slots=True)
class RunIntervals:
    """Per metric: ``{language or "macro": Estimate}``."""

    label: str
    metrics: dict[str, dict[str, Estimate]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class PairedComparison:
    """``run`` against ``baseline`` on the questions both answered; per metric ``{language or "macro": Difference}``."""

    run: str
    baseline: str
    shared: int
    only_run: int
    only_baseline: int
    metrics: dict[str, dict[str, Difference]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def question_terms(record: Mapping[str, Any], metric: str) -> tuple[float, float]:
    """``(numerator, denominator)`` one prediction record adds to ``metric``'s language value."""
    if metric not in INTERVAL_METRICS:
        raise ValueError(f"no interval for metric '{metric}'")
    if metric == "tokens_per_retrieval":
        return float(record.get("evidence_tokens") or 0), float(record.get("retrievals") or 0)
    value = (record.get("scores") or {}).get(metric) if metric in SCORE_METRICS else record.get(metric)
    return (0.0, 0.0) if value is None else (float(value), 1.0)


def _terms(records: Sequence[Mapping[str, Any]], metric: str) -> tuple[np.ndarray, np.ndarray]:
    pairs = np.array([question_terms(r, metric) for r in records], dtype=float).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Elementwise ``num / den``, NaN where nothing had a value."""
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _value(num: np.ndarray, den: np.ndarray) -> float:
    """A language's value over all its questions (NaN when none has one)."""
    return float(num.sum() / den.sum()) if den.sum() > 0 else float("nan")


def _resamples(seed: int, lang: str, n: int, resamples: int, stream: int) -> np.ndarray:
    """Index matrix ``(resamples, n)``; ``stream`` separates the marginal draws from the paired ones."""
    rng = np.random.default_rng([seed, zlib.crc32(lang.encode("utf-8")), stream])
    return rng.integers(0, n, size=(resamples, n))


def _interval(samples: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return None, None
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(finite, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


def _point(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


def _by_lang(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        out.setdefault(str(r["lang"]), []).append(r)
    return dict(sorted(out.items()))


def _nanmean_rows(columns: list[np.ndarray]) -> np.ndarray:
    """Per resample, the mean over languages that have a value (the macro average)."""
    stacked = np.vstack(columns)
    have = np.isfinite(stacked)
    counts = have.sum(axis=0)
    total = np.where(have, stacked, 0.0).sum(axis=0)
    return np.where(counts > 0, total / np.maximum(counts, 1), np.nan)


def _macro(points: list[float]) -> float:
    """The mean over languages that have a value."""
    have = [p for p in points if np.isfinite(p)]
    return float(np.mean(have)) if have else float("nan")


def run_intervals(
    label: str,
    records: Sequence[Mapping[str, Any]],
    metrics: Sequence[str],
    *,
    resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> RunIntervals:
    """Per metric, every language's and the macro average's point estimate with a percentile interval."""
    out = RunIntervals(label=label)
    groups = _by_lang(records)
    draws = (
        {lang: _resamples(seed, lang, len(rows), resamples, 0) for lang, rows in groups.items()} if resamples else {}
    )
    for metric in metrics:
        rows: dict[str, Estimate] = {}
        points, boots = [], []
        for lang, recs in groups.items():
            num, den = _terms(recs, metric)
            point = _value(num, den)
            if resamples:
                idx = draws[lang]
                boot = _ratio(num[idx].sum(axis=1), den[idx].sum(axis=1))
                low, high = _interval(boot, confidence) if np.isfinite(point) else (None, None)
                boots.append(boot if np.isfinite(point) else np.full(resamples, np.nan))
            else:
                low = high = None
            points.append(point)
            rows[lang] = Estimate(_point(point), low, high, int((den > 0).sum()))
        if groups:
            macro = _macro(points)
            low, high = (
                _interval(_nanmean_rows(boots), confidence) if resamples and np.isfinite(macro) else (None, None)
            )
            rows[MACRO] = Estimate(_point(macro), low, high, sum(e.n for e in rows.values()))
        out.metrics[metric] = rows
    return out


def paired_differences(
    run: tuple[str, Sequence[Mapping[str, Any]]],
    baseline: tuple[str, Sequence[Mapping[str, Any]]],
    metrics: Sequence[str],
    *,
    resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedComparison:
    """``run - baseline`` per language and macro, resampling the shared question ids (both runs get the same draws)."""
    (label, records), (base_label, base_records) = run, baseline
    mine = {r["id"]: r for r in records}
    theirs = {r["id"]: r for r in base_records}
    shared = sorted(mine.keys() & theirs.keys())
    out = PairedComparison(
        run=label,
        baseline=base_label,
        shared=len(shared),
        only_run=len(mine.keys() - theirs.keys()),
        only_baseline=len(theirs.keys() - mine.keys()),
    )
    groups = _by_lang([mine[i] for i in shared])
    draws = {lang: _resamples(seed, lang, len(rows), max(resamples, 1), 1) for lang, rows in groups.items()}
    for metric in metrics:
        rows: dict[str, Difference] = {}
        points, boots = [], []
        for lang, recs in groups.items():
            a_num, a_den = _terms(recs, metric)
            b_num, b_den = _terms([theirs[r["id"]] for r in recs], metric)
            point = _value(a_num, a_den) - _value(b_num, b_den)
            idx = draws[lang]
            boot = _ratio(a_num[idx].sum(axis=1), a_den[idx].sum(axis=1)) - _ratio(
                b_num[idx].sum(axis=1), b_den[idx].sum(axis=1)
            )
            if not np.isfinite(point):
                boot = np.full(boot.shape, np.nan)
            points.append(point)
            boots.append(boot)
            rows[lang] = _difference(point, boot, confidence, resamples, int(((a_den > 0) & (b_den > 0)).sum()))
        if groups:
            macro = _macro(points)
            boot = _nanmean_rows(boots) if np.isfinite(macro) else np.full(len(boots[0]), np.nan)
            rows[MACRO] = _difference(macro, boot, confidence, resamples, sum(d.n for d in rows.values()))
        out.metrics[metric] = rows
    return out


def _difference(point: float, boot: np.ndarray, confidence: float, resamples: int, n: int) -> Difference:
    if not resamples or not np.isfinite(point):
        return Difference(_point(point), None, None, None, n)
    low, high = _interval(boot, confidence)
    finite = boot[np.isfinite(boot)]
    above = float((finite > 0).mean()) if finite.size else None
    return Difference(_point(point), low, high, above, n)


def sharing_warnings(runs: Sequence[tuple[str, Sequence[Mapping[str, Any]]]]) -> list[str]:
    """One line per run whose question ids differ from the first run's (its tables average other questions)."""
    if len(runs) < 2:
        return []
    first_label, first = runs[0][0], {r["id"] for r in runs[0][1]}
    warnings = []
    for label, records in runs[1:]:
        ids = {r["id"] for r in records}
        if ids != first:
            warnings.append(
                f"runs '{first_label}' and '{label}' do not share the same questions: "
                f"{len(ids & first)} shared, {len(first - ids)} only in '{first_label}', "
                f"{len(ids - first)} only in '{label}'"
            )
    return warnings
