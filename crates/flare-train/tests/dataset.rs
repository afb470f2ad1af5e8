//! Dataset discovery, checks and splits on phantoms written by the tests.

mod common;

use common::{lps_grid, phantom, write_case, write_pair};
use flare_testkit::TempDir;
use flare_train::{Dataset, Layout, ProblemKind, SplitSpec, TrainError};
use flare_volume::Geometry;

const SHAPE: [usize; 3] = [20, 18, 12];

#[test]
fn flare_layout_opens_and_passes() {
    let t = TempDir::new("train-flare-ok");
    for n in ["c2", "c1", "c3"] {
        write_case(t.path(), n, SHAPE);
    }
    std::fs::write(t.join("notes.txt"), "not a scan").unwrap();
    let d = Dataset::open(t.path()).unwrap();
    assert_eq!(d.layout(), Layout::Flare);
    let names: Vec<_> = d.cases().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["c1", "c2", "c3"]);
    assert!(d.cases()[0].image.ends_with("c1_0000.nii.gz"));
    assert!(d.cases()[0].label.ends_with("c1.nii.gz"));
    d.check().unwrap();
}

#[test]
fn every_bad_case_is_named_together() {
    let t = TempDir::new("train-bad");
    write_case(t.path(), "good", SHAPE);
    // Unmatched names: an image alone and a label alone.
    let (img, lab) = phantom(lps_grid(SHAPE));
    flare_nifti::write_volume(t.join("lonely_0000.nii.gz"), &img, None).unwrap();
    flare_nifti::write_label_map(t.join("orphan.nii.gz"), &lab).unwrap();
    // Labels outside 0..=4.
    let mut bad = lab.clone();
    bad.data_mut()[0] = 7;
    bad.data_mut()[5] = 9;
    write_pair(t.path(), t.path(), "badlab", &img, &bad);
    // Different grids: another shape, and the same shape shifted by 2 mm.
    let (img2, _) = phantom(lps_grid([20, 18, 13]));
    write_pair(t.path(), t.path(), "shape", &img2, &lab);
    let g = lps_grid(SHAPE);
    let shifted = Geometry::new(
        SHAPE,
        g.spacing_mm(),
        [g.origin_mm()[0] + 2.0, g.origin_mm()[1], g.origin_mm()[2]],
        g.direction(),
    )
    .unwrap();
    let moved = lab.clone().with_geometry(shifted).unwrap();
    write_pair(t.path(), t.path(), "shift", &img, &moved);
    // Unreadable: a truncated label file.
    write_pair(t.path(), t.path(), "broken", &img, &lab);
    let bytes = std::fs::read(t.join("broken.nii.gz")).unwrap();
    std::fs::write(t.join("broken.nii.gz"), &bytes[..bytes.len() / 2]).unwrap();

    let d = Dataset::open(t.path()).unwrap();
    // The grid problems come from headers alone.
    let hdr = d.check_headers();
    let grid_cases: Vec<_> = hdr
        .iter()
        .filter(|p| matches!(p.kind, ProblemKind::GridMismatch { .. }))
        .map(|p| p.case.as_str())
        .collect();
    assert_eq!(grid_cases, ["shape", "shift"]);

    let err = d.check().unwrap_err();
    let TrainError::InvalidDataset { problems, .. } = &err else {
        panic!("{err}");
    };
    let mut cases: Vec<_> = problems.iter().map(|p| p.case.as_str()).collect();
    cases.sort();
    assert_eq!(
        cases,
        ["badlab", "broken", "lonely", "orphan", "shape", "shift"]
    );
    assert!(problems.iter().any(|p| p.kind
        == ProblemKind::BadLabels {
            label: t.join("badlab.nii.gz"),
            values: vec![7, 9]
        }));
    let text = err.to_string();
    assert!(text.contains("6 problem(s)"), "{text}");
    for needle in [
        "lonely: image",
        "has no label file",
        "orphan: label file",
        "has no image",
        "badlab: label values [7, 9] outside 0..=4",
        "shape: image and label are on different grids (shapes [20, 18, 13] and [20, 18, 12]",
        "shift: image and label are on different grids",
        "broken: cannot read",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    // One line per problem after the heading.
    assert_eq!(text.lines().count(), 7, "{text}");
}

#[test]
fn empty_and_unpaired_folders_are_clear_errors() {
    let t = TempDir::new("train-empty");
    let err = Dataset::open(t.path()).unwrap_err();
    assert!(matches!(err, TrainError::EmptyDataset { .. }), "{err}");
    assert!(err.to_string().contains("no .nii or .nii.gz files"));
    let (img, _) = phantom(lps_grid(SHAPE));
    flare_nifti::write_volume(t.join("a_0000.nii.gz"), &img, None).unwrap();
    let err = Dataset::open(t.path()).unwrap_err();
    assert!(
        matches!(err, TrainError::NoPairs { n_files: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("a: image"), "{err}");
    let missing = Dataset::open(t.join("nope")).unwrap_err();
    assert!(matches!(missing, TrainError::Io { .. }));
}

#[test]
fn two_folder_and_nnunet_layouts() {
    let t = TempDir::new("train-layouts");
    let (img, lab) = phantom(lps_grid(SHAPE));
    // Two folders, images without the channel suffix.
    let (i, l) = (t.join("two/images"), t.join("two/labels"));
    std::fs::create_dir_all(&i).unwrap();
    std::fs::create_dir_all(&l).unwrap();
    flare_nifti::write_volume(i.join("x1.nii.gz"), &img, None).unwrap();
    flare_nifti::write_label_map(l.join("x1.nii.gz"), &lab).unwrap();
    let d = Dataset::open(t.join("two")).unwrap();
    assert_eq!(d.layout(), Layout::TwoFolders);
    assert_eq!(d.cases().len(), 1);
    d.check().unwrap();

    // nnU-Net v2: labels by name, no file list.
    let nn = t.join("nn");
    let (i, l) = (nn.join("imagesTr"), nn.join("labelsTr"));
    std::fs::create_dir_all(&i).unwrap();
    std::fs::create_dir_all(&l).unwrap();
    for n in ["a", "b"] {
        write_pair(&i, &l, n, &img, &lab);
    }
    let v2 = r#"{"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1,
        "kidney": 2, "spleen": 3, "pancreas": 4}, "numTraining": 2, "file_ending": ".nii.gz"}"#;
    std::fs::write(nn.join("dataset.json"), v2).unwrap();
    let d = Dataset::open(&nn).unwrap();
    assert_eq!(d.layout(), Layout::NnUnet);
    assert_eq!(d.cases().len(), 2);
    d.check().unwrap();

    // nnU-Net v1: the training list decides, and a listed case that is missing is named.
    let v1 = r#"{"labels": {"0": "background", "1": "liver"}, "training": [
        {"image": "./imagesTr/a.nii.gz", "label": "./labelsTr/a.nii.gz"},
        {"image": "./imagesTr/zz.nii.gz", "label": "./labelsTr/zz.nii.gz"}]}"#;
    std::fs::write(nn.join("dataset.json"), v1).unwrap();
    let d = Dataset::open(&nn).unwrap();
    assert_eq!(d.cases().len(), 1);
    let err = d.check().unwrap_err().to_string();
    assert!(err.contains("zz: dataset.json lists"), "{err}");

    // A label the FLARE task does not have.
    let bad = r#"{"labels": {"background": 0, "liver": 1, "stomach": 5}}"#;
    std::fs::write(nn.join("dataset.json"), bad).unwrap();
    let err = Dataset::open(&nn).unwrap_err();
    assert!(matches!(err, TrainError::DatasetJson { .. }), "{err}");
    assert!(err.to_string().contains("stomach: 5"), "{err}");
}

#[test]
fn splits_are_deterministic() {
    let t = TempDir::new("train-split");
    for n in 0..6 {
        write_case(t.path(), &format!("case{n}"), [8, 8, 6]);
    }
    let d = Dataset::open(t.path()).unwrap();
    let a = d.split(&SplitSpec::Random { n_val: 2, seed: 7 }).unwrap();
    let b = d.split(&SplitSpec::Random { n_val: 2, seed: 7 }).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.val.len(), 2);
    assert_eq!(a.train.len(), 4);
    assert!(a.val.iter().all(|v| !a.train.contains(v)));
    let mut sorted = a.train.clone();
    sorted.sort();
    assert_eq!(sorted, a.train);
    // Different seeds pick different validation sets for at least one of a few seeds.
    assert!((8..14).any(|s| {
        d.split(&SplitSpec::Random { n_val: 2, seed: s })
            .unwrap()
            .val
            != a.val
    }));
    let named = d
        .split(&SplitSpec::Named(vec!["case4".into(), "case1".into()]))
        .unwrap();
    assert_eq!(named.val, ["case1", "case4"]);
    assert_eq!(named.train, ["case0", "case2", "case3", "case5"]);
    assert!(d.split(&SplitSpec::Named(vec!["case9".into()])).is_err());
    assert!(d.split(&SplitSpec::Random { n_val: 6, seed: 0 }).is_err());
    let sub = d.subset(&named.train).unwrap();
    assert_eq!(sub.cases().len(), 4);
}

#[test]
fn btcv_headers_pass_when_present() {
    let Some(shared) = flare_testkit::shared_dir("btcv_headers_pass_when_present") else {
        return;
    };
    let d = Dataset::open(shared.join("data/btcv")).unwrap();
    assert_eq!(d.layout(), Layout::Flare);
    assert_eq!(d.cases().len(), 14);
    assert!(d.unpaired().is_empty());
    assert!(d.check_headers().is_empty());
}
