//! Checking `$out` after a successful script and reading the outputs (DESIGN §6): every
//! declared file exists as a regular file, nothing undeclared exists, each file is at most
//! [`MAX_OUTPUT_BYTES`]. Only then is anything read, and never more than the limit.
//!
//! Everything here uses `symlink_metadata` and `O_NOFOLLOW`, so a script cannot make vars
//! read (and later encrypt or publish) a host file by leaving a symlink to it. By the time
//! this runs every process of the run is dead (see process.rs), so nothing changes `$out`
//! between the checks and the reads.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use super::{Job, MAX_OUTPUT_BYTES, SandboxError};
use crate::fs_util::{IoContext, IoError};
use crate::secret::SecretBytes;

/// How many undeclared names an error lists before saying "and N more".
const LIST_EXTRA: usize = 5;

/// Verify `out_dir` against `job.outputs` and read every declared file.
pub(crate) fn collect(
    out_dir: &Path,
    job: &Job,
) -> Result<BTreeMap<String, SecretBytes>, SandboxError> {
    let instance = || job.label.clone();
    let generator = || job.generator.clone();

    if !fs::symlink_metadata(out_dir).is_ok_and(|m| m.is_dir()) {
        return Err(SandboxError::OutDirReplaced {
            instance: instance(),
            generator: generator(),
        });
    }

    let mut sizes = Vec::with_capacity(job.outputs.len());
    for file in &job.outputs {
        let path = out_dir.join(file);
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SandboxError::MissingOutput {
                    instance: instance(),
                    generator: generator(),
                    file: file.clone(),
                });
            }
            Err(source) => {
                let action = "inspect";
                return Err(IoError {
                    action,
                    path,
                    source,
                }
                .into());
            }
        };
        if let Some(kind) = not_regular(&meta.file_type()) {
            return Err(SandboxError::NotRegularFile {
                instance: instance(),
                generator: generator(),
                file: file.clone(),
                kind,
            });
        }
        check_size(job, file, meta.len())?;
        sizes.push(meta.len());
    }

    let declared: BTreeSet<&str> = job.outputs.iter().map(String::as_str).collect();
    let mut extra = Vec::new();
    for entry in fs::read_dir(out_dir).at("list", out_dir)? {
        let name = entry.at("list", out_dir)?.file_name();
        let name = name.to_string_lossy();
        if !declared.contains(name.as_ref()) {
            extra.push(name.into_owned());
        }
    }
    if !extra.is_empty() {
        extra.sort();
        let total = extra.len();
        extra.truncate(LIST_EXTRA);
        return Err(SandboxError::UndeclaredOutput {
            names: extra,
            total,
            instance: instance(),
            generator: generator(),
        });
    }

    let mut outputs = BTreeMap::new();
    for (file, size) in job.outputs.iter().zip(sizes) {
        let bytes = read_capped(&out_dir.join(file), size, job, file)?;
        outputs.insert(file.clone(), bytes);
    }
    Ok(outputs)
}

fn not_regular(t: &fs::FileType) -> Option<&'static str> {
    if t.is_file() {
        None
    } else if t.is_symlink() {
        Some("symlink")
    } else if t.is_dir() {
        Some("directory")
    } else if t.is_fifo() {
        Some("fifo")
    } else if t.is_socket() {
        Some("socket")
    } else if t.is_block_device() || t.is_char_device() {
        Some("device")
    } else {
        Some("special file")
    }
}

fn check_size(job: &Job, file: &str, size: u64) -> Result<(), SandboxError> {
    if size > MAX_OUTPUT_BYTES {
        return Err(SandboxError::OutputTooLarge {
            instance: job.label.clone(),
            generator: job.generator.clone(),
            file: file.to_owned(),
            size,
            limit: MAX_OUTPUT_BYTES,
        });
    }
    Ok(())
}

/// Read a verified output without following symlinks and without reading past the limit.
fn read_capped(
    path: &Path,
    expected: u64,
    job: &Job,
    file: &str,
) -> Result<SecretBytes, SandboxError> {
    let f: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .at("open", path)?;
    // Allocate once, exactly: a growing Vec would leave unzeroed copies of the plaintext in
    // freed heap memory, which SecretBytes could not wipe.
    let capacity = usize::try_from(expected.min(MAX_OUTPUT_BYTES)).unwrap_or(0) + 1;
    let mut buf = Vec::with_capacity(capacity);
    f.take(MAX_OUTPUT_BYTES + 1)
        .read_to_end(&mut buf)
        .at("read", path)?;
    let bytes = SecretBytes::new(buf);
    check_size(job, file, bytes.len() as u64)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(outputs: &[&str]) -> Job {
        let mut job = Job::new("machines/m/g", "g", "true");
        job.outputs = outputs.iter().map(|s| s.to_string()).collect();
        job
    }

    #[test]
    fn reads_exactly_the_declared_files() {
        let dir = tempfile::tempdir_in("/dev/shm").unwrap();
        fs::write(dir.path().join("a"), b"\x00\xffA").unwrap();
        fs::write(dir.path().join("b"), b"").unwrap();
        let out = collect(dir.path(), &job(&["a", "b"])).unwrap();
        assert_eq!(out["a"].expose(), b"\x00\xffA");
        assert!(out["b"].is_empty());
    }

    #[test]
    fn fifo_is_not_a_regular_file() {
        let dir = tempfile::tempdir_in("/dev/shm").unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(dir.path().join("a"))
            .status()
            .unwrap();
        assert!(status.success());
        match collect(dir.path(), &job(&["a"])) {
            Err(SandboxError::NotRegularFile { kind, file, .. }) => {
                assert_eq!((kind, file.as_str()), ("fifo", "a"));
            }
            other => panic!("expected NotRegularFile, got {:?}", other.err()),
        }
    }

    #[test]
    fn undeclared_names_are_sorted_and_capped() {
        let dir = tempfile::tempdir_in("/dev/shm").unwrap();
        fs::write(dir.path().join("key"), b"k").unwrap();
        for i in 0..8 {
            fs::write(dir.path().join(format!("x{i}")), b"").unwrap();
        }
        match collect(dir.path(), &job(&["key"])) {
            Err(SandboxError::UndeclaredOutput { names, total, .. }) => {
                assert_eq!(names, ["x0", "x1", "x2", "x3", "x4"]);
                assert_eq!(total, 8);
            }
            other => panic!("expected UndeclaredOutput, got {:?}", other.err()),
        }
    }
}
