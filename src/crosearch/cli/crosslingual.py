"""``crosearch crosslingual``: translate texts, and show what one search turn would insert."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from crosearch.cli.options import ConfigOption, SetOption, resolve_config

app = typer.Typer(help="Cross-lingual knowledge integration: translation and evidence gathering.", no_args_is_help=True)


@app.command("translate")
def translate_cmd(
    texts: Annotated[list[str], typer.Argument(help="Texts to translate.")],
    src: Annotated[str, typer.Option("--src", help="Language of the texts (ISO 639-1, e.g. de).")],
    tgt: Annotated[str, typer.Option("--tgt", help="Target language.")],
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Translate texts with the configured translator (crosslingual.translator), through the cache."""
    from crosearch.crosslingual.integration import build_translator

    cfg = resolve_config(config, overrides)
    translator = build_translator(cfg, show_progress=True)
    for line in translator.translate(list(texts), [src] * len(texts), tgt):
        typer.echo(line)


@app.command("gather")
def gather_cmd(
    query: Annotated[str, typer.Argument(help="The search query.")],
    lang: Annotated[str, typer.Option("--lang", help="The question's language.")],
    k: Annotated[
        int | None, typer.Option("--k", help="Passages to insert (default crosslingual.k or retrieval.k).")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Passage id the query may not see (repeatable).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print passages and trace as JSON.")] = False,
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Run one search turn with the configured strategy and print the <information> body (or JSON)."""
    from crosearch.crosslingual.integration import IntegrationQuery, build_integrator
    from crosearch.retrieval.local import load_retriever

    cfg = resolve_config(config, overrides)
    retriever = load_retriever(cfg)
    tokenizer = None
    policy = None
    if cfg.crosslingual.strategy == "crosslingual" and cfg.crosslingual.translator == "policy":
        from crosearch.models import load_policy

        loaded = load_policy(cfg.model)
        policy = (loaded.model, loaded.tokenizer)
        tokenizer = loaded.tokenizer
    integrator = build_integrator(cfg, retriever, tokenizer=tokenizer, policy=policy)
    n = k or cfg.crosslingual.k or cfg.retrieval.k
    evidence = integrator.gather([IntegrationQuery(query, lang, frozenset(exclude or []))], n)[0]
    if as_json:
        typer.echo(json.dumps(evidence.to_dict(), ensure_ascii=False, indent=2))
    elif evidence.body:
        typer.echo(evidence.body)
    else:
        typer.echo(f"no passages found (searched {', '.join(evidence.trace.languages_searched)})", err=True)
