"""PNG figures of ``crosearch report``: per-language bars with interval whiskers, and overlaid training curves.

Figures are drawn on matplotlib's Agg canvas without pyplot (no global figure state,
no display needed) and returned as PNG bytes, so the HTML page can embed them and
``--plots DIR`` can write them.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from crosearch.io import atomic_open


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def language_bars(runs: Sequence[tuple[str, Mapping[str, Any]]], title: str, *, percent: bool) -> bytes:
    """Grouped bars: one group per language (then macro), one bar per run, whiskers from ``low`` to ``high``.

    ``runs`` holds ``(label, {language or "macro": Estimate})``.
    """
    keys: list[str] = []
    for _, rows in runs:
        keys += [k for k in rows if k not in keys and k != "macro"]
    keys = sorted(keys) + ["macro"]
    scale = 100.0 if percent else 1.0
    fig = _figure(max(5.0, 1.0 + 0.5 * len(keys) * max(1, len(runs)) * 0.6), 3.6)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(runs))
    for i, (label, rows) in enumerate(runs):
        xs, heights, lows, highs = [], [], [], []
        for j, key in enumerate(keys):
            est = rows.get(key)
            if est is None or est.value is None:
                continue
            xs.append(j - 0.4 + width * (i + 0.5))
            heights.append(est.value * scale)
            lows.append(max(0.0, (est.value - est.low) * scale) if est.low is not None else 0.0)
            highs.append(max(0.0, (est.high - est.value) * scale) if est.high is not None else 0.0)
        ax.bar(
            xs, heights, width=width * 0.95, label=label, yerr=[lows, highs], capsize=2, error_kw={"elinewidth": 0.8}
        )
    tops = [
        (e.high if e.high is not None else e.value) * scale
        for _, rows in runs
        for e in rows.values()
        if e is not None and e.value is not None
    ]
    # Scores are never negative: start at 0, and give an all-zero chart a visible range.
    ax.set_ylim(0, max(tops, default=0) * 1.08 or (100.0 if percent else 1.0))
    ax.set_xticks(range(len(keys)), keys)
    ax.set_title(title)
    ax.set_ylabel("%" if percent else "")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", frameon=False)
    return _png(fig)


def training_curves(runs: Sequence[tuple[str, Sequence[Mapping[str, Any]]]], metrics: Sequence[str]) -> bytes | None:
    """One panel per metric, every run's logged values against the step; None when no run logged any of them.

    ``runs`` holds ``(label, log history)`` (the trainer's ``log_history`` list of dicts).
    """
    panels = [m for m in metrics if any(m in entry for _, history in runs for entry in history)]
    if not panels:
        return None
    cols = min(2, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = _figure(5.0 * cols, 3.2 * rows)
    for k, metric in enumerate(panels):
        ax = fig.add_subplot(rows, cols, k + 1)
        for label, history in runs:
            points = [
                (int(e.get("step", i)), float(e[metric]))
                for i, e in enumerate(history)
                if isinstance(e.get(metric), (int, float))
            ]
            if points:
                ax.plot(
                    [s for s, _ in points],
                    [v for _, v in points],
                    label=label,
                    marker="." if len(points) < 30 else None,
                )
        ax.set_title(metric)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", frameon=False)
    fig.tight_layout()
    return _png(fig)


def write_png(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return path
