#!/usr/bin/env bash
# Answer quality and cost of the three integration strategies with the same untrained model
# (bundled Gemma 3 270M, one-shot RAG: one retrieval with the question as the query, then the
# answer), on the full, gap and no-native settings, every language. Resumable: rerun after an
# interruption. Tables: runs/xl-answers/<setting>.md
#   bash benchmarks/crosslingual_answers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CS=${CROSEARCH:-.venv/bin/crosearch}
OUT=runs/xl-answers
PER_LANG=${PER_LANG:-4}
# Benchmarks and indexes: no-native shares the full collection (its questions exclude their
# own-language gold), so it reuses the full index.
[ -f runs/benchmark/meta.json ] || $CS data build -o runs/benchmark --setting full
[ -f runs/bench-gap/meta.json ] || $CS data build -o runs/bench-gap --setting gap
[ -f runs/bench-nonative/meta.json ] || $CS data build -o runs/bench-nonative --setting no-native
[ -f runs/index/manifest.json ] || $CS index build --collection runs/benchmark --out runs/index
[ -f runs/index-gap/manifest.json ] || $CS index build --collection runs/bench-gap --out runs/index-gap
declare -A BENCH=([full]=runs/benchmark [gap]=runs/bench-gap [no-native]=runs/bench-nonative)
declare -A INDEX=([full]=runs/index [gap]=runs/index-gap [no-native]=runs/index)
# crosslingual: the question translated into English by the policy (few-shot), one RRF ranking over
# the question's language and English, duplicates dropped, foreign evidence kept in its language.
COMMON=(--set model.name=bundled --set crosslingual.token_budget=400 --set crosslingual.k=3
        --set crosslingual.target_langs=[en] --set crosslingual.render=original
        --set crosslingual.cache_path=$OUT/translations.sqlite --per-lang "$PER_LANG" --quiet)
for setting in full gap no-native; do
  for p in rag-mono rag-concat rag-crosslingual; do
    [ -f "$OUT/$setting/$p/metrics.json" ] || \
      $CS eval qa -p $p -b "${BENCH[$setting]}" --index "${INDEX[$setting]}" "${COMMON[@]}" -o "$OUT/$setting/$p"
  done
  $CS report "$OUT/$setting"/rag-{mono,concat,crosslingual} \
    --metrics f1,em,evidence_hit,tokens_per_retrieval,seconds -o "$OUT/$setting.md"
done
# The cost of translating foreign evidence with the policy (render=translate), gap setting.
[ -f "$OUT/gap/rag-crosslingual-translated/metrics.json" ] || \
  $CS eval qa -p rag-crosslingual -b runs/bench-gap --index runs/index-gap "${COMMON[@]}" \
    --set crosslingual.render=translate -o "$OUT/gap/rag-crosslingual-translated"
$CS report "$OUT/gap"/rag-{crosslingual,crosslingual-translated} \
  --metrics f1,em,evidence_hit,tokens_per_retrieval,seconds -o "$OUT/gap-translated.md"
