"""Progress bars on stderr, shared by every long loop (rollouts, index builds, evaluation, translation).

Each bar can be switched off with the flag its caller already takes (``progress=False``, ``-q``):
a disabled bar keeps the same calls and does nothing, so loops never branch on it. Bars go to stderr
so that they never mix with results a command prints on stdout.

rich is imported only when a bar is shown: importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sized
from typing import Any, TypeVar

T = TypeVar("T")


class Task:
    """One bar of a :class:`Bars` display (does nothing when the display is disabled)."""

    def __init__(self, progress: Any = None, task_id: Any = None) -> None:
        self._progress = progress
        self._id = task_id

    def advance(self, n: int = 1) -> None:
        if self._progress is not None and n:
            self._progress.advance(self._id, n)

    def describe(self, description: str) -> None:
        """Change the text in front of the bar (e.g. the current turn)."""
        if self._progress is not None:
            self._progress.update(self._id, description=description)


class Bars:
    """A display of one or more bars, e.g. one per language and kind during an index build.

    ``transient`` bars disappear when the display closes (for loops nested in a command's own output);
    ``console`` is a rich console to share with the caller's messages (default: a new one on stderr).
    """

    def __init__(self, *, enabled: bool = True, transient: bool = False, console: Any = None) -> None:
        self.enabled = enabled
        self.transient = transient
        self._console = console
        self._progress: Any = None

    def __enter__(self) -> Bars:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            console = self._console if self._console is not None else Console(stderr=True)
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=self.transient,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None

    def add(self, description: str, total: int | None) -> Task:
        """A new bar counting up to ``total`` (``None``: unknown)."""
        if self._progress is None:
            return Task()
        return Task(self._progress, self._progress.add_task(description, total=total))


@contextlib.contextmanager
def bar(
    description: str, total: int | None, *, enabled: bool = True, transient: bool = False, console: Any = None
) -> Iterator[Task]:
    """A display with a single bar; advance it with the :class:`Task` it yields."""
    with Bars(enabled=enabled, transient=transient, console=console) as bars:
        yield bars.add(description, total)


def track(
    items: Iterable[T],
    description: str,
    *,
    total: int | None = None,
    enabled: bool = True,
    transient: bool = False,
    console: Any = None,
) -> Iterator[T]:
    """Yield ``items``, advancing a bar after each one (``total`` defaults to ``len(items)``)."""
    if not enabled:
        yield from items
        return
    if total is None and isinstance(items, Sized):
        total = len(items)
    with bar(description, total, transient=transient, console=console) as task:
        for item in items:
            yield item
            task.advance()
