//! The Linux backend: the bubblewrap command line for one run, and the start-up probe.
//!
//! Inside the sandbox the file system is an empty tmpfs root, remounted read-only once set up,
//! holding only:
//!
//! - `/usr` and `/nix/store` (when present) read-only; `/bin`, `/sbin`, `/lib*` recreated as the
//!   same symlinks as on the host (merged-/usr distributions) or bound read-only where they
//!   are real directories;
//! - `/proc`, a minimal `/dev`, a private tmpfs `/tmp`;
//! - the work dir read-only at `/run/vars`, with its `out/` bound read-write over
//!   `/run/vars/out` — the only writable place that outlives the run;
//! - an `/etc` made in the work dir: a generated `passwd` and `group`, copies of the host's
//!   `ld.so.cache`, `ssl/openssl.cnf` and `localtime`; with `network: true` also of its
//!   `resolv.conf` and `hosts`, and its `/etc/ssl/certs` bound read-only;
//! - runtime inputs living outside `/usr` and `/nix/store`, bound read-only at their own path.
//!
//! There is no home (`HOME=/homeless-shelter` does not exist) and always a private network
//! namespace, so neither services listening on the host's 127.0.0.1 nor its abstract unix
//! sockets are reachable. Without `network: true` its only interface is its own loopback; with
//! it, `usernet` attaches user-mode networking (slirp4netns) to that namespace.
//!
//! Nothing of the invoking user's kernel keyring is reachable (issue 8): bubblewrap starts in a
//! fresh, empty session keyring (`hardening::isolate_child`) and loads the `seccomp` filter that
//! makes `keyctl`, `add_key` and `request_key` fail, from a pipe (`--seccomp FD`). The only
//! descriptors it inherits beyond 0–2 are those pipes, which it closes (the network ones are
//! closed by the first process in the sandbox before the script starts).

use std::ffi::OsString;
use std::fs;
use std::io::Write as _;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::process::Launch;
use super::programs::Programs;
use super::workdir::{HOMELESS, WorkDir};
use super::{Job, SandboxError, seccomp, usernet};
use crate::fs_util::{self, IoContext};

/// Where the work dir appears inside the sandbox.
pub(crate) const MOUNT: &str = "/run/vars";

/// Top-level host directories that merged-/usr distributions make symlinks into `/usr`.
const USR_LINKS: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// Harmless host files every run gets a copy of, if the host has them: the dynamic loader's
/// cache (libraries in ld.so.conf.d directories), OpenSSL's configuration (`openssl req`
/// fails without it; Debian's /usr/lib/ssl/openssl.cnf points here) and the time zone.
/// Single files, never whole directories: /etc also holds /etc/shadow and /etc/ssl/private.
/// Copied rather than bound: a copy into the work dir costs less than two mount calls.
const ETC_FILES: &[&str] = &["/etc/ld.so.cache", "/etc/ssl/openssl.cnf", "/etc/localtime"];

/// What name resolution needs, copied only for `network: true` jobs.
const NETWORK_ETC_FILES: &[&str] = &["/etc/hosts"];

/// Written for `network: true` jobs from the host's, see [`sandbox_resolv_conf`].
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The CA certificates for TLS, bound (a directory) only for `network: true` jobs.
const CERTS: &str = "/etc/ssl/certs";

/// The kernel's key listings in /proc, hidden behind /dev/null.
const PROC_KEY_FILES: &[&str] = &["/proc/keys", "/proc/key-users"];

/// Device nodes bound from the host into the sandbox's own `/dev` tmpfs.
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
];

/// Symlinks in `/dev` that scripts commonly use (`echo warning > /dev/stderr`).
const DEV_LINKS: &[(&str, &str)] = &[
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
];

/// Namespace and process flags shared by runs and the probe.
const ISOLATION: &[&str] = &[
    "--unshare-user",
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup-try",
    "--die-with-parent",
    // Matters when vars runs as root: bwrap then keeps capabilities by default, and with
    // CAP_SYS_ADMIN the script could remount the read-only binds (even /usr) read-write.
    "--cap-drop",
    "ALL",
    // A new session: the script cannot reach vars's terminal (TIOCSTI injection).
    "--new-session",
    "--clearenv",
];

/// The full bwrap launch for `job` in `work`: the command, the descriptors it inherits and,
/// for `network: true`, the pipes `usernet` attaches the network through.
pub(crate) fn command(
    bwrap: &Path,
    work: &WorkDir,
    job: &Job,
    programs: &Programs,
) -> Result<Launch, SandboxError> {
    let mut keep = Vec::new();
    let mut args = Args::default();
    args.flags(ISOLATION);
    // The script's bash is pid 1 of the sandbox, with no bwrap reaper in between: one process
    // less to start, and bwrap can exit only after bash did, which (bash being the namespace's
    // init) the kernel completes only once every other process of the sandbox is dead. So
    // when the run is reaped, nothing can still be writing to $out.
    args.flags(&["--as-pid-1"]);
    // Never the host's network namespace, not even for network: true (issue 8).
    args.flags(&["--unshare-net"]);
    let mut network = match job.network {
        true => Some(
            usernet::Pending::new(usernet::program(job)?).map_err(|source| {
                SandboxError::Spawn {
                    program: bwrap.to_path_buf(),
                    source,
                }
            })?,
        ),
        false => None,
    };
    if let Some(pending) = &mut network {
        args.flags(&["--info-fd", &pending.info_fd().to_string()]);
        keep.extend(pending.take_child_ends());
    }
    let filter = seccomp_pipe(bwrap)?;
    args.flags(&["--seccomp", &filter.as_raw_fd().to_string()]);
    keep.push(filter);
    // A fixed host name: ssh-keygen's default comment is user@host, and the real host name
    // is none of the generator's business.
    args.flags(&["--hostname", "localhost"]);

    args.bind("--ro-bind", "/usr", "/usr");
    for name in USR_LINKS {
        let host = Path::new("/").join(name);
        match fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() => {
                if let Ok(target) = fs::read_link(&host) {
                    args.bind("--symlink", target, &host);
                }
            }
            Ok(m) if m.is_dir() => args.bind("--ro-bind", &host, &host),
            _ => {}
        }
    }
    if Path::new("/nix/store").is_dir() {
        args.bind("--ro-bind", "/nix/store", "/nix/store");
    }
    args.flags(&["--proc", "/proc"]);
    // /proc/keys lists the descriptions of every key the user may view (the vault cache's
    // names the store); with the keyring calls filtered there is nothing else to see.
    for file in PROC_KEY_FILES {
        if Path::new(file).exists() {
            args.bind("--ro-bind", "/dev/null", file);
        }
    }
    // A hand-made /dev rather than `--dev`: the same host device nodes minus the devpts
    // instance and the tty, which a generator with no terminal does not need, and each
    // mount left out is start-up time saved on every run.
    args.flags(&["--tmpfs", "/dev"]);
    for dev in DEVICES {
        args.bind("--dev-bind-try", dev, dev);
    }
    for (link, target) in DEV_LINKS {
        args.bind("--symlink", target, link);
    }
    args.flags(&["--dir", "/dev/shm", "--tmpfs", "/tmp"]);
    // After /tmp, so a runtime input under the host's /tmp is not hidden by the tmpfs.
    for path in &programs.host_paths {
        args.bind("--ro-bind", path, path);
    }

    args.bind("--ro-bind", work.path(), MOUNT);
    args.bind("--bind", work.out(), format!("{MOUNT}/out"));
    // One bind for all of /etc; `prepare` wrote it, including the mount points below.
    args.bind("--ro-bind", work.path().join("etc"), "/etc");
    if job.network {
        args.bind("--ro-bind-try", CERTS, CERTS);
    }
    // Nothing else may be created in the root tmpfs: writes outside $out and /tmp fail.
    args.flags(&["--remount-ro", "/", "--chdir", "/tmp"]);

    for (key, value) in super::script_env(job, programs, Path::new(MOUNT), Path::new("/tmp")) {
        args.0
            .extend([OsString::from("--setenv"), key.into(), value]);
    }
    args.0.push("--".into());
    args.0.push(programs.bash.clone().into());
    match &network {
        // bash -c WRAPPER BASH: the wrapper waits for the network, then execs BASH -euo
        // pipefail script.
        Some(pending) => {
            args.flags(&["-c", &pending.wrapper()]);
            args.0.push(programs.bash.clone().into());
        }
        None => args.flags(&["-euo", "pipefail", &format!("{MOUNT}/script")]),
    }

    let mut cmd = Command::new(bwrap);
    cmd.args(args.0);
    Ok(Launch {
        cmd,
        isolate: Some(keep),
        network,
    })
}

/// A pipe holding the compiled seccomp filter, for `--seccomp`: its read end. The program is
/// a few hundred bytes, far below a pipe's capacity, so writing cannot block.
fn seccomp_pipe(bwrap: &Path) -> Result<OwnedFd, SandboxError> {
    let program = seccomp::program()?;
    let spawn_error = |source| SandboxError::Spawn {
        program: bwrap.to_path_buf(),
        source,
    };
    let (reader, mut writer) = std::io::pipe().map_err(spawn_error)?;
    writer.write_all(program).map_err(spawn_error)?;
    Ok(reader.into())
}

/// Write the sandbox's `/etc` into the work dir: a minimal user database, copies of a few
/// host files, and for network jobs the mount point of the certificates (the directory is
/// bound read-only, so bwrap could not create it itself).
pub(crate) fn prepare(work: &WorkDir, job: &Job) -> Result<(), SandboxError> {
    // These do not change while vars runs; read them once.
    static HOST_FILES: OnceLock<Vec<(&'static str, Vec<u8>)>> = OnceLock::new();
    let host_files = HOST_FILES.get_or_init(|| {
        ETC_FILES
            .iter()
            .filter_map(|path| Some((*path, fs::read(path).ok()?)))
            .collect()
    });
    let etc = work.path().join("etc");
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&etc)
        .at("create directory", &etc)?;
    let write = |path: &str, bytes: &[u8]| -> Result<(), SandboxError> {
        let dest = inside(&etc, path);
        fs_util::create_dir_all(dest.parent().expect("below etc/"))?;
        Ok(fs_util::write_new(&dest, bytes, 0o444)?)
    };
    let (passwd, group) = user_database();
    write("/etc/passwd", passwd.as_bytes())?;
    write("/etc/group", group.as_bytes())?;
    for (path, bytes) in host_files {
        write(path, bytes)?;
    }
    if job.network {
        // Read per run: they change when the host changes networks.
        for path in NETWORK_ETC_FILES {
            if let Ok(bytes) = fs::read(path) {
                write(path, &bytes)?;
            }
        }
        let host_resolv = fs::read_to_string(RESOLV_CONF).unwrap_or_default();
        write(RESOLV_CONF, sandbox_resolv_conf(&host_resolv).as_bytes())?;
        if Path::new(CERTS).is_dir() {
            fs_util::create_dir_all(&inside(&etc, CERTS))?;
        }
    }
    Ok(())
}

/// The sandbox's resolv.conf: the host's search domains and options, but slirp4netns's DNS
/// forwarder as the only name server. The host's own servers are often on its loopback
/// (systemd-resolved's 127.0.0.53), which the sandbox cannot and must not reach; the forwarder
/// passes queries to them from outside.
fn sandbox_resolv_conf(host: &str) -> String {
    let mut conf = format!("nameserver {}\n", usernet::DNS);
    for line in host.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if matches!(first, "search" | "domain" | "options") {
            conf.push_str(line);
            conf.push('\n');
        }
    }
    conf
}

/// Where the host path `/etc/…` goes in the work dir's `etc/`.
fn inside(etc: &Path, path: &str) -> PathBuf {
    etc.join(
        Path::new(path)
            .strip_prefix("/etc")
            .expect("listed under /etc"),
    )
}

/// `/etc/passwd` and `/etc/group` for the sandbox: root, nobody and the invoking uid/gid
/// (bubblewrap maps the caller's ids to themselves), all homed at the nonexistent
/// `/homeless-shelter`. ssh-keygen, `id` and `whoami` need an entry for the current uid.
fn user_database() -> (String, String) {
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    let home = HOMELESS;
    let mut passwd = format!("root:x:0:0:root:{home}:/noshell\n");
    let mut group = String::from("root:x:0:\n");
    if uid != 0 && uid != 65534 {
        passwd.push_str(&format!(
            "vars:x:{uid}:{gid}:vars generator:{home}:/noshell\n"
        ));
    }
    if gid != 0 && gid != 65534 {
        group.push_str(&format!("vars:x:{gid}:\n"));
    }
    passwd.push_str(&format!("nobody:x:65534:65534:nobody:{home}:/noshell\n"));
    group.push_str("nogroup:x:65534:\n");
    (passwd, group)
}

/// Check that `bwrap` can create the namespaces a run needs (unprivileged user namespaces
/// are disabled on some kernels and by Ubuntu's AppArmor policy) and load the keyring filter
/// (a kernel without seccomp filters), so that `detect` fails with a clear message instead of
/// every generator failing with a bwrap error.
pub(crate) fn probe(bwrap: &Path) -> Result<(), SandboxError> {
    let filter = seccomp_pipe(bwrap)?;
    let mut cmd = Command::new(bwrap);
    cmd.args(ISOLATION)
        .args([
            "--unshare-net",
            "--ro-bind",
            "/",
            "/",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--seccomp",
            &filter.as_raw_fd().to_string(),
        ])
        .args(["--", "/bin/sh", "-c", ":"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    crate::hardening::isolate_child(&mut cmd, vec![filter]);
    let output = cmd.output().map_err(|source| SandboxError::Spawn {
        program: bwrap.to_path_buf(),
        source,
    })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stderr: String = stderr.trim().chars().take(2000).collect();
    Err(SandboxError::BubblewrapUnusable {
        path: bwrap.to_path_buf(),
        stderr: if stderr.is_empty() {
            output.status.to_string()
        } else {
            stderr
        },
    })
}

/// bwrap's argument vector, built as `OsString`s so non-UTF-8 paths pass through intact.
#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn flags(&mut self, flags: &[&str]) {
        self.0.extend(flags.iter().map(OsString::from));
    }

    fn bind(&mut self, op: &str, src: impl AsRef<Path>, dest: impl AsRef<Path>) {
        self.0.extend([
            op.into(),
            src.as_ref().as_os_str().to_owned(),
            dest.as_ref().as_os_str().to_owned(),
        ]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::programs;

    fn args_of(network: bool) -> Vec<String> {
        let root = tempfile::tempdir_in("/dev/shm").unwrap();
        let work = WorkDir::create(root.path()).unwrap();
        let mut job = Job::new("machines/m/g", "g", "true");
        job.network = network;
        job.env = vec![("machine".into(), "m".into())];
        let programs = programs::resolve(&job).unwrap();
        let launch = command(Path::new("/usr/bin/bwrap"), &work, &job, &programs).unwrap();
        launch
            .cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn has_seq(args: &[String], seq: &[&str]) -> bool {
        args.windows(seq.len())
            .any(|w| w.iter().zip(seq).all(|(a, b)| a == b))
    }

    #[test]
    fn isolates_by_default() {
        let args = args_of(false);
        for flag in ISOLATION.iter().chain(&["--unshare-net"]) {
            assert!(args.iter().any(|a| a == flag), "{flag} missing: {args:?}");
        }
        assert!(has_seq(&args, &["--ro-bind", "/usr", "/usr"]));
        assert!(has_seq(&args, &["--setenv", "HOME", "/homeless-shelter"]));
        assert!(has_seq(&args, &["--setenv", "machine", "m"]));
        assert!(has_seq(&args, &["--remount-ro", "/"]));
        assert!(!args.iter().any(|a| a == CERTS));
        let script = args.iter().position(|a| a == "--").unwrap();
        assert_eq!(args[script + 2..], ["-euo", "pipefail", "/run/vars/script"]);
    }

    #[test]
    fn every_run_gets_the_keyring_filter() {
        for network in [false, true] {
            if network && usernet::program(&Job::new("m/g", "g", "")).is_err() {
                continue; // the sandbox tests fail loudly without slirp4netns
            }
            let args = args_of(network);
            let i = args
                .iter()
                .position(|a| a == "--seccomp")
                .expect("--seccomp");
            assert!(args[i + 1].parse::<i32>().unwrap() > 2, "{args:?}");
        }
    }

    #[test]
    fn network_jobs_get_their_own_namespace_and_the_certificates() {
        if usernet::program(&Job::new("m/g", "g", "")).is_err() {
            return; // the sandbox tests fail loudly without slirp4netns
        }
        let args = args_of(true);
        assert!(args.iter().any(|a| a == "--unshare-net"), "{args:?}");
        assert!(args.iter().any(|a| a == "--info-fd"), "{args:?}");
        assert!(has_seq(&args, &["--ro-bind-try", CERTS, CERTS]));
        let etc = args.iter().position(|a| a == "/etc").unwrap();
        let certs = args.iter().position(|a| a == CERTS).unwrap();
        assert!(
            etc < certs,
            "the certificates are bound over the sandbox's /etc"
        );
    }

    #[test]
    fn resolv_conf_names_the_forwarder_and_keeps_search_domains() {
        let host = "# generated\nnameserver 127.0.0.53\nnameserver 10.1.1.1\n\
                    search example.org\noptions edns0 trust-ad\n";
        assert_eq!(
            sandbox_resolv_conf(host),
            "nameserver 10.0.2.3\nsearch example.org\noptions edns0 trust-ad\n"
        );
        assert_eq!(sandbox_resolv_conf(""), "nameserver 10.0.2.3\n");
    }

    #[test]
    fn passwd_has_an_entry_for_the_current_uid() {
        let (passwd, group) = user_database();
        let uid = rustix::process::getuid().as_raw().to_string();
        assert!(
            passwd
                .lines()
                .any(|l| l.split(':').nth(2) == Some(uid.as_str()))
        );
        assert!(passwd.lines().all(|l| l.contains(HOMELESS)));
        let gid = rustix::process::getgid().as_raw().to_string();
        assert!(
            group
                .lines()
                .any(|l| l.split(':').nth(2) == Some(gid.as_str()))
        );
    }

    #[test]
    fn usr_merge_symlinks_are_recreated() {
        let args = args_of(false);
        if let Ok(target) = fs::read_link("/bin") {
            let target = target.to_string_lossy().into_owned();
            assert!(has_seq(&args, &["--symlink", &target, "/bin"]), "{args:?}");
        }
    }
}
