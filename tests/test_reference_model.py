"""The reference model saved for ``beta > 0``: written atomically, verified before it is reused."""

from __future__ import annotations

import json

import pytest

from crosearch.models import load_policy
from crosearch.rl.common import REFERENCE_MARKER, ensure_reference_model, reference_model_intact

SOURCE = {"model": "tiny", "adapter": None, "adapter_mode": "continue"}


@pytest.fixture(scope="module")
def tiny():
    return load_policy("tiny", show_progress=False)


def _weights(path):
    return next(p for p in path.iterdir() if p.name.endswith((".safetensors", ".bin")))


def test_saved_once_then_reused(tmp_path, tiny):
    path = tmp_path / "reference-model"
    assert ensure_reference_model(tiny.model, tiny.tokenizer, path, SOURCE)
    assert (path / "config.json").exists() and (path / REFERENCE_MARKER).exists()
    assert reference_model_intact(path, SOURCE)
    stamp = (path / REFERENCE_MARKER).stat().st_mtime_ns
    assert not ensure_reference_model(tiny.model, tiny.tokenizer, path, SOURCE)
    assert (path / REFERENCE_MARKER).stat().st_mtime_ns == stamp
    # Nothing else is left beside it (temporaries renamed, the lock file aside).
    assert sorted(p.name for p in tmp_path.iterdir()) == [".reference-model.lock", "reference-model"]


def test_a_damaged_or_foreign_save_is_written_again(tmp_path, tiny):
    path = tmp_path / "reference-model"
    ensure_reference_model(tiny.model, tiny.tokenizer, path, SOURCE)
    weights = _weights(path)
    size = weights.stat().st_size
    with open(weights, "r+b") as handle:
        handle.truncate(size // 2)
    assert not reference_model_intact(path, SOURCE)
    assert ensure_reference_model(tiny.model, tiny.tokenizer, path, SOURCE)
    assert _weights(path).stat().st_size == size
    # Saved from another model (or adapter): not reused.
    other = {**SOURCE, "model": "elsewhere"}
    assert not reference_model_intact(path, other)
    assert ensure_reference_model(tiny.model, tiny.tokenizer, path, other)
    assert reference_model_intact(path, other)


def test_a_half_save_with_config_json_is_not_reused(tmp_path, tiny):
    # What a save killed after config.json (the old check's only test) looks like.
    path = tmp_path / "reference-model"
    path.mkdir()
    tiny.model.config.save_pretrained(path)
    assert not reference_model_intact(path, SOURCE)
    assert ensure_reference_model(tiny.model, tiny.tokenizer, path, SOURCE)
    assert reference_model_intact(path, SOURCE) and _weights(path).stat().st_size > 0


def test_grpo_full_fine_tuning_with_kl_points_trl_at_the_saved_copy(tmp_path):
    from crosearch.config import load_config
    from crosearch.rl.train import _prepare_model

    config = load_config(None, ["model.name=tiny", "train.beta=0.1", "train.lora.enabled=false"])
    model, _, peft = _prepare_model(config, tmp_path)
    path = tmp_path / "reference-model"
    assert peft is None and model.config.name_or_path == str(path)
    marker = json.loads((path / REFERENCE_MARKER).read_text())
    assert marker["source"] == {"model": "tiny", "adapter": None, "adapter_mode": config.train.adapter_mode}
    assert reference_model_intact(path, marker["source"])
