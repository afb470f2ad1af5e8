#!/usr/bin/env bash
# The Python package's tests: builds and installs flare-ct from this checkout into python3
# (maturin from PyPI as the build backend), then runs crates/flare-py/tests with pytest. The
# tests compare with the `flare` CLI, which they build with cargo (profile $FLARE_CARGO_PROFILE,
# default dev: already built by `cargo test --workspace`).
#
# The package is built with the dev profile here too (MATURIN_PEP517_ARGS; a user's
# `pip install crates/flare-py` builds release): it shares the workspace's target/debug with
# `cargo test`, so CI compiles little more than the extension itself.
set -euo pipefail
cd "$(dirname "$0")/../.."
pip=(python3 -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" numpy nibabel pytest
MATURIN_PEP517_ARGS="${MATURIN_PEP517_ARGS---profile dev}" \
  "${pip[@]}" --force-reinstall --no-deps crates/flare-py
python3 -m pytest -q -rs crates/flare-py/tests "$@"
