//! `flare convert` on synthetic DICOM series (made with pydicom by
//! `scripts/fixtures/dicom_fixtures.py`): the NIfTI it writes, read back by nibabel, must hold
//! the voxels and affine of SimpleITK's independent conversion of the same series (stored by that
//! script in `crates/flare-dicom/tests/fixtures/expected/*.json`).

use std::process::Command;

use flare_testkit::{TempDir, python_with, run_python, workspace_root};

const COMPARE: &str = r#"
import json, sys
import nibabel as nib, numpy as np
img = nib.load(sys.argv[1])
exp = json.load(open(sys.argv[2]))
vox = np.asarray(img.dataobj, dtype=np.float64)
want = np.array(exp["voxels"], dtype=np.float64).reshape(exp["shape"], order="F")
assert vox.shape == want.shape, (vox.shape, want.shape)
assert np.array_equal(vox, want), np.abs(vox - want).max()
aff = np.array(exp["affine"])
for name, a in (("affine", img.affine), ("qform", img.get_qform()), ("sform", img.get_sform())):
    assert np.allclose(a, aff, atol=1e-5), (name, a, aff)
assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
print("ok", vox.shape)
"#;

fn convert_and_compare(series: &str, expected: &str, uid: Option<&str>) {
    let Some(python) = python_with("convert_dicom", &["nibabel", "numpy"]) else {
        return;
    };
    let root = workspace_root().join("crates/flare-dicom/tests/fixtures");
    let dir = TempDir::new("cli-convert-dicom");
    let out = dir.join(&format!("{expected}.nii.gz"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flare"));
    cmd.arg("convert").arg(root.join(series)).arg(&out);
    if let Some(uid) = uid {
        cmd.arg("--series").arg(uid);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json = root.join("expected").join(format!("{expected}.json"));
    let said = run_python(
        &python,
        COMPARE,
        &[out.to_str().unwrap(), json.to_str().unwrap()],
    );
    assert!(said.starts_with("ok"), "{said}");
}

fn uid_of(expected: &str) -> String {
    let path = workspace_root().join(format!(
        "crates/flare-dicom/tests/fixtures/expected/{expected}.json"
    ));
    let text = std::fs::read_to_string(path).unwrap();
    let start = text.find("\"series_uid\":\"").unwrap() + 14;
    text[start..start + text[start..].find('"').unwrap()].to_string()
}

#[test]
fn shuffled_names_and_instance_numbers() {
    convert_and_compare("shuffled", "shuffled", None);
}

#[test]
fn oblique_series() {
    convert_and_compare("oblique", "oblique", None);
}

#[test]
fn rle_compressed_series() {
    convert_and_compare("rle", "rle", None);
}

#[test]
fn two_series_default_takes_the_largest_and_says_so() {
    convert_and_compare("two_series", "two_series_default", None);
    let dir = TempDir::new("cli-two-series");
    let o = Command::new(env!("CARGO_BIN_EXE_flare"))
        .arg("convert")
        .arg(workspace_root().join("crates/flare-dicom/tests/fixtures/two_series"))
        .arg(dir.join("x.nii.gz"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("2 series found"), "{stderr}");
}

#[test]
fn two_series_chosen_by_uid() {
    let uid = uid_of("two_series_b");
    convert_and_compare("two_series", "two_series_b", Some(&uid));
}
