//! The training log: one row per step (and validation Dice when it ran), written as CSV and
//! drawn as a PNG of the curves by flare-report.

use std::{io::Write, path::Path};

use flare_labels::LabelSet;
use serde::{Deserialize, Serialize};

use crate::error::{Result, io_err};

/// One step of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRow {
    /// The step (0-based) this row is about.
    pub step: u64,
    /// Its training loss.
    pub loss: f64,
    /// Its learning rate.
    pub lr: f64,
    /// Training samples per second over this step (wall time; not reproducible).
    pub samples_per_s: f64,
    /// Validation Dice per organ (in the label set's order: liver, kidney, spleen, pancreas
    /// for FLARE21) after this step, when validation ran.
    pub val: Option<Vec<f64>>,
}

/// The CSV header: `step,loss,lr,samples_per_s`, `val_dsc_NAME` per organ of `labels`, then
/// `val_dsc_mean` (FLARE21: `val_dsc_liver,val_dsc_kidney,val_dsc_spleen,val_dsc_pancreas`).
pub fn csv_header(labels: &LabelSet) -> String {
    let mut h = String::from("step,loss,lr,samples_per_s");
    for name in labels.organ_names() {
        h.push_str(&format!(",val_dsc_{name}"));
    }
    h.push_str(",val_dsc_mean");
    h
}

/// One CSV line (no newline) of a run over `organs` organs; validation columns are empty
/// where it did not run.
pub fn csv_line(r: &LogRow, organs: usize) -> String {
    let val = match &r.val {
        Some(d) => {
            let mut v: Vec<String> = d.iter().map(|x| format!("{x:.4}")).collect();
            v.push(format!("{:.4}", d.iter().sum::<f64>() / d.len() as f64));
            v.join(",")
        }
        None => ",".repeat(organs),
    };
    format!(
        "{},{:.6},{:.6e},{:.3},{val}",
        r.step, r.loss, r.lr, r.samples_per_s
    )
}

/// Writes the whole log of a run on `labels` as CSV (temporary file, then rename).
pub fn write_csv(path: &Path, labels: &LabelSet, rows: &[LogRow]) -> Result<()> {
    let mut text = String::with_capacity(64 * (rows.len() + 1));
    text.push_str(&csv_header(labels));
    text.push('\n');
    for r in rows {
        text.push_str(&csv_line(r, labels.organs().len()));
        text.push('\n');
    }
    flare_atomic::write(path, text.as_bytes()).map_err(io_err(path))
}

/// Appends one row to a CSV written by [`write_csv`] for `labels`.
pub fn append_csv(path: &Path, labels: &LabelSet, row: &LogRow) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_err(path))?;
    writeln!(f, "{}", csv_line(row, labels.organs().len())).map_err(io_err(path))
}

/// Draws the curves into a PNG, each organ in its label's colour (see
/// `flare_report::write_training_curves_png`).
pub fn write_plot(path: &Path, labels: &LabelSet, rows: &[LogRow]) -> Result<()> {
    let loss: Vec<(u64, f64)> = rows.iter().map(|r| (r.step, r.loss)).collect();
    let dice: Vec<(u64, Vec<f64>)> = rows
        .iter()
        .filter_map(|r| r.val.clone().map(|v| (r.step, v)))
        .collect();
    let colours: Vec<[u8; 3]> = labels.organs().iter().map(|l| l.colour_rgb).collect();
    let curves = flare_report::TrainingCurves {
        steps: rows.last().map_or(1, |r| r.step + 1),
        loss: &loss,
        dice: &dice,
        colours_rgb: &colours,
    };
    Ok(flare_report::write_training_curves_png(path, &curves)?)
}

#[cfg(test)]
mod tests {
    use flare_labels::Label;

    use super::*;

    fn row(val: Option<Vec<f64>>) -> LogRow {
        LogRow {
            step: 3,
            loss: 0.5,
            lr: 1e-3,
            samples_per_s: 2.0,
            val,
        }
    }

    /// FLARE21's log keeps the columns it always had; another label set names its own.
    #[test]
    fn columns_follow_the_label_set() {
        assert_eq!(
            csv_header(&LabelSet::flare21()),
            "step,loss,lr,samples_per_s,val_dsc_liver,val_dsc_kidney,val_dsc_spleen,\
             val_dsc_pancreas,val_dsc_mean"
        );
        assert_eq!(csv_line(&row(None), 4), "3,0.500000,1.000000e-3,2.000,,,,,");
        assert_eq!(
            csv_line(&row(Some(vec![1.0, 0.5, 0.25, 0.25])), 4),
            "3,0.500000,1.000000e-3,2.000,1.0000,0.5000,0.2500,0.2500,0.5000"
        );
        let two = LabelSet::new(vec![
            Label::background(),
            Label::organ(1, "tumour"),
            Label::organ(2, "cyst"),
        ])
        .unwrap();
        assert_eq!(
            csv_header(&two),
            "step,loss,lr,samples_per_s,val_dsc_tumour,val_dsc_cyst,val_dsc_mean"
        );
        assert_eq!(csv_line(&row(None), 2), "3,0.500000,1.000000e-3,2.000,,,");
        assert_eq!(
            csv_line(&row(Some(vec![1.0, 0.5])), 2),
            "3,0.500000,1.000000e-3,2.000,1.0000,0.5000,0.7500"
        );
    }
}
