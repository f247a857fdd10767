import subprocess
import sys

from typer.testing import CliRunner

from crosearch import __version__
from crosearch.cli import app, _register
from crosearch.commands import COMMANDS

runner = CliRunner()
_register()


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
    for path in paths:
        result = runner.invoke(app, path + ["--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output


def test_user_errors_are_one_line_not_tracebacks(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "crosearch.cli", "data", "stats", str(tmp_path / "missing")],
        capture_output=True, text=True,
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
