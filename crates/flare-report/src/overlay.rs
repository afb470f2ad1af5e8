//! The per-case overlay picture: one row per organ, axial, coronal and sagittal slices through
//! it, organ outlines in colour on the CT in grey.

use std::path::Path;

use flare_labels::LabelSet;
use flare_volume::{LabelMap, Volume};

use crate::{
    atomic::write_atomic,
    error::{ReportError, Result},
    view::{DisplayFrame, Panel, Plane},
};

/// How the overlay is drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct OverlayOptions {
    /// CT window in HU mapped to black..white (default `[-160, 240]`: the abdominal soft-tissue
    /// window, width 400, level 40).
    pub window_hu: [f32; 2],
    /// Largest panel side in pixels (default 256); all panels of a case share one scale.
    pub max_panel_px: usize,
    /// Which values are organs, in which row order and colour (default FLARE21's).
    pub labels: LabelSet,
}

impl Default for OverlayOptions {
    fn default() -> Self {
        OverlayOptions {
            window_hu: [-160.0, 240.0],
            max_panel_px: 256,
            labels: LabelSet::flare21(),
        }
    }
}

/// What [`write_overlay_png`] drew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayInfo {
    /// Picture width in pixels.
    pub width_px: u32,
    /// Picture height in pixels.
    pub height_px: u32,
    /// The organ labels (values of the options' label set) with a row of their own, top to
    /// bottom; empty when the label map
    /// holds no organ (the picture then has one row through the volume's centre).
    pub organs_shown: Vec<u8>,
}

/// Panel sides accepted for `max_panel_px`: below 8 px an outline is most of the panel, above
/// 4096 px a four-organ picture runs to hundreds of megabytes.
const PANEL_PX_RANGE: std::ops::RangeInclusive<usize> = 8..=4096;
/// Space around and between panels.
pub(crate) const GAP_PX: usize = 4;
/// The organ-coloured bar at the left of each row that says whose row it is.
pub(crate) const BAR_PX: usize = 6;
/// Background between panels: dark grey, so a panel's black air still shows where it ends.
pub(crate) const BACKGROUND: [u8; 3] = [48, 48, 48];
/// Affines of the CT and the label map may differ by this much (mm) from rounding in headers.
const GRID_TOL_MM: f64 = 0.1;

/// Per case one PNG: one row per organ present (FLARE21: liver, kidney, spleen, pancreas), each row the
/// axial, coronal and sagittal slice through that organ's centroid (an empty map: one row
/// through the volume centre), CT in grey, each organ's outline (2 px, inside the organ) in its
/// colour from the options' label set; written atomically (temporary file and rename), parent folders
/// created.
///
/// Display: radiological convention whatever the file's orientation (axial: patient's right on
/// the image's left, anterior up; coronal: superior up, right on the left; sagittal: superior up,
/// anterior on the left), along the scan's nearest axes; square pixels, one scale for all panels
/// (the largest field of view fills `max_panel_px`). Where a centroid misses its organ (the two
/// kidneys' centroid lies between them) or cuts only a sliver of it, the slice goes through the
/// organ's largest cross-section instead. Values that are no organ of the label set are ignored.
pub fn write_overlay_png(
    image_hu: &Volume<f32>,
    labels: &LabelMap,
    out: &Path,
    options: &OverlayOptions,
) -> Result<OverlayInfo> {
    let picture = render(image_hu, labels, out, options)?;
    let bytes = picture.encode_png(out)?;
    write_atomic(out, &bytes)?;
    Ok(OverlayInfo {
        width_px: picture.width as u32,
        height_px: picture.height as u32,
        organs_shown: picture.rows.iter().filter_map(|r| r.organ).collect(),
    })
}

/// Where a panel lies in the picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PanelRect {
    pub(crate) x: usize,
    pub(crate) y: usize,
    pub(crate) width: usize,
    pub(crate) height: usize,
}

/// One row of the picture. Only the organ is needed to write the file; the layout is kept so
/// tests can find each panel.
#[derive(Debug, Clone)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct Row {
    /// The organ the row goes through (`None`: the volume centre).
    pub(crate) organ: Option<u8>,
    /// The array index of each panel's fixed axis, axial, coronal, sagittal.
    pub(crate) slices: [usize; 3],
    /// Axial, coronal, sagittal.
    pub(crate) panels: [PanelRect; 3],
}

/// A drawn picture, RGB row-major.
pub(crate) struct Picture {
    pub(crate) width: usize,
    pub(crate) height: usize,
    pub(crate) rgb: Vec<u8>,
    pub(crate) rows: Vec<Row>,
}

impl Picture {
    #[cfg(test)]
    pub(crate) fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let o = 3 * (y * self.width + x);
        [self.rgb[o], self.rgb[o + 1], self.rgb[o + 2]]
    }

    fn fill(&mut self, rect: PanelRect, colour: [u8; 3]) {
        for y in rect.y..rect.y + rect.height {
            for x in rect.x..rect.x + rect.width {
                let o = 3 * (y * self.width + x);
                self.rgb[o..o + 3].copy_from_slice(&colour);
            }
        }
    }

    fn encode_png(&self, out: &Path) -> Result<Vec<u8>> {
        crate::atomic::rgb_png(out, self.width, self.height, &self.rgb)
    }
}

/// Voxel counts of each organ per index along each array axis: enough to find centroids and
/// largest cross-sections in one pass over the label map.
struct SliceCounts {
    /// `per_axis[organ][axis][index]`, `organ` the position in the label set's organs.
    per_axis: Vec<[Vec<u64>; 3]>,
    /// `position[value]`: the organ's position plus one, 0 for a value that is no organ.
    position: [usize; 256],
}

impl SliceCounts {
    fn new(labels: &LabelMap, set: &LabelSet) -> SliceCounts {
        let [nx, ny, nz] = labels.shape();
        let mut position = [0usize; 256];
        for (o, organ) in set.organs().iter().enumerate() {
            position[usize::from(organ.value)] = o + 1;
        }
        let mut per_axis: Vec<[Vec<u64>; 3]> = (0..set.organs().len())
            .map(|_| [vec![0; nx], vec![0; ny], vec![0; nz]])
            .collect();
        for (k, plane) in labels.data().chunks_exact(nx * ny).enumerate() {
            for (j, row) in plane.chunks_exact(nx).enumerate() {
                for (i, &l) in row.iter().enumerate() {
                    let p = position[usize::from(l)];
                    if p > 0 {
                        let c = &mut per_axis[p - 1];
                        c[0][i] += 1;
                        c[1][j] += 1;
                        c[2][k] += 1;
                    }
                }
            }
        }
        SliceCounts { per_axis, position }
    }

    /// The counts of organ `value` (an organ of the set).
    fn of(&self, value: u8) -> &[Vec<u64>; 3] {
        &self.per_axis[self.position[usize::from(value)] - 1]
    }

    fn present(&self, organ: u8) -> bool {
        self.position[usize::from(organ)] > 0 && self.of(organ)[0].iter().any(|&c| c > 0)
    }

    /// The slice along array `axis` through `organ`: its centroid, unless that slice holds less
    /// than half of the largest cross-section (then the largest one nearest the centroid).
    fn slice(&self, organ: u8, axis: usize) -> usize {
        let counts = &self.of(organ)[axis];
        let total: u64 = counts.iter().sum();
        let weighted: f64 = counts
            .iter()
            .enumerate()
            .map(|(i, &c)| i as f64 * c as f64)
            .sum();
        let centroid = weighted / total.max(1) as f64;
        let at = (centroid.round() as usize).min(counts.len() - 1);
        let max = counts.iter().copied().max().unwrap_or(0);
        if 2 * counts[at] >= max {
            return at;
        }
        counts
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c == max)
            .min_by(|a, b| {
                let (da, db) = ((a.0 as f64 - centroid).abs(), (b.0 as f64 - centroid).abs());
                da.total_cmp(&db)
            })
            .map_or(at, |(i, _)| i)
    }
}

fn check_inputs(
    image_hu: &Volume<f32>,
    labels: &LabelMap,
    out: &Path,
    options: &OverlayOptions,
) -> Result<()> {
    let bad = |detail: String| ReportError::BadOptions {
        path: out.to_path_buf(),
        detail,
    };
    let [lo, hi] = options.window_hu;
    if !(lo.is_finite() && hi.is_finite() && lo < hi) {
        return Err(bad(format!(
            "window_hu must be two finite HU values, low < high; got [{lo}, {hi}]"
        )));
    }
    if !PANEL_PX_RANGE.contains(&options.max_panel_px) {
        return Err(bad(format!(
            "max_panel_px must be {} to {}; got {}",
            PANEL_PX_RANGE.start(),
            PANEL_PX_RANGE.end(),
            options.max_panel_px
        )));
    }
    let (gi, gl) = (image_hu.geometry(), labels.geometry());
    if gi.shape() != gl.shape() {
        return Err(ReportError::GridMismatch {
            path: out.to_path_buf(),
            detail: format!(
                "CT shape {:?}, label map shape {:?}",
                gi.shape(),
                gl.shape()
            ),
        });
    }
    let diff = gi.affine().max_abs_diff(&gl.affine());
    if diff.is_nan() || diff > GRID_TOL_MM {
        return Err(ReportError::GridMismatch {
            path: out.to_path_buf(),
            detail: format!(
                "affines differ by up to {diff} (tolerance {GRID_TOL_MM} mm)\nCT:\n{}\nlabel map:\n{}",
                gi.affine(),
                gl.affine()
            ),
        });
    }
    Ok(())
}

/// Draws the picture (no file is touched; `out` only names the picture in errors).
pub(crate) fn render(
    image_hu: &Volume<f32>,
    labels: &LabelMap,
    out: &Path,
    options: &OverlayOptions,
) -> Result<Picture> {
    check_inputs(image_hu, labels, out, options)?;
    let frame = DisplayFrame::new(image_hu.geometry());
    let shape = image_hu.shape();
    let counts = SliceCounts::new(labels, &options.labels);
    let organs: Vec<u8> = (options.labels.organs().iter())
        .map(|l| l.value)
        .filter(|&o| counts.present(o))
        .collect();
    // `colour[value]`: the outline colour of each organ value.
    let mut colour: [Option<[u8; 3]>; 256] = [None; 256];
    for l in options.labels.organs() {
        colour[usize::from(l.value)] = Some(l.colour_rgb);
    }

    // One scale for every panel, so organs compare in size across panels and cases of one scan.
    let largest_mm = (0..3).map(|w| frame.extent_mm(w)).fold(0.0, f64::max);
    let pixel_mm = largest_mm / options.max_panel_px as f64;
    let sizes = Plane::ALL.map(|p| frame.panel_size(p, pixel_mm));
    let row_height = sizes.iter().map(|s| s.1).max().unwrap_or(1);
    let width = GAP_PX + BAR_PX + sizes.iter().map(|s| GAP_PX + s.0).sum::<usize>() + GAP_PX;
    let n_rows = organs.len().max(1);
    let height = GAP_PX + n_rows * (row_height + GAP_PX);

    let row_organs: Vec<Option<u8>> = if organs.is_empty() {
        vec![None]
    } else {
        organs.iter().copied().map(Some).collect()
    };
    let mut picture = Picture {
        width,
        height,
        rgb: BACKGROUND.repeat(width * height),
        rows: Vec::with_capacity(n_rows),
    };
    for (r, organ) in row_organs.into_iter().enumerate() {
        let top = GAP_PX + r * (row_height + GAP_PX);
        if let Some(o) = organ {
            let bar = PanelRect {
                x: GAP_PX,
                y: top,
                width: BAR_PX,
                height: row_height,
            };
            picture.fill(bar, colour[usize::from(o)].unwrap_or(BACKGROUND));
        }
        let mut x = GAP_PX + BAR_PX + GAP_PX;
        let mut slices = [0; 3];
        let mut rects = [PanelRect {
            x: 0,
            y: 0,
            width: 0,
            height: 0,
        }; 3];
        for (p, plane) in Plane::ALL.into_iter().enumerate() {
            let axis = frame.array_axis(plane.fixed_world());
            let slice = match organ {
                Some(o) => counts.slice(o, axis),
                None => (shape[axis] - 1) / 2,
            };
            let panel = frame.sample(
                plane,
                slice,
                pixel_mm,
                image_hu.data(),
                labels.data(),
                options.window_hu,
            );
            // Panels shorter than the row sit in its middle.
            let rect = PanelRect {
                x,
                y: top + (row_height - panel.height) / 2,
                width: panel.width,
                height: panel.height,
            };
            draw_panel(&mut picture, &panel, rect, &colour);
            slices[p] = slice;
            rects[p] = rect;
            x += panel.width + GAP_PX;
        }
        picture.rows.push(Row {
            organ,
            slices,
            panels: rects,
        });
    }
    Ok(picture)
}

fn draw_panel(
    picture: &mut Picture,
    panel: &Panel,
    rect: PanelRect,
    organ_colour: &[Option<[u8; 3]>; 256],
) {
    for y in 0..panel.height {
        for x in 0..panel.width {
            let idx = y * panel.width + x;
            let l = panel.label[idx];
            let colour = match organ_colour[usize::from(l)] {
                Some(c) if panel.is_contour(x, y) => c,
                _ => [panel.grey[idx]; 3],
            };
            let o = 3 * ((rect.y + y) * picture.width + rect.x + x);
            picture.rgb[o..o + 3].copy_from_slice(&colour);
        }
    }
}
