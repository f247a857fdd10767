"""Passage storage for an index: reading a collection file, and a per-language store on disk.

The store keeps one JSONL file per language plus the byte offset of every line,
so a search fetches only the passages it returns (by memory-mapping the file)
instead of parsing millions of lines at start-up. Only the ids are read eagerly,
because per-query ``exclude`` lists name passages by id.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from crosearch.errors import CrosearchError, DataFormatError
from crosearch.io import atomic_open, atomic_write_json, dumps_line, read_json
from crosearch.types import Passage

PASSAGES = "passages.jsonl"
OFFSETS = "offsets.npy"
IDS = "ids.json"

_COLLECTION_NAMES = ("collection.jsonl", "collection.jsonl.gz", "passages.jsonl", "passages.jsonl.gz")


def resolve_collection_path(path: str | Path) -> Path:
    """A collection JSONL file, or a directory holding ``collection.jsonl[.gz]`` (a benchmark directory)."""
    path = Path(path)
    if path.is_dir():
        for name in _COLLECTION_NAMES:
            if (path / name).is_file():
                return path / name
        raise CrosearchError(f"{path}: no collection file found (looked for {', '.join(_COLLECTION_NAMES)})")
    if not path.exists():
        raise CrosearchError(f"collection not found: {path}")
    return path


def read_collection(path: str | Path) -> list[Passage]:
    """Read passages from a collection JSONL file or a benchmark directory (see :func:`resolve_collection_path`)."""
    from crosearch.data.formats import read_corpus

    file = resolve_collection_path(path)
    passages = read_corpus(file)  # checks each language code (it names a directory of the index)
    if not passages:
        raise DataFormatError(file, "the collection holds no passages")
    return passages


def train_paragraphs(path: str | Path) -> set[str] | None:
    """Paragraph ids of the train split when ``path`` is a benchmark directory, else None."""
    path = Path(path)
    if not (path.is_dir() and (path / "meta.json").exists()):
        return None
    from crosearch.data.benchmark import load_benchmark

    return {q.paragraph for q in load_benchmark(path).train if q.paragraph}


def group_by_language(passages: Iterable[Passage]) -> dict[str, list[Passage]]:
    """Passages per language, in collection order; languages sorted for stable builds."""
    groups: dict[str, list[Passage]] = {}
    for p in passages:
        groups.setdefault(p.lang, []).append(p)
    return dict(sorted(groups.items()))


def _record(p: Passage) -> dict:
    return {"id": p.id, "title": p.title, "text": p.text, "article": p.article, "paragraph": p.paragraph}


def passages_hash(passages: Iterable[Passage]) -> str:
    """Content hash of passages (order-sensitive: index positions depend on order)."""
    digest = hashlib.sha256()
    for p in passages:
        digest.update(dumps_line([p.lang, _record(p)]).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def write_store(directory: Path, passages: list[Passage]) -> None:
    """Write one language's passages (JSONL + line offsets + ids)."""
    directory.mkdir(parents=True, exist_ok=True)
    offsets = np.zeros(len(passages) + 1, dtype=np.int64)
    position = 0
    with atomic_open(directory / PASSAGES, "wb") as handle:
        for i, p in enumerate(passages):
            data = (dumps_line(_record(p)) + "\n").encode("utf-8")
            handle.write(data)
            position += len(data)
            offsets[i + 1] = position
    with atomic_open(directory / OFFSETS, "wb") as handle:
        np.save(handle, offsets)
    atomic_write_json(directory / IDS, [p.id for p in passages])


class LanguageStore:
    """Read access to one language's stored passages by position."""

    def __init__(self, directory: Path, lang: str) -> None:
        self.lang = lang
        self.directory = directory
        try:
            self.ids: list[str] = read_json(directory / IDS, what="passage ids")
            self._offsets = np.load(directory / OFFSETS, mmap_mode="r")
        except (OSError, ValueError, DataFormatError) as exc:
            raise CrosearchError(f"{directory}: passage store is unreadable ({exc}); rebuild the index") from None
        if len(self._offsets) != len(self.ids) + 1:
            raise CrosearchError(f"{directory}: passage store is inconsistent (ids vs offsets); rebuild the index")
        self.position = {pid: i for i, pid in enumerate(self.ids)}
        self._file = open(directory / PASSAGES, "rb")
        size = os.fstat(self._file.fileno()).st_size
        self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if size else None

    def __len__(self) -> int:
        return len(self.ids)

    def get(self, index: int) -> Passage:
        """The passage at ``index`` (its position in this language's indexes)."""
        assert self._map is not None
        start, end = int(self._offsets[index]), int(self._offsets[index + 1])
        rec = json.loads(self._map[start:end])
        return Passage(
            id=rec["id"],
            lang=self.lang,
            title=rec["title"],
            text=rec["text"],
            article=rec.get("article"),
            paragraph=rec.get("paragraph"),
        )

    def __iter__(self) -> Iterator[Passage]:
        for i in range(len(self)):
            yield self.get(i)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
        self._file.close()
