//! The install flow as a function, in user mode on `/dev/shm` (no root, no mount): the
//! generations, the switch, pruning, the plaintext comparison that decides restarts, dry runs,
//! and failures that must leave the running generation untouched. The same as root on a real
//! ramfs (owners, `nobody`, the mount) is in `tests/it/install.rs`.

use std::collections::BTreeMap;
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};

use super::*;
use crate::crypto::Recipient;

/// One file of a test manifest: name, source, restart units, reload units, link.
type TestFile<'a> = (
    &'a str,
    &'a Path,
    &'a [&'a str],
    &'a [&'a str],
    Option<&'a Path>,
);

struct Fx {
    dir: tempfile::TempDir,
    identity: PathBuf,
    recipient: Recipient,
    other: Recipient,
}

impl Fx {
    fn new() -> Fx {
        let dir = tempfile::Builder::new()
            .prefix("vars-install-")
            .tempdir_in("/dev/shm")
            .unwrap();
        let (text, r) = crate::crypto::new_identity();
        let identity = dir.path().join("host-key.txt");
        std::fs::write(&identity, text.expose()).unwrap();
        std::fs::set_permissions(&identity, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (_, other) = crate::crypto::new_identity();
        for d in ["src", "nixos"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        Fx {
            dir,
            identity,
            recipient: Recipient::parse(&r).unwrap(),
            other: Recipient::parse(&other).unwrap(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn target(&self) -> PathBuf {
        self.path("run/vars")
    }

    /// Encrypt `plain` to the host (or to someone else) as `src/<name>.age`, written for
    /// machine m's file `g/<name without trailing digits>` (`a2` is a second `a`).
    fn seal(&self, name: &str, plain: &[u8], to_host: bool) -> PathBuf {
        let to = if to_host {
            &self.recipient
        } else {
            &self.other
        };
        let file = name.trim_end_matches(|c: char| c.is_ascii_digit());
        let c = crate::crypto::encrypt_at(
            &SecretBytes::new(plain.to_vec()),
            &[to],
            false,
            Some(&format!("machines/m/g/{file}")),
        )
        .unwrap();
        let p = self.path(&format!("src/{name}.age"));
        std::fs::write(&p, c).unwrap();
        p
    }

    /// An install manifest for `files` (generator g; name → (source, restart, reload, link))
    /// and the template `t` = `A=<g/a>\n` when `template`.
    fn manifest(&self, files: &[TestFile<'_>], template: bool) -> PathBuf {
        let mut f = serde_json::Map::new();
        for (name, source, restart, reload, link) in files {
            f.insert(
                format!("g/{name}"),
                serde_json::json!({
                    "generator": "g", "file": name, "user": null, "source": source,
                    "secret": true, "owner": "root", "group": null,
                    "mode": if *name == "b" { "0440" } else { "0400" },
                    "needed-for": "services", "restart-units": restart,
                    "reload-units": reload, "link": link,
                }),
            );
        }
        let (templates, placeholders) = if template {
            let p = manifest::placeholder_of("g/a");
            (
                serde_json::json!({ "t": {
                    "content": format!("A={p}\n"), "owner": "root", "group": null,
                    "mode": "0400", "restart-units": ["t.service"]
                } }),
                serde_json::json!({ p: "g/a" }),
            )
        } else {
            (serde_json::json!({}), serde_json::json!({}))
        };
        let m = serde_json::json!({
            "format": 1, "kind": "install",
            "principal": { "kind": "machine", "name": "m" },
            "files": f, "templates": templates, "placeholders": placeholders,
        });
        let p = self.path("manifest.json");
        std::fs::write(&p, serde_json::to_vec(&m).unwrap()).unwrap();
        p
    }

    fn request(&self, manifest: PathBuf) -> Request {
        Request {
            manifest,
            store: None,
            identities: vec![self.path("missing-key"), self.identity.clone()],
            target: self.target(),
            mount_point: None,
            phase: NeededFor::Services,
            keep: 1,
            dry_run: false,
            ignore_passwd: false,
            user_mode: true,
            tmpfs: false,
            restart_via: RestartVia::ActivationList,
            activation_dir: self.path("nixos"),
        }
    }

    /// Every path below `run/` and `nixos/` with its content (files) or link target.
    fn snapshot(&self) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        for top in ["run", "nixos"] {
            for e in walk(&self.path(top)) {
                let m = std::fs::symlink_metadata(&e).unwrap();
                let what = if m.file_type().is_symlink() {
                    format!("-> {}", std::fs::read_link(&e).unwrap().display())
                } else if m.is_dir() {
                    format!("dir {:o}", m.permissions().mode() & 0o7777)
                } else {
                    format!(
                        "{:o} {:?}",
                        m.permissions().mode() & 0o7777,
                        std::fs::read(&e).unwrap()
                    )
                };
                out.insert(e, what);
            }
        }
        out
    }

    fn list(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.path(&format!("nixos/{name}"))).ok()
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            out.push(e.path());
            if e.file_type().unwrap().is_dir() {
                out.extend(walk(&e.path()));
            }
        }
    }
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn problems(e: InstallError) -> Vec<String> {
    match e {
        InstallError::Invalid { problems } => problems.iter().map(|p| p.to_string()).collect(),
        other => panic!("expected problems, got {other}"),
    }
}

#[test]
fn generations_switch_prune_and_restart_only_for_changed_plaintext() {
    let fx = Fx::new();
    let link = fx.path("etc/app/a-key");
    let a = fx.seal("a", b"alpha", true);
    let b = fx.seal("b", b"beta", true);
    let files = |a: &Path, b: &Path| {
        fx.manifest(
            &[
                ("a", a, &["a.service"], &[], Some(&link)),
                ("b", b, &[], &["b.service"], None),
            ],
            true,
        )
    };
    let req = fx.request(files(&a, &b));

    // First install: nothing was running, so nothing is compared or restarted.
    let out = install(&req).unwrap();
    assert_eq!(out.generation, Some(1));
    assert_eq!(out.installed, 3);
    assert_eq!(out.changes, None);
    assert!(out.late.is_empty(), "{:?}", out.late);
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    let target = fx.target();
    assert_eq!(
        std::fs::read_link(&target).unwrap(),
        fx.path("run/vars.d/1")
    );
    assert_eq!(std::fs::read(target.join("g/a")).unwrap(), b"alpha");
    assert_eq!(
        std::fs::read(target.join("_templates/t")).unwrap(),
        b"A=alpha\n"
    );
    assert_eq!(mode(&target.join("g/a")), 0o400);
    assert_eq!(mode(&target.join("g/b")), 0o440);
    assert_eq!(mode(&fx.path("run/vars.d/1/g")), 0o700);
    assert_eq!(std::fs::read_link(&link).unwrap(), target.join("g/a"));
    assert_eq!(mode(&fx.path("etc/app")), 0o755, "whatever the umask");
    assert_eq!(std::fs::read(&link).unwrap(), b"alpha");
    assert_eq!(fx.list("activation-restart-list"), None);

    // A rekey: new ciphertext, same plaintext. Nothing changes, nothing restarts.
    let (a2, b2) = (fx.seal("a2", b"alpha", true), fx.seal("b2", b"beta", true));
    assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&a2).unwrap());
    let out = install(&fx.request(files(&a2, &b2))).unwrap();
    assert_eq!(out.generation, Some(2));
    assert_eq!(out.changes, Some(Changes::default()));
    assert!(out.restart.is_empty() && out.reload.is_empty());
    assert_eq!(out.pruned, [1]);
    assert!(!fx.path("run/vars.d/1").exists());
    assert_eq!(fx.list("activation-restart-list"), None);
    assert_eq!(fx.list("activation-reload-list"), None);

    // b's plaintext changes: only b's unit.
    let b3 = fx.seal("b3", b"beta 2", true);
    let mut keep = fx.request(files(&a2, &b3));
    keep.keep = 2;
    let out = install(&keep).unwrap();
    assert_eq!(out.changes.as_ref().unwrap().modified, ["g/b"]);
    assert_eq!(
        (out.restart.len(), out.reload.as_slice()),
        (0, &["b.service".to_owned()][..])
    );
    assert_eq!(
        fx.list("activation-reload-list").as_deref(),
        Some("b.service\n")
    );
    assert_eq!(fx.list("activation-restart-list"), None);
    assert!(out.pruned.is_empty(), "keep 2 keeps generation 2");

    // a changes: a's unit and the template's, whose rendering changed with it.
    let a4 = fx.seal("a4", b"alpha 2", true);
    let out = install(&fx.request(files(&a4, &b3))).unwrap();
    assert_eq!(
        out.changes.as_ref().unwrap().modified,
        ["g/a", "_templates/t"]
    );
    assert_eq!(out.restart, ["a.service", "t.service"]);
    assert_eq!(
        fx.list("activation-restart-list").as_deref(),
        Some("a.service\nt.service\n")
    );
    assert_eq!(out.pruned, [2, 3]);
    assert_eq!(std::fs::read(&link).unwrap(), b"alpha 2");

    // b is gone from the manifest: removed, and its file with the generation.
    let only_a = fx.manifest(&[("a", &a4, &[], &[], None)], false);
    let mut never = fx.request(only_a);
    never.keep = 0;
    let out = install(&never).unwrap();
    let c = out.changes.unwrap();
    assert_eq!(c.removed, ["_templates/t", "g/b"]);
    assert!(c.added.is_empty() && c.modified.is_empty());
    assert!(out.pruned.is_empty(), "keep 0 never prunes");
    assert!(!target.join("g/b").exists());
    assert_eq!(out.generation, Some(5));
}

#[test]
fn a_dry_run_mounts_writes_and_switches_nothing() {
    let fx = Fx::new();
    let a = fx.seal("a", b"alpha", true);
    let first = fx.manifest(&[("a", &a, &["a.service"], &[], None)], false);
    let mut req = fx.request(first);
    req.dry_run = true;
    let out = install(&req).unwrap();
    assert_eq!((out.generation, out.installed), (None, 1));
    assert!(!fx.path("run").exists(), "a dry run creates nothing");

    req.dry_run = false;
    install(&req).unwrap();
    let a2 = fx.seal("a2", b"alpha 2", true);
    let mut dry = fx.request(fx.manifest(&[("a", &a2, &["a.service"], &[], None)], false));
    dry.dry_run = true;
    let before = fx.snapshot();
    let out = install(&dry).unwrap();
    assert_eq!(out.changes.unwrap().modified, ["g/a"]);
    assert_eq!(out.restart, ["a.service"]);
    let mut after = fx.snapshot();
    // The only thing a dry activation writes: NixOS's list of what it would restart.
    let dry_list = after.remove(&fx.path("nixos/dry-activation-restart-list"));
    assert_eq!(
        dry_list.as_deref(),
        Some("600 [97, 46, 115, 101, 114, 118, 105, 99, 101, 10]")
    );
    assert_eq!(before, after);
}

#[test]
fn a_failure_names_every_cause_and_keeps_the_running_generation() {
    let fx = Fx::new();
    let good = fx.seal("good", b"good", true);
    install(&fx.request(fx.manifest(&[("good", &good, &[], &[], None)], false))).unwrap();
    let before = fx.snapshot();

    let damaged = fx.seal("damaged", b"damaged", true);
    let mut bytes = std::fs::read(&damaged).unwrap();
    let n = bytes.len();
    bytes[n - 5] ^= 0xff;
    std::fs::write(&damaged, bytes).unwrap();
    let wrong = fx.seal("wrong", b"not for this host", false);
    let linked = fx.path("src/linked.age");
    symlink(&good, &linked).unwrap();
    let missing = fx.path("src/missing.age");
    let occupied = fx.path("etc-file");
    std::fs::write(&occupied, b"mine").unwrap();
    let m = fx.manifest(
        &[
            ("good", &good, &[], &[], Some(&occupied)),
            ("damaged", &damaged, &[], &[], None),
            ("wrong", &wrong, &[], &[], None),
            ("linked", &linked, &[], &[], None),
            ("missing", &missing, &[], &[], None),
        ],
        false,
    );
    let all = problems(install(&fx.request(m)).unwrap_err()).join("\n");
    for expected in [
        "link ",
        "etc-file: exists and is not a symbolic link",
        "file g/damaged (",
        "file g/wrong (",
        "identities tried: ",
        "missing-key (missing), ",
        "file g/linked (",
        "is a symbolic link",
        "file g/missing (",
    ] {
        assert!(all.contains(expected), "{expected:?} not in:\n{all}");
    }
    assert!(!all.contains("good\n"), "no plaintext in messages");
    assert_eq!(before, fx.snapshot(), "the running generation is untouched");
    assert_eq!(std::fs::read(&occupied).unwrap(), b"mine");
}

#[test]
fn without_any_identity_every_path_tried_is_named() {
    let fx = Fx::new();
    let a = fx.seal("a", b"alpha", true);
    let mut req = fx.request(fx.manifest(&[("a", &a, &[], &[], None)], false));
    req.identities = vec![fx.path("one"), fx.path("two")];
    let all = problems(install(&req).unwrap_err());
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(
        all[0].starts_with("identities: none could be loaded; tried "),
        "{all:?}"
    );
    assert!(
        all[0].contains("one (missing), ") && all[0].contains("two (missing)"),
        "{all:?}"
    );
    assert!(!fx.path("run").exists());
}

#[test]
fn a_store_with_planted_links_installs_nothing() {
    let fx = Fx::new();
    let store = fx.path("store");
    let outside = fx.path("outside");
    std::fs::create_dir_all(store.join("machines/m/g")).unwrap();
    std::fs::create_dir_all(outside.join("h")).unwrap();
    let secret = std::fs::read(fx.seal("x", b"x", true)).unwrap();
    std::fs::write(outside.join("key.age"), &secret).unwrap();
    std::fs::write(outside.join("h/key.age"), &secret).unwrap();
    // A linked file, and a linked instance directory.
    symlink(outside.join("key.age"), store.join("machines/m/g/key.age")).unwrap();
    symlink(outside.join("h"), store.join("machines/m/h")).unwrap();
    let file = |path: &str| {
        serde_json::json!({ "files": { "key": {
            "group": "root", "mode": "0400", "needed-for": "services",
            "owner": "root", "path": path, "secret": true
        } } })
    };
    let m = serde_json::json!({
        "format": 1, "kind": "machine", "name": "m", "users": {},
        "generators": { "g": file("machines/m/g/key.age"), "h": file("machines/m/h/key.age") },
    });
    std::fs::write(
        store.join("machines/m/manifest.json"),
        serde_json::to_vec(&m).unwrap(),
    )
    .unwrap();
    let mut req = fx.request(store.join("machines/m/manifest.json"));
    req.store = Some(store.clone());
    let all = problems(install(&req).unwrap_err());
    assert_eq!(all.len(), 2, "{all:?}");
    for p in &all {
        assert!(p.contains("vars never follows links in the store"), "{p}");
    }
    assert!(!fx.path("run").exists());

    // The manifest itself, when it is in the store, is read without following links too.
    std::fs::rename(
        store.join("machines/m/manifest.json"),
        outside.join("manifest.json"),
    )
    .unwrap();
    symlink(
        outside.join("manifest.json"),
        store.join("machines/m/manifest.json"),
    )
    .unwrap();
    match install(&req) {
        Err(InstallError::Manifest(e)) => assert!(crate::fs_util::is_link_refused(&e), "{e}"),
        other => panic!("{:?}", other.map(|o| o.generation)),
    }
}

#[test]
fn the_target_is_replaced_only_when_vars_could_have_made_it() {
    let fx = Fx::new();
    let a = fx.seal("a", b"alpha", true);
    let req = fx.request(fx.manifest(&[("a", &a, &[], &[], None)], false));
    std::fs::create_dir_all(fx.target().join("something")).unwrap();
    let all = problems(install(&req).unwrap_err());
    assert!(
        all[0].contains("is a directory that is not empty"),
        "{all:?}"
    );
    std::fs::remove_dir_all(fx.target()).unwrap();
    std::fs::write(fx.target(), b"stale").unwrap();
    assert_eq!(install(&req).unwrap().generation, Some(1));
    assert_eq!(std::fs::read(fx.target().join("g/a")).unwrap(), b"alpha");
}

#[test]
fn user_mode_writes_only_to_memory() {
    let fx = Fx::new();
    let a = fx.seal("a", b"alpha", true);
    let mut req = fx.request(fx.manifest(&[("a", &a, &[], &[], None)], false));
    let disk = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
    if mount::ram_backed_dir(disk.path()) == Some(true) {
        panic!(
            "{} is on a RAM file system: this test needs a disk",
            disk.path().display()
        );
    }
    req.target = disk.path().join("vars");
    let all = problems(install(&req).unwrap_err());
    assert!(all[0].contains("is not on a tmpfs or ramfs"), "{all:?}");
    assert_eq!(std::fs::read_dir(disk.path()).unwrap().count(), 0);
}

#[test]
fn target_and_mount_point_must_be_plain_and_apart() {
    let fx = Fx::new();
    let mut req = fx.request(fx.path("manifest.json"));
    for (target, mount) in [
        ("relative/vars", None),
        ("/run/../vars", None),
        ("/run/vars", Some("/run/vars/d")),
        ("/run/vars.d/x", Some("/run/vars.d")),
    ] {
        req.target = target.into();
        req.mount_point = mount.map(PathBuf::from);
        assert!(
            matches!(install(&req), Err(InstallError::Usage(_))),
            "{target}"
        );
    }
}

#[test]
fn a_template_may_use_a_file_of_the_users_phase() {
    let fx = Fx::new();
    let a = fx.seal("a", b"alpha", true);
    let path = fx.manifest(&[("a", &a, &[], &[], None)], true);
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    m["files"]["g/a"]["needed-for"] = "users".into();
    std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
    let out = install(&fx.request(path.clone())).unwrap();
    assert_eq!(out.installed, 1);
    assert!(
        !fx.target().join("g/a").exists(),
        "g/a is the users phase's"
    );
    assert_eq!(
        std::fs::read(fx.target().join("_templates/t")).unwrap(),
        b"A=alpha\n"
    );

    let mut users = fx.request(path);
    users.phase = NeededFor::Users;
    users.target = fx.path("run/vars-for-users");
    install(&users).unwrap();
    assert_eq!(std::fs::read(users.target.join("g/a")).unwrap(), b"alpha");
    assert!(!users.target.join("_templates").exists());
}

/// Review finding 4: a ciphertext copied to another file (another user's, or a root-only
/// secret into a user's) decrypts with the host key, but its header names where it was
/// written for, and it is refused; the running generation stays.
#[test]
fn a_ciphertext_written_for_another_file_is_refused() {
    let fx = Fx::new();
    let a = fx.seal("a", b"alpha", true);
    install(&fx.request(fx.manifest(&[("a", &a, &[], &[], None)], false))).unwrap();
    let before = fx.snapshot();
    let copied = fx.path("src/b.age");
    std::fs::copy(&a, &copied).unwrap();
    let err = problems(
        install(&fx.request(fx.manifest(
            &[("a", &a, &[], &[], None), ("b", &copied, &[], &[], None)],
            false,
        )))
        .unwrap_err(),
    )
    .join("\n");
    assert!(
        err.contains("g/b") && err.contains("written for machines/m/g/a"),
        "{err}"
    );
    assert_eq!(before, fx.snapshot());
}
