//! `vars set INSTANCE/FILE` end to end (DESIGN §5, §7): a value from stdin or a file replaces
//! one file, encrypted to exactly its readers, and everything depending on it regenerates on
//! the next `vars generate`; undeclared files, values on the command line, instances never
//! generated, a swapped `vault.pub` and links in the instance are refused without changing
//! anything.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;

use crate::common::{self, TestEnv};
use crate::fleets;

fn tools() -> bool {
    common::require_tool("bwrap", "apt-get install bubblewrap")
        && common::require_tool("age", "apt-get install age")
        && common::require_tool("ssh-keygen", "apt-get install openssh-client")
}

fn snapshot(env: &TestEnv) -> BTreeMap<PathBuf, Vec<u8>> {
    common::files_in(&env.store())
}

/// `vars ARGS` with `input` on stdin.
fn with_stdin(env: &TestEnv, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = env
        .command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A refused request may exit before reading its input: a broken pipe is its answer.
    match child.stdin.take().unwrap().write_all(input) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.unwrap(),
    }
    child.wait_with_output().unwrap()
}

fn meta(env: &TestEnv, instance: &str) -> vars::meta::Meta {
    serde_json::from_slice(&std::fs::read(env.store().join(instance).join("meta.json")).unwrap())
        .unwrap()
}

/// A new CA key pair replaces clan8's `ssh-ca`: the host certificates depending on it become
/// stale, `generate` re-signs them with the new CA (and nothing else changes).
#[test]
fn a_new_ca_makes_its_dependents_stale_and_generate_resigns_them() {
    if !tools() {
        return;
    }
    let env = fleets::generated("clan8");
    let admin = env.key("users/crs58.age").display().to_string();
    let ca = env.dir.path().join("newca");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "new CA", "-f"])
        .arg(&ca)
        .output()
        .unwrap();
    assert!(out.status.success());
    let before = meta(&env, "shared/ssh-ca");
    let host_key_before = snapshot(&env)
        .get(
            &env.store()
                .join("machines/cinnabar/ssh-host-ed25519/ssh_host_ed25519_key.age"),
        )
        .cloned();

    let out = with_stdin(
        &env,
        &["set", "shared/ssh-ca/ca"],
        &std::fs::read(&ca).unwrap(),
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let err = common::stderr(&out);
    assert!(
        err.contains("stale now (they depend on it): machines/cinnabar/ssh-host-cert"),
        "{err}"
    );
    let ca_pub = ca.with_extension("pub").display().to_string();
    env.ok(&["set", "shared/ssh-ca/ca.pub", "--from-file", &ca_pub]);
    assert!(out.stdout.is_empty());

    let after = meta(&env, "shared/ssh-ca");
    assert_ne!(before.generation, after.generation);
    assert_eq!(before.files["ca"].recipients, after.files["ca"].recipients);
    assert_eq!(
        env.ok(&["get", "-i", &admin, "shared/ssh-ca/ca"]),
        std::fs::read(&ca).unwrap()
    );
    // deploy: false: only the vault reads it (no host key does).
    let stored = env.store().join("shared/ssh-ca/ca.age");
    assert!(common::age_decrypt(&stored, &env.key("hosts/cinnabar")).is_none());

    let out = env.vars(&["check"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        common::stderr(&out)
            .contains("machines/cinnabar/ssh-host-cert: dependency shared/ssh-ca changed"),
        "{}",
        common::stderr(&out)
    );
    let out = env.vars(&["generate", "-i", &admin]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    env.ok(&["check"]);
    // The value set is kept (ssh-ca is not regenerated), the certificates are signed by it.
    assert_eq!(meta(&env, "shared/ssh-ca").generation, after.generation);
    let cert = env
        .store()
        .join("machines/cinnabar/ssh-host-cert/ssh_host_ed25519_key-cert.pub");
    let shown = std::process::Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(&cert)
        .output()
        .unwrap();
    let fingerprint = std::process::Command::new("ssh-keygen")
        .arg("-l")
        .arg("-f")
        .arg(&ca_pub)
        .output()
        .unwrap();
    let fp = String::from_utf8_lossy(&fingerprint.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains(&fp),
        "not signed by the new CA"
    );
    // Host keys (not dependents) are untouched.
    assert_eq!(
        snapshot(&env)
            .get(
                &env.store()
                    .join("machines/cinnabar/ssh-host-ed25519/ssh_host_ed25519_key.age")
            )
            .cloned(),
        host_key_before
    );
    fleets::verify_readers(&env);
}

#[test]
fn a_set_value_is_read_by_exactly_its_readers_and_never_leaks() {
    if !tools() {
        return;
    }
    let env = fleets::generated("darwin2");
    let sentinel = format!("SENTINEL-{}", &vars::crypto::new_identity().1[5..25]);
    let out = with_stdin(&env, &["set", "shared/wifi-psk/psk"], sentinel.as_bytes());
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&sentinel));
    assert!(!common::stderr(&out).contains(&sentinel));
    env.ok(&["check"]);
    fleets::verify_readers(&env);
    let psk = env.store().join("shared/wifi-psk/psk.age");
    for host in ["megabookpro", "air13"] {
        assert_eq!(
            common::age_decrypt(&psk, &env.key(&format!("hosts/{host}"))).unwrap(),
            sentinel.as_bytes()
        );
    }
    for file in common::walk(env.dir.path()) {
        if let Ok(bytes) = std::fs::read(&file) {
            assert!(
                !bytes
                    .windows(sentinel.len())
                    .any(|w| w == sentinel.as_bytes()),
                "{} holds the plaintext",
                file.display()
            );
        }
    }
}

#[test]
fn bad_requests_are_refused_and_change_nothing() {
    if !tools() {
        return;
    }
    let env = fleets::generated("darwin2");
    let before = snapshot(&env);
    let cases: [(&[&str], i32, &str); 5] = [
        (
            &["set", "shared/wifi-psk/nope"],
            1,
            "declares no file \"nope\"",
        ),
        (
            &["set", "shared/nothing/psk"],
            1,
            "no instance \"shared/nothing\" is declared",
        ),
        (
            &["set", "shared/wifi-psk/psk", "the-value"],
            2,
            "unexpected argument",
        ),
        (&["set", "shared/wifi-psk/meta.json"], 1, "declares no file"),
        (
            &["set", "--from-file", "/nonexistent", "shared/wifi-psk/psk"],
            1,
            "cannot read /nonexistent",
        ),
    ];
    for (args, code, message) in cases {
        let out = with_stdin(&env, args, b"x");
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            common::stderr(&out)
        );
        assert!(
            common::stderr(&out).contains(message),
            "{args:?}: {}",
            common::stderr(&out)
        );
    }
    assert!(before == snapshot(&env), "a refused set changed the store");

    // An instance never generated: its other files do not exist.
    let fresh = TestEnv::fleet("darwin2");
    let out = with_stdin(
        &fresh,
        &["set", "users/seth/git-signing-key/signing-key"],
        b"x",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::stderr(&out).contains("is not generated yet"),
        "{}",
        common::stderr(&out)
    );
    assert!(
        common::walk(&fresh.store())
            .iter()
            .all(|p| !p.ends_with("meta.json"))
    );
}

/// Encrypting needs no identity, so a swapped `keys/vault.pub` must not redirect what is
/// encrypted (DESIGN §4); a link planted in the instance is never read or carried.
#[test]
fn a_swapped_vault_pub_and_planted_links_are_refused() {
    if !tools() {
        return;
    }
    let env = fleets::generated("darwin2");
    let (_, attacker) = vars::crypto::new_identity();
    let vault_pub = env.store().join("keys/vault.pub");
    let real = std::fs::read(&vault_pub).unwrap();
    std::fs::write(&vault_pub, format!("{attacker}\n")).unwrap();
    let before = snapshot(&env);
    let out = with_stdin(&env, &["set", "shared/wifi-psk/psk"], b"new");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::stderr(&out).contains("changed since this machine last used this store"),
        "{}",
        common::stderr(&out)
    );
    assert!(before == snapshot(&env));
    std::fs::write(&vault_pub, real).unwrap();

    // users/seth/git-signing-key: set signing-key.pub while signing-key.age is a link.
    let inst = env.store().join("users/seth/git-signing-key");
    let outside = env.dir.path().join("outside");
    std::fs::write(&outside, b"outside the store").unwrap();
    std::fs::remove_file(inst.join("signing-key.age")).unwrap();
    std::os::unix::fs::symlink(&outside, inst.join("signing-key.age")).unwrap();
    let before = snapshot(&env);
    let out = with_stdin(
        &env,
        &["set", "users/seth/git-signing-key/signing-key.pub"],
        b"ssh-ed25519 AAAA",
    );
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    assert!(before == snapshot(&env));
    assert!(
        std::fs::symlink_metadata(inst.join("signing-key.age"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn set_with_the_sops_backend_writes_what_sops_reads() {
    let Some(sops) = crate::sops::sops() else {
        return;
    };
    if !tools() {
        return;
    }
    let env = TestEnv::fleet("darwin2");
    crate::sops::set_backend(&env, "vars.yaml", "sops");
    let seth = env.key("users/seth.age").display().to_string();
    let mut args = vec!["generate".to_owned(), "-i".into(), seth];
    args.extend(fleets::prompts("darwin2"));
    env.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let sentinel = format!("SENTINEL-{}", &vars::crypto::new_identity().1[5..25]);
    let out = with_stdin(&env, &["set", "shared/wifi-psk/psk"], sentinel.as_bytes());
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(!common::stderr(&out).contains(&sentinel));
    env.ok(&["check"]);
    let psk = env.store().join("shared/wifi-psk/psk.sops");
    assert_eq!(
        crate::sops::sops_decrypt(&sops, &psk, &env.key("hosts/air13"), &[]).unwrap(),
        sentinel.as_bytes()
    );
    // The plaintext went to sops on a pipe: no file of the run holds it.
    for file in common::walk(env.dir.path()) {
        if let Ok(bytes) = std::fs::read(&file) {
            assert!(
                !bytes
                    .windows(sentinel.len())
                    .any(|w| w == sentinel.as_bytes()),
                "{} holds the plaintext",
                file.display()
            );
        }
    }
}
