//! `vars install` for real, as root, in a private mount namespace: a sleeping `unshare
//! --mount --propagation private` process holds the namespace, and every command (the `vars`
//! binary, and the `stat`/`cat` that look at the result) enters it with `nsenter`, so the
//! ramfs vars mounts stays invisible outside and vanishes with the test. The store is made by
//! the real `vars generate` (bubblewrap). Without root these tests fail under `CI` with a
//! hint and skip loudly elsewhere; they never skip silently.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::common::{self, TestEnv};

const VARS: &str = env!("CARGO_BIN_EXE_vars");

/// A private mount namespace, held by a sleeping process.
struct Ns {
    child: Child,
}

impl Ns {
    fn new() -> Ns {
        let mut child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare runs");
        let pid = child.id();
        let ours = std::fs::read_link("/proc/self/ns/mnt").unwrap();
        for _ in 0..500 {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let ns = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
            if comm.trim() == "sleep" && ns.is_some_and(|n| n != ours) {
                return Ns { child };
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("unshare did not enter a new mount namespace");
    }

    /// `program` run inside the namespace.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--target={}", self.child.id()))
            .args(["--mount", "--"])
            .arg(program)
            .stdin(Stdio::null());
        c
    }

    /// A shell script's stdout, run inside the namespace; it must succeed.
    fn sh(&self, script: &str) -> String {
        let out = self
            .command("/bin/sh")
            .args(["-c", script])
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}: {}", common::stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A generated two-machine store, and where host1 installs to.
struct Host {
    env: TestEnv,
    /// The plaintext of host1's `g/key`, new each run.
    sentinel: String,
    admin: PathBuf,
    /// host1's ssh host key.
    host_key: PathBuf,
    /// `--target`; its mount point is `<target>.d`.
    target: PathBuf,
    /// Every stdout and stderr of `vars`, for the leak check.
    outputs: std::cell::RefCell<Vec<u8>>,
}

fn key_text(rel: &str) -> String {
    std::fs::read_to_string(common::repo().join("testdata/keys/clan8").join(rel))
        .unwrap()
        .trim()
        .to_owned()
}

fn host() -> Option<Host> {
    if !common::require_root("vars install")
        || !common::require_tool("unshare", "apt-get install util-linux")
        || !common::require_tool("nsenter", "apt-get install util-linux")
        || !common::require_tool("bwrap", "apt-get install bubblewrap")
    {
        return None;
    }
    let mut env = TestEnv::empty();
    env.fleet = "clan8".into();
    let yaml = format!(
        r#"version: 1
admins: [admin]
users:
  admin: {{ recipients: ["{admin}"] }}
  alice: {{ recipients: ["{alice}"], generators: [upw] }}
machines:
  host1: {{ recipients: ["{host1}"], generators: [g, r] }}
  host2: {{ recipients: ["{host2}"], users: [alice], generators: [r] }}
generators:
  g:
    prompts: {{ pw: {{ type: hidden }} }}
    files:
      key: {{}}
      other: {{ owner: nobody, mode: "0440" }}
      id: {{ secret: false }}
    script: |
      cat "$prompts/pw" > "$out/key"
      echo other > "$out/other"
      echo id > "$out/id"
  r:
    files: {{ rand: {{}} }}
    script: |
      od -An -tx1 -N16 /dev/urandom | tr -d ' \n' > "$out/rand"
  upw:
    files:
      pw: {{ needed-for: users }}
      tok: {{}}
    script: |
      echo hash > "$out/pw"
      echo tok > "$out/tok"
"#,
        admin = key_text("users/crs58.pub"),
        alice = key_text("users/cameron.pub"),
        host1 = key_text("hosts/cinnabar.pub"),
        host2 = key_text("hosts/electrum.pub"),
    );
    std::fs::write(env.root().join("vars.yaml"), yaml).unwrap();
    let sentinel = {
        let (_, r) = vars::crypto::new_identity();
        format!("SENTINEL-{}", &r[5..29])
    };
    let admin = env.key("users/crs58.age");
    let host_key = env.key("hosts/cinnabar");
    let target = env.dir.path().join("run/vars");
    let host = Host {
        env,
        sentinel,
        admin,
        host_key,
        target,
        outputs: Default::default(),
    };
    host.vars_ok(&["generate", "--prompt", &format!("g.pw={}", host.sentinel)]);
    Some(host)
}

impl Host {
    fn s(p: &Path) -> String {
        p.display().to_string()
    }

    fn record(&self, out: &Output) {
        let mut all = self.outputs.borrow_mut();
        all.extend_from_slice(&out.stdout);
        all.extend_from_slice(&out.stderr);
    }

    /// `vars ARGS` outside the namespace (generate, rekey), as the admin.
    fn vars_ok(&self, args: &[&str]) {
        let mut all: Vec<&str> = args.to_vec();
        let admin = Self::s(&self.admin);
        all.extend(["--identity", &admin]);
        let out = self.env.vars(&all);
        self.record(&out);
        assert!(
            out.status.success(),
            "vars {args:?}: {}",
            common::stderr(&out)
        );
    }

    fn store(&self) -> PathBuf {
        self.env.store()
    }

    fn mount_point(&self) -> PathBuf {
        PathBuf::from(format!("{}.d", self.target.display()))
    }

    /// `vars install` inside `ns` with host1's store manifest (or `manifest`) and `extra`.
    fn install(&self, ns: &Ns, manifest: Option<&Path>, extra: &[&str]) -> Output {
        let store_manifest = self.store().join("machines/host1/manifest.json");
        let mut c = ns.command(VARS);
        c.arg("install")
            .arg("--manifest")
            .arg(manifest.unwrap_or(&store_manifest))
            .args([
                "--identity",
                "/nonexistent/ssh_host_ed25519_key",
                "--identity",
            ])
            .arg(&self.host_key)
            .arg("--target")
            .arg(&self.target)
            .args(extra);
        if manifest.is_none() {
            c.arg("--store").arg(self.store());
        }
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("VARS_ACTIVATION_DIR", self.env.dir.path().join("nixos"))
            .env("VARS_TEST_LEAK", "must-not-reach-systemctl");
        let out = c.output().unwrap();
        self.record(&out);
        out
    }

    fn install_ok(&self, ns: &Ns, manifest: Option<&Path>, extra: &[&str]) -> String {
        let out = self.install(ns, manifest, extra);
        assert!(
            out.status.success(),
            "vars install: {}",
            common::stderr(&out)
        );
        common::stderr(&out)
    }

    /// What the running generation is (`readlink` of the target, inside `ns`).
    fn running(&self, ns: &Ns) -> String {
        ns.sh(&format!("readlink {}", self.target.display()))
            .trim()
            .to_owned()
    }

    fn generations(&self, ns: &Ns) -> String {
        ns.sh(&format!("ls {}", self.mount_point().display()))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// An install manifest for host1's files (Nix-module style: absolute sources), with the
    /// template `app.env` = `PW=<g/key>\nR=<r/rand>\n`.
    fn install_manifest(&self) -> PathBuf {
        let st = self.store();
        let file = |generator: &str,
                    name: &str,
                    owner: &str,
                    mode: &str,
                    restart: &[&str],
                    reload: &[&str]| {
            serde_json::json!({
                "generator": generator, "file": name, "user": null,
                "source": st.join(format!("machines/host1/{generator}/{name}.age")),
                "secret": true, "owner": owner, "group": null, "mode": mode,
                "needed-for": "services", "restart-units": restart,
                "reload-units": reload, "link": null,
            })
        };
        let ph = vars::install::manifest::placeholder_of;
        let m = serde_json::json!({
            "format": 1, "kind": "install",
            "principal": { "kind": "machine", "name": "host1" },
            "files": {
                "g/key": file("g", "key", "root", "0400", &["key.service"], &[]),
                "g/other": file("g", "other", "nobody", "0440", &[], &[]),
                "r/rand": file("r", "rand", "root", "0400", &["rand.service"], &["rand-reload.service"]),
            },
            "templates": { "app.env": {
                "content": format!("PW={}\nR={}\n", ph("g/key"), ph("r/rand")),
                "owner": "nobody", "group": nobody_group(), "mode": "0440",
                "restart-units": ["app.service"], "reload-units": [], "link": null,
            } },
            "placeholders": { ph("g/key"): "g/key", ph("r/rand"): "r/rand" },
        });
        let p = self.env.dir.path().join("vars-install.json");
        std::fs::write(&p, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
        p
    }

    fn list(&self, name: &str) -> String {
        std::fs::read_to_string(self.env.dir.path().join("nixos").join(name)).unwrap_or_default()
    }

    /// host1's current `r/rand`, through `vars get`.
    fn rand(&self) -> String {
        let admin = Self::s(&self.admin);
        let out = self
            .env
            .ok(&["get", "machines/host1/r/rand", "--identity", &admin]);
        String::from_utf8(out).unwrap()
    }
}

/// The group vars gives the mount point and generation directories.
fn keys_group() -> &'static str {
    let has = |g: &str| {
        Command::new("getent")
            .args(["group", g])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has("keys") {
        "keys"
    } else if has("nogroup") {
        "nogroup"
    } else {
        "root"
    }
}

/// `nobody`'s primary group.
fn nobody_group() -> String {
    let out = Command::new("id").args(["-gn", "nobody"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn install_as_root_on_a_private_ramfs() {
    let Some(h) = host() else { return };
    let since = std::time::SystemTime::now() - std::time::Duration::from_secs(5);
    let ns = Ns::new();
    let (t, m) = (
        h.target.display().to_string(),
        h.mount_point().display().to_string(),
    );
    let log = h.install_ok(&ns, None, &["--restart-via", "none"]);
    assert!(log.contains(&format!("mounted ramfs at {m}")), "{log}");
    assert!(
        log.contains("installed generation 1 of machine host1: 4 files"),
        "{log}"
    );

    // A ramfs of its own, nodev/nosuid/noexec, 0751 root:keys (or nogroup).
    assert_eq!(ns.sh(&format!("stat -f -c %T {m}")).trim(), "ramfs");
    let mountinfo = ns.sh(&format!("grep ' {m} ' /proc/self/mountinfo"));
    for opt in ["nosuid", "nodev", "noexec"] {
        assert!(mountinfo.contains(opt), "{mountinfo}");
    }
    let group = keys_group();
    let dirs = ns.sh(&format!("stat -c '%a %U %G' {m} {m}/1 {m}/1/g {m}/1/r"));
    assert_eq!(dirs, format!("751 root {group}\n").repeat(4));
    assert_eq!(h.running(&ns), format!("{m}/1"));

    // Owners, groups and modes from the manifest; `nobody` resolved through NSS (its group
    // is root: a machine file's declared owner does not change the default group).
    let files = ns.sh(&format!(
        "cd {t} && stat -c '%n %a %U %G' g/key g/other g/id r/rand"
    ));
    assert_eq!(
        files,
        "g/key 400 root root\ng/other 440 nobody root\ng/id 400 root root\nr/rand 400 root root\n"
    );
    assert_eq!(ns.sh(&format!("cat {t}/g/key")), h.sentinel);
    assert_eq!(ns.sh(&format!("cat {t}/g/id")), "id\n");
    assert_eq!(ns.sh(&format!("cat {t}/r/rand")), h.rand());

    // Outside the namespace the mount point is an empty directory on disk.
    assert_eq!(std::fs::read_dir(h.mount_point()).unwrap().count(), 0);

    // Generations count up; the default --keep 1 prunes the previous one, --keep 3 keeps two.
    let log = h.install_ok(&ns, None, &["--restart-via", "none"]);
    assert!(!log.contains("mounted"), "mounted only once: {log}");
    assert!(log.contains("removed old generations: 1"), "{log}");
    assert_eq!(h.generations(&ns), "2");
    h.install_ok(&ns, None, &["--restart-via", "none", "--keep", "3"]);
    h.install_ok(&ns, None, &["--restart-via", "none", "--keep", "3"]);
    assert_eq!(h.generations(&ns), "2 3 4");
    assert_eq!(h.running(&ns), format!("{m}/4"));
    assert_eq!(ns.sh(&format!("cat {t}/g/key")), h.sentinel);
    assert_eq!(
        ns.sh(&format!("mount | grep -c ' {m} '")).trim(),
        "1",
        "never stacked"
    );

    // --tmpfs on a fresh mount point mounts tmpfs instead.
    let tm = h.env.dir.path().join("run/tmpfs-vars.d");
    let mut c = ns.command(VARS);
    c.arg("install")
        .args([
            "--manifest",
            &Host::s(&h.store().join("machines/host1/manifest.json")),
        ])
        .args([
            "--store",
            &Host::s(&h.store()),
            "--identity",
            &Host::s(&h.host_key),
        ])
        .args([
            "--target",
            &Host::s(&h.env.dir.path().join("run/tmpfs-vars")),
        ])
        .args([
            "--mount-point",
            &Host::s(&tm),
            "--tmpfs",
            "--restart-via",
            "none",
        ]);
    let out = c.output().unwrap();
    h.record(&out);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(
        ns.sh(&format!("stat -f -c %T {}", tm.display())).trim(),
        "tmpfs"
    );

    // No plaintext anywhere but the mount: not in output, the store, HOME, /tmp, /dev/shm.
    drop(ns);
    assert_no_leak(&h, since);
}

/// The sentinel appears in no output and in no file written since `since` below the test's
/// directory, /tmp or /dev/shm (the mount, inside the namespace, is gone by now).
fn assert_no_leak(h: &Host, since: std::time::SystemTime) {
    let needle = h.sentinel.as_bytes();
    let contains = |b: &[u8]| b.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(&h.outputs.borrow()), "the sentinel was printed");
    let mut hits = Vec::new();
    for dir in [h.env.dir.path(), Path::new("/tmp"), Path::new("/dev/shm")] {
        for p in common::walk(dir) {
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if !meta.is_file() || meta.len() > 32 << 20 || meta.modified().is_ok_and(|m| m < since)
            {
                continue;
            }
            if std::fs::read(&p).is_ok_and(|b| contains(&b)) {
                hits.push(p);
            }
        }
    }
    assert!(
        hits.is_empty(),
        "plaintext found outside the mount: {hits:?}"
    );
}

#[test]
fn restarts_follow_plaintext_not_ciphertext() {
    let Some(h) = host() else { return };
    let since = std::time::SystemTime::now() - std::time::Duration::from_secs(5);
    let ns = Ns::new();
    let t = h.target.display().to_string();
    std::fs::create_dir(h.env.dir.path().join("nixos")).unwrap();
    let manifest = h.install_manifest();
    let list = ["--restart-via", "activation-list"];

    // Boot: nothing was running, nothing is listed.
    let log = h.install_ok(&ns, Some(&manifest), &list);
    assert!(log.contains("no generation is running"), "{log}");
    assert_eq!(h.list("activation-restart-list"), "");
    let rendered = ns.sh(&format!("cat {t}/_templates/app.env"));
    assert_eq!(rendered, format!("PW={}\nR={}\n", h.sentinel, h.rand()));
    assert_eq!(
        ns.sh(&format!("stat -c '%a %U %G' {t}/_templates/app.env")),
        format!("440 nobody {}\n", nobody_group())
    );

    // A vault rotation re-encrypts every file: new ciphertext, same plaintext, no restarts.
    let key_age = h.store().join("machines/host1/g/key.age");
    let before = std::fs::read(&key_age).unwrap();
    h.vars_ok(&["rekey", "--rotate-vault", "--yes"]);
    assert_ne!(std::fs::read(&key_age).unwrap(), before, "rekeyed");
    let log = h.install_ok(&ns, Some(&manifest), &list);
    assert!(!log.contains("secret:"), "nothing changed: {log}");
    assert_eq!(h.list("activation-restart-list"), "");
    assert_eq!(h.list("activation-reload-list"), "");

    // r is regenerated: its units and the template's (which renders it), not key.service.
    h.vars_ok(&["generate", "--regenerate", "r"]);
    let log = h.install_ok(&ns, Some(&manifest), &list);
    assert!(log.contains("modifying secret: r/rand"), "{log}");
    assert!(
        log.contains("modifying secret: _templates/app.env"),
        "{log}"
    );
    assert!(!log.contains("g/key"), "{log}");
    assert_eq!(
        h.list("activation-restart-list"),
        "app.service\nrand.service\n"
    );
    assert_eq!(h.list("activation-reload-list"), "rand-reload.service\n");

    // The same through systemctl: a fake one on PATH records its arguments and environment.
    let bin = h.env.dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let record = h.env.dir.path().join("systemctl.log");
    let fake = format!(
        "#!/bin/sh\necho \"$* leak=${{VARS_TEST_LEAK-unset}}\" >> {}\n",
        record.display()
    );
    std::fs::write(bin.join("systemctl"), fake).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(
        bin.join("systemctl"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    h.vars_ok(&["generate", "--regenerate", "r"]);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = ns.command(VARS);
    c.args(["install", "--manifest", &Host::s(&manifest)])
        .args(["--identity", &Host::s(&h.host_key), "--target", &t])
        .args(["--restart-via", "systemctl"])
        .env_clear()
        .env("PATH", path)
        .env("VARS_TEST_LEAK", "must-not-reach-systemctl");
    let out = c.output().unwrap();
    h.record(&out);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&record).unwrap(),
        "--no-block try-restart app.service rand.service leak=unset\n--no-block try-reload-or-restart rand-reload.service leak=unset\n"
    );
    assert_eq!(
        h.list("activation-restart-list"),
        "app.service\nrand.service\n",
        "unchanged"
    );
    // Nothing of a secret reached systemctl's command line, its log, or any file.
    drop(ns);
    assert_no_leak(&h, since);
}

#[test]
fn failures_name_every_cause_and_keep_the_running_generation() {
    let Some(h) = host() else { return };
    let since = std::time::SystemTime::now() - std::time::Duration::from_secs(5);
    let ns = Ns::new();
    let (t, m) = (
        h.target.display().to_string(),
        h.mount_point().display().to_string(),
    );
    h.install_ok(&ns, None, &["--restart-via", "none"]);
    let snapshot = || {
        ns.sh(&format!(
            "cd {m} && find . -exec stat -c '%n %a %U %G %s' {{}} + | sort"
        ))
    };
    let before = snapshot();

    let st = h.store();
    // A damaged .age file.
    let rand = st.join("machines/host1/r/rand.age");
    let mut bytes = std::fs::read(&rand).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x55;
    std::fs::write(&rand, bytes).unwrap();
    // A planted symlink: the file moved out of the store and linked back.
    let other = st.join("machines/host1/g/other.age");
    let outside = h.env.dir.path().join("other.age");
    std::fs::rename(&other, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &other).unwrap();
    // An unknown owner in the (untrusted) store manifest.
    let manifest = st.join("machines/host1/manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let text = text.replacen("\"owner\": \"root\"", "\"owner\": \"no-such-user-vars\"", 1);
    std::fs::write(&manifest, text).unwrap();

    let out = h.install(&ns, None, &["--restart-via", "none"]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for expected in [
        "nothing was installed (3 problems); the running generation is untouched",
        "file g/id: owner \"no-such-user-vars\" is not a user on this system",
        "file g/other (",
        "is a symbolic link, or a directory on its way is (vars never follows links in the store)",
        "file r/rand (",
        "identities tried: /nonexistent/ssh_host_ed25519_key (missing), ",
    ] {
        assert!(err.contains(expected), "{expected:?} not in:\n{err}");
    }
    assert_eq!(snapshot(), before, "the running generation is untouched");
    assert_eq!(h.running(&ns), format!("{m}/1"));
    assert_eq!(ns.sh(&format!("cat {t}/g/key")), h.sentinel);

    // A wrong identity (host1's key for host2's files): every secret is named, with every
    // identity tried.
    let mut c = ns.command(VARS);
    c.args([
        "install",
        "--manifest",
        &Host::s(&st.join("machines/host2/manifest.json")),
    ])
    .args([
        "--store",
        &Host::s(&st),
        "--identity",
        &Host::s(&h.host_key),
    ])
    .args(["--target", &t, "--ignore-passwd", "--restart-via", "none"]);
    let out = c.output().unwrap();
    h.record(&out);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("file r/rand ("), "{err}");
    assert!(err.contains("file _users/alice/upw/tok ("), "{err}");
    assert!(
        err.contains(&format!("identities tried: {}", h.host_key.display())),
        "{err}"
    );
    assert_eq!(snapshot(), before);
    drop(ns);
    assert_no_leak(&h, since);
}

#[test]
fn dry_runs_change_nothing() {
    let Some(h) = host() else { return };
    let ns = Ns::new();
    let m = h.mount_point().display().to_string();
    std::fs::create_dir(h.env.dir.path().join("nixos")).unwrap();
    let manifest = h.install_manifest();

    // Before the first install: no mount, no directory, nothing.
    let log = h.install_ok(&ns, Some(&manifest), &["--dry-run"]);
    assert!(log.contains("dry run: would install 4 files"), "{log}");
    assert!(!h.mount_point().exists() && !h.target.exists());
    assert_eq!(
        ns.sh(&format!("grep -c ' {m} ' /proc/self/mountinfo || true"))
            .trim(),
        "0"
    );

    h.install_ok(&ns, Some(&manifest), &["--restart-via", "activation-list"]);
    h.vars_ok(&["generate", "--regenerate", "r"]);
    let snapshot = || {
        ns.sh(&format!(
            "cd {m} && find . -exec stat -c '%n %a %U %G %s %Y' {{}} + | sort; readlink {}",
            h.target.display()
        ))
    };
    let before = snapshot();
    for how in [
        ["--dry-run", "--restart-via=activation-list"],
        ["--restart-via", "activation-list"],
    ] {
        let mut c = ns.command(VARS);
        c.args(["install", "--manifest", &Host::s(&manifest)])
            .args([
                "--identity",
                &Host::s(&h.host_key),
                "--target",
                &Host::s(&h.target),
            ])
            .env_clear()
            .env("VARS_ACTIVATION_DIR", h.env.dir.path().join("nixos"));
        if how[0] == "--dry-run" {
            c.args(how);
        } else {
            // NIXOS_ACTION=dry-activate is a dry run too.
            c.args(how).env("NIXOS_ACTION", "dry-activate");
        }
        let out = c.output().unwrap();
        h.record(&out);
        let log = common::stderr(&out);
        assert!(out.status.success(), "{log}");
        assert!(log.contains("would modify secret: r/rand"), "{log}");
        assert_eq!(snapshot(), before, "{how:?} changed something");
    }
    assert_eq!(h.list("activation-restart-list"), "");
    assert_eq!(
        h.list("dry-activation-restart-list"),
        "app.service\nrand.service\n".repeat(2)
    );
}

#[test]
fn the_users_phase_installs_only_files_needed_for_users() {
    let Some(h) = host() else { return };
    let ns = Ns::new();
    let users = h.env.dir.path().join("run/vars-for-users");
    let st = h.store();
    let run = |phase: &str, target: &Path| {
        let mut c = ns.command(VARS);
        c.args([
            "install",
            "--manifest",
            &Host::s(&st.join("machines/host2/manifest.json")),
        ])
        .args(["--store", &Host::s(&st)])
        .args(["--identity", &Host::s(&h.env.key("hosts/electrum"))])
        .args(["--target", &Host::s(target), "--phase", phase])
        .args(["--ignore-passwd", "--restart-via", "none"]);
        let out = c.output().unwrap();
        h.record(&out);
        assert!(out.status.success(), "{}", common::stderr(&out));
    };
    run("users", &users);
    let files = ns.sh(&format!("cd {} && find . -type f | sort", users.display()));
    assert_eq!(files, "./_users/alice/upw/pw\n");
    run("services", &h.target);
    let files = ns.sh(&format!(
        "cd {} && find . -type f | sort",
        h.target.display()
    ));
    assert_eq!(files, "./_users/alice/upw/tok\n./r/rand\n");
    // --ignore-passwd: alice needs not exist, everything is 0:0.
    let owner = ns.sh(&format!(
        "stat -c '%U %G' {}/_users/alice/upw/tok",
        h.target.display()
    ));
    assert_eq!(owner, "root root\n");
}

/// A user without root (home-manager, or a plain user): `--user-mode` into a directory on a
/// tmpfs, no mount, no chown. Runs without root too.
#[test]
fn user_mode_installs_into_a_runtime_dir() {
    if !common::require_tool("bwrap", "apt-get install bubblewrap") {
        return;
    }
    let env = crate::common::TestEnv::mini("echo user-secret > \"$out/key\"", "{ key: {} }");
    let admin = env.key("users/crs58.age");
    env.ok(&["generate", "--identity", &admin.display().to_string()]);
    let run = env.runtime_dir();
    let target = run.join("vars");
    let args = [
        "install",
        "--manifest",
        "vars/machines/host1/manifest.json",
        "--store",
        "vars",
        "--identity",
        &env.key("hosts/cinnabar").display().to_string(),
        "--target",
        &target.display().to_string(),
        "--user-mode",
        "--restart-via",
        "none",
    ];
    let out = env.vars(&args);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(
        std::fs::read(target.join("g/key")).unwrap(),
        b"user-secret\n"
    );
    assert!(
        std::fs::read_link(&target)
            .unwrap()
            .starts_with(run.join("vars.d"))
    );

    // A mount point on disk is refused before anything is written.
    let disk = env.dir.path().join("on-disk/vars");
    let mut args = args.to_vec();
    let disk_s = disk.display().to_string();
    args[8] = &disk_s;
    let out = env.vars(&args);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::stderr(&out).contains("is not on a tmpfs or ramfs"),
        "{}",
        common::stderr(&out)
    );
    assert!(!env.dir.path().join("on-disk").exists());
}
