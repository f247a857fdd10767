"""Registry of CLI command groups; each area adds its own here in one line."""

from __future__ import annotations

import importlib

import typer

# (module, attribute, name): the attribute is a typer.Typer sub-app, or a plain function
# registered as a single top-level command under ``name``.
COMMANDS: list[tuple[str, str, str]] = [
    ("crosearch.data.commands", "app", "data"),
    ("crosearch.retrieval.serve_commands", "serve", "serve"),
    ("crosearch.retrieval.commands", "index", "index"),
    ("crosearch.eval.commands", "app", "eval"),
    ("crosearch.crosslingual.commands", "app", "crosslingual"),
    ("crosearch.agent.commands", "ask", "ask"),
    ("crosearch.rl.commands", "sft", "sft"),
    ("crosearch.rl.commands", "train", "train"),
    ("crosearch.rl.commands", "curve", "curve"),
    ("crosearch.model_commands", "app", "model"),
    ("crosearch.quickstart", "quickstart", "quickstart"),
    ("crosearch.eval.qa_commands", "eval_report", "report"),
    ("crosearch.bench_commands", "bench", "bench"),
]


def register_all(app: typer.Typer) -> None:
    for module_name, attr, name in COMMANDS:
        target = getattr(importlib.import_module(module_name), attr)
        if isinstance(target, typer.Typer):
            app.add_typer(target, name=name)
        else:
            app.command(name=name)(target)
