//! Putting a series' slices in order and deriving the volume's grid, refusing series that do not
//! form a regular 3D grid.
//!
//! Slices are sorted by ImagePositionPatient projected on the slice normal (row direction x column
//! direction of ImageOrientationPatient), never by file name or InstanceNumber. Positions must
//! agree to a tolerance of `max(1% of the slice spacing, 0.01 mm)`: between consecutive slices
//! (uniform spacing) and across the plane (no gantry tilt). The slice spacing used is the measured
//! one, `(last - first) / (n - 1)` along the normal, not SliceThickness.

use std::path::Path;

use flare_volume::Geometry;

use crate::{
    DicomError,
    scan::{Attr, SliceHeader},
};

/// Largest angle (degrees) between two slices' direction cosines still counted as parallel: far
/// above the rounding of a 16-character DS, far below any real tilt.
const PARALLEL_TOLERANCE_DEG: f64 = 0.01;
/// Absolute floor of the position tolerance (mm).
const POSITION_TOLERANCE_MM: f64 = 0.01;
/// Relative position tolerance, as a fraction of the slice spacing.
const POSITION_TOLERANCE_REL: f64 = 0.01;

/// The slices of a series in volume order, with the grid they form.
#[derive(Debug)]
pub(crate) struct Layout {
    pub geometry: Geometry,
    /// Headers sorted along the normal: `slices[k]` is slice `k`.
    pub slices: Vec<SliceHeader>,
}

/// Rescale, pixel format and placement of one slice, checked.
pub(crate) struct SliceFormat {
    /// Columns and rows.
    pub size: [usize; 2],
    pub bits_allocated: usize,
    pub signed: bool,
    pub slope: f64,
    pub intercept: f64,
}

/// Reads a required attribute, turning absence or an unparsable value into an error on `file`.
fn require<T>(attr: &Attr<T>, file: &Path, attribute: &'static str) -> Result<T, DicomError>
where
    T: Clone,
{
    match attr {
        Ok(Some(v)) => Ok(v.clone()),
        Ok(None) => Err(DicomError::MissingAttribute {
            file: file.to_path_buf(),
            attribute,
        }),
        Err(raw) => Err(DicomError::BadAttribute {
            file: file.to_path_buf(),
            attribute,
            value: raw.clone(),
            problem: "not a number".into(),
        }),
    }
}

fn bad(
    file: &Path,
    attribute: &'static str,
    value: impl std::fmt::Debug,
    problem: &str,
) -> DicomError {
    DicomError::BadAttribute {
        file: file.to_path_buf(),
        attribute,
        value: format!("{value:?}"),
        problem: problem.into(),
    }
}

/// Checks one slice's pixel format and returns what decoding needs.
pub(crate) fn slice_format(h: &SliceHeader) -> Result<SliceFormat, DicomError> {
    let file = h.path.as_path();
    let unsupported = |what: String| DicomError::UnsupportedFormat {
        file: file.to_path_buf(),
        what,
    };
    if h.has_float_pixels {
        return Err(unsupported("float pixel data (CT stores integers)".into()));
    }
    let spp = h.samples_per_pixel.clone().ok().flatten().unwrap_or(1);
    if spp != 1 {
        return Err(unsupported(format!(
            "{spp} samples per pixel (colour); CT images have one"
        )));
    }
    if let Some(p) = &h.photometric
        && p != "MONOCHROME2"
        && p != "MONOCHROME1"
    {
        return Err(unsupported(format!("photometric interpretation {p}")));
    }
    let frames = h.number_of_frames.clone().ok().flatten().unwrap_or(1);
    if frames > 1 {
        return Err(unsupported(format!(
            "multi-frame image ({frames} frames); flare reads one slice per file"
        )));
    }
    let bits = require(&h.bits_allocated, file, "BitsAllocated")?;
    if !matches!(bits, 8 | 16 | 32) {
        return Err(unsupported(format!("BitsAllocated {bits}")));
    }
    let bits_stored = match &h.bits_stored {
        Ok(v) => v.unwrap_or(bits),
        Err(raw) => return Err(bad(file, "BitsStored", raw, "not a number")),
    };
    if !(1..=bits).contains(&bits_stored) {
        return Err(bad(
            file,
            "BitsStored",
            bits_stored,
            &format!("must be 1 to BitsAllocated ({bits})"),
        ));
    }
    // PS3.3 C.7.6.3.1: HighBit shall be BitsStored - 1 (the stored bits sit at the bottom of
    // each sample). Samples are read at their full BitsAllocated width, so bits placed higher
    // (an old encoding the standard has retired) would scale every value: refused.
    match &h.high_bit {
        Ok(Some(hb)) if *hb != bits_stored - 1 => {
            return Err(bad(
                file,
                "HighBit",
                hb,
                &format!("must be BitsStored - 1 ({})", bits_stored - 1),
            ));
        }
        Ok(_) => {}
        Err(raw) => return Err(bad(file, "HighBit", raw, "not a number")),
    }
    let repr = match &h.pixel_representation {
        Ok(None) => 0,
        Ok(Some(r @ (0 | 1))) => *r,
        Ok(Some(r)) => {
            return Err(bad(
                file,
                "PixelRepresentation",
                r,
                "must be 0 (unsigned) or 1 (two's complement)",
            ));
        }
        Err(raw) => return Err(bad(file, "PixelRepresentation", raw, "not a number")),
    };
    let slope = match &h.rescale_slope {
        Ok(v) => v.unwrap_or(1.0),
        Err(raw) => return Err(bad(file, "RescaleSlope", raw, "not a number")),
    };
    if slope == 0.0 {
        return Err(bad(file, "RescaleSlope", slope, "must not be zero"));
    }
    if slope < 0.0 {
        return Err(bad(file, "RescaleSlope", slope, "must be positive"));
    }
    if slope > MAX_SLOPE {
        return Err(bad(
            file,
            "RescaleSlope",
            slope,
            &format!("a stored step of more than {MAX_SLOPE} HU is not a CT rescale"),
        ));
    }
    let intercept = match &h.rescale_intercept {
        Ok(v) => v.unwrap_or(0.0),
        Err(raw) => return Err(bad(file, "RescaleIntercept", raw, "not a number")),
    };
    check_hu_range(file, bits_stored, repr == 1, slope, intercept)?;
    let size = h.size().ok_or_else(|| bad_size(h))?;
    Ok(SliceFormat {
        size,
        bits_allocated: bits as usize,
        signed: repr == 1,
        slope,
        intercept,
    })
}

/// The coarsest stored step accepted, in HU. Scanners store 1 HU per unit (a few 0.5 or 2); a
/// step of 100 HU could not tell fat (-100) from water (0), so a larger slope is a corrupt
/// header (issue 12: 1e30).
const MAX_SLOPE: f64 = 100.0;

/// HU that every CT of a body holds: air (-1000) to dense bone (+1000).
const HU_BODY: [f64; 2] = [-1000.0, 1000.0];

/// Refuses a rescale under which the stored values cannot express a CT: the range BitsStored
/// and PixelRepresentation allow, mapped through `slope` and `intercept`, must reach from air to
/// bone ([`HU_BODY`]). Real CT maps its range to about [-1024, 3071] (12 bits unsigned, intercept
/// -1024) or [-32768, 32767] (16 bits signed); a corrupt header with a slope of 1e-30 or an
/// intercept of -1e38 cannot reach both ends, while any scanner's encoding does. How far beyond
/// the ends the range goes is bounded by [`MAX_SLOPE`] only, since padding values such as -32768
/// are legitimate stored values and 32-bit data spans billions.
fn check_hu_range(
    file: &Path,
    bits_stored: i64,
    signed: bool,
    slope: f64,
    intercept: f64,
) -> Result<(), DicomError> {
    let span = 2f64.powi(bits_stored as i32);
    let (lo, hi) = if signed {
        (-span / 2.0, span / 2.0 - 1.0)
    } else {
        (0.0, span - 1.0)
    };
    let (hu_lo, hu_hi) = (lo * slope + intercept, hi * slope + intercept);
    if hu_lo <= HU_BODY[0] && hu_hi >= HU_BODY[1] {
        return Ok(());
    }
    // Plain numbers where they are readable, exponents where they are absurd.
    let show = |v: f64| {
        if v.abs() < 1e7 {
            format!("{v}")
        } else {
            format!("{v:e}")
        }
    };
    Err(DicomError::BadAttribute {
        file: file.to_path_buf(),
        attribute: "RescaleSlope/RescaleIntercept",
        value: format!("{}/{}", show(slope), show(intercept)),
        problem: format!(
            "maps the {} {bits_stored}-bit stored values to {}..{} HU, which does not reach from air ({}) to bone ({}); not a CT rescale",
            if signed { "signed" } else { "unsigned" },
            show(hu_lo),
            show(hu_hi),
            HU_BODY[0],
            HU_BODY[1]
        ),
    })
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}

fn angle_deg(a: [f64; 3], b: [f64; 3]) -> f64 {
    (dot(a, b) / (norm(a) * norm(b)))
        .clamp(-1.0, 1.0)
        .acos()
        .to_degrees()
}

/// The row and column direction cosines of a slice, checked to be usable unit-ish vectors.
fn orientation(h: &SliceHeader) -> Result<([f64; 3], [f64; 3]), DicomError> {
    let file = h.path.as_path();
    let iop = require(&h.orientation, file, "ImageOrientationPatient")?;
    if iop.len() != 6 {
        return Err(bad(file, "ImageOrientationPatient", &iop, "needs 6 values"));
    }
    let r = [iop[0], iop[1], iop[2]];
    let c = [iop[3], iop[4], iop[5]];
    let (nr, nc) = (norm(r), norm(c));
    // Cosines are written with a few decimals; anything near unit length is a direction.
    if (nr - 1.0).abs() > 0.01 || (nc - 1.0).abs() > 0.01 {
        return Err(bad(
            file,
            "ImageOrientationPatient",
            &iop,
            "direction cosines are not unit vectors",
        ));
    }
    if (dot(r, c) / (nr * nc)).abs() > 0.01 {
        return Err(bad(
            file,
            "ImageOrientationPatient",
            &iop,
            "row and column directions are not perpendicular",
        ));
    }
    Ok((r.map(|v| v / nr), c.map(|v| v / nc)))
}

fn position(h: &SliceHeader) -> Result<[f64; 3], DicomError> {
    let file = h.path.as_path();
    let ipp = require(&h.position, file, "ImagePositionPatient")?;
    if ipp.len() != 3 {
        return Err(bad(file, "ImagePositionPatient", &ipp, "needs 3 values"));
    }
    Ok([ipp[0], ipp[1], ipp[2]])
}

fn pixel_spacing(h: &SliceHeader) -> Result<[f64; 2], DicomError> {
    let file = h.path.as_path();
    let ps = require(&h.pixel_spacing, file, "PixelSpacing")?;
    if ps.len() != 2 {
        return Err(bad(file, "PixelSpacing", &ps, "needs 2 values"));
    }
    if !(ps[0] > 0.0 && ps[1] > 0.0) {
        return Err(bad(file, "PixelSpacing", &ps, "spacing must be positive"));
    }
    Ok([ps[0], ps[1]])
}

/// Orders the slices of one series and derives its grid (RAS), refusing irregular series.
pub(crate) fn arrange(dir: &Path, mut slices: Vec<SliceHeader>) -> Result<Layout, DicomError> {
    let Some(first) = slices.first() else {
        return Err(DicomError::NoDicom {
            dir: dir.to_path_buf(),
            skipped: 0,
            unreadable: None,
        });
    };
    if first.modality != "CT" {
        return Err(DicomError::NotCt {
            dir: dir.to_path_buf(),
            series_uid: first.series_uid.clone(),
            modality: if first.modality.is_empty() {
                "(none)".into()
            } else {
                first.modality.clone()
            },
        });
    }
    if slices.len() < 2 {
        return Err(DicomError::SingleSlice {
            dir: dir.to_path_buf(),
            series_uid: first.series_uid.clone(),
        });
    }

    // Same size everywhere (the first slice by path is the reference).
    let size0 = first.size().ok_or_else(|| bad_size(first))?;
    for h in &slices {
        let size = h.size().ok_or_else(|| bad_size(h))?;
        if size != size0 || size.contains(&0) {
            if size.contains(&0) {
                return Err(bad(&h.path, "Rows/Columns", size, "image is empty"));
            }
            return Err(DicomError::MixedSizes {
                dir: dir.to_path_buf(),
                first: first.path.clone(),
                first_size: size0,
                other: h.path.clone(),
                other_size: size,
            });
        }
    }

    // Every slice parallel to the first, with the same pixel spacing.
    let (r0, c0) = orientation(first)?;
    let ps0 = pixel_spacing(first)?;
    for h in &slices {
        let (r, c) = orientation(h)?;
        let angle = angle_deg(r, r0).max(angle_deg(c, c0));
        if angle > PARALLEL_TOLERANCE_DEG {
            return Err(DicomError::NonParallelSlices {
                file: h.path.clone(),
                reference: first.path.clone(),
                angle_deg: angle,
            });
        }
        let ps = pixel_spacing(h)?;
        if (0..2).any(|a| (ps[a] - ps0[a]).abs() > 1e-4 * ps0[a]) {
            return Err(bad(
                &h.path,
                "PixelSpacing",
                ps,
                &format!("differs from {:?} in {}", ps0, first.path.display()),
            ));
        }
        slice_format(h)?;
        if h.modality != first.modality {
            return Err(DicomError::SliceNotCt {
                file: h.path.clone(),
                series_uid: first.series_uid.clone(),
                modality: if h.modality.is_empty() {
                    "(none)".into()
                } else {
                    h.modality.clone()
                },
            });
        }
    }
    let normal = {
        let n = cross(r0, c0);
        let l = norm(n);
        n.map(|v| v / l)
    };

    // Sort along the normal; ties broken by path so that the error below names files stably.
    let mut keyed = slices
        .drain(..)
        .map(|h| Ok((dot(position(&h)?, normal), h)))
        .collect::<Result<Vec<_>, DicomError>>()?;
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.path.cmp(&b.1.path)));
    let keys: Vec<f64> = keyed.iter().map(|k| k.0).collect();
    let slices: Vec<SliceHeader> = keyed.into_iter().map(|k| k.1).collect();

    let mut gaps: Vec<f64> = keys.windows(2).map(|w| w[1] - w[0]).collect();
    let usual = {
        gaps.sort_by(f64::total_cmp);
        gaps[gaps.len() / 2]
    };
    let tol = (POSITION_TOLERANCE_REL * usual).max(POSITION_TOLERANCE_MM);
    for (k, w) in keys.windows(2).enumerate() {
        if w[1] - w[0] <= tol {
            return Err(DicomError::DuplicatePosition {
                dir: dir.to_path_buf(),
                a: slices[k].path.clone(),
                b: slices[k + 1].path.clone(),
                position_mm: w[0],
            });
        }
    }

    // Positions on the line through the first slice along the normal (no gantry tilt).
    let p0 = position(&slices[0])?;
    for h in &slices[1..] {
        let p = position(h)?;
        let v = [p[0] - p0[0], p[1] - p0[1], p[2] - p0[2]];
        let along = dot(v, normal);
        let off = norm([
            v[0] - along * normal[0],
            v[1] - along * normal[1],
            v[2] - along * normal[2],
        ]);
        if off > tol {
            return Err(DicomError::GantryTilt {
                file: h.path.clone(),
                reference: slices[0].path.clone(),
                offset_mm: off,
                angle_deg: off.atan2(along.abs()).to_degrees(),
            });
        }
    }

    for (k, w) in keys.windows(2).enumerate() {
        let gap = w[1] - w[0];
        if (gap - usual).abs() <= tol {
            continue;
        }
        let (a, b) = (slices[k].path.clone(), slices[k + 1].path.clone());
        let m = (gap / usual).round();
        if m >= 2.0 && (gap - m * usual).abs() <= tol * m {
            return Err(DicomError::MissingSlices {
                dir: dir.to_path_buf(),
                a,
                b,
                gap_mm: gap,
                spacing_mm: usual,
                missing: m as usize - 1,
            });
        }
        return Err(DicomError::NonUniformSpacing {
            dir: dir.to_path_buf(),
            a,
            b,
            gap_mm: gap,
            spacing_mm: usual,
            tolerance_mm: tol,
        });
    }
    let n = slices.len();
    let dz = (keys[n - 1] - keys[0]) / (n - 1) as f64;

    // DICOM LPS to NIfTI RAS: negate x and y of the origin and of every axis direction.
    let lps_to_ras = |v: [f64; 3]| [-v[0], -v[1], v[2]];
    let (r, c, nn) = (lps_to_ras(r0), lps_to_ras(c0), lps_to_ras(normal));
    let direction = [
        [r[0], c[0], nn[0]],
        [r[1], c[1], nn[1]],
        [r[2], c[2], nn[2]],
    ];
    let geometry = Geometry::new(
        [size0[0], size0[1], n],
        // PixelSpacing is (between rows, between columns); i runs along a row.
        [ps0[1], ps0[0], dz],
        lps_to_ras(p0),
        direction,
    )
    .map_err(|source| DicomError::Geometry {
        dir: dir.to_path_buf(),
        source,
    })?;
    Ok(Layout { geometry, slices })
}

fn bad_size(h: &SliceHeader) -> DicomError {
    let file = h.path.as_path();
    if let Err(e) = require(&h.rows, file, "Rows") {
        return e;
    }
    if let Err(e) = require(&h.columns, file, "Columns") {
        return e;
    }
    bad(
        file,
        "Rows/Columns",
        (&h.rows, &h.columns),
        "not a valid image size",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An axial CT slice at `ipp`: 4 columns x 3 rows, PixelSpacing (0.5 between rows, 0.25
    /// between columns).
    fn slice(name: &str, ipp: [f64; 3]) -> SliceHeader {
        SliceHeader {
            path: name.into(),
            series_uid: "1.2.3".into(),
            description: String::new(),
            modality: "CT".into(),
            series_number: None,
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            rows: Ok(Some(3)),
            columns: Ok(Some(4)),
            samples_per_pixel: Ok(Some(1)),
            bits_allocated: Ok(Some(16)),
            bits_stored: Ok(Some(16)),
            high_bit: Ok(Some(15)),
            pixel_representation: Ok(Some(1)),
            number_of_frames: Ok(None),
            photometric: Some("MONOCHROME2".into()),
            orientation: Ok(Some(vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0])),
            position: Ok(Some(ipp.to_vec())),
            pixel_spacing: Ok(Some(vec![0.5, 0.25])),
            rescale_slope: Ok(None),
            rescale_intercept: Ok(None),
            has_float_pixels: false,
            parse_bytes: Some(1000),
        }
    }

    fn series(zs: &[f64]) -> Vec<SliceHeader> {
        zs.iter()
            .enumerate()
            .map(|(n, &z)| slice(&format!("f{n}"), [10.0, 20.0, z]))
            .collect()
    }

    #[test]
    fn grid_of_an_axial_series_in_ras() {
        // Files in the order 3, 1, 2, 0 along z; spacing 2 mm; first slice at z = -5.
        let l = arrange(Path::new("d"), series(&[1.0, -3.0, -1.0, -5.0])).unwrap();
        let names: Vec<_> = l
            .slices
            .iter()
            .map(|h| h.path.display().to_string())
            .collect();
        assert_eq!(names, ["f3", "f1", "f2", "f0"]);
        let g = l.geometry;
        assert_eq!(g.shape(), [4, 3, 4]);
        assert_eq!(g.spacing_mm(), [0.25, 0.5, 2.0]);
        // LPS (10, 20, -5) is RAS (-10, -20, -5); LPS +x/+y are RAS -x/-y.
        assert_eq!(g.origin_mm(), [-10.0, -20.0, -5.0]);
        assert_eq!(
            g.direction(),
            [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]]
        );
    }

    #[test]
    fn spacing_tolerance_is_one_percent_or_a_hundredth_of_a_mm() {
        // Spacing 2 mm: tolerance 0.02 mm. A gap of 2.019 passes, and the spacing used is the
        // mean over the series, not the median gap.
        let l = arrange(Path::new("d"), series(&[0.0, 2.0, 4.019, 6.019])).unwrap();
        assert!((l.geometry.spacing_mm()[2] - 6.019 / 3.0).abs() < 1e-12);
        let e = arrange(Path::new("d"), series(&[0.0, 2.0, 4.03, 6.03])).unwrap_err();
        assert!(matches!(e, DicomError::NonUniformSpacing { .. }), "{e}");
        // Spacing 0.5 mm: 1% would be 0.005, the 0.01 mm floor applies.
        assert!(arrange(Path::new("d"), series(&[0.0, 0.5, 1.009, 1.509])).is_ok());
        let e = arrange(Path::new("d"), series(&[0.0, 0.5, 1.012, 1.512])).unwrap_err();
        assert!(matches!(e, DicomError::NonUniformSpacing { .. }), "{e}");
        // A gap of three spacings: two slices missing.
        let e = arrange(Path::new("d"), series(&[0.0, 1.0, 2.0, 5.0, 6.0])).unwrap_err();
        assert!(
            matches!(e, DicomError::MissingSlices { missing: 2, .. }),
            "{e}"
        );
    }

    #[test]
    fn in_plane_drift_beyond_tolerance_is_tilt() {
        let mut s = series(&[0.0, 1.0, 2.0, 3.0]);
        s[3].position = Ok(Some(vec![10.0, 20.009, 3.0]));
        assert!(arrange(Path::new("d"), s.clone()).is_ok());
        s[3].position = Ok(Some(vec![10.0, 20.011, 3.0]));
        let e = arrange(Path::new("d"), s).unwrap_err();
        assert!(matches!(e, DicomError::GantryTilt { .. }), "{e}");
    }

    #[test]
    fn single_slice_and_bad_rescale_are_refused() {
        let e = arrange(Path::new("d"), series(&[0.0])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "d: series 1.2.3 has only one slice; a volume needs at least two"
        );
        let mut s = series(&[0.0, 1.0]);
        s[1].rescale_slope = Ok(Some(0.0));
        let e = arrange(Path::new("d"), s).unwrap_err();
        assert_eq!(
            e.to_string(),
            "f1: RescaleSlope = \"0.0\": must not be zero"
        );
    }
}
