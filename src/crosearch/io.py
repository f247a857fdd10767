"""File helpers shared by every component: atomic writes and checked JSON/JSONL reading.

Outputs are written to a temporary file (or directory) next to the target and
renamed into place, so an interrupted run never leaves a half-written file or
directory behind. Readers turn every decoding problem into a
:class:`~crosearch.errors.DataFormatError` naming the file and line.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, TextIO

from crosearch.errors import CrosearchError, DataFormatError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        kwargs: dict[str, Any] = {} if "b" in mode else {"encoding": encoding, "newline": "\n"}
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def temp_dir_prefix(final: str | Path) -> str:
    """The name prefix of :func:`atomic_dir`'s temporary siblings of ``final`` (to find those of killed writes)."""
    return f".{Path(final).name}.tmp-"


def remove_stale_temp_dirs(final: str | Path) -> None:
    """Remove temporary siblings of ``final`` left by writes that were killed.

    Only safe while no other process may be writing ``final`` (the caller holds a lock).
    """
    final = Path(final)
    for stale in final.parent.glob(f"{temp_dir_prefix(final)}*"):
        shutil.rmtree(stale, ignore_errors=True)


def replace_dir(source: Path, final: Path) -> None:
    """Rename the finished directory ``source`` to ``final``; a previous ``final`` is moved aside, then removed.

    ``final`` names either the old or the new directory at every moment it exists, never half of one.
    """
    if not final.exists():
        os.rename(source, final)
        return
    # A fresh directory to move the old one into: its unique name never collides with a concurrent
    # swap, and its prefix lets remove_stale_temp_dirs find it if we are killed before removing it.
    aside = Path(tempfile.mkdtemp(prefix=f"{temp_dir_prefix(final)}old-", dir=final.parent))
    os.rename(final, aside / "old")
    try:
        os.rename(source, final)
    except BaseException:
        os.rename(aside / "old", final)
        shutil.rmtree(aside, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(final: str | Path, *, staging: str | Path | None = None) -> Iterator[Path]:
    """Yield a temporary sibling directory of ``final`` to write into; on success it replaces ``final``.

    On an exception the temporary directory is removed and ``final`` keeps its old content. A
    ``staging`` directory given by the caller is instead kept on failure, with what was written to
    it, so that a rerun can resume from it (index builds do).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if staging is None:
        tmp = Path(tempfile.mkdtemp(prefix=temp_dir_prefix(final), dir=final.parent))
        # mkdtemp makes it private; the result should be an ordinary directory.
        os.chmod(tmp, 0o777 & ~_umask())
    else:
        tmp = Path(staging)
        tmp.mkdir(parents=True, exist_ok=True)
    try:
        yield tmp
        replace_dir(tmp, final)
    except BaseException:
        if staging is None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def pid_lock(path: str | Path, *, what: str) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if needed) for the block; it records our pid.

    A second holder is refused at once with a CrosearchError naming ``what`` and the holder's pid. The
    lock is an advisory ``flock``, which the kernel drops when its holder exits however it dies, so a
    lock file left by a killed process (its dead pid still inside) is simply taken over. The file itself
    stays: removing it would let a process that opened it just before take a lock nobody else sees.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip() or "unknown"
            raise CrosearchError(
                f"{what} is already running (pid {holder}, lock file {path}); wait for it to finish"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


def lock_holder(path: str | Path) -> str | None:
    """The pid recorded in a :func:`pid_lock` file while a live process holds it; None when it is free."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 32, 0).decode("ascii", errors="replace").strip() or "unknown"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def describe_files(directory: str | Path, *, skip: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """``{relative path: {size, sha256}}`` of every file under ``directory`` but those named in ``skip``."""
    directory = Path(directory)
    skipped = set(skip)
    out = {}
    for path in sorted(directory.rglob("*")):
        name = path.relative_to(directory).as_posix()
        if path.is_file() and name not in skipped:
            out[name] = {"size": path.stat().st_size, "sha256": file_sha256(path)}
    return out


def check_files(root: str | Path, files: dict[str, Any], *, hashes: bool = False) -> list[str]:
    """Problems of the files listed by :func:`describe_files` under ``root``: missing, other size, other content.

    Sizes cost a ``stat`` per file (cheap enough for every start-up and catching truncation);
    ``hashes`` reads everything.
    """
    problems = []
    for name, info in files.items():
        path = Path(root) / name
        try:
            size = path.stat().st_size
        except OSError:
            problems.append(f"{name}: missing")
            continue
        if size != info.get("size"):
            problems.append(f"{name}: {size} bytes, the manifest says {info.get('size')} (truncated or modified)")
        elif hashes and file_sha256(path) != info.get("sha256"):
            problems.append(f"{name}: content differs from the manifest's SHA-256 (corrupted or modified)")
    return problems


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path) as handle:
        handle.write(text)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True) + "\n")


def dumps_line(record: Any) -> str:
    """One canonical JSON line: fixed key order and no ASCII escaping, so outputs are byte-stable."""
    return json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def write_jsonl(path: str | Path, records: Iterable[Any]) -> int:
    """Write records atomically as JSON lines; returns how many were written."""
    count = 0
    with atomic_open(path) as handle:
        for record in records:
            handle.write(dumps_line(record) + "\n")
            count += 1
    return count


def open_text(path: str | Path) -> TextIO:
    """Open a text file for reading, transparently un-gzipping ``*.gz``."""
    path = Path(path)
    if not path.exists():
        raise DataFormatError(path, "file not found")
    if path.is_dir():
        raise DataFormatError(path, "is a directory, expected a file")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


@contextlib.contextmanager
def _decoding(path: str | Path, what: str | None) -> Iterator[None]:
    """Turn low-level read failures (gzip, UTF-8, permissions) into a DataFormatError on ``path``."""
    label = f" ({what})" if what else ""
    try:
        yield
    except (gzip.BadGzipFile, zlib.error, EOFError) as exc:
        raise DataFormatError(path, f"not a valid gzip file{label} ({exc})") from None
    except UnicodeDecodeError as exc:
        raise DataFormatError(path, f"not UTF-8 text{label} ({exc.reason} at byte {exc.start})") from None
    except IsADirectoryError:
        raise DataFormatError(path, "is a directory, expected a file") from None
    except PermissionError:
        raise DataFormatError(path, f"cannot be read{label}: permission denied") from None


def read_jsonl(path: str | Path, *, what: str | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-empty line; malformed lines raise with their number."""
    label = f" ({what})" if what else ""
    with _decoding(path, what), open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(
                    path, f"invalid JSON{label} ({exc.msg} at column {exc.colno})", line=number
                ) from None
            if not isinstance(obj, dict):
                raise DataFormatError(path, f"expected a JSON object{label}, got {type(obj).__name__}", line=number)
            yield number, obj


def read_json(path: str | Path, *, what: str | None = None) -> Any:
    """The JSON value in ``path`` (``*.gz`` un-gzipped); any problem is a DataFormatError naming file and line.

    ``what`` says what the file should be (``"index manifest"``), to word the error.
    """
    label = f" ({what})" if what else ""
    with _decoding(path, what), open_text(path) as handle:
        try:
            return json.load(handle)
        except json.JSONDecodeError as exc:
            raise DataFormatError(
                path, f"invalid JSON{label} ({exc.msg} at column {exc.colno})", line=exc.lineno
            ) from None
