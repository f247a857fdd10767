import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from crosearch import __version__
from crosearch.cli import app
from crosearch.cli.options import resolve_config, with_model_and_retriever

runner = CliRunner()
# The top-level commands and command groups users and docs rely on.
COMMANDS = [
    "data",
    "serve",
    "index",
    "eval",
    "crosslingual",
    "ask",
    "sft",
    "train",
    "curve",
    "model",
    "quickstart",
    "report",
    "bench",
    "experiment",
]


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def _command_paths():
    import typer.main

    group = typer.main.get_command(app)
    paths = []

    def walk(command, prefix):
        paths.append(prefix)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, prefix + [name])

    walk(group, [])
    return paths


def test_every_command_has_help():
    paths = _command_paths()
    assert len(paths) >= 1 + len(COMMANDS)
    assert {path[0] for path in paths if len(path) == 1} == set(COMMANDS)
    for path in paths:
        result = runner.invoke(app, path + ["--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output


def test_user_errors_are_one_line_not_tracebacks(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "crosearch.cli", "data", "stats", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "missing" in proc.stderr


def test_bench_lists_the_scripts_and_rejects_unknown_names():
    result = runner.invoke(app, ["bench"])
    assert result.exit_code == 0
    for name in ("bm25", "server", "rollout", "grpo_step"):
        assert name in result.output
    proc = subprocess.run([sys.executable, "-m", "crosearch.cli", "bench", "nope"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "unknown benchmark 'nope'" in proc.stderr and "Traceback" not in proc.stderr


def test_model_and_retriever_flags_win_over_the_recipe_and_leave_the_rest():
    cfg = resolve_config(None, ["model.name=from-set", "model.adapter=a", "retrieval.index_dir=idx", "retrieval.k=7"])
    changed = with_model_and_retriever(
        cfg, model="tiny", adapter=None, index_dir=Path("runs/other"), retriever_url="http://127.0.0.1:9"
    )
    assert changed.model.name == "tiny" and changed.model.adapter == "a"
    assert changed.retrieval.index_dir == "runs/other" and changed.retrieval.url == "http://127.0.0.1:9"
    assert changed.retrieval.k == 7 and changed.agent == cfg.agent
    # the loaded config is not modified
    assert cfg.model.name == "from-set" and cfg.retrieval.index_dir == "idx" and cfg.retrieval.url is None
    assert with_model_and_retriever(cfg, adapter=Path("ad")).model.adapter == "ad"
