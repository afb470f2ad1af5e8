#!/usr/bin/env bash
# Scores a two-stage model end to end (flare segment, then flare evaluate) on the cases we hold
# out of training: BTCV btcv_0031 and btcv_0033 (manual labels; nominal spacing, so only the
# Dice columns mean anything) and ../shared/data/totalseg-example (3 mm, full HU range, labels
# made by TotalSegmentator: a check that the organs are found, not a ground truth).
#
# Usage: scripts/eval/holdout.sh [MODEL] (default: the model built into flare)
# Needs ../shared/data. Writes work-data/eval/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/../.."
data="${FLARE_SHARED:-../shared}/data"
[ -d "$data/btcv" ] || { echo "no $data/btcv: nothing to evaluate" >&2; exit 2; }
cargo build --release -q -p flare-cli
flare=target/release/flare
model=()
[ $# -ge 1 ] && model=(--model "$1")
out=work-data/eval
rm -rf "$out"
for set in btcv totalseg; do mkdir -p "$out/$set/in" "$out/$set/gt"; done
for c in btcv_0031 btcv_0033; do
  ln -s "$(realpath "$data/btcv/${c}_0000.nii.gz")" "$out/btcv/in/${c}_0000.nii.gz"
  ln -s "$(realpath "$data/btcv/${c}.nii.gz")" "$out/btcv/gt/${c}.nii.gz"
done
ln -s "$(realpath "$data/totalseg-example/totalseg_example_0000.nii.gz")" "$out/totalseg/in/"
ln -s "$(realpath "$data/totalseg-example/totalseg_example.nii.gz")" "$out/totalseg/gt/"
for set in btcv totalseg; do
  echo "== $set"
  "$flare" segment -i "$out/$set/in" -o "$out/$set/pred" "${model[@]}" \
    --report "$out/$set/report" --volumes "$out/$set/volumes.csv"
  "$flare" evaluate --pred "$out/$set/pred" --gt "$out/$set/gt" --out "$out/$set/scores.csv"
done
