"""GRPO through TRL and the warm start, end to end with the tiny model, a real BM25 index and real XQuAD."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from crosearch.config import load_config
from training_data import wait_for, write_en_de_benchmark_and_index

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A benchmark (en+de XQuAD) and its BM25 index, built once for the module."""
    return write_en_de_benchmark_and_index(tmp_path_factory.mktemp("rl"))


def _recipe(root: Path, out: str, **train) -> dict:
    return {
        "model": {"name": "tiny", "dtype": "float32", "device": "cpu"},
        "retrieval": {"index_dir": str(root / "index"), "k": 2},
        "crosslingual": {"strategy": "mono", "k": 2, "token_budget": 48},
        "agent": {
            "max_turns": 2,
            "max_new_tokens": 40,
            "answer_tokens": 8,
            "max_total_tokens": 700,
            "temperature": 1.0,
            "batch_size": 8,
        },
        "train": {
            "benchmark": str(root / "benchmark"),
            "output_dir": str(root / out),
            "languages": ["en", "de"],
            "max_questions": 40,
            "num_generations": 2,
            "questions_per_step": 2,
            "max_steps": 1,
            "learning_rate": 1e-3,
            "save_steps": 1,
            "bf16": False,
            "reward_weights": {"exact_match": 1.0, "f1": 0.0, "char3_recall": 0.0, "format": 0.1},
            **train,
        },
        "sft": {
            "benchmark": str(root / "benchmark"),
            "output_dir": str(root / out),
            "languages": ["en", "de"],
            "max_examples": 4,
            "max_steps": 1,
            "batch_size": 2,
            "k": 2,
            "bf16": False,
        },
    }


def _config(root: Path, out: str, **train):
    path = root / f"{out}.yaml"
    path.write_text(yaml.safe_dump(_recipe(root, out, **train)))
    return load_config(path), path


def test_grpo_step_masks_inserted_tokens_and_rewards_see_the_trace(workdir):
    """One real TRL GRPO step over multilingual groups; a teacher-forced backend (the real tiny model
    scoring given text) makes every rollout search once and answer with its own language's gold."""
    from crosearch.agent.backends import TeacherForcedBackend
    from crosearch.rl import train as train_module

    config, _ = _config(workdir, "grpo", multilingual_groups=True, group_languages=2)
    golds_by_question = {}

    def responder_factory(tokenizer):
        def responder(context: str) -> str:
            question = context.rsplit("Question:", 1)[1].strip().split("\n")[0].strip()
            if context.rstrip().endswith("</information>"):
                return f"<think>found</think>\n<answer>{golds_by_question[question]}</answer>"
            return f"<think>search</think>\n<search>{question}</search>"

        return responder

    from crosearch.data.benchmark import load_benchmark

    for q in load_benchmark(config.train.benchmark).train:
        golds_by_question.setdefault(q.question.strip(), q.answers[0])
    summary = train_module.run_train(
        config,
        keep_batches=True,
        backend_factory=lambda model, tok: TeacherForcedBackend(model, tok, responder_factory(tok)),
    )

    assert summary["steps"] == 1
    batches = summary["kept_batches"]
    tokenizer = summary["trainer"].processing_class
    inserted_blocks = 0
    for batch in batches:
        ids, completion_mask, tool_mask = batch["completion_ids"], batch["completion_mask"], batch["tool_mask"]
        loss_mask = completion_mask * tool_mask  # what TRL's loss multiplies in
        for row in range(ids.shape[0]):
            real = completion_mask[row].bool()
            inserted = real & ~tool_mask[row].bool()
            assert (loss_mask[row][inserted] == 0).all()
            env_text = tokenizer.decode(ids[row][inserted].tolist())
            model_text = tokenizer.decode(ids[row][real & tool_mask[row].bool()].tolist())
            assert "<information>" in env_text and "</information>" in env_text
            assert "<information>" not in model_text and "<search>" in model_text and "<answer>" in model_text
            inserted_blocks += env_text.count("<information>")
    assert inserted_blocks == 4  # 2 questions x 2 rollouts, one search each
    logs = {k: v for entry in summary["log_history"] for k, v in entry.items()}
    # Each rollout answered its own language's gold: the reward functions got answer/golds/lang/valid_format.
    assert logs["rewards/exact_match/mean"] == pytest.approx(1.0)
    assert logs["rewards/format/mean"] == pytest.approx(1.0)
    assert {"lang/exact_match/en", "lang/exact_match/de"} <= set(logs)  # both languages inside the groups
    assert logs["rollout/searches"] == pytest.approx(1.0)
    for key in (
        "time/generation",
        "time/retrieval",
        "time/logprobs",
        "time/update",
        "memory/peak_rss_gb",
        "memory/rss_gb",
        "entropy",
        "clip_ratio/region_mean",
        "time/step_cpu",
        "time/update_cpu",
    ):
        assert key in logs, key
    # The tokens the step trained on, counted from the masks TRL built (model tokens = the loss positions).
    assert logs["tokens/model"] == pytest.approx(
        sum(float((b["completion_mask"] * b["tool_mask"]).sum()) for b in batches)
    )
    assert 0 < logs["tokens/model"] < logs["tokens/total"]
    assert 0 < logs["time/update_cpu"] <= logs["time/step_cpu"]
    assert (Path(config.train.output_dir) / "final" / "adapter_config.json").exists()

    # The curve of this run: read back from summary.json, summarised and drawn.
    from crosearch.rl.curve import plot_curve, read_log_history, summarize

    history, source = read_log_history(config.train.output_dir)
    assert source.name == "summary.json"
    assert summarize(history)["last_mean"] == pytest.approx(logs["reward"])
    png = plot_curve(history, Path(config.train.output_dir) / "curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_search_language_groups_search_the_configured_languages_and_score_the_question_golds(workdir):
    """One real TRL GRPO step in search-language groups: German questions, the rollouts of a group
    searching German and English in turn; every rollout answers with the German gold."""
    from crosearch.agent.backends import TeacherForcedBackend
    from crosearch.data.benchmark import load_benchmark
    from crosearch.rl import train as train_module

    config, _ = _config(
        workdir,
        "search-langs",
        languages=["de"],
        num_generations=4,
        group_mode="search-langs",
        search_langs=["self", "en"],
    )
    config.agent.max_new_tokens = 96  # room for a long German question inside <search>
    golds = {q.question.strip(): q.answers[0] for q in load_benchmark(config.train.benchmark).train if q.lang == "de"}

    def responder(context: str) -> str:
        question = context.rsplit("Question:", 1)[1].strip().split("\n")[0].strip()
        if context.rstrip().endswith("</information>"):
            return f"<think>found</think>\n<answer>{golds[question]}</answer>"
        return f"<think>search</think>\n<search>{question}</search>"

    summary = train_module.run_train(
        config, backend_factory=lambda model, tok: TeacherForcedBackend(model, tok, lambda c: responder(c))
    )
    assert summary["steps"] == 1
    lines = [json.loads(x) for x in (Path(config.train.output_dir) / "rollouts.jsonl").read_text().splitlines()]
    assert len(lines) == 8 and {r["step"] for r in lines} == {1}
    for start in range(0, 8, 4):
        group = lines[start : start + 4]
        assert len({r["id"] for r in group}) == 1 and {r["lang"] for r in group} == {"de"}
        assert [r["search_lang"] for r in group] == ["de", "en", "de", "en"]
        for r in group:
            # A German query may match nothing in English ("No results found."), never another language.
            assert r["searches"] == 1 and set(r["evidence_langs"][0]) <= {r["search_lang"]}
    for lang in ("de", "en"):
        assert any(r["evidence_langs"][0] for r in lines if r["search_lang"] == lang)
    logs = {k: v for entry in summary["log_history"] for k, v in entry.items()}
    # Scored against the German question's golds whatever language was searched (English golds would miss).
    assert logs["search_lang/exact_match/de"] == pytest.approx(1.0)
    assert logs["search_lang/exact_match/en"] == pytest.approx(1.0)
    assert logs["search_lang/searches/en"] == pytest.approx(1.0)
    assert logs["lang/exact_match/de"] == pytest.approx(1.0)


def test_warm_start_masks_inserted_information(workdir):
    from crosearch.rl.sft import run_sft

    config, _ = _config(workdir, "sft")
    summary = run_sft(config)
    assert summary["steps"] == 1 and summary["trajectories"] >= 3
    out = Path(config.sft.output_dir)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out / "final")
    for line in (out / "trajectories.jsonl").read_text().splitlines():
        t = json.loads(line)
        ids, labels = t["input_ids"], t["labels"]
        text = tokenizer.decode(ids)
        # Positions inside the <information> block (from its opening to its closing tag) carry -100 exactly.
        masked = [i for i, lab in enumerate(labels) if lab == -100]
        trained = [i for i, lab in enumerate(labels) if lab != -100]
        trained_text = tokenizer.decode([ids[i] for i in trained])
        assert "<search>" in trained_text and "<answer>" in trained_text and "</answer>" in trained_text
        assert "<information>" not in trained_text and "Question:" not in trained_text
        after_prompt = [i for i in masked if i > trained[0]]
        inserted_text = tokenizer.decode([ids[i] for i in after_prompt])
        assert inserted_text.strip().startswith("<information>") and inserted_text.strip().endswith("</information>")
        assert all(labels[i] == ids[i] for i in trained)
        prompt_text = tokenizer.decode(ids[: trained[0]])
        assert text.count("<information>") == prompt_text.count("<information>") + 1  # one real block
    assert (out / "final" / "adapter_config.json").exists()


@pytest.mark.subprocess
def test_killed_training_resumes_from_the_last_complete_checkpoint(workdir):
    config, recipe = _config(workdir, "resume", max_steps=2, save_steps=1)
    out = Path(config.train.output_dir)
    cmd = [sys.executable, "-m", "crosearch.cli", "train", "--config", str(recipe)]
    env = {**os.environ, "TRL_EXPERIMENTAL_SILENCE": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for(out / "checkpoint-1" / "crosearch-complete.json", proc, timeout=900)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # A write cut short by the kill (simulated for a later step, so the test does not depend on timing).
    partial = out / "checkpoint-7"
    partial.mkdir()
    (partial / "trainer_state.json").write_text("{")

    done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not partial.exists()
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    steps = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert steps == [1, 2]  # the log continues where the checkpoint left it, no step twice
    for ckpt in out.glob("checkpoint-*"):
        assert (ckpt / "crosearch-complete.json").exists()
    assert list((out / "tensorboard").iterdir())


def test_training_bounds_the_onednn_caches_unless_the_user_set_them(monkeypatch):
    """bf16 training on AMX/AVX512-BF16 CPUs caches one oneDNN primitive per shape; the caps keep memory flat."""
    from crosearch.rl.common import ONEDNN_CACHE_CAPACITY, ONEDNN_CACHES, bound_onednn_cache

    for name in ONEDNN_CACHES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LRU_CACHE_CAPACITY", "512")
    bound_onednn_cache()
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == str(ONEDNN_CACHE_CAPACITY)
    assert os.environ["LRU_CACHE_CAPACITY"] == "512"
