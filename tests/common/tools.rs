//! The rule for missing tools, shared by the integration tests (`tests/common`) and the
//! library's own unit tests (included from `src/lib.rs`): under `CI` a missing tool fails the
//! test with an install hint; on a developer machine the test is skipped, loudly.

#![allow(dead_code, clippy::print_stderr)]

/// Whether `tool` is on PATH (an executable file). Missing under `CI`: panic with the install
/// hint. Missing elsewhere: print a loud SKIP and return false.
pub fn require_tool(tool: &str, install: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let found = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p).any(|d| {
                std::fs::metadata(d.join(tool))
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
        })
        .unwrap_or(false);
    if found {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{tool} is required by this test but is not installed: {install}");
    }
    eprintln!("\n!!! SKIPPING: {tool} is not installed ({install}); CI runs this test\n");
    false
}
