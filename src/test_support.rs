//! Helpers shared by the unit tests of several modules. Compiled only for tests.
//!
//! Tests use real external tools (STYLE: real `bwrap`, real `age`, real `git`, no mocks).
//! [`require_tool`] decides what happens when one is missing: in CI (`CI` set) that is a
//! failure with an install hint; on a developer machine the test skips, loudly.

use std::path::PathBuf;

/// Whether `name` is on `PATH`. If it is not: panic with `install_hint` when the `CI`
/// environment variable is set, otherwise print a SKIP notice to stderr and return `false`
/// (the caller then returns early).
#[allow(clippy::print_stderr)]
pub(crate) fn require_tool(name: &str, install_hint: &str) -> bool {
    if find_on_path(name).is_some() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("this test needs `{name}`, which is not on PATH; {install_hint}");
    }
    eprintln!(
        "\n*** SKIP: `{name}` is not on PATH, so this test did NOT run; {install_hint} ***\n"
    );
    false
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}
