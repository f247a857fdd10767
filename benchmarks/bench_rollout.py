"""Throughput of the multi-turn rollout engine against plain ``model.generate``, and its peak memory.

For each batch size B, in one run with one loaded model:

- ``engine``: B search-agent rollouts (the real engine: generate, parse, batched BM25
  search through the integration, insert, repeat, forced answer), greedy; model tokens
  per second = tokens the model wrote (``env_mask`` = 1) / wall time, retrieval included;
- ``generate``: one ``model.generate`` call on the same B prompts that writes exactly the
  same number of tokens per sequence (the engine's mean, ``min_new_tokens`` =
  ``max_new_tokens``), greedy; tokens per second.

The overhead ratio is generate tok/s over engine tok/s (1.0 = no overhead). The engine
pays for re-reading the whole context each turn (no KV reuse across turns), the inserted
evidence, stop-string checks and retrieval.

``--rss`` instead measures, in a fresh process, peak resident memory for 8 rollouts
grown to 1,024 tokens each (a long real-evidence prompt, then generation to the limit).

    python benchmarks/bench_rollout.py --benchmark runs/bench-gap --index runs/index-gap
    python benchmarks/bench_rollout.py --benchmark runs/bench-gap --index runs/index-gap --rss
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmark", type=Path, required=True, help="benchmark directory (crosearch data build)")
    ap.add_argument("--index", type=Path, required=True, help="index directory (crosearch index)")
    ap.add_argument("--model", default="bundled", help="bundled, tiny, or a HF path/id")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    ap.add_argument("--max-new-tokens", type=int, default=32, help="tokens per model turn")
    ap.add_argument("--max-turns", type=int, default=2)
    ap.add_argument("--answer-tokens", type=int, default=16)
    ap.add_argument("--rss", action="store_true", help="measure peak RSS of 8 x --rss-tokens rollouts instead")
    ap.add_argument("--rss-tokens", type=int, default=1024)
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


def main() -> None:
    args = parse_args()
    result = {"rss": peak_rss(args)} if args.rss else {"throughput": throughput(args)}
    print(json.dumps(result, indent=2))
    if args.out is not None:
        from crosearch.io import atomic_write_json

        atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
