//! End-to-end tests of [`run`] with the real bubblewrap (and the unsandboxed mode, which must
//! behave the same apart from isolation). They prove DESIGN §6 and §9.2: outputs come back
//! byte-exact; `$in`, `$prompts`, the job env and runtime inputs are there and nothing else;
//! no network, no home, no writes outside `$out`; every verification failure, timeout and
//! script failure has its own error; stderr is reported, stdout never; and the work dir is
//! gone afterwards in every case, including Ctrl-C.
//!
//! `isolation` holds the tests of what a hostile script must not reach (issue 8).
//!
//! Every test gets its own tmpfs root through `Job::work_root` (env vars are process-global
//! and tests run in parallel) and asserts at the end that the root is empty again.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use interrupt::{sleeping, wait_until};

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
    Some(detect(SandboxChoice::Auto).expect("bwrap is on PATH and works"))
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
        detect(SandboxChoice::None).unwrap(),
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
        // Review 2, finding 5: `started + timeout` overflowed (a panic) for a library caller.
        ("huge timeout", |j| j.timeout = Duration::MAX),
        ("day and a second", |j| {
            j.timeout = MAX_TIMEOUT + Duration::from_secs(1)
        }),
        // Review 2, finding 3: nothing secret reaches a network run.
        ("network prompt", |j| {
            j.network = true;
            j.prompts = vec![("pw".into(), secret(b"hunter2"))];
        }),
        ("network dependency", |j| {
            j.network = true;
            let bytes = secret(b"key");
            j.inputs = vec![InputFile {
                dependency: "ssh-ca".into(),
                file: "ca".into(),
                bytes,
            }];
        }),
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

    // The public files of `machines/*/GEN` may reach a network run.
    let mut job = fx.job(
        r#"cat "$in/wireguard-key/m1/public-key" > "$out/k""#,
        &["k"],
    );
    job.network = true;
    job.inputs = vec![InputFile {
        dependency: "wireguard-key/m1".into(),
        file: "public-key".into(),
        bytes: secret(b"pub"),
    }];
    assert!(validate(&job).is_ok());
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

mod interrupt;
mod isolation;
