//! The macOS backend: a deny-by-default Seatbelt profile for `sandbox-exec`, and the command
//! that runs a job under it.
//!
//! Seatbelt cannot remap paths the way bubblewrap's mounts do, so the script sees the work dir
//! at its real (canonical: `/var` is `/private/var`) host path, and the profile decides what
//! may be touched: system programs and libraries read-only, the work dir read-only, `$out` and
//! the run's private `tmp/` writable, nothing else — in particular not the user's home or
//! keychains, whose service (securityd) is denied — and no network unless the job asks for it.
//! macOS has no kernel keyring system calls to filter; the keychain is its counterpart.
//!
//! `sandbox-exec` is deprecated by Apple but still shipped and still what Nix uses on macOS.
//! None of this can run in CI (Linux); [`sandbox_exec_profile`] is unit-tested as text.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::programs::Programs;
use super::workdir::WorkDir;
use super::{Job, SandboxError};
use crate::fs_util::IoContext;

/// Where macOS ships `sandbox-exec`.
pub(crate) const SANDBOX_EXEC: &str = "/usr/bin/sandbox-exec";

/// Read-only system locations: programs, libraries, the dyld cache, package managers'
/// prefixes (Homebrew binaries load their libraries from there) and the Nix store.
const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/System",
    "/Library/Apple",
    "/private/var/db/dyld",
    "/private/var/db/timezone",
    "/opt/homebrew",
    "/opt/local",
    "/nix/store",
];

/// Single files every script may read: the user database (ssh-keygen needs an entry for the
/// current uid) and the harmless devices.
const SYSTEM_READ_FILES: &[&str] = &[
    "/private/etc/passwd",
    "/private/etc/group",
    "/private/etc/ssl/openssl.cnf",
    "/private/etc/localtime",
    "/dev/null",
    "/dev/zero",
    "/dev/random",
    "/dev/urandom",
];

/// What name resolution and TLS read when the job has network.
const NETWORK_READ: &[&str] = &[
    "/private/etc/hosts",
    "/private/etc/resolv.conf",
    "/private/var/run/resolv.conf",
    "/private/etc/services",
    "/private/etc/ssl",
];

/// Mach services for DNS and certificate checks, needed only with network. Not
/// `com.apple.SecurityServer` (securityd): it serves the user's keychains.
const NETWORK_SERVICES: &[&str] = &[
    "com.apple.SystemConfiguration.configd",
    "com.apple.SystemConfiguration.DNSConfiguration",
    "com.apple.dnssd.service",
    "com.apple.networkd",
    "com.apple.trustd",
    "com.apple.trustd.agent",
    "com.apple.ocspd",
];

/// The keychain's services (securityd and its agents): macOS's counterpart of the kernel
/// keyring, which a script must not reach (issue 8). `(deny default)` already denies every
/// mach-lookup not allowed; the profile states these explicitly, and a test keeps them out of
/// every allow rule. The keychain files (`~/Library/Keychains`, `/Library/Keychains`) are not
/// readable either: neither is under a readable path.
const KEYCHAIN_SERVICES: &[&str] = &[
    "com.apple.SecurityServer",
    "com.apple.securityd",
    "com.apple.securityd.xpc",
    "com.apple.security.agent",
    "com.apple.security.authhost",
    "com.apple.secd",
    "com.apple.security.keychain-circle-notification",
];

/// The Seatbelt profile for a run in `work_dir` (a canonical path).
///
/// Readable: the system locations, the work dir and `extra_read` (runtime inputs outside the
/// system, see `Programs::host_paths`). Writable: only `work_dir/out` (`$out`) and
/// `work_dir/tmp` (`$TMPDIR`, the counterpart of bubblewrap's private `/tmp`), plus
/// `/dev/null`. Network only when `network` is true.
pub fn sandbox_exec_profile(work_dir: &Path, extra_read: &[PathBuf], network: bool) -> String {
    let out = work_dir.join("out");
    let tmp = work_dir.join("tmp");
    let mut p = String::new();
    p.push_str("(version 1)\n");
    p.push_str(";; vars generator sandbox: everything not allowed below is denied.\n");
    p.push_str("(deny default)\n\n");

    p.push_str(";; Run programs and fork; signal only processes inside this sandbox.\n");
    p.push_str("(allow process-exec process-fork)\n");
    p.push_str("(allow signal (target same-sandbox))\n");
    p.push_str("(allow sysctl-read)\n\n");

    let mut read_dirs: Vec<PathBuf> = SYSTEM_READ.iter().map(PathBuf::from).collect();
    read_dirs.push(work_dir.to_path_buf());
    read_dirs.extend(extra_read.iter().cloned());
    let mut read_files: Vec<PathBuf> = SYSTEM_READ_FILES.iter().map(PathBuf::from).collect();
    if network {
        read_files.extend(NETWORK_READ.iter().map(PathBuf::from));
    }

    p.push_str(";; stat() on the ancestors of readable paths, for path lookups and realpath;\n");
    p.push_str(";; this lists and reads nothing.\n");
    p.push_str("(allow file-read-metadata");
    let ancestors: BTreeSet<&Path> = read_dirs
        .iter()
        .chain(&read_files)
        .flat_map(|p| p.ancestors().skip(1))
        .collect();
    for a in ancestors {
        let _ = write!(p, "\n  (literal {})", quote(a));
    }
    p.push_str(")\n\n");

    p.push_str(";; Read-only: system programs and libraries, the work dir (script, $in,\n");
    p.push_str(";; $prompts, program links) and runtime inputs outside the system.\n");
    p.push_str("(allow file-read*");
    for d in &read_dirs {
        let _ = write!(p, "\n  (subpath {})", quote(d));
    }
    for f in &read_files {
        let _ = write!(p, "\n  (literal {})", quote(f));
    }
    p.push_str("\n  (subpath \"/dev/fd\"))\n\n");

    p.push_str(";; The only writable places: $out and the run's private $TMPDIR.\n");
    let _ = writeln!(
        p,
        "(allow file-write*\n  (subpath {})\n  (subpath {})\n  (literal \"/dev/null\"))\n",
        quote(&out),
        quote(&tmp)
    );

    p.push_str(";; Users and groups by id (ssh-keygen, id) are answered by opendirectoryd.\n");
    p.push_str("(allow mach-lookup (global-name \"com.apple.system.opendirectoryd.libinfo\"))\n\n");

    p.push_str(";; The keychain (securityd) is the user's: never reachable.\n(deny mach-lookup");
    for s in KEYCHAIN_SERVICES {
        let _ = write!(p, "\n  (global-name {})", quote(Path::new(s)));
    }
    p.push_str(")\n\n");

    if network {
        p.push_str(";; network: true — outgoing connections, DNS and certificate checks.\n");
        p.push_str("(allow network*)\n(allow system-socket)\n(allow mach-lookup");
        for s in NETWORK_SERVICES {
            let _ = write!(p, "\n  (global-name {})", quote(Path::new(s)));
        }
        p.push_str(")\n");
    } else {
        p.push_str(";; No network: (deny default) already denies it; stated for readers.\n");
        p.push_str("(deny network*)\n");
    }
    p
}

/// The `sandbox-exec` command for `job` in `work`.
pub(crate) fn command(
    work: &WorkDir,
    job: &Job,
    programs: &Programs,
) -> Result<Command, SandboxError> {
    // Seatbelt matches the real path (/private/var/folders/…), not the /var symlink.
    let work_dir = fs::canonicalize(work.path()).at("resolve", work.path())?;
    let profile = sandbox_exec_profile(&work_dir, &programs.host_paths, job.network);
    let tmp = work_dir.join("tmp");
    let mut cmd = Command::new(SANDBOX_EXEC);
    cmd.arg("-p")
        .arg(profile)
        .arg(&programs.bash)
        .args(["-euo", "pipefail"])
        .arg(work_dir.join("script"))
        .env_clear()
        .envs(super::script_env(job, programs, &work_dir, &tmp))
        .current_dir(&tmp);
    Ok(cmd)
}

/// An SBPL string literal (Scheme syntax: backslash and double quote escaped).
fn quote(path: &Path) -> String {
    let s = path.to_string_lossy();
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORK: &str = "/private/var/folders/xy/T/vars-abc";

    fn allows(profile: &str, op: &str) -> String {
        // The text of every `(allow op …)` form, for assertions about what it grants.
        let mut found = String::new();
        let needle = format!("(allow {op}");
        let mut rest = profile;
        while let Some(i) = rest.find(&needle) {
            let form = &rest[i..];
            let end = form_end(form);
            found.push_str(&form[..end]);
            found.push('\n');
            rest = &form[end..];
        }
        found
    }

    /// Length of the balanced s-expression at the start of `form` (strings skipped).
    fn form_end(form: &str) -> usize {
        let (mut depth, mut in_string, mut escaped) = (0, false, false);
        for (i, c) in form.char_indices() {
            match (in_string, escaped, c) {
                (true, true, _) => escaped = false,
                (true, false, '\\') => escaped = true,
                (true, false, '"') => in_string = false,
                (true, false, _) => {}
                (false, _, '"') => in_string = true,
                (false, _, '(') => depth += 1,
                (false, _, ')') => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
        }
        form.len()
    }

    #[test]
    fn denies_by_default_and_writes_only_out_and_tmp() {
        let p = sandbox_exec_profile(Path::new(WORK), &[], false);
        assert!(p.starts_with("(version 1)\n"));
        assert!(p.contains("\n(deny default)\n"));
        let writes = allows(&p, "file-write*");
        let subpaths: Vec<&str> = writes.matches("(subpath ").collect();
        assert_eq!(subpaths.len(), 2, "{writes}");
        assert!(
            writes.contains(&format!("(subpath \"{WORK}/out\")")),
            "{writes}"
        );
        assert!(
            writes.contains(&format!("(subpath \"{WORK}/tmp\")")),
            "{writes}"
        );
        assert!(!writes.contains(&format!("(subpath \"{WORK}\")")));
        assert!(!p.contains("(allow default"));
        assert!(
            !p.contains("(allow file-write* (subpath \"/"),
            "no broad write rule"
        );
    }

    #[test]
    fn home_is_neither_readable_nor_writable() {
        let p = sandbox_exec_profile(Path::new(WORK), &[], false);
        assert!(!p.contains("/Users"), "{p}");
        assert!(allows(&p, "file-read*").contains(&format!("(subpath \"{WORK}\")")));
    }

    #[test]
    fn network_only_when_enabled() {
        let off = sandbox_exec_profile(Path::new(WORK), &[], false);
        assert!(!off.contains("(allow network"), "{off}");
        assert!(!off.contains("(allow system-socket"));
        assert!(off.contains("(deny network*)"));
        assert!(!off.contains("resolv.conf"));

        let on = sandbox_exec_profile(Path::new(WORK), &[], true);
        assert!(on.contains("(allow network*)"));
        assert!(on.contains("/private/etc/resolv.conf"));
        assert!(!on.contains("(deny network*)"));
    }

    #[test]
    fn extra_reads_and_their_ancestors_are_allowed() {
        let extra = PathBuf::from("/opt/tools/bin");
        let p = sandbox_exec_profile(Path::new(WORK), &[extra], false);
        assert!(allows(&p, "file-read*").contains("(subpath \"/opt/tools/bin\")"));
        let meta = allows(&p, "file-read-metadata");
        assert!(meta.contains("(literal \"/opt/tools\")"), "{meta}");
        assert!(meta.contains("(literal \"/\")"));
        assert!(
            !meta.contains("(subpath"),
            "metadata only on exact ancestors"
        );
    }

    #[test]
    fn the_keychain_is_denied_with_and_without_network() {
        for network in [false, true] {
            let p = sandbox_exec_profile(Path::new(WORK), &[], network);
            let lookups = allows(&p, "mach-lookup");
            for service in KEYCHAIN_SERVICES {
                let name = format!("(global-name \"{service}\")");
                assert!(!lookups.contains(&name), "{service} allowed: {lookups}");
                assert!(p.contains(&name), "{service} not denied explicitly");
            }
            assert!(!p.contains("Keychains"), "{p}");
        }
    }

    #[test]
    fn quotes_awkward_paths() {
        assert_eq!(quote(Path::new(r#"/a "b"\c"#)), r#""/a \"b\"\\c""#);
    }
}
