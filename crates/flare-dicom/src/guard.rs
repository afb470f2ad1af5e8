//! Checking every length a file declares against the bytes it holds, before dicom-rs reads it.
//!
//! dicom-parser 0.10.1 (`stateful/decode.rs`, `read_value_*`) and dicom-object's file meta
//! reader allocate each value at its declared length (`try_reserve_exact(len)` then
//! `resize(len, 0)`, which touches every page) before reading it, so a PixelData length of
//! 0xFFFFFFF0 in a 529 KB file cost 4.2 GB of RSS before the "unexpected end of file" error
//! (issue 12). Upstream should read values incrementally (`Read::take(len).read_to_end`) or check
//! the length against what the source holds. Until it does, every file is walked here first:
//! element headers only (dicom-encoding's own header decoders), values skipped by seeking,
//! nothing allocated from a length. A length that runs past the end of the file (or of its
//! sequence or item) refuses the file, so whatever dicom-rs allocates afterwards is bounded by
//! the file's size, which [`crate::decode`] and the scan weigh against the memory limit.

use std::{
    fs::File,
    io::{self, BufReader, Read, Seek},
    path::Path,
};

use dicom_core::{Tag, VR, header::HasLength, header::Header};
use dicom_dictionary_std::tags;
use dicom_encoding::{Codec, TransferSyntax, TransferSyntaxIndex, decode::DecodeFrom};
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

/// Nesting beyond this depth is refused: no CT header comes close, and dicom-rs parses nested
/// sequences recursively.
const MAX_DEPTH: usize = 64;

/// Item, item delimiter and sequence delimiter (PS3.5 7.5).
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_DELIMITER: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_DELIMITER: Tag = Tag(0xFFFE, 0xE0DD);

/// A UID value longer than this is not a UID (the standard's limit is 64 bytes).
const MAX_UID_BYTES: u64 = 128;

/// What the walk learned about a file whose lengths are all consistent.
#[derive(Debug, Clone)]
pub(crate) struct FileLayout {
    /// Bytes dicom-rs parses when it reads the whole file: the file's length, or for a deflated
    /// data set its inflated length plus the file meta.
    pub data_len: u64,
    /// Bytes before the top-level PixelData element (all of `data_len` without one): what a
    /// header-only read parses.
    pub header_len: u64,
}

/// Why a file was refused, with what was learned before the damage.
#[derive(Debug, Clone)]
pub(crate) struct Damage {
    /// One line saying what is wrong and where.
    pub message: String,
    /// The SeriesInstanceUID, when it was read before the damage.
    pub series_uid: Option<String>,
    /// Where the top-level PixelData element starts when the damage lies in or after it, so
    /// that the header before it can still be read.
    pub header_len: Option<u64>,
}

/// A byte source the walk can skip forward in.
trait Source: Read {
    /// Skips `n` bytes, failing if fewer remain.
    fn skip(&mut self, n: u64) -> io::Result<()>;
}

impl Source for BufReader<File> {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        // The caller checked `n` against the file's length: seeking is exact.
        let n = i64::try_from(n).map_err(|_| io::Error::other("skip too large"))?;
        self.seek_relative(n)
    }
}

/// An inflated (deflated data set) stream: skipping means reading through.
struct Inflated<'a>(Box<dyn Read + 'a>);

impl Read for Inflated<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Source for Inflated<'_> {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        let got = io::copy(&mut self.0.by_ref().take(n), &mut io::sink())?;
        if got < n {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

/// What dicom-object's in-memory tree costs per byte of header parsed, at worst: an element of
/// 8 header bytes and an empty value becomes a map entry of roughly 100-200 bytes.
const HEADER_MEMORY_FACTOR: u64 = 24;

/// Header reads estimated below this many bytes in all are not weighed against the memory
/// limit (see [`open_header`]).
const HEADER_MEMORY_FLOOR: u64 = 16 << 20;

impl FileLayout {
    /// Bytes that parsing the whole file may hold at once: the values (at most the data's
    /// length) plus the tree built over the header.
    pub(crate) fn parse_bytes(&self) -> u64 {
        self.data_len
            .saturating_add(self.header_len.saturating_mul(HEADER_MEMORY_FACTOR))
    }
}

/// Opens `path` for its header only (parsing stops before PixelData), after checking every
/// declared length and that as many header reads as there are threads fit in memory. Returns
/// the layout too, `None` when the damage lies in the pixel data: the header before it is sound
/// and worth reading (the scan groups the file by its series), and reading the pixels refuses
/// the file later.
pub(crate) fn open_header(path: &Path) -> Result<(DefaultDicomObject, Option<FileLayout>), Damage> {
    let (layout, header_len) = match walk(path) {
        Ok(l) => {
            let h = l.header_len;
            (Some(l), h)
        }
        Err(Damage {
            header_len: Some(h),
            ..
        }) => (None, h),
        Err(d) => return Err(d),
    };
    // The scan reads headers on every thread at once. Ordinary headers (a few KB) are below
    // the floor: the limit is about volumes, and a limit of 0 MB must still let a folder be
    // listed.
    let threads = rayon::current_num_threads() as u64;
    let need = header_len
        .saturating_mul(HEADER_MEMORY_FACTOR)
        .saturating_mul(threads);
    if need > HEADER_MEMORY_FLOOR {
        flare_volume::memory::ensure_fits(need).map_err(|e| Damage {
            message: format!("a header of {header_len} bytes read on {threads} threads {e}"),
            series_uid: None,
            header_len: None,
        })?;
    }
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| Damage {
            message: e.to_string(),
            series_uid: None,
            header_len: None,
        })?;
    Ok((obj, layout))
}

/// Opens the whole of `path` (pixel data included) after checking every declared length. The
/// memory it takes ([`FileLayout::parse_bytes`]) is the caller's to have reserved.
pub(crate) fn open_full(path: &Path) -> Result<DefaultDicomObject, Damage> {
    walk(path)?;
    OpenFileOptions::new().open_file(path).map_err(|e| Damage {
        message: e.to_string(),
        series_uid: None,
        header_len: None,
    })
}

/// Walks the file's element headers and checks every declared length (see the module doc).
pub(crate) fn walk(path: &Path) -> Result<FileLayout, Damage> {
    let mut w = Walker::default();
    w.run(path).map_err(|message| Damage {
        message,
        series_uid: w.series_uid.clone(),
        header_len: w.pixel_data_start,
    })
}

/// Where a sequence, item or encapsulated pixel data ends.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// A sequence: holds items.
    Sequence,
    /// An item of a sequence: holds elements.
    Item,
    /// Encapsulated pixel data: holds fragments (items of raw bytes).
    Fragments,
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    kind: Kind,
    /// End offset for a defined length; `None` until a delimiter.
    end: Option<u64>,
}

#[derive(Default)]
struct Walker {
    series_uid: Option<String>,
    /// Offset of the top-level PixelData element's header, once met.
    pixel_data_start: Option<u64>,
}

impl Walker {
    fn run(&mut self, path: &Path) -> Result<FileLayout, String> {
        let file = File::open(path).map_err(|e| e.to_string())?;
        let file_len = file.metadata().map_err(|e| e.to_string())?.len();
        let mut src = BufReader::new(file);
        let (dataset_start, ts_uid) = read_meta(&mut src, file_len)?;
        let ts = TransferSyntaxRegistry
            .get(&ts_uid)
            .ok_or_else(|| format!("unknown transfer syntax {ts_uid}"))?;
        match ts.codec() {
            Codec::Dataset(Some(adapter)) => {
                // Deflated: lengths are checked against the inflated size, counted first by
                // reading the stream through (bounded memory), then walked a second time.
                let open = || -> Result<Inflated<'static>, String> {
                    let mut f = File::open(path).map_err(|e| e.to_string())?;
                    f.seek(io::SeekFrom::Start(dataset_start))
                        .map_err(|e| e.to_string())?;
                    Ok(Inflated(adapter.adapt_reader(Box::new(BufReader::new(f)))))
                };
                let inflated = io::copy(&mut open()?.0, &mut io::sink())
                    .map_err(|e| format!("cannot inflate the deflated data set: {e}"))?;
                let mut src = open()?;
                let header_len = self.dataset(&mut src, ts, 0, inflated)?;
                Ok(FileLayout {
                    data_len: dataset_start.saturating_add(inflated),
                    header_len: dataset_start.saturating_add(header_len),
                })
            }
            Codec::Dataset(None) => Err(format!(
                "data set compressed as {} cannot be read",
                ts.name()
            )),
            _ => {
                let header_len = self.dataset(&mut src, ts, dataset_start, file_len)?;
                Ok(FileLayout {
                    data_len: file_len,
                    header_len,
                })
            }
        }
    }

    /// Walks the data set from `start` to `total`; returns the offset of the PixelData element
    /// (or `total`).
    fn dataset<S: Source>(
        &mut self,
        src: &mut S,
        ts: &TransferSyntax,
        start: u64,
        total: u64,
    ) -> Result<u64, String> {
        let decoder = ts
            .decoder_for::<S>()
            .ok_or_else(|| format!("transfer syntax {} cannot be parsed", ts.name()))?;
        let mut stack: Vec<Frame> = Vec::new();
        let mut pos = start;
        loop {
            while let Some(f) = stack.last() {
                match f.end {
                    Some(end) if end == pos => {
                        stack.pop();
                    }
                    _ => break,
                }
            }
            // The innermost defined end: nothing inside may run past it.
            let limit = stack.iter().rev().find_map(|f| f.end).unwrap_or(total);
            if pos == total {
                if stack.is_empty() {
                    break;
                }
                return Err(format!(
                    "the file ends at byte {pos} inside a sequence or item (truncated?)"
                ));
            }
            // A few bytes after the last element cannot be an element: the file was cut inside
            // an element header. dicom-rs 0.10.1 ends the data set there without a word, which
            // is how a cut slice used to vanish from a series (issue 12).
            if stack.is_empty() && total - pos < 8 {
                return Err(format!(
                    "the file ends with {} byte(s) that are no element (truncated file)",
                    total - pos
                ));
            }
            let (header, n) = decoder
                .decode_header(src)
                .map_err(|e| format!("cannot read the element header at byte {pos}: {e}"))?;
            pos += n as u64;
            let tag = header.tag();
            let remaining = limit.saturating_sub(pos);
            let len = header.length().get().map(u64::from);
            if stack.is_empty() && tag == tags::PIXEL_DATA {
                self.pixel_data_start = Some(pos - n as u64);
            }
            if let Some(l) = len
                && l > remaining
            {
                let what = if tag == ITEM {
                    "item".to_string()
                } else {
                    format!("element {tag}")
                };
                let place = if limit == total {
                    "the file"
                } else {
                    "its sequence or item"
                };
                return Err(format!(
                    "{what} at byte {} declares {l} bytes but only {remaining} remain in {place} (truncated file or corrupt length)",
                    pos - n as u64
                ));
            }
            // dicom-parser 0.10.1 reads `len >> k` numbers for a value of `2^k`-byte numbers but
            // counts `len` bytes as read, so a length that is no multiple of the size leaves it
            // mid-value and every later header is read from the wrong bytes: afl found a 22-byte
            // FD element that way, after which a string's first bytes were taken as a 1.2 GB
            // length (2026-12-06, fuzz/found/dicom/). Such a length is invalid DICOM anyway.
            // Upstream should read the remainder or refuse the length.
            if let (Some(l), Some(size)) = (len, number_size(header.vr()))
                && tag != tags::PIXEL_DATA
                && l % size != 0
            {
                return Err(format!(
                    "element {tag} at byte {} ({}) declares {l} bytes, not a multiple of its {size}-byte values (corrupt length)",
                    pos - n as u64,
                    header.vr()
                ));
            }
            let top = stack.last().map(|f| f.kind);
            match tag {
                ITEM => match (top, len) {
                    (Some(Kind::Fragments), Some(l)) => {
                        skip(src, l)?;
                        pos += l;
                    }
                    (Some(Kind::Sequence), end) => stack.push(Frame {
                        kind: Kind::Item,
                        end: end.map(|l| pos + l),
                    }),
                    _ => return Err(format!("misplaced item at byte {}", pos - n as u64)),
                },
                ITEM_DELIMITER => {
                    if !matches!(
                        stack.last(),
                        Some(Frame {
                            kind: Kind::Item,
                            end: None
                        })
                    ) {
                        return Err(format!("misplaced item delimiter at byte {}", pos - 8));
                    }
                    stack.pop();
                }
                SEQUENCE_DELIMITER => {
                    if !matches!(
                        stack.last(),
                        Some(Frame {
                            kind: Kind::Sequence | Kind::Fragments,
                            end: None
                        })
                    ) {
                        return Err(format!("misplaced sequence delimiter at byte {}", pos - 8));
                    }
                    stack.pop();
                }
                _ => {
                    if matches!(top, Some(Kind::Sequence | Kind::Fragments)) {
                        return Err(format!(
                            "element {tag} at byte {} where a sequence item was expected",
                            pos - n as u64
                        ));
                    }
                    let at_top = stack.is_empty();
                    match len {
                        None if at_top && tag == tags::PIXEL_DATA => stack.push(Frame {
                            kind: Kind::Fragments,
                            end: None,
                        }),
                        // Undefined length: a sequence (SQ, or UN holding one).
                        None => stack.push(Frame {
                            kind: Kind::Sequence,
                            end: None,
                        }),
                        Some(l) if header.vr() == VR::SQ => stack.push(Frame {
                            kind: Kind::Sequence,
                            end: Some(pos + l),
                        }),
                        Some(l) => {
                            if at_top && tag == tags::SERIES_INSTANCE_UID && l <= MAX_UID_BYTES {
                                self.series_uid = Some(read_text(src, l)?);
                            } else {
                                skip(src, l)?;
                            }
                            pos += l;
                        }
                    }
                }
            }
            if stack.len() > MAX_DEPTH {
                return Err(format!(
                    "sequences nested deeper than {MAX_DEPTH} levels at byte {pos}"
                ));
            }
        }
        Ok(self.pixel_data_start.unwrap_or(total))
    }
}

fn skip<S: Source>(src: &mut S, n: u64) -> Result<(), String> {
    src.skip(n)
        .map_err(|e| format!("cannot skip {n} bytes: {e}"))
}

/// The size of one number of a binary VR made of numbers wider than a byte (`None` for the
/// others: text, bytes, sequences).
fn number_size(vr: VR) -> Option<u64> {
    match vr {
        VR::OW | VR::SS | VR::US => Some(2),
        VR::AT | VR::FL | VR::OF | VR::OL | VR::SL | VR::UL => Some(4),
        VR::FD | VR::OD | VR::OV | VR::SV | VR::UV => Some(8),
        _ => None,
    }
}

/// Reads a short text value (length already checked), trimmed of padding.
fn read_text<S: Read>(src: &mut S, n: u64) -> Result<String, String> {
    let mut buf = vec![0u8; n as usize];
    src.read_exact(&mut buf).map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&buf)
        .trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .to_string())
}

/// Reads the preamble and the file meta group as dicom-object does (the group length says how
/// many bytes it spans); returns where the data set starts and its transfer syntax UID.
fn read_meta(src: &mut BufReader<File>, file_len: u64) -> Result<(u64, String), String> {
    let mut head = [0u8; 132];
    let n = src.read(&mut head).map_err(|e| e.to_string())?;
    let mut n = n;
    while n < head.len() {
        match src.read(&mut head[n..]).map_err(|e| e.to_string())? {
            0 => break,
            k => n += k,
        }
    }
    let start: u64 = if n >= 132 && &head[128..132] == b"DICM" {
        132
    } else if n >= 4 && &head[0..4] == b"DICM" {
        4
    } else {
        return Err("not a DICOM file (no DICM marker)".into());
    };
    src.seek(io::SeekFrom::Start(start))
        .map_err(|e| e.to_string())?;
    let decoder = dicom_encoding::decode::file_header_decoder();
    let header = |src: &mut BufReader<File>, pos: u64| {
        decoder
            .decode_header(src)
            .map_err(|e| format!("cannot read the file meta element at byte {pos}: {e}"))
    };
    let mut pos = start;
    let (h, n) = header(src, pos)?;
    pos += n as u64;
    if h.tag() != Tag(0x0002, 0x0000) || h.length().get() != Some(4) {
        return Err(format!(
            "the file meta group does not start with its group length (found {})",
            h.tag()
        ));
    }
    let mut buf = [0u8; 4];
    src.read_exact(&mut buf).map_err(|e| e.to_string())?;
    pos += 4;
    let group_len = u64::from(u32::from_le_bytes(buf));
    if group_len > file_len.saturating_sub(pos) {
        return Err(format!(
            "the file meta group declares {group_len} bytes but only {} remain in the file",
            file_len.saturating_sub(pos)
        ));
    }
    let end = pos + group_len;
    let mut ts = None;
    while pos < end {
        let (h, n) = header(src, pos)?;
        pos += n as u64;
        let Some(l) = h.length().get().map(u64::from) else {
            return Err(format!("file meta element {} has no length", h.tag()));
        };
        if l > file_len.saturating_sub(pos) {
            return Err(format!(
                "file meta element {} declares {l} bytes but only {} remain in the file (truncated file or corrupt length)",
                h.tag(),
                file_len.saturating_sub(pos)
            ));
        }
        if h.tag() == tags::TRANSFER_SYNTAX_UID && l <= MAX_UID_BYTES {
            ts = Some(read_text(src, l)?);
        } else {
            skip(src, l)?;
        }
        pos += l;
    }
    let ts = ts.ok_or("the file meta group has no TransferSyntaxUID")?;
    Ok((pos, ts))
}
