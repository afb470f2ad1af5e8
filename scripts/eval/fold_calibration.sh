#!/usr/bin/env bash
# The pancreas calibration of a cross-validation fold (crates/flare-train/TRAINING.md, session
# 12, run F1): the fold's stage 2 bundled with the built-in stage 1 and pancreas offsets b
# (`flare bundle --class-offsets 0,0,0,0,b`), segmented and scored (DSC, NSD at 1 mm) on the
# fold's held-out training scans; prints one row per b.
#
# Usage: scripts/eval/fold_calibration.sh [STAGE2] [CASES]
#   STAGE2  the fold's stage 2 (default: F1's last weights, committed)
#   CASES   comma-separated held-out BTCV numbers (default: F1's, 0005,0009,0023,0027)
# Needs ../shared/data/btcv and python3. Writes work-data/fold-calibration/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/../.."
stage2="${1:-crates/flare-train/checkpoints/stage2-f1-last-2026-12-07.safetensors}"
cases="${2:-0005,0009,0023,0027}"
data="${FLARE_SHARED:-../shared}/data/btcv"
[ -d "$data" ] || { echo "no $data: nothing to calibrate on" >&2; exit 2; }
cargo build --release -q -p flare-cli
f=target/release/flare
o=work-data/fold-calibration
rm -rf "$o" && mkdir -p "$o/in" "$o/gt"
for c in ${cases//,/ }; do
  ln -s "$(realpath "$data/btcv_${c}_0000.nii.gz")" "$o/in/"
  ln -s "$(realpath "$data/btcv_${c}.nii.gz")" "$o/gt/"
done
offsets=(0 0.25 0.5 0.75 1.0 1.5)
for b in "${offsets[@]}"; do
  "$f" bundle --stage1 builtin --stage2 "$stage2" --class-offsets "0,0,0,0,$b" \
    --out "$o/b$b.safetensors" --name "fold-b$b" > /dev/null
  "$f" segment -i "$o/in" -o "$o/pred-b$b" --model "$o/b$b.safetensors" \
    --volumes "$o/volumes-b$b.csv" > /dev/null
  "$f" evaluate --pred "$o/pred-b$b" --gt "$o/gt" --out "$o/scores-b$b.csv" > /dev/null
done
python3 - "$o" "${offsets[@]}" <<'PY'
import csv, sys
o, offsets = sys.argv[1], sys.argv[2:]
for n, b in enumerate(offsets):
    rows = sorted((r for r in csv.DictReader(open(f"{o}/scores-b{b}.csv"))
                   if not r["Name"].startswith(("mean", "Mean", "std"))), key=lambda r: r["Name"])
    if n == 0:
        print("| b | " + " | ".join(r["Name"].split(".")[0] for r in rows)
              + " | mean pancreas DSC | mean DSC liver / kidney / spleen |")
        print("|---" * (len(rows) + 3) + "|")
    mean = lambda k: sum(float(r[k]) for r in rows) / len(rows)
    cells = [f"{float(r['DSC_4']):.3f} / {float(r['NSD-1mm_4']):.3f}" for r in rows]
    print(f"| {b} | " + " | ".join(cells) + f" | {mean('DSC_4'):.4f} | "
          f"{mean('DSC_1'):.3f} / {mean('DSC_2'):.3f} / {mean('DSC_3'):.3f} |")
PY
