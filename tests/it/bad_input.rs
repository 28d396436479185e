//! Bad input gets a clear error and changes nothing: failing, hanging, oversized and symlinking
//! scripts, bad identities, and a store modified by hand.

use crate::common::{self, TestEnv};

fn assert_nothing_written(env: &TestEnv) {
    // Manifests and the vault may be written (they describe what exists); the instance not.
    let instance = env.store().join("machines/host1/g");
    assert!(!instance.exists(), "instance dir was written");
    let leftovers: Vec<_> = common::walk(&env.store().join("machines"))
        .into_iter()
        .filter(|p| !p.ends_with("manifest.json"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let hidden: Vec<_> = [env.store().join("machines/host1"), env.store()]
        .iter()
        .flat_map(std::fs::read_dir)
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && ![".gitignore", ".lock"].contains(&n.as_str()))
        .collect();
    assert!(hidden.is_empty(), "staging leftovers: {hidden:?}");
    assert_eq!(
        std::fs::read_dir(env.runtime_dir()).unwrap().count(),
        0,
        "sandbox dir left behind"
    );
}

fn sandboxed() -> bool {
    common::require_tool("bwrap", "apt-get install bubblewrap")
}

#[test]
fn failing_script_reports_stderr_not_stdout() {
    if !sandboxed() {
        return;
    }
    let env = TestEnv::mini(
        "echo STDOUT-SENTINEL\necho 'something broke' >&2\nexit 7",
        "{ key: {} }",
    );
    let out = env.vars(&["generate"]);
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(err.contains("something broke"), "{err}");
    assert!(err.contains("\"g\""), "names the generator: {err}");
    assert!(err.contains('7'), "names the exit status: {err}");
    assert!(
        !err.contains("STDOUT-SENTINEL")
            && !String::from_utf8_lossy(&out.stdout).contains("STDOUT-SENTINEL")
    );
    assert_nothing_written(&env);
}

#[test]
fn hanging_script_times_out() {
    if !sandboxed() {
        return;
    }
    let env = TestEnv::mini("sleep 60", "{ key: {} }");
    let start = std::time::Instant::now();
    let out = env.vars(&["generate"]);
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::stderr(&out).contains("timed out") || common::stderr(&out).contains("timeout"),
        "{}",
        common::stderr(&out)
    );
    assert_nothing_written(&env);
}

#[test]
fn oversized_symlinked_missing_and_extra_outputs_are_rejected() {
    if !sandboxed() {
        return;
    }
    let cases = [
        (
            "head -c 17000000 /dev/zero > \"$out/key\"",
            "{ key: {} }",
            "more than the limit of 16777216 bytes",
        ),
        (
            "ln -s /etc/passwd \"$out/key\"",
            "{ key: {} }",
            "regular file",
        ),
        ("true", "{ key: {} }", "key"),
        (
            "echo a > \"$out/key\"; echo b > \"$out/extra\"",
            "{ key: {} }",
            "extra",
        ),
    ];
    for (script, files, needle) in cases {
        let env = TestEnv::mini(script, files);
        let out = env.vars(&["generate"]);
        assert_eq!(out.status.code(), Some(1), "{script}");
        let err = common::stderr(&out);
        assert!(err.contains(needle), "{script}: {err}");
        assert_nothing_written(&env);
    }
}

#[test]
fn unreadable_identity_is_named() {
    if !sandboxed() {
        return;
    }
    let env = crate::fleets::generated("clan8");
    let out = env.vars(&[
        "generate",
        "--regenerate",
        "--identity",
        "/nonexistent/key",
        "ssh-host-cert",
        "--machine",
        "galena",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::stderr(&out).contains("/nonexistent/key"),
        "{}",
        common::stderr(&out)
    );
}

#[test]
fn hand_modified_store_is_reported_and_not_silently_rotated() {
    if !sandboxed() {
        return;
    }
    let env = crate::fleets::generated("clan8");
    let age = env
        .store()
        .join("machines/galena/borg-passphrase/passphrase.age");
    let bytes = std::fs::read(&age).unwrap();
    std::fs::write(&age, &bytes[..bytes.len() / 3]).unwrap();
    let out = env.vars(&["check"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        common::stderr(&out).contains("machines/galena/borg-passphrase"),
        "{}",
        common::stderr(&out)
    );

    let meta = env
        .store()
        .join("machines/electrum/borg-passphrase/meta.json");
    std::fs::write(&meta, "not json").unwrap();
    let out = env.vars(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "damaged" && f["subject"] == "machines/electrum/borg-passphrase"),
        "{json}"
    );
    // generate refuses to rotate a damaged instance unless asked.
    let out = env.vars(&["generate"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::stderr(&out).contains("--regenerate"),
        "{}",
        common::stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&meta).unwrap(),
        "not json",
        "changed nothing"
    );
}
