"""HTTP retrieval server: any :class:`~crosearch.retrieval.base.Retriever` behind FastAPI.

Two search endpoints share one retriever:

- ``POST /retrieve`` speaks the Search-R1 protocol, so Search-R1 training code
  (and anything written against it) can use a crosearch index unchanged.
  Queries there carry no language, so they search every language, fused: by
  default (``retrieval.fusion: auto``) ranked by the aligned dense score when the
  index has dense embeddings, by reciprocal rank fusion otherwise.
- ``POST /search`` is the richer crosearch protocol: per-query language,
  languages to search, excluded passage ids, the query's translations (language ->
  text, used by each language's BM25), and hits with language/paragraph.

Every request is bounded (Host header, JSON content type, body size and read time
checked before parsing, number of queries, query length, topk, passages per request,
answer size; see :mod:`crosearch.retrieval.limits` and :mod:`crosearch.retrieval.hosts`)
and every bad request is answered with a 4xx JSON body ``{"detail": "<message>"}``;
nothing a client sends can take the server down.

Concurrent requests are merged into batched ``search`` calls by the
micro-batcher (:mod:`crosearch.retrieval.batcher`). A large request is answered in
slices, each searched and rendered on a worker thread, so it never holds the event
loop (``/health`` and small requests keep being answered meanwhile).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Literal

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from crosearch import __version__
from crosearch.config import ServerConfig
from crosearch.errors import CrosearchError
from crosearch.retrieval.base import Retriever
from crosearch.retrieval.batcher import MicroBatcher
from crosearch.retrieval.hosts import HostCheckMiddleware, allowed_host_names
from crosearch.retrieval.limits import (
    BodyLimitMiddleware,
    RequestError,
    RequestLimits,
    describe_errors,
    error_response,
    parse_body,
)
from crosearch.types import Hit, SearchQuery

log = logging.getLogger(__name__)

#: Environment variable through which ``crosearch serve --workers N`` hands its
#: configuration to each worker process (uvicorn starts workers from an import string).
CONFIG_ENV = "CROSEARCH_SERVER_CONFIG"

#: Most passages searched and rendered in one step of a large request. Bounds how long one
#: slice holds the retriever (others' requests wait at most one slice) and keeps each JSON
#: render small; slices run on a worker thread, so the event loop never waits for them.
SLICE_PASSAGES = 1024


# --------------------------------------------------------------------------- request models


class _Strict(BaseModel):
    # Unknown keys are rejected so that a misspelt option ("top_k") is reported
    # instead of silently falling back to a default.
    model_config = ConfigDict(extra="forbid")


class RetrieveRequest(_Strict):
    """Search-R1 ``/retrieve`` body."""

    queries: list[StrictStr]
    topk: StrictInt | None = None
    return_scores: StrictBool = False


class QueryItem(_Strict):
    """One query of a ``/search`` request."""

    text: StrictStr
    lang: StrictStr | None = None
    search_langs: list[StrictStr] | None = None
    exclude: list[StrictStr] = Field(default_factory=list)
    translations: dict[StrictStr, StrictStr] | None = None


class SearchRequest(_Strict):
    """crosearch ``/search`` body."""

    queries: list[QueryItem]
    k: StrictInt | None = None
    method: Literal["bm25", "dense"] | None = None
    fusion: Literal["auto", "rrf", "score", "aligned"] | None = None


# --------------------------------------------------------------------------- formatting


def search_r1_contents(hit: Hit) -> str:
    """Search-R1's passage text: the title in double quotes, a newline, then the text."""
    return f'"{hit.title}"\n{hit.text}'


def _hit_json(hit: Hit) -> dict[str, Any]:
    return {
        "id": hit.doc_id,
        "lang": hit.lang,
        "title": hit.title,
        "text": hit.text,
        "score": float(hit.score),
        "method": hit.method,
        "paragraph": hit.paragraph,
    }


def _search_r1_document(hit: Hit) -> dict[str, Any]:
    # ``id`` and ``contents`` are what Search-R1 clients read; title/text/lang ride
    # along (Search-R1's own BM25 server also sends title and text) so clients
    # that know them need not re-parse ``contents``.
    return {
        "id": hit.doc_id,
        "contents": search_r1_contents(hit),
        "title": hit.title,
        "text": hit.text,
        "lang": hit.lang,
        "paragraph": hit.paragraph,
    }


def _scored_document(hit: Hit) -> dict[str, Any]:
    return {"document": _search_r1_document(hit), "score": float(hit.score)}


def _json_bytes(content: Any) -> bytes:
    # The same encoding as JSONResponse (UTF-8, compact, no NaN).
    return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def _render_lists(results: list[list[Hit]], render: Callable[[Hit], Any]) -> bytes:
    """The JSON of ``[[render(hit)...], ...]`` without its outer brackets, to be joined with other slices."""
    return _json_bytes([[render(h) for h in hits] for hits in results])[1:-1]


def passage_count(retriever: Retriever) -> int | None:
    """Number of passages behind ``retriever`` if it can tell (``num_passages`` or ``len``)."""
    count = getattr(retriever, "num_passages", None)
    if callable(count):
        count = count()
    if count is None:
        try:
            count = len(retriever)  # type: ignore[arg-type]
        except TypeError:
            return None
    return int(count)


def _accepted_options(search: Callable[..., Any]) -> set[str]:
    try:
        params = inspect.signature(search).parameters
    except (TypeError, ValueError):
        return set()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return {"method", "fusion"}
    return {name for name in ("method", "fusion") if name in params}


# --------------------------------------------------------------------------- the app


def create_app(retriever: Retriever, settings: ServerConfig | None = None) -> FastAPI:
    """Build the FastAPI application serving ``retriever`` under the limits in ``settings``."""
    settings = settings or ServerConfig()
    languages = sorted(retriever.languages)
    limits = RequestLimits(settings, languages)
    count = passage_count(retriever)
    accepted = _accepted_options(retriever.search)
    batcher = MicroBatcher(
        retriever.search,
        window_s=settings.batch_window_ms / 1000.0,
        max_queries=settings.max_batch_queries,
        in_thread=settings.search_thread,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        await batcher.close()

    app = FastAPI(title="crosearch retrieval server", version=__version__, lifespan=lifespan)
    app.state.retriever = retriever
    app.state.settings = settings
    app.state.batcher = batcher
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_body_bytes, tracker=batcher, timeout_s=settings.body_timeout_s
    )
    # Added last, so it runs first: a foreign Host is refused before the body is read.
    app.add_middleware(HostCheckMiddleware, allowed=allowed_host_names(settings.allowed_hosts, settings.host))

    @app.exception_handler(RequestValidationError)
    async def _on_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, message = describe_errors(exc.errors())
        return error_response(status, message)

    @app.exception_handler(RequestError)
    async def _on_request_error(_: Request, exc: RequestError) -> JSONResponse:
        return error_response(exc.status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _on_http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _on_crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("retrieval failed")
        return error_response(500, f"internal error while searching: {type(exc).__name__}")

    async def run(queries: list[SearchQuery], k: int, options: dict[str, str], in_thread: bool) -> list[list[Hit]]:
        try:
            return await batcher.submit(queries, k, options, in_thread=in_thread)
        except CrosearchError as exc:
            raise RequestError(422, str(exc)) from None

    def too_large() -> RequestError:
        return RequestError(
            413,
            f"the answer is larger than the server's limit of {settings.max_response_bytes} bytes "
            "(server.max_response_bytes); send fewer queries or a smaller topk per request",
        )

    async def answer(
        key: str, queries: list[SearchQuery], k: int, options: dict[str, str], render: Callable[[Hit], Any]
    ) -> Response:
        """``{key: [[render(hit), ...] per query]}``: small requests at once, large ones in slices."""
        per_slice = max(1, min(settings.max_batch_queries, SLICE_PASSAGES // k))
        if len(queries) <= per_slice:
            body = _json_bytes({key: [[render(h) for h in hits] for hits in await run(queries, k, options, False)]})
            if len(body) > settings.max_response_bytes:
                raise too_large()
            return Response(body, media_type="application/json")
        parts: list[bytes] = []
        size = 0
        for start in range(0, len(queries), per_slice):
            results = await run(queries[start : start + per_slice], k, options, True)
            # Rendering a slice (mostly copying passage text) also runs off the event loop.
            part = await anyio.to_thread.run_sync(_render_lists, results, render)
            size += len(part) + 1
            if size > settings.max_response_bytes:
                raise too_large()
            parts.append(part)
        return Response(b"".join((b'{"', key.encode(), b'":[', b",".join(parts), b"]}")), media_type="application/json")

    @app.get("/health")
    async def health() -> JSONResponse:
        """Liveness plus what this server can answer."""
        return JSONResponse(
            {
                "status": "ok",
                "version": __version__,
                "languages": languages,
                "passages": count,
                "protocols": ["crosearch", "search-r1"],
                "default_topk": settings.default_topk,
                "max_topk": settings.max_topk,
                "max_queries": settings.max_queries,
                "max_passages": settings.max_passages,
                "max_body_bytes": settings.max_body_bytes,
                "max_response_bytes": settings.max_response_bytes,
                "batches": batcher.batches,
                "queries": batcher.queries,
                "pid": os.getpid(),
            }
        )

    @app.post("/retrieve")
    async def retrieve(request: Request) -> Response:
        """Search-R1 protocol: every query searches every language (fused)."""
        body = await parse_body(request, RetrieveRequest)
        limits.texts(body.queries)
        k = limits.k(body.topk, "topk")
        limits.passages(len(body.queries), k, "topk")
        queries = [SearchQuery(text=q) for q in body.queries]
        # Search-R1 answers plain document lists when scores are not asked for.
        return await answer("result", queries, k, {}, _scored_document if body.return_scores else _search_r1_document)

    @app.post("/search")
    async def search(request: Request) -> Response:
        """crosearch protocol: per-query language, languages to search and exclusions."""
        body = await parse_body(request, SearchRequest)
        limits.texts([q.text for q in body.queries])
        k = limits.k(body.k, "k")
        limits.passages(len(body.queries), k, "k")
        options = {name: value for name in ("method", "fusion") if (value := getattr(body, name)) is not None}
        for name in options:
            if name not in accepted:
                raise RequestError(422, f"this server's retriever does not support choosing '{name}'")
        queries = []
        for i, item in enumerate(body.queries):
            if item.lang is not None:
                limits.lang(item.lang, f"queries.{i}.lang")
            if item.search_langs is not None:
                if not item.search_langs:
                    raise RequestError(422, f"queries.{i}.search_langs: give at least one language, or null for all")
                for lang in item.search_langs:
                    limits.lang(lang, f"queries.{i}.search_langs")
            if item.translations is not None:
                limits.translations(item.translations, f"queries.{i}.translations")
            queries.append(
                SearchQuery(
                    text=item.text,
                    lang=item.lang,
                    search_langs=item.search_langs,
                    exclude=frozenset(item.exclude),
                    translations=item.translations,
                )
            )
        return await answer("results", queries, k, options, _hit_json)

    return app


@contextmanager
def serve_in_background(
    app: FastAPI, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 30.0
) -> Iterator[str]:
    """Run ``app`` under uvicorn on a background thread; yield its base URL, stop it on exit.

    ``port=0`` picks a free port (the socket is bound here, so the URL is known
    before the server starts and no other process can take the port meanwhile).
    For tests, benchmarks and in-process use; ``crosearch serve`` runs in the foreground.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="crosearch-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise CrosearchError(f"retrieval server on {host}:{bound_port} failed to start")
        time.sleep(0.01)
    try:
        yield f"http://{host if ':' not in host else f'[{host}]'}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def app_from_environment() -> FastAPI:
    """uvicorn factory for multi-process serving: rebuilds the app from :data:`CONFIG_ENV`."""
    from crosearch.config import Config
    from crosearch.retrieval.local import load_retriever

    raw = os.environ.get(CONFIG_ENV)
    if not raw:
        raise CrosearchError(f"{CONFIG_ENV} is not set; start the server with `crosearch serve`")
    config = Config.model_validate(json.loads(raw))
    return create_app(load_retriever(config), config.server)
