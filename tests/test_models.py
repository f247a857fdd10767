"""Policy model loading: the tiny model, HF directories, PEFT adapters and the cache build protocol.

The tokenizer comes from the bundled GGUF (cached once in the user cache); only the ``slow`` tests
load the real de-quantised Gemma 3 270M.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from crosearch.config import ModelConfig
from crosearch.errors import ConfigError, CrosearchError
from crosearch.models import (
    MARKER,
    TOKENIZER_DIR,
    _bundled_source,
    build_tiny_model,
    has_fast_bf16,
    is_complete,
    load_policy,
    load_tokenizer,
    resolve_device,
    resolve_dtype,
)

# Token ids of real text as the GGUF tokenizer gives them (read once with AutoTokenizer(gguf_file=...)).
GGUF_IDS = {
    "The capital of France is": [2, 818, 5279, 529, 7001, 563],
    "Die Hauptstadt von Frankreich ist Paris.": [2, 13034, 229912, 3564, 99930, 3526, 9079, 236761],
    "北京是中国的首都。": [2, 32707, 237026, 110323, 120211, 236924],
}


@pytest.fixture(scope="module")
def tiny():
    return load_policy("tiny", show_progress=False)


def _logits(model, tokenizer, texts=("The capital of France is", "北京是中国的首都。")):
    batch = tokenizer(list(texts), return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**batch).logits.float()  # comparable across dtypes ("auto" is bf16 on AMX CPUs)


def test_tiny_model_shape_and_forward(tiny):
    config = tiny.model.config
    assert (config.model_type, config.num_hidden_layers, config.hidden_size) == ("gemma3_text", 2, 64)
    assert (config.num_attention_heads, config.num_key_value_heads, config.intermediate_size) == (4, 1, 128)
    assert config.vocab_size == len(tiny.tokenizer) == 262144
    logits = _logits(tiny.model, tiny.tokenizer)
    assert logits.shape == (2, 6, 262144)
    assert torch.isfinite(logits).all()
    assert tiny.info.tied_embeddings and tiny.info.embedding_parameters == 262144 * 64
    assert tiny.info.parameters < 20_000_000 and tiny.source is None and tiny.device.type in ("cpu", "cuda")


def test_tokenizer_is_the_bundled_gguf_tokenizer(tiny):
    bundled = load_tokenizer("bundled", show_progress=False)
    assert len(bundled) == 262144
    assert bundled.get_vocab() == tiny.tokenizer.get_vocab()
    for text, ids in GGUF_IDS.items():
        assert bundled(text).input_ids == ids, text
        assert tiny.tokenizer(text).input_ids == ids, text
    special = {role: (t["token"], t["id"]) for role, t in tiny.info.special_tokens.items()}
    assert special["bos"] == ("<bos>", 2) and special["eos"] == ("<eos>", 1) and special["pad"] == ("<pad>", 0)
    assert tiny.info.chat_template is False  # the base model ships no chat template


def test_tiny_weights_are_deterministic_and_leave_rng_alone(tiny):
    again = load_policy(ModelConfig(name="tiny"), show_progress=False)
    first, second = tiny.model.state_dict(), again.model.state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    state = torch.get_rng_state()
    other = build_tiny_model(tiny.tokenizer, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(other.state_dict()[name], first[name])


def test_saved_tiny_loads_back_by_path(tiny, tmp_path: Path):
    path = tiny.save_pretrained(tmp_path / "tiny-hf")
    loaded = load_policy(str(path), show_progress=False)
    assert loaded.source == path and loaded.name == str(path)
    assert loaded.tokenizer.get_vocab() == tiny.tokenizer.get_vocab()
    assert torch.equal(_logits(loaded.model, loaded.tokenizer), _logits(tiny.model, tiny.tokenizer))
    with pytest.raises(CrosearchError, match="not empty"):
        tiny.save_pretrained(path)


def test_lora_adapter_loads_on_top(tiny, tmp_path: Path):
    from peft import LoraConfig, PeftModel, get_peft_model

    # init_lora_weights=False draws B at random, so the adapter really changes the outputs.
    torch.manual_seed(3)
    trained = get_peft_model(
        build_tiny_model(tiny.tokenizer),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    trained.save_pretrained(tmp_path / "adapter")
    expected = _logits(trained, tiny.tokenizer)

    # float32 explicitly: "auto" picks bf16 on CPUs with AMX, and the reference logits are fp32.
    loaded = load_policy(
        ModelConfig(name="tiny", adapter=str(tmp_path / "adapter"), dtype="float32"), show_progress=False
    )
    assert not isinstance(loaded.model, PeftModel)  # frozen adapters are merged for inference
    assert loaded.info.adapter == str(tmp_path / "adapter") and loaded.info.trainable_parameters == 0
    got = _logits(loaded.model, loaded.tokenizer)
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, _logits(tiny.model, tiny.tokenizer), atol=1e-3)

    trainable = load_policy("tiny", adapter=tmp_path / "adapter", adapter_trainable=True, show_progress=False)
    assert isinstance(trainable.model, PeftModel)
    assert 0 < trainable.info.trainable_parameters < trainable.info.parameters


def test_bad_specs_are_clear_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_policy(str(tmp_path / "missing"), show_progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no config.json"):
        load_policy(str(tmp_path / "empty"), show_progress=False)
    with pytest.raises(ConfigError, match="not a PEFT adapter"):
        load_policy(ModelConfig(name="tiny", adapter=str(tmp_path / "empty")), show_progress=False)
    with pytest.raises(ConfigError, match="not a device"):
        resolve_device("banana")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA"):
            resolve_device("cuda")


def test_auto_dtype_follows_the_hardware():
    cpu = torch.device("cpu")
    assert resolve_dtype("auto", cpu) == (torch.bfloat16 if has_fast_bf16(cpu) else torch.float32)
    assert resolve_dtype("float16", cpu) == torch.float16
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_cli_info_reports_the_tiny_model():
    from crosearch.cli.model import app

    result = CliRunner().invoke(app, ["info", "--model", "tiny", "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.output[result.output.index("{") :])
    assert facts["name"] == "tiny" and facts["vocab_size"] == 262144 and facts["num_layers"] == 2
    table = CliRunner().invoke(app, ["info", "--set", "model.name=tiny", "--set", "model.dtype=bfloat16"])
    assert table.exit_code == 0, table.output
    assert "bfloat16" in table.output and "262,144" in table.output


# ---------------------------------------------------------------------------------------------- cache protocol


def _build_tokenizer_cache(root: str, results) -> None:
    from crosearch.models import load_tokenizer, tokenizer_cache_dir

    _, built = tokenizer_cache_dir(root, show_progress=False)
    tokenizer = load_tokenizer("tiny", cache_dir=root, show_progress=False)
    results.put((built, len(tokenizer), tokenizer("The capital of France is").input_ids))


@pytest.mark.subprocess
def test_killed_and_half_written_caches_are_rebuilt_by_concurrent_processes(tmp_path: Path):
    ctx = mp.get_context("spawn")
    root = tmp_path / "cache"
    target = root / "models" / TOKENIZER_DIR
    results = ctx.Queue()

    # 1. A build killed midway leaves only its temporary directory, never the cache itself.
    doomed = ctx.Process(target=_build_tokenizer_cache, args=(str(root), results))
    doomed.start()
    deadline = time.monotonic() + 300
    while not list(target.parent.glob(f".{TOKENIZER_DIR}.tmp-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    doomed.kill()
    doomed.join()
    assert list(target.parent.glob(f".{TOKENIZER_DIR}.tmp-*")), "the killed build never started"
    assert not target.exists()

    # 2. A half-written cache at the final name (no completion marker) must be rebuilt, not loaded.
    target.mkdir(parents=True)
    (target / "tokenizer.json").write_text('{"version": "1.0", "trunc', encoding="utf-8")
    assert not is_complete(target, _bundled_source())

    # 3. Two processes starting at once: one builds, the other waits for it; both load the same tokenizer.
    workers = [ctx.Process(target=_build_tokenizer_cache, args=(str(root), results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=900)
        assert worker.exitcode == 0
    outcomes = sorted(results.get(timeout=10) for _ in workers)
    assert [built for built, *_ in outcomes] == [False, True]
    for _, size, ids in outcomes:
        assert size == 262144 and ids == GGUF_IDS["The capital of France is"]
    assert is_complete(target, _bundled_source()) and (target / MARKER).exists()
    assert (target / "tokenizer.json").stat().st_size > 1_000_000
    assert not list(target.parent.glob(f".{TOKENIZER_DIR}.tmp-*"))


# ---------------------------------------------------------------------------------------------- real model


@pytest.mark.slow
def test_bundled_converts_once_then_loads_from_cache(tmp_path: Path):
    spec = ModelConfig(name="bundled", cache_dir=str(tmp_path), dtype="float32")
    started = time.perf_counter()
    first = load_policy(spec)
    convert_s = time.perf_counter() - started
    del first
    started = time.perf_counter()
    policy = load_policy(spec)
    cached_s = time.perf_counter() - started
    print(f"\nbundled: first load (de-quantise + cache) {convert_s:.1f}s, load from cache {cached_s:.1f}s")
    assert policy.info.built_cache is False and policy.source == tmp_path / "models" / "gemma3-270m"
    assert 260e6 < policy.info.parameters < 280e6 and policy.info.num_layers == 18
    assert policy.model.config.to_dict().get("quantization_config") is None

    tokenizer = policy.tokenizer
    prompt = tokenizer("Question: What is the capital of France?\nAnswer:", return_tensors="pt")
    with torch.no_grad():
        out = policy.model.generate(**prompt, max_new_tokens=8, do_sample=False)
    text = tokenizer.decode(out[0, prompt.input_ids.shape[1] :], skip_special_tokens=True)
    print(f"generated: {text!r}")
    assert "Paris" in text
