"""``crosearch ask``: answer one question with a pipeline and show its trace."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from crosearch.cli.options import (
    AdapterOption,
    ConfigOption,
    IndexOption,
    ModelOption,
    RetrieverUrlOption,
    SetOption,
    resolve_config,
    unshown,
    with_model_and_retriever,
)
from crosearch.errors import CrosearchError


def ask(
    question: Annotated[str, typer.Argument(help="The question, in any language of the collection.")],
    lang: Annotated[str | None, unshown("--lang", "-l", help="The question's language (default: detected).")] = None,
    pipeline: Annotated[
        str, typer.Option("--pipeline", "-p", help="search-agent, direct, rag-mono, rag-concat or rag-crosslingual.")
    ] = "search-agent",
    model: ModelOption = None,
    adapter: AdapterOption = None,
    index_dir: IndexOption = None,
    retriever_url: RetrieverUrlOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw trace as JSON.")] = False,
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Answer QUESTION and show each turn: reasoning, query, evidence (with languages), answer, stop reason."""
    from rich.console import Console

    from crosearch.agent.pipelines import PIPELINES, Pipeline, load_policy_backend
    from crosearch.eval.langid import detect_language
    from crosearch.types import QAExample

    if not question.strip():
        raise CrosearchError("the question is empty")
    if pipeline not in PIPELINES:
        raise CrosearchError(f"unknown pipeline '{pipeline}'; choose one of {', '.join(PIPELINES)}")
    cfg = with_model_and_retriever(
        resolve_config(config, overrides),
        model=model,
        adapter=adapter,
        index_dir=index_dir,
        retriever_url=retriever_url,
    )
    console = Console(stderr=True)
    retriever = None
    if pipeline != "direct":
        from crosearch.retrieval.local import load_retriever

        retriever = load_retriever(cfg)
    if lang is None:
        lang = detect_language(question, retriever.languages if retriever is not None else ())
        if lang is None:
            raise CrosearchError("could not detect the question's language; pass --lang")
        console.print(f"question language: {lang} (detected; pass --lang to set it)")
    with console.status(f"loading the policy ({cfg.model.name})..."):
        policy = load_policy_backend(cfg.model)
    runner = Pipeline(pipeline, policy, retriever, cfg, temperature=cfg.eval.temperature, progress=not as_json)
    output = runner.run([QAExample(id="ask", lang=lang, question=question.strip(), answers=[])])[0]
    trace = output.trace()
    if as_json:
        typer.echo(json.dumps(trace, ensure_ascii=False, indent=2))
        return
    show_trace(Console(), trace)


def _evidence_lines(evidence: dict[str, Any]) -> list[str]:
    from rich.markup import escape

    lines = []
    for i, p in enumerate(evidence.get("passages", []), start=1):
        tags = [p["lang"]] + ([p["role"]] if p.get("role") else []) + (["translated"] if p.get("translated") else [])
        lines.append(
            f"[bold]Doc {i}[/] [cyan]\\[{', '.join(tags)}][/] {escape(p.get('title') or '')} "
            f"[dim]({escape(p['doc_id'])})[/]\n    {escape(_short(p.get('shown') or '', 300))}"
        )
    trace = evidence.get("trace", {})
    for target, text in (trace.get("query_translations") or {}).items():
        lines.append(f"[magenta]query in {target}:[/] {escape(text)}")
    for dup in trace.get("duplicates") or []:
        lines.append(
            f"[yellow]dropped duplicate[/] {escape(dup['dropped'])} ({dup['dropped_lang']}) of "
            f"{escape(dup['kept'])} ({dup['kept_lang']}), similarity {dup['similarity']}"
        )
    if trace.get("dropped_for_budget"):
        lines.append(
            f"[yellow]over the token budget, not inserted:[/] {escape(', '.join(trace['dropped_for_budget']))}"
        )
    if not evidence.get("passages"):
        lines.append("[dim]no results[/]")
    return lines


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def show_trace(console: Any, trace: dict[str, Any]) -> None:
    """Print a pipeline trace readably: prompt evidence, each turn, the answer and why the rollout stopped."""
    from rich.markup import escape
    from rich.panel import Panel

    console.print(
        Panel(
            escape(trace["question"]), title=escape(f"question [{trace['lang']}] · {trace['pipeline']}"), expand=False
        )
    )
    for ev in trace.get("prompt_evidence") or []:
        console.print(Panel("\n".join(_evidence_lines(ev)), title="evidence in the prompt", expand=False))
    for turn in trace["turns"]:
        body = [f"[dim]{escape(_short(turn['text'], 600)) or '(nothing)'}[/]"]
        if turn.get("query"):
            body.append(f"[bold magenta]search:[/] {escape(turn['query'])}")
        if turn.get("evidence"):
            body += _evidence_lines(turn["evidence"])
        elif turn.get("docs"):
            body += [f"[cyan]\\[{d['lang']}][/] {escape(d['doc_id'])}" for d in turn["docs"]]
        if turn.get("problems"):
            body.append(f"[yellow]problems:[/] {', '.join(turn['problems'])}")
        label = "forced answer" if turn["kind"] == "force_answer" else f"turn {turn['index'] + 1} ({turn['action']})"
        console.print(Panel("\n".join(body), title=label, expand=False))
    answer = trace.get("answer")
    console.print(
        Panel(escape(answer) if answer else "[red](no answer)[/]", title="answer", expand=False, border_style="green")
    )
    console.print(
        f"stop reason: [bold]{trace['stop_reason']}[/] · searches: {trace['n_searches']} · "
        f"model tokens: {trace['model_tokens']} · inserted tokens: {trace['inserted_tokens']}"
    )
