//! An RT Structure Set over the source series: one ROI per organ present, closed planar
//! contours per slice.
//!
//! Each slice's mask of an organ is outlined by [`flare_imgproc::outlines`] (marching squares:
//! vertices half-way between inside and outside pixel centres, so a reader that fills contours
//! by pixel centre recovers the mask exactly). Several pieces give several contours; a hole is
//! one more contour inside its piece, to be combined by the even-odd rule (XOR), as most
//! planning systems and rt-utils / dicompyler read nested contours. Each contour lies in its
//! slice's plane (the source's own ImagePositionPatient, row and column directions and pixel
//! spacing, in patient LPS millimetres) and names that image in its ContourImageSequence.
//! Colours are the given RGB; ROIs carry the organ's SNOMED CT code.

use dicom_core::VR;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use flare_volume::LabelMap;

use super::{
    Algorithm, DicomOutput, NewInstance, Organ, SourceSeries, code, common, encode, item, new_uid,
    put_seq, put_str, put_strs,
};
use crate::DicomError;

/// RT Structure Set Storage.
pub const RT_STRUCTURE_SET_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.481.3";

/// The (retired) Study Component Management SOP class that RTReferencedStudySequence names by
/// convention, with the StudyInstanceUID as the instance.
const STUDY_REFERENCE_CLASS: &str = "1.2.840.10008.3.1.2.3.1";

/// Series number of the RTSTRUCT series.
pub const RTSTRUCT_SERIES_NUMBER: i32 = 902;

/// A DS value of at most 16 characters (0.01 micrometre is far below any CT pixel).
fn ds(v: f64) -> String {
    for decimals in (0..=5).rev() {
        let s = format!("{v:.decimals$}");
        let s = if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        };
        let s = if s == "-0" { "0".to_string() } else { s };
        if s.len() <= 16 {
            return s;
        }
    }
    format!("{v:.0}")
}

/// Builds the RTSTRUCT of `labels` (on `source`'s grid) with an ROI for each of `organs` present.
///
/// Fails when the label map is not on the series' grid or holds none of the organs.
pub fn structure_set(
    source: &SourceSeries,
    labels: &LabelMap,
    organs: &[Organ],
    algorithm: &Algorithm,
) -> Result<DicomOutput, DicomError> {
    source.check_grid(labels)?;
    let rows = usize::from(source.rows);
    let cols = usize::from(source.columns);
    let per_slice = rows * cols;
    let parse = |v: &[String], n: usize, what: &'static str| -> Result<Vec<f64>, DicomError> {
        let p: Vec<f64> = v.iter().filter_map(|s| s.parse().ok()).collect();
        if p.len() == n {
            Ok(p)
        } else {
            Err(DicomError::BadAttribute {
                file: source.slices[0].file.clone(),
                attribute: what,
                value: v.join("\\"),
                problem: format!("needs {n} numbers"),
            })
        }
    };
    let iop = parse(&source.orientation_text, 6, "ImageOrientationPatient")?;
    let ps = parse(&source.pixel_spacing_text, 2, "PixelSpacing")?;
    let (row_dir, col_dir) = ([iop[0], iop[1], iop[2]], [iop[3], iop[4], iop[5]]);

    let data = labels.data();
    let mut roi_contours = Vec::new();
    let mut present = Vec::new();
    let mut n_contours = 0usize;
    for organ in organs {
        let mut contours = Vec::new();
        for (k, slice) in source.slices.iter().enumerate() {
            let plane = &data[k * per_slice..(k + 1) * per_slice];
            if !plane.contains(&organ.label) {
                continue;
            }
            // Outline only the organ's box in this slice: the outlines are the same, found in
            // a fraction of the time (organs cover a small part of a 512 x 512 slice).
            let (mut x0, mut y0, mut x1, mut y1) = (cols, rows, 0, 0);
            for (n, _) in plane.iter().enumerate().filter(|(_, v)| **v == organ.label) {
                let (x, y) = (n % cols, n / cols);
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            }
            let (bw, bh) = (x1 - x0 + 1, y1 - y0 + 1);
            let mask: Vec<bool> = (y0..=y1)
                .flat_map(|y| plane[y * cols + x0..y * cols + x0 + bw].iter())
                .map(|&v| v == organ.label)
                .collect();
            let outlines =
                flare_imgproc::outlines(&mask, bw, bh).map_err(|e| DicomError::Encode {
                    message: e.to_string(),
                })?;
            for o in outlines {
                let mut values = Vec::with_capacity(o.points.len() * 3);
                for [bx, by] in &o.points {
                    let (x, y) = (bx + x0 as f64, by + y0 as f64);
                    // x runs along a row (columns, spaced PixelSpacing[1]), y down the rows.
                    for a in 0..3 {
                        let w =
                            slice.position_mm[a] + row_dir[a] * x * ps[1] + col_dir[a] * y * ps[0];
                        values.push(ds(w));
                    }
                }
                contours.push(item(|c| {
                    put_seq(c, tags::CONTOUR_IMAGE_SEQUENCE, vec![slice.reference()]);
                    put_str(c, tags::CONTOUR_GEOMETRIC_TYPE, VR::CS, "CLOSED_PLANAR");
                    put_str(
                        c,
                        tags::NUMBER_OF_CONTOUR_POINTS,
                        VR::IS,
                        o.points.len().to_string(),
                    );
                    put_str(
                        c,
                        tags::CONTOUR_NUMBER,
                        VR::IS,
                        (n_contours + 1).to_string(),
                    );
                    put_strs(c, tags::CONTOUR_DATA, VR::DS, &values);
                }));
                n_contours += 1;
            }
        }
        if contours.is_empty() {
            continue;
        }
        present.push(organ);
        let rgb = organ.rgb.map(|v| v.to_string());
        roi_contours.push(item(|r| {
            put_strs(r, tags::ROI_DISPLAY_COLOR, VR::IS, &rgb);
            put_seq(r, tags::CONTOUR_SEQUENCE, contours);
            put_str(
                r,
                tags::REFERENCED_ROI_NUMBER,
                VR::IS,
                organ.label.to_string(),
            );
        }));
    }
    if present.is_empty() {
        return Err(DicomError::NoOrgan {
            dir: source.dir.clone(),
            what: "an RTSTRUCT",
        });
    }

    let sop_instance_uid = new_uid();
    let series_instance_uid = new_uid();
    let mut obj = InMemDicomObject::new_empty();
    common(
        &mut obj,
        source,
        &NewInstance {
            sop_class_uid: RT_STRUCTURE_SET_STORAGE,
            sop_instance_uid: &sop_instance_uid,
            series_instance_uid: &series_instance_uid,
            modality: "RTSTRUCT",
            series_number: RTSTRUCT_SERIES_NUMBER,
            series_description: "flare organs (RTSTRUCT)",
        },
        algorithm,
    );
    let (date, time) = super::now_da_tm();
    put_str(&mut obj, tags::OPERATORS_NAME, VR::PN, "");
    put_str(
        &mut obj,
        tags::FRAME_OF_REFERENCE_UID,
        VR::UI,
        &source.frame_of_reference_uid,
    );
    put_str(
        &mut obj,
        tags::POSITION_REFERENCE_INDICATOR,
        VR::LO,
        &source.position_reference_indicator,
    );
    put_str(&mut obj, tags::INSTANCE_NUMBER, VR::IS, "1");
    put_str(&mut obj, tags::STRUCTURE_SET_LABEL, VR::SH, "flare organs");
    put_str(&mut obj, tags::STRUCTURE_SET_NAME, VR::LO, "flare organs");
    put_str(&mut obj, tags::STRUCTURE_SET_DATE, VR::DA, &date);
    put_str(&mut obj, tags::STRUCTURE_SET_TIME, VR::TM, &time);

    put_seq(
        &mut obj,
        tags::REFERENCED_FRAME_OF_REFERENCE_SEQUENCE,
        vec![item(|f| {
            put_str(
                f,
                tags::FRAME_OF_REFERENCE_UID,
                VR::UI,
                &source.frame_of_reference_uid,
            );
            put_seq(
                f,
                tags::RT_REFERENCED_STUDY_SEQUENCE,
                vec![item(|s| {
                    put_str(
                        s,
                        tags::REFERENCED_SOP_CLASS_UID,
                        VR::UI,
                        STUDY_REFERENCE_CLASS,
                    );
                    put_str(
                        s,
                        tags::REFERENCED_SOP_INSTANCE_UID,
                        VR::UI,
                        &source.study_instance_uid,
                    );
                    put_seq(
                        s,
                        tags::RT_REFERENCED_SERIES_SEQUENCE,
                        vec![item(|r| {
                            put_str(
                                r,
                                tags::SERIES_INSTANCE_UID,
                                VR::UI,
                                &source.series_instance_uid,
                            );
                            put_seq(
                                r,
                                tags::CONTOUR_IMAGE_SEQUENCE,
                                source.slices.iter().map(|s| s.reference()).collect(),
                            );
                        })],
                    );
                })],
            );
        })],
    );

    let algorithm_text = super::seg::truncate(
        &format!(
            "{} {} ({})",
            algorithm.name, algorithm.version, algorithm.model
        ),
        64,
    );
    put_seq(
        &mut obj,
        tags::STRUCTURE_SET_ROI_SEQUENCE,
        present
            .iter()
            .map(|organ| {
                item(|r| {
                    put_str(r, tags::ROI_NUMBER, VR::IS, organ.label.to_string());
                    put_str(
                        r,
                        tags::REFERENCED_FRAME_OF_REFERENCE_UID,
                        VR::UI,
                        &source.frame_of_reference_uid,
                    );
                    put_str(r, tags::ROI_NAME, VR::LO, &organ.name);
                    put_str(r, tags::ROI_GENERATION_ALGORITHM, VR::CS, "AUTOMATIC");
                    put_str(r, tags::ROI_GENERATION_DESCRIPTION, VR::LO, &algorithm_text);
                })
            })
            .collect(),
    );
    put_seq(&mut obj, tags::ROI_CONTOUR_SEQUENCE, roi_contours);
    put_seq(
        &mut obj,
        tags::RTROI_OBSERVATIONS_SEQUENCE,
        present
            .iter()
            .map(|organ| {
                item(|o| {
                    put_str(o, tags::OBSERVATION_NUMBER, VR::IS, organ.label.to_string());
                    put_str(
                        o,
                        tags::REFERENCED_ROI_NUMBER,
                        VR::IS,
                        organ.label.to_string(),
                    );
                    put_seq(
                        o,
                        tags::RTROI_IDENTIFICATION_CODE_SEQUENCE,
                        vec![code(&organ.snomed_code, "SCT", &organ.snomed_meaning)],
                    );
                    put_str(o, tags::RTROI_INTERPRETED_TYPE, VR::CS, "ORGAN");
                    put_str(o, tags::ROI_INTERPRETER, VR::PN, "");
                })
            })
            .collect(),
    );

    let bytes = encode(obj, RT_STRUCTURE_SET_STORAGE, &sop_instance_uid)?;
    Ok(DicomOutput {
        bytes,
        sop_instance_uid,
        series_instance_uid,
        labels: present.iter().map(|o| o.label).collect(),
        items: n_contours,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ds_values_fit_sixteen_characters() {
        assert_eq!(ds(0.0), "0");
        assert_eq!(ds(-0.000001), "0");
        assert_eq!(ds(12.5), "12.5");
        assert_eq!(ds(-123.456789), "-123.45679");
        assert_eq!(ds(1.0 / 3.0), "0.33333");
        let big = ds(-123_456_789_012.345);
        assert!(big.len() <= 16, "{big}");
    }
}
