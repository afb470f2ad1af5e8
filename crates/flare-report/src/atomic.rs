//! Writing a file all at once or not at all, and the PNG encoding every picture here shares.

use std::{io::Write, path::Path};

use crate::error::{ReportError, Result, io_err};

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so a
/// reader (a browser refreshing the report, a batch that is killed) never sees half a file.
/// Creates the parent folders.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    // tempfile creates 0600 files; a report is meant to be shared (served, opened by others).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    let mut tmp = builder.tempfile_in(parent).map_err(io_err(parent))?;
    tmp.write_all(bytes).map_err(io_err(tmp.path()))?;
    tmp.as_file().sync_all().map_err(io_err(tmp.path()))?;
    // On failure the temporary file is dropped, which deletes it.
    tmp.persist(path).map_err(|e| io_err(path)(e.error))?;
    Ok(())
}

/// An RGB picture (row-major, 8 bits per channel) as PNG bytes; `out` names the picture in
/// errors.
pub(crate) fn rgb_png(out: &Path, width: usize, height: usize, rgb: &[u8]) -> Result<Vec<u8>> {
    let png_err = |source| ReportError::Png {
        path: out.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    let mut enc = png::Encoder::new(&mut bytes, width as u32, height as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(png_err)?;
    writer.write_image_data(rgb).map_err(png_err)?;
    writer.finish().map_err(png_err)?;
    Ok(bytes)
}
