"""Throughput of the multi-turn rollout engine against plain ``model.generate``, and its peak memory.

For each batch size B, in one run with one loaded model:

- ``engine``: B search-agent rollouts (the real engine: generate, parse, batched BM25
  search through the integration, insert, repeat, forced answer), greedy; model tokens
  per second = tokens the model wrote (``env_mask`` = 1) / wall time, retrieval included;
- ``generate``: one ``model.generate`` call on the same B prompts that writes exactly the
  same number of tokens per sequence (the engine's mean, ``min_new_tokens`` =
  ``max_new_tokens``), greedy; tokens per second.

The overhead ratio is generate tok/s over engine tok/s (1.0 = no overhead). The engine
pays for prefilling the inserted evidence (with ``agent.kv_cache``, the default, only that;
without it, the whole context each turn), stop-string checks and retrieval.

``--cache`` instead compares the engine with and without the KV cache kept across turns
(``agent.kv_cache``) in one run on the same GRPO-like batch: Q questions x G rollouts
(seeded sampling, up to 3 search turns, batched BM25 over bundled XQuAD articles, built
into a temporary index when ``--benchmark``/``--index`` are not given). It checks that both
give the same tokens and log-probs (to 1e-4) and reports wall time, tokens prefilled and
the speed-up (uncached seconds / cached seconds), with the load average.

``--rss`` instead measures, in a fresh process, peak resident memory for 8 rollouts
grown to 1,024 tokens each (a long real-evidence prompt, then generation to the limit).

    python benchmarks/bench_rollout.py --benchmark runs/bench-gap --index runs/index-gap
    python benchmarks/bench_rollout.py --benchmark runs/bench-gap --index runs/index-gap --rss
    python benchmarks/bench_rollout.py --cache --questions 2 --group 4
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmark", type=Path, help="benchmark directory (crosearch data build)")
    ap.add_argument("--index", type=Path, help="index directory (crosearch index)")
    ap.add_argument("--model", default="bundled", help="bundled, tiny, or a HF path/id")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    ap.add_argument("--max-new-tokens", type=int, default=32, help="tokens per model turn")
    ap.add_argument("--max-turns", type=int, default=2)
    ap.add_argument("--answer-tokens", type=int, default=16)
    ap.add_argument("--rss", action="store_true", help="measure peak RSS of 8 x --rss-tokens rollouts instead")
    ap.add_argument("--rss-tokens", type=int, default=1024)
    ap.add_argument("--cache", action="store_true", help="compare the engine with and without the KV cache")
    ap.add_argument("--dtype", default="float32", help="--cache: model dtype (float32 as in configs/grpo-cpu.yaml)")
    ap.add_argument("--questions", type=int, default=2, help="--cache: questions (groups)")
    ap.add_argument("--group", type=int, default=4, help="--cache: rollouts per question (GRPO's G)")
    ap.add_argument(
        "--adapter", default=None, help="--cache: a LoRA adapter (a warm start searches; the base rarely does)"
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="--cache: rounds, the order of off/on alternating, so that warm-up and load drift hit both",
    )
    ap.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    return ap.parse_args()


def load(args: argparse.Namespace):
    from crosearch.agent.pipelines import load_policy_backend
    from crosearch.config import load_config
    from crosearch.data.benchmark import load_benchmark
    from crosearch.retrieval.local import LocalRetriever

    cfg = load_config(
        None,
        [
            f"model.name={args.model}",
            "crosslingual.strategy=mono",
            f"agent.max_new_tokens={args.max_new_tokens}",
            f"agent.max_turns={args.max_turns}",
            f"agent.answer_tokens={args.answer_tokens}",
            "agent.temperature=0",
        ],
    )
    policy = load_policy_backend(cfg.model)
    bench = load_benchmark(args.benchmark)
    return cfg, policy, bench, LocalRetriever(args.index)


def plain_generate(model, prompts: list[list[int]], new_tokens: int, pad: int) -> float:
    """Seconds for one greedy ``generate`` call writing exactly ``new_tokens`` per prompt."""
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, p in enumerate(prompts):
        ids[row, width - len(p) :] = torch.tensor(p)
        mask[row, width - len(p) :] = 1
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=pad,
        )
    seconds = time.perf_counter() - start
    assert out.shape[1] - width == new_tokens
    return seconds


def throughput(args: argparse.Namespace) -> list[dict]:
    from crosearch.agent.pipelines import Pipeline
    from crosearch.eval.qa import sample_questions

    cfg, policy, bench, retriever = load(args)
    pool = sample_questions(bench.test, None, None, seed=0)
    results = []
    for b in args.batches:
        run_cfg = cfg.model_copy(update={"agent": cfg.agent.model_copy(update={"batch_size": b})})
        pipe = Pipeline("search-agent", policy, retriever, run_cfg, temperature=0.0)
        questions = pool[:b]
        start = time.perf_counter()
        outputs = pipe.run(questions)
        engine_s = time.perf_counter() - start
        tokens = sum(sum(o.rollout.env_mask) for o in outputs)
        per_seq = max(1, math.ceil(tokens / b))
        prompts = [o.rollout.prompt_ids for o in outputs]
        gen_s = plain_generate(policy.model, prompts, per_seq, policy.backend.pad_token_id)
        row = {
            "batch": b,
            "engine_tokens": tokens,
            "engine_s": round(engine_s, 2),
            "engine_tok_s": round(tokens / engine_s, 1),
            "generate_tokens": per_seq * b,
            "generate_s": round(gen_s, 2),
            "generate_tok_s": round(per_seq * b / gen_s, 1),
            "searches": sum(o.searches for o in outputs),
            "inserted_tokens": sum(len(o.rollout.env_mask) - sum(o.rollout.env_mask) for o in outputs),
        }
        row["overhead"] = round(row["generate_tok_s"] / row["engine_tok_s"], 2)
        print(json.dumps(row), flush=True)
        results.append(row)
    return results


def peak_rss(args: argparse.Namespace) -> dict:
    """8 rollouts grown to ``--rss-tokens``: a long prompt of real passages, then one turn up to the limit."""
    from crosearch.agent.engine import RolloutEngine, RolloutRequest
    from crosearch.agent.pipelines import information_block
    from crosearch.agent.prompts import PromptBuilder

    cfg, policy, bench, retriever = load(args)
    loaded_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tok = policy.tokenizer
    total, gen = args.rss_tokens, 128
    agent = cfg.agent.model_copy(
        update={
            "max_total_tokens": total,
            "max_turns": 1,
            "max_new_tokens": gen,
            "answer_tokens": args.answer_tokens,
            "batch_size": 8,
        }
    )
    engine = RolloutEngine(policy.backend, None, agent)
    room = total - gen - args.answer_tokens - 8
    requests = []
    for i, q in enumerate(bench.test[:8]):
        head = PromptBuilder().render(tok, q.question, q.lang)
        passages = [p.text for p in bench.collection[i * 20 : (i + 1) * 20]]
        ids = list(tok(head + information_block("\n".join(passages)))["input_ids"])[:room]
        requests.append(RolloutRequest(prompt=ids, lang=q.lang, id=q.id))
    start = time.perf_counter()
    rollouts = engine.run(requests)
    seconds = time.perf_counter() - start
    lengths = [len(r.prompt_ids) + len(r.completion_ids) for r in rollouts]
    return {
        "rollouts": 8,
        "target_tokens": total,
        "lengths": lengths,
        "seconds": round(seconds, 1),
        "rss_after_load_mb": round(loaded_rss),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def cache_comparison(args: argparse.Namespace) -> dict:
    """The engine with ``agent.kv_cache`` off and on, same requests and seed, one loaded model."""
    from crosearch.agent.engine import RolloutEngine, RolloutRequest
    from crosearch.agent.pipelines import load_policy_backend
    from crosearch.agent.prompts import PromptBuilder
    from crosearch.config import load_config
    from crosearch.data.formats import load_squad, squad_examples, squad_passages, xquad_dir
    from crosearch.retrieval.local import LocalRetriever, build_index

    cfg = load_config(
        None,
        [
            f"model.name={args.model}",
            f"model.dtype={args.dtype}",
            "crosslingual.strategy=mono",
            f"agent.max_new_tokens={args.max_new_tokens}",
            f"agent.max_turns={args.max_turns}",
            f"agent.answer_tokens={args.answer_tokens}",
            "agent.temperature=1.0",
            f"agent.batch_size={args.questions * args.group}",
            *([f"model.adapter={args.adapter}"] if args.adapter else []),
        ],
    )
    policy = load_policy_backend(cfg.model)
    with tempfile.TemporaryDirectory() as tmp:
        if args.index is None:
            passages, questions = [], []
            for lang in ("en", "de"):
                squad = load_squad(xquad_dir() / f"xquad.{lang}.json.gz", lang)
                passages += [p for p in squad_passages(squad) if p.article in ("xquad-a00", "xquad-a01")]
                questions += [q for q in squad_examples(squad) if q.article == "xquad-a00"]
            build_index(passages, Path(tmp) / "index", progress=False)
            retriever = LocalRetriever(Path(tmp) / "index")
        else:
            from crosearch.data.benchmark import load_benchmark

            questions, retriever = list(load_benchmark(args.benchmark).test), LocalRetriever(args.index)
        builder = PromptBuilder.from_config(cfg.agent)
        requests = [
            RolloutRequest(builder.encode(policy.tokenizer, q.question, q.lang), q.lang, q.exclude, q.id)
            for q in questions[: args.questions]
            for _ in range(args.group)
        ]
        runs: dict[bool, tuple] = {}
        seconds_by_mode: dict[bool, list[float]] = {False: [], True: []}
        loads: dict[bool, list[float]] = {False: [], True: []}
        for round_index in range(args.rounds):
            for kv in (False, True) if round_index % 2 == 0 else (True, False):
                agent = cfg.agent.model_copy(update={"kv_cache": kv})
                run_cfg = cfg.model_copy(update={"agent": agent})
                engine = RolloutEngine.from_config(policy.backend, retriever, run_cfg, model=policy.model)
                loads[kv].append(os.getloadavg()[0])
                start = time.perf_counter()
                rollouts = engine.run(requests)
                seconds_by_mode[kv].append(time.perf_counter() - start)
                session = engine.last_session
                runs[kv] = (rollouts, getattr(session, "prefilled_tokens", None))
    (plain, _), (cached, prefilled) = runs[False], runs[True]
    plain_s, cached_s = sum(seconds_by_mode[False]), sum(seconds_by_mode[True])
    same = all(a.completion_ids == b.completion_ids for a, b in zip(plain, cached))
    drift = max(
        (abs(x - y) for a, b in zip(plain, cached) for x, y in zip(a.logprobs, b.logprobs)),
        default=0.0,
    )
    return {
        "model": args.model,
        "dtype": str(next(policy.model.parameters()).dtype),
        "rollouts": len(plain),
        "group": args.group,
        "mean_generate_turns": round(
            sum(sum(t.kind == "generate" for t in r.turns) for r in plain) / max(1, len(plain)), 2
        ),
        "searches": sum(r.n_searches for r in plain),
        "model_tokens": sum(sum(r.env_mask) for r in plain),
        "inserted_tokens": sum(len(r.env_mask) - sum(r.env_mask) for r in plain),
        "prefilled_tokens_cached": prefilled,
        "adapter": args.adapter,
        "rounds": args.rounds,
        "uncached_s": round(plain_s, 2),
        "cached_s": round(cached_s, 2),
        "uncached_s_per_round": [round(x, 2) for x in seconds_by_mode[False]],
        "cached_s_per_round": [round(x, 2) for x in seconds_by_mode[True]],
        "speedup": round(plain_s / cached_s, 2),
        "same_tokens": same,
        "max_logprob_diff": drift,
        "load_average": [round(statistics.mean(loads[False]), 2), round(statistics.mean(loads[True]), 2)],
    }


def main() -> None:
    args = parse_args()
    if args.cache:
        result = {"cache": cache_comparison(args)}
    elif args.benchmark is None or args.index is None:
        raise SystemExit("--benchmark and --index are needed (except with --cache)")
    else:
        result = {"rss": peak_rss(args)} if args.rss else {"throughput": throughput(args)}
    print(json.dumps(result, indent=2))
    if args.out is not None:
        from crosearch.io import atomic_write_json

        atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
