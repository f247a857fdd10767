"""One ranking across languages: BM25-RRF against the bundled encoder's raw, centred and mapped cosines and hybrids.

Two stages, so that the slow one can run in the background and be resumed:

``encode``
    Encodes the passages of the XQuAD benchmark collection (sentence windows, all eight
    languages) with the bundled encoder into an embedding cache, one article at a time in
    every language, logging passages/s. Killed and rerun, it continues where it stopped;
    any prefix of articles is complete in every language.
``eval``
    For each setting, builds the benchmark restricted to the articles whose passages are
    all cached (all 48 once ``encode`` finished), indexes it (BM25 + dense from the cache,
    maps fitted on the train split) and runs ``crosearch eval retrieval --scopes all``-style
    evaluation of every variant over all test questions of those articles, on one
    :class:`LocalRetriever` per variant (queries are encoded once per process).

``translated``
    The aligned hybrid (centred, ``dense_agreement``, ``collapse: paragraph``) over the full
    collection (its dense vectors from the shipped embeddings), on all test questions: without
    translations, against each language's BM25 part scored with *oracle* translations (the
    parallel XQuAD question of that language: the same question group exists in every
    language), at several BM25 weights; with ``--policy-sample N`` also on N questions (spread
    over the languages) with the policy's own translations (``crosslingual.translator: policy``,
    through the translation cache; seconds per new translation reported).

    nice -n 10 python benchmarks/bench_unified.py encode --cache runs/emb-cache
    python benchmarks/bench_unified.py eval --cache runs/emb-cache --settings no-native full
    python benchmarks/bench_unified.py translated --settings no-native gap --weights 0.3 1 2 --policy-sample 64
    python benchmarks/bench_unified.py table --out benchmarks/results/unified-translated.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def variant(methods, fusion, align, weight=0.0, norm="query", collapse="none", prf=0, agreement=0.0) -> dict:
    """LocalRetriever's search options of one measured variant."""
    return {
        "methods": methods,
        "fusion": fusion,
        "align": align,
        "hybrid_weight": weight,
        "hybrid_norm": norm,
        "collapse": collapse,
        "prf": prf,
        "agreement": agreement,
    }


DENSE, HYBRID = ["dense"], ["bm25", "dense"]
VARIANTS = {
    "bm25-rrf": variant(["bm25"], "rrf", "none"),
    "dense-raw": variant(DENSE, "aligned", "none"),
    "dense-centred": variant(DENSE, "aligned", "center"),
    "dense-mapped": variant(DENSE, "aligned", "map"),
    "hybrid-centred": variant(HYBRID, "aligned", "center", 0.1),
    "hybrid-mapped": variant(HYBRID, "aligned", "map", 0.1),
    # one passage per paragraph (in any language) in the ranking
    "bm25-rrf-paragraph": variant(["bm25"], "rrf", "none", collapse="paragraph"),
    "dense-centred-window": variant(DENSE, "aligned", "center", collapse="window"),
    "dense-centred-paragraph": variant(DENSE, "aligned", "center", collapse="paragraph"),
    "dense-mapped-paragraph": variant(DENSE, "aligned", "map", collapse="paragraph"),
    # pseudo-relevance feedback in the aligned space (top 5 passages, weight 1)
    "dense-centred-prf5": variant(DENSE, "aligned", "center", prf=5),
    "dense-centred-prf5-paragraph": variant(DENSE, "aligned", "center", collapse="paragraph", prf=5),
    "hybrid-centred-prf5-paragraph": variant(HYBRID, "aligned", "center", 0.03, collapse="paragraph", prf=5),
    # cross-lingual agreement of a candidate's parallel copies (weight chosen on the train questions: 8)
    "dense-centred-agree8-paragraph": variant(DENSE, "aligned", "center", collapse="paragraph", agreement=8.0),
    "dense-centred-agree8": variant(DENSE, "aligned", "center", agreement=8.0),
    "hybrid-centred-agree8-paragraph": variant(HYBRID, "aligned", "center", 0.1, collapse="paragraph", agreement=8.0),
}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["encode", "eval", "table", "translated"])
    ap.add_argument("--cache", default="runs/emb-cache", help="embedding cache directory")
    ap.add_argument("--settings", nargs="+", default=["no-native", "full"])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument(
        "--hybrid-weights",
        nargs="*",
        type=float,
        default=[],
        help="extra hybrid weights to measure (hybrid-{centred,mapped}-NORM-W)",
    )
    ap.add_argument(
        "--hybrid-norms",
        nargs="+",
        default=["query"],
        choices=["list", "query"],
        help="hybrid_norm values (eval: of the extra weights; translated: of every weight)",
    )
    ap.add_argument("--work", default="runs/bench-unified", help="indexes")
    ap.add_argument("--out", default=None, help="results file (default: unified.json, or unified-translated.json)")
    translated = ap.add_argument_group("translated")
    translated.add_argument(
        "--weights", nargs="*", type=float, default=[0.3, 1.0, 2.0], help="BM25 weights (none: the baseline only)"
    )
    translated.add_argument("--agreement", type=float, default=8.0, help="dense_agreement of every variant")
    translated.add_argument("--policy-sample", type=int, default=0, help="questions translated by the policy (0 = off)")
    translated.add_argument(
        "--policy-weights", nargs="+", type=float, default=[0.1, 0.3, 1.0], help="BM25 weights on the policy sample"
    )
    translated.add_argument("--limit", type=int, default=0, help="test questions per language (0 = all)")
    args = ap.parse_args()
    if args.out is None:
        name = "unified-translated.json" if args.stage == "translated" else "unified.json"
        args.out = f"benchmarks/results/{name}"
    for name in ("policy_sample", "limit"):
        if getattr(args, name) < 0:
            ap.error(f"--{name.replace('_', '-')} must not be negative")
    if any(w < 0 for w in args.weights + args.policy_weights) or args.agreement < 0:
        ap.error("weights and --agreement must not be negative")
    return args


def article_order(collection):
    """Passages grouped by article (every language of an article together), articles in order."""
    by_article: dict[str, list] = {}
    for p in collection:
        by_article.setdefault(p.article or "", []).append(p)
    return by_article


def encode(args) -> None:
    from crosearch.config import DataConfig
    from crosearch.data.benchmark import build_benchmark
    from crosearch.retrieval.encoders import BundledEncoder, EmbeddingCache, encode_passages_cached

    bench = build_benchmark(DataConfig(setting="full", passages="sentences"))
    encoder = BundledEncoder()
    cache = EmbeddingCache(args.cache, encoder.identity)
    by_article = article_order(bench.collection)
    total = len(bench.collection)
    done = 0
    for article, passages in by_article.items():
        start = time.perf_counter()
        have = cache.get([cache.key(p.text) for p in passages])
        fresh = [p for p in passages if cache.key(p.text) not in have]
        encode_passages_cached(encoder, [p.text for p in passages], cache, shipped=False)
        seconds = time.perf_counter() - start
        done += len(passages)
        rate = len(fresh) / seconds if fresh and seconds > 0 else float("nan")
        print(
            f"{time.strftime('%H:%M:%S')} {article}: {len(passages)} passages ({len(fresh)} encoded) "
            f"in {seconds:.1f} s, {rate:.2f} passages/s; {done}/{total}",
            flush=True,
        )


def cached_articles(collection, cache) -> list[str]:
    keys = {p.text: cache.key(p.text) for p in collection}
    have = set(cache.get(list(keys.values())))
    return [a for a, ps in article_order(collection).items() if all(keys[p.text] in have for p in ps)]


def cold_latency(index_dir: Path, questions, salt: str) -> dict:
    """Median milliseconds of one all-language aligned search of a query never encoded before (one at a time)."""
    import statistics

    from crosearch.retrieval.encoders import make_encoder
    from crosearch.retrieval.local import LocalRetriever
    from crosearch.types import SearchQuery

    retriever = LocalRetriever(index_dir, methods=["dense"], fusion="aligned", align="center")
    retriever.search([SearchQuery("warm-up", "en")], 10)  # loads the engine and builds the aligned indexes
    encoder = make_encoder("bundled")
    encode_ms, total_ms = [], []
    for q in questions:
        start = time.perf_counter()
        encoder.encode_queries([f"{q.question} {salt}"])  # a text not in the memo
        encode_ms.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        retriever.search([SearchQuery(f"{q.question}  {salt}", q.lang, None, frozenset(q.exclude))], 10)
        total_ms.append((time.perf_counter() - start) * 1000)
    retriever.close()
    return {
        "queries": len(questions),
        "encode": round(statistics.median(encode_ms), 1),
        "search_total": round(statistics.median(total_ms), 1),
    }


def evaluate(args) -> None:
    from crosearch.config import DataConfig
    from crosearch.data.benchmark import build_benchmark
    from crosearch.io import atomic_write_json
    from crosearch.retrieval.encoders import BundledEncoder, EmbeddingCache
    from crosearch.retrieval.evaluation import evaluate_retrieval
    from crosearch.retrieval.local import IndexSettings, LocalRetriever, build_index

    variants = dict(VARIANTS)
    for w in args.hybrid_weights:
        for norm in args.hybrid_norms:
            variants[f"hybrid-centred-{norm}-{w:g}"] = variant(HYBRID, "aligned", "center", w, norm)
            variants[f"hybrid-mapped-{norm}-{w:g}"] = variant(HYBRID, "aligned", "map", w, norm)
    chosen = [v for v in variants if v in args.variants or v not in VARIANTS]
    cache = EmbeddingCache(args.cache, BundledEncoder().identity)
    results: dict = {"settings": {}}
    out = Path(args.out)
    if out.exists():
        results = json.loads(out.read_text())
    for setting in args.settings:
        bench = build_benchmark(DataConfig(setting=setting, passages="sentences"))
        articles = set(cached_articles(bench.collection, cache))
        collection = [p for p in bench.collection if p.article in articles]
        test = [q for q in bench.test if q.article in articles]
        train = {q.paragraph for q in bench.train if q.paragraph}
        index_dir = Path(args.work) / f"index-{setting}-{len(articles)}"
        start = time.perf_counter()
        build_index(
            collection,
            index_dir,
            IndexSettings(dense_model="bundled", dense_cache_dir=args.cache),
            progress=False,
            train_paragraphs=train,
        )
        build_s = time.perf_counter() - start
        size = sum(f.stat().st_size for f in (index_dir / "dense").rglob("*") if f.is_file())
        row = results["settings"].setdefault(setting, {})
        row["subset"] = {
            "articles": len(articles),
            "of": len({p.article for p in bench.collection}),
            "passages": len(collection),
            "test_questions": len(test),
            "test_articles": len({q.article for q in test}),
        }
        row["index"] = {"build_s_from_cache": round(build_s, 1), "dense_bytes": size}
        row["latency_ms"] = cold_latency(index_dir, test[:: max(1, len(test) // 40)], setting)
        print(f"{setting}: {row['subset']}, {row['index']}, cold search ms {row['latency_ms']}", flush=True)
        for name in chosen:
            retriever = LocalRetriever(index_dir, **variants[name])
            scopes = ("all",) if setting == "no-native" else ("mono", "all")  # no-native mono is 0 by construction
            start = time.perf_counter()
            report = evaluate_retrieval(retriever, test, (1, 5, 10), scopes, progress=False)  # type: ignore[arg-type]
            seconds = time.perf_counter() - start
            row[name] = {"seconds": round(seconds, 1), **summarise(report, f"{setting} {name}", seconds)}
            atomic_write_json(out, results)
            retriever.close()


def summarise(report, label: str, seconds: float) -> dict:
    """Per scope and language (and ``avg``) R@1/5/10 and MRR of a report; prints the macro averages."""
    out = {}
    for scope, by in report.scopes.items():
        out[scope] = {
            lang: {"r1": r.recall[1], "r5": r.recall[5], "r10": r.recall[10], "mrr": r.mrr} for lang, r in by.items()
        }
        avg = by["avg"]
        print(
            f"{label} {scope}: R@1 {avg.recall[1]:.3f} R@5 {avg.recall[5]:.3f} "
            f"R@10 {avg.recall[10]:.3f} MRR {avg.mrr:.3f} ({seconds:.0f} s)",
            flush=True,
        )
    return out


def oracle_translations(questions) -> dict[str, dict[str, str]]:
    """Question id -> every other language's version of the same question (its XQuAD group)."""
    by_group: dict[str, dict[str, str]] = {}
    for q in questions:
        if q.group:
            by_group.setdefault(q.group, {})[q.lang] = q.question
    return {
        q.id: {lang: text for lang, text in by_group.get(q.group or "", {}).items() if lang != q.lang}
        for q in questions
    }


def spread(questions, n: int) -> list:
    """``n`` questions taken evenly from the list in each language's turn (the same languages as the whole)."""
    by_lang: dict[str, list] = {}
    for q in questions:
        by_lang.setdefault(q.lang, []).append(q)
    per_lang = -(-n // len(by_lang)) if by_lang else 0
    picked = []
    for qs in by_lang.values():
        take = min(per_lang, len(qs))
        picked += [qs[i * len(qs) // take] for i in range(take)]
    return picked[:n]


def policy_translations(questions, langs: list[str]) -> tuple[dict[str, dict[str, str]], dict]:
    """Each question translated by the policy into every other language, and the seconds per new translation
    (those the translation cache did not hold)."""
    from crosearch.config import load_config
    from crosearch.crosslingual.integration import build_translator

    start = time.perf_counter()
    translator = build_translator(load_config(None, ["crosslingual.translator=policy"]))
    timing: dict = {"load_s": round(time.perf_counter() - start, 1), "per_lang": {}}
    out: dict[str, dict[str, str]] = {q.id: {} for q in questions}
    cache = getattr(translator, "cache", None)
    for tgt in langs:
        todo = [q for q in questions if q.lang != tgt]
        misses = cache.misses if cache is not None else 0
        start = time.perf_counter()
        texts = translator.translate([q.question for q in todo], [q.lang for q in todo], tgt)
        seconds = time.perf_counter() - start
        new = cache.misses - misses if cache is not None else len(todo)
        timing["per_lang"][tgt] = {"translations": len(todo), "new": new, "seconds": round(seconds, 1)}
        print(f"policy translation into {tgt}: {len(todo)} ({new} new) in {seconds:.1f} s", flush=True)
        for q, text in zip(todo, texts):
            if text.strip() and text != q.question:
                out[q.id][tgt] = text
    total = sum(v["new"] for v in timing["per_lang"].values())
    timing["s_per_translation"] = round(sum(v["seconds"] for v in timing["per_lang"].values()) / max(total, 1), 2)
    return out, timing


def translated(args) -> None:
    """Aligned hybrid without translations, with oracle translations and (a sample) with the policy's."""
    from crosearch.config import DataConfig
    from crosearch.data.benchmark import build_benchmark
    from crosearch.io import atomic_write_json
    from crosearch.retrieval.evaluation import evaluate_retrieval
    from crosearch.retrieval.local import IndexSettings, LocalRetriever, build_index

    out = Path(args.out)
    results: dict = json.loads(out.read_text()) if out.exists() else {"settings": {}}
    results["settings"] = results.get("settings", {})

    def run(row: dict, name: str, questions, weight: float, translations=None, norm: str = "query") -> None:
        """One variant (BM25 ``weight`` and ``norm``, ``translations`` or none) on ``questions``, saved at once."""
        options = variant(HYBRID if weight else DENSE, "aligned", "center", weight, norm, collapse="paragraph")
        retriever = LocalRetriever(index_dir, **{**options, "agreement": args.agreement})
        start = time.perf_counter()
        report = evaluate_retrieval(
            retriever, questions, (1, 5, 10), ("all",), progress=False, translations=translations
        )
        seconds = time.perf_counter() - start
        row[name] = {"seconds": round(seconds, 1), **summarise(report, f"{index_dir.name} {name}", seconds)}
        retriever.close()
        atomic_write_json(out, results)

    for setting in args.settings:
        bench = build_benchmark(DataConfig(setting=setting, passages="sentences"))
        test = bench.test
        if args.limit:
            test = spread(test, args.limit * len({q.lang for q in test}))
        index_dir = Path(args.work) / f"index-{setting}"
        settings = IndexSettings(dense_model="bundled", dense_cache_dir=args.cache)
        build_index(bench.collection, index_dir, settings, progress=False)
        # The parallel versions come from every test question, also where --limit keeps fewer.
        oracle = oracle_translations(bench.test)
        row = results["settings"].setdefault(setting, {})
        row["subset"] = {"test_questions": len(test), "agreement": args.agreement, "collapse": "paragraph"}
        run(row, "dense", test, 0.0)
        for w in args.weights:
            for norm in args.hybrid_norms:
                name = f"hybrid-{w:g}" + ("" if norm == "query" else f"-{norm}")
                run(row, name, test, w, None, norm)
                run(row, f"{name}-oracle", test, w, oracle, norm)
        if args.policy_sample:
            sample = spread(test, args.policy_sample)
            policy, timing = policy_translations(sample, sorted({q.lang for q in bench.test}))
            sampled = row[f"policy-sample-{len(sample)}"] = {"questions": len(sample), "timing": timing}
            run(sampled, "dense", sample, 0.0)
            for w in args.policy_weights:
                run(sampled, f"hybrid-{w:g}", sample, w)
                run(sampled, f"hybrid-{w:g}-oracle", sample, w, oracle)
                run(sampled, f"hybrid-{w:g}-policy", sample, w, policy)


def print_table(args) -> None:
    """Markdown tables of a results file: macro averages per setting, scope and variant; R@5 per language."""
    results = json.loads(Path(args.out).read_text())
    print("| setting | scope | variant | R@1 | R@5 | R@10 | MRR | lowest R@5 (lang) |")
    print("|---|---|---|---|---|---|---|---|")
    per_lang = []
    for setting, row in results["settings"].items():
        # Variants are the entries with a scope; a policy sample's are nested one level down.
        samples = [(key, sample) for key, sample in row.items() if key.startswith("policy-sample")]
        entries = [*row.items(), *((f"{key}: {n}", r) for key, sample in samples for n, r in sample.items())]
        for name, res in entries:
            if not isinstance(res, dict) or not ({"mono", "all"} & set(res)):
                continue
            for scope in ("mono", "all"):
                if scope not in res:
                    continue
                by = res[scope]
                avg = by["avg"]
                low = min((r["r5"], lang) for lang, r in by.items() if lang != "avg")
                print(
                    f"| {setting} | {scope} | {name} | {avg['r1']:.3f} | {avg['r5']:.3f} | {avg['r10']:.3f} | "
                    f"{avg['mrr']:.3f} | {low[0]:.3f} ({low[1]}) |"
                )
                if scope == "all":
                    per_lang.append((setting, name, by))
    langs = sorted(lang for lang in per_lang[0][2] if lang != "avg") if per_lang else []
    for metric in ("r5", "r1"):
        print()
        print("| setting | variant | " + " | ".join(f"R@{metric[1:]} {lang}" for lang in langs) + " |")
        print("|---|---|" + "---|" * len(langs))
        for setting, name, by in per_lang:
            print(f"| {setting} | {name} | " + " | ".join(f"{by[lang][metric]:.3f}" for lang in langs) + " |")


def main() -> None:
    args = parse_args()
    {"encode": encode, "eval": evaluate, "table": print_table, "translated": translated}[args.stage](args)


if __name__ == "__main__":
    main()
