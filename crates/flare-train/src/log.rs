//! The training log: one row per step (and validation Dice when it ran), written as CSV and
//! drawn as a PNG of the curves by flare-report.

use std::{io::Write, path::Path};

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
    /// Validation Dice per organ (liver, kidney, spleen, pancreas) after this step, when
    /// validation ran.
    pub val: Option<[f64; 4]>,
}

/// The CSV header.
pub const CSV_HEADER: &str = "step,loss,lr,samples_per_s,val_dsc_liver,val_dsc_kidney,val_dsc_spleen,val_dsc_pancreas,val_dsc_mean";

/// One CSV line (no newline); validation columns are empty where it did not run.
pub fn csv_line(r: &LogRow) -> String {
    let val = match r.val {
        Some(d) => format!(
            "{:.4},{:.4},{:.4},{:.4},{:.4}",
            d[0],
            d[1],
            d[2],
            d[3],
            d.iter().sum::<f64>() / 4.0
        ),
        None => ",,,,".to_string(),
    };
    format!(
        "{},{:.6},{:.6e},{:.3},{val}",
        r.step, r.loss, r.lr, r.samples_per_s
    )
}

/// Writes the whole log as CSV (temporary file, then rename).
pub fn write_csv(path: &Path, rows: &[LogRow]) -> Result<()> {
    let mut text = String::with_capacity(64 * (rows.len() + 1));
    text.push_str(CSV_HEADER);
    text.push('\n');
    for r in rows {
        text.push_str(&csv_line(r));
        text.push('\n');
    }
    flare_atomic::write(path, text.as_bytes()).map_err(io_err(path))
}

/// Appends one row to a CSV written by [`write_csv`].
pub fn append_csv(path: &Path, row: &LogRow) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_err(path))?;
    writeln!(f, "{}", csv_line(row)).map_err(io_err(path))
}

/// Draws the curves into a PNG (see `flare_report::write_training_curves_png`).
pub fn write_plot(path: &Path, rows: &[LogRow]) -> Result<()> {
    let loss: Vec<(u64, f64)> = rows.iter().map(|r| (r.step, r.loss)).collect();
    let dice: Vec<(u64, [f64; 4])> = rows
        .iter()
        .filter_map(|r| r.val.map(|v| (r.step, v)))
        .collect();
    let curves = flare_report::TrainingCurves {
        steps: rows.last().map_or(1, |r| r.step + 1),
        loss: &loss,
        dice: &dice,
    };
    Ok(flare_report::write_training_curves_png(path, &curves)?)
}
