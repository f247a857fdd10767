"""A clean console: the commands a newcomer runs print no library warnings, tracebacks or metric dictionaries.

Each command runs as a user runs it (a subprocess, the tiny model, one real en+de benchmark and BM25
index shared by all); what the libraries emitted must be in the run's ``crosearch.log`` instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from training_data import write_en_de_benchmark_and_index

# A printed metrics dictionary, as transformers' ProgressCallback writes them: {'loss': ..., 'reward': ...}.
METRIC_DICT = re.compile(r"\{'[\w/]+': ")
TINY = ["--set", "model.name=tiny", "--set", "model.dtype=float32", "--set", "model.device=cpu"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    root = write_en_de_benchmark_and_index(tmp_path_factory.mktemp("console"))
    recipe = {
        "model": {"name": "tiny", "dtype": "float32", "device": "cpu"},
        "retrieval": {"index_dir": str(root / "index"), "k": 2},
        "crosslingual": {"strategy": "mono", "k": 2, "token_budget": 48},
        "agent": {"max_turns": 2, "max_new_tokens": 40, "answer_tokens": 8, "max_total_tokens": 700},
        "train": {
            "benchmark": str(root / "benchmark"),
            "output_dir": str(root / "grpo"),
            "max_questions": 4,
            "num_generations": 2,
            "questions_per_step": 1,
            "max_steps": 1,
            "save_steps": 1,
            "bf16": False,
            "reward_weights": {"exact_match": 1.0, "f1": 0.5, "format": 0.1},
        },
        "sft": {
            "benchmark": str(root / "benchmark"),
            "output_dir": str(root / "sft"),
            "max_examples": 4,
            "max_steps": 2,
            "batch_size": 2,
            "logging_steps": 1,
            "k": 2,
            "bf16": False,
        },
    }
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return root


def _run(args: list[str], log: Path, *, cwd: Path) -> subprocess.CompletedProcess:
    # CROSEARCH_LOG: where commands without an output directory log (kept inside the test's directory).
    env = {**os.environ, "CROSEARCH_LOG": str(log), "OMP_NUM_THREADS": "1"}
    env.pop("TRL_EXPERIMENTAL_SILENCE", None)
    return subprocess.run(
        [sys.executable, "-m", "crosearch", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=1200
    )


def _assert_clean(proc: subprocess.CompletedProcess, what: str) -> None:
    assert proc.returncode == 0, f"{what} failed:\n{proc.stderr[-3000:]}"
    for stream, text in (("stderr", proc.stderr), ("stdout", proc.stdout)):
        assert "Warning" not in text, f"{what}: a warning on {stream}:\n{text[-3000:]}"
        assert "Traceback" not in text, f"{what}: a traceback on {stream}:\n{text[-3000:]}"
        assert not METRIC_DICT.search(text), f"{what}: a metrics dictionary on {stream}:\n{text[-3000:]}"
        assert "Loading weights" not in text and "it/s]" not in text, f"{what}: a library progress bar on {stream}"


@pytest.mark.subprocess
def test_commands_keep_library_output_in_the_log(shared, tmp_path):
    fallback = tmp_path / "fallback.log"

    ask = _run(["ask", "Who won Super Bowl 50?", "--index", str(shared / "index"), *TINY], fallback, cwd=tmp_path)
    _assert_clean(ask, "ask")
    assert "answer" in ask.stdout and "stop reason" in ask.stdout

    evaluation = tmp_path / "eval"
    qa = _run(
        [
            "eval",
            "qa",
            "--pipeline",
            "search-agent",
            "--benchmark",
            str(shared / "benchmark"),
            "--index",
            str(shared / "index"),
            "--per-lang",
            "1",
            "--out",
            str(evaluation),
            *TINY,
        ],
        fallback,
        cwd=tmp_path,
    )
    _assert_clean(qa, "eval qa")
    assert (evaluation / "metrics.json").exists()

    recipe = str(shared / "recipe.yaml")
    sft = _run(["sft", "--config", recipe], fallback, cwd=tmp_path)
    _assert_clean(sft, "sft")
    assert re.search(r"^step 1/2 · loss \d", sft.stderr, re.M), sft.stderr  # one compact line per logged step
    sft_log = (shared / "sft" / "crosearch.log").read_text()
    assert "py.warnings" in sft_log and "FutureWarning" in sft_log  # what transformers warned, routed here
    assert "library message(s) in " + str(shared / "sft" / "crosearch.log") in " ".join(sft.stderr.split())

    train = _run(["train", "--config", recipe], fallback, cwd=tmp_path)
    _assert_clean(train, "train")
    line = re.search(r"^step 1/1 · reward \d\.\d{3} ±\d\.\d{3} \(exact_match .*searches .* s/step$", train.stderr, re.M)
    assert line, train.stderr
    assert len(line.group(0)) < 250
    train_log = (shared / "grpo" / "crosearch.log").read_text()
    assert "rollout_func" in train_log and "experimental" in train_log  # TRL's UserWarning, routed

    # The quickstart on the same benchmark and index (copied where it looks for them), without training.
    out = tmp_path / "quickstart"
    out.mkdir()
    shutil.copytree(shared / "benchmark", out / "benchmark")
    shutil.copytree(shared / "index", out / "index")
    quick = _run(
        ["quickstart", "--out", str(out), "--no-train", "--per-lang", "1", *TINY, "--set", "agent.max_new_tokens=24"],
        fallback,
        cwd=tmp_path,
    )
    _assert_clean(quick, "quickstart")
    assert "report with the trajectory browser" in quick.stdout and (out / "report" / "index.html").exists()
    assert "macro" in quick.stdout and "base" in quick.stdout  # the comparison table
    assert not fallback.exists() or "Traceback" not in fallback.read_text()


@pytest.mark.subprocess
def test_verbose_shows_the_libraries_output_again(shared, tmp_path):
    config = yaml.safe_load((shared / "recipe.yaml").read_text())
    config["sft"]["output_dir"] = str(tmp_path / "sft")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(config))
    proc = _run(["--verbose", "sft", "--config", str(recipe)], tmp_path / "fallback.log", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "FutureWarning" in proc.stderr
    assert METRIC_DICT.search(proc.stdout + proc.stderr)  # transformers' own printing, as without crosearch's routing
    assert "step 1/2 · loss" in proc.stderr  # the line is there too (after tqdm's bar, on its line)


def test_a_crash_leaves_its_traceback_in_the_log_and_one_pointer_on_the_terminal(tmp_path):
    log = tmp_path / "crosearch.log"
    script = textwrap.dedent(
        """
        import sys
        from crosearch.cli import app, main

        @app.command("explode")
        def explode() -> None:
            raise RuntimeError("a bug, not bad input")

        sys.argv = ["crosearch", "explode"]
        main()
        """
    )
    env = {**os.environ, "CROSEARCH_LOG": str(log)}
    program = tmp_path / "explode.py"
    program.write_text(script)
    proc = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    stderr = " ".join(proc.stderr.split())
    assert "crashed: RuntimeError: a bug, not bad input" in stderr and str(log) in stderr
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and 'raise RuntimeError("a bug, not bad input")' in text

    # --verbose: the traceback on the terminal as Python prints it (and still in the log).
    program.write_text(script.replace('["crosearch", "explode"]', '["crosearch", "--verbose", "explode"]'))
    proc = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1 and "Traceback (most recent call last)" in proc.stderr
    assert log.read_text().count("Traceback (most recent call last)") == 2


def test_routing_is_undone_when_the_command_ends(tmp_path):
    """Commands run in one process (tests, programs embedding crosearch) get the logging they had back."""
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    from crosearch import console

    root, library = logging.getLogger(), logging.getLogger("transformers")
    hf_logging.get_logger("transformers.test")  # transformers' own stderr handler is in place
    before = (list(root.handlers), root.level, list(library.handlers), library.propagate)
    assert any(type(h) is logging.StreamHandler for h in library.handlers)
    with console.routed(command="test"):
        console.log_to(tmp_path / "crosearch.log")
        assert not console.is_verbose()
        assert not any(type(h) is logging.StreamHandler for h in library.handlers)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("routed here", FutureWarning, stacklevel=1)
        hf_logging.get_logger("transformers.test").warning("a library warning")
        assert console.routed_warnings() == 2
    assert (list(root.handlers), root.level, list(library.handlers), library.propagate) == before
    assert console.is_verbose()  # no routing: library code leaves the trainers' own output alone
    text = (tmp_path / "crosearch.log").read_text()
    assert "FutureWarning: routed here" in text and "WARNING transformers.test: a library warning" in text


def test_step_line_shows_reward_components_searches_and_time_compactly():
    from crosearch.rl.step_line import format_step

    logs = {
        "loss": 0.0132,
        "reward": 0.275,
        "reward_std": 0.19,
        "rewards/exact_match/mean": 0.25,
        "rewards/f1/mean": 0.3,
        "rewards/format/mean": 1.0,
        "rollout/searches": 1.0,
        "rollout/valid_format": 1.0,
        "time/step": 61.23,
        "completions/mean_length": 58.5,
        "learning_rate": 1e-5,
    }
    line = format_step(3, 20, logs, seconds=70.0)
    assert line == (
        "step 3/20 · reward 0.275 ±0.190 (exact_match 0.25, f1 0.30, format 1.00) · searches 1.0 · "
        "well-formed 100% · loss 0.0132 · 61.2 s/step"
    )
    # The warm start: loss, learning rate, and the time measured between logs.
    assert format_step(2, 8, {"loss": 1.92, "learning_rate": 1.7e-4}, seconds=7.4) == (
        "step 2/8 · loss 1.9200 · lr 0.00017 · 7.4 s/step"
    )


def test_the_gguf_conversion_bar_stays_off_the_terminal_unless_verbose(capsys):
    """transformers' GGUF loader calls tqdm directly; a fresh install converts the bundled model once."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    from crosearch import console
    from crosearch.models import quiet_gguf_conversion

    def convert() -> str:
        with quiet_gguf_conversion():
            list(gguf_utils.tqdm(range(3), desc="Converting and de-quantizing GGUF tensors..."))
        return capsys.readouterr().err

    with console.routed(command="test"):
        assert "Converting" not in convert()
    original = gguf_utils.tqdm
    with console.routed(verbose=True, command="test"):
        assert "Converting" in convert()
    assert gguf_utils.tqdm is original
