"""The layout rules of docs/architecture.md, checked on the source files themselves.

Imports are read with ``ast`` (including those inside functions, which is where
the heavy ones live), so the rules hold for lazy imports too.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import typer
import typer.main

from crosearch.cli import app

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "crosearch"

# The layers, lowest first: a layer may import itself and the layers before it, never one after it.
LAYERS = ["data", "retrieval", "crosslingual", "agent", "eval", "rl", "experiment", "cli"]
# ``python -m crosearch`` only starts the command line.
ENTRY_POINTS = {"crosearch.__main__": "cli"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield _module_name(path), path


def _shared_units() -> set[str]:
    """The top-level modules (config, io, errors, types, models, ...) and the package itself: usable from anywhere."""
    units = {path.stem for path in PACKAGE.glob("*.py") if path.stem not in ("__init__", "__main__")}
    return units | {"crosearch"}


def _unit(module: str) -> str:
    """The package (layer) or shared module a dotted ``crosearch`` module belongs to."""
    if module in ENTRY_POINTS:
        return ENTRY_POINTS[module]
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import in the file; ``from pkg import sub`` counts as ``pkg.sub``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            yield base, node.lineno
            for alias in node.names:
                target = PACKAGE.parent.joinpath(*f"{base}.{alias.name}".split("."))
                if target.with_suffix(".py").is_file() or (target / "__init__.py").is_file():
                    yield f"{base}.{alias.name}", node.lineno


def _internal_edges() -> list[tuple[str, str, str, str]]:
    """(importing unit, imported unit, where, imported module) for imports that cross units."""
    edges = []
    for module, path in _modules():
        source = _unit(module)
        for imported, line in _imports(module, path):
            if imported.split(".")[0] != "crosearch":
                continue
            target = _unit(imported)
            if target != source:
                edges.append((source, target, f"{path.relative_to(PACKAGE.parent)}:{line}", imported))
    return edges


def test_only_the_cli_imports_typer():
    offenders = []
    for module, path in _modules():
        if _unit(module) == "cli":
            continue
        for imported, line in _imports(module, path):
            top = imported.split(".")[0]
            if top == "typer" or imported.startswith("rich.prompt"):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {imported}")
    assert not offenders, "command-line code belongs in crosearch/cli/:\n" + "\n".join(offenders)


def test_every_package_is_a_known_layer():
    shared = _shared_units()
    packages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    unknown = packages - set(LAYERS) - shared
    assert not unknown, f"new package(s) {sorted(unknown)}: place them in LAYERS here and in docs/architecture.md"


def test_imports_follow_the_layers():
    shared = _shared_units()
    rank = {name: i for i, name in enumerate(LAYERS)}
    wrong = []
    for source, target, where, imported in _internal_edges():
        if source in shared:
            # Shared modules sit below every layer: they may use each other only.
            if target not in shared:
                wrong.append(f"{where}: shared module '{source}' imports {imported} (layer '{target}')")
        elif source in rank and target in rank and rank[target] > rank[source]:
            wrong.append(f"{where}: layer '{source}' imports {imported} from the higher layer '{target}'")
    assert not wrong, "imports against the layer order " + " -> ".join(LAYERS) + ":\n" + "\n".join(wrong)


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target, _, _ in _internal_edges():
        graph[source].add(target)
    done: set[str] = set()

    def visit(unit: str, stack: list[str]) -> list[str] | None:
        if unit in stack:
            return stack[stack.index(unit) :] + [unit]
        if unit in done:
            return None
        for nxt in sorted(graph[unit]):
            cycle = visit(nxt, stack + [unit])
            if cycle:
                return cycle
        done.add(unit)
        return None

    for unit in sorted(graph):
        cycle = visit(unit, [])
        assert cycle is None, "import cycle between packages: " + " -> ".join(cycle)


def _registrations(group: typer.Typer, prefix: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], object]]:
    """(command path, callback) for every command of the typer app, groups walked recursively."""
    for info in group.registered_commands:
        name = info.name or typer.main.get_command_name(info.callback.__name__)
        yield prefix + (name,), info.callback
    for info in group.registered_groups:
        name = info.name or info.typer_instance.info.name
        yield prefix + (name,), None
        yield from _registrations(info.typer_instance, prefix + (name,))


def test_every_command_is_registered_once():
    registrations = list(_registrations(app, ()))
    paths = [path for path, _ in registrations]
    assert len(paths) == len(set(paths)), f"a command name is registered twice: {sorted(paths)}"
    by_callback: dict[object, list[str]] = defaultdict(list)
    for path, callback in registrations:
        if callback is not None:
            by_callback[callback].append(" ".join(path))
    twice = [places for places in by_callback.values() if len(places) > 1]
    assert not twice, f"one command under several names: {twice}"
    assert ("report",) in paths and ("eval", "qa") in paths


def test_importing_the_cli_does_not_import_torch():
    heavy = ("torch", "transformers", "trl", "peft")
    code = (
        "import sys, typer.main, crosearch.cli; typer.main.get_command(crosearch.cli.app); "
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE.parent), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert proc.stdout.strip() == "", f"`crosearch --help` would load {proc.stdout.strip()}"
