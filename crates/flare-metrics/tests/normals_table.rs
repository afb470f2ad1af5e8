//! The committed normals table is what `scripts/fixtures/metrics_normals_table.py` generates from
//! the `surface-distance` package (skipped, with the reason printed, when Python lacks it).

use flare_testkit::{python_with, workspace_root};

#[test]
fn committed_table_equals_the_package_table() {
    let Some(python) = python_with(
        "committed_table_equals_the_package_table",
        &["numpy", "surface_distance"],
    ) else {
        return;
    };
    let root = workspace_root();
    let script = root.join("scripts/fixtures/metrics_normals_table.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg("--stdout")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout).unwrap();
    let committed =
        std::fs::read_to_string(root.join("crates/flare-metrics/src/normals_table.rs")).unwrap();
    assert_eq!(
        generated, committed,
        "rerun scripts/fixtures/metrics_normals_table.py"
    );
    assert_eq!(generated.matches("/* ").count(), 256);
}
