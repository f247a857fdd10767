"""``crosearch data``: build the open-retrieval benchmark and describe it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from crosearch.cli.options import ConfigOption, SetOption, resolve_config, unshown

app = typer.Typer(help="Build the multilingual open-retrieval benchmark and show its statistics.", no_args_is_help=True)


@app.command("build")
def build(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the benchmark to.")],
    setting: Annotated[
        str | None, unshown("--setting", help="Coverage: full, gap or no-native (default: data.setting).")
    ] = None,
    seed: Annotated[int | None, unshown("--seed", help="Seed of the split and the gaps (default: data.seed).")] = None,
    source: Annotated[
        str | None,
        unshown("--source", help="'xquad' (vendored) or a directory of parallel <name>.<lang>.json[.gz] files."),
    ] = None,
    langs: Annotated[
        str | None,
        unshown("--langs", help="Comma-separated languages, e.g. en,de,zh (default: every language of the source)."),
    ] = None,
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Build collection.jsonl, train/test.jsonl and meta.json (byte-identical for the same seed and config).

    With data.validation_fraction > 0 also validation.jsonl, carved out of the train split.
    """
    from rich.console import Console

    from crosearch.data.benchmark import build_benchmark, write_benchmark
    from crosearch.data.stats import compute_stats, stats_table

    cli_overrides = list(overrides or [])
    # Explicit flags win over the recipe and --set; they go through the same validation.
    for key, value in (("setting", setting), ("seed", seed), ("source", source)):
        if value is not None:
            cli_overrides.append(f"data.{key}={json.dumps(value)}")
    if langs is not None:
        cli_overrides.append(f"data.languages={json.dumps([x.strip() for x in langs.split(',') if x.strip()])}")
    cfg = resolve_config(config, cli_overrides).data

    console = Console(stderr=True)
    bench = build_benchmark(cfg, progress=console.is_terminal)
    write_benchmark(bench, out)
    counts = bench.meta["counts"]
    validation = f", {counts['validation']} validation" if bench.has_validation else ""
    console.print(
        f"wrote {out}: {counts['passages']} passages, {counts['train']} train{validation} and {counts['test']} test "
        f"questions in {len(bench.languages)} languages (setting {cfg.setting}, seed {cfg.seed})"
    )
    console.print(stats_table(compute_stats(bench)))


@app.command("stats")
def stats(
    directory: Annotated[Path, typer.Argument(help="A benchmark directory (from `crosearch data build`).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON.")] = False,
) -> None:
    """Per-language passages and questions, gold-paragraph reachability and answer coverage."""
    from rich.console import Console

    from crosearch.data.benchmark import load_benchmark
    from crosearch.data.stats import compute_stats, stats_table

    result = compute_stats(load_benchmark(directory))
    if as_json:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    else:
        Console().print(stats_table(result))
