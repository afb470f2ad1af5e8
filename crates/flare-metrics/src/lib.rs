//! The FLARE21 scores, exactly and fast.
//!
//! For each organ (FLARE21's 1 liver, 2 kidney, 3 spleen, 4 pancreas, or the organs of another
//! [`flare_labels::LabelSet`] given through [`Tolerances::for_labels`]) of each case, the Dice similarity
//! coefficient (DSC) and the normalised surface Dice (NSD) at a tolerance (1 mm in FLARE21), as
//! the challenge's evaluation code computes them with the `surface-distance` package:
//!
//! - [`score_case`]: both scores of the organs of one case, organs in parallel, each NSD on
//!   the bounding box of its two masks; FLARE's rules for empty masks.
//! - [`surface_overlap`], [`neighbour_codes`], [`surface_area_table`]: the NSD's building blocks,
//!   each equal to its counterpart in the package.
//! - [`Tolerances`]: the organs scored (a label set), the NSD tolerance of each and the official
//!   CSV column names.
//! - [`evaluate_folders`]: a folder of predictions against a folder of ground truths (NIfTI),
//!   with FLARE's naming, missing predictions scored as empty, grids checked; [`csv_text`] and
//!   [`Summary`] turn the results into the official CSV and a summary table.
//!
//! Voxel data follows flare's convention: axes `(i, j, k)`, `i` fastest. The distances are exact
//! Euclidean distances computed with SciPy's arithmetic, bounded by the tolerance (see `edt`).

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod edt;
mod error;
mod folder;
mod labels;
mod normals_table;
mod report;
mod score;
mod surface;
mod tolerance;

pub use crate::{
    error::MetricsError,
    folder::{
        CaseOutcome, CaseResult, GRID_TOLERANCE_MM, case_stem, check_names_match, evaluate_case,
        evaluate_folders, ground_truth_cases,
    },
    labels::{BACKGROUND, LabelValue, MAX_ORGANS, NUM_ORGANS, ORGAN_NAMES, OTHER},
    report::{MeanStd, Summary, csv_header, csv_row, csv_text, write_csv},
    score::{CaseScore, OrganCounts, OrganScore, organ_voxel_counts, score_case},
    surface::{SurfaceOverlap, neighbour_codes, surface_area_table, surface_overlap},
    tolerance::Tolerances,
};
