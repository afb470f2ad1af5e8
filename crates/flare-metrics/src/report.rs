//! The official CSV and the summary table of an evaluation.
//!
//! The CSV has FLARE21's columns, `Name,DSC_1,NSD-1mm_1,...,DSC_4,NSD-1mm_4` (the NSD names
//! follow the tolerance; another label set's organs give `DSC_<value>` columns in its order),
//! one row per scored case, every value with the shortest decimal that
//! reads back as the same f64 (as pandas writes them).

use std::{fmt, path::Path};

use crate::{CaseResult, CaseScore, MetricsError, Tolerances};

/// The header line of the official CSV, for the organs of `tolerances`' label set.
pub fn csv_header(tolerances: &Tolerances) -> String {
    let mut cols = vec!["Name".to_string()];
    for organ in tolerances.labels().organs() {
        let label = usize::from(organ.value);
        cols.push(format!("DSC_{label}"));
        cols.push(tolerances.column_name(label));
    }
    cols.join(",")
}

/// One CSV row: the case name, then DSC and NSD of each organ.
pub fn csv_row(name: &str, score: &CaseScore) -> String {
    let mut cols = vec![csv_field(name)];
    for o in &score.organs {
        // `{:?}` is the shortest round-trip form and keeps "1.0" (not "1"), as pandas writes.
        cols.push(format!("{:?}", o.dsc));
        cols.push(format!("{:?}", o.nsd));
    }
    cols.join(",")
}

/// A CSV field, quoted when it holds a comma, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The whole CSV (header and one row per scored case, failed cases left out), newline-ended.
pub fn csv_text(results: &[CaseResult], tolerances: &Tolerances) -> String {
    let mut out = csv_header(tolerances);
    out.push('\n');
    for r in results {
        if let Some(s) = r.score() {
            out.push_str(&csv_row(&r.name, s));
            out.push('\n');
        }
    }
    out
}

/// Writes [`csv_text`] to `path`, through a temporary file renamed into place so that an
/// interrupted run never leaves a half-written table.
pub fn write_csv(
    path: &Path,
    results: &[CaseResult],
    tolerances: &Tolerances,
) -> Result<(), MetricsError> {
    let io = |source| MetricsError::Io {
        path: path.to_path_buf(),
        source,
    };
    flare_atomic::write(path, csv_text(results, tolerances).as_bytes()).map_err(io)
}

/// Mean and (population) standard deviation of a list of values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanStd {
    /// The mean (NaN for no values).
    pub mean: f64,
    /// The standard deviation with divisor n, as `numpy.std` (NaN for no values).
    pub std: f64,
}

impl MeanStd {
    /// Mean and standard deviation of `values`.
    pub fn of(values: &[f64]) -> MeanStd {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        MeanStd {
            mean,
            std: var.sqrt(),
        }
    }
}

/// The summary of an evaluation: per organ and per case (mean over organs, as FLARE ranked).
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Cases scored (missing predictions included, as zeros).
    pub cases: usize,
    /// DSC of each organ over the cases, in the label set's order (FLARE21: label 1 first).
    pub dsc: Vec<MeanStd>,
    /// NSD of each organ over the cases, in the same order.
    pub nsd: Vec<MeanStd>,
    /// The case DSC (mean over the organs) over the cases.
    pub case_dsc: MeanStd,
    /// The case NSD (mean over the organs) over the cases.
    pub case_nsd: MeanStd,
    /// The organs and NSD tolerances, for the table's headings.
    pub tolerances: Tolerances,
}

impl Summary {
    /// Summarises the scored cases of `results` (failed cases are left out).
    pub fn of(results: &[CaseResult], tolerances: &Tolerances) -> Summary {
        let scores: Vec<&CaseScore> = results.iter().filter_map(CaseResult::score).collect();
        let col = |f: &dyn Fn(&CaseScore) -> f64| -> MeanStd {
            MeanStd::of(&scores.iter().map(|s| f(s)).collect::<Vec<_>>())
        };
        let organs = tolerances.labels().organs().len();
        Summary {
            cases: scores.len(),
            dsc: (0..organs).map(|o| col(&|s| s.organs[o].dsc)).collect(),
            nsd: (0..organs).map(|o| col(&|s| s.organs[o].nsd)).collect(),
            case_dsc: col(&|s| s.mean_dsc()),
            case_nsd: col(&|s| s.mean_nsd()),
            tolerances: tolerances.clone(),
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |m: &MeanStd| format!("{:6.2} ± {:5.2}", 100.0 * m.mean, 100.0 * m.std);
        writeln!(
            f,
            "{:<12} {:>16} {:>16}   (percent, mean ± std over {} case(s))",
            "organ", "DSC", "NSD", self.cases
        )?;
        for (o, organ) in self.tolerances.labels().organs().iter().enumerate() {
            let tol = self.tolerances.as_array()[o];
            writeln!(
                f,
                "{:<12} {:>16} {:>16}   NSD at {tol} mm",
                format!("{} {}", organ.value, organ.name),
                pct(&self.dsc[o]),
                pct(&self.nsd[o])
            )?;
        }
        write!(
            f,
            "{:<12} {:>16} {:>16}   mean over organs per case",
            "case mean",
            pct(&self.case_dsc),
            pct(&self.case_nsd)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CaseOutcome, OrganScore};

    fn result(name: &str, organs: [(f64, f64); 4]) -> CaseResult {
        let mut s = CaseScore::missing_prediction(&[1, 1, 1, 1]);
        for (o, (dsc, nsd)) in organs.into_iter().enumerate() {
            s.organs[o] = OrganScore { dsc, nsd };
        }
        CaseResult {
            name: name.into(),
            gt_path: name.into(),
            pred_path: name.into(),
            outcome: CaseOutcome::Scored(s),
            warnings: vec![],
        }
    }

    #[test]
    fn csv_has_the_official_columns_and_full_precision() {
        let t = Tolerances::default();
        assert_eq!(
            csv_header(&t),
            "Name,DSC_1,NSD-1mm_1,DSC_2,NSD-1mm_2,DSC_3,NSD-1mm_3,DSC_4,NSD-1mm_4"
        );
        let r = result(
            "train_000.nii.gz",
            [
                (1.0, 1.0),
                (0.1 + 0.2, 0.0),
                (0.5, 0.25),
                (2.0 / 3.0, 1e-17),
            ],
        );
        let failed = CaseResult {
            outcome: CaseOutcome::Failed("grid".into()),
            ..result("x,y.nii.gz", [(0.0, 0.0); 4])
        };
        let text = csv_text(&[r, failed], &t);
        assert_eq!(
            text,
            "Name,DSC_1,NSD-1mm_1,DSC_2,NSD-1mm_2,DSC_3,NSD-1mm_3,DSC_4,NSD-1mm_4\n\
             train_000.nii.gz,1.0,1.0,0.30000000000000004,0.0,0.5,0.25,0.6666666666666666,1e-17\n"
        );
        let t = Tolerances::parse_per_label("1=5,2=3,3=3,4=5", 1.0).unwrap();
        assert!(csv_header(&t).ends_with("DSC_4,NSD-5mm_4"));
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }

    #[test]
    fn summary_means_and_population_std() {
        let rs = [
            result("a", [(1.0, 0.5), (0.0, 0.0), (0.5, 0.5), (0.5, 1.0)]),
            result("b", [(0.0, 0.5), (1.0, 1.0), (0.5, 0.5), (0.5, 1.0)]),
        ];
        let s = Summary::of(&rs, &Tolerances::default());
        assert_eq!(s.cases, 2);
        assert_eq!(
            s.dsc[0],
            MeanStd {
                mean: 0.5,
                std: 0.5
            }
        );
        assert_eq!(
            s.nsd[3],
            MeanStd {
                mean: 1.0,
                std: 0.0
            }
        );
        assert_eq!(
            s.case_dsc,
            MeanStd {
                mean: 0.5,
                std: 0.0
            }
        );
        assert!((s.case_nsd.mean - 0.625).abs() < 1e-15);
        let text = s.to_string();
        assert!(text.contains("1 liver"), "{text}");
        assert!(text.contains(" 50.00 ± 50.00"), "{text}");
    }
}
