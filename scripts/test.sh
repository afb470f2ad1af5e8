#!/usr/bin/env bash
# Runs every test of the workspace. Installs the Python packages the tests use as an independent
# oracle (nibabel, SimpleITK, ...); where that fails, the tests that need them skip and say why.
set -uo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt \
  || echo "warning: could not install the Python oracle packages; tests that need them will skip" >&2
set -e
cargo test --workspace
# The Python package (crates/flare-py): built and installed with pip, then its pytest tests,
# which compare it with the CLI built above.
crates/flare-py/test.sh
