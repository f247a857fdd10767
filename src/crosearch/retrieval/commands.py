"""``crosearch index`` (build the retrieval indexes) and ``crosearch eval retrieval``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from crosearch.cli_options import ConfigOption, SetOption, resolve_config
from crosearch.errors import CrosearchError


def index(
    collection: Annotated[Path, typer.Option(
        "--collection", help="A collection JSONL (id, lang, title, text, ...) or a benchmark directory.")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Index directory (default: retrieval.index_dir).", show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Build the per-language BM25 indexes (and dense indexes when retrieval.dense_model is set).

    Given a benchmark directory, the dense alignment maps are fitted on its train split.

    An interrupted build resumes where it stopped when run again with the same --out;
    only languages whose passages or settings changed are rebuilt.
    """
    from rich.console import Console

    from crosearch.retrieval.local import IndexSettings, build_index
    from crosearch.retrieval.store import read_collection, train_paragraphs

    cfg = resolve_config(config, overrides)
    target = out or Path(cfg.retrieval.index_dir)
    console = Console(stderr=True)
    settings = IndexSettings.from_config(cfg.retrieval)
    passages = read_collection(collection)
    report = build_index(passages, target, settings, progress=not quiet,
                         train_paragraphs=train_paragraphs(collection) if settings.dense_model else None)
    langs = ", ".join(f"{lang} {n}" for lang, n in report.languages.items())
    console.print(f"index {target}: {sum(report.languages.values())} passages ({langs}); "
                  f"built {len(report.built)} units, reused {len(report.reused)}, {report.seconds:.1f} s")


def _parse_ks(text: str) -> list[int]:
    try:
        ks = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise CrosearchError(f"--k must be comma-separated integers like 1,5,10, got '{text}'") from None
    if not ks or ks[0] < 1:
        raise CrosearchError(f"--k values must be at least 1, got '{text}'")
    return ks


def eval_retrieval(
    benchmark: Annotated[Path, typer.Option("--benchmark", "-b", help="Benchmark directory (crosearch data build).")],
    index_dir: Annotated[Optional[Path], typer.Option(
        "--index", help="Index directory (default: retrieval.index_dir).", show_default=False)] = None,
    ks: Annotated[str, typer.Option("--k", help="Cut-offs for recall, comma-separated.")] = "1,5,10",
    split: Annotated[str, typer.Option("--split", help="Question split: test or train.")] = "test",
    scopes: Annotated[str, typer.Option("--scopes", help="mono (own language), all (every language), or both.")]
    = "mono,all",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the metrics as JSON here.",
                                                show_default=False)] = None,
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Recall@k and MRR per language, searching the question's language (mono) and all languages (all)."""
    from rich.console import Console

    from crosearch.data.benchmark import load_benchmark
    from crosearch.io import atomic_write_json
    from crosearch.retrieval.evaluation import evaluate_retrieval, report_tables
    from crosearch.retrieval.local import load_retriever

    if split not in ("test", "train"):
        raise CrosearchError(f"--split must be 'test' or 'train', got '{split}'")
    scope_list = [s.strip() for s in scopes.split(",") if s.strip()]
    bad = [s for s in scope_list if s not in ("mono", "all")]
    if bad or not scope_list:
        raise CrosearchError(f"--scopes takes mono and/or all, got '{scopes}'")
    k_list = _parse_ks(ks)
    extra = list(overrides or [])
    if index_dir is not None:
        extra.append(f"retrieval.index_dir={json.dumps(str(index_dir))}")
    cfg = resolve_config(config, extra)
    console = Console(stderr=True)
    bench = load_benchmark(benchmark)
    questions = bench.test if split == "test" else bench.train
    retriever = load_retriever(cfg)
    report = evaluate_retrieval(retriever, questions, k_list, scope_list)  # type: ignore[arg-type]
    result = {"benchmark": str(benchmark), "setting": bench.setting, "split": split,
              "index": cfg.retrieval.url or cfg.retrieval.index_dir, "methods": cfg.retrieval.methods,
              "fusion": cfg.retrieval.fusion, "dense_align": cfg.retrieval.dense_align,
              "hybrid_weight": cfg.retrieval.hybrid_weight, **report.to_dict()}
    if out is not None:
        atomic_write_json(out, result)
    for table in report_tables(report, title=f"{bench.setting}/{split}"):
        Console().print(table)
    if out is not None:
        console.print(f"wrote {out}")
