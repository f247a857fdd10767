"""HTTP client that makes a remote retrieval server look like a local :class:`Retriever`.

Two protocols:

- ``"crosearch"`` talks to ``crosearch serve`` via ``POST /search`` and keeps
  everything a local index gives (languages, exclusions, paragraph ids).
- ``"search-r1"`` talks to any Search-R1 retrieval server via ``POST /retrieve``.
  That protocol has no languages, exclusions or translations: every query searches the whole
  collection, excluded ids are filtered out client-side (asking for ``k`` plus
  the number of excluded ids, so ``k`` hits still come back), and title/text
  are parsed back out of Search-R1's ``"Title"\\ntext`` ``contents``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import httpx

from crosearch.errors import CrosearchError
from crosearch.types import Hit, SearchQuery

Protocol = Literal["crosearch", "search-r1"]

#: Language recorded on hits from servers that do not say (BCP 47 "undetermined").
UNKNOWN_LANG = "und"


def parse_contents(contents: str) -> tuple[str, str]:
    """Split Search-R1 ``contents`` into ``(title, text)``.

    The first line is the title (Search-R1 wraps it in double quotes); a
    single-line document has no title.
    """
    head, sep, rest = contents.partition("\n")
    if not sep:
        return "", contents
    return head.strip().strip('"'), rest


class HttpRetriever:
    """A :class:`~crosearch.retrieval.base.Retriever` backed by a retrieval server over HTTP."""

    def __init__(
        self,
        url: str,
        timeout: float = 30.0,
        *,
        protocol: Protocol = "crosearch",
        method: str | None = None,
        fusion: str | None = None,
        batch_size: int | None = None,
        retries: int = 2,
        client: httpx.Client | None = None,
    ) -> None:
        if protocol not in ("crosearch", "search-r1"):
            raise CrosearchError(f"unknown retrieval protocol '{protocol}'; use 'crosearch' or 'search-r1'")
        if not url.startswith(("http://", "https://")):
            raise CrosearchError(f"retrieval URL must start with http:// or https://, got '{url}'")
        self.url = url.rstrip("/")
        self.protocol = protocol
        self.method = method
        self.fusion = fusion
        self._batch_size = batch_size
        self._health: dict[str, Any] | None = None
        # Retries cover connection setup only (refused/reset before a request
        # was sent), never a request the server may already have processed.
        self._client = client or httpx.Client(timeout=timeout, transport=httpx.HTTPTransport(retries=retries))
        self._owns_client = client is None

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> HttpRetriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, payload: Any = None) -> Any:
        url = self.url + path
        try:
            response = self._client.request(method, url, json=payload)
        except httpx.TimeoutException:
            raise CrosearchError(f"retrieval server at {self.url} did not answer {path} in time") from None
        except httpx.TransportError as exc:
            raise CrosearchError(
                f"cannot reach retrieval server at {self.url} ({type(exc).__name__}: {exc}); "
                "is `crosearch serve` running?"
            ) from None
        if response.status_code >= 400:
            raise CrosearchError(f"retrieval server {url} answered {response.status_code}: {_error_message(response)}")
        try:
            return response.json()
        except ValueError:
            raise CrosearchError(f"retrieval server {url} answered with something that is not JSON") from None

    def health(self) -> dict[str, Any]:
        """The server's ``/health`` answer (cached; ``{}`` for Search-R1 servers, which have none)."""
        if self._health is None:
            if self.protocol == "search-r1":
                try:
                    self._health = self._request("GET", "/health")
                except CrosearchError:
                    self._health = {}
            else:
                self._health = self._request("GET", "/health")
            if not isinstance(self._health, dict):
                self._health = {}
        return self._health

    @property
    def languages(self) -> list[str]:
        """Languages the server searches (empty when a Search-R1 server does not say)."""
        langs = self.health().get("languages") or []
        return [str(lang) for lang in langs]

    def _chunk(self, k: int) -> int:
        if self._batch_size:
            return self._batch_size
        health = self.health() if self.protocol == "crosearch" else {}
        limit = health.get("max_queries")
        step = int(limit) if isinstance(limit, int) and limit > 0 else 64
        # The server also caps queries x k per request.
        passages = health.get("max_passages")
        if isinstance(passages, int) and passages > 0:
            step = max(1, min(step, passages // k))
        return step

    # ------------------------------------------------------------------ search

    def search(self, queries: Sequence[SearchQuery], k: int) -> list[list[Hit]]:
        """Search each query on the server; at most ``k`` hits per query, best first."""
        if k < 1:
            raise CrosearchError(f"k must be at least 1, got {k}")
        queries = list(queries)
        out: list[list[Hit]] = []
        step = self._chunk(k)
        for start in range(0, len(queries), step):
            chunk = queries[start : start + step]
            if self.protocol == "crosearch":
                out.extend(self._search_crosearch(chunk, k))
            else:
                out.extend(self._search_r1(chunk, k))
        return out

    def _search_crosearch(self, queries: list[SearchQuery], k: int) -> list[list[Hit]]:
        payload: dict[str, Any] = {
            "k": k,
            "queries": [
                {
                    "text": q.text,
                    "lang": q.lang,
                    "search_langs": q.search_langs,
                    "exclude": sorted(q.exclude),
                    # Sent only when given, so that servers predating the field keep answering.
                    **({"translations": q.translations} if q.translations else {}),
                }
                for q in queries
            ],
        }
        if self.method is not None:
            payload["method"] = self.method
        if self.fusion is not None:
            payload["fusion"] = self.fusion
        data = self._request("POST", "/search", payload)
        results = _field(data, "results", list, "/search")
        if len(results) != len(queries):
            raise CrosearchError(f"retrieval server answered {len(results)} result lists for {len(queries)} queries")
        try:
            return [
                [
                    Hit(
                        doc_id=str(h["id"]),
                        lang=str(h["lang"]),
                        title=str(h.get("title") or ""),
                        text=str(h["text"]),
                        score=float(h["score"]),
                        method=str(h.get("method") or "bm25"),
                        paragraph=h.get("paragraph"),
                    )
                    for h in hits
                ]
                for hits in results
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise CrosearchError(f"retrieval server answered a malformed hit ({type(exc).__name__}: {exc})") from None

    def _search_r1(self, queries: list[SearchQuery], k: int) -> list[list[Hit]]:
        # The protocol cannot exclude, so over-fetch by the largest exclusion
        # list and filter here; every query in a request shares one topk.
        extra = max((len(q.exclude) for q in queries), default=0)
        payload = {"queries": [q.text for q in queries], "topk": k + extra, "return_scores": True}
        data = self._request("POST", "/retrieve", payload)
        results = _field(data, "result", list, "/retrieve")
        if len(results) != len(queries):
            raise CrosearchError(f"retrieval server answered {len(results)} result lists for {len(queries)} queries")
        out = []
        for query, items in zip(queries, results):
            hits = []
            for rank, item in enumerate(items or []):
                hit = _search_r1_hit(item, rank)
                if hit.doc_id in query.exclude:
                    continue
                hits.append(hit)
                if len(hits) == k:
                    break
            out.append(hits)
        return out


def _search_r1_hit(item: Any, rank: int) -> Hit:
    # With return_scores the item is {"document": doc, "score": s}; without, the doc itself.
    if isinstance(item, dict) and "document" in item:
        doc, score = item["document"], item.get("score")
    else:
        doc, score = item, None
    if not isinstance(doc, dict):
        raise CrosearchError(f"retrieval server answered a malformed document: {str(doc)[:80]!r}")
    if "title" in doc and "text" in doc:
        title, text = str(doc["title"] or ""), str(doc["text"] or "")
    elif "contents" in doc:
        title, text = parse_contents(str(doc["contents"]))
    else:
        raise CrosearchError("retrieval server answered a document without 'contents'")
    doc_id = doc.get("id", doc.get("doc_id"))
    # Search-R1's BM25 backend sends no id; the text is the only stable handle then.
    doc_id = str(doc_id) if doc_id is not None else f"{title}\n{text}"
    return Hit(
        doc_id=doc_id,
        lang=str(doc.get("lang") or UNKNOWN_LANG),
        title=title,
        text=text,
        score=float(score) if score is not None else -float(rank),
        method="search-r1",
        paragraph=doc.get("paragraph"),
    )


def _field(data: Any, name: str, kind: type, path: str) -> Any:
    if not isinstance(data, dict) or not isinstance(data.get(name), kind):
        raise CrosearchError(f"retrieval server's {path} answer has no '{name}' list")
    return data[name]


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        return detail if isinstance(detail, str) else str(detail)[:300]
    return str(body)[:300]
