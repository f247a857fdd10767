"""Throughput of the answer metrics against the plain SQuAD v1.1 logic, in the same run.

The metrics run inside reward functions for every rollout, so their cost matters.
Baseline: the official SQuAD v1.1 normalize/EM/F1 (ASCII-only, no language handling).
Usage: python benchmarks/bench_metrics.py [--langs en,zh,...] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import string
import time
from collections import Counter
from importlib import resources

from crosearch.eval.langid import get_detector
from crosearch.eval.metrics import _analyse, answer_language_match, char3_recall, exact_match, f1_score


def squad_normalize(s: str) -> str:
    s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", s).split())


def squad_em_f1(pred: str, gold: str) -> tuple[float, float]:
    p, g = squad_normalize(pred).split(), squad_normalize(gold).split()
    same = sum((Counter(p) & Counter(g)).values())
    f1 = 0.0 if same == 0 else 2 * same / (len(p) + len(g))
    return float(p == g), f1


def pairs_for(lang: str) -> list[tuple[str, str]]:
    path = resources.files("crosearch") / "resources" / "xquad" / f"xquad.{lang}.json.gz"
    with gzip.open(str(path), "rt", encoding="utf-8") as handle:
        data = json.load(handle)
    out = []
    for article in data["data"]:
        for para in article["paragraphs"]:
            ctx = para["context"]
            for qa in para["qas"]:
                a = qa["answers"][0]
                start = a["answer_start"]
                out.append((ctx[max(0, start - 15) : start + len(a["text"]) + 15], a["text"]))
    return out


def timed(fn, pairs, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        _analyse.cache_clear()  # measure normalisation itself, not cache hits of the previous repeat
        t0 = time.perf_counter()
        for pred, gold in pairs:
            fn(pred, gold)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--langs", default="en,de,zh,ar,hi,ru")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'lang':5} {'pairs':>6} {'squad/s':>9} {'ours/s':>9} {'ratio':>6} {'lang_match ms':>14}")
    for lang in args.langs.split(","):
        pairs = pairs_for(lang)
        base = timed(squad_em_f1, pairs, args.repeat)
        ours = timed(
            lambda p, g, lang=lang: (exact_match(p, [g], lang), f1_score(p, [g], lang), char3_recall(p, [g], lang)),
            pairs,
            args.repeat,
        )
        get_detector("high")
        answer_language_match(pairs[0][0], lang)  # model loading is not part of the per-answer cost
        sample = pairs[:200]
        t0 = time.perf_counter()
        for pred, _ in sample:
            answer_language_match(pred, lang)
        lm_ms = (time.perf_counter() - t0) / len(sample) * 1000
        print(
            f"{lang:5} {len(pairs):6d} {len(pairs) / base:9.0f} {len(pairs) / ours:9.0f} "
            f"{base / ours:6.2f} {lm_ms:14.2f}"
        )


if __name__ == "__main__":
    main()
