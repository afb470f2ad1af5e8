#!/usr/bin/env bash
# Issue 11: the same phantom training run in fp32 and in bf16 (same data, seed, schedule and
# plan as scripts/fixtures/phantom_model.sh's stage 1), side by side, then both validation-Dice
# curves in one table and the largest difference per organ.
#
#   scripts/bench/bf16_phantom.sh [WORK_DIR] [STEPS]      (default STEPS: 1500, the fixture's)
#
# Each run uses one thread (the two run at once on a 2-core machine); a run is deterministic for
# its seed, precision and thread count. Needs a CPU with avx512_bf16.
set -euo pipefail
cd "$(dirname "$0")/../.."
work="${1:-$(mktemp -d -t flare-bf16-phantom.XXXXXX)}"
steps="${2:-1500}"
mkdir -p "$work"
nice cargo build --release -q -p flare-cli
flare="${CARGO_TARGET_DIR:-target}/release/flare"
[[ -d "$work/data" ]] || nice cargo run --release -q -p flare-testkit --example phantoms -- "$work/data" 24 0
python3 scripts/fixtures/phantom_plans.py "$work"  # stage1.json is the plan used here
# Fill the cache once, so the two runs do not race to write it.
"$flare" --threads 2 train --data "$work/data" --val-names phantom_022,phantom_023 \
  --out "$work/warm/m.safetensors" --cache "$work/cache" --stage 1 --steps 1 --stop-at 1 \
  --config "$work/stage1.json" --seed 0 > /dev/null
for p in fp32 bf16; do
  nice "$flare" --threads 1 train --data "$work/data" --val-names phantom_022,phantom_023 \
    --out "$work/$p/m.safetensors" --cache "$work/cache" --stage 1 --steps "$steps" \
    --lr 5e-3 --val-every 100 --config "$work/stage1.json" --seed 0 --precision "$p" \
    > "$work/$p.log" 2>&1 &
done
wait
python3 scripts/bench/bf16_curves.py "$work/fp32/m.log.csv" "$work/bf16/m.log.csv"
