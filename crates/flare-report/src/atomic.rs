//! Writing a file all at once or not at all, and the PNG encoding every picture here shares.

use std::path::Path;

use crate::error::{ReportError, Result, io_err};

/// Writes `bytes` to `path` all at once (`flare_atomic`), so a reader (a browser refreshing
/// the report, a batch that is killed) never sees half a file. Creates the parent folders.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    flare_atomic::write(path, bytes).map_err(io_err(path))
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
