//! Scoring another label set than FLARE21's: its organs, values and names flow through the
//! scores, the CSV and the summary, and score exactly as the same organs do under FLARE21.

use flare_labels::{Label, LabelSet};
use flare_metrics::{
    CaseOutcome, CaseResult, Summary, Tolerances, csv_header, csv_text, organ_voxel_counts,
    score_case,
};

/// Two boxes per map: organ `a` and organ `b`, the prediction shifted by one voxel.
fn maps(a: u8, b: u8) -> (Vec<u8>, Vec<u8>, [usize; 3]) {
    let shape = [12, 10, 8];
    let at = |i: usize, j: usize, k: usize| i + shape[0] * (j + shape[1] * k);
    let (mut gt, mut pred) = (vec![0u8; 960], vec![0u8; 960]);
    for k in 2..6 {
        for j in 2..8 {
            for i in 1..5 {
                gt[at(i, j, k)] = a;
                pred[at(i + 1, j, k)] = a;
            }
            for i in 7..10 {
                gt[at(i, j, k)] = b;
                pred[at(i, j, k)] = b;
            }
        }
    }
    // A stray value that is no organ of either set.
    pred[at(0, 0, 0)] = 9;
    (gt, pred, shape)
}

#[test]
fn a_two_organ_set_is_scored_and_named_as_its_own() {
    let set = LabelSet::new(vec![
        Label::background(),
        Label::organ(1, "tumour"),
        Label::organ(7, "cyst"),
    ])
    .unwrap();
    let tol = Tolerances::for_labels(&set, 1.0).unwrap();
    let (gt, pred, shape) = maps(1, 7);
    let got = score_case(&gt, &pred, shape, [1.0, 1.0, 2.0], &tol).unwrap();
    assert_eq!(got.organs.len(), 2);
    assert_eq!((got.counts[0].gt, got.counts[0].both), (96, 72));
    assert_eq!(got.organs[1].dsc, 1.0);
    assert_eq!(got.pred_other_voxels, 1);

    // The same organs as FLARE21's labels 1 and 2 score identically.
    let (gt2, pred2, _) = maps(1, 2);
    let flare = score_case(&gt2, &pred2, shape, [1.0, 1.0, 2.0], &Tolerances::default()).unwrap();
    assert_eq!(got.organs[..], flare.organs[..2]);
    assert_eq!(got.counts[..], flare.counts[..2]);
    // FLARE21's label 7 is "other"; this set's 2 would be.
    assert_eq!(flare.pred_other_voxels, 1);
    let counts = organ_voxel_counts(&gt, &set);
    assert_eq!(counts, [96, 72]);

    assert_eq!(csv_header(&tol), "Name,DSC_1,NSD-1mm_1,DSC_7,NSD-1mm_7");
    let r = CaseResult {
        name: "c.nii.gz".into(),
        gt_path: "g".into(),
        pred_path: "p".into(),
        outcome: CaseOutcome::Scored(got),
        warnings: vec![],
    };
    let text = csv_text(std::slice::from_ref(&r), &tol);
    assert_eq!(text.lines().nth(1).unwrap().split(',').count(), 5);
    let summary = Summary::of(&[r], &tol).to_string();
    assert!(
        summary.contains("1 tumour") && summary.contains("7 cyst"),
        "{summary}"
    );
    assert!(!summary.contains("liver"), "{summary}");
}
