"""The one retrieval interface used by every consumer (agent, evaluation, training, server).

A local index and a remote server (HTTP client) both implement :class:`Retriever`,
so anything that takes a retriever takes either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from crosearch.types import Hit, SearchQuery


@runtime_checkable
class Retriever(Protocol):
    """Batch-first search.

    ``search`` returns, for each query, at most ``k`` hits best first, never a
    passage listed in that query's ``exclude`` set, searching only the
    query's ``search_langs`` (all languages when ``None``).
    """

    def search(self, queries: Sequence[SearchQuery], k: int) -> list[list[Hit]]: ...

    @property
    def languages(self) -> list[str]:
        """Languages this retriever can search."""
        ...
