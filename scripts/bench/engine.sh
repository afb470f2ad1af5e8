#!/usr/bin/env bash
# The whole-U-Net engine benchmark of issue 4, both sides in one go: flare (per-layer table,
# lean forward, training step) then PyTorch and ONNX Runtime on the same weights and threads,
# ending with the one-line summary `engine: unet forward flare=... ceiling_pct=...` and, on a CPU
# with avx512_bf16 (issue 11), a second line `engine-bf16: unet forward flare=<s> pytorch=<s>
# train_step flare=<s> pytorch=<s>` (flare's bf16 convolutions; PyTorch under
# torch.autocast("cpu", dtype=torch.bfloat16), same weights and threads); before them, the peak
# memory of lean inference at 160^3.
#
# Usage: scripts/bench/engine.sh [--size 128] [--threads 2] [--reps 3] [--train-reps 2]
# Needs python3 with torch, safetensors, onnxruntime (and onnx) for the comparison columns.
# Run on a quiet machine: the load average is printed at the start of the table.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p flare-model --example engine_bench --example infer_memory
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
threads=2
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  if [[ "${args[$i]}" == "--threads" ]]; then threads="${args[$((i + 1))]}"; fi
done
target/release/examples/infer_memory --size 160 --threads "$threads"
target/release/examples/engine_bench --out "$out" "$@"
