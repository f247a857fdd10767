"""HTTP retrieval server: any :class:`~crosearch.retrieval.base.Retriever` behind FastAPI.

Two search endpoints share one retriever:

- ``POST /retrieve`` speaks the Search-R1 protocol, so Search-R1 training code
  (and anything written against it) can use a crosearch index unchanged.
  Queries there carry no language, so they search every language, fused: by
  default (``retrieval.fusion: auto``) ranked by the aligned dense score when the
  index has dense embeddings, by reciprocal rank fusion otherwise.
- ``POST /search`` is the richer crosearch protocol: per-query language,
  languages to search, excluded passage ids, and hits with language/paragraph.

Every request is bounded (body size checked before parsing, number of queries,
query length, topk) and every bad request is answered with a 4xx JSON body
``{"detail": "<message>"}``; nothing a client sends can take the server down.

Retrieval is CPU-bound, so it never runs on the event loop: a micro-batcher
hands queued requests to a worker thread as one batched ``search`` call.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crosearch import __version__
from crosearch.config import ServerConfig
from crosearch.errors import CrosearchError
from crosearch.retrieval.base import Retriever
from crosearch.types import Hit, SearchQuery

log = logging.getLogger(__name__)

#: Environment variable through which ``crosearch serve --workers N`` hands its
#: configuration to each worker process (uvicorn starts workers from an import string).
CONFIG_ENV = "CROSEARCH_SERVER_CONFIG"


# --------------------------------------------------------------------------- request models

class _Strict(BaseModel):
    # Unknown keys are rejected so that a misspelt option ("top_k") is reported
    # instead of silently falling back to a default.
    model_config = ConfigDict(extra="forbid")


_M = TypeVar("_M", bound=BaseModel)


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


class SearchRequest(_Strict):
    """crosearch ``/search`` body."""

    queries: list[QueryItem]
    k: StrictInt | None = None
    method: Literal["bm25", "dense"] | None = None
    fusion: Literal["auto", "rrf", "score", "aligned"] | None = None


# --------------------------------------------------------------------------- errors

class RequestError(Exception):
    """A request the server understood but refuses; answered with ``status`` and ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


async def _parse(request: Request, model: type[_M]) -> _M:
    """Validate the (size-checked) body straight from bytes: pydantic-core parses and checks
    in one pass, several times cheaper per request than FastAPI's generic body handling."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        status, message = describe_errors(exc.errors(include_url=False))
        raise RequestError(status, message) from None


def describe_errors(errors: Sequence[Any]) -> tuple[int, str]:
    """Turn pydantic's error list into one readable sentence (and 400 for broken JSON)."""
    parts = []
    for err in errors:
        if err.get("type") == "json_invalid":
            reason = (err.get("ctx") or {}).get("error", "malformed JSON")
            return 400, f"request body is not valid JSON: {reason}"
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        where = ".".join(loc) or "body"
        msg = err.get("msg", "invalid")
        if err.get("type") == "missing":
            parts.append(f"missing field '{where}'")
        elif err.get("type") == "extra_forbidden":
            parts.append(f"unknown field '{where}'")
        elif err.get("type") in ("model_type", "model_attributes_type") and where == "body":
            parts.append("the request body must be a JSON object")
        else:
            parts.append(f"{where}: {msg}")
    return 422, "invalid request: " + "; ".join(parts[:5]) + (" ..." if len(parts) > 5 else "")


# --------------------------------------------------------------------------- body limit

class BodyLimitMiddleware:
    """Refuse oversized or non-JSON request bodies before anything parses them.

    ``Content-Length`` is checked first (cheap rejection); the body is then read
    with a running count, so a chunked upload or a lying header cannot push
    more than ``max_bytes`` into memory either.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, tracker: MicroBatcher | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.tracker = tracker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if ctype and ctype != b"application/json" and not ctype.endswith(b"+json"):
            await _error(415, f"content type must be application/json, got {ctype.decode('latin-1')!r}")(
                scope, receive, send)
            return
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _error(400, "invalid Content-Length header")(scope, receive, send)
                return
            if size > self.max_bytes:
                await self._too_big(scope, receive, send)
                return
        chunks: list[bytes] = []
        total = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await self._too_big(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        # A missing content type passes: clients that post JSON without one (bare
        # sockets, some scripts) are common, and the endpoints parse the bytes as JSON.
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        if self.tracker is None:
            await self.app(scope, replay, send)
            return
        # Tell the batcher a request is on its way to a search, so it may wait for it.
        self.tracker.in_flight += 1
        try:
            await self.app(scope, replay, send)
        finally:
            self.tracker.in_flight -= 1

    async def _too_big(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = _error(413, f"request body larger than the server's limit of {self.max_bytes} bytes")
        # Closing the connection keeps the rest of a huge upload from being read.
        response.headers["connection"] = "close"
        await response(scope, receive, send)


# --------------------------------------------------------------------------- micro-batching

@dataclass(slots=True)
class _Job:
    queries: list[SearchQuery]
    k: int
    options: tuple[tuple[str, str], ...]
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Merge concurrent requests into batched ``retriever.search`` calls, one batch at a time.

    A request that arrives while a search is running waits in the queue; when
    the search ends, everything queued (up to ``max_queries``) that asks for the
    same ``k`` and options goes out as one call. With ``window_s > 0`` the batcher
    also waits up to that long for requests that have been received but not yet
    queued (``in_flight``, counted by :class:`BodyLimitMiddleware`); a lone
    request is never held back, so the window costs nothing at low load.

    Searches run one batch at a time, on the event loop by default: a BM25 search
    holds the GIL, so a worker thread would add GIL hand-offs without adding
    parallelism (measured: about 0.6 ms more CPU per request). ``in_thread``
    suits retrievers that release the GIL (dense encoders on a GPU).
    """

    def __init__(self, search: Callable[..., list[list[Hit]]], *, window_s: float, max_queries: int,
                 in_thread: bool = True) -> None:
        self._search = search
        self._in_thread = in_thread
        self._window_s = window_s
        self._max_queries = max_queries
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None
        self.batches = 0
        self.queries = 0
        self.in_flight = 0  # requests being handled (maintained by the middleware)
        self._unresolved = 0  # submitted jobs not yet answered

    def _ensure_started(self) -> asyncio.Queue[_Job]:
        if self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._loop(self._queue))
        assert self._queue is not None
        return self._queue

    async def submit(self, queries: list[SearchQuery], k: int, options: dict[str, str]) -> list[list[Hit]]:
        """Queue ``queries`` and wait for their hits."""
        queue = self._ensure_started()
        job = _Job(queries, k, tuple(sorted(options.items())), asyncio.get_running_loop().create_future())
        queue.put_nowait(job)
        self._unresolved += 1
        try:
            return await job.future
        finally:
            self._unresolved -= 1

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None

    async def _collect(self, queue: asyncio.Queue[_Job]) -> list[_Job]:
        jobs = [await queue.get()]
        size = len(jobs[0].queries)
        deadline = time.monotonic() + self._window_s
        while size < self._max_queries:
            try:
                job = queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.in_flight <= self._unresolved:
                    break  # the window is over, or no received request is still on its way
                try:
                    job = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
            jobs.append(job)
            size += len(job.queries)
        return jobs

    async def _loop(self, queue: asyncio.Queue[_Job]) -> None:
        while True:
            jobs = await self._collect(queue)
            groups: dict[tuple[int, tuple], list[_Job]] = {}
            for job in jobs:
                groups.setdefault((job.k, job.options), []).append(job)
            for (k, options), group in groups.items():
                live = [job for job in group if not job.future.done()]  # a client may have gone away
                if live:
                    await self._run(live, k, dict(options))

    async def _run(self, jobs: list[_Job], k: int, options: dict[str, str]) -> None:
        merged = [q for job in jobs for q in job.queries]
        try:
            if self._in_thread:
                results = await anyio.to_thread.run_sync(lambda: self._search(merged, k, **options))
            else:
                results = self._search(merged, k, **options)
            if len(results) != len(merged):
                raise RuntimeError(f"retriever returned {len(results)} result lists for {len(merged)} queries")
        except Exception as exc:  # noqa: BLE001 - answered to the requests, never raised in the loop
            if len(jobs) > 1:
                # One request's failure must not fail the others it was batched with.
                for job in jobs:
                    await self._run([job], k, options)
                return
            if not jobs[0].future.done():
                jobs[0].future.set_exception(exc)
            return
        self.batches += 1
        self.queries += len(merged)
        start = 0
        for job in jobs:
            end = start + len(job.queries)
            if not job.future.done():
                job.future.set_result(results[start:end])
            start = end


# --------------------------------------------------------------------------- formatting

def search_r1_contents(hit: Hit) -> str:
    """Search-R1's passage text: the title in double quotes, a newline, then the text."""
    return f'"{hit.title}"\n{hit.text}'


def _hit_json(hit: Hit) -> dict[str, Any]:
    return {"id": hit.doc_id, "lang": hit.lang, "title": hit.title, "text": hit.text,
            "score": float(hit.score), "method": hit.method, "paragraph": hit.paragraph}


def _search_r1_document(hit: Hit) -> dict[str, Any]:
    # ``id`` and ``contents`` are what Search-R1 clients read; title/text/lang ride
    # along (Search-R1's own BM25 server also sends title and text) so clients
    # that know them need not re-parse ``contents``.
    return {"id": hit.doc_id, "contents": search_r1_contents(hit), "title": hit.title, "text": hit.text,
            "lang": hit.lang, "paragraph": hit.paragraph}


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
    known_langs = set(languages)
    count = passage_count(retriever)
    accepted = _accepted_options(retriever.search)
    batcher = MicroBatcher(retriever.search, window_s=settings.batch_window_ms / 1000.0,
                           max_queries=settings.max_batch_queries, in_thread=settings.search_thread)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        await batcher.close()

    app = FastAPI(title="crosearch retrieval server", version=__version__, lifespan=lifespan)
    app.state.retriever = retriever
    app.state.settings = settings
    app.state.batcher = batcher
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, tracker=batcher)

    @app.exception_handler(RequestValidationError)
    async def _on_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, message = describe_errors(exc.errors())
        return _error(status, message)

    @app.exception_handler(RequestError)
    async def _on_request_error(_: Request, exc: RequestError) -> JSONResponse:
        return _error(exc.status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _on_http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _on_crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("retrieval failed")
        return _error(500, f"internal error while searching: {type(exc).__name__}")

    def check_k(k: int | None, name: str) -> int:
        if k is None:
            return min(settings.default_topk, settings.max_topk)
        if not 1 <= k <= settings.max_topk:
            raise RequestError(422, f"{name} must be between 1 and {settings.max_topk}, got {k}")
        return k

    def check_texts(texts: Sequence[str]) -> None:
        if not texts:
            raise RequestError(422, "queries must be a non-empty list")
        if len(texts) > settings.max_queries:
            raise RequestError(413, f"too many queries in one request: {len(texts)} > {settings.max_queries}")
        for i, text in enumerate(texts):
            if not text.strip():
                raise RequestError(422, f"queries.{i}: query text is empty")
            if len(text) > settings.max_query_chars:
                raise RequestError(422, f"queries.{i}: query longer than {settings.max_query_chars} characters")

    def check_lang(value: str, where: str) -> None:
        if value not in known_langs:
            raise RequestError(422, f"{where}: unknown language '{value}'; this index has {', '.join(languages)}")

    async def run(queries: list[SearchQuery], k: int, options: dict[str, str]) -> list[list[Hit]]:
        try:
            return await batcher.submit(queries, k, options)
        except CrosearchError as exc:
            raise RequestError(422, str(exc)) from None

    @app.get("/health")
    async def health() -> JSONResponse:
        """Liveness plus what this server can answer."""
        return JSONResponse({
            "status": "ok", "version": __version__, "languages": languages, "passages": count,
            "protocols": ["crosearch", "search-r1"], "default_topk": settings.default_topk,
            "max_topk": settings.max_topk, "max_queries": settings.max_queries,
            "max_body_bytes": settings.max_body_bytes, "batches": batcher.batches, "queries": batcher.queries,
            "pid": os.getpid(),
        })

    @app.post("/retrieve")
    async def retrieve(request: Request) -> JSONResponse:
        """Search-R1 protocol: every query searches every language (fused)."""
        body = await _parse(request, RetrieveRequest)
        check_texts(body.queries)
        k = check_k(body.topk, "topk")
        results = await run([SearchQuery(text=q) for q in body.queries], k, {})
        if body.return_scores:
            out = [[{"document": _search_r1_document(h), "score": float(h.score)} for h in hits] for hits in results]
        else:
            # Search-R1 answers plain document lists when scores are not asked for.
            out = [[_search_r1_document(h) for h in hits] for hits in results]
        return JSONResponse({"result": out})

    @app.post("/search")
    async def search(request: Request) -> JSONResponse:
        """crosearch protocol: per-query language, languages to search and exclusions."""
        body = await _parse(request, SearchRequest)
        check_texts([q.text for q in body.queries])
        k = check_k(body.k, "k")
        options = {name: value for name in ("method", "fusion") if (value := getattr(body, name)) is not None}
        for name in options:
            if name not in accepted:
                raise RequestError(422, f"this server's retriever does not support choosing '{name}'")
        queries = []
        for i, item in enumerate(body.queries):
            if item.lang is not None:
                check_lang(item.lang, f"queries.{i}.lang")
            if item.search_langs is not None:
                if not item.search_langs:
                    raise RequestError(422, f"queries.{i}.search_langs: give at least one language, or null for all")
                for lang in item.search_langs:
                    check_lang(lang, f"queries.{i}.search_langs")
            queries.append(SearchQuery(text=item.text, lang=item.lang, search_langs=item.search_langs,
                                       exclude=frozenset(item.exclude)))
        results = await run(queries, k, options)
        return JSONResponse({"results": [[_hit_json(h) for h in hits] for hits in results]})

    return app


@contextmanager
def serve_in_background(app: FastAPI, host: str = "127.0.0.1", port: int = 0,
                        startup_timeout: float = 30.0) -> Iterator[str]:
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

