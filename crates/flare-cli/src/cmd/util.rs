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
