#!/usr/bin/env bash
# Evidence-of-learning run on CPU: warm start, then GRPO, then base / warm start / GRPO on the
# same test sample. Every step is resumable: run the script again after an interruption.
#   bash benchmarks/learning_run.sh            (log: runs/learning/log.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
CS=${CROSEARCH:-.venv/bin/crosearch}
OUT=runs/learning
mkdir -p "$OUT/eval"
SAMPLE=(--benchmark runs/benchmark --langs en,de,es,zh --per-lang 5 --quiet)

[ -f runs/sft/final/adapter_config.json ] || \
  $CS sft --config configs/sft-cpu.yaml ${SFT_STEPS:+--set sft.max_steps=$SFT_STEPS} $([ -d runs/sft ] && echo --resume)
[ -f "$OUT/eval/base/metrics.json" ] || \
  $CS eval qa -p search-agent --config configs/grpo-cpu.yaml --set model.adapter=null "${SAMPLE[@]}" -o "$OUT/eval/base"
[ -f "$OUT/eval/sft/metrics.json" ] || \
  $CS eval qa -p search-agent --config configs/grpo-cpu.yaml --adapter runs/sft/final "${SAMPLE[@]}" -o "$OUT/eval/sft"
[ -f runs/grpo/final/adapter_config.json ] || \
  $CS train --config configs/grpo-cpu.yaml ${GRPO_STEPS:+--set train.max_steps=$GRPO_STEPS} $([ -d runs/grpo ] && echo --resume)
[ -f "$OUT/eval/grpo/metrics.json" ] || \
  $CS eval qa -p search-agent --config configs/grpo-cpu.yaml --adapter runs/grpo/final "${SAMPLE[@]}" -o "$OUT/eval/grpo"
$CS report "$OUT/eval/base" "$OUT/eval/sft" "$OUT/eval/grpo"
