#!/bin/sh
# FLARE container entry point: segments every case in the input folder (FLARE naming,
# <case>_0000.nii.gz) into the output folder (<case>.nii.gz), as the challenge ran submissions:
#   docker container run --rm -v $PWD/inputs/:/workspace/inputs/ -v $PWD/outputs/:/workspace/outputs/ flare:latest /bin/bash -c "sh predict.sh"
# The same image runs as a mercure module or a MONAI Deploy application: their folders are
# taken when the FLARE ones are not set.
# Environment overrides (used by the tests, which cannot run Docker):
#   FLARE_INPUTS   input folder            [default: MERCURE_IN_DIR, else MONAI_INPUTPATH,
#                                           else /workspace/inputs]
#   FLARE_OUTPUTS  output folder           [default: MERCURE_OUT_DIR, else MONAI_OUTPUTPATH,
#                                           else /workspace/outputs]
#   FLARE_BIN      the flare binary        [default: flare on PATH, else target/release/flare here]
#   FLARE_MODEL    a two-stage model file  [default: the model built into flare]
#   FLARE_THREADS  worker threads          [default: one per core]
# Exit status: flare's (1 if any case failed; the other cases are still written).
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
inputs="${FLARE_INPUTS:-${MERCURE_IN_DIR:-${MONAI_INPUTPATH:-/workspace/inputs}}}"
outputs="${FLARE_OUTPUTS:-${MERCURE_OUT_DIR:-${MONAI_OUTPUTPATH:-/workspace/outputs}}}"
if [ -n "${FLARE_BIN:-}" ]; then
  flare="$FLARE_BIN"
elif command -v flare >/dev/null 2>&1; then
  flare="$(command -v flare)"
else
  flare="$here/target/release/flare"
fi
set -- segment -i "$inputs" -o "$outputs"
if [ -n "${FLARE_MODEL:-}" ]; then set -- "$@" --model "$FLARE_MODEL"; fi
if [ -n "${FLARE_THREADS:-}" ]; then set -- --threads "$FLARE_THREADS" "$@"; fi
exec "$flare" "$@"
