"""The distributed path and the GPU recipes, run on CPU in subprocesses with the tiny model.

A broken recipe or a DDP-only failure should fail CI, not a user's GPU job. These take minutes
on two cores, so they are marked ``distributed`` (deselected by default; ``.ci/run`` runs them
with ``pytest -m distributed``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from training_data import write_en_de_benchmark_and_index

ROOT = Path(__file__).resolve().parents[1]
#: Plain GPU recipes; an experiment recipe (arms over a base) is run below through its arms' configurations.
GPU_RECIPES = sorted(p for p in (ROOT / "configs").glob("*-gpu.yaml") if not p.name.startswith("experiment-"))
#: The GPU experiment's arms whose rollout groups differ from a plain recipe's.
GPU_EXPERIMENT_ARMS = ["crosearch-r1", "crosearch-r1-search-langs"]

pytestmark = pytest.mark.distributed

#: The settings that only size the job, shrunk so that one step of the tiny model takes a minute on a CPU.
SMALL = {
    "agent.max_turns": 2,
    "agent.max_new_tokens": 40,
    "agent.answer_tokens": 8,
    "agent.max_total_tokens": 700,
    "agent.batch_size": 8,
    "crosslingual.token_budget": 48,
    "train.languages": ["en", "de"],
    "train.max_questions": 40,
    "train.num_generations": 2,
    "train.questions_per_step": 2,
    "train.micro_batch_size": 2,
    "train.save_steps": 1,
}


#: Gemma's own turn format: the GPU recipes use the chat template, which the tiny model's tokenizer lacks.
GEMMA_CHAT = (
    "{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A benchmark (en+de XQuAD), its BM25 index, and the tiny model saved with a chat template; built once."""
    from crosearch.config import ModelConfig
    from crosearch.models import load_policy

    root = write_en_de_benchmark_and_index(tmp_path_factory.mktemp("distributed"))
    tiny = load_policy(ModelConfig(name="tiny", dtype="float32", device="cpu"))
    tiny.tokenizer.chat_template = GEMMA_CHAT
    tiny.model.save_pretrained(root / "tiny-chat")
    tiny.tokenizer.save_pretrained(root / "tiny-chat")
    return root


def _on_cpu(root: Path, out: str, **extra) -> list[str]:
    """``--set`` arguments that run a recipe on CPU with the tiny model (chat template added) and the module's data."""
    values = {
        "model.name": str(root / "tiny-chat"),
        "model.dtype": "float32",
        "model.device": "cpu",
        "train.bf16": False,
        "train.use_vllm": False,
        "train.benchmark": str(root / "benchmark"),
        "retrieval.index_dir": str(root / "index"),
        "train.output_dir": str(root / out),
        **SMALL,
        **extra,
    }
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={json.dumps(value)}")]


def _env() -> dict[str, str]:
    return {**os.environ, "TRL_EXPERIMENTAL_SILENCE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _trained_steps(out: Path) -> int:
    states = sorted(out.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1]))
    assert states, f"no checkpoint in {out}"
    return int(json.loads(states[-1].read_text())["global_step"])


def test_ddp_on_two_cpu_processes_runs_two_grpo_steps(workdir):
    recipe = workdir / "ddp.yaml"
    recipe.write_text(yaml.safe_dump({"crosslingual": {"strategy": "mono", "k": 2}, "retrieval": {"k": 2}}))
    accelerate = Path(sys.executable).parent / "accelerate"
    # `--multi_gpu` is accelerate's torchrun launcher; without GPUs it starts CPU processes that join over
    # gloo. (`--cpu --num_processes 2` starts a single process: accelerate's multi-CPU launch needs MPI.)
    cmd = [
        str(accelerate),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "crosearch.cli",
        "train",
        "--config",
        str(recipe),
        *_on_cpu(workdir, "ddp", **{"train.max_steps": 2}),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=1800)
    assert done.returncode == 0, done.stderr[-4000:]
    out = workdir / "ddp"
    assert _trained_steps(out) == 2
    # Both processes trained it: the checkpoint says so (DDP over gloo on CPU).
    marker = json.loads((out / "checkpoint-2" / "crosearch-complete.json").read_text())
    assert (marker["world_size"], marker["backend"]) == (2, "gloo")


@pytest.mark.parametrize("recipe", GPU_RECIPES, ids=[p.stem for p in GPU_RECIPES])
def test_gpu_recipe_runs_one_step_on_cpu(workdir, recipe):
    _run_one_step_on_cpu(workdir, recipe, recipe.stem)


@pytest.mark.parametrize("arm", GPU_EXPERIMENT_ARMS)
def test_gpu_experiment_arm_runs_one_step_on_cpu(workdir, arm):
    from crosearch.config import dump_config, with_updates
    from crosearch.experiment.recipe import load_recipe
    from crosearch.retrieval.local import IndexSettings, build_index
    from crosearch.retrieval.store import read_collection, train_paragraphs

    recipe = load_recipe(ROOT / "configs" / "experiment-gpu.yaml")
    config = with_updates(recipe.config(arm=arm), {"retrieval.dense_device": "cpu"})
    path = workdir / f"experiment-gpu-{arm}.yaml"
    path.write_text(dump_config(config))
    # The experiment searches BM25 and the bundled encoder in one aligned ranking: its own index
    # (the vendored passages' embeddings ship with the package, so it builds in seconds).
    index = workdir / "index-experiment"
    if not (index / "manifest.json").is_file():
        bench = workdir / "benchmark"
        settings = IndexSettings.from_config(config.retrieval)
        build_index(read_collection(bench), index, settings, progress=False, train_paragraphs=train_paragraphs(bench))
    extra = {"retrieval.index_dir": str(index), "retrieval.dense_device": "cpu"}
    if config.train.group_mode == "search-langs":
        extra["train.search_langs"] = ["self", "en"]  # the module's index holds en and de only
    _run_one_step_on_cpu(workdir, path, path.stem, **extra)


def _run_one_step_on_cpu(workdir: Path, recipe: Path, out: str, **extra) -> None:
    from crosearch.config import load_config

    config = load_config(recipe)
    assert config.model.device == "cuda", "a GPU recipe"
    # Keep what the recipe decides (strategy, translator, template, loss, groups, TRL options); shrink sizes only.
    groups = min(config.train.group_languages, 2)
    cmd = [
        sys.executable,
        "-m",
        "crosearch.cli",
        "train",
        "--config",
        str(recipe),
        *_on_cpu(workdir, out, **{"train.max_steps": 1, "train.group_languages": groups, **extra}),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=1800, cwd=workdir)
    assert done.returncode == 0, done.stderr[-4000:]
    assert _trained_steps(workdir / out) == 1
