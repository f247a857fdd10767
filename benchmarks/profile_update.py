"""Where the GRPO update's time goes: forward + backward of the per-token log-probs, by operator.

    python benchmarks/profile_update.py --adapter runs/sft/final --out /tmp/profile_update.json

The batch has the shape of a warm-started 3-turn rollout group (by default 4 sequences of 350
prompt + 380 completion tokens, 60 of them model tokens in three runs, the rest inserted evidence).
Both paths run in the same process on the same batch, under bf16 autocast where the trainer would
use it: ``today`` is TRL's fused LM head as GRPOTrainer calls it (every position scored off Triton
devices), ``model-tokens`` is :func:`crosearch.rl.model_token_logps.model_token_logps`. Each is
timed (median of ``--repeat``) and the model-tokens path is profiled with torch.profiler; the top
operators by self CPU time are printed and written with the timings.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path


def batch(rows: int, prompt: int, completion: int, model_tokens: int, vocab: int) -> dict:
    import torch

    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(10, vocab, (rows, prompt + completion), generator=gen)
    attention = torch.ones_like(ids)
    mask = torch.zeros(rows, completion, dtype=torch.long)
    # Three turns: a search, evidence, a second search, evidence, the answer at the end.
    third = model_tokens // 3
    middle = (completion - third) // 2
    mask[:, :third] = 1
    mask[:, middle : middle + third] = 1
    mask[:, completion - (model_tokens - 2 * third) :] = 1
    return {"input_ids": ids, "attention_mask": attention, "score_mask": mask}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--adapter", default="runs/sft/final", help="LoRA adapter to train (the warm start); 'none': a fresh r=16 one"
    )
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--prompt", type=int, default=350)
    parser.add_argument("--completion", type=int, default=380)
    parser.add_argument("--model-tokens", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import torch
    from peft import PeftModel
    from torch.profiler import ProfilerActivity, profile
    from trl.trainer.utils import add_fused_lm_head

    from crosearch.config import ModelConfig
    from crosearch.models import load_policy
    from crosearch.rl.model_token_logps import model_token_logps
    from crosearch.rl.run import train_bf16

    base = load_policy(ModelConfig(name="bundled", dtype="float32")).model
    add_fused_lm_head(base, temperature=1.0, outputs=("log_probs", "entropy"))  # what GRPOTrainer does
    if args.adapter == "none":  # the cost depends on the adapter's shapes, not on its values
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
        model = get_peft_model(base, lora).train()
    else:
        model = PeftModel.from_pretrained(base, args.adapter, is_trainable=True).train()
    bf16 = train_bf16("auto", model)
    data = batch(args.rows, args.prompt, args.completion, args.model_tokens, base.config.vocab_size)
    keep = args.completion

    def today() -> None:
        labels = data["input_ids"].clone()
        labels[:, :-keep] = -100
        out = model(
            input_ids=data["input_ids"], attention_mask=data["attention_mask"], labels=labels, fused_lm_head=True
        )
        logps = out.log_probs[:, -keep:]
        (-(logps * data["score_mask"]).sum()).backward()

    def model_tokens() -> None:
        logps, _ = model_token_logps(
            model.get_base_model(), data["input_ids"], data["attention_mask"], data["score_mask"],
            temperature=1.0, compute_entropy=True,
        )  # fmt: skip
        (-(logps * data["score_mask"]).sum()).backward()

    def timed(step) -> float:  # noqa: ANN001
        model.zero_grad()
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            step()
        return time.perf_counter() - start

    seconds: dict[str, list[float]] = {"today": [], "model-tokens": []}
    for _ in range(args.repeat):  # interleaved: load changes hit both paths alike
        seconds["today"].append(timed(today))
        seconds["model-tokens"].append(timed(model_tokens))
    medians = {k: statistics.median(v) for k, v in seconds.items()}

    model.zero_grad()
    with profile(activities=[ProfilerActivity.CPU]) as prof, torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        model_tokens()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    top = [
        {"op": e.key, "self_s": e.self_cpu_time_total / 1e6, "share": e.self_cpu_time_total / total, "calls": e.count}
        for e in events[: args.top]
    ]
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))
    result = {
        "shape": {k: getattr(args, k) for k in ("rows", "prompt", "completion", "model_tokens")},
        "bf16_autocast": bf16,
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "seconds": seconds,
        "median_seconds": medians,
        "speedup": medians["today"] / medians["model-tokens"],
        "top_ops_model_tokens": top,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        tmp = Path(args.out).with_suffix(".tmp")
        tmp.write_text(text + "\n")
        tmp.replace(args.out)


if __name__ == "__main__":
    main()
