"""What reaches the terminal: crosearch's own output there, library chatter in a log file.

By default a command shows only its own messages, rich progress and results. Everything the
libraries underneath write for developers goes to ``crosearch.log`` instead:

- Python warnings (transformers' ``FutureWarning``\\ s, TRL's experimental notices, ...), through
  :func:`logging.captureWarnings`;
- the loggers of transformers, datasets, TRL, httpx and the rest: transformers and datasets install
  their own stderr handlers when they are imported, so those are taken off right after the import
  (:class:`_AfterImport`) and their records propagate to the root logger, which writes the file;
- third-party progress bars (transformers' "Loading weights", the Hub's downloads, datasets' maps)
  are switched off through the libraries' own environment switches, read when they are imported;
  crosearch's rich bars and status lines show the same work;
- a crash's traceback; the terminal gets one line pointing to it.

Commands that write into an output directory call :func:`log_to` with ``<out>/crosearch.log``;
until then (and for commands without one) records wait in memory and end up in
``default_log_path()`` (the user log directory). ``crosearch --verbose`` leaves everything as the
libraries set it up, so it all shows on the terminal as it would without crosearch's routing.

Shared by all layers: it imports nothing from them, and neither torch nor transformers.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.abc
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

LOG_NAME = "crosearch.log"
# Libraries that attach a stderr handler to their own root logger when imported: module -> logger name.
_LIBRARY_LOGGING = {"transformers.utils.logging": "transformers", "datasets.utils.logging": "datasets"}
# Their switches for progress bars; read at import time, so they must be set before the import.
_PROGRESS_SWITCHES = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def default_log_path() -> Path:
    """Where commands without an output directory log: ``$CROSEARCH_LOG`` or the user log directory."""
    override = os.environ.get("CROSEARCH_LOG")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_log_dir("crosearch")) / LOG_NAME


class _DeferredFileHandler(logging.Handler):
    """Keeps records in memory until the log file is known, then appends them and every later one to it.

    The file is opened only when there is something to write, so a quiet command leaves no empty log.
    """

    def __init__(self, header: str) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter(_FORMAT))
        self.header = header
        self.path: Path | None = None
        self.pending: list[str] = []
        self.records = 0
        self.warnings = 0
        self._stream: Any = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # a library's malformed record must not take the command down
            self.handleError(record)
            return
        self.records += 1
        self.warnings += record.levelno >= logging.WARNING
        if self.path is None:
            self.pending.append(text)
        else:
            self._write(text)

    def _write(self, text: str) -> None:
        if self._stream is None:
            assert self.path is not None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._stream = self.path.open("a", encoding="utf-8")
            self._stream.write(self.header + "\n")
        self._stream.write(text + "\n")
        self._stream.flush()

    def move_to(self, path: Path) -> None:
        """Write to ``path`` from now on, starting with what waited in memory (the file is appended to)."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self.path = path
        pending, self.pending = self.pending, []
        for text in pending:
            self._write(text)

    def write_raw(self, text: str) -> None:
        """Append text that is not a log record (a traceback)."""
        if self.path is None:
            self.move_to(default_log_path())
        self._write(text.rstrip("\n"))

    def close(self) -> None:
        if self.pending:
            self.move_to(self.path or default_log_path())
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        super().close()


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs a function right after a named module has been imported (the libraries' logging set-up)."""

    def __init__(self, hooks: dict[str, Callable[[Any], None]]) -> None:
        self.hooks = hooks

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        hook = self.hooks.get(name)
        if hook is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        def exec_module(module: Any) -> None:
            run(module)
            hook(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _quiet_library(logger_name: str, undo: list[Callable[[], object]]) -> Callable[[Any], None]:
    """Takes a library's own stderr handler off its root logger; its records then reach the log file."""

    def hook(module: Any) -> None:
        configure = getattr(module, "_configure_library_root_logger", None)
        if configure is not None and logger_name == "transformers":
            configure()  # now, so that its lazy first call later does not add the handler back
        logger = logging.getLogger(logger_name)
        removed = [(i, h) for i, h in enumerate(logger.handlers) if type(h) is logging.StreamHandler]
        propagate = logger.propagate
        for _, handler in removed:
            logger.removeHandler(handler)
        logger.propagate = True

        def restore() -> None:
            # Back in their places: handlers others added meanwhile (a test's capture) keep theirs.
            for position, handler in removed:
                if handler not in logger.handlers:
                    logger.handlers.insert(min(position, len(logger.handlers)), handler)
            logger.propagate = propagate

        undo.append(restore)

    return hook


class Routing:
    """The routing in force for one command; :meth:`close` undoes it (tests run commands in one process)."""

    def __init__(self, verbose: bool, command: str) -> None:
        self.verbose = verbose
        self.handler = _DeferredFileHandler(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} crosearch {command}")
        self._undo: list[Callable[[], object]] = []

    def install(self) -> None:
        root = logging.getLogger()
        root.addHandler(self.handler)
        self._undo.append(lambda: root.removeHandler(self.handler))
        if self.verbose:
            return
        old_level = root.level
        root.setLevel(logging.INFO)
        self._undo.append(lambda: root.setLevel(old_level))
        # crosearch's own warnings are for the user: they keep a line on the terminal as well.
        own = logging.getLogger("crosearch")
        terminal = logging.StreamHandler(sys.stderr)
        terminal.setLevel(logging.WARNING)
        terminal.setFormatter(logging.Formatter("warning: %(message)s"))
        own.addHandler(terminal)
        self._undo.append(lambda: own.removeHandler(terminal))
        logging.captureWarnings(True)
        self._undo.append(lambda: logging.captureWarnings(False))
        for name, value in _PROGRESS_SWITCHES.items():
            if name not in os.environ:
                os.environ[name] = value
                self._undo.append(functools.partial(os.environ.pop, name, None))
        hooks = {module: _quiet_library(logger, self._undo) for module, logger in _LIBRARY_LOGGING.items()}
        for module, hook in hooks.items():
            if module in sys.modules:  # imported before the command started (tests, an embedding program)
                hook(sys.modules[module])
        finder = _AfterImport(hooks)
        sys.meta_path.insert(0, finder)
        self._undo.append(lambda: sys.meta_path.remove(finder) if finder in sys.meta_path else None)

    def close(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo = []
        self.handler.close()


_current: Routing | None = None
# The log of the last command, kept after it closed: a crash is reported after the command's context is gone.
_last_log: Path | None = None
_last_verbose = False


def route(*, verbose: bool = False, command: str = "") -> Routing:
    """Route library output for the command about to run (replacing any earlier routing)."""
    global _current
    if _current is not None:
        _current.close()
    _current = Routing(verbose, command)
    _current.install()
    return _current


def finish() -> None:
    """Undo the routing, writing records still in memory to the log file."""
    global _current, _last_log, _last_verbose
    if _current is None:
        return
    handler = _current.handler
    _current.close()
    _last_log, _last_verbose = handler.path, _current.verbose
    _current = None


def is_verbose() -> bool:
    """Whether the user asked to see everything (``--verbose``); no routing counts as verbose."""
    return _current is None or _current.verbose


def shows_tracebacks() -> bool:
    """Whether a crash should print its traceback on the terminal: the running or last command was verbose."""
    return _current.verbose if _current is not None else _last_verbose


def log_to(path: str | Path) -> Path:
    """Send this command's log to ``path`` (``<output dir>/crosearch.log``), with what was logged so far."""
    target = Path(path)
    if _current is not None:
        _current.handler.move_to(target)
    return target


def log_path() -> Path | None:
    """The log file of the command running now (or of the last one), if it has one yet."""
    if _current is not None:
        return _current.handler.path
    return _last_log


def record_crash(exc: BaseException) -> Path:
    """Append the traceback of an unexpected exception to the log; returns the file it went to."""
    text = f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} crash\n" + "".join(traceback.format_exception(exc))
    if _current is not None:
        _current.handler.write_raw(text)
        return _current.handler.path or default_log_path()
    target = _last_log or default_log_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a", encoding="utf-8") as handle:
        handle.write(text)
    return target


def routed_warnings() -> int:
    """Warnings (and worse) the running command sent to its log so far."""
    return 0 if _current is None else _current.handler.warnings


@contextlib.contextmanager
def routed(*, verbose: bool = False, command: str = "") -> Iterator[Routing]:
    """:func:`route` for the duration of a block (for programs that call crosearch as a library)."""
    routing = route(verbose=verbose, command=command)
    try:
        yield routing
    finally:
        finish()
