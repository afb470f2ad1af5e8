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
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};

mod codestream;

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
    let obj = crate::guard::open_full(file).map_err(|d| DicomError::Unreadable {
        file: file.to_path_buf(),
        message: d.message,
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
        Value::PixelSequence(seq) => {
            let first = seq.fragments().first().map(Vec::as_slice).unwrap_or(&[]);
            let contradiction = |problem: String| DicomError::HeaderContradictsPixels {
                file: file.to_path_buf(),
                problem,
            };
            codestream::check(&h.transfer_syntax, first, &fmt).map_err(contradiction)?;
            let decoded = contain_panic(|| obj.decode_pixel_data())
                .map_err(|message| DicomError::Decode {
                    file: file.to_path_buf(),
                    message,
                })?
                .map_err(|e| DicomError::Decode {
                    file: file.to_path_buf(),
                    message: e.to_string(),
                })?;
            let decoded_size = [decoded.columns() as usize, decoded.rows() as usize];
            if decoded_size != fmt.size || decoded.samples_per_pixel() != 1 {
                return Err(DicomError::Decode {
                    file: file.to_path_buf(),
                    message: format!(
                        "the codec produced {}x{} pixels with {} sample(s) each, the header says {}x{} with one",
                        decoded_size[0],
                        decoded_size[1],
                        decoded.samples_per_pixel(),
                        fmt.size[0],
                        fmt.size[1]
                    ),
                });
            }
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

thread_local! {
    /// Set while this thread runs a codec under [`contain_panic`]: its panics are errors, not
    /// messages on stderr.
    static IN_CODEC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs a dicom-rs codec, turning a panic inside it into an error message.
///
/// The header checks of [`codestream`] prevent the panics known in dicom-transfer-syntax-registry
/// 0.10.1 (see there); this is the net for the unknown ones. It relies on unwinding: the
/// workspace sets no `panic = "abort"` in any profile (Cargo.toml), and must not. The panic hook
/// is wrapped once so that a contained panic prints nothing (the error says it all, in one line)
/// while every other panic still reaches the previous hook.
fn contain_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_CODEC.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    IN_CODEC.with(|c| c.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    IN_CODEC.with(|c| c.set(false));
    result.map_err(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        format!("the decoder failed (a panic in dicom-rs, contained: {what})")
    })
}

/// Converts `out.len()` (= columns x rows) stored samples to HU. The samples must be exactly that
/// many (plus the one padding byte that makes an odd length even): more means the header
/// describes fewer pixels than the file holds (e.g. Columns 16 on 512-wide data), which would read
/// as a scrambled image.
fn convert(
    file: &Path,
    samples: &Samples<'_>,
    fmt: &SliceFormat,
    out: &mut [f32],
) -> Result<(), DicomError> {
    let n = out.len();
    let bps = fmt.bits_allocated / 8;
    let (expected, actual) = (n * bps, samples.len_bytes());
    if actual < expected {
        return Err(DicomError::TruncatedPixelData {
            file: file.to_path_buf(),
            rows: fmt.size[1],
            columns: fmt.size[0],
            bytes_per_sample: bps,
            expected,
            actual,
        });
    }
    if actual > expected + expected % 2 {
        return Err(DicomError::HeaderContradictsPixels {
            file: file.to_path_buf(),
            problem: format!(
                "pixel data holds {actual} bytes but {} rows x {} columns x {bps} bytes make {expected}",
                fmt.size[1], fmt.size[0]
            ),
        });
    }
    let (s, i) = (fmt.slope, fmt.intercept);
    // Every arm is a monomorphised loop over a concrete iterator, so each vectorises.
    match (samples, fmt.bits_allocated, fmt.signed) {
        (Samples::I16(v), 16, true) => fill(out, v.iter().map(|&x| f64::from(x)), s, i),
        (Samples::U16(v), 16, false) => fill(out, v.iter().map(|&x| f64::from(x)), s, i),
        (Samples::I16(v), 16, false) => fill(out, v.iter().map(|&x| f64::from(x as u16)), s, i),
        (Samples::U16(v), 16, true) => fill(out, v.iter().map(|&x| f64::from(x as i16)), s, i),
        (Samples::U32(v), 32, false) => fill(out, v.iter().map(|&x| f64::from(x)), s, i),
        (Samples::I32(v), 32, true) => fill(out, v.iter().map(|&x| f64::from(x)), s, i),
        (Samples::U32(v), 32, true) => fill(out, v.iter().map(|&x| f64::from(x as i32)), s, i),
        (Samples::I32(v), 32, false) => fill(out, v.iter().map(|&x| f64::from(x as u32)), s, i),
        (Samples::Bytes(b), 8, true) => fill(out, b.iter().map(|&x| f64::from(x as i8)), s, i),
        (Samples::Bytes(b), 8, false) => fill(out, b.iter().map(|&x| f64::from(x)), s, i),
        (Samples::Bytes(b), 16, signed) => {
            let words = b.chunks_exact(2).map(|c| [c[0], c[1]]);
            if signed {
                fill(out, words.map(|w| f64::from(i16::from_le_bytes(w))), s, i);
            } else {
                fill(out, words.map(|w| f64::from(u16::from_le_bytes(w))), s, i);
            }
        }
        (Samples::Bytes(b), 32, signed) => {
            let words = b.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]);
            if signed {
                fill(out, words.map(|w| f64::from(i32::from_le_bytes(w))), s, i);
            } else {
                fill(out, words.map(|w| f64::from(u32::from_le_bytes(w))), s, i);
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
fn fill(out: &mut [f32], raw: impl Iterator<Item = f64>, slope: f64, intercept: f64) {
    for (o, v) in out.iter_mut().zip(raw) {
        *o = (v * slope + intercept) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(bits: usize, signed: bool, slope: f64, intercept: f64) -> SliceFormat {
        SliceFormat {
            size: [2, 1],
            bits_allocated: bits,
            signed,
            slope,
            intercept,
        }
    }

    fn run(samples: Samples<'_>, f: &SliceFormat) -> Result<Vec<f32>, DicomError> {
        let mut out = vec![f32::NAN; 2];
        convert(Path::new("x.dcm"), &samples, f, &mut out).map(|()| out)
    }

    #[test]
    fn little_endian_bytes_at_every_width() {
        // 0x8000 is -32768 signed, 32768 unsigned; 0x0102 is 258.
        let b16 = [0x00, 0x80, 0x02, 0x01];
        assert_eq!(
            run(Samples::Bytes(&b16), &fmt(16, true, 1.0, 0.0)).unwrap(),
            [-32768.0, 258.0]
        );
        assert_eq!(
            run(Samples::Bytes(&b16), &fmt(16, false, 2.0, -1.0)).unwrap(),
            [65535.0, 515.0]
        );
        let b8 = [0xff, 0x10];
        assert_eq!(
            run(Samples::Bytes(&b8), &fmt(8, true, 1.0, 0.0)).unwrap(),
            [-1.0, 16.0]
        );
        assert_eq!(
            run(Samples::Bytes(&b8), &fmt(8, false, 1.0, 0.0)).unwrap(),
            [255.0, 16.0]
        );
        let b32 = [0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x01, 0x00];
        assert_eq!(
            run(Samples::Bytes(&b32), &fmt(32, true, 1.0, 0.0)).unwrap(),
            [-1.0, 65536.0]
        );
        assert_eq!(
            run(Samples::Bytes(&b32), &fmt(32, false, 1.0, 0.0)).unwrap(),
            [4294967295.0, 65536.0]
        );
    }

    #[test]
    fn parsed_words_follow_pixel_representation() {
        let u = [0xfc18u16, 1000]; // 0xfc18 is -1000 as i16
        assert_eq!(
            run(Samples::U16(&u), &fmt(16, true, 1.0, 0.0)).unwrap(),
            [-1000.0, 1000.0]
        );
        assert_eq!(
            run(Samples::U16(&u), &fmt(16, false, 1.0, -1024.0)).unwrap(),
            [63512.0, -24.0]
        );
        let i = [-1000i16, 7];
        assert_eq!(
            run(Samples::I16(&i), &fmt(16, false, 1.0, 0.0)).unwrap(),
            [64536.0, 7.0]
        );
        assert_eq!(
            run(Samples::I16(&i), &fmt(16, true, 0.5, 0.25)).unwrap(),
            [-499.75, 3.75]
        );
    }

    #[test]
    fn rescale_is_computed_in_f64_and_rounded_once() {
        // 3 * 0.3 - 1000.7 in f64 is -999.8000000000001; f32 rounding of that, not of f32 maths.
        let got = run(Samples::I16(&[3, 0]), &fmt(16, true, 0.3, -1000.7)).unwrap();
        assert_eq!(got[0], (3.0f64 * 0.3 - 1000.7) as f32);
        assert_eq!(got[1], -1000.7f64 as f32);
    }

    #[test]
    fn a_panic_inside_dicom_rs_becomes_an_error() {
        // The codestream check is bypassed: Columns 16 on the 40-wide J2K fixture, decoded
        // straight by dicom-rs 0.10.1, panics at adapters/jpeg2k.rs:90 (slice index out of range).
        let file =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/j2k/IM0003");
        let mut obj = dicom_object::OpenFileOptions::new()
            .open_file(&file)
            .unwrap();
        obj.put(dicom_core::DataElement::new(
            tags::COLUMNS,
            dicom_core::VR::US,
            PrimitiveValue::from(16u16),
        ));
        let e = contain_panic(|| obj.decode_pixel_data().map(|_| ())).unwrap_err();
        assert!(
            e.starts_with("the decoder failed (a panic in dicom-rs, contained: range end index"),
            "{e}"
        );
        // Other panics still reach the previous hook and unwind as before; a contained one
        // leaves the thread able to contain the next.
        assert_eq!(contain_panic(|| 7), Ok(7));
        let e = contain_panic(|| panic!("boom {}", 1)).unwrap_err();
        assert!(e.ends_with("contained: boom 1)"), "{e}");
    }

    #[test]
    fn short_or_mismatched_data_is_refused() {
        let e = run(Samples::Bytes(&[1, 2, 3]), &fmt(16, true, 1.0, 0.0)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.dcm: pixel data holds 3 bytes but 1 rows x 2 columns x 2 bytes need 4"
        );
        let e = run(Samples::U16(&[1]), &fmt(8, true, 1.0, 0.0)).unwrap_err();
        assert!(
            e.to_string().contains("does not match BitsAllocated 8"),
            "{e}"
        );
        // More data than the header describes (e.g. Columns 16 on 512-wide pixels).
        let e = run(Samples::I16(&[1, 2, 3]), &fmt(16, true, 1.0, 0.0)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.dcm: the header contradicts the pixel data: pixel data holds 6 bytes but 1 rows x 2 columns x 2 bytes make 4"
        );
        // One padding byte making an odd length even is not a contradiction.
        let f = SliceFormat {
            size: [3, 1],
            ..fmt(8, false, 1.0, 0.0)
        };
        let mut out = vec![0.0; 3];
        convert(
            Path::new("x.dcm"),
            &Samples::Bytes(&[1, 2, 3, 0]),
            &f,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [1.0, 2.0, 3.0]);
    }
}
