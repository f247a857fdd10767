"""``crosearch eval``: evaluation commands (retrieval here; QA evaluation registers beside it)."""

from __future__ import annotations

import typer

from crosearch.eval.qa_commands import eval_qa, eval_report
from crosearch.retrieval.commands import eval_retrieval

app = typer.Typer(help="Evaluate retrieval and QA.", no_args_is_help=True)
app.command("retrieval")(eval_retrieval)
app.command("qa")(eval_qa)
app.command("report")(eval_report)
