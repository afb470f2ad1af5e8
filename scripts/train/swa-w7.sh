#!/usr/bin/env bash
# Run W7 (crates/flare-train/TRAINING.md, session 9): the built-in stage 2 continued in bf16 at
# a constant 3e-4, with its weights copied every 100 steps from step 300 to
# work-data/w7/snap-<step>.safetensors (stochastic weight averaging: their mean is the
# candidate). Resumable: stop it any time and run it again; it picks up from
# work-data/w7/stage2.ckpt (or from a committed checkpoint copied there) and skips the
# snapshots it has. Needs ../shared/data/btcv, two threads and a CPU with avx512_bf16.
#
# Usage: scripts/train/swa-w7.sh > work-data/w7/run.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p flare-cli
flare=target/release/flare
d=work-data/w7
mkdir -p "$d"
common=(--threads 2 train --data "${FLARE_SHARED:-../shared}/data/btcv"
  --val-names btcv_0031,btcv_0033 --out "$d/stage2.safetensors" --cache work-data/cache
  --checkpoint-minutes 4)
for s in 300 400 500 600 700 800 900 1000; do
  [ -f "$d/snap-$s.safetensors" ] && continue
  if [ -f "$d/stage2.ckpt" ]; then
    "$flare" "${common[@]}" --resume "$d/stage2.ckpt" --stop-at "$s"
  else
    "$flare" "${common[@]}" --stage 2 --init builtin --lr 3e-4 --warmup 30 --steps 1000 \
      --val-every 100 --seed 17 --precision bf16 --config scripts/train/constant-3e-4.json \
      --stop-at "$s"
  fi
  cp "$d/stage2.safetensors" "$d/snap-$s.safetensors"
done
