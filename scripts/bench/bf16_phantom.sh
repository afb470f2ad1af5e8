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
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
arch = {
    "in_channels": 1, "num_classes": 5, "widths": [4, 8, 16],
    "kernels": [[3, 3, 3]] * 3, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
    "convs_per_block": 2, "deep_supervision": True,
    "norm": {"type": "instance_affine", "eps": 1e-5},
    "activation": {"type": "leaky_relu", "negative_slope": 0.01},
}
aug = {
    "p_rotate": 0.3, "rotate_deg": [[-3, 3], [-3, 3], [-10, 10]],
    "p_scale": 0.5, "scale": [[0.9, 1.1]] * 3,
    "p_elastic": 0.0, "elastic_points": 4, "elastic_sigma": 0.0,
    "p_low_res": 0.0, "low_res": [1.0, 1.0], "p_blur": 0.0, "blur_sigma": [0.5, 0.5],
    "p_gamma": 0.2, "gamma": [0.85, 1.2],
    "p_contrast": 0.2, "contrast": [0.9, 1.1], "brightness": [-0.03, 0.03],
    "p_noise": 0.1, "noise_sigma": [0.0, 0.01],
}
stage1 = {"architecture": arch, "sample": {
    "grid_dhw": [32, 48, 48], "crop": {"WholeScan": {"z_fraction": [0.85, 1.0]}},
    "augment": aug, "foreground_p": 0.3, "intensity_range": [0.0, 1.0]}}
json.dump(stage1, open(f"{work}/stage1.json", "w"), indent=1)
PY
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
