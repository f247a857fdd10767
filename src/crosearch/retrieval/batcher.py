"""Micro-batching for the retrieval server: concurrent requests become one batched ``search`` call.

Retrieval is CPU-bound and batched search is much cheaper per query than one call per request,
so requests that arrive while a search runs are queued and answered together.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from crosearch.types import Hit, SearchQuery


@dataclass(slots=True)
class _Job:
    queries: list[SearchQuery]
    k: int
    options: tuple[tuple[str, str], ...]
    future: asyncio.Future = field(repr=False)
    in_thread: bool = False


class MicroBatcher:
    """Merge concurrent requests into batched ``retriever.search`` calls, one batch at a time.

    A request that arrives while a search is running waits in the queue; when
    the search ends, everything queued (up to ``max_queries``) that asks for the
    same ``k`` and options goes out as one call. With ``window_s > 0`` the batcher
    also waits up to that long for requests that have been received but not yet
    queued (``in_flight``, counted by :class:`~crosearch.retrieval.limits.BodyLimitMiddleware`); a lone
    request is never held back, so the window costs nothing at low load.

    Searches run one batch at a time, on the event loop by default: a BM25 search
    holds the GIL, so a worker thread would add GIL hand-offs without adding
    parallelism (measured: about 0.6 ms more CPU per request). ``in_thread``
    suits retrievers that release the GIL (dense encoders on a GPU). A job submitted
    with ``in_thread=True`` (a slice of a large request) runs its batch on a worker
    thread whatever the default, so the event loop keeps answering (``/health``, small
    requests queueing up) while it searches; the interpreter hands the GIL back to the
    loop every few milliseconds. Batches still run one at a time, so the retriever is
    never searched from two threads at once.
    """

    def __init__(
        self, search: Callable[..., list[list[Hit]]], *, window_s: float, max_queries: int, in_thread: bool = True
    ) -> None:
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

    async def submit(
        self, queries: list[SearchQuery], k: int, options: dict[str, str], *, in_thread: bool = False
    ) -> list[list[Hit]]:
        """Queue ``queries`` and wait for their hits (searched on a worker thread if ``in_thread``)."""
        queue = self._ensure_started()
        job = _Job(
            queries, k, tuple(sorted(options.items())), asyncio.get_running_loop().create_future(), in_thread=in_thread
        )
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
            if self._in_thread or any(job.in_thread for job in jobs):
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
