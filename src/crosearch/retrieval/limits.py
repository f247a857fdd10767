"""Request limits of the retrieval server: body size, type and read time, query count and length, k,
passages per request, languages.

Every refusal is answered with a 4xx JSON body ``{"detail": "<message>"}`` naming what was wrong,
so nothing a client sends can take the server down or get a bare stack trace back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crosearch.config import ServerConfig

_M = TypeVar("_M", bound=BaseModel)


class RequestError(Exception):
    """A request the server understood but refuses; answered with ``status`` and ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str) -> JSONResponse:
    """The JSON body every refusal is answered with: ``{"detail": message}``."""
    return JSONResponse({"detail": message}, status_code=status)


async def parse_body(request: Request, model: type[_M]) -> _M:
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


class RequestLimits:
    """The per-request checks of ``settings`` for an index holding ``languages``."""

    def __init__(self, settings: ServerConfig, languages: Sequence[str]) -> None:
        self.settings = settings
        self.languages = sorted(languages)
        self._known = set(languages)

    def k(self, k: int | None, name: str) -> int:
        """The number of hits to return: ``k`` if within bounds, the default when not given."""
        settings = self.settings
        if k is None:
            return min(settings.default_topk, settings.max_topk)
        if not 1 <= k <= settings.max_topk:
            raise RequestError(422, f"{name} must be between 1 and {settings.max_topk}, got {k}")
        return k

    def texts(self, texts: Sequence[str]) -> None:
        settings = self.settings
        if not texts:
            raise RequestError(422, "queries must be a non-empty list")
        if len(texts) > settings.max_queries:
            raise RequestError(413, f"too many queries in one request: {len(texts)} > {settings.max_queries}")
        for i, text in enumerate(texts):
            if not text.strip():
                raise RequestError(422, f"queries.{i}: query text is empty")
            if len(text) > settings.max_query_chars:
                raise RequestError(422, f"queries.{i}: query longer than {settings.max_query_chars} characters")

    def passages(self, queries: int, k: int, name: str) -> None:
        """Refuse a request whose answer would hold more than ``max_passages`` passages (queries x k)."""
        total = queries * k
        if total > self.settings.max_passages:
            raise RequestError(
                413,
                f"request asks for {queries} queries x {name} {k} = {total} passages, more than the server's "
                f"limit of {self.settings.max_passages} (server.max_passages); send fewer queries per request",
            )

    def lang(self, value: str, where: str) -> None:
        if value not in self._known:
            raise RequestError(422, f"{where}: unknown language '{value}'; this index has {', '.join(self.languages)}")

    def translations(self, translations: dict[str, str], where: str) -> None:
        """A query's translations: languages of the index, each a non-empty text within the query length limit."""
        for lang, text in translations.items():
            self.lang(lang, where)
            if not text.strip():
                raise RequestError(422, f"{where}.{lang}: translation is empty")
            if len(text) > self.settings.max_query_chars:
                raise RequestError(
                    422, f"{where}.{lang}: translation longer than {self.settings.max_query_chars} characters"
                )


class InFlightCounter(Protocol):
    """Whatever wants to know how many requests are past the body check (the micro-batcher)."""

    in_flight: int


class BodyLimitMiddleware:
    """Refuse oversized, slow or non-JSON request bodies before anything parses them.

    The content type must be JSON: a browser page can send a cross-site "simple" POST
    (text/plain, form data, or no type) without asking the server first, never
    ``application/json``. ``Content-Length`` is checked first (cheap rejection); the body
    is then read with a running count, so a chunked upload or a lying header cannot push
    more than ``max_bytes`` into memory either, and within ``timeout_s`` in all, so a
    half-sent body cannot hold a connection open.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, tracker: InFlightCounter | None = None, timeout_s: float = 10.0
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.tracker = tracker
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if ctype != b"application/json" and not ctype.endswith(b"+json"):
            got = repr(ctype.decode("latin-1")) if ctype else "none"
            await self._refuse(415, f"content type must be application/json, got {got}", scope, receive, send)
            return
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await error_response(400, "invalid Content-Length header")(scope, receive, send)
                return
            if size > self.max_bytes:
                await self._too_big(scope, receive, send)
                return
        chunks: list[bytes] = []
        total = 0
        more = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        while more:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                late = f"request body not received within {self.timeout_s:g} s (server.body_timeout_s)"
                await self._refuse(408, late, scope, receive, send)
                return
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await self._too_big(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
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

    async def _refuse(self, status: int, message: str, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(status, message)
        # Closing the connection keeps the rest of the body (if any ever comes) from being read.
        response.headers["connection"] = "close"
        await response(scope, receive, send)

    async def _too_big(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._refuse(
            413, f"request body larger than the server's limit of {self.max_bytes} bytes", scope, receive, send
        )
