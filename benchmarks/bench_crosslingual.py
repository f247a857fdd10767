"""Recall, inserted tokens and time per search of the integration strategies on the XQuAD benchmark.

For each coverage setting (full, gap, no-native) the benchmark collection is built
(sentence-window passages, all eight languages) and indexed with BM25; a seeded sample
of parallel test questions is drawn (the same question groups in every language), and
each strategy gathers evidence for every question's own text as the query:

- ``mono``: the question's language only;
- ``concat``: raw top ``--concat-per-lang`` of every language, concatenated;
- ``xl-none``: the crosslingual strategy without translation (identity translator);
- ``xl-policy-q``: crosslingual with the policy model translating the queries only (foreign
  evidence shown in its language, no duplicate detection): no passage is translated;
- ``xl-policy``: the full crosslingual strategy with the policy model translating queries and
  foreign candidates (duplicates detected on the translations, evidence shown translated);
- ``xl-aligned`` (with ``--dense-model``): crosslingual with ``ranking: aligned``, one search
  of all languages with the question's own text ranked by the aligned dense score, no
  translation, duplicates by 3-grams and by aligned embedding similarity.

Reported per language and averaged: recall (gold paragraph, in any language, among the
inserted passages), answer coverage (a gold answer string of the question's language
appears in the inserted text), tokens inserted per search (policy tokenizer), seconds per
search (cold translation cache, then warm), and for ``xl-*`` the duplicates dropped and
how many of them share the gold-free ``paragraph`` id with the passage kept (precision).

    python benchmarks/bench_crosslingual.py --langs en de zh ar --per-lang 20
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from crosearch.progress import track


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--langs", nargs="+", default=["en", "de", "zh", "ar"], help="question languages")
    ap.add_argument(
        "--targets",
        nargs="+",
        default=None,
        help="languages searched besides the question's (default: every collection language)",
    )
    ap.add_argument("--per-lang", type=int, default=20, help="questions per language")
    ap.add_argument("--settings", nargs="+", default=["full", "gap", "no-native"])
    ap.add_argument("--strategies", nargs="+", default=["mono", "concat", "xl-none", "xl-policy-q", "xl-policy"])
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--concat-per-lang", type=int, default=1)
    ap.add_argument("--budget", type=int, default=400, help="token budget of inserted evidence")
    ap.add_argument("--dedup-threshold", type=float, default=0.4)
    ap.add_argument("--model", default="bundled", help="policy model (translator and tokenizer)")
    ap.add_argument("--batch", type=int, default=16, help="queries per gather call")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="runs/bench-crosslingual", help="indexes and the translation cache")
    ap.add_argument("--out", default="benchmarks/results/crosslingual.json")
    ap.add_argument("--keep-cache", action="store_true", help="reuse the translation cache of an earlier run")
    ap.add_argument("--dense-model", default=None, help="also index with this dense model (e.g. bundled)")
    ap.add_argument("--dense-cache", default=None, help="passage-embedding cache shared by the settings' indexes")
    return ap.parse_args()


def sample_questions(test, langs, per_lang, seed):
    """The same question groups in every language, so languages are compared on parallel questions."""
    by_group: dict[str, dict[str, object]] = {}
    for q in test:
        by_group.setdefault(q.group, {})[q.lang] = q
    groups = sorted(g for g, qs in by_group.items() if all(ln in qs for ln in langs))
    chosen = random.Random(seed).sample(groups, min(per_lang, len(groups)))
    return [by_group[g][ln] for ln in langs for g in chosen]


def main() -> None:
    args = parse_args()
    from crosearch.config import DataConfig, ModelConfig
    from crosearch.crosslingual.integration import IntegrationQuery, Integrator
    from crosearch.crosslingual.translate import (
        CachedTranslator,
        IdentityTranslator,
        PolicyTranslator,
        TranslationCache,
    )
    from crosearch.data.benchmark import build_benchmark
    from crosearch.io import atomic_write_json
    from crosearch.models import load_policy
    from crosearch.retrieval.local import IndexSettings, LocalRetriever, build_index

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    policy = load_policy(ModelConfig(name=args.model))
    model, tokenizer = policy.model, policy.tokenizer
    load_s = time.perf_counter() - t0
    cache_file = work / "translations.sqlite"
    if not args.keep_cache:  # cold timings need an empty cache
        for suffix in ("", "-wal", "-shm"):
            Path(str(cache_file) + suffix).unlink(missing_ok=True)
    policy_backend = PolicyTranslator(model, tokenizer, model_id=args.model, batch_size=8, max_new_tokens=48)
    cached_policy = CachedTranslator(policy_backend, TranslationCache(cache_file))
    translators = {
        "xl-none": IdentityTranslator(),
        "xl-policy-q": cached_policy,
        "xl-policy": cached_policy,
        "xl-aligned": IdentityTranslator(),
    }
    results: dict = {"args": vars(args), "model_load_s": round(load_s, 1), "settings": {}}

    for setting in args.settings:
        bench = build_benchmark(DataConfig(setting=setting, passages="sentences", seed=args.seed))
        index_dir = work / f"index-{setting}"
        build_index(
            bench.collection,
            index_dir,
            IndexSettings(dense_model=args.dense_model, dense_cache_dir=args.dense_cache),
            progress=False,
        )
        retriever = LocalRetriever(index_dir)
        questions = sample_questions(bench.test, args.langs, args.per_lang, args.seed)
        res_setting: dict = {}
        for strategy in args.strategies:
            name = "crosslingual" if strategy.startswith("xl-") else strategy
            integ = Integrator(
                retriever,
                name,
                translator=translators.get(strategy),
                tokenizer=tokenizer,
                target_langs=args.targets,
                token_budget=args.budget,
                per_lang_k=args.concat_per_lang if name == "concat" else None,
                dedup_threshold=1.0 if strategy == "xl-policy-q" else args.dedup_threshold,
                render="original" if strategy == "xl-policy-q" else "translate",
                ranking="aligned" if strategy == "xl-aligned" else "rrf",
            )
            queries = [IntegrationQuery(q.question, q.lang, frozenset(q.exclude)) for q in questions]
            timings = {}
            evidence = []
            for phase in ("cold", "warm"):
                evidence = []
                start = time.perf_counter()
                for j in track(range(0, len(queries), args.batch), f"{setting} {strategy} {phase}"):
                    evidence += integ.gather(queries[j : j + args.batch], args.k)
                timings[phase] = (time.perf_counter() - start) / len(queries)
            per_lang: dict[str, dict] = {}
            dup_total = dup_same = 0
            for q, ev in zip(questions, evidence):
                row = per_lang.setdefault(q.lang, {"recall": [], "answer": [], "tokens": [], "foreign": []})
                row["recall"].append(any(p.paragraph == q.paragraph for p in ev.passages))
                row["answer"].append(any(a and a.lower() in ev.body.lower() for a in q.answers))
                row["tokens"].append(ev.trace.tokens)
                row["foreign"].append(sum(p.lang != q.lang for p in ev.passages))
                paragraph_of = {p.doc_id: p.paragraph for p in ev.passages}
                for d in ev.trace.duplicates:
                    dup_total += 1
                    dropped_par = d["dropped"].split("/")[1] if "/" in d["dropped"] else None
                    kept_par = paragraph_of.get(d["kept"]) or (d["kept"].split("/")[1] if "/" in d["kept"] else None)
                    dup_same += dropped_par is not None and dropped_par == kept_par
            summary = {
                lang: {
                    "recall": round(statistics.mean(v["recall"]), 3),
                    "answer_in_evidence": round(statistics.mean(v["answer"]), 3),
                    "tokens": round(statistics.mean(v["tokens"]), 1),
                    "foreign_passages": round(statistics.mean(v["foreign"]), 2),
                }
                for lang, v in per_lang.items()
            }
            summary["avg"] = {
                key: round(statistics.mean(s[key] for s in summary.values()), 3)
                for key in ("recall", "answer_in_evidence", "tokens", "foreign_passages")
            }
            summary["s_per_search_cold"] = round(timings["cold"], 3)
            summary["s_per_search_warm"] = round(timings["warm"], 4)
            if name == "crosslingual":
                summary["duplicates_dropped"] = dup_total
                summary["duplicates_same_paragraph"] = dup_same
            res_setting[strategy] = summary
            print(
                setting,
                strategy,
                json.dumps(summary["avg"]),
                "cold s/search",
                summary["s_per_search_cold"],
                "dups",
                summary.get("duplicates_dropped"),
                summary.get("duplicates_same_paragraph"),
                flush=True,
            )
            results["settings"][setting] = res_setting
            results["policy_translator"] = {
                "texts_translated": policy_backend.texts_translated,
                "generate_s": round(policy_backend.seconds, 1),
                "fallbacks": policy_backend.fallbacks,
            }
            atomic_write_json(args.out, results)  # partial results survive an interrupted run
        retriever.close()
    results["total_s"] = round(time.perf_counter() - t0, 1)
    atomic_write_json(args.out, results)
    print_table(results)


def print_table(results: dict) -> None:
    """A markdown table of recall / answer coverage / tokens / time per setting and strategy."""
    langs = results["args"]["langs"]
    print(
        "| setting | strategy | "
        + " | ".join(f"R {ln}" for ln in langs)
        + " | R avg | answer avg | tokens | s/search cold | s/search warm | dups (same par.) |"
    )
    print("|" + "---|" * (len(langs) + 8))
    for setting, strategies in results["settings"].items():
        for strategy, s in strategies.items():
            dups = f"{s['duplicates_dropped']} ({s['duplicates_same_paragraph']})" if "duplicates_dropped" in s else "-"
            print(
                f"| {setting} | {strategy} | "
                + " | ".join(f"{s[ln]['recall']:.2f}" for ln in langs)
                + f" | {s['avg']['recall']:.3f} | {s['avg']['answer_in_evidence']:.3f} | {s['avg']['tokens']:.0f}"
                f" | {s['s_per_search_cold']:.3f} | {s['s_per_search_warm']:.4f} | {dups} |"
            )


if __name__ == "__main__":
    main()
