"""``crosearch serve``: put a local index behind the HTTP retrieval server."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

from rich.console import Console

from crosearch.cli.options import ConfigOption, SetOption, resolve_config, unshown

console = Console(stderr=True)


def serve(
    index: Annotated[
        Path | None, unshown("--index", "-i", help="Index directory (default: retrieval.index_dir).")
    ] = None,
    host: Annotated[str | None, unshown(help="Address to bind (default 127.0.0.1: this machine only).")] = None,
    port: Annotated[int | None, unshown(help="TCP port (default 8000).")] = None,
    max_topk: Annotated[int | None, unshown("--max-topk", help="Largest topk a request may ask for.")] = None,
    max_queries: Annotated[int | None, unshown("--max-queries", help="Most queries per request.")] = None,
    max_body_bytes: Annotated[int | None, unshown("--max-body-bytes", help="Largest request body in bytes.")] = None,
    allowed_hosts: Annotated[
        list[str] | None,
        unshown("--allowed-host", help="Host header value to answer (repeatable; '*' = any). Default: loopback names."),
    ] = None,
    workers: Annotated[int | None, unshown(help="Server processes, each with its own copy of the index.")] = None,
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Serve an index over HTTP: Search-R1's POST /retrieve, crosearch's POST /search, GET /health."""
    extra = list(overrides or [])
    # Flags are applied as overrides so they are validated exactly like the config section.
    for key, value in (
        ("host", host),
        ("port", port),
        ("max_topk", max_topk),
        ("max_queries", max_queries),
        ("max_body_bytes", max_body_bytes),
        ("workers", workers),
        ("allowed_hosts", allowed_hosts),
    ):
        if value is not None:
            extra.append(f"server.{key}={json.dumps(value)}")
    if index is not None:
        extra.append(f"retrieval.index_dir={json.dumps(str(index))}")
    cfg = resolve_config(config, extra)
    # Serving a remote server again would only add a hop; serve the local index.
    cfg.retrieval.url = None
    from crosearch.retrieval.local import open_index

    open_index(cfg.retrieval.index_dir)  # a missing or damaged index is refused before any worker starts
    settings = cfg.server
    from crosearch.retrieval.hosts import is_loopback

    if not is_loopback(settings.host):
        console.print(
            f"[yellow]warning:[/] binding {settings.host}: anyone who can reach this machine can query "
            "the index (the server has no authentication); requests are answered only for the Host names "
            f"{', '.join(settings.allowed_hosts)} and the bound address (server.allowed_hosts / --allowed-host)"
        )

    import uvicorn

    url = f"http://{settings.host}:{settings.port}"
    if settings.workers > 1:
        from crosearch.retrieval.server import CONFIG_ENV

        os.environ[CONFIG_ENV] = cfg.model_dump_json()
        console.print(f"starting {settings.workers} workers on {url} (each loads {cfg.retrieval.index_dir})")
        uvicorn.run(
            "crosearch.retrieval.server:app_from_environment",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level="warning",
        )
        return

    from crosearch.retrieval.local import load_retriever
    from crosearch.retrieval.server import create_app, passage_count

    with console.status(f"loading index {cfg.retrieval.index_dir} ..."):
        retriever = load_retriever(cfg)
    app = create_app(retriever, settings)
    count = passage_count(retriever)
    console.print(
        f"serving {count if count is not None else '?'} passages in "
        f"{', '.join(sorted(retriever.languages))} on {url} "
        "(POST /retrieve, POST /search, GET /health); Ctrl-C stops"
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
