#!/usr/bin/env bash
# Issue 11: how far the phantom run of scripts/bench/bf16_phantom.sh moves in plain fp32 when
# its weights are disturbed once, by the least amount, after its first step: the yardstick for
# the fp32-vs-bf16 differences that script prints. Two fp32 runs resumed from the step-1
# checkpoint of the same run (same data, seed, schedule, plan): one with every weight moved by
# one ulp (the next fp32 value up), one with every weight rounded to bf16 once. Each is
# compared with the undisturbed fp32 run of bf16_phantom.sh (flare's runs are bit-exact across
# thread counts, and a resume is exact, so that run is the undisturbed continuation).
#
#   scripts/bench/bf16_phantom_control.sh WORK_DIR [STEPS]
#
# WORK_DIR is the folder bf16_phantom.sh wrote (it needs WORK_DIR/fp32/m.log.csv, data, cache
# and stage1.json); STEPS must be the same as there (default 1500). Needs python3 with numpy
# and safetensors.
set -euo pipefail
cd "$(dirname "$0")/../.."
work="${1:?usage: $0 WORK_DIR [STEPS]}"
steps="${2:-1500}"
[[ -f "$work/fp32/m.log.csv" ]] || { echo "$work/fp32/m.log.csv missing: run scripts/bench/bf16_phantom.sh $work $steps first" >&2; exit 2; }
nice cargo build --release -q -p flare-cli
flare="${CARGO_TARGET_DIR:-target}/release/flare"
ctl="$work/control"
rm -rf "$ctl" && mkdir -p "$ctl"
"$flare" --threads 1 train --data "$work/data" --val-names phantom_022,phantom_023 \
  --out "$ctl/base/m.safetensors" --cache "$work/cache" --stage 1 --steps "$steps" --stop-at 1 \
  --lr 5e-3 --val-every 100 --config "$work/stage1.json" --seed 0 --precision fp32 > "$ctl/base.log"
python3 - "$ctl" <<'PY'
import os, sys
import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
ctl = sys.argv[1]
src = f"{ctl}/base/m.ckpt"
with safe_open(src, "np") as f:
    meta = f.metadata()
tensors = load_file(src)
def to_bf16(x):  # round to nearest even, as flare_engine::bf16_round
    b = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return (((b + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)
def one_ulp(x):
    return np.nextafter(x, np.float32(np.inf)).astype(np.float32)
for name, f in [("ulp", one_ulp), ("round", to_bf16)]:
    os.makedirs(f"{ctl}/{name}", exist_ok=True)
    # "p." tensors are the weights; the AdamW moments ("m.", "v.") are left as they are.
    out = {k: (f(v) if k.startswith("p.") else v) for k, v in tensors.items()}
    save_file(out, f"{ctl}/{name}/m.ckpt", metadata=meta)
PY
for p in ulp round; do
  nice "$flare" --threads 1 train --data "$work/data" --val-names phantom_022,phantom_023 \
    --out "$ctl/$p/m.safetensors" --cache "$work/cache" --resume "$ctl/$p/m.ckpt" \
    --checkpoint-minutes 10 > "$ctl/$p.log" 2>&1 &
done
wait
for p in ulp round; do
  python3 scripts/bench/bf16_curves.py "$work/fp32/m.log.csv" "$ctl/$p/m.log.csv"
done
