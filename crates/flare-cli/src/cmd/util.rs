//! Small pieces the subcommands share.

use std::path::{Path, PathBuf};

use anyhow::Context;
use indicatif::ProgressBar;

/// Writes `bytes` to `path` all at once or not at all (`flare_atomic`), so a crash or a full
/// disk never leaves half a file under the final name.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    flare_atomic::write(path, bytes).with_context(|| format!("{}: writing", path.display()))
}

/// Whether two paths name one file (compared canonically where both exist).
pub fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
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

/// An error and its causes on one line, each cause once. Most of flare's error types quote
/// their source in their own text (`path: reading: No space left on device`) and also return
/// it as their source, so anyhow's `{:#}` would print the OS error twice; a cause whose text
/// is already in the line is left out.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if s.is_empty() || text.contains(&s) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&s);
    }
    text
}

/// Checks that a file can be created in `dir` (created first if `create`), by creating and
/// removing a temporary file there: an output that cannot be written is refused before the
/// work, not after it.
pub fn check_writable(dir: &Path, create: bool) -> anyhow::Result<()> {
    if create {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the folder", dir.display()))?;
    }
    // Dropped at once, which deletes it.
    tempfile::Builder::new()
        .prefix(".flare-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("{}: cannot create a file in this folder", dir.display()))?;
    Ok(())
}

/// An exclusive lock on one output file, held while its case runs: `.NAME.lock` beside it
/// (`flock`, released by the kernel when the process ends, however it ends), removed on
/// release. Two `flare segment` processes on one folder (a job started twice, overlapping
/// cluster parts) thus never work on the same case at once.
#[derive(Debug)]
pub struct OutputLock {
    path: PathBuf,
    _file: std::fs::File,
}

impl OutputLock {
    /// Takes the lock of `output` without waiting; `Ok(None)` when another process holds it.
    /// The output's folder must exist.
    pub fn try_acquire(output: &Path) -> anyhow::Result<Option<OutputLock>> {
        let dir = match output.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut name = std::ffi::OsString::from(".");
        name.push(output.file_name().unwrap_or_default());
        name.push(".lock");
        let path = dir.join(name);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("{}: cannot create the lock file", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(
                    anyhow::Error::new(e).context(format!("{}: cannot lock", path.display()))
                );
            }
        }
        // The previous holder removes the file as it releases it; if that happened between our
        // open and our lock, we hold a file no one else can see, and a third process may hold
        // a new one: count that as taken.
        if !same_file(&file, &path) {
            return Ok(None);
        }
        Ok(Some(OutputLock { path, _file: file }))
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still locked (the file closes after this), so whoever opens the path
        // next creates a fresh lock file; see `try_acquire`.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether the open `file` is the one `path` names now.
fn same_file(file: &std::fs::File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
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

    #[test]
    fn error_text_says_each_cause_once() {
        let os = std::io::Error::from_raw_os_error(28);
        let inner = anyhow::Error::new(flare_report::ReportError::Io {
            path: "r/index.html".into(),
            source: os,
        })
        .context("r: writing the report");
        let text = error_text(&inner);
        assert_eq!(text.matches("No space left on device").count(), 1, "{text}");
        assert!(
            text.starts_with("r: writing the report: r/index.html: "),
            "{text}"
        );
        // Causes that are not quoted stay.
        let plain = anyhow::anyhow!("disk full").context("x: writing");
        assert_eq!(error_text(&plain), "x: writing: disk full");
    }

    #[test]
    fn an_output_lock_is_exclusive_and_removed_on_release() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("a.nii.gz");
        let first = OutputLock::try_acquire(&out).unwrap().expect("free");
        let lock_file = dir.path().join(".a.nii.gz.lock");
        assert!(lock_file.is_file());
        // flock locks belong to the open file, so a second open in this process contends
        // exactly as another process would.
        assert!(OutputLock::try_acquire(&out).unwrap().is_none());
        drop(first);
        assert!(!lock_file.exists());
        assert!(OutputLock::try_acquire(&out).unwrap().is_some());
    }

    #[test]
    fn check_writable_refuses_a_missing_or_impossible_folder() {
        let dir = tempfile::tempdir().unwrap();
        check_writable(dir.path(), false).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(check_writable(&dir.path().join("no"), false).is_err());
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        let err = error_text(&check_writable(&file.join("sub"), true).unwrap_err());
        assert!(err.contains("f/sub: cannot create the folder"), "{err}");
    }
}
