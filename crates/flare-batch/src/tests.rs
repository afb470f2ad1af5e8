//! Gathering, on output folders laid out by hand (every situation a killed part can leave).

use std::path::Path;

use flare_testkit::TempDir;

use flare_labels::{Label, LabelSet};

use crate::*;

fn planned(t: &TempDir, names: &[&str]) -> Vec<PlannedCase> {
    names
        .iter()
        .map(|n| PlannedCase {
            name: n.to_string(),
            input: t.join(&format!("in/{n}_0000.nii.gz")),
            output: t.join(&format!("out/{n}.nii.gz")),
        })
        .collect()
}

fn record(case: &PlannedCase, status: RecordStatus, part: Part) -> CaseRecord {
    let mut r = CaseRecord::new(&case.name, &case.input, &case.output, status, part);
    r.seconds = Some(2.0);
    r.peak_rss_mb = Some(100.0);
    if status != RecordStatus::Failed {
        r.volumes_ml = Some([1.0, 2.0, 3.0, 4.0].into());
    } else {
        r.error = Some(format!("{}: gzip stream truncated", case.input.display()));
    }
    r
}

/// "Reads" a label map: its volumes are its bytes' length, or an error for "junk".
fn fake_volumes(p: &Path) -> std::result::Result<Vec<f64>, String> {
    let bytes = std::fs::read(p).map_err(|e| e.to_string())?;
    if bytes == b"junk" {
        return Err("wrong magic".to_string());
    }
    Ok(vec![bytes.len() as f64, 0.0, 0.0, 0.0])
}

#[test]
fn every_state_a_killed_part_can_leave_is_named() {
    let t = TempDir::new("batch-gather");
    let out = t.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let cases = planned(
        &t,
        &[
            "done",
            "unrecorded",
            "failed",
            "never",
            "gone",
            "retried",
            "broken",
        ],
    );
    let records = Records::of_output(&out);
    let part = Part::new(0, 4).unwrap();
    let by = |n: &str| cases.iter().find(|c| c.name == n).unwrap();
    // Done: map and record (with a plausibility warning).
    std::fs::write(&by("done").output, b"map").unwrap();
    let mut done = record(by("done"), RecordStatus::Done, part);
    done.warnings = vec!["no spleen found".to_string()];
    records.write(&done).unwrap();
    // Map written, part killed before its record.
    std::fs::write(&by("unrecorded").output, b"mapmap").unwrap();
    // Failed.
    records
        .write(&record(by("failed"), RecordStatus::Failed, part))
        .unwrap();
    // Record says done, map deleted since.
    records
        .write(&record(by("gone"), RecordStatus::Done, part))
        .unwrap();
    // Failed once, then written by a rerun that was killed before its record.
    records
        .write(&record(by("retried"), RecordStatus::Failed, part))
        .unwrap();
    std::fs::write(&by("retried").output, b"m").unwrap();
    // Something unreadable under a case's output name.
    std::fs::write(&by("broken").output, b"junk").unwrap();
    // A record of a case no longer planned, and a temporary file of a killed write.
    let mut stray = record(by("done"), RecordStatus::Done, part);
    stray.case = "removed".to_string();
    records.write(&stray).unwrap();
    std::fs::write(out.join(".never.nii.gz.123-0.tmp"), b"half").unwrap();

    let g = gather(&cases, &out, &LabelSet::flare21(), &mut fake_volumes).unwrap();
    let state = |n: &str| &g.cases.iter().find(|c| c.case.name == n).unwrap().state;
    assert_eq!(state("done"), &CaseState::Complete);
    assert_eq!(state("unrecorded"), &CaseState::Complete);
    assert_eq!(state("retried"), &CaseState::Complete);
    assert!(
        matches!(state("failed"), CaseState::Failed(e) if e.contains("gzip stream truncated")),
        "{:?}",
        state("failed")
    );
    assert!(matches!(state("never"), CaseState::Missing(_)));
    assert!(matches!(state("gone"), CaseState::Missing(why) if why.contains("is gone")));
    assert!(
        matches!(state("broken"), CaseState::Failed(e) if e.contains("wrong magic")),
        "{:?}",
        state("broken")
    );
    assert_eq!((g.complete(), g.failed(), g.missing()), (3, 2, 2));
    // Volumes from the record where it has them, else read from the map; warnings from the
    // record.
    let row = |case: &str, volumes_ml, warnings: &[&str]| VolumeRow {
        case: case.to_string(),
        volumes_ml,
        warnings: warnings.iter().map(|w| w.to_string()).collect(),
    };
    assert_eq!(
        g.volume_rows(),
        [
            row("done", vec![1.0, 2.0, 3.0, 4.0], &["no spleen found"]),
            row("unrecorded", vec![6.0, 0.0, 0.0, 0.0], &[]),
            row("retried", vec![1.0, 0.0, 0.0, 0.0], &[]),
        ]
    );
    assert_eq!(g.part_count, Some(4));
    assert_eq!(g.stray_records, ["removed"]);
    assert_eq!(g.leftovers, [out.join(".never.nii.gz.123-0.tmp")]);
    // The index: missing cases shown as failures that say so; times only from real runs.
    let entries = g.report_entries(None);
    assert_eq!(entries.len(), 7);
    let e = entries.iter().find(|e| e.name == "never").unwrap();
    assert!(
        matches!(&e.status, flare_report::CaseStatus::Failed(m) if m.starts_with("missing: ")),
        "{:?}",
        e.status
    );
    let e = entries.iter().find(|e| e.name == "done").unwrap();
    assert_eq!(
        (e.status.clone(), e.wall_s),
        (flare_report::CaseStatus::Done, Some(2.0))
    );
    assert_eq!(e.warnings, ["no spleen found"]);
    // Gathering writes nothing.
    let mut listing: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listing.sort();
    assert_eq!(
        listing,
        [
            ".flare-records",
            ".never.nii.gz.123-0.tmp",
            "broken.nii.gz",
            "done.nii.gz",
            "retried.nii.gz",
            "unrecorded.nii.gz"
        ]
    );
}

#[test]
fn records_that_disagree_on_the_part_count_give_none() {
    let t = TempDir::new("batch-gather-counts");
    let out = t.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let cases = planned(&t, &["a", "b", "c"]);
    let records = Records::of_output(&out);
    for (c, n) in cases.iter().zip([4, 2, 4]) {
        std::fs::write(&c.output, b"map").unwrap();
        records
            .write(&record(c, RecordStatus::Done, Part::new(0, n).unwrap()))
            .unwrap();
    }
    let g = gather(&cases, &out, &LabelSet::flare21(), &mut fake_volumes).unwrap();
    assert_eq!(g.part_count, None);
    assert_eq!(g.complete(), 3);
    // No output folder at all: everything missing, nothing created.
    let nowhere = t.join("nowhere");
    let elsewhere: Vec<PlannedCase> = cases
        .iter()
        .map(|c| PlannedCase {
            output: nowhere.join(format!("{}.nii.gz", c.name)),
            ..c.clone()
        })
        .collect();
    let g = gather(
        &elsewhere,
        &nowhere,
        &LabelSet::flare21(),
        &mut fake_volumes,
    )
    .unwrap();
    assert_eq!(g.missing(), 3);
    assert!(!nowhere.exists());
}

#[test]
fn volumes_csv_quotes_odd_names() {
    let row = |case: &str, volumes_ml, warnings: &[&str]| VolumeRow {
        case: case.to_string(),
        volumes_ml,
        warnings: warnings.iter().map(|w| w.to_string()).collect(),
    };
    let csv = volumes_csv(
        &LabelSet::flare21(),
        &[
            row("a", vec![1.0, 2.5, 3.25, 0.0], &[]),
            row(
                "b,\"c\"",
                vec![0.0; 4],
                &["no liver found", "kidneys 3 mL, smaller"],
            ),
        ],
    );
    assert_eq!(
        csv,
        "case,liver_ml,kidney_ml,spleen_ml,pancreas_ml,warnings\n\
         a,1.000,2.500,3.250,0.000,\n\
         \"b,\"\"c\"\"\",0.000,0.000,0.000,0.000,\"no liver found; kidneys 3 mL, smaller\"\n"
    );
}

/// Another label set: the CSV's columns are its organs', records store its organs' volumes
/// under their own keys, and a record made for another set is not taken for this one's.
#[test]
fn another_label_set_names_columns_and_record_keys() {
    let set = LabelSet::new(vec![
        Label::background(),
        Label::organ(1, "tumour"),
        Label {
            display_name: "renal cyst".into(),
            ..Label::organ(2, "cyst")
        },
    ])
    .unwrap();
    let rows = [VolumeRow {
        case: "a".into(),
        volumes_ml: vec![1.5, 0.25],
        warnings: vec![],
    }];
    assert_eq!(
        volumes_csv(&set, &rows),
        "case,tumour_ml,cyst_ml,warnings\na,1.500,0.250,\n"
    );
    let v = OrganVolumes::new(&set, &[1.5, 0.25]);
    let json = serde_json::to_string(&v).unwrap();
    assert_eq!(json, r#"{"tumour_ml":1.5,"renal_cyst_ml":0.25}"#);
    let back: OrganVolumes = serde_json::from_str(&json).unwrap();
    assert_eq!(back.for_labels(&set), Some(vec![1.5, 0.25]));
    assert_eq!(back.for_labels(&LabelSet::flare21()), None);
    // A record from before label sets: FLARE21's four keys, in its order.
    let old: OrganVolumes = serde_json::from_str(
        r#"{"liver_ml":1500.0,"kidneys_ml":300.0,"spleen_ml":200.0,"pancreas_ml":80.0}"#,
    )
    .unwrap();
    assert_eq!(old, [1500.0, 300.0, 200.0, 80.0].into());
    assert_eq!(
        old.for_labels(&LabelSet::flare21()),
        Some(vec![1500.0, 300.0, 200.0, 80.0])
    );
}
