//! End-to-end tests of [`run`] with the real bubblewrap (and the unsandboxed mode, which must
//! behave the same apart from isolation). They prove DESIGN §6 and §9.2: outputs come back
//! byte-exact; `$in`, `$prompts`, the job env and runtime inputs are there and nothing else;
//! no network, no home, no writes outside `$out`; every verification failure, timeout and
//! script failure has its own error; stderr is reported, stdout never; and the work dir is
//! gone afterwards in every case, including Ctrl-C.
//!
//! Every test gets its own tmpfs root through `Job::work_root` (env vars are process-global
//! and tests run in parallel) and asserts at the end that the root is empty again.

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::os::linux::net::SocketAddrExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::*;
use crate::test_support::require_tool;

const BWRAP_HINT: &str =
    "install bubblewrap: apt-get install bubblewrap / nix profile install nixpkgs#bubblewrap";

/// A private tmpfs root for work dirs; `run` checks it for leftovers after every run.
struct Fixture {
    root: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("vars-test-")
            .tempdir_in("/dev/shm")
            .expect("/dev/shm is writable");
        Fixture { root }
    }

    fn path(&self) -> &Path {
        self.root.path()
    }

    fn job(&self, script: &str, outputs: &[&str]) -> Job {
        let mut job = Job::new("machines/cinnabar/test-gen", "test-gen", script);
        job.outputs = outputs.iter().map(|s| s.to_string()).collect();
        job.env = vec![("machine".into(), "cinnabar".into())];
        job.work_root = Some(self.path().to_path_buf());
        job
    }

    /// Run and check that no work dir is left behind, whatever the result.
    fn run(
        &self,
        kind: &SandboxKind,
        job: &Job,
    ) -> Result<BTreeMap<String, SecretBytes>, SandboxError> {
        let result = run(kind, job);
        self.assert_clean(kind);
        result
    }

    fn assert_clean(&self, kind: &SandboxKind) {
        let left: Vec<_> = fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with("vars-"))
            .collect();
        assert!(left.is_empty(), "{kind}: work dirs left behind: {left:?}");
    }
}

/// bubblewrap, or `None` (after a loud SKIP) on a developer machine without it.
fn bwrap() -> Option<SandboxKind> {
    if !require_tool("bwrap", BWRAP_HINT) {
        return None;
    }
    Some(detect(SandboxSetting::Auto).expect("bwrap is on PATH and works"))
}

/// The kinds that must behave alike: bubblewrap (when available) and unsandboxed.
fn kinds() -> Vec<SandboxKind> {
    bwrap()
        .into_iter()
        .chain([SandboxKind::Unsandboxed])
        .collect()
}

fn text(outputs: &BTreeMap<String, SecretBytes>, file: &str) -> String {
    String::from_utf8(outputs[file].expose().to_vec()).unwrap()
}

fn secret(bytes: &[u8]) -> SecretBytes {
    SecretBytes::new(bytes.to_vec())
}

#[test]
fn detect_finds_bubblewrap_or_honours_opt_out() {
    assert_eq!(
        detect(SandboxSetting::None).unwrap(),
        SandboxKind::Unsandboxed
    );
    if let Some(SandboxKind::Bubblewrap(path)) = bwrap() {
        assert!(path.ends_with("bwrap"), "{}", path.display());
        assert!(path.is_absolute());
    }
}

#[test]
fn outputs_inputs_prompts_and_env() {
    let fx = Fixture::new();
    let input = b"\x00\x01binary\xff input\n";
    let script = r#"
        cat "$in/dep/file" > "$out/from-input"
        cat "$in/peers/cinnabar/key.pub" > "$out/from-peer"
        cat "$prompts/password" > "$out/from-prompt"
        printf '%s' "$machine" > "$out/machine"
        printf '%s|%s|%s' "$HOME" "$LANG" "$(pwd)" > "$out/env"
        if [ -e "$HOME" ]; then echo yes; else echo no; fi > "$out/home-exists"
        env | cut -d= -f1 | sort > "$out/names"
        echo "a warning" > /dev/stderr
        head -c 8 /dev/urandom > "$out/random"
    "#;
    let outputs = [
        "from-input",
        "from-peer",
        "from-prompt",
        "machine",
        "env",
        "home-exists",
        "names",
        "random",
    ];
    for kind in kinds() {
        let mut job = fx.job(script, &outputs);
        job.inputs.push(InputFile {
            dependency: "dep".into(),
            file: "file".into(),
            bytes: secret(input),
        });
        // A `machines/*/GEN` dependency: one machine's public file at $in/GEN/<machine>/.
        job.inputs.push(InputFile {
            dependency: "peers/cinnabar".into(),
            file: "key.pub".into(),
            bytes: secret(b"ssh-ed25519 AAAA peer"),
        });
        job.prompts.push(("password".into(), secret(b"hunter2\n")));
        let out = fx
            .run(&kind, &job)
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(out["from-input"].expose(), input, "{kind}");
        assert_eq!(out["from-prompt"].expose(), b"hunter2\n", "{kind}");
        assert_eq!(text(&out, "from-peer"), "ssh-ed25519 AAAA peer", "{kind}");
        assert_eq!(text(&out, "machine"), "cinnabar", "{kind}");
        let env = text(&out, "env");
        assert!(
            env.starts_with("/homeless-shelter|C.UTF-8|"),
            "{kind}: {env}"
        );
        assert_eq!(text(&out, "home-exists"), "no\n", "{kind}");
        // Cleared environment: only what the sandbox sets plus bash's own bookkeeping.
        let allowed = [
            "HOME", "LANG", "OLDPWD", "PATH", "PWD", "SHLVL", "TMPDIR", "_", "in", "machine",
            "out", "prompts",
        ];
        for name in text(&out, "names").lines() {
            assert!(
                allowed.contains(&name),
                "{kind}: unexpected variable {name}"
            );
        }
        assert_eq!(out["random"].len(), 8, "{kind}");
        assert_eq!(out.len(), outputs.len());
    }
}

#[test]
fn path_holds_runtime_inputs_and_the_core_set_only() {
    let fx = Fixture::new();
    let script = r#"
        for p in ssh-keygen sed cat bash sleep; do
            if command -v "$p" > /dev/null; then echo "$p yes"; else echo "$p no"; fi
        done > "$out/which"
    "#;
    for kind in kinds() {
        let out = fx.run(&kind, &fx.job(script, &["which"])).unwrap();
        assert_eq!(
            text(&out, "which"),
            "ssh-keygen no\nsed no\ncat yes\nbash yes\nsleep yes\n",
            "{kind}"
        );
    }
}

#[test]
fn ssh_keygen_works_when_listed() {
    if !require_tool(
        "ssh-keygen",
        "install OpenSSH: apt-get install openssh-client",
    ) {
        return;
    }
    let fx = Fixture::new();
    // No -C: the default comment needs a passwd entry for the current uid.
    let script = r#"ssh-keygen -t ed25519 -N '' -f "$out/key" -q"#;
    for kind in kinds() {
        let mut job = fx.job(script, &["key", "key.pub"]);
        job.runtime_inputs = vec!["ssh-keygen".into()];
        let out = fx
            .run(&kind, &job)
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert!(text(&out, "key").starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        let public = text(&out, "key.pub");
        assert!(public.starts_with("ssh-ed25519 AAAA"), "{kind}: {public}");
        if kind.is_sandboxed() {
            assert!(
                public.trim_end().ends_with("@localhost"),
                "{kind}: {public}"
            );
        }
    }
}

#[test]
fn openssl_can_make_a_certificate() {
    // `openssl req` needs OpenSSL's configuration file, which lives in /etc on Debian.
    if !require_tool("openssl", "install OpenSSL: apt-get install openssl") {
        return;
    }
    let fx = Fixture::new();
    let script = r#"
        openssl genpkey -algorithm ed25519 -out "$out/ca.key"
        openssl req -x509 -new -key "$out/ca.key" -subj /CN=vars-test-ca -days 1 -out "$out/ca.crt"
    "#;
    for kind in kinds() {
        let mut job = fx.job(script, &["ca.key", "ca.crt"]);
        job.runtime_inputs = vec!["openssl".into()];
        let out = fx
            .run(&kind, &job)
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert!(
            text(&out, "ca.crt").starts_with("-----BEGIN CERTIFICATE-----"),
            "{kind}"
        );
    }
}

#[test]
fn absolute_runtime_inputs_directory_and_file() {
    let fx = Fixture::new();
    // A directory contributes its bin/ (here /usr/bin, so sed), a file is that program.
    let script = r#"echo a | sed s/a/from-dir/ > "$out/a"; env printf from-file > "$out/b""#;
    for kind in kinds() {
        let mut job = fx.job(script, &["a", "b"]);
        job.runtime_inputs = vec!["/usr".into(), "/usr/bin/env".into()];
        let out = fx
            .run(&kind, &job)
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(text(&out, "a"), "from-dir\n", "{kind}");
        assert_eq!(text(&out, "b"), "from-file", "{kind}");
    }
}

/// Issue 8, item 4: `tools/bin -> ~/.ssh` in the checkout and `runtime-inputs:
/// ["/path/to/checkout/tools"]` must not bind the home's keys in; nothing runs.
#[test]
fn runtime_inputs_leading_out_of_the_system_are_refused() {
    let fx = Fixture::new();
    let root = tempfile::tempdir().unwrap();
    let ssh = root.path().join("home/.ssh");
    fs::create_dir_all(&ssh).unwrap();
    fs::write(ssh.join("id_ed25519"), b"KEY-SENTINEL").unwrap();
    let tools = root.path().join("checkout/tools");
    fs::create_dir_all(&tools).unwrap();
    std::os::unix::fs::symlink(&ssh, tools.join("bin")).unwrap();
    let marker = fx.path().join("ran");
    let script = format!("touch {}; cat \"$PATH\" > \"$out/k\"", marker.display());
    for kind in kinds() {
        let mut job = fx.job(&script, &["k"]);
        job.runtime_inputs = vec![tools.to_string_lossy().into_owned()];
        let err = fx.run(&kind, &job).err().expect("refused");
        assert!(
            matches!(&err, SandboxError::RuntimeInputOutside { program, .. }
                if *program == tools.to_string_lossy()),
            "{kind}: {err}"
        );
        let msg = err.to_string();
        assert!(msg.contains("outside"), "{msg}");
        assert!(!msg.contains("KEY-SENTINEL"));
        assert!(!marker.exists(), "{kind}: the script ran");
    }
}

#[test]
fn missing_runtime_input_is_reported_with_its_name() {
    let fx = Fixture::new();
    let mut job = fx.job("true", &[]);
    job.runtime_inputs = vec!["vars-no-such-program".into()];
    let err = fx.run(&SandboxKind::Unsandboxed, &job).err().unwrap();
    assert!(
        matches!(&err, SandboxError::RuntimeInputNotFound { generator, program }
            if generator == "test-gen" && program == "vars-no-such-program"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("install the program or fix runtime-inputs")
    );
}

fn slirp4netns() -> bool {
    require_tool(
        "slirp4netns",
        "install slirp4netns: apt-get install slirp4netns / nix profile install nixpkgs#slirp4netns",
    )
}

/// Issue 8, item 7: a `network: true` generator gets its own network namespace with user-mode
/// networking; the host's loopback listener and abstract unix socket stay out of reach.
#[test]
fn network_jobs_cannot_reach_the_hosts_loopback_or_abstract_sockets() {
    let Some(kind) = bwrap() else { return };
    if !slirp4netns() || !require_tool("perl", "install perl: apt-get install perl-base") {
        return;
    }
    let fx = Fixture::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let abstract_name = format!("vars-test-{}-{port}", std::process::id());
    let addr =
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap();
    let _abstract = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    // The kernel completes the handshake from the backlog, so no accept() is needed; the
    // unreachable cases fail fast (refused or unreachable), never by a timeout.
    let script = r#"
        try() { if (exec 3<>"/dev/tcp/$1/$port") 2> /dev/null; then echo "reachable $1"; else echo "unreachable $1"; fi; }
        try 127.0.0.1
        try 10.0.2.2
        perl -MSocket -e '
            socket(my $s, AF_UNIX, SOCK_STREAM, 0) or die "socket: $!";
            print connect($s, pack_sockaddr_un("\0$ARGV[0]")) ? "reachable" : "unreachable", " abstract\n";
        ' "$abstract"
    "#;
    for network in [false, true] {
        let mut job = fx.job(
            &format!("{{\n{script}\n}} > \"$out/r\"\n"),
            &["r", "ifaces"],
        );
        job.script.push_str(
            "cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d ' ' | sort > \"$out/ifaces\"\n",
        );
        job.runtime_inputs = vec!["perl".into()];
        job.env.push(("port".into(), port.to_string()));
        job.env.push(("abstract".into(), abstract_name.clone()));
        job.network = network;
        let out = fx
            .run(&kind, &job)
            .unwrap_or_else(|e| panic!("network: {network}: {e}"));
        assert_eq!(
            text(&out, "r"),
            "unreachable 127.0.0.1\nunreachable 10.0.2.2\nunreachable abstract\n",
            "network: {network}"
        );
        // The user-mode network exists (and only with network: true).
        let expected = if network { "lo\ntap0\n" } else { "lo\n" };
        assert_eq!(text(&out, "ifaces"), expected, "network: {network}");
    }
    // The abstract socket is really there: the host itself reaches it.
    assert!(std::os::unix::net::UnixStream::connect_addr(&addr).is_ok());
}

/// With network the resolver (slirp4netns's forwarder) and CA certificates come along, and
/// only then.
#[test]
fn network_jobs_get_a_resolver_and_certificates() {
    let Some(kind) = bwrap() else { return };
    if !slirp4netns() {
        return;
    }
    let fx = Fixture::new();
    let script = r#"
        cat /etc/resolv.conf > "$out/resolv" 2> /dev/null || true
        if [ -d /etc/ssl/certs ]; then echo yes; else echo no; fi > "$out/certs"
        while read -r iface dest rest; do
            if [ "$dest" = 00000000 ]; then echo "default via $iface"; fi
        done < /proc/net/route > "$out/route"
    "#;
    for network in [false, true] {
        let mut job = fx.job(script, &["resolv", "certs", "route"]);
        job.network = network;
        let out = fx.run(&kind, &job).unwrap();
        let resolv = text(&out, "resolv");
        if network {
            assert!(resolv.starts_with("nameserver 10.0.2.3\n"), "{resolv}");
            assert_eq!(resolv.matches("nameserver").count(), 1, "{resolv}");
            // A default route through the tap device.
            assert_eq!(text(&out, "route"), "default via tap0\n");
        } else {
            assert_eq!(resolv, "");
            assert_eq!(text(&out, "route"), "");
        }
        let host_certs = network && Path::new("/etc/ssl/certs").is_dir();
        assert_eq!(
            text(&out, "certs"),
            if host_certs { "yes\n" } else { "no\n" }
        );
    }
}

/// A failing network run reports the script's failure like any other run.
#[test]
fn network_runs_report_failures_and_time_out_like_others() {
    let Some(kind) = bwrap() else { return };
    if !slirp4netns() {
        return;
    }
    let fx = Fixture::new();
    let mut job = fx.job("echo net-fail >&2; exit 4", &[]);
    job.network = true;
    let err = fx.run(&kind, &job).err().unwrap();
    assert!(
        matches!(&err, SandboxError::Exited { status, stderr, .. }
            if status.code() == Some(4) && stderr.contains("net-fail")),
        "{err}"
    );
    let mut job = fx.job("sleep 30", &[]);
    job.network = true;
    job.timeout = Duration::from_secs(1);
    let err = fx.run(&kind, &job).err().unwrap();
    assert!(matches!(err, SandboxError::TimedOut { .. }), "{err}");
}

/// The script inherits no descriptor beyond 0-2 (bash keeps its script open on 255): not the
/// pipes bubblewrap got for its seccomp filter and the network set-up, and not whatever the
/// test harness inherited from its own parent (the library closes those for bubblewrap even
/// when `hardening::harden_process` never ran; the CLI test covers the unsandboxed mode).
#[test]
fn sandboxed_scripts_inherit_only_the_standard_descriptors() {
    let Some(kind) = bwrap() else { return };
    let fx = Fixture::new();
    let script = r#"ls /proc/$$/fd > "$TMPDIR/l"; sort -n "$TMPDIR/l" | tr '\n' ' ' > "$out/fds""#;
    for network in [false, true] {
        if network && !slirp4netns() {
            continue;
        }
        let mut job = fx.job(script, &["fds"]);
        job.network = network;
        let out = fx.run(&kind, &job).unwrap();
        assert_eq!(text(&out, "fds"), "0 1 2 255 ", "network: {network}");
    }
}

#[test]
fn home_and_host_files_are_invisible() {
    let Some(kind) = bwrap() else { return };
    let fx = Fixture::new();
    let host_tmp = tempfile::tempdir().unwrap();
    let markers = [host_tmp.path().join("marker"), fx.path().join("marker")];
    for m in &markers {
        fs::write(m, b"host secret").unwrap();
    }
    let script = r#"
        for p in "$m1" "$m2" "$(dirname "$m2")" "$host_home" /etc/shadow /etc/ssl/private /root; do
            if [ -e "$p" ]; then echo "visible: $p"; fi
        done > "$out/report"
        if [ -e "$HOME" ]; then echo "HOME exists" >> "$out/report"; fi
        cat "$m1" "$m2" >> "$out/report" 2> /dev/null || true
    "#;
    let mut job = fx.job(script, &["report"]);
    job.env
        .push(("m1".into(), markers[0].to_string_lossy().into_owned()));
    job.env
        .push(("m2".into(), markers[1].to_string_lossy().into_owned()));
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    job.env.push(("host_home".into(), home));
    let out = fx.run(&kind, &job).unwrap();
    assert_eq!(text(&out, "report"), "");
}

#[test]
fn writes_outside_out_fail() {
    let Some(kind) = bwrap() else { return };
    let fx = Fixture::new();
    let host_tmp = tempfile::tempdir().unwrap();
    let host_targets = [host_tmp.path().join("escaped"), fx.path().join("escaped")];
    let script = r#"
        attempt() { if (eval "$1") 2> /dev/null; then echo "escaped: $1"; fi; }
        attempt 'echo x > /usr/vars-test-escape'
        attempt '/usr/bin/mount -o remount,rw,bind /usr && echo x > /usr/vars-test-escape'
        attempt 'echo x > /vars-test-escape'
        attempt 'echo x > /etc/passwd'
        attempt 'echo x > "$in/dep/new"'
        attempt 'echo x >> "$in/dep/file"'
        attempt 'echo x > "$prompts/new"'
        attempt 'echo x > /run/vars/script'
        attempt 'echo x > /run/vars/new'
        # The host paths do not exist in here; creating them (if a private tmpfs allows it)
        # must not reach the host, which the test checks from outside.
        for t in "$t1" "$t2"; do mkdir -p "$(dirname "$t")" 2> /dev/null && echo x > "$t" 2> /dev/null || true; done
        echo done >> "$out/report"
    "#;
    let mut job = fx.job(&format!("{script}\n"), &["report"]);
    job.inputs.push(InputFile {
        dependency: "dep".into(),
        file: "file".into(),
        bytes: secret(b"original"),
    });
    job.env
        .push(("t1".into(), host_targets[0].to_string_lossy().into_owned()));
    job.env
        .push(("t2".into(), host_targets[1].to_string_lossy().into_owned()));
    let out = fx.run(&kind, &job).unwrap();
    assert_eq!(text(&out, "report"), "done\n");
    assert!(!Path::new("/usr/vars-test-escape").exists());
    for t in &host_targets {
        assert!(!t.exists(), "{} was created on the host", t.display());
    }
}

/// Expect `script` (declaring `outputs`) to fail in every kind; returns the errors.
fn failures(fx: &Fixture, script: &str, outputs: &[&str]) -> Vec<(SandboxKind, SandboxError)> {
    kinds()
        .into_iter()
        .map(|kind| {
            let err = match fx.run(&kind, &fx.job(script, outputs)) {
                Ok(_) => panic!("{kind}: {script:?} succeeded"),
                Err(e) => e,
            };
            (kind, err)
        })
        .collect()
}

#[test]
fn symlink_output_is_rejected() {
    let fx = Fixture::new();
    for (kind, err) in failures(&fx, r#"ln -s /etc/passwd "$out/key""#, &["key"]) {
        assert!(
            matches!(&err, SandboxError::NotRegularFile { file, kind: "symlink", .. } if file == "key"),
            "{kind}: {err}"
        );
        assert!(
            err.to_string()
                .contains("created \"$out/key\" as a symlink"),
            "{err}"
        );
    }
}

#[test]
fn directory_output_is_rejected() {
    let fx = Fixture::new();
    for (kind, err) in failures(&fx, r#"mkdir "$out/key"; chmod 000 "$out/key""#, &["key"]) {
        assert!(
            matches!(
                &err,
                SandboxError::NotRegularFile {
                    kind: "directory",
                    ..
                }
            ),
            "{kind}: {err}"
        );
    }
}

#[test]
fn missing_output_is_rejected() {
    let fx = Fixture::new();
    for (kind, err) in failures(&fx, r#"echo a > "$out/a""#, &["a", "key"]) {
        assert!(
            matches!(&err, SandboxError::MissingOutput { file, .. } if file == "key"),
            "{kind}: {err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("generator \"test-gen\" (machines/cinnabar/test-gen) did not create declared file \"key\" in $out"),
            "{msg}"
        );
    }
}

#[test]
fn undeclared_output_is_rejected() {
    let fx = Fixture::new();
    let script = r#"echo k > "$out/key"; echo x > "$out/stray"; mkdir "$out/dir""#;
    for (kind, err) in failures(&fx, script, &["key"]) {
        assert!(
            matches!(&err, SandboxError::UndeclaredOutput { names, total: 2, .. } if names == &["dir", "stray"]),
            "{kind}: {err}"
        );
        assert!(
            err.to_string()
                .contains("undeclared files in $out: \"dir\", \"stray\"")
        );
    }
}

#[test]
fn oversized_output_is_rejected_without_reading_it() {
    let fx = Fixture::new();
    let script = format!(r#"truncate -s {} "$out/key""#, MAX_OUTPUT_BYTES + 1);
    for (kind, err) in failures(&fx, &script, &["key"]) {
        assert!(
            matches!(&err, SandboxError::OutputTooLarge { size, limit, .. }
                if *size == MAX_OUTPUT_BYTES + 1 && *limit == MAX_OUTPUT_BYTES),
            "{kind}: {err}"
        );
    }
    // Exactly the limit is fine.
    let script = format!(r#"head -c {} /dev/zero > "$out/key""#, MAX_OUTPUT_BYTES);
    let out = fx
        .run(&SandboxKind::Unsandboxed, &fx.job(&script, &["key"]))
        .unwrap();
    assert_eq!(out["key"].len() as u64, MAX_OUTPUT_BYTES);
}

#[test]
fn timeout_kills_the_whole_run() {
    let fx = Fixture::new();
    // The background sleep holds stderr open: only killing every process ends the run.
    for script in ["sleep 30", "sleep 30 & sleep 30"] {
        for kind in kinds() {
            let mut job = fx.job(script, &[]);
            job.timeout = Duration::from_secs(1);
            let started = Instant::now();
            let err = fx.run(&kind, &job).err().expect("must time out");
            let elapsed = started.elapsed();
            assert!(
                elapsed < Duration::from_secs(10),
                "{kind}: took {elapsed:?}"
            );
            assert!(
                elapsed >= Duration::from_secs(1),
                "{kind}: took {elapsed:?}"
            );
            assert!(
                matches!(&err, SandboxError::TimedOut { timeout, .. } if *timeout == job.timeout),
                "{kind}: {err}"
            );
            assert!(
                err.to_string()
                    .contains("did not finish within its timeout of 1s")
            );
        }
    }
}

#[test]
fn background_processes_do_not_outlive_the_run() {
    let fx = Fixture::new();
    // A background job that closed stderr, so the end of stderr says nothing about it.
    let script = r#"(exec 2>&-; sleep 876.5) & echo ok > "$out/key""#;
    for kind in kinds() {
        let started = Instant::now();
        let out = fx.run(&kind, &fx.job(script, &["key"])).unwrap();
        assert_eq!(text(&out, "key"), "ok\n");
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "{kind}: waited for it"
        );
        if kind.is_sandboxed() {
            // bash is the sandbox's pid 1: bwrap exits only after every process in it died.
            assert!(
                sleeping("876.5").is_empty(),
                "{kind}: a sandbox process survived"
            );
        } else {
            wait_until("the background job is killed", || {
                sleeping("876.5").is_empty()
            });
        }
    }
}

#[test]
fn failure_reports_stderr_never_stdout_or_secrets() {
    let fx = Fixture::new();
    let script = r#"
        cat "$in/dep/file"
        echo STDOUT-SENTINEL
        echo STDERR-SENTINEL >&2
        exit 3
    "#;
    for kind in kinds() {
        let mut job = fx.job(script, &["key"]);
        job.inputs.push(InputFile {
            dependency: "dep".into(),
            file: "file".into(),
            bytes: secret(b"SECRET-SENTINEL"),
        });
        let err = fx.run(&kind, &job).err().expect("must fail");
        let SandboxError::Exited {
            status,
            stderr,
            generator,
            ..
        } = &err
        else {
            panic!("{kind}: expected Exited, got {err}");
        };
        assert_eq!(status.code(), Some(3), "{kind}");
        assert_eq!(generator, "test-gen");
        assert!(stderr.contains("STDERR-SENTINEL"), "{kind}: {stderr}");
        let msg = err.to_string();
        assert!(msg.contains("generator \"test-gen\""), "{msg}");
        assert!(msg.contains("exit status: 3"), "{msg}");
        assert!(msg.contains("STDERR-SENTINEL"), "{msg}");
        assert!(
            !msg.contains("STDOUT-SENTINEL"),
            "{kind}: stdout leaked: {msg}"
        );
        assert!(
            !msg.contains("SECRET-SENTINEL"),
            "{kind}: secret leaked: {msg}"
        );
    }
}

#[test]
fn long_stderr_is_capped_to_its_tail() {
    let fx = Fixture::new();
    let script = r#"head -c 100000 /dev/zero | tr '\0' a >&2; echo TAIL-MARK >&2; exit 1"#;
    for kind in kinds() {
        let err = fx.run(&kind, &fx.job(script, &[])).err().unwrap();
        let SandboxError::Exited { stderr, .. } = &err else {
            panic!("{kind}: {err}")
        };
        assert!(stderr.ends_with("TAIL-MARK"), "{kind}");
        assert!(
            stderr.len() <= STDERR_CAP + 64,
            "{kind}: {} bytes",
            stderr.len()
        );
        assert!(stderr.starts_with("[… "), "{kind}");
    }
}

#[test]
fn unsafe_names_are_rejected_before_anything_runs() {
    let fx = Fixture::new();
    type Change = fn(&mut Job);
    let cases: Vec<(&str, Change)> = vec![
        ("output", |j| j.outputs = vec!["../escape".into()]),
        ("dotdot", |j| j.outputs = vec!["a..b".into()]),
        ("duplicate", |j| j.outputs = vec!["a".into(), "a".into()]),
        ("prompt", |j| {
            j.prompts = vec![("/etc/x".into(), secret(b""))]
        }),
        ("input", |j| {
            let bytes = secret(b"");
            j.inputs = vec![InputFile {
                dependency: "..".into(),
                file: "f".into(),
                bytes,
            }];
        }),
        ("nested input", |j| {
            let bytes = secret(b"");
            j.inputs = vec![InputFile {
                dependency: "gen/../x".into(),
                file: "f".into(),
                bytes,
            }];
        }),
        ("empty part", |j| {
            let bytes = secret(b"");
            j.inputs = vec![InputFile {
                dependency: "gen//x".into(),
                file: "f".into(),
                bytes,
            }];
        }),
        ("reserved env", |j| {
            j.env = vec![("PATH".into(), "/".into())]
        }),
        ("env name", |j| j.env = vec![("a=b".into(), "c".into())]),
    ];
    for (what, change) in cases {
        let mut job = fx.job(r#"touch /dev/shm/vars-test-must-not-run"#, &[]);
        change(&mut job);
        let err = fx.run(&SandboxKind::Unsandboxed, &job).err().unwrap();
        assert!(
            matches!(err, SandboxError::InvalidJob { .. }),
            "{what}: {err}"
        );
    }
    assert!(!Path::new("/dev/shm/vars-test-must-not-run").exists());
}

#[test]
fn parallel_runs_do_not_interfere() {
    let fx = Fixture::new();
    let kinds = kinds();
    std::thread::scope(|s| {
        for i in 0..4 {
            let (fx, kind) = (&fx, &kinds[i % kinds.len()]);
            s.spawn(move || {
                let mut job = fx.job(r#"printf '%s' "$n" > "$out/n""#, &["n"]);
                job.env.push(("n".into(), i.to_string()));
                // Not fx.run: the other threads' work dirs are legitimately live meanwhile.
                let out = run(kind, &job).unwrap();
                assert_eq!(text(&out, "n"), i.to_string());
            });
        }
    });
    fx.assert_clean(&kinds[0]);
}

/// Environment variable that turns [`interrupt_child`] from a no-op into the child half of
/// [`interrupt_removes_work_dirs_and_kills_runs`].
const INTERRUPT_ROOT: &str = "VARS_TEST_INTERRUPT_ROOT";

/// Child half: installs the handler and starts a long run (`sleep $VARS_TEST_SLEEP`). Ignored
/// by default and a no-op without the env var, so it runs only when a parent test spawns it.
#[test]
#[ignore = "spawned by interrupt_removes_work_dirs_and_kills_runs"]
fn interrupt_child() {
    let Some(root) = std::env::var_os(INTERRUPT_ROOT) else {
        return;
    };
    let kind = match std::env::var("VARS_TEST_INTERRUPT_KIND").as_deref() {
        Ok("bwrap") => detect(SandboxSetting::Auto).unwrap(),
        _ => SandboxKind::Unsandboxed,
    };
    install_interrupt_cleanup().unwrap();
    let sleep = std::env::var("VARS_TEST_SLEEP").unwrap();
    let mut job = Job::new("machines/m/g", "g", format!("sleep {sleep}"));
    job.work_root = Some(PathBuf::from(root));
    let _ = run(&kind, &job);
    unreachable!("the parent interrupts this run");
}

/// Start [`interrupt_child`] running `sleep <sleep>` in `kind` with work dirs in `fx`, and
/// wait until the script runs.
fn start_child(kind: &SandboxKind, fx: &Fixture, sleep: &str) -> std::process::Child {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "sandbox::tests::interrupt_child",
            "--nocapture",
        ])
        .env(INTERRUPT_ROOT, fx.path())
        .env(
            "VARS_TEST_INTERRUPT_KIND",
            if kind.is_sandboxed() { "bwrap" } else { "none" },
        )
        .env("VARS_TEST_SLEEP", sleep)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the script runs", || !sleeping(sleep).is_empty());
    let work_dirs = fs::read_dir(fx.path()).unwrap().count();
    assert_eq!(work_dirs, 1, "{kind}: the run's work dir exists");
    child
}

fn wait_for_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let mut status = None;
    wait_until("the child exits", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status.unwrap()
}

/// Processes whose command line is exactly `sleep <arg>` and that are not zombies.
fn sleeping(arg: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z'));
        let argv: Vec<&[u8]> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .collect();
        if !zombie && argv.len() == 2 && argv[0].ends_with(b"sleep") && argv[1] == arg.as_bytes() {
            found.push(pid);
        }
    }
    found
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn interrupt_removes_work_dirs_and_kills_runs() {
    for kind in kinds() {
        let fx = Fixture::new();
        // A distinctive argument per kind, so the test can find the script's process.
        let sleep = if kind.is_sandboxed() {
            "987.25"
        } else {
            "987.75"
        };
        let mut child = start_child(&kind, &fx, sleep);
        let pid = rustix::process::Pid::from_child(&child);
        rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
        assert_eq!(wait_for_exit(&mut child).code(), Some(130), "{kind}");
        fx.assert_clean(&kind);
        wait_until("the script is gone", || sleeping(sleep).is_empty());
    }
}

/// SIGKILL leaves no chance to clean up: bubblewrap's sandbox still dies with vars
/// (`--die-with-parent`), and the next run in the same root removes the orphaned work dir.
#[test]
fn killed_runs_die_and_their_work_dir_is_swept_later() {
    let Some(kind) = bwrap() else { return };
    let fx = Fixture::new();
    let sleep = "987.5";
    let mut child = start_child(&kind, &fx, sleep);
    child.kill().unwrap();
    wait_for_exit(&mut child);
    wait_until("the script is gone", || sleeping(sleep).is_empty());
    assert_eq!(
        fs::read_dir(fx.path()).unwrap().count(),
        1,
        "the orphan is still there"
    );
    fx.run(&kind, &fx.job("true", &[])).unwrap();
}

/// Turns [`keyring_child`] from a no-op into the half of
/// [`the_invoking_users_keyrings_are_unreachable`] that runs inside `keyctl session -`.
const KEYRING_ROOT: &str = "VARS_TEST_KEYRING_ROOT";

fn keyctl(args: &[&str]) -> String {
    let out = Command::new("keyctl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "keyctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Child half: inside a fresh session keyring, put a key each into the session, user and
/// persistent keyrings, then let a generator try every way to read them (keyctl show, pipe,
/// print, search, /proc/keys, raw system calls from perl) and write whatever it got into an
/// output. Ignored by default and a no-op without the env var.
#[test]
#[ignore = "spawned by the_invoking_users_keyrings_are_unreachable"]
fn keyring_child() {
    let Some(root) = std::env::var_os(KEYRING_ROOT) else {
        return;
    };
    let kind = detect(SandboxSetting::Auto).unwrap();
    let tag = format!("{}-{}", std::process::id(), rand_tag());
    let secrets = [
        format!("SESSION-SECRET-{tag}"),
        format!("USER-SECRET-{tag}"),
        format!("PERSISTENT-SECRET-{tag}"),
    ];
    // As a login session has it (pam_keyinit): the user keyring linked into the session, so
    // its keys are possessed and readable through it.
    keyctl(&["link", "@u", "@s"]);
    let persistent = keyctl(&["get_persistent", "@s"]);
    let rings = ["@s", "@u", persistent.as_str()];
    let names: Vec<String> = ["s", "u", "p"]
        .iter()
        .map(|r| format!("vars-test-{r}-{tag}"))
        .collect();
    let ids: Vec<String> = (0..3)
        .map(|i| keyctl(&["add", "user", &names[i], &secrets[i], rings[i]]))
        .collect();
    let cleanup = || {
        for (id, ring) in ids.iter().zip(rings) {
            let _ = Command::new("keyctl").args(["unlink", id, ring]).output();
        }
    };
    // The test process itself reads them all.
    for (id, secret) in ids.iter().zip(&secrets) {
        assert_eq!(&keyctl(&["pipe", id]), secret);
    }

    let script = r#"
        {
            for r in @s @u @us; do keyctl show "$r"; done
            for id in $ids; do keyctl pipe "$id"; echo; keyctl print "$id"; done
            for n in $names; do keyctl search @s user "$n"; keyctl search @u user "$n"; done
            keyctl get_persistent @s
            keyctl add user vars-planted x @s
            cat /proc/keys /proc/key-users
            perl -e '
                require "syscall.ph";
                for my $id (@ARGV) {
                    my $buf = "\0" x 256;
                    my $n = syscall(&SYS_keyctl, 11, $id + 0, $buf, 256);
                    print "raw read $id: $n $!\n", substr($buf, 0, $n > 0 ? $n : 0), "\n";
                }
                my ($type, $desc, $data) = ("user", "vars-raw", "x");
                my $r = syscall(&SYS_add_key, $type, $desc, $data, 1, -3);
                print "raw add_key: $r $!\n";
                $r = syscall(&SYS_request_key, $type, $desc, 0, -3);
                print "raw request_key: $r $!\n";
            ' $ids
        } > "$out/report" 2>&1 || true
    "#;
    let mut job = Job::new("machines/m/keyring", "keyring", script);
    job.outputs = vec!["report".into()];
    job.runtime_inputs = vec!["keyctl".into(), "perl".into()];
    job.env = vec![
        ("ids".into(), ids.join(" ")),
        ("names".into(), names.join(" ")),
    ];
    job.work_root = Some(PathBuf::from(&root));
    let sandboxed = run(&kind, &job).map(|out| text(&out, "report"));
    let unsandboxed = run(&SandboxKind::Unsandboxed, &job).map(|out| text(&out, "report"));
    cleanup();
    let report = sandboxed.unwrap();
    for secret in &secrets {
        assert!(
            !report.contains(secret.as_str()),
            "{secret} leaked:\n{report}"
        );
    }
    for name in &names {
        assert!(
            !report.contains(name.as_str()),
            "{name} is visible:\n{report}"
        );
    }
    assert!(report.contains("Operation not permitted"), "{report}");
    assert_eq!(
        report.matches("-1 Operation not permitted").count(),
        5,
        "three raw reads, add_key and request_key fail: {report}"
    );
    // The control: without the sandbox the same script does read the session's key, so the
    // test would see a leak.
    assert!(unsandboxed.unwrap().contains(secrets[0].as_str()));
    fs::write(Path::new(&root).join("keyring-child-ok"), b"").unwrap();
}

/// A short random tag, so concurrent runs never share key names.
fn rand_tag() -> String {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).unwrap();
    hex::encode(b)
}

/// Issue 8, item 1: a generator sees no key of the invoking user's (session, user or
/// persistent keyring), through keyctl or raw system calls.
#[test]
fn the_invoking_users_keyrings_are_unreachable() {
    if bwrap().is_none()
        || !require_tool("keyctl", "install keyutils: apt-get install keyutils")
        || !require_tool("perl", "install perl: apt-get install perl-base")
    {
        return;
    }
    let fx = Fixture::new();
    let out = Command::new("keyctl")
        .args(["session", "-"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "sandbox::tests::keyring_child",
            "--nocapture",
        ])
        .env(KEYRING_ROOT, fx.path())
        .output()
        .unwrap();
    let ok = fx.path().join("keyring-child-ok");
    assert!(
        out.status.success() && ok.exists(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    fs::remove_file(ok).unwrap();
    fx.assert_clean(&SandboxKind::Unsandboxed);
}
