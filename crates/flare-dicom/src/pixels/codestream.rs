//! Checking a compressed frame's own header against the DICOM header before decoding it.
//!
//! dicom-transfer-syntax-registry 0.10.1 sizes its output from Rows, Columns, SamplesPerPixel and
//! BitsAllocated and then copies whatever the codec produced into it, unchecked:
//! - `adapters/jpeg2k.rs:90` indexes the output by the codestream's own sample count, so a
//!   codestream wider or taller than Columns x Rows panics (slice index out of range), and one
//!   smaller leaves the rest of the frame zero; samples of more bits than BitsAllocated are cut
//!   to its width (`to_le_bytes()[..bytes_per_sample]`). Upstream should compare
//!   `image.width()`, `height()`, the component count and precision with the header and return a
//!   `DecodeError` (and its `component_i > samples_per_pixel` should be `>=`).
//! - `adapters/jpeg.rs` `copy_from_slice`s the decoded image into a frame sized from the header:
//!   a JPEG larger than Columns x Rows panics. Upstream should check `decoder.info()`.
//! - `adapters/rle_lossless.rs` slices the RLE header without checking the fragment's length,
//!   allocates one offset per declared segment (up to 2^32), indexes each decoded segment by
//!   Rows x Columns and `unwrap()`s a read: short or corrupt RLE data panics. Upstream should
//!   validate the header and segment lengths.
//!
//! So the frame's own header is read here first (SIZ for JPEG 2000, SOF for JPEG, the segment
//! table and the segments' decoded lengths for RLE) and a disagreement refuses the slice with one
//! line; `pixels::contain_panic` catches what this misses.

use crate::layout::SliceFormat;

/// RLE Lossless.
const RLE: &str = "1.2.840.10008.1.2.5";

/// Checks the first fragment of an encapsulated frame against the header's description
/// (`fmt`; SamplesPerPixel is 1, checked before). `Err` says what disagrees.
pub(crate) fn check(
    transfer_syntax: &str,
    fragment: &[u8],
    fmt: &SliceFormat,
) -> Result<(), String> {
    let family = transfer_syntax
        .strip_prefix("1.2.840.10008.1.2.4.")
        .and_then(|n| n.parse::<u32>().ok());
    match family {
        // JPEG 2000 (Part 1 and 2) and High-Throughput JPEG 2000: the same SIZ marker.
        Some(90..=93 | 201..=203) => check_j2k(fragment, fmt),
        // JPEG baseline, extended, progressive and lossless processes.
        Some(50..=70) => check_jpeg(fragment, fmt),
        _ if transfer_syntax == RLE => check_rle(fragment, fmt),
        // Other decodable syntaxes: no header check; the panic net remains.
        _ => Ok(()),
    }
}

fn be16(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
    ])))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

/// The size, components and sample precision a frame's own header declares.
#[derive(Debug, PartialEq)]
struct Declared {
    columns: u32,
    rows: u32,
    components: u32,
    bits: u32,
}

/// Compares what the codestream declares with the DICOM header. A precision below
/// BitsAllocated is accepted (BitsStored may legitimately differ from it: pydicom warns and
/// decodes); one above would be cut to BitsAllocated bits, giving wrong values.
fn compare(codec: &str, d: &Declared, fmt: &SliceFormat) -> Result<(), String> {
    let [columns, rows] = fmt.size;
    if (d.columns as usize, d.rows as usize) != (columns, rows) {
        return Err(format!(
            "Columns x Rows is {columns} x {rows} but the {codec} data is {} x {}",
            d.columns, d.rows
        ));
    }
    if d.components != 1 {
        return Err(format!(
            "SamplesPerPixel is 1 but the {codec} data has {} components",
            d.components
        ));
    }
    if d.bits as usize > fmt.bits_allocated {
        return Err(format!(
            "BitsAllocated is {} but the {codec} data has {}-bit samples",
            fmt.bits_allocated, d.bits
        ));
    }
    Ok(())
}

/// JPEG 2000: the SIZ marker segment that follows SOC (ISO/IEC 15444-1 A.5.1); a JP2 file
/// wrapped around the codestream is looked into.
fn check_j2k(fragment: &[u8], fmt: &SliceFormat) -> Result<(), String> {
    let cs = j2k_codestream(fragment)
        .ok_or("the JPEG 2000 data does not start with a codestream (SOC and SIZ markers)")?;
    let short = || "the JPEG 2000 SIZ marker is cut short".to_string();
    // SOC(2) SIZ(2) Lsiz(2) Rsiz(2) Xsiz YOsiz.. at 8, 12, 16, 20; Csiz at 40; components at 42.
    let (x, y, xo, yo) = (
        be32(cs, 8).ok_or_else(short)?,
        be32(cs, 12).ok_or_else(short)?,
        be32(cs, 16).ok_or_else(short)?,
        be32(cs, 20).ok_or_else(short)?,
    );
    let components = be16(cs, 40).ok_or_else(short)?;
    let mut bits = 0;
    for c in 0..components as usize {
        let at = 42 + 3 * c;
        let (ssiz, xr, yr) = (
            *cs.get(at).ok_or_else(short)?,
            *cs.get(at + 1).ok_or_else(short)?,
            *cs.get(at + 2).ok_or_else(short)?,
        );
        if (xr, yr) != (1, 1) {
            return Err(format!(
                "the JPEG 2000 component {c} is subsampled ({xr} x {yr}); a CT slice is not"
            ));
        }
        bits = bits.max(u32::from(ssiz & 0x7f) + 1);
    }
    if xo > x || yo > y {
        return Err("the JPEG 2000 SIZ marker places the image outside its grid".into());
    }
    let declared = Declared {
        columns: x - xo,
        rows: y - yo,
        components,
        bits,
    };
    compare("JPEG 2000", &declared, fmt)
}

/// The codestream: the data itself (SOC then SIZ), or the contents of a JP2 file's `jp2c` box.
fn j2k_codestream(data: &[u8]) -> Option<&[u8]> {
    const SOC_SIZ: [u8; 4] = [0xff, 0x4f, 0xff, 0x51];
    if data.starts_with(&SOC_SIZ) {
        return Some(data);
    }
    // JP2 boxes: length (4, big-endian; 1 = 8-byte length follows; 0 = to the end), type (4).
    let mut at = 0usize;
    while at + 8 <= data.len() {
        let len = be32(data, at)? as usize;
        let kind = data.get(at + 4..at + 8)?;
        let (header, len) = match len {
            0 => (8, data.len() - at),
            1 => (
                16,
                usize::try_from(
                    u64::from(be32(data, at + 8)?) << 32 | u64::from(be32(data, at + 12)?),
                )
                .ok()?,
            ),
            n => (8, n),
        };
        if kind == b"jp2c" {
            let body = data.get(at + header..)?;
            return body.starts_with(&SOC_SIZ).then_some(body);
        }
        if len < header {
            return None;
        }
        at = at.checked_add(len)?;
    }
    None
}

/// JPEG: the SOF marker segment (ITU T.81 B.2.2) of any process, reached by walking the marker
/// segments from SOI.
fn check_jpeg(fragment: &[u8], fmt: &SliceFormat) -> Result<(), String> {
    if !fragment.starts_with(&[0xff, 0xd8]) {
        return Err("the JPEG data does not start with an SOI marker".into());
    }
    let short = || "the JPEG data ends before its SOF marker".to_string();
    let mut at = 2usize;
    loop {
        if *fragment.get(at).ok_or_else(short)? != 0xff {
            return Err(format!("the JPEG data has no marker at byte {at}"));
        }
        // Fill bytes (0xFF) may precede a marker.
        let mut m = at + 1;
        while *fragment.get(m).ok_or_else(short)? == 0xff {
            m += 1;
        }
        let marker = fragment[m];
        at = m + 1;
        match marker {
            // SOF0-3, 5-7, 9-11, 13-15 (not DHT C4, JPG C8, DAC CC).
            0xc0..=0xcf if !matches!(marker, 0xc4 | 0xc8 | 0xcc) => {
                let bits = u32::from(*fragment.get(at + 2).ok_or_else(short)?);
                let declared = Declared {
                    rows: be16(fragment, at + 3).ok_or_else(short)?,
                    columns: be16(fragment, at + 5).ok_or_else(short)?,
                    components: u32::from(*fragment.get(at + 7).ok_or_else(short)?),
                    bits,
                };
                if declared.rows == 0 {
                    return Err("the JPEG data leaves its height to a DNL marker, which flare does not read".into());
                }
                return compare("JPEG", &declared, fmt);
            }
            0xda | 0xd9 => return Err("the JPEG data has no SOF marker before its scan".into()),
            // Markers without a length: RSTn, TEM.
            0xd0..=0xd7 | 0x01 => {}
            _ => at += be16(fragment, at).ok_or_else(short)? as usize,
        }
    }
}

/// RLE Lossless (PS3.5 G.3): a 64-byte header of the segment count and offsets, one segment per
/// byte of a sample, each decoding (PackBits) to at least Rows x Columns bytes.
fn check_rle(fragment: &[u8], fmt: &SliceFormat) -> Result<(), String> {
    if fragment.len() < 64 {
        return Err(format!(
            "the RLE data holds {} bytes, less than its 64-byte header",
            fragment.len()
        ));
    }
    let le32 = |at: usize| {
        u32::from_le_bytes([
            fragment[at],
            fragment[at + 1],
            fragment[at + 2],
            fragment[at + 3],
        ]) as usize
    };
    let segments = le32(0);
    let expected = fmt.bits_allocated / 8;
    if segments != expected {
        return Err(format!(
            "BitsAllocated {} with one sample needs {expected} RLE segment(s) but the RLE header declares {segments}",
            fmt.bits_allocated
        ));
    }
    let mut offsets: Vec<usize> = (0..segments).map(|s| le32(4 + 4 * s)).collect();
    offsets.push(fragment.len());
    let plane = fmt.size[0] * fmt.size[1];
    for (s, w) in offsets.windows(2).enumerate() {
        if w[0] < 64 || w[0] > w[1] || w[1] > fragment.len() {
            return Err(format!(
                "RLE segment {s} has an invalid offset {} (data of {} bytes)",
                w[0],
                fragment.len()
            ));
        }
        let decoded = packbits_len(&fragment[w[0]..w[1]]);
        if decoded < plane {
            return Err(format!(
                "RLE segment {s} decodes to {decoded} bytes but Columns x Rows is {} x {} = {plane}",
                fmt.size[0], fmt.size[1]
            ));
        }
    }
    Ok(())
}

/// How many bytes a PackBits segment decodes to, without decoding it.
fn packbits_len(segment: &[u8]) -> usize {
    let (mut at, mut n) = (0usize, 0usize);
    while let Some(&h) = segment.get(at) {
        let h = h as i8;
        if h >= 0 {
            // A literal run of h + 1 bytes (counted only as far as the segment holds them).
            let run = (h as usize + 1).min(segment.len() - at - 1);
            n += run;
            at += 1 + h as usize + 1;
        } else if h != -128 {
            // One byte repeated 1 - h times.
            if at + 1 < segment.len() {
                n += (1 - h as isize) as usize;
            }
            at += 2;
        } else {
            at += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(columns: usize, rows: usize, bits: usize) -> SliceFormat {
        SliceFormat {
            size: [columns, rows],
            bits_allocated: bits,
            signed: true,
            slope: 1.0,
            intercept: 0.0,
        }
    }

    /// A J2K codestream's first bytes: SOC, SIZ with the given grid, offsets and components.
    fn siz(x: u32, y: u32, xo: u32, yo: u32, comps: &[(u8, u8)]) -> Vec<u8> {
        let mut b = vec![0xff, 0x4f, 0xff, 0x51];
        b.extend_from_slice(&((38 + 3 * comps.len()) as u16).to_be_bytes());
        b.extend_from_slice(&[0, 0]);
        for v in [x, y, xo, yo, x, y, 0, 0] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(&(comps.len() as u16).to_be_bytes());
        for &(ssiz, sub) in comps {
            b.extend_from_slice(&[ssiz, sub, sub]);
        }
        b
    }

    #[test]
    fn j2k_siz_is_compared_with_the_header() {
        // Signed 12-bit samples (Ssiz 0x8b).
        let ok = siz(512, 512, 0, 0, &[(0x8b, 1)]);
        assert_eq!(
            check("1.2.840.10008.1.2.4.90", &ok, &fmt(512, 512, 16)),
            Ok(())
        );
        let e = check("1.2.840.10008.1.2.4.90", &ok, &fmt(16, 512, 16)).unwrap_err();
        assert_eq!(
            e,
            "Columns x Rows is 16 x 512 but the JPEG 2000 data is 512 x 512"
        );
        // Image offsets shrink the image.
        let off = siz(522, 517, 10, 5, &[(0x0f, 1)]);
        assert!(check("1.2.840.10008.1.2.4.91", &off, &fmt(512, 512, 16)).is_ok());
        let e = check("1.2.840.10008.1.2.4.90", &ok, &fmt(512, 512, 8)).unwrap_err();
        assert_eq!(
            e,
            "BitsAllocated is 8 but the JPEG 2000 data has 12-bit samples"
        );
        let rgb = siz(512, 512, 0, 0, &[(7, 1), (7, 1), (7, 1)]);
        let e = check("1.2.840.10008.1.2.4.90", &rgb, &fmt(512, 512, 8)).unwrap_err();
        assert!(e.contains("has 3 components"), "{e}");
        let sub = siz(512, 512, 0, 0, &[(7, 2)]);
        assert!(check("1.2.840.10008.1.2.4.90", &sub, &fmt(512, 512, 8)).is_err());
        assert!(check("1.2.840.10008.1.2.4.90", &ok[..30], &fmt(512, 512, 16)).is_err());
        assert!(check("1.2.840.10008.1.2.4.90", b"not j2k", &fmt(512, 512, 16)).is_err());
        // Inside a JP2 file: signature box, then the codestream box.
        let mut jp2 = vec![0, 0, 0, 12, b'j', b'P', b' ', b' ', 0x0d, 0x0a, 0x87, 0x0a];
        jp2.extend_from_slice(&((8 + ok.len()) as u32).to_be_bytes());
        jp2.extend_from_slice(b"jp2c");
        jp2.extend_from_slice(&ok);
        assert!(check("1.2.840.10008.1.2.4.90", &jp2, &fmt(512, 512, 16)).is_ok());
        assert!(check("1.2.840.10008.1.2.4.90", &jp2, &fmt(512, 17, 16)).is_err());
    }

    #[test]
    fn jpeg_sof_is_found_past_other_segments() {
        // SOI, APP0 (length 4: two bytes of data), fill byte, SOF3 (lossless) P=12 Y=6 X=8 Nf=1.
        let mut b = vec![0xff, 0xd8, 0xff, 0xe0, 0, 4, 1, 2, 0xff];
        b.extend_from_slice(&[0xff, 0xc3, 0, 11, 12, 0, 6, 0, 8, 1, 1, 0x11, 0]);
        assert!(check("1.2.840.10008.1.2.4.70", &b, &fmt(8, 6, 16)).is_ok());
        let e = check("1.2.840.10008.1.2.4.57", &b, &fmt(8, 7, 16)).unwrap_err();
        assert_eq!(e, "Columns x Rows is 8 x 7 but the JPEG data is 8 x 6");
        let e = check("1.2.840.10008.1.2.4.50", &b, &fmt(8, 6, 8)).unwrap_err();
        assert_eq!(e, "BitsAllocated is 8 but the JPEG data has 12-bit samples");
        assert!(check("1.2.840.10008.1.2.4.50", &b[..12], &fmt(8, 6, 16)).is_err());
        // A scan before any SOF.
        assert!(
            check(
                "1.2.840.10008.1.2.4.50",
                &[0xff, 0xd8, 0xff, 0xda, 0, 2],
                &fmt(8, 6, 16)
            )
            .is_err()
        );
    }

    #[test]
    fn rle_segments_are_counted_and_measured() {
        // Two segments (16-bit samples) of a 4 x 2 image: each a run "repeat 8 times".
        let mut b = vec![0u8; 64];
        b[0] = 2;
        b[4] = 64;
        b[8] = 66;
        b.extend_from_slice(&[(-7i8) as u8, 5, (-7i8) as u8, 9]);
        assert!(check(RLE, &b, &fmt(4, 2, 16)).is_ok());
        let e = check(RLE, &b, &fmt(4, 3, 16)).unwrap_err();
        assert_eq!(
            e,
            "RLE segment 0 decodes to 8 bytes but Columns x Rows is 4 x 3 = 12"
        );
        let e = check(RLE, &b, &fmt(4, 2, 8)).unwrap_err();
        assert!(
            e.contains("needs 1 RLE segment(s) but the RLE header declares 2"),
            "{e}"
        );
        assert!(check(RLE, &b[..40], &fmt(4, 2, 16)).is_err());
        let mut bad = b.clone();
        bad[8] = 200;
        assert!(check(RLE, &bad, &fmt(4, 2, 16)).is_err());
        // Literal runs count their bytes; -128 is a no-op.
        assert_eq!(packbits_len(&[2, 1, 2, 3, 0x80, (-1i8) as u8, 7]), 5);
    }
}
