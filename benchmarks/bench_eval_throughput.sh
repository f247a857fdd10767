#!/usr/bin/env bash
# Search-agent evaluation throughput (questions per second, model loading excluded) of this
# checkout against a baseline commit, in one run, on the same questions, translation cache warm.
#
#   bash benchmarks/bench_eval_throughput.sh                 # baseline: cd4619c (main before the speed work)
#   BASE=<rev> PER_LANG=3 ROUNDS=2 bash benchmarks/bench_eval_throughput.sh
#   BATCH=32 PER_LANG=4 bash benchmarks/bench_eval_throughput.sh   # questions per engine call, both sides
#
# The baseline runs from a temporary git worktree with this checkout's virtual environment. A
# first pass of this checkout fills the translation cache (policy translations of queries), so
# both sides measure generation, retrieval and integration, not translation. Rounds alternate
# baseline / head so that a change of machine load hits both. Seconds per question come from the
# predictions' own `seconds` (each question's share of its batch's wall time), which both
# versions write; q/s = questions / sum(seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-$ROOT/.venv/bin/python}
BASE=${BASE:-cd4619c}
PER_LANG=${PER_LANG:-3}
ROUNDS=${ROUNDS:-2}
OUT=${OUT:-runs/bench-eval}
ADAPTER=${ADAPTER:-runs/sft/final}
BATCH=${BATCH:-8}  # eval.batch_size and agent.batch_size on both sides
mkdir -p "$OUT"
WT=$(mktemp -d)
trap 'git -C "$ROOT" worktree remove --force "$WT" >/dev/null 2>&1 || true' EXIT
git worktree add --detach "$WT" "$BASE" >/dev/null

[ -f runs/benchmark/meta.json ] || "$PY" -m crosearch data build -o runs/benchmark --setting full
[ -f runs/index/manifest.json ] || "$PY" -m crosearch index --collection runs/benchmark --out runs/index

# The search agent of configs/grpo-cpu.yaml (warm-started), crosslingual integration, greedy.
COMMON=(-p search-agent -b runs/benchmark --index runs/index --config configs/grpo-cpu.yaml
        --set model.adapter="$ADAPTER" --set crosslingual.strategy=crosslingual
        --set crosslingual.target_langs=[en] --set crosslingual.cache_path="$ROOT/$OUT/translations.sqlite"
        --set eval.temperature=0.0 --set eval.batch_size="$BATCH" --set agent.batch_size="$BATCH"
        --per-lang "$PER_LANG" --quiet)

run() {  # run <label> <src dir> <out dir>
  rm -rf "$3"
  PYTHONPATH="$2/src" "$PY" -m crosearch eval qa "${COMMON[@]}" -o "$3" > "$3.log" 2>&1 || {
    echo "eval failed: $1 (log: $3.log)"; tail -20 "$3.log"; exit 1; }
}

echo "warm-up (fills the translation cache)"
run warmup "$ROOT" "$OUT/warmup"
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r: baseline $BASE"; run base "$WT" "$OUT/base-$r"
  echo "round $r: head";          run head "$ROOT" "$OUT/head-$r"
done

"$PY" - "$OUT" "$ROUNDS" "$BASE" "$BATCH" <<'PY'
import json, os, sys
from pathlib import Path

out, rounds, base, batch = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])

def qps(d: Path) -> tuple[float, int, float]:
    rows = [json.loads(x) for x in (d / "predictions.jsonl").read_text().splitlines() if x.strip()]
    secs = sum(float(r["seconds"]) for r in rows)
    searches = sum(float(r.get("searches") or 0) for r in rows) / len(rows)
    return len(rows) / secs, len(rows), searches

result = {"baseline": base, "batch_size": batch, "load_average": os.getloadavg(), "rounds": []}
for r in range(1, rounds + 1):
    (bq, n, bs), (hq, _, hs) = qps(out / f"base-{r}"), qps(out / f"head-{r}")
    result["rounds"].append({"questions": n, "base_qps": bq, "head_qps": hq, "ratio": hq / bq,
                             "base_searches": bs, "head_searches": hs})
    print(f"round {r}: {n} questions, baseline {bq:.3f} q/s, head {hq:.3f} q/s, ratio {hq / bq:.2f}x "
          f"(searches/q {bs:.2f} vs {hs:.2f})")
(out / "result.json").write_text(json.dumps(result, indent=2))
print(f"load average now: {os.getloadavg()}; result: {out / 'result.json'}")
PY
