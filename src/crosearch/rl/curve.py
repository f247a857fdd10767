"""Training curves (``crosearch curve``): a GRPO or warm-start run's logged metrics as a PNG and a summary.

Reads the trainer's log history from ``summary.json`` (a finished run) or, while a run is
still going, from the newest checkpoint's ``trainer_state.json``, so a curve can be drawn
at any point of a long run.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crosearch.errors import CrosearchError, DataFormatError
from crosearch.io import atomic_open, read_json
from crosearch.rl.checkpoints import checkpoint_dirs

# Panels of the GRPO figure: (title, metrics drawn in it). Missing metrics are skipped; a name
# ending in "*" stands for every logged metric with that prefix (one line per language).
GRPO_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("total reward", ("reward",)),
    (
        "reward components",
        (
            "rewards/exact_match/mean",
            "rewards/f1/mean",
            "rewards/char3_recall/mean",
            "rewards/format/mean",
            "rewards/answer_language/mean",
        ),
    ),
    ("searches per rollout", ("rollout/searches", "lang/searches/*", "search_lang/searches/*")),
    ("model tokens per rollout", ("rollout/model_tokens",)),
    ("resident memory (GB)", ("memory/rss_gb", "memory/peak_rss_gb")),
    ("seconds per step", ("time/step", "time/generation", "time/update")),
    ("CPU seconds per step", ("time/step_cpu", "time/update_cpu")),
    ("tokens per step", ("tokens/total", "tokens/model")),
)
SFT_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (("loss", ("loss",)), ("learning rate", ("learning_rate",)))


@dataclass(slots=True)
class Series:
    """One logged metric: the steps it was logged at and its values."""

    name: str
    steps: list[int]
    values: list[float]


def read_log_history(run_dir: str | Path) -> tuple[list[dict[str, Any]], Path]:
    """The log history of a training run directory and the file it came from."""
    run = Path(run_dir)
    if not run.is_dir():
        raise CrosearchError(f"{run}: no such training run directory")
    newest_first = [path / "trainer_state.json" for _, path in reversed(checkpoint_dirs(run))]
    for path in [run / "summary.json", *newest_first]:
        if not path.is_file():
            continue
        try:
            state = read_json(path)
        except DataFormatError as exc:
            where = f"line {exc.line}: " if exc.line is not None else ""
            raise CrosearchError(f"{path}: not a trainer log ({where}{exc.reason})") from None
        if not isinstance(state, dict):
            raise CrosearchError(f"{path}: not a trainer log (a JSON {type(state).__name__}, not an object)")
        history = state.get("log_history")
        if history:
            return history, path
    raise CrosearchError(f"{run}: no summary.json or checkpoint-*/trainer_state.json with a log history yet")


def series(history: list[dict[str, Any]], name: str) -> Series:
    """The values of one metric in step order (entries without it are skipped)."""
    points = sorted(
        (int(h["step"]), float(h[name]))
        for h in history
        if name in h and "step" in h and isinstance(h[name], (int, float))
    )
    return Series(name, [s for s, _ in points], [v for _, v in points])


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over up to ``window`` values (the first points average what exists so far)."""
    out = []
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1) : i + 1]
        out.append(sum(chunk) / len(chunk))
    return out


def summarize(history: list[dict[str, Any]], metric: str = "reward", span: int = 5) -> dict[str, Any]:
    """Mean of ``metric`` over the first and the last ``span`` logged steps, and their difference."""
    s = series(history, metric)
    if not s.values:
        raise CrosearchError(f"the log history has no '{metric}' values")
    span = max(1, min(span, len(s.values) // 2 or 1))
    first, last = s.values[:span], s.values[-span:]
    return {
        "metric": metric,
        "steps": len(s.values),
        "span": span,
        "first_mean": statistics.fmean(first),
        "last_mean": statistics.fmean(last),
        "change": statistics.fmean(last) - statistics.fmean(first),
    }


def expand(history: list[dict[str, Any]], names: tuple[str, ...]) -> list[str]:
    """``names`` with each ``prefix*`` replaced by the logged metrics that start with the prefix (sorted)."""
    out: list[str] = []
    for name in names:
        if name.endswith("*"):
            prefix = name[:-1]
            out += sorted({k for h in history for k in h if k.startswith(prefix)})
        else:
            out.append(name)
    return out


def is_grpo(history: list[dict[str, Any]]) -> bool:
    """True for a GRPO run (it logs rewards); a warm-start run logs only its loss."""
    return any("reward" in h for h in history)


def plot_curve(history: list[dict[str, Any]], out: str | Path, *, window: int = 5, title: str = "") -> Path:
    """Draw the run's curves into ``out`` (PNG, written atomically); GRPO panels or, without rewards, SFT ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = GRPO_PANELS if is_grpo(history) else SFT_PANELS
    drawn = [(t, [s for s in (series(history, m) for m in expand(history, names)) if s.values]) for t, names in panels]
    drawn = [(t, lines) for t, lines in drawn if lines]
    if not drawn:
        raise CrosearchError("nothing to plot: the log history has none of the expected metrics")
    cols = 2 if len(drawn) > 1 else 1
    rows = (len(drawn) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.2 * rows), squeeze=False)
    for ax, (panel, lines) in zip(axes.flat, drawn):
        for s in lines:
            label = s.name.removeprefix("rewards/").removesuffix("/mean")
            if len(lines) == 1 and len(s.values) > window:
                ax.plot(s.steps, s.values, color="0.75", lw=1, label=f"{label} (per step)")
                ax.plot(s.steps, moving_average(s.values, window), lw=2, label=f"{label} ({window}-step mean)")
            else:
                ax.plot(s.steps, s.values, lw=1.5, marker="o" if len(s.values) < 40 else None, ms=3, label=label)
        ax.set_title(panel)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(drawn) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    with atomic_open(out, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)
    return out
