"""Training curves: where the log history is read from, the summary, and the errors."""

from __future__ import annotations

import json

import pytest

from crosearch.errors import CrosearchError
from crosearch.rl.curve import moving_average, plot_curve, read_log_history, summarize


def _state(path, rewards):
    path.mkdir(parents=True)
    history = [{"step": i + 1, "reward": r, "rewards/f1/mean": r, "memory/rss_gb": 2.0} for i, r in enumerate(rewards)]
    (path / "trainer_state.json").write_text(json.dumps({"log_history": history}))


def test_a_running_job_is_read_from_its_newest_checkpoint(tmp_path):
    _state(tmp_path / "checkpoint-2", [0.1, 0.2])
    _state(tmp_path / "checkpoint-10", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])  # 10 sorts after 2
    history, source = read_log_history(tmp_path)
    assert source.parent.name == "checkpoint-10" and len(history) == 10
    s = summarize(history, span=3)
    assert (s["first_mean"], s["last_mean"]) == (pytest.approx(0.2), pytest.approx(0.9))
    assert s["change"] == pytest.approx(0.7)
    assert plot_curve(history, tmp_path / "c.png").stat().st_size > 1000


def test_moving_average_is_trailing():
    assert moving_average([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]


def test_missing_or_broken_logs_are_clear_errors(tmp_path):
    with pytest.raises(CrosearchError, match="no such training run"):
        read_log_history(tmp_path / "nope")
    with pytest.raises(CrosearchError, match="no summary.json"):
        read_log_history(tmp_path)
    (tmp_path / "summary.json").write_text("{broken")
    with pytest.raises(CrosearchError, match="summary.json: not a trainer log"):
        read_log_history(tmp_path)


def test_searches_panel_has_a_line_per_language():
    from crosearch.rl.curve import GRPO_PANELS, expand

    history = [
        {"step": 1, "reward": 0.1, "rollout/searches": 1.5, "lang/searches/de": 2.0, "lang/searches/en": 1.0},
        {"step": 2, "reward": 0.2, "rollout/searches": 1.0, "search_lang/searches/es": 1.0, "lang/f1/de": 0.3},
    ]
    names = dict(GRPO_PANELS)["searches per rollout"]
    assert expand(history, names) == [
        "rollout/searches",
        "lang/searches/de",
        "lang/searches/en",
        "search_lang/searches/es",
    ]
