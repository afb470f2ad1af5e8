"""Shared fixtures: the `flare` CLI (the oracle for labels and scores), phantom CTs with exact
labels, and the phantom model committed in crates/flare-pipeline/tests/fixtures.

The CLI and the phantom writer are built with cargo (profile `$FLARE_CARGO_PROFILE`, default
`dev`, which `cargo test --workspace` has built already in CI); `$FLARE_BIN` names a ready
`flare` binary instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "crates" / "flare-pipeline" / "tests" / "fixtures"


def _cargo_out(kind: str, name: str) -> Path:
    profile = os.environ.get("FLARE_CARGO_PROFILE", "dev")
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--no-deps", "--format-version", "1"],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout
    )
    folder = "debug" if profile == "dev" else profile
    base = Path(meta["target_directory"]) / folder
    return base / name if kind == "bin" else base / "examples" / name


@pytest.fixture(scope="session")
def built() -> dict:
    """Builds the `flare` binary and the phantom example once per session."""
    profile = os.environ.get("FLARE_CARGO_PROFILE", "dev")
    subprocess.run(
        # --workspace: features unified as `cargo test --workspace` unifies them, so in CI
        # these are the artifacts it built, not a second build.
        ["cargo", "build", "--quiet", "--profile", profile, "--workspace", "--bin", "flare",
         "--example", "phantoms"],
        cwd=ROOT, check=True,
    )
    flare_bin = Path(os.environ["FLARE_BIN"]) if os.environ.get("FLARE_BIN") else _cargo_out("bin", "flare")
    return {"flare": flare_bin, "phantoms": _cargo_out("example", "phantoms")}


@pytest.fixture(scope="session")
def flare_cli(built):
    """Runs `flare ARGS...`; returns the completed process (text)."""

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run([str(built["flare"]), *map(str, args)], capture_output=True, text=True)
        if check and p.returncode != 0:
            raise AssertionError(f"flare {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr}")
        return p

    return run


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("flare-py")


@pytest.fixture(scope="session")
def phantom_model(flare_cli, data_dir) -> Path:
    """The committed phantom stages bundled into one two-stage model file."""
    out = data_dir / "phantom.safetensors"
    flare_cli("bundle", "--stage1", FIXTURES / "phantom-stage1.safetensors",
              "--stage2", FIXTURES / "phantom-stage2.safetensors", "--out", out, "--name", "phantom")
    return out


@pytest.fixture(scope="session")
def phantoms(built, data_dir) -> dict:
    """Three phantom CTs (int16 NIfTI written by flare) with true labels: seeds 1000 and 1001
    stored RAS, 1002 stored LPS (the generator stores every third case LPS)."""
    out = data_dir / "phantoms"
    subprocess.run([str(built["phantoms"]), str(out), "3", "1000"], check=True, capture_output=True)
    return {
        "ras": out / "phantom_000_0000.nii.gz",
        "ras2": out / "phantom_001_0000.nii.gz",
        "lps": out / "phantom_002_0000.nii.gz",
        "truth": {n: out / f"phantom_00{i}.nii.gz" for i, n in enumerate(["ras", "ras2", "lps"])},
    }


def rotation(deg_z: float, deg_x: float) -> np.ndarray:
    """A rotation about z, then about x (degrees)."""
    a, b = np.radians(deg_z), np.radians(deg_x)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rx @ rz


@pytest.fixture(scope="session")
def oblique(phantoms, data_dir) -> Path:
    """The RAS phantom's voxels under an oblique affine (rotated 15 degrees about z and 5 about
    x), written by nibabel with both qform and sform: an oblique scan from another writer."""
    import nibabel as nib

    img = nib.load(phantoms["ras"])
    aff = img.affine.copy()
    aff[:3, :3] = rotation(15, 5) @ aff[:3, :3]
    out = nib.Nifti1Image(np.asanyarray(img.dataobj).astype(np.int16), aff)
    out.set_qform(aff, code=1)
    out.set_sform(aff, code=1)
    path = data_dir / "oblique_0000.nii.gz"
    nib.save(out, path)
    return path


@pytest.fixture(scope="session")
def scaled(phantoms, data_dir) -> Path:
    """The LPS phantom stored as uint16 with scl_slope 1, scl_inter -1024 (as many CT exports
    store HU), written by nibabel."""
    import nibabel as nib

    img = nib.load(phantoms["lps"])
    hu = np.asanyarray(img.dataobj).astype(np.int32)
    out = nib.Nifti1Image((hu + 1024).astype(np.uint16), img.affine, header=img.header.copy())
    out.set_data_dtype(np.uint16)
    out.header.set_slope_inter(1.0, -1024.0)
    path = data_dir / "scaled_0000.nii.gz"
    nib.save(out, path)
    return path


def cli_segment(flare_cli, scan: Path, model: Path | None, out: Path) -> tuple[np.ndarray, dict]:
    """Segments with the CLI; returns the written labels (via nibabel) and the step times the
    CLI printed."""
    import nibabel as nib

    args = ["segment", "-i", scan, "-o", out, "--overwrite"]
    if model is not None:
        args += ["--model", model]
    p = flare_cli(*args)
    steps = {}
    line = p.stdout.strip().splitlines()[-1]
    steps_text = line.rsplit("|", 1)[1].strip()
    assert steps_text.endswith(" s"), line
    for part in steps_text[:-2].split(","):
        name, secs = part.strip().rsplit(" ", 1)
        steps[name] = float(secs)
    return np.asanyarray(nib.load(out).dataobj), steps


def pytest_report_header(config):
    return f"flare-py tests: python {sys.version.split()[0]}, root {ROOT}"


@pytest.fixture(scope="session")
def timer():
    return time.perf_counter
