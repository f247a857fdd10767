"""``crosearch experiment``: ``run`` a whole comparison, show its ``status``, ``eval`` it on unseen data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from crosearch.cli.options import unshown

app = typer.Typer(
    help="A whole comparison from one recipe: benchmarks, indexes, warm start, GRPO arms, evaluations, report.",
    no_args_is_help=True,
)

RecipeOption = Annotated[
    Path, typer.Option("--config", "-c", help="Experiment recipe (see configs/experiment-cpu.yaml).")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def _runner(config: Path, *, quiet: bool = False, extra: Any = None) -> Any:
    from rich.console import Console

    from crosearch.console import LOG_NAME, log_to
    from crosearch.experiment.recipe import load_recipe
    from crosearch.experiment.runner import Runner

    resolved = load_recipe(config)
    log_to(Path(resolved.recipe.work_dir) / LOG_NAME)  # the stages' library output, beside their runs
    stages = extra(resolved) if extra else ()
    return Runner(resolved, extra=stages, console=Console(stderr=True), progress=not quiet)


def _table(runner: Any, stages: Any, title: str, *, estimates: bool, redo: frozenset[str] = frozenset()) -> Any:
    from rich.table import Table

    from crosearch.experiment.runner import format_key, format_seconds

    table = Table(title=title)
    for column in ("stage", "state", "wall time" if not estimates else "wall time / estimate", "key number"):
        table.add_column(column)
    colours = {
        "done": "green",
        "running": "cyan",
        "failed": "red",
        "stale": "yellow",
        "left": "white",
        "redo": "yellow",
    }
    for stage in stages:
        state = "redo" if stage.name in redo and runner.state(stage) != "running" else runner.state(stage)
        marker = runner.marker(stage) if state == "done" else None
        wall = (
            format_seconds(marker.get("wall_seconds"))
            if marker
            else (f"~{format_seconds(stage.estimate)}" if estimates else "-")
        )
        if state == "running":
            wall = f"{format_seconds(runner.running_seconds())} so far"
        key = format_key(marker.get("key")) if marker else "-"
        table.add_row(stage.name, f"[{colours[state]}]{state}[/]", wall, key)
    return table


def _summary(runner: Any, stages: Any) -> str:
    from crosearch.experiment.results import load_average
    from crosearch.experiment.runner import format_seconds

    left, seconds = runner.estimate_left(stages)
    total = sum(
        (runner.marker(s) or {}).get("wall_seconds", s.estimate) if runner.done(s) else s.estimate for s in stages
    )
    load = load_average()
    kinds = ", ".join(f"{kind} {format_seconds(s)}" for kind, s in runner.estimate_by_kind(stages).items())
    return (
        f"{len(stages)} stages, {len(stages) - left} done, {left} left; estimated budget {format_seconds(total)} "
        f"in all, {format_seconds(seconds)} left{f' ({kinds})' if kinds else ''} "
        f"(load average {' '.join(map(str, load)) if load else '-'})"
    )


@app.command("run")
def run(
    config: RecipeOption,
    only: Annotated[
        list[str] | None,
        unshown(
            "--only",
            help="Run only these stages (a name like train/search-r1, a prefix like eval/gap, or a glob; "
            "repeatable), plus what they need that is missing.",
        ),
    ] = None,
    redo: Annotated[
        list[str] | None,
        unshown(
            "--redo",
            help="Run these stages again from scratch even if done (patterns as for --only; repeatable), "
            "after a code change the recipe's fingerprint cannot see. Name the stages that read them too.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan (stages, states, estimated budget) and run nothing.")
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Run every stage of the experiment that is not done yet; interrupt it at any point and run it again to resume."""
    from rich.console import Console

    runner = _runner(config, quiet=quiet)
    stages = runner.select([*(only or []), *(redo or [])] or None)
    if dry_run:
        again = frozenset(s.name for s in runner.select(redo, flag="--redo")) if redo else frozenset()
        Console().print(_table(runner, stages, f"experiment {runner.recipe.name}: plan", estimates=True, redo=again))
        typer.echo(_summary(runner, stages))
        return
    ran = runner.run(only, redo)
    runner.console.print(
        f"[green]experiment {runner.recipe.name}[/]: ran {len(ran)} stage(s); {_summary(runner, stages)}"
    )


@app.command("status")
def status(config: RecipeOption) -> None:
    """What is done, running, left or failed, with wall times and each stage's key number."""
    from rich.console import Console

    runner = _runner(config)
    Console().print(_table(runner, runner.stages, f"experiment {runner.recipe.name}", estimates=False))
    typer.echo(_summary(runner, runner.stages))


@app.command("eval")
def eval_source(
    config: RecipeOption,
    source: Annotated[
        Path,
        typer.Option(
            "--source",
            help="A directory of XQuAD-format files named <name>.<lang>.json[.gz] (the language comes from the "
            "file name) that training never saw.",
        ),
    ],
    name: Annotated[
        str | None, unshown("--name", help="Name of this evaluation (default: the directory's name).")
    ] = None,
    setting: Annotated[str, typer.Option("--setting", help="Coverage setting of its benchmark.")] = "full",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and run nothing.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Evaluate the trained arms on a benchmark built from unseen files; reported apart from the main tables."""
    from rich.console import Console

    from crosearch.errors import CrosearchError
    from crosearch.experiment.plan import plan_generalisation
    from crosearch.names import check_name

    if setting not in ("full", "gap", "no-native"):
        raise CrosearchError(f"--setting must be full, gap or no-native, got '{setting}'")
    if not source.is_dir():
        raise CrosearchError(f"--source {source}: not a directory of <name>.<lang>.json[.gz] files")
    label = check_name(name or source.resolve().name, "evaluation name")
    runner = _runner(
        config, quiet=quiet, extra=lambda resolved: plan_generalisation(resolved, str(source), label, setting)
    )
    prefix = f"generalisation/{label}"
    stages = runner.select([prefix])
    if dry_run:
        Console().print(_table(runner, stages, f"experiment {runner.recipe.name}: {prefix}", estimates=True))
        typer.echo(_summary(runner, stages))
        return
    runner.run([prefix])
    report = runner.result_path(f"{prefix}/report") / "report.md"
    runner.console.print(f"[green]wrote[/] {report}")
