//! Every file flare writes (label maps, CSVs, reports, records, models, checkpoints, cache
//! entries) is written here, all at once or not at all.
//!
//! The rule, in one place: the bytes go to a temporary file in the target's own folder (so the
//! rename cannot cross file systems), named `.<file name>.<random>.tmp` (unique per call, so two
//! processes or threads writing the same name never share a temporary file: a shared `X.tmp`
//! once swapped an image and a label file in the training cache), created with the usual
//! permissions (0644 less the umask; `tempfile` alone would make 0600, which hides outputs
//! from a PACS import service or a colleague), flushed and synced, then renamed over the
//! target. A crash, a kill or a full disk leaves the previous file (or none) under the name,
//! never half a file; a failed write deletes its temporary file.
//!
//! ```
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("volumes.csv");
//! flare_atomic::write(&path, b"case,liver_ml\n")?;
//! assert_eq!(std::fs::read(&path)?, b"case,liver_ml\n");
//! # Ok::<(), std::io::Error>(())
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::{
    io::{self, Write},
    path::{Path, PathBuf},
};

/// A file being written; it appears under its name only on [`AtomicFile::commit`], and is
/// deleted if dropped before.
#[derive(Debug)]
pub struct AtomicFile {
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
}

impl AtomicFile {
    /// Starts writing `path` (its folder must exist).
    pub fn create(path: &Path) -> io::Result<AtomicFile> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let prefix = format!(".{name}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".tmp");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o644));
        }
        Ok(AtomicFile {
            tmp: builder.tempfile_in(dir)?,
            path: path.to_path_buf(),
        })
    }

    /// The temporary file's path (for messages).
    pub fn temporary_path(&self) -> &Path {
        self.tmp.path()
    }

    /// Flushes, syncs and renames the file into place.
    pub fn commit(mut self) -> io::Result<()> {
        self.tmp.flush()?;
        self.tmp.as_file().sync_all()?;
        self.tmp.persist(&self.path).map_err(|e| e.error)?;
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tmp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tmp.flush()
    }
}

/// Writes `bytes` to `path` all at once or not at all (see the crate doc); the folder must
/// exist.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes)?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    }

    #[test]
    fn replaces_the_file_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.csv");
        write(&p, b"old").unwrap();
        write(&p, b"new contents").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new contents");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_dropped_file_never_appears_and_is_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.nii.gz");
        write(&p, b"previous").unwrap();
        let mut f = AtomicFile::create(&p).unwrap();
        f.write_all(b"half").unwrap();
        let tmp = f.temporary_path().to_path_buf();
        assert!(
            tmp.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".a.nii.gz.")
        );
        assert_eq!(tmp.parent(), Some(dir.path()));
        drop(f);
        assert_eq!(std::fs::read(&p).unwrap(), b"previous");
        assert!(!tmp.exists());
    }

    #[test]
    fn two_writers_of_one_name_get_their_own_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.bin");
        let a = AtomicFile::create(&p).unwrap();
        let b = AtomicFile::create(&p).unwrap();
        assert_ne!(a.temporary_path(), b.temporary_path());
    }

    #[cfg(unix)]
    #[test]
    fn outputs_get_the_usual_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("shared.csv");
        write(&p, b"x").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        // 0644 less the umask: readable by others unless the umask says otherwise, never
        // tempfile's 0600 whatever the umask.
        assert_eq!(mode & 0o600, 0o600);
        assert_eq!(mode & !0o644, 0, "{mode:o}");
        // A plain new file shows the umask.
        let probe = dir.path().join("probe");
        std::fs::write(&probe, b"").unwrap();
        let umasked = std::fs::metadata(&probe).unwrap().permissions().mode() & 0o644;
        assert_eq!(mode, umasked, "{mode:o} vs {umasked:o}");
    }

    #[test]
    fn a_missing_folder_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write(&dir.path().join("no/such/dir/f"), b"x").is_err());
    }
}
