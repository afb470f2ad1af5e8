//! Decoding slices straight into the volume's buffer, in Hounsfield units.
//!
//! Uncompressed pixel data is converted from the parsed element without an intermediate copy;
//! encapsulated (compressed) pixel data goes through dicom-pixeldata's codecs first. Either way
//! the stored value `v` becomes `v * RescaleSlope + RescaleIntercept`, computed in f64 and
//! rounded once to f32. Samples are taken at their full BitsAllocated width (as pydicom, GDCM and
//! dcm2niix do): scanners store padding values such as -3024 outside the BitsStored range.

use std::path::Path;

use dicom_core::value::{DicomValueType, PrimitiveValue, Value};
use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};

use crate::{
    DicomError,
    layout::{SliceFormat, slice_format},
    scan::SliceHeader,
};

/// Refuses, before anything is decoded, a transfer syntax whose pixel data this build cannot read.
pub(crate) fn check_transfer_syntax(h: &SliceHeader) -> Result<(), DicomError> {
    let uid = h.transfer_syntax.as_str();
    let unsupported = |name: &str| DicomError::UnsupportedTransferSyntax {
        file: h.path.clone(),
        uid: uid.to_string(),
        name: name.to_string(),
    };
    match TransferSyntaxRegistry.get(uid) {
        None => Err(unsupported("an unknown transfer syntax")),
        Some(ts) if !ts.can_decode_all() => Err(unsupported(ts.name())),
        Some(_) => Ok(()),
    }
}

/// Stored samples as the parser left them.
enum Samples<'a> {
    /// Little-endian bytes (OB, or pixel data as decoded by a codec).
    Bytes(&'a [u8]),
    U16(&'a [u16]),
    I16(&'a [i16]),
    U32(&'a [u32]),
    I32(&'a [i32]),
}

impl Samples<'_> {
    fn len_bytes(&self) -> usize {
        match self {
            Samples::Bytes(b) => b.len(),
            Samples::U16(v) => v.len() * 2,
            Samples::I16(v) => v.len() * 2,
            Samples::U32(v) => v.len() * 4,
            Samples::I32(v) => v.len() * 4,
        }
    }
}

/// Reads one slice file and writes its `columns x rows` values (HU) into `out`.
pub(crate) fn decode_slice(h: &SliceHeader, out: &mut [f32]) -> Result<(), DicomError> {
    let file = h.path.as_path();
    let fmt = slice_format(h)?;
    let obj = OpenFileOptions::new()
        .open_file(file)
        .map_err(|e| DicomError::Unreadable {
            file: file.to_path_buf(),
            message: e.to_string(),
        })?;
    let Some(elem) = obj.element_opt(tags::PIXEL_DATA).ok().flatten() else {
        return Err(DicomError::MissingPixelData {
            file: file.to_path_buf(),
        });
    };
    match elem.value() {
        Value::Primitive(p) => {
            let samples = match p {
                PrimitiveValue::Empty => {
                    return Err(DicomError::MissingPixelData {
                        file: file.to_path_buf(),
                    });
                }
                PrimitiveValue::U8(v) => Samples::Bytes(v),
                PrimitiveValue::U16(v) => Samples::U16(v),
                PrimitiveValue::I16(v) => Samples::I16(v),
                PrimitiveValue::U32(v) => Samples::U32(v),
                PrimitiveValue::I32(v) => Samples::I32(v),
                other => {
                    return Err(DicomError::UnsupportedFormat {
                        file: file.to_path_buf(),
                        what: format!("pixel data stored as {:?}", other.value_type()),
                    });
                }
            };
            convert(file, &samples, &fmt, out)
        }
        Value::PixelSequence(_) => {
            let decoded = obj.decode_pixel_data().map_err(|e| DicomError::Decode {
                file: file.to_path_buf(),
                message: e.to_string(),
            })?;
            let fmt = SliceFormat {
                bits_allocated: usize::from(decoded.bits_allocated()),
                signed: decoded.pixel_representation()
                    == dicom_pixeldata::PixelRepresentation::Signed,
                ..fmt
            };
            convert(file, &Samples::Bytes(decoded.data()), &fmt, out)
        }
        Value::Sequence(_) => Err(DicomError::UnsupportedFormat {
            file: file.to_path_buf(),
            what: "pixel data is a sequence".into(),
        }),
    }
}

/// Converts `out.len()` (= columns x rows) stored samples to HU.
fn convert(
    file: &Path,
    samples: &Samples<'_>,
    fmt: &SliceFormat,
    out: &mut [f32],
) -> Result<(), DicomError> {
    let n = out.len();
    let bps = fmt.bits_allocated / 8;
    if samples.len_bytes() < n * bps {
        return Err(DicomError::TruncatedPixelData {
            file: file.to_path_buf(),
            rows: fmt.size[1],
            columns: fmt.size[0],
            bytes_per_sample: bps,
            expected: n * bps,
            actual: samples.len_bytes(),
        });
    }
    let (slope, intercept) = (fmt.slope, fmt.intercept);
    let put = |out: &mut [f32], raw: &mut dyn Iterator<Item = f64>| {
        for (o, v) in out.iter_mut().zip(raw) {
            *o = (v * slope + intercept) as f32;
        }
    };
    // Fast paths for the common 16-bit cases keep the loop free of dynamic dispatch.
    match (samples, fmt.bits_allocated, fmt.signed) {
        (Samples::I16(v), 16, true) => fill(out, v, |x| f64::from(*x), slope, intercept),
        (Samples::U16(v), 16, false) => fill(out, v, |x| f64::from(*x), slope, intercept),
        (Samples::I16(v), 16, false) => fill(out, v, |x| f64::from(*x as u16), slope, intercept),
        (Samples::U16(v), 16, true) => fill(out, v, |x| f64::from(*x as i16), slope, intercept),
        (Samples::Bytes(b), 16, signed) => {
            let words = b.chunks_exact(2).map(|c| [c[0], c[1]]);
            if signed {
                put(out, &mut words.map(|w| f64::from(i16::from_le_bytes(w))));
            } else {
                put(out, &mut words.map(|w| f64::from(u16::from_le_bytes(w))));
            }
        }
        (Samples::Bytes(b), 8, signed) => {
            if signed {
                put(out, &mut b.iter().map(|&x| f64::from(x as i8)));
            } else {
                put(out, &mut b.iter().map(|&x| f64::from(x)));
            }
        }
        (Samples::Bytes(b), 32, signed) => {
            let words = b.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]);
            if signed {
                put(out, &mut words.map(|w| f64::from(i32::from_le_bytes(w))));
            } else {
                put(out, &mut words.map(|w| f64::from(u32::from_le_bytes(w))));
            }
        }
        (Samples::U32(v), 32, signed) => {
            if signed {
                put(out, &mut v.iter().map(|&x| f64::from(x as i32)));
            } else {
                put(out, &mut v.iter().map(|&x| f64::from(x)));
            }
        }
        (Samples::I32(v), 32, signed) => {
            if signed {
                put(out, &mut v.iter().map(|&x| f64::from(x)));
            } else {
                put(out, &mut v.iter().map(|&x| f64::from(x as u32)));
            }
        }
        _ => {
            return Err(DicomError::UnsupportedFormat {
                file: file.to_path_buf(),
                what: format!(
                    "pixel data element does not match BitsAllocated {}",
                    fmt.bits_allocated
                ),
            });
        }
    }
    Ok(())
}

#[inline]
fn fill<T>(out: &mut [f32], v: &[T], to_f64: impl Fn(&T) -> f64, slope: f64, intercept: f64) {
    for (o, x) in out.iter_mut().zip(v) {
        *o = (to_f64(x) * slope + intercept) as f32;
    }
}
