//! Display geometry: which array axis, in which direction, fills each panel, and sampling a
//! panel onto square pixels.
//!
//! Radiological convention puts the patient's right on the image's left, anterior (axial) or
//! superior (coronal, sagittal) at the top, and anterior on the left in sagittal. In RAS+ world
//! terms every image axis therefore runs toward *decreasing* world coordinate: columns R to L
//! (or A to P in sagittal), rows A to P (axial) or S to I. The file's own orientation only
//! decides which array axis is nearest each world axis and whether it runs with or against it;
//! an oblique scan is shown along its nearest axes, as viewers do without reformatting.

use flare_volume::Geometry;

/// One of the three standard planes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plane {
    Axial,
    Coronal,
    Sagittal,
}

impl Plane {
    /// Left to right in a row of the overlay.
    pub(crate) const ALL: [Plane; 3] = [Plane::Axial, Plane::Coronal, Plane::Sagittal];

    /// The world axis (0 x/R, 1 y/A, 2 z/S) held fixed in this plane.
    pub(crate) fn fixed_world(self) -> usize {
        match self {
            Plane::Axial => 2,
            Plane::Coronal => 1,
            Plane::Sagittal => 0,
        }
    }

    /// The world axis along image columns (left to right, toward decreasing world coordinate).
    fn col_world(self) -> usize {
        match self {
            Plane::Axial | Plane::Coronal => 0,
            Plane::Sagittal => 1,
        }
    }

    /// The world axis along image rows (top to bottom, toward decreasing world coordinate).
    fn row_world(self) -> usize {
        match self {
            Plane::Axial => 1,
            Plane::Coronal | Plane::Sagittal => 2,
        }
    }
}

/// The array axes nearest the world axes, and their senses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DisplayFrame {
    shape: [usize; 3],
    spacing_mm: [f64; 3],
    /// `axis_of_world[w]`: the array axis nearest world axis `w`.
    axis_of_world: [usize; 3],
    /// Whether that array axis points toward +w (R, A or S).
    positive: [bool; 3],
}

impl DisplayFrame {
    /// The frame of a grid, by its nearest-axis orientation code (as nibabel's `aff2axcodes`).
    pub(crate) fn new(geometry: &Geometry) -> DisplayFrame {
        let (axes, flips) = geometry.orientation().to_ras();
        DisplayFrame {
            shape: geometry.shape(),
            spacing_mm: geometry.spacing_mm(),
            axis_of_world: axes,
            positive: flips.map(|f| !f),
        }
    }

    /// The array axis nearest world axis `w`.
    pub(crate) fn array_axis(&self, w: usize) -> usize {
        self.axis_of_world[w]
    }

    /// Field of view along world axis `w` (voxel edges to voxel edges), in mm.
    pub(crate) fn extent_mm(&self, w: usize) -> f64 {
        let a = self.axis_of_world[w];
        self.shape[a] as f64 * self.spacing_mm[a]
    }

    /// The size in pixels of a panel of `plane` at `pixel_mm` per (square) pixel.
    pub(crate) fn panel_size(&self, plane: Plane, pixel_mm: f64) -> (usize, usize) {
        let px = |w: usize| ((self.extent_mm(w) / pixel_mm).round() as usize).max(1);
        (px(plane.col_world()), px(plane.row_world()))
    }

    /// Where each pixel centre of a panel falls along the array axis nearest world axis `w`:
    /// a continuous voxel index, clamped into the grid.
    fn positions(&self, w: usize, n_px: usize, pixel_mm: f64) -> Vec<f64> {
        let a = self.axis_of_world[w];
        let n = self.shape[a];
        let last = (n - 1) as f64;
        (0..n_px)
            .map(|p| {
                // Pixel p spans [p, p+1) * pixel_mm from the panel edge, which is the outer edge
                // of the first voxel (index -0.5).
                let u = ((p as f64 + 0.5) * pixel_mm / self.spacing_mm[a] - 0.5).clamp(0.0, last);
                // Image axes run toward decreasing world coordinate.
                if self.positive[w] { last - u } else { u }
            })
            .collect()
    }

    /// Samples one panel: `plane` through array index `slice` of its fixed axis.
    pub(crate) fn sample(
        &self,
        plane: Plane,
        slice: usize,
        pixel_mm: f64,
        ct: &[f32],
        labels: &[u8],
        window_hu: [f32; 2],
    ) -> Panel {
        let (width, height) = self.panel_size(plane, pixel_mm);
        let stride = [1, self.shape[0], self.shape[0] * self.shape[1]];
        let fixed = self.axis_of_world[plane.fixed_world()];
        let (ca, ra) = (
            self.axis_of_world[plane.col_world()],
            self.axis_of_world[plane.row_world()],
        );
        let base = slice.min(self.shape[fixed] - 1) * stride[fixed];
        let cols = self.positions(plane.col_world(), width, pixel_mm);
        let rows = self.positions(plane.row_world(), height, pixel_mm);
        // Bilinear weights for the CT (smooth when 5 mm slices are stretched), nearest for the
        // labels (a label between two others has no meaning).
        let taps = |u: f64, n: usize| {
            let i0 = (u.floor() as usize).min(n - 1);
            let i1 = (i0 + 1).min(n - 1);
            (
                i0,
                i1,
                (u - i0 as f64) as f32,
                (u.round() as usize).min(n - 1),
            )
        };
        let col_taps: Vec<_> = cols.iter().map(|&u| taps(u, self.shape[ca])).collect();
        let row_taps: Vec<_> = rows.iter().map(|&u| taps(u, self.shape[ra])).collect();
        let (lo, hi) = (window_hu[0], window_hu[1]);
        let scale = 255.0 / (hi - lo);
        let mut grey = Vec::with_capacity(width * height);
        let mut label = Vec::with_capacity(width * height);
        for &(r0, r1, fr, rn) in &row_taps {
            let (o0, o1, on) = (
                base + r0 * stride[ra],
                base + r1 * stride[ra],
                base + rn * stride[ra],
            );
            for &(c0, c1, fc, cn) in &col_taps {
                let (a0, a1) = (c0 * stride[ca], c1 * stride[ca]);
                let top = ct[o0 + a0] * (1.0 - fc) + ct[o0 + a1] * fc;
                let bottom = ct[o1 + a0] * (1.0 - fc) + ct[o1 + a1] * fc;
                let hu = top * (1.0 - fr) + bottom * fr;
                // NaN (not produced by our readers, but possible in a caller's volume) shows
                // black rather than poisoning the cast.
                let g = if hu.is_nan() {
                    0.0
                } else {
                    ((hu - lo) * scale).clamp(0.0, 255.0)
                };
                grey.push(g.round() as u8);
                label.push(labels[on + cn * stride[ca]]);
            }
        }
        Panel {
            width,
            height,
            grey,
            label,
        }
    }
}

/// One sampled panel: greys from the CT window and nearest-neighbour labels, row-major.
pub(crate) struct Panel {
    pub(crate) width: usize,
    pub(crate) height: usize,
    pub(crate) grey: Vec<u8>,
    pub(crate) label: Vec<u8>,
}

impl Panel {
    /// Whether pixel `(x, y)` lies on the outline of its organ: within 2 px (along a row or a
    /// column) of a pixel of another label or of the panel's edge. The outline stays inside the
    /// organ so that touching organs (liver and right kidney) keep both outlines.
    pub(crate) fn is_contour(&self, x: usize, y: usize) -> bool {
        let l = self.label[y * self.width + x];
        let differs = |dx: isize, dy: isize| {
            let (nx, ny) = (x as isize + dx, y as isize + dy);
            if nx < 0 || ny < 0 || nx >= self.width as isize || ny >= self.height as isize {
                return true;
            }
            self.label[ny as usize * self.width + nx as usize] != l
        };
        [
            (1, 0),
            (-1, 0),
            (0, 1),
            (0, -1),
            (2, 0),
            (-2, 0),
            (0, 2),
            (0, -2),
        ]
        .iter()
        .any(|&(dx, dy)| differs(dx, dy))
    }
}
