"""Building an index directory, verifying it, and searching it locally (:class:`LocalRetriever`).

Layout of an index directory::

    manifest.json        written last: an index without it never loads
    store/<lang>/        passages (JSONL + offsets + ids)      + manifest.json
    bm25/<lang>/         bm25s arrays, vocabulary, parameters  + manifest.json
    dense/<lang>/        FAISS index + embeddings (only with a dense model) + manifest.json
    align/               alignment maps fitted on a benchmark's train split (dense, optional)
    embedding-cache/     passage embeddings by content (see crosearch.retrieval.encoders)

Every ``<kind>/<lang>`` unit is built in a temporary directory, gets its own
manifest last and is renamed into place, all inside a staging directory
``.<name>.partial`` next to the target. Only when every unit is complete is
the top-level manifest written and the staging directory renamed over the
target. A killed build therefore leaves the previous index (or nothing) in
place, and rerunning resumes: units whose manifest matches the passages and
settings (in the staging directory or in the previous index) are kept, only
the missing ones are built.

The top-level manifest carries a format marker (``"format": "crosearch-index"``)
and the size and SHA-256 of every file of the index. A build replaces a
directory only when that manifest says it is an index and the directory holds
nothing the manifest does not list, so neither a stray ``manifest.json`` nor a
user's file inside an index is ever deleted. Builds of one target take a lock
file ``.<name>.lock`` beside it (the holder's pid inside; an advisory lock the
kernel drops when the holder dies, so a stale lock is simply taken over).
Opening an index checks every file's size (a truncated or missing file is
refused at start-up, not met as an error at query time); ``crosearch index
verify`` also checks the hashes.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from crosearch.config import Config, RetrievalConfig
from crosearch.errors import CrosearchError, DataFormatError
from crosearch.io import (
    atomic_dir,
    atomic_write_json,
    check_files,
    describe_files,
    file_sha256,
    pid_lock,
    read_json,
    remove_stale_temp_dirs,
)
from crosearch.names import check_lang, path_under
from crosearch.progress import Bars
from crosearch.retrieval.alignment import ALIGN_DIR, AlignedSpace, AlignMode
from crosearch.retrieval.analyzers import ANALYZER_VERSION, ZhSegmenter, get_analyzer
from crosearch.retrieval.bm25 import Bm25Index, Bm25Params, Vocabulary, build_bm25, save_bm25
from crosearch.retrieval.encoders import CACHE_DIR
from crosearch.retrieval.fusion import FusionMethod, HybridNorm, aligned_fusion, fuse
from crosearch.retrieval.store import LanguageStore, group_by_language, passages_hash, write_store
from crosearch.types import Hit, Passage, SearchQuery

MANIFEST = "manifest.json"
INDEX_FORMAT = "crosearch-index"
FORMAT_VERSION = 2
KINDS = ("store", "bm25", "dense")
#: How passages of one paragraph share a ranking: all listed, or only the best one per
#: paragraph and language (``window``), or per paragraph in any language (``paragraph``).
Collapse = Literal["none", "window", "paragraph"]
METHOD_ORDER = ("bm25", "dense")


@dataclass(frozen=True)
class IndexSettings:
    """Everything that changes what an index contains (not how it is searched)."""

    bm25: Bm25Params = Bm25Params()
    zh_segmenter: ZhSegmenter = "bigrams"
    index_title: bool = False
    dense_model: str | None = None
    dense_index: str = "flat"
    dense_query_prefix: str = ""
    dense_passage_prefix: str = ""
    dense_batch_size: int = 64
    dense_device: str | None = None
    dense_cache_dir: str | None = None
    dense_map_ridge: float = 1.0
    #: How the bundled encoder runs; not part of the index (both engines give the same vectors).
    dense_engine: str = "torch"

    @classmethod
    def from_config(cls, cfg: RetrievalConfig) -> IndexSettings:
        if "dense" in (cfg.methods or []) and not cfg.dense_model:
            raise CrosearchError("retrieval.methods includes 'dense' but retrieval.dense_model is not set")
        return cls(
            bm25=Bm25Params(k1=cfg.bm25_k1, b=cfg.bm25_b, method=cfg.bm25_method),
            zh_segmenter=cfg.zh_segmenter,
            index_title=cfg.index_title,
            dense_model=cfg.dense_model,
            dense_index=cfg.dense_index,
            dense_query_prefix=cfg.dense_query_prefix,
            dense_passage_prefix=cfg.dense_passage_prefix,
            dense_batch_size=cfg.dense_batch_size,
            dense_device=cfg.dense_device,
            dense_cache_dir=cfg.dense_cache_dir,
            dense_map_ridge=cfg.dense_map_ridge,
            dense_engine=cfg.dense_engine,
        )

    @property
    def methods(self) -> list[str]:
        return ["bm25", "dense"] if self.dense_model else ["bm25"]

    def unit_settings(self, kind: str) -> dict[str, Any]:
        """The settings a ``kind`` unit depends on (a changed value rebuilds only those units)."""
        if kind == "store":
            return {}
        if kind == "bm25":
            return {
                "params": asdict(self.bm25),
                "zh_segmenter": self.zh_segmenter,
                "index_title": self.index_title,
                "analyzer_version": ANALYZER_VERSION,
            }
        return {
            "model": self.dense_model,
            "index": self.dense_index,
            "index_title": self.index_title,
            "passage_prefix": self.dense_passage_prefix,
            "encoder": self.dense_identity,
        }

    def encoder(self):
        from crosearch.retrieval.encoders import make_encoder

        return make_encoder(
            self.dense_model or "",
            device=self.dense_device,
            batch_size=self.dense_batch_size,
            query_prefix=self.dense_query_prefix,
            passage_prefix=self.dense_passage_prefix,
            engine=self.dense_engine,
        )

    @property
    def dense_identity(self) -> str | None:
        """The embedding space of the dense encoder (refused at search time by any other encoder)."""
        from crosearch.retrieval.encoders import encoder_identity

        return encoder_identity(self.encoder()) if self.dense_model else None


def passage_text(p: Passage, index_title: bool) -> str:
    """The text that is indexed for a passage."""
    return f"{p.title}\n{p.text}" if index_title and p.title else p.text


# --------------------------------------------------------------------------- building


@dataclass
class BuildReport:
    """What a build did, per unit."""

    index_dir: str
    languages: dict[str, int]
    built: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _unit_complete(directory: Path, expected: dict[str, Any]) -> bool:
    try:
        manifest = read_json(directory / MANIFEST)
    except DataFormatError:  # missing or torn: the unit is built again
        return False
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return False
    described = {key: value for key, value in manifest.items() if key != "files"}
    return described == expected and not check_files(directory, manifest["files"])


def _link_copy(src: Path, dst: Path) -> None:
    """Copy a unit from the previous index, hard-linking files where possible (they are never modified)."""

    def copy(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=copy)


def _build_store(directory: Path, passages: list[Passage], settings: IndexSettings, advance) -> None:
    write_store(directory, passages)
    advance(len(passages))


def _build_bm25_unit(directory: Path, passages: list[Passage], settings: IndexSettings, lang: str, advance) -> None:
    analyzer = get_analyzer(lang, settings.zh_segmenter)
    vocab = Vocabulary()
    doc_ids: list[list[int]] = []
    for start in range(0, len(passages), 2000):
        chunk = passages[start : start + 2000]
        doc_ids.extend(vocab.encode(analyzer(passage_text(p, settings.index_title))) for p in chunk)
        advance(len(chunk))
    model = build_bm25(doc_ids, vocab, settings.bm25)
    del doc_ids
    save_bm25(model, directory)


def _build_dense_unit(
    directory: Path, passages: list[Passage], settings: IndexSettings, encoder, cache, advance
) -> None:
    from crosearch.retrieval.dense import build_faiss, save_embeddings, save_faiss
    from crosearch.retrieval.encoders import encode_passages_cached

    embeddings = encode_passages_cached(
        encoder, [passage_text(p, settings.index_title) for p in passages], cache, advance
    )
    save_embeddings(embeddings, directory)
    save_faiss(build_faiss(embeddings, settings.dense_index), directory)  # type: ignore[arg-type]


def _lock_path(out: Path) -> Path:
    return out.parent / f".{out.name}.lock"


def _is_index_manifest(manifest: Any) -> bool:
    """Whether a parsed ``manifest.json`` is one a crosearch build wrote (this format or the first one)."""
    if not isinstance(manifest, dict):
        return False
    if manifest.get("format") == INDEX_FORMAT:
        return isinstance(manifest.get("files"), dict)
    # Format 1 had no marker; its shape identifies it.
    return manifest.get("format") == 1 and isinstance(manifest.get("languages"), dict) and "methods" in manifest


def _foreign_entries(out: Path, manifest: dict[str, Any]) -> list[str]:
    """Paths under an index directory that its manifest does not account for (a user's files)."""
    if manifest.get("format") != INDEX_FORMAT:
        # Format 1 listed no files: its own entries are the manifest and the kind directories.
        return sorted(entry.name for entry in out.iterdir() if entry.name not in {MANIFEST, *KINDS})
    owned = set(manifest["files"]) | {MANIFEST}
    return sorted(
        path.relative_to(out).as_posix()
        for path in out.rglob("*")
        if not path.is_dir() and path.relative_to(out).as_posix() not in owned
    )


def check_replaceable(out: Path) -> None:
    """Refuse to build over ``out`` unless it is absent, empty, or an index holding only its own files."""
    if out.exists() and not out.is_dir():
        raise CrosearchError(f"{out} exists and is not a directory")
    if not out.is_dir() or not any(out.iterdir()):
        return
    try:
        manifest = read_json(out / MANIFEST)
    except DataFormatError:
        manifest = None
    if not _is_index_manifest(manifest):
        raise CrosearchError(
            f"{out} is a non-empty directory without a crosearch index manifest; refusing to replace it "
            "(choose an empty or new --out)"
        )
    foreign = _foreign_entries(out, manifest)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise CrosearchError(
            f"{out} is an index but also holds files the index does not own ({shown}); "
            "refusing to replace it: move them out of the index directory first"
        )


def build_index(
    passages: Sequence[Passage],
    out_dir: str | Path,
    settings: IndexSettings | None = None,
    *,
    progress: bool = True,
    train_paragraphs: Collection[str] | None = None,
) -> BuildReport:
    """Build (or resume building) the index of ``passages`` in ``out_dir``; see the module docstring.

    ``train_paragraphs`` (the paragraph ids of a benchmark's train split) fit the dense
    alignment maps; only passages of those paragraphs reach the fit.
    """
    settings = settings or IndexSettings()
    started = time.perf_counter()
    out = Path(out_dir)
    groups = group_by_language(passages)
    if not groups:
        raise CrosearchError("the collection holds no passages")
    for lang, group in groups.items():
        # Each language names a directory of the index; checked before anything is touched.
        check_lang(lang, field=f"lang of passage {group[0].id!r}")
    check_replaceable(out)
    hashes = {lang: passages_hash(ps) for lang, ps in groups.items()}
    report = BuildReport(str(out), {lang: len(ps) for lang, ps in groups.items()})
    out.parent.mkdir(parents=True, exist_ok=True)
    with pid_lock(_lock_path(out), what=f"a build of {out}"):
        check_replaceable(out)  # again under the lock: a build that held it may have just finished
        remove_stale_temp_dirs(out)  # a killed build's moved-aside old index; safe only under the lock
        # The staging directory outlives a killed build: its finished units are what a rerun resumes from.
        with atomic_dir(out, staging=out.parent / f".{out.name}.partial") as staging:
            _build_units(groups, hashes, out, staging, settings, report, progress)
            aligned = None
            if settings.dense_model:
                from crosearch.retrieval.alignment import build_alignment_unit

                aligned = build_alignment_unit(staging, groups, train_paragraphs, settings.dense_map_ridge)
            manifest = _manifest(groups, hashes, settings, aligned)
            files = _collect_files(staging, groups, settings)
            # The fitted maps and the embedding cache belong to the index too: listed (and verified) like the units.
            for extra in (ALIGN_DIR, CACHE_DIR):
                if (staging / extra).is_dir():
                    files.update({f"{extra}/{name}": info for name, info in describe_files(staging / extra).items()})
            manifest["files"] = dict(sorted(files.items()))
            atomic_write_json(staging / MANIFEST, manifest)
    report.seconds = time.perf_counter() - started
    return report


def _collect_files(staging: Path, groups: dict[str, list[Passage]], settings: IndexSettings) -> dict[str, Any]:
    """Every file of the finished index with its size and hash, read from the unit manifests (hashed once, at build)."""
    files: dict[str, Any] = {}
    for lang in groups:
        for kind in ("store", *settings.methods):
            unit = f"{kind}/{lang}"
            manifest_path = staging / kind / lang / MANIFEST
            for name, info in read_json(manifest_path)["files"].items():
                files[f"{unit}/{name}"] = info
            files[f"{unit}/{MANIFEST}"] = {"size": manifest_path.stat().st_size, "sha256": file_sha256(manifest_path)}
    return dict(sorted(files.items()))


def _build_units(
    groups: dict[str, list[Passage]],
    hashes: dict[str, str],
    out: Path,
    staging: Path,
    settings: IndexSettings,
    report: BuildReport,
    progress: bool,
) -> None:
    """Build into ``staging`` every unit that neither it nor the previous index at ``out`` holds complete."""
    kinds = ["store", *settings.methods]

    # Units of languages no longer in the collection (or of a method no longer built) must go.
    for kind_dir in staging.iterdir():
        if kind_dir.is_dir():
            if kind_dir.name not in ("store", "bm25", "dense"):
                continue
            for unit in kind_dir.iterdir():
                if kind_dir.name not in kinds or unit.name not in groups:
                    shutil.rmtree(unit, ignore_errors=True)

    encoder = cache = None
    if settings.dense_model:
        from crosearch.retrieval.encoders import open_cache

        encoder = settings.encoder()
        cache = open_cache(settings.dense_cache_dir, staging, out, settings.dense_identity or "")
    with Bars(enabled=progress) as bars:
        for lang, group in groups.items():
            for kind in kinds:
                expected = {
                    "lang": lang,
                    "passages": len(group),
                    "hash": hashes[lang],
                    "settings": settings.unit_settings(kind),
                }
                target = path_under(staging, kind, lang)
                name = f"{kind}/{lang}"
                if _unit_complete(target, expected):
                    report.reused.append(name)
                    continue
                if target.exists():
                    shutil.rmtree(target)
                target.parent.mkdir(parents=True, exist_ok=True)
                previous = path_under(out, kind, lang)
                if (out / MANIFEST).exists() and _unit_complete(previous, expected):
                    _link_copy(previous, target)
                    report.reused.append(name)
                    continue
                advance = bars.add(f"{kind} {lang}", len(group)).advance
                with atomic_dir(target) as tmp:
                    if kind == "store":
                        _build_store(tmp, group, settings, advance)
                    elif kind == "bm25":
                        _build_bm25_unit(tmp, group, settings, lang, advance)
                    else:
                        _build_dense_unit(tmp, group, settings, encoder, cache, advance)
                    atomic_write_json(tmp / MANIFEST, {**expected, "files": describe_files(tmp, skip=(MANIFEST,))})
                report.built.append(name)


def _manifest(
    groups: dict[str, list[Passage]], hashes: dict[str, str], settings: IndexSettings, aligned: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "format": INDEX_FORMAT,
        "version": FORMAT_VERSION,
        "analyzer_version": ANALYZER_VERSION,
        "collection_hash": passages_hash(p for ps in groups.values() for p in ps),
        "languages": {
            lang: {
                "passages": len(ps),
                "hash": hashes[lang],
                "analyzer": get_analyzer(lang, settings.zh_segmenter).spec.name,
            }
            for lang, ps in groups.items()
        },
        "passages": sum(len(ps) for ps in groups.values()),
        "methods": settings.methods,
        "settings": {
            "bm25": asdict(settings.bm25),
            "zh_segmenter": settings.zh_segmenter,
            "index_title": settings.index_title,
            "dense_model": settings.dense_model,
            "dense_index": settings.dense_index,
            "dense_query_prefix": settings.dense_query_prefix,
            "dense_passage_prefix": settings.dense_passage_prefix,
            "dense_identity": settings.dense_identity,
        },
        "alignment": aligned,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def read_manifest(index_dir: str | Path) -> dict[str, Any]:
    """The manifest of a complete index; a clear error for a missing or half-built one."""
    index_dir = Path(index_dir)
    if not index_dir.is_dir():
        raise CrosearchError(f"index directory not found: {index_dir} (build one with `crosearch index`)")
    try:
        manifest = read_json(index_dir / MANIFEST, what="index manifest")
    except DataFormatError:
        manifest = None
    if not isinstance(manifest, dict):
        hint = ""
        if index_dir.name.endswith(".partial"):
            hint = "; this is an interrupted build: rerun `crosearch index` with the same --out to resume it"
        raise CrosearchError(f"{index_dir}: not a complete index (no readable {MANIFEST}){hint}")
    if manifest.get("format") == 1:
        raise CrosearchError(
            f"{index_dir}: index format 1 (no file checksums) is no longer supported; "
            "rebuild it with `crosearch index` (same --out)"
        )
    if manifest.get("format") != INDEX_FORMAT:
        raise CrosearchError(f"{index_dir}: {MANIFEST} is not a crosearch index manifest (no format marker)")
    if manifest.get("version") != FORMAT_VERSION:
        raise CrosearchError(
            f"{index_dir}: index format version {manifest.get('version')!r} is not supported "
            f"(expected {FORMAT_VERSION}); rebuild it with `crosearch index`"
        )
    if not isinstance(manifest.get("files"), dict) or not isinstance(manifest.get("languages"), dict):
        raise CrosearchError(f"{index_dir}: the index manifest is malformed (no file list or languages)")
    for lang in manifest["languages"]:
        check_lang(lang, path=index_dir / MANIFEST, field=f"languages.{lang}")
    for name in manifest["files"]:
        # Checking a file reads it: only ever one inside the index.
        if name.startswith("/") or ".." in name.split("/"):
            raise DataFormatError(index_dir / MANIFEST, f"file {name!r} lies outside the index", field="files")
    if manifest.get("analyzer_version") != ANALYZER_VERSION:
        raise CrosearchError(
            f"{index_dir}: built with analyzer version {manifest.get('analyzer_version')}, "
            f"this crosearch uses {ANALYZER_VERSION}; rebuild it with `crosearch index`"
        )
    return manifest


def verify_index(index_dir: str | Path, *, hashes: bool = True) -> list[str]:
    """Problems of an index directory: every file the manifest lists is checked for size and (``hashes``) content.

    An empty list means the index is intact. A missing or unreadable manifest raises, as when loading.
    """
    index_dir = Path(index_dir)
    manifest = read_manifest(index_dir)
    return check_files(index_dir, manifest["files"], hashes=hashes)


def open_index(index_dir: str | Path) -> dict[str, Any]:
    """The manifest of an index fit to be opened: complete, of this format, every file at its recorded size.

    Sizes only (a stat per file), so it runs at every start-up and a truncated or missing file is
    refused there rather than failing a query later; :func:`verify_index` also reads the hashes.
    """
    index_dir = Path(index_dir)
    manifest = read_manifest(index_dir)
    problems = check_files(index_dir, manifest["files"])
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise CrosearchError(f"{index_dir}: the index is damaged ({shown}); rebuild it with `crosearch index`")
    return manifest


# --------------------------------------------------------------------------- searching


class LocalRetriever:
    """Searches an index directory in this process (implements :class:`~crosearch.retrieval.base.Retriever`).

    Each query searches each of its ``search_langs`` separately with each method;
    the lists are fused (``fusion``: reciprocal rank or min-max score fusion), or
    ranked as one by the aligned dense cosine (``aligned``; ``auto`` picks it for
    queries reaching several languages when dense is searched, see
    :mod:`crosearch.retrieval.alignment`). When a query yields a single list (one
    language, one method) its hits keep the method's own scores (BM25 score,
    cosine); otherwise scores are fused scores. ``collapse`` keeps only the best-ranked
    passage of each paragraph (per language, or across languages), searching each list
    ``COLLAPSE_DEPTH`` times deeper so that ``k`` distinct paragraphs remain. ``prf`` > 0
    moves each aligned query towards its top ``prf`` aligned passages before the ranking
    (pseudo-relevance feedback, :meth:`_feedback`). ``agreement`` > 0 re-ranks the aligned
    candidates by how well their paragraph's copies in the other languages match too (:meth:`_agree`).
    A query's ``translations`` replace its text in the BM25 list of each language they name
    (in the aligned hybrid, the BM25 part of the score; under rank fusion, that language's list).
    """

    def __init__(
        self,
        index_dir: str | Path,
        *,
        methods: Sequence[str] | None = None,
        fusion: FusionMethod | Literal["auto"] = "auto",
        rrf_k: int = 60,
        mmap: bool = True,
        dense_device: str | None = None,
        dense_model: str | None = None,
        align: AlignMode = "center",
        hybrid_weight: float = 0.0,
        hybrid_norm: HybridNorm = "query",
        dense_engine: str = "torch",
        collapse: Collapse = "none",
        prf: int = 0,
        prf_weight: float = 1.0,
        agreement: float = 0.0,
    ) -> None:
        self.index_dir = Path(index_dir)
        if collapse not in ("none", "window", "paragraph"):
            raise CrosearchError(f"unknown collapse '{collapse}' (choose 'none', 'window' or 'paragraph')")
        self.collapse: Collapse = collapse
        if prf < 0 or prf_weight < 0:
            raise CrosearchError(f"dense_prf ({prf}) and dense_prf_weight ({prf_weight}) must not be negative")
        self.prf, self.prf_weight = prf, prf_weight
        if agreement < 0:
            raise CrosearchError(f"dense_agreement must not be negative, got {agreement}")
        self.agreement = agreement
        self._paragraphs: dict[str, tuple[list[str | None], dict[str, list[int]]]] = {}
        self.manifest = open_index(self.index_dir)
        self.available_methods: list[str] = list(self.manifest["methods"])
        wanted = list(methods) if methods else list(self.available_methods)
        missing = [m for m in wanted if m not in self.available_methods]
        if missing:
            raise CrosearchError(
                f"{self.index_dir}: the index has no {', '.join(missing)} index "
                f"(it has {', '.join(self.available_methods)})"
            )
        self.methods = [m for m in METHOD_ORDER if m in wanted]
        _check_fusion(fusion)
        self.fusion = fusion
        self.hybrid_weight = hybrid_weight
        self.hybrid_norm: HybridNorm = hybrid_norm
        self.rrf_k = rrf_k
        settings = self.manifest["settings"]
        self._zh = settings["zh_segmenter"]
        langs = sorted(self.manifest["languages"])
        self._stores = {lang: LanguageStore(self.index_dir / "store" / lang, lang) for lang in langs}
        self._bm25 = {}
        if "bm25" in self.available_methods:
            self._bm25 = {
                lang: Bm25Index.load(self.index_dir / "bm25" / lang, get_analyzer(lang, self._zh), mmap=mmap)
                for lang in langs
            }
        self._dense = {}
        self._encoder = None
        self._aligned: AlignedSpace | None = None
        if "dense" in self.available_methods:
            from crosearch.retrieval.dense import DenseIndex
            from crosearch.retrieval.encoders import index_encoder

            self._encoder = index_encoder(self.index_dir, settings, dense_model, dense_device, dense_engine)
            self._dense = {lang: DenseIndex.load(self.index_dir / "dense" / lang) for lang in langs}
            self._aligned = AlignedSpace(self.index_dir, langs, align, self.manifest.get("alignment"))

    @classmethod
    def from_config(cls, config: Config | RetrievalConfig, index_dir: str | Path | None = None) -> LocalRetriever:
        """A retriever for ``retrieval.index_dir`` (or ``index_dir``) searched as the config says."""
        cfg = config.retrieval if isinstance(config, Config) else config
        return cls(
            index_dir or cfg.index_dir,
            methods=cfg.methods,
            fusion=cfg.fusion,
            rrf_k=cfg.rrf_k,
            dense_device=cfg.dense_device,
            dense_model=cfg.dense_model,
            align=cfg.dense_align,
            hybrid_weight=cfg.hybrid_weight,
            hybrid_norm=cfg.hybrid_norm,
            dense_engine=cfg.dense_engine,
            collapse=cfg.collapse,
            prf=cfg.dense_prf,
            prf_weight=cfg.dense_prf_weight,
            agreement=cfg.dense_agreement,
        )

    @property
    def languages(self) -> list[str]:
        """Languages of the collection, sorted."""
        return list(self._stores)

    @property
    def num_passages(self) -> int:
        return sum(len(s) for s in self._stores.values())

    def __len__(self) -> int:
        return self.num_passages

    def passage(self, lang: str, position: int) -> Passage:
        """A stored passage by language and position."""
        return self._stores[lang].get(position)

    def search(
        self,
        queries: Sequence[SearchQuery],
        k: int,
        *,
        method: str | None = None,
        fusion: FusionMethod | Literal["auto"] | None = None,
    ) -> list[list[Hit]]:
        """For each query, at most ``k`` hits best first; ``method`` restricts to one method for this call."""
        if k < 1:
            raise CrosearchError(f"k must be at least 1, got {k}")
        methods = self.methods
        if method is not None:
            if method not in self.available_methods:
                raise CrosearchError(
                    f"method '{method}' is not in this index (it has {', '.join(self.available_methods)})"
                )
            methods = [method]
        fusion = fusion or self.fusion
        _check_fusion(fusion)
        targets = [self._targets(q) for q in queries]
        for q in queries:
            self._check_translations(q)
        depth = k if self.collapse == "none" else k * COLLAPSE_DEPTH
        # Per query: one aligned ranking (comparable cosines) or fusion of per-list ranks/scores.
        modes = [self._fusion_of(fusion, methods, t) for t in targets]

        # lists[i] holds the ranked lists of query i; found[i] which methods found each passage.
        lists: list[list[list[tuple[tuple[str, int], float]]]] = [[] for _ in queries]
        found: list[dict[tuple[str, int], set[str]]] = [{} for _ in queries]
        kinds: list[list[str]] = [[] for _ in queries]
        embeddings = self._embed(queries, targets) if "dense" in methods else None
        aligned = None
        if embeddings is not None and "aligned" in modes:
            assert self._aligned is not None
            aligned = self._aligned.queries(embeddings, [q.lang for q in queries])
            if self.prf > 0:
                aligned = self._feedback(queries, targets, modes, aligned)
        for lang in self.languages:
            members = [i for i, t in enumerate(targets) if lang in t]
            if not members:
                continue
            position = self._stores[lang].position
            excludes = [{position[pid] for pid in queries[i].exclude if pid in position} for i in members]
            for m in methods:
                searched, skipped = members, excludes
                if m == "bm25":
                    if self.hybrid_weight == 0:  # an aligned ranking without BM25 weight needs no BM25 lists
                        kept = [j for j, i in enumerate(members) if modes[i] != "aligned"]
                        searched, skipped = [members[j] for j in kept], [excludes[j] for j in kept]
                    # A query's translation into this language, where it has one, is what BM25 matches here.
                    texts = [queries[i].text_for(lang) for i in searched]
                    results = self._bm25[lang].search(texts, depth, skipped) if searched else []
                else:
                    assert embeddings is not None
                    results = self._dense_search(lang, members, modes, embeddings, aligned, depth, excludes)
                for i, ranked in zip(searched, results):
                    keyed = [((lang, pos), score) for pos, score in ranked]
                    lists[i].append(keyed)
                    kinds[i].append(m)
                    for key, _ in keyed:
                        found[i].setdefault(key, set()).add(m)

        out: list[list[Hit]] = []
        for i, query in enumerate(queries):
            hits: list[Hit] = []
            # The query's own language first: fused scores that tie (the top hits of
            # two languages under RRF) then rank own-language evidence first.
            if modes[i] == "aligned":
                ranking = aligned_fusion(
                    [r for r, m in zip(lists[i], kinds[i]) if m == "dense"],
                    [r for r, m in zip(lists[i], kinds[i]) if m == "bm25"],
                    self.hybrid_weight,
                    self.hybrid_norm,
                )
                if self.agreement > 0 and aligned is not None:
                    ranking = self._agree(query, aligned[i], targets[i], ranking)
            else:
                ordered = sorted(lists[i], key=lambda ranked: not ranked or ranked[0][0][0] != query.lang)
                ranking = fuse(ordered, modes[i], self.rrf_k)  # type: ignore[arg-type]
            seen: set[tuple[str, ...]] = set()
            for (lang, pos), score in ranking:
                if len(hits) == k:
                    break
                p = self._stores[lang].get(pos)
                group = _collapse_key(p, self.collapse)
                if group is not None:
                    if group in seen:  # a lower-scored passage of a paragraph already listed
                        continue
                    seen.add(group)
                tag = "+".join(m for m in METHOD_ORDER if m in found[i][(lang, pos)])
                hits.append(
                    Hit(
                        doc_id=p.id,
                        lang=lang,
                        title=p.title,
                        text=p.text,
                        score=float(score),
                        method=tag,
                        paragraph=p.paragraph,
                    )
                )
            out.append(hits)
        return out

    def _fusion_of(self, fusion: str, methods: Sequence[str], targets: set[str]) -> str:
        if fusion == "auto":
            return "aligned" if "dense" in methods and len(targets) > 1 else "rrf"
        if fusion == "aligned" and "dense" not in methods:
            raise CrosearchError(
                f"fusion 'aligned' ranks by dense embeddings, but this search uses {', '.join(methods)} "
                "only (build the index with retrieval.dense_model)"
            )
        return fusion

    def _feedback(self, queries: Sequence[SearchQuery], targets: list[set[str]], modes: list[str], aligned):
        """Aligned queries moved towards their top ``prf`` aligned passages over all searched languages.

        Pseudo-relevance feedback in the aligned space: ``q' = norm(q + prf_weight x mean(top passages))``.
        The top passages are mostly parallel copies or neighbours of the best match, in several
        languages, so the new query leans towards what they share rather than towards the query's
        own wording.
        """
        import numpy as np

        from crosearch.retrieval.alignment import normalise

        assert self._aligned is not None
        best: list[list[tuple[float, str, int]]] = [[] for _ in queries]
        for lang in self.languages:
            members = [i for i, t in enumerate(targets) if lang in t and modes[i] == "aligned"]
            if not members:
                continue
            position = self._stores[lang].position
            excludes = [{position[pid] for pid in queries[i].exclude if pid in position} for i in members]
            found = self._aligned.index(lang, self._dense[lang]).search(aligned[members], self.prf, excludes)
            for i, ranked in zip(members, found):
                best[i].extend((score, lang, pos) for pos, score in ranked)
        out = aligned.copy()
        for i, candidates in enumerate(best):
            top = sorted(candidates, reverse=True)[: self.prf]
            if top:
                vectors = np.stack([self._aligned.passages(lang, [pos])[0] for _, lang, pos in top])
                out[i] = normalise(aligned[i] + self.prf_weight * vectors.mean(axis=0))
        return out

    def _paragraph_rows(self, lang: str) -> tuple[list[str | None], dict[str, list[int]]]:
        """Each passage's paragraph in ``lang`` and each paragraph's positions (read from the store once)."""
        if lang not in self._paragraphs:
            store = self._stores[lang]
            of = [store.get(pos).paragraph for pos in range(len(store))]
            rows: dict[str, list[int]] = {}
            for pos, paragraph in enumerate(of):
                if paragraph is not None:
                    rows.setdefault(paragraph, []).append(pos)
            self._paragraphs[lang] = (of, rows)
        return self._paragraphs[lang]

    def _agree(self, query: SearchQuery, vector, langs: set[str], ranking: list) -> list:
        """Cross-lingual agreement: each candidate gains ``agreement`` x the mean, over the searched
        languages holding its paragraph, of the best aligned cosine of that paragraph's passages there.

        A paragraph whose copies in many languages all match the query rises above a passage that
        matches in one language only; the query's exclusions are honoured (an excluded copy does
        not vote). Uses the collection's paragraph ids; passages without one keep their score.
        """
        import numpy as np

        from crosearch.retrieval.alignment import AlignedSpace

        space = self._aligned
        assert isinstance(space, AlignedSpace)
        found = (self._paragraph_rows(lang)[0][pos] for (lang, pos), _ in ranking)
        wanted = [p for p in dict.fromkeys(found) if p is not None]
        votes = np.zeros(len(wanted))
        voters = np.zeros(len(wanted))
        for lang in sorted(langs):
            rows_of = self._paragraph_rows(lang)[1]
            position = self._stores[lang].position
            skip = {position[pid] for pid in query.exclude if pid in position}
            rows, owners = [], []
            for j, paragraph in enumerate(wanted):
                for row in rows_of.get(paragraph, ()):
                    if row not in skip:
                        rows.append(row)
                        owners.append(j)
            if not rows:
                continue
            cosines = space.passages(lang, rows) @ vector
            best = np.full(len(wanted), -np.inf)
            np.maximum.at(best, np.array(owners), cosines)
            has = np.isfinite(best)
            votes[has] += best[has]
            voters[has] += 1
        bonus = {p: self.agreement * votes[j] / voters[j] for j, p in enumerate(wanted) if voters[j]}
        rescored = []
        for (lang, pos), score in ranking:
            paragraph = self._paragraph_rows(lang)[0][pos]
            rescored.append(((lang, pos), score + bonus.get(paragraph, 0.0) if paragraph else score))
        return sorted(rescored, key=lambda item: -item[1])

    def _dense_search(
        self, lang: str, members: list[int], modes: list[str], embeddings, aligned, k: int, excludes: list[set[int]]
    ) -> list[list[tuple[int, float]]]:
        """Dense hits of ``members`` in ``lang``: aligned cosines for aligned queries, raw for the others."""
        results: list[list[tuple[int, float]]] = [[] for _ in members]
        for use_aligned in (False, True):
            rows = [j for j, i in enumerate(members) if (modes[i] == "aligned") == use_aligned]
            if not rows:
                continue
            picked = [members[j] for j in rows]
            if use_aligned:
                assert self._aligned is not None
                found = self._aligned.index(lang, self._dense[lang]).search(
                    aligned[picked], k, [excludes[j] for j in rows]
                )
            else:
                found = self._dense[lang].search(embeddings[picked], k, [excludes[j] for j in rows])
            for j, ranked in zip(rows, found):
                results[j] = ranked
        return results

    def hit_embeddings(self, hits: Sequence[Hit]):
        """Aligned embeddings of retrieved passages, one row per hit.

        None without a dense index, and with ``dense_align: none``: raw cosines of one
        encoder are high for any two passages of a language, so they say little about duplicates.
        """
        import numpy as np

        if self._aligned is None or self._aligned.mode == "none" or not hits:
            return None
        return np.stack([self._aligned.passages(h.lang, [self._stores[h.lang].position[h.doc_id]])[0] for h in hits])

    def _targets(self, query: SearchQuery) -> set[str]:
        if query.search_langs is None:
            return set(self._stores)
        unknown = [lang for lang in query.search_langs if lang not in self._stores]
        if unknown:
            raise CrosearchError(
                f"language(s) {', '.join(unknown)} not in the index (it has {', '.join(self.languages)})"
            )
        return set(query.search_langs)

    def _check_translations(self, query: SearchQuery) -> None:
        """A query's translations must be texts keyed by languages of the index."""
        if query.translations is None:
            return
        if not isinstance(query.translations, dict):
            raise CrosearchError(
                f"translations must map language codes to texts, got {type(query.translations).__name__}"
            )
        for lang, text in query.translations.items():
            if lang not in self._stores:
                raise CrosearchError(
                    f"translations: language {lang!r} is not in the index (it has {', '.join(self.languages)})"
                )
            if not isinstance(text, str) or not text.strip():
                raise CrosearchError(f"translations[{lang!r}] must be a non-empty text, got {text!r}")

    def _embed(self, queries: Sequence[SearchQuery], targets: list[set[str]]):
        import numpy as np

        assert self._encoder is not None
        texts = sorted({q.text for q, t in zip(queries, targets) if t})
        if not texts:
            return np.zeros((len(queries), 1), dtype=np.float32)
        emb = self._encoder.encode_queries(texts)
        row = {text: j for j, text in enumerate(texts)}
        full = np.zeros((len(queries), emb.shape[1]), dtype=np.float32)
        for i, q in enumerate(queries):
            if q.text in row:
                full[i] = emb[row[q.text]]
        return full

    def close(self) -> None:
        for store in self._stores.values():
            store.close()


#: With ``collapse``, each list is searched this many times ``k`` deep, so that k distinct
#: paragraphs usually remain (an XQuAD paragraph has 2.3 windows in each of 8 languages).
COLLAPSE_DEPTH = 4


def _collapse_key(passage: Passage, collapse: str) -> tuple[str, ...] | None:
    """The group a passage is collapsed into (its best-ranked passage stands for it); None = its own."""
    if collapse == "none" or passage.paragraph is None:
        return None
    if collapse == "window":
        return (passage.paragraph, passage.lang)
    return (passage.paragraph,)


def _check_fusion(fusion: str) -> None:
    if fusion not in ("auto", "rrf", "score", "aligned"):
        raise CrosearchError(f"unknown fusion '{fusion}' (choose 'auto', 'rrf', 'score' or 'aligned')")


def load_retriever(config: Config):
    """The retriever a config asks for: the server at ``retrieval.url`` if set, else the local index."""
    if config.retrieval.url:
        from crosearch.retrieval.client import HttpRetriever

        return HttpRetriever(
            config.retrieval.url, timeout=config.retrieval.url_timeout, protocol=config.retrieval.url_protocol
        )
    return LocalRetriever.from_config(config)
