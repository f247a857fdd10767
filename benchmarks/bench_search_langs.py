"""What a search-language group's rollouts see: gold-paragraph recall of one search per search language.

In ``train.group_mode: search-langs`` the rollouts of a group ask the same question but aim their
searches at different languages. Before training such groups it is worth knowing how much
evidence each aimed search finds with the question's own text as the query (what a warm-started
policy writes): this script gathers one search per question and per entry of ``--search-langs``
(``self`` = the question's language, the baseline) under each strategy, in the same run, and
reports the share of questions whose inserted evidence holds a passage of the gold paragraph
(any language), with the ratio to ``self``. Integration settings come from ``--config`` (its
``crosslingual`` and ``retrieval`` sections); translation is off (``translator: none``), so no
model is loaded.

    python benchmarks/bench_search_langs.py --config configs/grpo-cpu.yaml \\
        --benchmark runs/gap/benchmark --index runs/gap/index --n 300
"""

from __future__ import annotations

import argparse


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/grpo-cpu.yaml")
    parser.add_argument("--benchmark", required=True, help="a benchmark directory (crosearch data build)")
    parser.add_argument("--index", required=True, help="its index (crosearch index)")
    parser.add_argument("--n", type=int, default=300, help="train questions (seeded sample, not in en or es)")
    parser.add_argument("--search-langs", nargs="+", default=["self", "en", "es"])
    parser.add_argument("--strategies", nargs="+", default=["mono", "crosslingual"])
    return parser.parse_args()


def main() -> None:
    from crosearch.config import load_config
    from crosearch.crosslingual.integration import IntegrationQuery, build_integrator
    from crosearch.data.benchmark import load_benchmark
    from crosearch.models import load_tokenizer
    from crosearch.retrieval.local import load_retriever
    from crosearch.rl.common import select_questions

    args = parse_args()
    bench = load_benchmark(args.benchmark)
    named = {s for s in args.search_langs if s != "self"}
    questions = [q for q in select_questions(bench.train, None, None, 0) if q.lang not in named][: args.n]
    print(f"{len(questions)} train questions of {args.benchmark}, languages {sorted({q.lang for q in questions})}")
    print("| strategy | " + " | ".join(f"search {s}" for s in args.search_langs) + " |")
    print("|---|" + "---|" * len(args.search_langs))
    for strategy in args.strategies:
        overrides = [f"retrieval.index_dir={args.index}", "crosslingual.translator=none"]
        config = load_config(args.config, [*overrides, f"crosslingual.strategy={strategy}"])
        retriever = load_retriever(config)
        integrator = build_integrator(config, retriever, tokenizer=load_tokenizer(config.model, show_progress=False))
        k = config.crosslingual.k or config.retrieval.k
        recall = {}
        for target in args.search_langs:
            aimed = None if target == "self" else target
            queries = [IntegrationQuery(q.question, q.lang, frozenset(q.exclude), search_lang=aimed) for q in questions]
            evidence = integrator.gather(queries, k)
            hits = sum(any(p.paragraph == q.paragraph for p in ev.passages) for q, ev in zip(questions, evidence))
            recall[target] = hits / len(questions)
        base = recall.get("self") or None
        cells = [f"{v:.1%}" + (f" ({v / base:.2f}x)" if base and t != "self" else "") for t, v in recall.items()]
        print(f"| {strategy} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
