//! Training curves as a PNG: the loss per step and the validation Dice per organ.
//!
//! The plot has no text, so that it needs no font: the left panel is the training loss (grey:
//! per step, blue: moving average over 25 steps; y from 0 to the largest loss), the right
//! panel the validation Dice from 0 to 1 (grid lines every 0.25) per organ in its label's
//! colour ([`flare_labels::Label::colour_rgb`]), their mean black; x is the step in both. The
//! numbers are in the training log's CSV.

use std::path::Path;

use crate::{
    atomic::{rgb_png, write_atomic},
    error::Result,
};

/// What [`write_training_curves_png`] draws.
#[derive(Debug, Clone, Copy)]
pub struct TrainingCurves<'a> {
    /// Steps of the run so far (the x range).
    pub steps: u64,
    /// `(step, loss)` of every step (non-finite losses are skipped).
    pub loss: &'a [(u64, f64)],
    /// `(step, Dice per organ)` of every validation, organs in the order of `colours_rgb`.
    pub dice: &'a [(u64, Vec<f64>)],
    /// Each organ's curve colour (its label's colour in the label set).
    pub colours_rgb: &'a [[u8; 3]],
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

/// Draws the curves (see the module doc) into a PNG file, atomically.
pub fn write_training_curves_png(path: &Path, curves: &TrainingCurves) -> Result<()> {
    let (w, h) = (960usize, 400usize);
    let mut cv = Canvas::new(w, h);
    let xmax = curves.steps.max(1) as f64;
    let raw: Vec<(f64, f64)> = curves
        .loss
        .iter()
        .filter(|(_, l)| l.is_finite())
        .map(|&(s, l)| (s as f64, l))
        .collect();
    let lmax = raw.iter().map(|p| p.1).fold(0.0f64, f64::max);
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
    for (o, c) in curves.colours_rgb.iter().enumerate() {
        let pts: Vec<(f64, f64)> = curves
            .dice
            .iter()
            .filter_map(|(s, v)| Some((*s as f64, *v.get(o)?)))
            .collect();
        right.polyline(&mut cv, &pts, *c, 2);
    }
    let mean: Vec<(f64, f64)> = curves
        .dice
        .iter()
        .map(|(s, v)| (*s as f64, v.iter().sum::<f64>() / v.len() as f64))
        .collect();
    right.polyline(&mut cv, &mean, [0, 0, 0], 2);
    write_atomic(path, &rgb_png(path, w, h, &cv.px)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ORGAN_COLOURS;

    /// The loss goes in the left panel, each organ's Dice in its colour in the right one, at
    /// the height its value puts it.
    #[test]
    fn curves_land_where_their_values_put_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.png");
        let loss: Vec<(u64, f64)> = (0..10).map(|s| (s, 1.0)).chain([(10, f64::NAN)]).collect();
        let dice = [
            (4, vec![1.0, 0.5, 0.25, 0.0]),
            (9, vec![1.0, 0.5, 0.25, 0.0]),
        ];
        let c = TrainingCurves {
            steps: 10,
            loss: &loss,
            dice: &dice,
            colours_rgb: &ORGAN_COLOURS,
        };
        write_training_curves_png(&path, &c).unwrap();
        let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut r = dec.read_info().unwrap();
        let mut px = vec![0; r.output_buffer_size().unwrap()];
        r.next_frame(&mut px).unwrap();
        let at = |x: usize, y: usize| {
            let i = (y * 960 + x) * 3;
            [px[i], px[i + 1], px[i + 2]]
        };
        // Right panel: x0 520, y0 20, 420 x 340; step 7 lies at x = 520 + 0.7 * 420 = 814.
        for (o, v) in [1.0, 0.5, 0.25, 0.0].iter().enumerate() {
            let y = 20 + 340 - (v * 340.0f64).round() as usize;
            let hit = (y.saturating_sub(1)..=y + 1).any(|yy| at(814, yy) == ORGAN_COLOURS[o]);
            assert!(hit, "organ {o} at Dice {v}");
        }
        // Left panel: the constant loss 1.0 is drawn at the top (1 / 1.05 of the height).
        let y = 20 + 340 - (340.0f64 / 1.05).round() as usize;
        assert!((y - 1..=y + 2).any(|yy| at(240, yy) != [255, 255, 255]));
        assert_eq!(at(240, 350), [255, 255, 255]);
    }
}
