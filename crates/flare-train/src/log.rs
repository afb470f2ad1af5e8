//! The training log: one row per step (and validation Dice when it ran), written as CSV and
//! drawn as a PNG of the curves.
//!
//! The plot has no text, so that it needs no font: the left panel is the training loss (grey:
//! per step, blue: moving average over 25 steps; y from 0 to the largest loss), the right
//! panel the validation Dice from 0 to 1 (grid lines every 0.25) per organ, liver red,
//! kidney green, spleen purple, pancreas orange, their mean black; x is the step in both. The
//! numbers are in the CSV.

use std::{io::Write, path::Path};

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError, io_err};

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
    let tmp = path.with_extension("csv.tmp");
    std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Appends one row to a CSV written by [`write_csv`].
pub fn append_csv(path: &Path, row: &LogRow) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_err(path))?;
    writeln!(f, "{}", csv_line(row)).map_err(io_err(path))
}

struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Canvas {
        Canvas {
            w,
            h,
            px: vec![255; w * h * 3],
        }
    }

    fn dot(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            let i = (y as usize * self.w + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    /// A line by Bresenham's algorithm, `thick` pixels wide (square pen).
    fn line(&mut self, a: (i64, i64), b: (i64, i64), c: [u8; 3], thick: i64) {
        let (mut x, mut y) = a;
        let (dx, dy) = ((b.0 - x).abs(), -(b.1 - y).abs());
        let (sx, sy) = (if x < b.0 { 1 } else { -1 }, if y < b.1 { 1 } else { -1 });
        let mut err = dx + dy;
        loop {
            for ox in 0..thick {
                for oy in 0..thick {
                    self.dot(x + ox, y + oy, c);
                }
            }
            if x == b.0 && y == b.1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }
}

/// A panel's pixel box and data ranges.
struct Panel {
    x0: i64,
    y0: i64,
    w: i64,
    h: i64,
    xmax: f64,
    ymax: f64,
}

impl Panel {
    fn at(&self, x: f64, y: f64) -> (i64, i64) {
        let fx = if self.xmax > 0.0 { x / self.xmax } else { 0.0 };
        let fy = if self.ymax > 0.0 {
            (y / self.ymax).clamp(0.0, 1.0)
        } else {
            0.0
        };
        (
            self.x0 + (fx * self.w as f64).round() as i64,
            self.y0 + self.h - (fy * self.h as f64).round() as i64,
        )
    }

    fn frame(&self, cv: &mut Canvas) {
        let k = [0, 0, 0];
        let (l, r, t, b) = (self.x0, self.x0 + self.w, self.y0, self.y0 + self.h);
        cv.line((l, b), (r, b), k, 1);
        cv.line((l, t), (l, b), k, 1);
    }

    fn polyline(&self, cv: &mut Canvas, pts: &[(f64, f64)], c: [u8; 3], thick: i64) {
        for p in pts.windows(2) {
            cv.line(self.at(p[0].0, p[0].1), self.at(p[1].0, p[1].1), c, thick);
        }
        if let [p] = pts {
            let (x, y) = self.at(p.0, p.1);
            cv.line((x - 2, y), (x + 2, y), c, thick);
        }
    }
}

/// Draws the curves (see the module doc) into a PNG file.
pub fn write_plot(path: &Path, rows: &[LogRow]) -> Result<()> {
    let (w, h) = (960usize, 400usize);
    let mut cv = Canvas::new(w, h);
    let xmax = rows.last().map_or(1.0, |r| (r.step + 1) as f64);
    let finite: Vec<&LogRow> = rows.iter().filter(|r| r.loss.is_finite()).collect();
    let lmax = finite.iter().map(|r| r.loss).fold(0.0f64, f64::max);
    let left = Panel {
        x0: 40,
        y0: 20,
        w: 420,
        h: 340,
        xmax,
        ymax: lmax * 1.05,
    };
    let right = Panel {
        x0: 520,
        y0: 20,
        w: 420,
        h: 340,
        xmax,
        ymax: 1.0,
    };
    for q in 1..=4 {
        let y = q as f64 * 0.25;
        right.polyline(&mut cv, &[(0.0, y), (xmax, y)], [220, 220, 220], 1);
    }
    left.frame(&mut cv);
    right.frame(&mut cv);
    let raw: Vec<(f64, f64)> = finite.iter().map(|r| (r.step as f64, r.loss)).collect();
    left.polyline(&mut cv, &raw, [190, 190, 190], 1);
    let win = 25usize;
    let smooth: Vec<(f64, f64)> = (0..raw.len())
        .map(|i| {
            let s = i.saturating_sub(win - 1);
            let m = raw[s..=i].iter().map(|p| p.1).sum::<f64>() / (i - s + 1) as f64;
            (raw[i].0, m)
        })
        .collect();
    left.polyline(&mut cv, &smooth, [30, 80, 220], 2);
    let vals: Vec<(f64, [f64; 4])> = rows
        .iter()
        .filter_map(|r| r.val.map(|v| (r.step as f64, v)))
        .collect();
    let colours = [[220, 40, 40], [40, 160, 60], [140, 60, 200], [240, 140, 20]];
    for (o, c) in colours.iter().enumerate() {
        let pts: Vec<(f64, f64)> = vals.iter().map(|(s, v)| (*s, v[o])).collect();
        right.polyline(&mut cv, &pts, *c, 2);
    }
    let mean: Vec<(f64, f64)> = vals
        .iter()
        .map(|(s, v)| (*s, v.iter().sum::<f64>() / 4.0))
        .collect();
    right.polyline(&mut cv, &mean, [0, 0, 0], 2);
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, w as u32, h as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc
            .write_header()
            .map_err(|e| TrainError::Config(format!("PNG: {e}")))?;
        wr.write_image_data(&cv.px)
            .map_err(|e| TrainError::Config(format!("PNG: {e}")))?;
    }
    let tmp = path.with_extension("png.tmp");
    std::fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}
