"""The open-retrieval multilingual benchmark built from parallel SQuAD-format files.

A benchmark directory holds four files (five with a validation split), all written
atomically and byte-stable for the same source, seed and configuration:

- ``collection.jsonl``: the passages (:class:`~crosearch.types.Passage`) of every language;
- ``train.jsonl`` / ``test.jsonl``: the questions (:class:`~crosearch.types.QAExample`),
  one per (question, language), split by article so no test paragraph is seen in training;
- ``validation.jsonl`` (only with ``validation_fraction > 0``): whole articles carved out of
  the train split, for tuning a recipe without touching the test split;
- ``meta.json``: format version, the configuration, counts and the article split.

Without a validation split nothing of it appears anywhere (not even the config key in
``meta.json``), so benchmarks built before it existed are rebuilt byte for byte.

Coverage settings: ``full`` (every language has every paragraph), ``gap`` (each language
keeps a seeded random ``gap_keep`` share of the paragraphs, so much knowledge exists only
in other languages) and ``no-native`` (each question's own-language copy of its gold
paragraph is listed in its ``exclude``).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crosearch.config import DataConfig
from crosearch.data.formats import (
    SquadFile,
    article_id,
    load_squad,
    paragraph_id,
    parse_parallel_name,
    read_corpus,
    read_qa,
    squad_ids,
    write_corpus,
    write_qa,
    xquad_dir,
)
from crosearch.data.passages import paragraph_to_passages
from crosearch.errors import ConfigError, CrosearchError, DataFormatError
from crosearch.io import atomic_write_json, read_json
from crosearch.progress import track
from crosearch.types import Passage, QAExample

BENCHMARK_FORMAT = "crosearch-benchmark"
BENCHMARK_VERSION = 1
FILES = ("collection.jsonl", "train.jsonl", "test.jsonl", "meta.json")
VALIDATION_FILE = "validation.jsonl"
# Question splits in data-flow order; "validation" exists only when the benchmark was built with one.
SPLITS = ("train", "validation", "test")


@dataclass
class Benchmark:
    """A built benchmark: the passage collection, the question splits and the metadata."""

    collection: list[Passage]
    train: list[QAExample]
    test: list[QAExample]
    meta: dict[str, Any] = field(default_factory=dict)
    validation: list[QAExample] = field(default_factory=list)

    @property
    def languages(self) -> list[str]:
        return list(self.meta.get("languages") or sorted({p.lang for p in self.collection}))

    @property
    def setting(self) -> str:
        return str(self.meta.get("config", {}).get("setting", "full"))

    @property
    def has_validation(self) -> bool:
        return "validation" in self.meta.get("counts", {})

    def split(self, name: str) -> list[QAExample]:
        """The questions of split ``name`` (train, validation or test)."""
        if name not in SPLITS:
            raise CrosearchError(f"--split must be one of {', '.join(SPLITS)}, got '{name}'")
        if name == "validation" and not self.has_validation:
            raise CrosearchError(
                "this benchmark has no validation split: rebuild it with data.validation_fraction > 0 "
                "(e.g. `crosearch data build --set data.validation_fraction=0.1 --out DIR`)"
            )
        questions: list[QAExample] = getattr(self, name)
        return questions


# --------------------------------------------------------------------------- source files


def resolve_source(source: str, languages: Iterable[str] | None = None) -> tuple[str, dict[str, Path]]:
    """Find the parallel files of a source: ``'xquad'`` (vendored) or a directory.

    Returns the dataset name and ``{lang: path}`` for the selected languages. A directory must
    hold files of one dataset named ``<name>.<lang>.json[.gz]``.
    """
    directory = xquad_dir() if source == "xquad" else Path(source).expanduser()
    if not directory.exists():
        raise CrosearchError(
            f"data source not found: {directory} (use 'xquad' or a directory of <name>.<lang>.json[.gz] files)"
        )
    if not directory.is_dir():
        raise CrosearchError(f"data source must be a directory of <name>.<lang>.json[.gz] files: {directory}")
    by_name: dict[str, dict[str, Path]] = defaultdict(dict)
    for path in sorted(directory.iterdir()):
        parsed = parse_parallel_name(path.name)
        if parsed is None or not path.is_file():
            continue
        dataset, lang = parsed
        if lang in by_name[dataset]:
            raise CrosearchError(
                f"{directory}: two files for language '{lang}': {by_name[dataset][lang].name} and {path.name}"
            )
        by_name[dataset][lang] = path
    if not by_name:
        raise CrosearchError(f"{directory}: no <name>.<lang>.json[.gz] files found")
    if len(by_name) > 1:
        raise CrosearchError(
            f"{directory}: files of several datasets ({', '.join(sorted(by_name))}); keep one dataset per directory"
        )
    name, files = next(iter(by_name.items()))
    if languages is not None:
        wanted = [lang.strip().lower() for lang in languages if lang.strip()]
        missing = [lang for lang in wanted if lang not in files]
        if missing:
            raise CrosearchError(
                f"{directory}: no file for language(s) {', '.join(missing)}; available: {', '.join(sorted(files))}"
            )
        if not wanted:
            raise CrosearchError("the language list is empty")
        files = {lang: files[lang] for lang in wanted}
    return name, dict(sorted(files.items()))


def check_parallel(squads: dict[str, SquadFile]) -> None:
    """Verify the files share one structure: articles, paragraphs and question ids, in order."""
    langs = list(squads)
    ref_lang = "en" if "en" in squads else langs[0]
    ref = squads[ref_lang]
    ref_name = Path(ref.path).name
    for lang in langs:
        other = squads[lang]
        if other is ref:
            continue
        if len(other.articles) != len(ref.articles):
            raise DataFormatError(
                other.path,
                f"has {len(other.articles)} articles but {ref_name} has {len(ref.articles)}; parallel files must match",
                field="data",
            )
        for ai, (a_ref, a_other) in enumerate(zip(ref.articles, other.articles)):
            if len(a_other.paragraphs) != len(a_ref.paragraphs):
                raise DataFormatError(
                    other.path,
                    f"has {len(a_other.paragraphs)} paragraphs but {ref_name} has "
                    f"{len(a_ref.paragraphs)}; parallel files must match",
                    record=f"data[{ai}]",
                    field="paragraphs",
                )
            for pi, (p_ref, p_other) in enumerate(zip(a_ref.paragraphs, a_other.paragraphs)):
                ids_ref = [q.id for q in p_ref.questions]
                ids_other = [q.id for q in p_other.questions]
                if ids_ref != ids_other:
                    extra = sorted(set(ids_other) - set(ids_ref))
                    lacking = sorted(set(ids_ref) - set(ids_other))
                    detail = (f"not in {ref_name}: {extra[:3]}; " if extra else "") + (
                        f"missing here: {lacking[:3]}" if lacking else "same ids in another order"
                    )
                    raise DataFormatError(
                        other.path,
                        f"question ids differ from {ref_name} ({detail})",
                        record=f"data[{ai}].paragraphs[{pi}]",
                        field="qas",
                    )


# --------------------------------------------------------------------------- building


def _split_articles(num_articles: int, seed: int, test_fraction: float) -> set[int]:
    """Indices of the test articles: a seeded shuffle, ``test_fraction`` of them (at least one each side)."""
    order = list(range(num_articles))
    random.Random(f"crosearch-split:{seed}").shuffle(order)
    n_test = round(test_fraction * num_articles)
    if num_articles >= 2:
        n_test = min(max(n_test, 1), num_articles - 1)
    return set(order[:n_test])


def _split_validation(train_articles: list[int], seed: int, fraction: float) -> set[int]:
    """Indices of the validation articles: a seeded share of the train articles (at least one each side).

    Its own seed stream, so the test split is the same whatever the fraction.
    """
    if fraction <= 0.0 or len(train_articles) < 2:
        return set()
    order = sorted(train_articles)
    random.Random(f"crosearch-validation:{seed}").shuffle(order)
    n_val = min(max(round(fraction * len(order)), 1), len(order) - 1)
    return set(order[:n_val])


def _gap_keep(paragraphs: list[str], langs: list[str], seed: int, keep: float) -> dict[str, set[str]]:
    """Paragraphs each language keeps: independent seeded samples, every paragraph kept somewhere."""
    n_keep = max(1, round(keep * len(paragraphs)))
    kept = {lang: set(random.Random(f"crosearch-gap:{seed}:{lang}").sample(paragraphs, n_keep)) for lang in langs}
    restore = random.Random(f"crosearch-gap-restore:{seed}")
    for pid in paragraphs:
        if not any(pid in kept[lang] for lang in langs):
            kept[restore.choice(langs)].add(pid)
    return kept


def _contains_answer(text: str, answers: list[str]) -> bool:
    folded = text.casefold()
    return any(answer.casefold() in folded for answer in answers if answer)


def build_benchmark(config: DataConfig, *, progress: bool = False) -> Benchmark:
    """Build the benchmark described by ``config`` in memory (see :func:`write_benchmark`)."""
    if config.passages == "sentences" and config.window_stride > config.window_sentences:
        raise ConfigError(
            f"data.window_stride ({config.window_stride}) is larger than data.window_sentences "
            f"({config.window_sentences}): sentences between windows would be lost"
        )
    name, files = resolve_source(config.source, config.languages)
    langs = list(files)

    squads: dict[str, SquadFile] = {}
    for lang in track(langs, "loading source files", enabled=progress, transient=True):
        squads[lang] = load_squad(files[lang], lang, name=name)
    check_parallel(squads)

    ref = squads["en" if "en" in squads else langs[0]]
    widths = squad_ids(len(ref.articles), max((len(a.paragraphs) for a in ref.articles), default=1))
    # (article index, paragraph index, paragraph id) in source order: the canonical order of every output.
    paragraphs = [
        (ai, pi, paragraph_id(name, ai, pi, widths))
        for ai, art in enumerate(ref.articles)
        for pi in range(len(art.paragraphs))
    ]
    all_pids = [pid for _, _, pid in paragraphs]
    test_articles = _split_articles(len(ref.articles), config.seed, config.test_fraction)
    validation_articles = _split_validation(
        [i for i in range(len(ref.articles)) if i not in test_articles], config.seed, config.validation_fraction
    )

    if config.setting == "gap":
        kept = _gap_keep(all_pids, langs, config.seed, config.gap_keep)
    else:
        kept = {lang: set(all_pids) for lang in langs}

    collection: list[Passage] = []
    # (lang, paragraph id) -> passages of that copy in the collection
    copies: dict[tuple[str, str], list[Passage]] = {}
    for lang in track(langs, "cutting passages", enabled=progress, transient=True):
        squad = squads[lang]
        for ai, pi, pid in paragraphs:
            if pid not in kept[lang]:
                continue
            art = squad.articles[ai]
            base = Passage(
                id=f"{lang}/{pid}",
                lang=lang,
                title=art.title,
                text=art.paragraphs[pi].context,
                article=article_id(name, ai, widths[0]),
                paragraph=pid,
            )
            cut = paragraph_to_passages(base, config.passages, config.window_sentences, config.window_stride)
            copies[(lang, pid)] = cut
            collection.extend(cut)

    train: list[QAExample] = []
    test: list[QAExample] = []
    validation: list[QAExample] = []
    for ai, pi, pid in paragraphs:
        target = test if ai in test_articles else validation if ai in validation_articles else train
        for qi in range(len(ref.articles[ai].paragraphs[pi].questions)):
            for lang in langs:
                q = squads[lang].articles[ai].paragraphs[pi].questions[qi]
                if not q.answers:
                    continue
                own = copies.get((lang, pid), [])
                no_native = config.setting == "no-native"
                target.append(
                    QAExample(
                        id=f"{q.id}/{lang}",
                        lang=lang,
                        question=q.question,
                        answers=list(q.answers),
                        group=q.id,
                        article=article_id(name, ai, widths[0]),
                        paragraph=pid,
                        exclude=[p.id for p in own] if no_native else [],
                        answer_passages=[p.id for p in own if _contains_answer(p.text, q.answers)],
                        native_available=bool(own) and not no_native,
                    )
                )

    _check_not_empty(collection, train, test, f"{name} ({', '.join(langs)})")

    def per_lang(items: Iterable[Any]) -> dict[str, int]:
        counts = dict.fromkeys(langs, 0)
        for item in items:
            counts[item.lang] += 1
        return counts

    resolved = config.model_dump(mode="json")
    resolved["languages"] = langs
    with_validation = config.validation_fraction > 0.0
    if not with_validation:
        # Keeps meta.json of a benchmark without validation byte-identical to builds from before the key.
        del resolved["validation_fraction"]
    from crosearch import __version__

    meta: dict[str, Any] = {
        "format": BENCHMARK_FORMAT,
        "version": BENCHMARK_VERSION,
        "crosearch_version": __version__,
        "config": resolved,
        "source": {"name": name, "files": {lang: files[lang].name for lang in langs}},
        "languages": langs,
        "splits": {
            "train_articles": [
                article_id(name, i, widths[0])
                for i in range(len(ref.articles))
                if i not in test_articles and i not in validation_articles
            ],
            "test_articles": [article_id(name, i, widths[0]) for i in sorted(test_articles)],
        },
        "counts": {
            "articles": len(ref.articles),
            "paragraphs": len(all_pids),
            "paragraphs_kept": {lang: len(kept[lang]) for lang in langs},
            "passages": len(collection),
            "passages_per_language": per_lang(collection),
            "train": len(train),
            "test": len(test),
            "train_per_language": per_lang(train),
            "test_per_language": per_lang(test),
        },
    }
    if with_validation:
        meta["splits"]["validation_articles"] = [article_id(name, i, widths[0]) for i in sorted(validation_articles)]
        meta["counts"]["validation"] = len(validation)
        meta["counts"]["validation_per_language"] = per_lang(validation)
    return Benchmark(collection=collection, train=train, test=test, meta=meta, validation=validation)


def _check_not_empty(collection: list[Passage], train: list[QAExample], test: list[QAExample], source: str) -> None:
    """A benchmark without passages or without questions would only fail later, less clearly."""
    if not collection:
        raise CrosearchError(f"{source}: the benchmark would hold no passages (every context is empty or filtered)")
    if not train and not test:
        raise CrosearchError(f"{source}: the benchmark would hold no questions (none has an answer)")


def _is_previous_build(out: Path) -> bool:
    """Whether ``out`` holds a benchmark (complete, or interrupted before ``meta.json``) and so may be rewritten."""
    try:
        meta = read_json(out / "meta.json")
    except DataFormatError:
        meta = None
    if isinstance(meta, dict) and meta.get("format") == BENCHMARK_FORMAT:
        return True
    # An interrupted build removed meta.json first: only our files (and atomic writes' temporaries) remain.
    ours = (*FILES, VALIDATION_FILE)
    return all(
        entry.name in ours or any(entry.name.startswith(f".{name}.") for name in ours) for entry in out.iterdir()
    )


def write_benchmark(bench: Benchmark, out_dir: str | Path) -> Path:
    """Write a benchmark directory; ``meta.json`` goes last, so a directory with it is complete.

    ``out_dir`` must be absent, empty or a previous build: other files beside a benchmark would be
    mistaken for part of it, and a mistyped ``--out`` must not write into an unrelated directory.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CrosearchError(f"output path exists and is not a directory: {out}")
    if out.is_dir() and any(out.iterdir()) and not _is_previous_build(out):
        raise CrosearchError(
            f"{out} is a non-empty directory that is not a previous benchmark build; "
            "refusing to write into it (choose an empty or new --out)"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "meta.json").unlink(missing_ok=True)
    write_corpus(out / "collection.jsonl", bench.collection)
    write_qa(out / "train.jsonl", bench.train)
    write_qa(out / "test.jsonl", bench.test)
    if bench.has_validation:
        write_qa(out / VALIDATION_FILE, bench.validation)
    else:
        (out / VALIDATION_FILE).unlink(missing_ok=True)  # from an earlier build with a validation split
    atomic_write_json(out / "meta.json", bench.meta)
    return out


def load_benchmark(path: str | Path) -> Benchmark:
    """Load a benchmark directory written by ``crosearch data build``."""
    root = Path(path)
    hint = "build one with `crosearch data build --out DIR`"
    if not root.exists():
        raise CrosearchError(f"benchmark directory not found: {root} ({hint})")
    if not root.is_dir():
        raise CrosearchError(f"not a benchmark directory: {root} ({hint})")
    meta_path = root / "meta.json"
    if not meta_path.exists():
        raise CrosearchError(
            f"{root} is not a crosearch benchmark (or its build did not finish): no meta.json ({hint})"
        )
    meta = read_json(meta_path)
    if not isinstance(meta, dict) or meta.get("format") != BENCHMARK_FORMAT:
        raise DataFormatError(
            meta_path, f"not a crosearch benchmark (expected format '{BENCHMARK_FORMAT}')", field="format"
        )
    version = meta.get("version")
    if not isinstance(version, int) or version > BENCHMARK_VERSION:
        raise DataFormatError(
            meta_path,
            f"benchmark format version {version!r} is not supported "
            f"(this crosearch reads up to {BENCHMARK_VERSION}); rebuild it",
            field="version",
        )
    counts = meta.get("counts", {})
    with_validation = "validation" in counts
    for name in (*FILES[:3], *([VALIDATION_FILE] if with_validation else [])):
        if not (root / name).exists():
            raise CrosearchError(f"{root}: {name} is missing; rebuild the benchmark ({hint})")
    bench = Benchmark(
        collection=read_corpus(root / "collection.jsonl"),
        train=read_qa(root / "train.jsonl"),
        test=read_qa(root / "test.jsonl"),
        meta=meta,
        validation=read_qa(root / VALIDATION_FILE) if with_validation else [],
    )
    _check_not_empty(bench.collection, bench.train, bench.test, str(root))
    splits: list[tuple[str, list[Any]]] = [
        ("passages", bench.collection),
        ("train", bench.train),
        ("test", bench.test),
        ("validation", bench.validation),
    ]
    for name, records in splits:
        expected = counts.get(name)
        if expected is not None and expected != len(records):
            raise DataFormatError(
                root / ("collection.jsonl" if name == "passages" else f"{name}.jsonl"),
                f"holds {len(records)} records but meta.json says {expected}; "
                "the directory was modified or truncated: rebuild it",
            )
    return bench
