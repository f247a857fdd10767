"""``crosearch eval``: evaluation commands (retrieval here; QA evaluation registers beside it)."""

from __future__ import annotations

import typer

from crosearch.retrieval.commands import eval_retrieval

app = typer.Typer(help="Evaluate retrieval and QA.", no_args_is_help=True)
app.command("retrieval")(eval_retrieval)
