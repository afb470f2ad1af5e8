//! Every kind of bad input gives one error naming the file and the problem (never a panic), and
//! failed writes leave no output and no temporary file behind. Bad files are made here by
//! damaging the committed nibabel fixtures in known ways.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
};

use flare_nifti::{
    DataType, NiftiError, read_header, read_image, read_label_map, read_raw, write_label_map_like,
    write_volume,
};
use flare_testkit::TempDir;
use flare_volume::{Geometry, LabelMap, Volume};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A copy of a fixture with byte ranges overwritten.
fn patched(tmp: &TempDir, src: &str, out: &str, edits: &[(usize, Vec<u8>)]) -> PathBuf {
    let mut bytes = std::fs::read(fixture(src)).expect("fixture");
    for (off, b) in edits {
        bytes[*off..*off + b.len()].copy_from_slice(b);
    }
    let path = tmp.join(out);
    std::fs::write(&path, bytes).expect("write");
    path
}

fn i16le(v: i16) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

fn f32le(v: f32) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// Asserts that every reader fails on `path` with a message that starts with the path and
/// contains `text`; returns the message.
fn assert_read_error(path: &Path, text: &str) -> String {
    let results = [
        read_image(path).err(),
        read_raw(path).err(),
        read_label_map(path).err(),
    ];
    let mut first = String::new();
    for err in results {
        let err = err.unwrap_or_else(|| panic!("{} was read without error", path.display()));
        let msg = err.to_string();
        assert!(
            msg.starts_with(&path.display().to_string()),
            "message does not name the file: {msg}"
        );
        assert!(msg.contains(text), "expected {text:?} in: {msg}");
        assert!(!msg.contains('\n'), "not one line: {msg}");
        if first.is_empty() {
            first = msg;
        }
    }
    first
}

#[test]
fn empty_file() {
    let tmp = TempDir::new("bad-empty");
    let path = tmp.join("empty.nii.gz");
    std::fs::write(&path, b"").expect("write");
    assert_read_error(&path, "file is empty (0 bytes)");
    assert!(read_header(&path).is_err());
}

#[test]
fn missing_file_and_directory() {
    let tmp = TempDir::new("bad-missing");
    assert_read_error(&tmp.join("nope.nii"), "cannot open");
    assert_read_error(tmp.path(), "cannot read");
}

#[test]
fn truncated_gzip() {
    let tmp = TempDir::new("bad-trunc-gz");
    let gz = std::fs::read(fixture("oblique_float32.nii.gz")).expect("fixture");
    for (name, cut) in [
        ("half.nii.gz", gz.len() / 2),
        ("no_trailer.nii.gz", gz.len() - 4),
    ] {
        let path = tmp.join(name);
        std::fs::write(&path, &gz[..cut]).expect("write");
        assert_read_error(&path, "gzip data is truncated");
    }
    // Cut inside the header: the header read itself reports it.
    let path = tmp.join("tiny.nii.gz");
    std::fs::write(&path, &gz[..30]).expect("write");
    let err = read_header(&path).expect_err("truncated");
    assert!(err.to_string().contains("gzip data is truncated"), "{err}");
}

#[test]
fn gzip_of_garbage() {
    let tmp = TempDir::new("bad-garbage-gz");
    let path = tmp.join("garbage.nii.gz");
    let mut bytes = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    bytes.extend((0..2000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    std::fs::write(&path, bytes).expect("write");
    assert_read_error(&path, "corrupt gzip data");
    // Valid gzip, but of something that is not NIfTI.
    let path = tmp.join("text.nii.gz");
    std::fs::write(&path, gzip(&b"hello, this is not an image\n".repeat(40))).expect("write");
    assert_read_error(&path, "not a NIfTI file");
}

#[test]
fn wrong_magic() {
    let tmp = TempDir::new("bad-magic");
    let path = patched(
        &tmp,
        "ras_uint8.nii",
        "magic.nii",
        &[(344, b"abc\0".to_vec())],
    );
    let msg = assert_read_error(&path, "not a NIfTI file: magic is \"abc\"");
    assert!(msg.contains("expected \"n+1\""), "{msg}");
    let path = patched(
        &tmp,
        "ras_uint8.nii",
        "sizeof.nii",
        &[(0, 1234i32.to_le_bytes().to_vec())],
    );
    assert_read_error(&path, "header size field (sizeof_hdr) is 1234");
    let path = patched(
        &tmp,
        "ras_uint8.nii",
        "pair.nii",
        &[(344, b"ni1\0".to_vec())],
    );
    assert_read_error(&path, "two-file NIfTI");
    // Plain text named .nii.gz.
    let path = tmp.join("text.nii.gz");
    std::fs::write(&path, b"just some words").expect("write");
    assert_read_error(&path, "not a NIfTI file");
    // Too short for any header.
    let path = tmp.join("short.nii");
    std::fs::write(
        &path,
        &std::fs::read(fixture("ras_uint8.nii")).expect("f")[..200],
    )
    .expect("write");
    assert_read_error(
        &path,
        "file is only 200 bytes, too short for a NIfTI header",
    );
}

#[test]
fn file_shorter_than_header_promises() {
    let tmp = TempDir::new("bad-short-data");
    // ras_int16.nii: 5x4x3 int16 = 120 bytes of voxels from byte 352.
    let bytes = std::fs::read(fixture("ras_int16.nii")).expect("fixture");
    let path = tmp.join("cut.nii");
    std::fs::write(&path, &bytes[..bytes.len() - 10]).expect("write");
    assert_read_error(
        &path,
        "header needs 120 bytes of voxels (shape [5, 4, 3], 2 bytes each, from byte 352) but the \
         file has only 110",
    );
    // The same, cleanly compressed: the decompressed stream is short.
    let path = tmp.join("cut.nii.gz");
    std::fs::write(&path, gzip(&bytes[..bytes.len() - 10])).expect("write");
    assert_read_error(&path, "but the decompressed file has only 110");
    // Dimensions far beyond the data, compressed: reported as a size mismatch, not memory.
    let path = tmp.join("huge_dims.nii.gz");
    let mut big = bytes.clone();
    big[42..44].copy_from_slice(&30000i16.to_le_bytes());
    big[44..46].copy_from_slice(&30000i16.to_le_bytes());
    std::fs::write(&path, gzip(&big)).expect("write");
    assert_read_error(&path, "header needs 5400000000 bytes of voxels");
}

#[test]
fn vox_offset_past_the_end() {
    let tmp = TempDir::new("bad-voxoffset");
    let path = patched(&tmp, "ras_uint8.nii", "vo.nii", &[(108, f32le(100_000.0))]);
    assert_read_error(
        &path,
        "header says the voxels start at byte 100000, beyond the end of the file (412 bytes)",
    );
    // Issue 12: an offset no file can reach is reported as such, not as a memory shortage
    // ("needs 17592186044415 MB" before).
    let path = patched(&tmp, "ras_uint8.nii", "vo_1e30.nii", &[(108, f32le(1e30))]);
    assert_read_error(
        &path,
        "header says the voxels start at byte 1e30, beyond the end of the file (412 bytes)",
    );
    let gz = tmp.join("vo_1e30.nii.gz");
    std::fs::write(&gz, gzip(&std::fs::read(&path).expect("read"))).expect("write");
    assert_read_error(
        &gz,
        "header says the voxels start at byte 1e30, beyond the end of the decompressed file (412 bytes)",
    );
    let path = patched(&tmp, "ras_uint8.nii", "vo_low.nii", &[(108, f32le(100.0))]);
    assert_read_error(&path, "vox_offset = 100 lies inside the header");
}

#[test]
fn not_three_dimensional() {
    let tmp = TempDir::new("bad-dims");
    let path = patched(&tmp, "ras_uint8.nii", "2d.nii", &[(40, i16le(2))]);
    assert_read_error(
        &path,
        "image has shape [5, 4] but flare needs one 3D volume (this is a 2D image)",
    );
    // 4D with 2 volumes (the file is too short for them too; the shape is reported first).
    let path = patched(
        &tmp,
        "ras_uint8.nii",
        "4d.nii",
        &[(40, i16le(4)), (48, i16le(2))],
    );
    assert_read_error(
        &path,
        "image has shape [5, 4, 3, 2] but flare needs one 3D volume (extra axes must have size 1)",
    );
    let path = patched(
        &tmp,
        "ras_uint8.nii",
        "5d.nii",
        &[(40, i16le(5)), (48, i16le(1)), (50, i16le(3))],
    );
    assert_read_error(&path, "image has shape [5, 4, 3, 1, 3]");
    let path = patched(&tmp, "ras_uint8.nii", "zero_dim.nii", &[(44, i16le(0))]);
    assert_read_error(
        &path,
        "invalid NIfTI header: dim[2] = 0, must be at least 1",
    );
    let path = patched(&tmp, "ras_uint8.nii", "ndim9.nii", &[(40, i16le(9))]);
    assert_read_error(&path, "dim[0] = 9, must be between 1 and 7");
}

#[test]
fn non_finite_voxels() {
    let tmp = TempDir::new("bad-nan");
    // ras_float32.nii is 5x4x3 float32 from byte 352; voxel (2, 1, 1) is index 2 + 5 + 20 = 27.
    let off = 352 + 4 * 27;
    let path = patched(
        &tmp,
        "ras_float32.nii",
        "nan.nii",
        &[(off, f32le(f32::NAN))],
    );
    let msg = read_image(&path).expect_err("nan").to_string();
    assert!(
        msg.contains("voxel [2, 1, 1] is NaN; images must hold finite numbers"),
        "{msg}"
    );
    assert!(
        read_raw(&path)
            .expect_err("nan")
            .to_string()
            .contains("voxel [2, 1, 1] is NaN")
    );
    // (Its other voxels are not labels either, so the label reader may stop earlier.)
    assert!(
        read_label_map(&path)
            .expect_err("nan")
            .to_string()
            .contains("not a label map")
    );
    let path = patched(
        &tmp,
        "ras_float32.nii",
        "inf.nii",
        &[(off, f32le(f32::NEG_INFINITY))],
    );
    assert!(
        read_image(&path)
            .expect_err("inf")
            .to_string()
            .contains("voxel [2, 1, 1] is -inf")
    );
    // Big-endian float64 in a gzip file.
    let mut bytes = std::fs::read(fixture("bigendian_float32.nii")).expect("f");
    bytes[352 + 4 * 59..352 + 4 * 60].copy_from_slice(&f32::INFINITY.to_be_bytes());
    let path = tmp.join("inf_be.nii.gz");
    std::fs::write(&path, gzip(&bytes)).expect("write");
    for err in [read_image(&path).err(), read_raw(&path).err()] {
        let msg = err.expect("inf").to_string();
        assert!(msg.contains("voxel [4, 3, 2] is inf"), "{msg}");
    }
}

#[test]
fn bad_spacing() {
    let tmp = TempDir::new("bad-spacing");
    let path = patched(&tmp, "lps_int16.nii", "zero.nii", &[(84, f32le(0.0))]);
    assert_read_error(
        &path,
        "voxel spacing pixdim[1..=3] = [0.699999988079071, 0.0, 3.0] mm has a zero or non-finite value",
    );
    let path = patched(&tmp, "lps_int16.nii", "nan.nii", &[(88, f32le(f32::NAN))]);
    assert_read_error(
        &path,
        "[0.699999988079071, 0.699999988079071, NaN] mm has a zero or non-finite value",
    );
    let path = patched(
        &tmp,
        "lps_int16.nii",
        "inf.nii",
        &[(80, f32le(f32::INFINITY))],
    );
    assert_read_error(&path, "has a zero or non-finite value");
}

#[test]
fn singular_affine() {
    let tmp = TempDir::new("bad-singular");
    // Zero the sform's first column: the i axis has no length.
    let z = f32le(0.0);
    let path = patched(
        &tmp,
        "ras_uint8.nii",
        "sing.nii",
        &[(280, z.clone()), (296, z.clone()), (312, z)],
    );
    assert_read_error(&path, "invalid geometry (sform): affine is singular");
    // Two parallel columns.
    let path = patched(
        &tmp,
        "ras_uint8.nii",
        "parallel.nii",
        &[(284, f32le(0.8)), (300, f32le(0.0))],
    );
    let msg = assert_read_error(&path, "invalid geometry (sform)");
    assert!(msg.contains("singular"), "{msg}");
    // A quaternion that is not a rotation (used because sform_code is 0).
    let path = patched(
        &tmp,
        "qform_only.nii",
        "quat.nii",
        &[(256, f32le(0.9)), (260, f32le(0.9))],
    );
    assert_read_error(
        &path,
        "qform quaternion (b, c, d) = (0.8999999761581421, 0.8999999761581421",
    );
    // NaN in the sform.
    let path = patched(
        &tmp,
        "ras_uint8.nii",
        "nan_sform.nii",
        &[(292, f32le(f32::NAN))],
    );
    assert_read_error(
        &path,
        "invalid geometry (sform): affine has a non-finite entry",
    );
}

#[test]
fn unsupported_datatype_and_scaling() {
    let tmp = TempDir::new("bad-dtype");
    let path = patched(
        &tmp,
        "ras_float32.nii",
        "c64.nii",
        &[(70, i16le(32)), (72, i16le(64))],
    );
    assert_read_error(&path, "NIfTI datatype 32 (complex64) is not supported");
    let path = patched(&tmp, "ras_float32.nii", "rgb.nii", &[(70, i16le(128))]);
    assert_read_error(&path, "NIfTI datatype 128 (rgb24) is not supported");
    let path = patched(&tmp, "ras_float32.nii", "i64.nii", &[(70, i16le(1024))]);
    assert_read_error(&path, "datatype 1024 (int64)");
    let path = patched(
        &tmp,
        "ras_int16.nii",
        "inter.nii",
        &[(112, f32le(2.0)), (116, f32le(f32::NAN))],
    );
    assert_read_error(&path, "scl_inter is NaN while scl_slope is 2");
}

/// Run only as a child of `memory_limit_is_checked_before_allocating`, with
/// `FLARE_MEMORY_LIMIT_MB` set in its environment.
#[test]
#[ignore = "run in a child process by memory_limit_is_checked_before_allocating"]
fn memory_child() {
    let Some(path) = std::env::var_os("FLARE_NIFTI_TEST_FILE").map(PathBuf::from) else {
        eprintln!("SKIP memory_child: only meaningful as the child of its parent test");
        return;
    };
    let err = read_image(&path).expect_err("must not fit");
    println!("ERROR: {err}");
    // A CT-like volume too large to compress in one buffer under the limit is streamed instead.
    let g = Geometry::axis_aligned([256, 256, 64], [0.8, 0.8, 2.0], [0.0; 3]).expect("g");
    let data: Vec<f32> = (0..g.n_voxels())
        .map(|i| ((i * 7919) % 2000) as f32 - 1000.0)
        .collect();
    let out = path.with_file_name("written.nii.gz");
    write_volume(&out, &Volume::new(g, data).expect("v"), None).expect("streamed write");
    println!("WROTE");
}

#[test]
fn memory_limit_is_checked_before_allocating() {
    let tmp = TempDir::new("bad-memory");
    // 256x256x64 int16 of zeros (8 MB raw, 16 MB as float32), a few kB compressed.
    let mut bytes = std::fs::read(fixture("ras_int16.nii")).expect("fixture")[..352].to_vec();
    for (i, d) in [256i16, 256, 64].iter().enumerate() {
        bytes[42 + 2 * i..44 + 2 * i].copy_from_slice(&d.to_le_bytes());
    }
    bytes.resize(352 + 256 * 256 * 64 * 2, 0);
    let path = tmp.join("big.nii.gz");
    std::fs::write(&path, gzip(&bytes)).expect("write");
    // Without a limit it reads.
    assert_eq!(
        read_image(&path).expect("fits").volume.shape(),
        [256, 256, 64]
    );
    let out = Command::new(std::env::current_exe().expect("exe"))
        .args([
            "memory_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FLARE_MEMORY_LIMIT_MB", "8")
        .env("FLARE_NIFTI_TEST_FILE", &path)
        .output()
        .expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("ERROR: ").map(|(_, e)| e))
        .expect("child ran");
    assert!(stdout.contains("WROTE"), "{stdout}");
    let written = read_image(tmp.join("written.nii.gz")).expect("streamed output reads");
    let i = 123_457;
    assert_eq!(
        written.volume.data()[i],
        ((i * 7919) % 2000) as f32 - 1000.0
    );
    // 16 MB of float32 output plus the few kB of compressed file held while inflating.
    let want = format!(
        "{}: volume of shape [256, 256, 64] (int16 each) is too large to load: needs 17 MB \
         but only 8 MB of memory is available",
        path.display()
    );
    assert_eq!(line, want);
}

#[test]
fn typed_errors_are_matchable() {
    let tmp = TempDir::new("bad-typed");
    let path = tmp.join("empty.nii");
    std::fs::write(&path, b"").expect("write");
    assert!(matches!(
        read_image(&path),
        Err(NiftiError::EmptyFile { .. })
    ));
}

fn no_outputs(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
}

#[test]
fn failed_writes_leave_nothing() {
    let tmp = TempDir::new("bad-writes");
    let out_dir = TempDir::new("bad-writes-out");
    let img = read_image(fixture("ras_uint8.nii")).expect("fixture");
    let g = *img.volume.geometry();

    // Wrong extension.
    let labels = LabelMap::filled(g, 1);
    let err =
        write_label_map_like(out_dir.join("labels.nrrd"), &labels, &img.header).expect_err("name");
    assert!(
        err.to_string()
            .ends_with("output file name must end in .nii or .nii.gz"),
        "{err}"
    );

    // A label map on another grid.
    let other = Geometry::axis_aligned(g.shape(), [1.0; 3], [0.0; 3]).expect("g");
    let err = write_label_map_like(
        out_dir.join("a.nii.gz"),
        &LabelMap::filled(other, 1),
        &img.header,
    )
    .expect_err("grid");
    assert!(
        err.to_string()
            .contains("cannot write like the reference image: label map's affine differs"),
        "{err}"
    );
    let small = Geometry::axis_aligned([2, 2, 2], [1.0; 3], [0.0; 3]).expect("g");
    let err = write_label_map_like(
        out_dir.join("a.nii.gz"),
        &LabelMap::filled(small, 1),
        &img.header,
    )
    .expect_err("shape");
    assert!(
        err.to_string()
            .contains("label map has shape [2, 2, 2] but the reference image has shape [5, 4, 3]"),
        "{err}"
    );

    // NaN, and values the chosen datatype cannot hold.
    let mut data = vec![1.5f32; g.n_voxels()];
    data[7] = f32::NAN;
    let vol = Volume::new(g, data).expect("vol");
    let out = out_dir.join("nan.nii.gz");
    let err = write_volume(&out, &vol, None).expect_err("nan");
    assert!(
        err.to_string().starts_with(&out.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("voxel [2, 1, 0] is NaN"), "{err}");
    let vol = Volume::new(g, vec![1.5f32; g.n_voxels()]).expect("vol");
    let err =
        write_volume(out_dir.join("frac.nii"), &vol, Some(DataType::Int16)).expect_err("frac");
    assert!(
        err.to_string()
            .contains("voxel [0, 0, 0] holds 1.5, which int16 cannot store exactly"),
        "{err}"
    );
    let vol = Volume::new(g, vec![40000.0f32; g.n_voxels()]).expect("vol");
    let err =
        write_volume(out_dir.join("big.nii"), &vol, Some(DataType::Int16)).expect_err("range");
    assert!(err.to_string().contains("holds 40000"), "{err}");

    // A folder that does not exist.
    let err = write_volume(tmp.join("no/such/dir/x.nii.gz"), &vol, None).expect_err("dir");
    assert!(
        err.to_string()
            .contains("cannot create a temporary file in its folder"),
        "{err}"
    );
    no_outputs(out_dir.path());
}

#[test]
fn writes_replace_outputs_atomically_and_never_touch_inputs() {
    let tmp = TempDir::new("write-replace");
    let input = tmp.join("input.nii");
    std::fs::copy(fixture("las_uint8.nii"), &input).expect("copy");
    let before = std::fs::read(&input).expect("read");
    let img = read_image(&input).expect("read");
    let out = tmp.join("out.nii.gz");
    std::fs::write(&out, b"old contents").expect("write");
    let labels = LabelMap::filled(*img.volume.geometry(), 3);
    write_label_map_like(&out, &labels, &img.header).expect("write");
    assert_eq!(
        read_label_map(&out).expect("read").volume.data(),
        labels.data()
    );
    // A failing write over an existing output leaves the old output as it was.
    let vol = Volume::new(*img.volume.geometry(), vec![f32::NAN; labels.data().len()]).expect("v");
    assert!(write_volume(&out, &vol, None).is_err());
    assert_eq!(
        read_label_map(&out).expect("read").volume.data(),
        labels.data()
    );
    assert_eq!(std::fs::read(&input).expect("read"), before);
    let mut names: Vec<String> = std::fs::read_dir(tmp.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["input.nii", "out.nii.gz"]);
}

#[test]
fn valid_but_unusual_gzip_files_read() {
    let tmp = TempDir::new("odd-gzip");
    let want = read_image(fixture("ras_int16.nii")).expect("fixture");
    let mut bytes = std::fs::read(fixture("ras_int16.nii")).expect("fixture");
    // Bytes after the voxels (the inflater's first try has no room for them).
    bytes.extend(std::iter::repeat_n(7u8, 5000));
    let path = tmp.join("trailing.nii.gz");
    std::fs::write(&path, gzip(&bytes)).expect("write");
    assert_eq!(read_image(&path).expect("read").volume, want.volume);
    // Three gzip members, split inside the header and inside the voxels.
    let mut three = gzip(&bytes[..100]);
    three.extend(gzip(&bytes[100..400]));
    three.extend(gzip(&bytes[400..]));
    let path = tmp.join("three.nii.gz");
    std::fs::write(&path, three).expect("write");
    assert_eq!(read_image(&path).expect("read").volume, want.volume);
    // A .nii.gz name on an uncompressed file is read by content.
    let path = tmp.join("plain.nii.gz");
    std::fs::copy(fixture("ras_int16.nii"), &path).expect("copy");
    assert_eq!(read_image(&path).expect("read").volume, want.volume);
}
