"""``crosearch bench``: list and run the benchmark scripts of a source checkout (``benchmarks/bench_*.py``).

The scripts live beside the package, not inside it (they compare against
baselines such as rank_bm25 that users need not install), so this command finds
them from the current directory or from the source tree of an editable install.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from crosearch.errors import CrosearchError


def benchmarks_dir() -> Path:
    """The ``benchmarks/`` folder of the checkout (current directory first, then the package's source tree)."""
    candidates = [Path.cwd() / "benchmarks", Path(__file__).resolve().parents[3] / "benchmarks"]
    for candidate in candidates:
        if candidate.is_dir() and any(candidate.glob("bench_*.py")):
            return candidate
    raise CrosearchError("no benchmarks/ folder with bench_*.py scripts here: run from a crosearch source checkout")


def available() -> dict[str, Path]:
    return {path.stem.removeprefix("bench_"): path for path in sorted(benchmarks_dir().glob("bench_*.py"))}


def bench(
    name: Annotated[
        str | None, typer.Argument(help="Benchmark to run (omit to list them).", show_default=False)
    ] = None,
    args: Annotated[
        list[str] | None, typer.Argument(help="Arguments passed to the script (after --).", show_default=False)
    ] = None,
) -> None:
    """List the benchmarks, or run one: `crosearch bench bm25 -- --help`. Results are in benchmarks/README.md."""
    scripts = available()
    if name is None:
        for key, path in scripts.items():
            doc = (path.read_text(encoding="utf-8").split('"""')[1].strip().splitlines() or [""])[0]
            typer.echo(f"{key:14s} {doc}")
        return
    if name not in scripts:
        raise CrosearchError(f"unknown benchmark '{name}'; choose one of {', '.join(scripts)}")
    result = subprocess.run([sys.executable, str(scripts[name]), *(args or [])], check=False)
    raise typer.Exit(result.returncode)
