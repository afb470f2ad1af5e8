//! A DICOM Segmentation object (Segmentation IOD, BINARY) over the source series.
//!
//! One segment per organ present in the label map; one frame per (segment, source slice that
//! holds some of that organ), segments in label order and slices in volume order: slices where
//! an organ is absent get no frame (readers such as highdicom and 3D Slicer treat them as
//! empty). Each frame carries the source slice's own ImagePositionPatient (copied verbatim), its
//! segment number, and a DerivationImageSequence naming the source image; pixel spacing, slice
//! thickness and orientation are shared. Frames are bit-packed one after the other (pixel `n` of
//! the stream is bit `n % 8` of byte `n / 8`, PS3.5 8.1.1), padded to an even length.
//!
//! Segments are coded with SNOMED CT (category "Anatomical Structure", type the organ), made by
//! an AUTOMATIC algorithm named by [`Algorithm`], with recommended display colours in CIELab.

use dicom_core::{DataElement, PrimitiveValue, VR, value::C};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use flare_volume::LabelMap;

use super::{
    ANATOMICAL_STRUCTURE, Algorithm, DicomOutput, NewInstance, Organ, SourceSeries, code, common,
    encode, item, new_uid, put_seq, put_str, put_strs, put_us,
};
use crate::DicomError;

/// Segmentation Storage.
pub const SEGMENTATION_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.66.4";

/// Series number of the SEG series (the RTSTRUCT's is one more).
pub const SEG_SERIES_NUMBER: i32 = 901;

/// Builds the SEG of `labels` (on `source`'s grid) with a segment for each of `organs` present.
///
/// Fails when the label map is not on the series' grid or holds none of the organs.
pub fn segmentation(
    source: &SourceSeries,
    labels: &LabelMap,
    organs: &[Organ],
    algorithm: &Algorithm,
) -> Result<DicomOutput, DicomError> {
    source.check_grid(labels)?;
    let rows = usize::from(source.rows);
    let cols = usize::from(source.columns);
    let per_slice = rows * cols;
    let n_slices = source.slices.len();

    // (segment number, organ, slices holding it)
    let mut segments: Vec<(u16, &Organ, Vec<usize>)> = Vec::new();
    for organ in organs {
        let ks: Vec<usize> = (0..n_slices)
            .filter(|&k| source.slice_has(labels, k, organ.label))
            .collect();
        if !ks.is_empty() {
            segments.push((segments.len() as u16 + 1, organ, ks));
        }
    }
    if segments.is_empty() {
        return Err(DicomError::NoOrgan {
            dir: source.dir.clone(),
            what: "a DICOM-SEG",
        });
    }
    let n_frames: usize = segments.iter().map(|s| s.2.len()).sum();

    // Bit-packed frames, one after the other.
    let mut pixels = vec![0u8; (n_frames * per_slice).div_ceil(8).next_multiple_of(2)];
    let data = labels.data();
    let mut bit = 0usize;
    for (_, organ, ks) in &segments {
        for &k in ks {
            for &v in &data[k * per_slice..(k + 1) * per_slice] {
                if v == organ.label {
                    pixels[bit / 8] |= 1 << (bit % 8);
                }
                bit += 1;
            }
        }
    }

    let sop_instance_uid = new_uid();
    let series_instance_uid = new_uid();
    let dimension_uid = new_uid();
    let mut obj = InMemDicomObject::new_empty();
    common(
        &mut obj,
        source,
        &NewInstance {
            sop_class_uid: SEGMENTATION_STORAGE,
            sop_instance_uid: &sop_instance_uid,
            series_instance_uid: &series_instance_uid,
            modality: "SEG",
            series_number: SEG_SERIES_NUMBER,
            series_description: "flare organs (SEG)",
        },
        algorithm,
    );
    let (date, time) = super::now_da_tm();
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
    // General Image, Segmentation Image, Image Pixel.
    put_strs(
        &mut obj,
        tags::IMAGE_TYPE,
        VR::CS,
        &["DERIVED".into(), "PRIMARY".into()],
    );
    put_str(&mut obj, tags::INSTANCE_NUMBER, VR::IS, "1");
    put_str(&mut obj, tags::CONTENT_DATE, VR::DA, &date);
    put_str(&mut obj, tags::CONTENT_TIME, VR::TM, &time);
    put_str(&mut obj, tags::CONTENT_LABEL, VR::CS, "ORGANS");
    put_str(
        &mut obj,
        tags::CONTENT_DESCRIPTION,
        VR::LO,
        "Abdominal organs segmented by flare",
    );
    put_str(&mut obj, tags::CONTENT_CREATOR_NAME, VR::PN, "");
    put_us(&mut obj, tags::SAMPLES_PER_PIXEL, &[1]);
    put_str(
        &mut obj,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2",
    );
    put_us(&mut obj, tags::ROWS, &[source.rows]);
    put_us(&mut obj, tags::COLUMNS, &[source.columns]);
    put_us(&mut obj, tags::BITS_ALLOCATED, &[1]);
    put_us(&mut obj, tags::BITS_STORED, &[1]);
    put_us(&mut obj, tags::HIGH_BIT, &[0]);
    put_us(&mut obj, tags::PIXEL_REPRESENTATION, &[0]);
    put_str(&mut obj, tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00");
    put_str(&mut obj, tags::SEGMENTATION_TYPE, VR::CS, "BINARY");
    put_str(
        &mut obj,
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        n_frames.to_string(),
    );

    let segment_items = segments
        .iter()
        .map(|(number, organ, _)| segment_item(*number, organ, algorithm))
        .collect();
    put_seq(&mut obj, tags::SEGMENT_SEQUENCE, segment_items);

    // Multi-frame Dimension: frames are indexed by segment, then by position.
    put_seq(
        &mut obj,
        tags::DIMENSION_ORGANIZATION_SEQUENCE,
        vec![item(|o| {
            put_str(o, tags::DIMENSION_ORGANIZATION_UID, VR::UI, &dimension_uid)
        })],
    );
    put_str(&mut obj, tags::DIMENSION_ORGANIZATION_TYPE, VR::CS, "3D");
    let dimension = |pointer, group, label: &str| {
        item(|o| {
            put_str(o, tags::DIMENSION_ORGANIZATION_UID, VR::UI, &dimension_uid);
            o.put(DataElement::new(
                tags::DIMENSION_INDEX_POINTER,
                VR::AT,
                PrimitiveValue::Tags(C::from_elem(pointer, 1)),
            ));
            o.put(DataElement::new(
                tags::FUNCTIONAL_GROUP_POINTER,
                VR::AT,
                PrimitiveValue::Tags(C::from_elem(group, 1)),
            ));
            put_str(o, tags::DIMENSION_DESCRIPTION_LABEL, VR::LO, label);
        })
    };
    put_seq(
        &mut obj,
        tags::DIMENSION_INDEX_SEQUENCE,
        vec![
            dimension(
                tags::REFERENCED_SEGMENT_NUMBER,
                tags::SEGMENT_IDENTIFICATION_SEQUENCE,
                "Segment Number",
            ),
            dimension(
                tags::IMAGE_POSITION_PATIENT,
                tags::PLANE_POSITION_SEQUENCE,
                "Image Position Patient",
            ),
        ],
    );

    // Shared functional groups: pixel measures and orientation of the source series.
    let thickness = source
        .slice_thickness_text
        .clone()
        .unwrap_or_else(|| format!("{:.6}", source.geometry.spacing_mm()[2]));
    put_seq(
        &mut obj,
        tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
        vec![item(|o| {
            put_seq(
                o,
                tags::PIXEL_MEASURES_SEQUENCE,
                vec![item(|m| {
                    put_strs(m, tags::PIXEL_SPACING, VR::DS, &source.pixel_spacing_text);
                    put_str(m, tags::SLICE_THICKNESS, VR::DS, thickness);
                })],
            );
            put_seq(
                o,
                tags::PLANE_ORIENTATION_SEQUENCE,
                vec![item(|m| {
                    put_strs(
                        m,
                        tags::IMAGE_ORIENTATION_PATIENT,
                        VR::DS,
                        &source.orientation_text,
                    )
                })],
            );
        })],
    );

    let mut frames = Vec::with_capacity(n_frames);
    for (number, _, ks) in &segments {
        for &k in ks {
            let slice = &source.slices[k];
            frames.push(item(|f| {
                put_seq(
                    f,
                    tags::DERIVATION_IMAGE_SEQUENCE,
                    vec![item(|d| {
                        put_seq(
                            d,
                            tags::DERIVATION_CODE_SEQUENCE,
                            vec![code("113076", "DCM", "Segmentation")],
                        );
                        put_seq(
                            d,
                            tags::SOURCE_IMAGE_SEQUENCE,
                            vec![item(|s| {
                                put_str(
                                    s,
                                    tags::REFERENCED_SOP_CLASS_UID,
                                    VR::UI,
                                    &slice.sop_class_uid,
                                );
                                put_str(
                                    s,
                                    tags::REFERENCED_SOP_INSTANCE_UID,
                                    VR::UI,
                                    &slice.sop_instance_uid,
                                );
                                // Frames are on the source's pixel grid, pixel for pixel.
                                put_str(s, tags::SPATIAL_LOCATIONS_PRESERVED, VR::CS, "YES");
                                put_seq(
                                    s,
                                    tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
                                    vec![code(
                                        "121322",
                                        "DCM",
                                        "Source image for image processing operation",
                                    )],
                                );
                            })],
                        );
                    })],
                );
                put_seq(
                    f,
                    tags::FRAME_CONTENT_SEQUENCE,
                    vec![item(|c| {
                        c.put(DataElement::new(
                            tags::DIMENSION_INDEX_VALUES,
                            VR::UL,
                            PrimitiveValue::U32([u32::from(*number), k as u32 + 1].into()),
                        ));
                    })],
                );
                put_seq(
                    f,
                    tags::PLANE_POSITION_SEQUENCE,
                    vec![item(|p| {
                        put_strs(
                            p,
                            tags::IMAGE_POSITION_PATIENT,
                            VR::DS,
                            &slice.position_text,
                        )
                    })],
                );
                put_seq(
                    f,
                    tags::SEGMENT_IDENTIFICATION_SEQUENCE,
                    vec![item(|s| {
                        put_us(s, tags::REFERENCED_SEGMENT_NUMBER, &[*number])
                    })],
                );
            }));
        }
    }
    put_seq(&mut obj, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, frames);

    // Common Instance Reference: every image of the source series.
    put_seq(
        &mut obj,
        tags::REFERENCED_SERIES_SEQUENCE,
        vec![source.referenced_series_item()],
    );

    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::U8(C::from_vec(pixels)),
    ));

    let bytes = encode(obj, SEGMENTATION_STORAGE, &sop_instance_uid)?;
    Ok(DicomOutput {
        bytes,
        sop_instance_uid,
        series_instance_uid,
        labels: segments.iter().map(|s| s.1.label).collect(),
        items: n_frames,
    })
}

fn segment_item(number: u16, organ: &Organ, algorithm: &Algorithm) -> InMemDicomObject {
    item(|o| {
        put_us(o, tags::SEGMENT_NUMBER, &[number]);
        put_str(o, tags::SEGMENT_LABEL, VR::LO, &organ.name);
        put_seq(
            o,
            tags::SEGMENTED_PROPERTY_CATEGORY_CODE_SEQUENCE,
            vec![code(ANATOMICAL_STRUCTURE.0, "SCT", ANATOMICAL_STRUCTURE.1)],
        );
        put_seq(
            o,
            tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE,
            vec![code(&organ.snomed_code, "SCT", &organ.snomed_meaning)],
        );
        put_str(o, tags::SEGMENT_ALGORITHM_TYPE, VR::CS, "AUTOMATIC");
        put_str(
            o,
            tags::SEGMENT_ALGORITHM_NAME,
            VR::LO,
            truncate(
                &format!(
                    "{} {} ({})",
                    algorithm.name, algorithm.version, algorithm.model
                ),
                64,
            ),
        );
        put_seq(
            o,
            tags::SEGMENTATION_ALGORITHM_IDENTIFICATION_SEQUENCE,
            vec![item(|a| {
                put_seq(
                    a,
                    tags::ALGORITHM_FAMILY_CODE_SEQUENCE,
                    vec![code("123109", "DCM", "Artificial Intelligence")],
                );
                put_str(a, tags::ALGORITHM_NAME, VR::LO, &algorithm.name);
                put_str(a, tags::ALGORITHM_VERSION, VR::LO, &algorithm.version);
                put_str(
                    a,
                    tags::ALGORITHM_PARAMETERS,
                    VR::LT,
                    format!("model: {}", algorithm.model),
                );
            })],
        );
        put_us(
            o,
            tags::RECOMMENDED_DISPLAY_CIE_LAB_VALUE,
            &dicom_lab(organ.rgb),
        );
    })
}

/// At most `n` characters (LO values hold 64).
pub(super) fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// An sRGB colour as DICOM's scaled CIELab (PS3.3 C.10.7.1.1): L* 0..100 to 0..65535, a* and
/// b* -128..127 to 0..65535, with the D65 white point (as skimage's `rgb2lab` and highdicom).
pub fn dicom_lab(rgb: [u8; 3]) -> [u16; 3] {
    let lin = rgb.map(|c| {
        let c = f64::from(c) / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    });
    let xyz = [
        0.412453 * lin[0] + 0.357580 * lin[1] + 0.180423 * lin[2],
        0.212671 * lin[0] + 0.715160 * lin[1] + 0.072169 * lin[2],
        0.019334 * lin[0] + 0.119193 * lin[1] + 0.950227 * lin[2],
    ];
    let white = [0.95047, 1.0, 1.08883];
    let f = |t: f64| {
        if t > 0.008856 {
            t.cbrt()
        } else {
            7.787 * t + 16.0 / 116.0
        }
    };
    let [fx, fy, fz] = [0, 1, 2].map(|i| f(xyz[i] / white[i]));
    let (l, a, b) = (116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz));
    let scale = |v: f64, lo: f64, hi: f64| {
        ((v - lo) / (hi - lo) * 65535.0).round().clamp(0.0, 65535.0) as u16
    };
    [
        scale(l, 0.0, 100.0),
        scale(a, -128.0, 127.0),
        scale(b, -128.0, 127.0),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_of_white_black_and_a_known_colour() {
        // White: L* 100, a* = b* = 0, which scale to 65535 and 128/255 * 65535 = 32896 (to
        // within one step: the sRGB matrix's rows sum to the white point to 6 digits only).
        let near = |x: [u16; 3], y: [u16; 3]| (0..3).all(|i| x[i].abs_diff(y[i]) <= 1);
        assert!(near(dicom_lab([255, 255, 255]), [65535, 32896, 32896]));
        assert!(near(dicom_lab([0, 0, 0]), [0, 32896, 32896]));
        // Pure sRGB red is L* 53.24, a* 80.09, b* 67.20 (skimage.color.rgb2lab).
        let [l, a, b] = dicom_lab([255, 0, 0]);
        let back = |v: u16, lo: f64, hi: f64| f64::from(v) / 65535.0 * (hi - lo) + lo;
        assert!((back(l, 0.0, 100.0) - 53.24).abs() < 0.05);
        assert!((back(a, -128.0, 127.0) - 80.09).abs() < 0.05);
        assert!((back(b, -128.0, 127.0) - 67.20).abs() < 0.05);
    }
}
