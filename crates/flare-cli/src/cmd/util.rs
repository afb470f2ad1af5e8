//! Small pieces the subcommands share.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::Context;
use indicatif::ProgressBar;

/// Writes `bytes` to `path` through a temporary file in the same folder, renamed into place,
/// so a crash or a full disk never leaves half a file under the final name.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".flare-").suffix(".tmp");
    // tempfile creates 0600 files; outputs are meant to be shared (a CSV, a DICOM file a PACS
    // import service picks up), so they get the usual 0644 (less the umask).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    let mut tmp = builder
        .tempfile_in(dir)
        .with_context(|| format!("{}: cannot create a file in this folder", path.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.flush())
        .with_context(|| format!("{}: writing", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("{}: writing", path.display()))?;
    Ok(())
}

/// Whether two paths name one file (compared canonically where both exist).
pub fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// The file `path` names, absolute and with its folder's links resolved, whether or not the
/// file exists yet (`None` when its folder does not exist: nothing can be there).
pub fn file_target(path: &Path) -> Option<PathBuf> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Some(std::fs::canonicalize(dir).ok()?.join(path.file_name()?))
}

/// Refuses an output that exists (unless `overwrite`) or that is one of `inputs`: the checks
/// every command writing one file makes before any work.
pub fn check_new_output(out: &Path, inputs: &[&Path], overwrite: bool) -> anyhow::Result<()> {
    if out.exists() && !overwrite {
        anyhow::bail!(
            "{}: already exists (use --overwrite to replace it)",
            out.display()
        );
    }
    if inputs.iter().any(|i| same_path(out, i)) {
        anyhow::bail!("{}: is an input; refusing to write there", out.display());
    }
    Ok(())
}

/// A line above the progress bar, or on stderr where there is no terminal (the hidden bar
/// would swallow it).
pub fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let err = atomic_write(&dir.path().join("no/such/x.csv"), b"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no/such/x.csv"), "{err}");
    }
}
