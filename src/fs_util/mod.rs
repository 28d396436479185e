//! File-system primitives every other module uses: I/O errors that carry their path, atomic
//! file writes (temp file in the same directory, fsync, rename, fsync the directory) and
//! exclusive 0600 creation for identity files (paths the person names), and [`Dir`], the
//! directory handle beneath which nothing follows a link (everything in the repository).

mod dir;

pub use dir::{Create, Dir, Entry, Kind, is_link_refused};

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// An I/O error together with the path it happened on and what vars was doing.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct IoError {
    /// What was being done ("read", "write", "create directory", …).
    pub action: &'static str,
    /// The path involved.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: io::Error,
}

/// Attach `action` and `path` to an `io::Result`.
pub trait IoContext<T> {
    /// Turn the error into an [`IoError`] naming `path`.
    fn at(self, action: &'static str, path: impl AsRef<Path>) -> Result<T, IoError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, action: &'static str, path: impl AsRef<Path>) -> Result<T, IoError> {
        self.map_err(|source| IoError {
            action,
            path: path.as_ref().to_path_buf(),
            source,
        })
    }
}

/// Read a whole file.
pub fn read(path: &Path) -> Result<Vec<u8>, IoError> {
    fs::read(path).at("read", path)
}

/// Read a whole file as UTF-8 text.
pub fn read_to_string(path: &Path) -> Result<String, IoError> {
    fs::read_to_string(path).at("read", path)
}

/// Create a directory and its parents.
pub fn create_dir_all(path: &Path) -> Result<(), IoError> {
    fs::create_dir_all(path).at("create directory", path)
}

/// fsync a directory so that renames inside it are durable.
pub fn sync_dir(path: &Path) -> Result<(), IoError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .at("sync directory", path)
}

/// Write `bytes` to a new file (which must not exist) with `mode`, and fsync it.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), IoError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .at("create", path)?;
    f.write_all(bytes).at("write", path)?;
    f.sync_all().at("sync", path)
}

/// Prefix of the temporary files [`write_atomic`] creates (and recovery removes).
pub const TMP_PREFIX: &str = ".vars-tmp-";

/// Replace `path` atomically: write a sibling temp file, fsync, rename over, fsync the directory.
/// Never truncates in place, so a crash leaves either the old or the new content.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), IoError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(TMP_PREFIX)
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))
        .tempfile_in(dir)
        .at("create a temporary file in", dir)?;
    tmp.write_all(bytes).at("write", tmp.path())?;
    tmp.as_file().sync_all().at("sync", tmp.path())?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .at("rename into place", path)?;
    sync_dir(dir)
}

/// Remove a directory tree if it exists.
pub fn remove_dir_all_if_exists(path: &Path) -> Result<(), IoError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).at("remove", path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn write_new_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("id");
        write_new(&p, b"a", 0o600).unwrap();
        let err = write_new(&p, b"b", 0o600).unwrap_err();
        assert!(err.to_string().contains("cannot create"), "{err}");
        assert_eq!(fs::read(&p).unwrap(), b"a");
    }
}
