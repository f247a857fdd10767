"""``crosearch model``: what a model spec loads (``info``) and building the bundled cache (``convert``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from crosearch.cli.options import ConfigOption, SetOption, resolve_config, unshown

app = typer.Typer(help="Policy models: inspect what loads, pre-build the bundled model cache.", no_args_is_help=True)
console = Console()

ModelOption = Annotated[
    str | None,
    unshown("--model", "-m", help="'bundled', 'tiny', a Hugging Face id or a local directory (overrides model.name)."),
]


def _millions(n: int) -> str:
    return f"{n / 1e6:,.1f}M" if n >= 1e5 else f"{n:,}"


@app.command("info")
def info(
    model: ModelOption = None,
    config: ConfigOption = None,
    overrides: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the information as JSON.")] = False,
) -> None:
    """Load a model (and its adapter, if any) and show what loaded: size, dtype, device, tokenizer, cache."""
    from crosearch.adapters import PREFIX, is_bundled, shipped_settings
    from crosearch.models import load_policy

    cfg = resolve_config(config, overrides)
    spec = cfg.model if model is None else cfg.model.model_copy(update={"name": model})
    policy = load_policy(spec)
    facts = policy.info
    if as_json:
        typer.echo(json.dumps(facts.to_dict(), ensure_ascii=False, indent=2))
        return
    table = Table(title=f"model: {facts.name}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    share = facts.embedding_parameters / facts.parameters if facts.parameters else 0.0
    rows = [
        ("architecture", f"{facts.architecture} ({facts.num_layers} layers, hidden {facts.hidden_size})"),
        (
            "parameters",
            f"{_millions(facts.parameters)} total; embedding {_millions(facts.embedding_parameters)} "
            f"({share:.0%}), tied to the LM head: {'yes' if facts.tied_embeddings else 'no'}",
        ),
        ("trainable", _millions(facts.trainable_parameters)),
        ("dtype", facts.dtype),
        ("device", facts.device),
        (
            "vocabulary",
            f"{facts.vocab_size:,} tokens (model rows: {facts.model_vocab_size:,})"
            if facts.model_vocab_size
            else f"{facts.vocab_size:,} tokens",
        ),
        ("special tokens", ", ".join(f"{role}={t['token']!s} ({t['id']})" for role, t in facts.special_tokens.items())),
        ("chat template", "yes" if facts.chat_template else "no (base model: plain-text prompts)"),
        ("source", facts.source or "built in memory (seeded)"),
        ("cache", facts.cache_path or "-"),
        ("adapter", facts.adapter or "-"),
        ("load time", f"{facts.load_seconds:.1f} s" + (" (built the cache)" if facts.built_cache else "")),
    ]
    if is_bundled(spec.adapter):
        # What it was trained under: results depend on using it with the same strategy.
        shipped = shipped_settings(str(spec.adapter)[len(PREFIX) :])
        overrides_shown = " ".join(f"{k}={v}" for k, v in shipped.settings.items()) or "-"
        rows.insert(-1, ("trained under", f"{overrides_shown} (its MODEL_CARD.md has the recipe and metrics)"))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


@app.command("convert")
def convert(
    config: ConfigOption = None,
    overrides: SetOption = None,
    cache_dir: Annotated[
        Path | None,
        unshown("--cache-dir", help="Cache root (overrides model.cache_dir, $CROSEARCH_CACHE and the user cache dir)."),
    ] = None,
) -> None:
    """De-quantise the bundled Gemma 3 270M once and cache it as safetensors (later loads take seconds)."""
    from crosearch.models import bundled_model_dir

    cfg = resolve_config(config, overrides)
    started = time.perf_counter()
    path, built = bundled_model_dir(cache_dir or cfg.model.cache_dir)
    elapsed = time.perf_counter() - started
    if built:
        console.print(f"[green]converted[/] the bundled model in {elapsed:.0f} s: {path}")
    else:
        console.print(f"[green]already cached[/]: {path}")


@app.command("ship-adapter")
def ship_adapter(
    source: Annotated[Path, typer.Argument(help="A trained PEFT adapter directory (e.g. runs/grpo/final).")],
    name: Annotated[str, typer.Argument(help="The name it is loaded by: --set model.adapter=bundled:NAME.")],
    card: Annotated[
        Path,
        typer.Option(
            "--card", help="YAML/JSON with the model card's fields: data, recipe, steps, seed, commit, metrics."
        ),
    ],
    into: Annotated[
        Path | None,
        unshown("--into", help="Directory of bundled adapters to write into (default: the package's own)."),
    ] = None,
) -> None:
    """Ship a trained adapter in the package: bf16 weights, a model card and SHA-256 checksums checked at load."""
    from crosearch.adapters import PREFIX, load_card
    from crosearch.adapters import ship_adapter as ship
    from crosearch.io import describe_files

    target = ship(source, name, load_card(card), root=into)
    files = describe_files(target)
    size = sum(info["size"] for info in files.values())
    console.print(f"[green]shipped[/] {target} ({size / 1e6:.1f} MB); load it with --set model.adapter={PREFIX}{name}")
