"""Bundled adapters: shipping a trained adapter (bf16, model card, checksums) and loading it as ``bundled:<name>``.

The adapter is trained-shaped but made here from the tiny model (a LoRA with random B, so it really
changes the outputs); nothing fake is committed into the package. The acceptance test for the real
shipped adapter (``test_shipped_adapters_files_card_and_checksums``) checks whatever the package ships.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from crosearch import adapters
from crosearch.adapters import (
    CARD,
    CHECKSUMS,
    FILES,
    SETTINGS,
    AdapterCard,
    load_card,
    resolve_adapter,
    ship_adapter,
    verify_adapter,
)
from crosearch.config import Config, ModelConfig, with_updates
from crosearch.errors import ConfigError, CrosearchError
from crosearch.models import build_tiny_model, load_policy

CARD_FIELDS = {
    "data": "XQuAD gap benchmark, seed 0, train split, en/de, 32 questions",
    "recipe": "configs/sft-cpu.yaml, then configs/quickstart-cpu.yaml",
    "steps": 12,
    "seed": 0,
    "commit": "0123abc",
    "metrics": "| metric | value |\n|---|---:|\n| F1 | 31.2 [24.0, 38.5] |",
    "model": "tiny",  # the adapters here are the tiny model's
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A float32 LoRA adapter of the tiny model, saved as training saves it, and the logits it produces."""
    from peft import LoraConfig, get_peft_model

    from crosearch.models import load_tokenizer

    tokenizer = load_tokenizer("tiny", show_progress=False)
    torch.manual_seed(5)
    model = get_peft_model(
        build_tiny_model(tokenizer),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    path = tmp_path_factory.mktemp("trained") / "final"
    model.save_pretrained(path)
    return path, tokenizer


def _logits(model, tokenizer):
    batch = tokenizer(["The capital of France is"], return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits.float()


def test_shipped_adapter_is_bf16_with_card_and_checksums_and_loads_by_name(trained, tmp_path, monkeypatch):
    source, tokenizer = trained
    root = tmp_path / "adapters"
    target = ship_adapter(source, "demo", AdapterCard(**CARD_FIELDS), root=root)
    assert target == root / "demo"
    assert sorted(p.name for p in target.iterdir()) == sorted([*FILES, CHECKSUMS])

    from safetensors.torch import load_file

    shipped = load_file(str(target / "adapter_model.safetensors"))
    original = load_file(str(source / "adapter_model.safetensors"))
    assert shipped.keys() == original.keys()
    assert all(t.dtype == torch.bfloat16 for t in shipped.values())
    assert all(torch.allclose(shipped[k].float(), original[k], rtol=1e-2, atol=1e-3) for k in shipped)
    assert (target / "adapter_model.safetensors").stat().st_size < (source / "adapter_model.safetensors").stat().st_size

    card = (target / CARD).read_text()
    for value in ("XQuAD gap benchmark", "configs/sft-cpu.yaml", "| steps | 12 |", "| seed | 0 |", "0123abc"):
        assert value in card
    assert "F1 | 31.2 [24.0, 38.5]" in card
    assert "CC BY-SA 4.0" in card and "Gemma Terms of Use" in card
    assert "r 4" in card and "bundled:demo" in card

    assert resolve_adapter("bundled:demo", root) == str(target)
    assert resolve_adapter("runs/grpo/final", root) == "runs/grpo/final"
    assert resolve_adapter(None, root) is None

    # Loaded by name through the model config: the same outputs as the trained adapter, up to bf16 rounding.
    expected = _logits(load_policy("tiny", adapter=source, dtype="float32", show_progress=False).model, tokenizer)
    monkeypatch.setattr(adapters, "ADAPTERS_DIR", root)  # the package's directory, as if shipped there
    policy = load_policy(ModelConfig(name="tiny", adapter="bundled:demo", dtype="float32"), show_progress=False)
    assert policy.info.adapter == str(target)
    got = _logits(policy.model, tokenizer)
    plain = _logits(build_tiny_model(tokenizer), tokenizer)
    assert torch.allclose(got, expected, atol=1e-2)
    assert not torch.allclose(got, plain, atol=1e-2)


def test_a_changed_file_fails_its_checksum_by_name(trained, tmp_path):
    source, _ = trained
    root = tmp_path / "adapters"
    target = ship_adapter(source, "demo", AdapterCard(**CARD_FIELDS), root=root)
    weights = target / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CrosearchError, match=r"adapter_model\.safetensors does not match its checksum"):
        resolve_adapter("bundled:demo", root)

    ship_adapter(source, "demo", AdapterCard(**CARD_FIELDS), root=root)  # shipping again replaces it whole
    verify_adapter(target)
    (target / CARD).unlink()
    with pytest.raises(CrosearchError, match=r"MODEL_CARD\.md is missing"):
        resolve_adapter("bundled:demo", root)


def test_unknown_names_list_the_available_adapters(trained, tmp_path):
    source, _ = trained
    root = tmp_path / "adapters"
    with pytest.raises(ConfigError, match="no bundled adapter 'crosearch-r1'; available: none in this installation"):
        resolve_adapter("bundled:crosearch-r1", root)
    for name in ("search-r1", "crosearch-r1"):
        ship_adapter(source, name, AdapterCard(**CARD_FIELDS), root=root)
    with pytest.raises(ConfigError, match="available: bundled:crosearch-r1, bundled:search-r1"):
        resolve_adapter("bundled:crosearch-r2", root)
    with pytest.raises(CrosearchError, match="adapter name"):
        ship_adapter(source, "../escape", AdapterCard(**CARD_FIELDS), root=root)


def test_an_adapter_loads_only_on_the_model_it_was_trained_on(trained, tmp_path, monkeypatch):
    source, _ = trained
    root = tmp_path / "adapters"
    card = AdapterCard(**CARD_FIELDS, settings={"crosslingual.strategy": "mono", "agent.max_turns": 3})
    target = ship_adapter(source, "demo", card, root=root)
    assert json.loads((target / SETTINGS).read_text()) == {
        "model": "tiny",
        "settings": {"crosslingual.strategy": "mono", "agent.max_turns": 3},
    }
    text = (target / CARD).read_text()
    assert "--set crosslingual.strategy=mono" in text and "--set agent.max_turns=3" in text
    assert resolve_adapter("bundled:demo", root, model="tiny") == str(target)
    with pytest.raises(ConfigError, match="'demo' was trained on model 'tiny', and model.name is 'bundled'"):
        resolve_adapter("bundled:demo", root, model="bundled")
    monkeypatch.setattr(adapters, "ADAPTERS_DIR", root)
    with pytest.raises(ConfigError, match="trained on model 'tiny'"):
        load_policy(ModelConfig(name="bundled", adapter="bundled:demo"), show_progress=False)
    from crosearch.cli import app

    shown = CliRunner().invoke(
        app, ["model", "info", "--set", "model.name=tiny", "--set", "model.adapter=bundled:demo"]
    )
    assert shown.exit_code == 0, shown.output
    flat = " ".join(shown.output.replace("│", " ").split())  # the table wraps at the console's width
    assert "trained under agent.max_turns=3 crosslingual.strategy=mono" in flat, flat


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"crosslingual.strategy": "bogus"}, "field 'settings': key 'crosslingual.strategy'"),
        ({"crosslingual.nokey": 1}, "key 'crosslingual.nokey': Extra inputs"),
        ({"model.dtype": "float32"}, "model keys belong to the card's 'model' field"),
    ],
)
def test_card_settings_are_checked_against_the_configuration(tmp_path, settings, message):
    card = tmp_path / "card.yaml"
    card.write_text(yaml.safe_dump({**CARD_FIELDS, "settings": settings}))
    with pytest.raises(ConfigError, match=message):
        load_card(card)


def test_ship_adapter_command_reads_the_card_and_names_missing_fields(trained, tmp_path):
    from crosearch.cli import app

    source, _ = trained
    card = tmp_path / "card.yaml"
    card.write_text(yaml.safe_dump(CARD_FIELDS))
    root = tmp_path / "adapters"
    result = CliRunner().invoke(
        app, ["model", "ship-adapter", str(source), "demo", "--card", str(card), "--into", str(root)]
    )
    assert result.exit_code == 0, result.output
    assert "bundled:demo" in result.output
    checksums = json.loads((root / "demo" / CHECKSUMS).read_text())
    assert set(checksums) == set(FILES) and all(len(v) == 64 for v in checksums.values())

    incomplete = tmp_path / "incomplete.yaml"
    incomplete.write_text(yaml.safe_dump({k: v for k, v in CARD_FIELDS.items() if k != "commit"}))
    result = CliRunner().invoke(
        app, ["model", "ship-adapter", str(source), "other", "--card", str(incomplete), "--into", str(root)]
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError) and "field 'commit'" in str(result.exception)
    assert not (root / "other").exists()


def test_shipped_adapters_files_card_and_checksums():
    """Whatever the package ships: every adapter has its files, a complete card and matching checksums."""
    for name in adapters.bundled_names():
        directory = adapters.ADAPTERS_DIR / name
        verify_adapter(directory)
        card = (directory / CARD).read_text()
        for field in ("| data |", "| recipe |", "| steps |", "| seed |", "| commit |", "## Metrics", "CC BY-SA 4.0"):
            assert field in card, (name, field)
        config = json.loads((directory / "adapter_config.json").read_text())
        assert config.get("peft_type") == "LORA"
        shipped = adapters.shipped_settings(name)
        assert shipped.model == "bundled", name  # the model `make quickstart` loads
        with_settings = with_updates(Config(), shipped.settings)  # every key is a configuration key
        assert with_settings.crosslingual.strategy in ("mono", "concat", "crosslingual")
    # The package data rule of pyproject.toml carries the adapters into the wheel.
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"resources/**/*"' in pyproject


@pytest.mark.slow
def test_the_shipped_crosearch_r1_adapter_answers_on_the_real_model(tmp_path):
    """The package's own adapter on the bundled Gemma 3 270M, under the settings it was trained with:
    it searches, reads the evidence and answers within the protocol."""
    from crosearch.agent.pipelines import Pipeline, load_policy_backend
    from crosearch.cli.quickstart import QUICK_DEFAULTS, _policies
    from crosearch.config import load_config
    from crosearch.data.benchmark import build_benchmark
    from crosearch.eval.metrics import f1_score
    from crosearch.retrieval.local import IndexSettings, LocalRetriever, build_index

    if "crosearch-r1" not in adapters.bundled_names():
        pytest.skip("this installation ships no crosearch-r1 adapter")
    cfg = load_config(None, [*QUICK_DEFAULTS, "data.languages=[en,de,es]", "data.setting=full"])
    bench = build_benchmark(cfg.data, progress=False)
    build_index(bench.collection, tmp_path / "index", IndexSettings.from_config(cfg.retrieval), progress=False)
    retriever = LocalRetriever.from_config(cfg, tmp_path / "index")
    policy = next(p for p in _policies(cfg) if p.name == "crosearch-r1")
    assert policy.settings == {"crosslingual.strategy": "crosslingual"}
    # Eight short-answer English questions in one batch: every one searched and answered in the protocol,
    # and some answered right (the base model, imitating its one-shot example, answers none of them).
    questions = [q for q in bench.test if q.lang == "en" and min(len(a.split()) for a in q.answers) <= 3][:8]
    backend = load_policy_backend(policy.config(cfg).model)
    outputs = Pipeline("search-agent", backend, retriever, policy.config(cfg), temperature=0.0).run(questions)
    for q, out in zip(questions, outputs):
        print(q.question, "->", out.prediction, "| gold", q.answers[0], "| searches", out.searches)
    assert all(out.searches >= 1 for out in outputs)
    assert all(out.rollout.stop_reason == "answered" and out.prediction.strip() for out in outputs)
    assert max(f1_score(out.prediction, q.answers) for q, out in zip(questions, outputs)) > 0.5
