//! Attacks from the repository side (issue 8, DESIGN §3): someone who can commit to the fleet
//! repo controls vars.yaml, generators/ and every byte under vars/. Each test plants what such
//! a commit could, then runs the real binary and checks that vars neither follows the link nor
//! reveals, overwrites or encrypts anything it should not, and that `vars check` reports it.

use std::os::unix::fs::symlink;
use std::path::Path;

use crate::common::{self, TestEnv};

const SENTINEL: &str = "PRIVATE-KEY-SENTINEL-9f3c";

/// A two-generator fleet: `dep` writes a public and a secret file, `user` copies the public
/// one (what it got as `$in`) into its own public output.
fn chained() -> TestEnv {
    common::TestEnv::yaml(
        r#"version: 1
admins: [alice]
users:
  alice: { recipients: ["{admin}"] }
machines:
  host1: { recipients: ["{host}"], generators: [user] }
generators:
  dep:
    files: { pub: { secret: false }, key: {} }
    script: |
      echo public > "$out/pub"
      head -c 16 /dev/urandom > "$out/key"
  user:
    dependencies: [dep]
    files: { copy: { secret: false } }
    script: cat "$in/dep/pub" > "$out/copy"
"#,
    )
}

/// Two machines, each with its own instance of `tok` (one secret `token`).
fn two_machines() -> TestEnv {
    TestEnv::yaml(
        r#"version: 1
admins: [alice]
users:
  alice: { recipients: ["{admin}"] }
machines:
  m1: { recipients: ["{host}"], generators: [tok] }
  m2: { recipients: ["{host2}"], generators: [tok] }
generators:
  tok:
    files: { token: {} }
    script: head -c 12 /dev/urandom | base64 > "$out/token"
"#,
    )
}

/// A file in the test's HOME that holds the sentinel (what an attacker wants read).
fn home_secret(env: &TestEnv) -> std::path::PathBuf {
    let p = env.home.join(".ssh/id_ed25519");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(
        &p,
        format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{SENTINEL}\n"),
    )
    .unwrap();
    p
}

fn assert_no_sentinel(env: &TestEnv, out: &std::process::Output) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        common::stderr(out)
    );
    assert!(!text.contains(SENTINEL), "the sentinel was printed: {text}");
    for p in common::walk(&env.store()) {
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file()) {
            let bytes = std::fs::read(&p).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(SENTINEL),
                "the sentinel reached {}",
                p.display()
            );
        }
    }
}

fn check_json(env: &TestEnv) -> (Option<i32>, serde_json::Value) {
    let out = env.vars(&["check", "--json"]);
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("check --json: {e}: {}", common::stderr(&out));
    });
    (out.status.code(), json)
}

fn finding_kinds(json: &serde_json::Value) -> Vec<(String, String)> {
    json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_owned(),
                f["subject"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn sandboxed() -> bool {
    common::require_tool("bwrap", "apt-get install bubblewrap")
}

/// Issue 8, 2(a): `dep/pub` replaced by a link to the home's ssh key is not read for `$in`.
#[test]
fn a_linked_dependency_output_is_never_read_into_in() {
    if !sandboxed() {
        return;
    }
    let env = chained();
    env.ok(&["generate"]);
    let secret = home_secret(&env);
    let pub_file = env.store().join("machines/host1/dep/pub");
    std::fs::remove_file(&pub_file).unwrap();
    symlink(&secret, &pub_file).unwrap();
    let admin = env.key("users/crs58.age").display().to_string();
    let out = env.vars(&["generate", "--regenerate", "user", "-i", &admin]);
    assert!(!out.status.success(), "{}", common::stderr(&out));
    assert!(
        common::stderr(&out).contains("pub is a symlink"),
        "{}",
        common::stderr(&out)
    );
    assert_no_sentinel(&env, &out);
    let (code, json) = check_json(&env);
    assert_eq!(code, Some(3));
    assert!(
        finding_kinds(&json).contains(&("tampered".into(), "machines/host1/dep/pub".into())),
        "{json}"
    );
}

/// Issue 8, 2(b): a rekey carries declared files only; a planted link or stray file does not
/// become a committed regular file holding its target.
#[test]
fn rekey_carries_only_declared_files() {
    if !sandboxed() {
        return;
    }
    let env = chained();
    env.ok(&["generate"]);
    let secret = home_secret(&env);
    let dir = env.store().join("machines/host1/dep");
    symlink(&secret, dir.join("extra")).unwrap();
    std::fs::write(dir.join("key.txt"), "stray plaintext copy").unwrap();
    let admin = env.key("users/crs58.age").display().to_string();
    let out = env.vars(&["rekey", "--rotate-vault", "--yes", "-i", &admin]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["key.age", "meta.json", "pub"]);
    assert_no_sentinel(&env, &out);
    env.ok(&["check"]);
}

/// Issue 8, 2(c): `vars/machines/M` as a link to `~/.config` must not make a swap replace
/// `~/.config/<gen>` (code execution through, say, a git hook).
#[test]
fn a_linked_machine_directory_is_never_written_through() {
    if !sandboxed() {
        return;
    }
    let env = chained();
    env.ok(&["generate"]);
    let config_dir = env.home.join(".config");
    std::fs::create_dir_all(config_dir.join("user")).unwrap();
    std::fs::write(config_dir.join("user/hooks"), "the user's own file").unwrap();
    let machine = env.store().join("machines/host1");
    std::fs::rename(&machine, env.dir.path().join("moved-away")).unwrap();
    symlink(&config_dir, &machine).unwrap();
    let admin = env.key("users/crs58.age").display().to_string();
    let out = env.vars(&["generate", "--regenerate", "-i", &admin]);
    assert!(!out.status.success());
    assert_eq!(
        std::fs::read_to_string(config_dir.join("user/hooks")).unwrap(),
        "the user's own file"
    );
    let entries: Vec<_> = std::fs::read_dir(&config_dir).unwrap().collect();
    assert_eq!(
        entries.len(),
        1,
        "nothing was written into the link's target"
    );
    let (code, json) = check_json(&env);
    assert_eq!(code, Some(3));
    assert!(
        finding_kinds(&json).contains(&("tampered".into(), "machines/host1".into())),
        "{json}"
    );
}

/// Issue 8: a committed `vars -> /elsewhere` makes vars write nothing there, and a dangling
/// `.lock` link is not created.
#[test]
fn a_linked_store_or_lock_file_is_refused() {
    let env = chained();
    let elsewhere = env.dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    symlink(&elsewhere, env.store()).unwrap();
    let out = env.vars(&["generate", "--no-sandbox"]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("symbolic link"),
        "{}",
        common::stderr(&out)
    );
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);

    std::fs::remove_file(env.store()).unwrap();
    std::fs::create_dir(env.store()).unwrap();
    let target = env.dir.path().join("created-through-the-link");
    symlink(&target, env.store().join(".lock")).unwrap();
    let out = env.vars(&["generate", "--no-sandbox"]);
    assert!(!out.status.success());
    assert!(!target.exists());
}

/// Issue 8: a committed `generators/x.yaml -> ~/.config/vars/identity.txt` must not make an
/// error message print the identity (into a CI log).
#[test]
fn a_linked_generator_file_is_not_read_or_printed() {
    let env = chained();
    let identity = env.home.join(".config/vars/identity.txt");
    std::fs::create_dir_all(identity.parent().unwrap()).unwrap();
    std::fs::write(&identity, format!("AGE-SECRET-KEY-1{SENTINEL}\n")).unwrap();
    std::fs::create_dir_all(env.root().join("generators")).unwrap();
    symlink(&identity, env.root().join("generators/x.yaml")).unwrap();
    let out = env.vars(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(
        err.contains("generators/x.yaml") && err.contains("symlink"),
        "{err}"
    );
    assert!(!err.contains(SENTINEL), "{err}");

    // The same for a linked vars.yaml found by walking up; --config names it on purpose.
    std::fs::remove_file(env.root().join("generators/x.yaml")).unwrap();
    let real = env.dir.path().join("real.yaml");
    std::fs::rename(env.root().join("vars.yaml"), &real).unwrap();
    symlink(&real, env.root().join("vars.yaml")).unwrap();
    let out = env.vars(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::stderr(&out).contains("symbolic link"),
        "{}",
        common::stderr(&out)
    );
    let out = env.vars(&["--config", "vars.yaml", "list"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
}

/// `check` reports every kind of tampering in the store: links, fifos, stray and undeclared
/// files, a `meta.json` naming a file outside its instance (issue 8).
#[test]
fn check_reports_every_kind_of_tampering() {
    if !sandboxed() {
        return;
    }
    let env = chained();
    env.ok(&["generate"]);
    env.ok(&["check"]);
    let inst = env.store().join("machines/host1/user");
    std::fs::write(inst.join("copy.bak"), "a stray copy").unwrap();
    symlink("/etc/passwd", env.store().join("machines/host1/dep/passwd")).unwrap();
    std::fs::write(env.store().join("machines/host1/notes.txt"), "x").unwrap();
    let fifo = env.store().join("shared-fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let (code, json) = check_json(&env);
    assert_eq!(code, Some(3), "{json}");
    let kinds = finding_kinds(&json);
    for subject in [
        "machines/host1/user/copy.bak",
        "machines/host1/dep/passwd",
        "machines/host1/notes.txt",
        "shared-fifo",
    ] {
        assert!(
            kinds.contains(&("tampered".into(), subject.into())),
            "{subject}: {json}"
        );
    }

    // A hand-crafted meta.json that names a file outside the instance is damage; rekey and
    // check never read outside the store (nor panic).
    let meta = inst.join("meta.json");
    let text = std::fs::read_to_string(&meta).unwrap();
    let text = text.replace("\"copy\"", "\"../../../../../etc/passwd\"");
    std::fs::write(&meta, text).unwrap();
    let (code, json) = check_json(&env);
    assert_eq!(code, Some(3));
    assert!(
        finding_kinds(&json).contains(&("damaged".into(), "machines/host1/user".into())),
        "{json}"
    );
    let admin = env.key("users/crs58.age").display().to_string();
    let out = env.vars(&["rekey", "--yes", "-i", &admin]);
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "{}",
        common::stderr(&out)
    );
    assert!(
        !common::stderr(&out).contains("panicked"),
        "{}",
        common::stderr(&out)
    );
}

/// Issue 8, 3: a `keys/vault.pub` swapped for an attacker's recipient is caught: against
/// `vault.age` when the vault is opened, against this machine's record otherwise.
#[test]
fn a_swapped_vault_pub_is_caught() {
    if !sandboxed() {
        return;
    }
    let env = chained();
    env.ok(&["generate"]);
    let pub_file = env.store().join("keys/vault.pub");
    let genuine = std::fs::read_to_string(&pub_file).unwrap();
    let (_, attacker) = vars::crypto::new_identity();
    std::fs::write(&pub_file, format!("{attacker}\n")).unwrap();
    // A new instance that needs no vault key: only vault.pub would be used.
    let yaml = std::fs::read_to_string(env.root().join("vars.yaml")).unwrap();
    let yaml = yaml
        .replace("generators: [user]", "generators: [user, more]")
        .replace(
            "generators:\n  dep:",
            "generators:\n  more:\n    files: { k: {} }\n    script: echo x > \"$out/k\"\n  dep:",
        );
    std::fs::write(env.root().join("vars.yaml"), yaml).unwrap();
    let out = env.vars(&["generate"]);
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(
        err.contains(&attacker) && err.contains(genuine.trim()),
        "{err}"
    );
    assert!(err.contains("vars trust "), "{err}");
    assert!(!env.store().join("machines/host1/more").exists());
    // With the admin's identity the vault is opened and the mismatch is proven.
    let admin = env.key("users/crs58.age").display().to_string();
    let out = env.vars(&["generate", "--regenerate", "dep", "-i", &admin]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::stderr(&out).contains("tampered"),
        "{}",
        common::stderr(&out)
    );
    // Restored, everything works again.
    std::fs::write(&pub_file, &genuine).unwrap();
    env.ok(&["generate"]);
}

/// Issue 8, 6: `settings.sandbox: none` from the repository alone does not turn the sandbox
/// off; `--no-sandbox` or `VARS_NO_SANDBOX=1` from the person running vars does.
#[test]
fn sandbox_none_in_the_repo_needs_the_person_to_agree() {
    let env = chained();
    let yaml = std::fs::read_to_string(env.root().join("vars.yaml")).unwrap();
    std::fs::write(
        env.root().join("vars.yaml"),
        yaml.replace("version: 1\n", "version: 1\nsettings: { sandbox: none }\n"),
    )
    .unwrap();
    let out = env.vars(&["generate"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::stderr(&out).contains("--no-sandbox"),
        "{}",
        common::stderr(&out)
    );
    assert!(!env.store().join("machines").exists());
    let out = env
        .command(&["generate"])
        .env("VARS_NO_SANDBOX", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
}

/// Issue 8, 8: a failed generate leaves manifests naming only files that exist.
#[test]
fn a_failed_generate_leaves_manifests_naming_only_existing_files() {
    if !sandboxed() {
        return;
    }
    let env = chained();
    let yaml = std::fs::read_to_string(env.root().join("vars.yaml")).unwrap();
    std::fs::write(
        env.root().join("vars.yaml"),
        yaml.replace(
            "script: cat \"$in/dep/pub\" > \"$out/copy\"",
            "script: exit 3",
        ),
    )
    .unwrap();
    let out = env.vars(&["generate"]);
    assert_eq!(out.status.code(), Some(1));
    let manifest =
        std::fs::read_to_string(env.store().join("machines/host1/manifest.json")).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    for (_, g) in manifest["generators"].as_object().unwrap() {
        for (_, f) in g["files"].as_object().unwrap() {
            let path = f["path"].as_str().unwrap();
            assert!(
                Path::new(&env.store().join(path)).is_file(),
                "{path} is named but missing"
            );
        }
    }
    assert!(manifest["generators"].get("user").is_none(), "{manifest}");
}

/// An age key of the attacker's, its identity encrypted to the admin's public recipient: what
/// anyone can make from public data alone.
fn forged_key(env: &TestEnv, name: &str) -> (String, std::path::PathBuf) {
    let (text, recipient) = vars::crypto::new_identity();
    let id = env.dir.path().join(format!("{name}.age-identity"));
    std::fs::write(&id, text.expose()).unwrap();
    let admin_pub =
        std::fs::read_to_string(common::repo().join("testdata/keys/clan8/users/crs58.pub"))
            .unwrap();
    let out = std::process::Command::new("age")
        .args(["-a", "-r", admin_pub.trim(), "-o"])
        .arg(env.store().join(format!("keys/{name}.age")))
        .arg(&id)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    (recipient, id)
}

/// Review finding 1: a planted `keys/next.*` (made from public data) must not make the admin's
/// `rekey` rotate the store to the attacker's key.
#[test]
fn a_planted_rotation_is_refused() {
    if !sandboxed() || !common::require_tool("age", "apt-get install age") {
        return;
    }
    let env = chained();
    env.ok(&["generate"]);
    let genuine = std::fs::read_to_string(env.store().join("keys/vault.pub")).unwrap();
    let (attacker, attacker_id) = forged_key(&env, "next");
    std::fs::write(env.store().join("keys/next.pub"), format!("{attacker}\n")).unwrap();
    let admin = env.key("users/crs58.age").display().to_string();
    let out = env.vars(&["rekey", "--yes", "-i", &admin]);
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    assert!(
        common::stderr(&out).contains("not proven by the vault key"),
        "{}",
        common::stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(env.store().join("keys/vault.pub")).unwrap(),
        genuine
    );
    for f in common::walk(&env.store())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "age"))
    {
        if f.ends_with("keys/next.age") {
            continue;
        }
        assert!(
            common::age_decrypt(&f, &attacker_id).is_none(),
            "{} opens with the attacker's key",
            f.display()
        );
    }
}

/// Review finding 2: a `vault.pub` + `vault.age` swap (the attacker's key wrapped to the
/// admin) is caught by the admin's own pin, not silently re-pinned by an admin command.
#[test]
fn a_swapped_vault_is_not_re_pinned_by_an_admin_command() {
    if !sandboxed() || !common::require_tool("age", "apt-get install age") {
        return;
    }
    let env = chained();
    let admin = env.key("users/crs58.age").display().to_string();
    env.ok(&["generate", "-i", &admin]);
    let genuine = std::fs::read_to_string(env.store().join("keys/vault.pub")).unwrap();
    let (attacker, _) = forged_key(&env, "vault");
    std::fs::write(env.store().join("keys/vault.pub"), format!("{attacker}\n")).unwrap();
    let out = env.vars(&["get", "machines/host1/dep/key", "-i", &admin]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::stderr(&out).contains("changed since this machine last used"),
        "{}",
        common::stderr(&out)
    );
    let out = env.vars(&["generate", "--regenerate", "dep", "-i", &admin]);
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    assert!(
        common::stderr(&out).contains(genuine.trim()),
        "{}",
        common::stderr(&out)
    );
    // Only the person, told the new recipient, changes what this machine trusts.
    let out = env.vars(&[
        "trust",
        "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq",
    ]);
    assert_eq!(out.status.code(), Some(1));
    env.ok(&["trust-vault", &attacker]); // the older name
}

/// Review finding 6: editing `keys/vault.json` to hide an admin, or deleting it, does not stop
/// the rotation a removed admin needs.
#[test]
fn an_edited_vault_record_is_caught() {
    if !sandboxed() {
        return;
    }
    let env = TestEnv::yaml(
        r#"version: 1
admins: [alice, bob]
users:
  alice: { recipients: ["{admin}"] }
  bob: { recipients: ["{user}"] }
machines:
  host1: { recipients: ["{host}"], generators: [g] }
generators:
  g:
    files: { k: {} }
    script: echo x > "$out/k"
"#,
    );
    env.ok(&["generate"]);
    env.ok(&["check"]);
    // bob leaves; the same commit removes him from the record too.
    let yaml = std::fs::read_to_string(env.root().join("vars.yaml")).unwrap();
    std::fs::write(
        env.root().join("vars.yaml"),
        yaml.replace("admins: [alice, bob]", "admins: [alice]")
            .replace("  bob: { recipients: [\"", "  bobx: { recipients: [\"")
            .replace("bobx", "carol"),
    )
    .unwrap();
    let record = env.store().join("keys/vault.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    json["admins"].as_object_mut().unwrap().remove("bob");
    std::fs::write(&record, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    let out = env.vars(&["check"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        common::stderr(&out).contains("keys/vault.age is wrapped to 2 recipient(s)"),
        "{}",
        common::stderr(&out)
    );
    let admin = env.key("users/crs58.age").display().to_string();
    let out = env.vars(&["rekey", "--yes", "--remove-user", "bob", "-i", &admin]);
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    assert!(
        common::stderr(&out).contains("cannot be verified with the vault key"),
        "{}",
        common::stderr(&out)
    );
    assert!(
        common::stderr(&out).contains("--rotate-vault"),
        "{}",
        common::stderr(&out)
    );
    env.ok(&["rekey", "--yes", "--rotate-vault", "-i", &admin]);
    env.ok(&["check"]);
    // A deleted record: check fails, and rekey rotates.
    std::fs::remove_file(&record).unwrap();
    assert_eq!(env.vars(&["check"]).status.code(), Some(3));
    let out = env.vars(&["rekey", "--yes", "-i", &admin]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(
        common::stderr(&out).contains("rotate the vault key"),
        "{}",
        common::stderr(&out)
    );
    env.ok(&["check"]);
}

/// Review finding 3: a ciphertext copied from another instance (to have the admin's rekey
/// re-encrypt it to this instance's readers) names where it was written for, in its
/// authenticated header: check reports it, rekey refuses it, and the other host never reads it.
#[test]
fn a_ciphertext_copied_between_instances_is_refused() {
    if !sandboxed() || !common::require_tool("age", "apt-get install age") {
        return;
    }
    let env = two_machines();
    env.ok(&["generate"]);
    let store = env.store();
    // The attacker (who holds m2's host key) copies m1's instance over m2's.
    for f in ["token.age", "meta.json"] {
        std::fs::copy(
            store.join("machines/m1/tok").join(f),
            store.join("machines/m2/tok").join(f),
        )
        .unwrap();
    }
    let (code, json) = check_json(&env);
    assert_eq!(code, Some(3));
    assert!(
        json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["subject"] == "machines/m2/tok"
                && f["message"]
                    .as_str()
                    .unwrap()
                    .contains("written for machines/m1/tok/token")),
        "{json}"
    );
    let admin = env.key("users/crs58.age").display().to_string();
    for cmd in [
        &["rekey", "--yes", "-i", &admin][..],
        &["generate", "-i", &admin][..],
    ] {
        let out = env.vars(cmd);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{cmd:?}: {}",
            common::stderr(&out)
        );
        assert!(
            common::stderr(&out).contains("was written for machines/m1/tok/token"),
            "{}",
            common::stderr(&out)
        );
    }
    let m2 = env.key("hosts/galena");
    assert!(common::age_decrypt(&store.join("machines/m2/tok/token.age"), &m2).is_none());
}

/// Review finding 7: a commit carries a "crash leftover" `machines/m2/.tok.old`, a copy of
/// m1's instance, where m2 has none yet. Recovery makes live only what this machine moved
/// aside (its journal is outside the repository), so `generate` writes m2 a fresh token and
/// never re-encrypts m1's to m2; `check` reports the leftover.
#[test]
fn a_committed_crash_leftover_is_not_restored() {
    if !sandboxed() || !common::require_tool("age", "apt-get install age") {
        return;
    }
    let env = two_machines();
    env.ok(&["generate"]);
    let store = env.store();
    std::fs::remove_dir_all(store.join("machines/m2/tok")).unwrap();
    let planted = store.join("machines/m2/.tok.old");
    common::copy_dir(&store.join("machines/m1/tok"), &planted);
    let meta = std::fs::read_to_string(planted.join("meta.json")).unwrap();
    std::fs::write(
        planted.join("meta.json"),
        meta.replace("machine:m1", "machine:m2"),
    )
    .unwrap();
    let (code, json) = check_json(&env);
    assert_eq!(code, Some(3), "{json}");
    assert!(
        finding_kinds(&json).contains(&("leftover".into(), "machines/m2/.tok.old".into())),
        "{json}"
    );
    let admin = env.key("users/crs58.age").display().to_string();
    env.ok(&["generate", "-i", &admin]);
    let m2 = env.key("hosts/galena");
    let m2_token = common::age_decrypt(&store.join("machines/m2/tok/token.age"), &m2)
        .expect("m2 reads its own fresh token");
    let m1_token = env.ok(&["get", "machines/m1/tok/token", "-i", &admin]);
    assert_ne!(m2_token, m1_token, "m1's token was made m2's");
    assert!(
        planted.is_dir(),
        "the leftover stays for a person to delete"
    );
    let (code, json) = check_json(&env);
    assert_eq!(code, Some(3), "{json}");
    std::fs::remove_dir_all(&planted).unwrap();
    env.ok(&["check"]);
}

/// Review 2, finding 9 (the `check` side): an undeclared instance of a declared generator,
/// whose `meta.json` calls the generator's secret public, holds the plaintext: `check` fails
/// on it, not only warns that the instance is orphaned.
#[test]
fn plaintext_in_an_undeclared_instance_of_a_declared_generator_fails_check() {
    if !sandboxed() {
        return;
    }
    let env = two_machines();
    env.ok(&["generate"]);
    let store = env.store();
    let ghost = store.join("machines/ghost/tok");
    std::fs::create_dir_all(&ghost).unwrap();
    let meta = std::fs::read_to_string(store.join("machines/m1/tok/meta.json")).unwrap();
    std::fs::write(
        ghost.join("meta.json"),
        meta.replace("\"secret\": true", "\"secret\": false")
            .replace("m1", "ghost"),
    )
    .unwrap();
    std::fs::write(ghost.join("token"), "PLAINTEXT-TOKEN").unwrap();
    let (code, json) = check_json(&env);
    assert_eq!(code, Some(3), "{json}");
    let kinds = finding_kinds(&json);
    assert!(
        kinds.contains(&("tampered".into(), "machines/ghost/tok/token".into())),
        "{json}"
    );
    assert!(
        kinds.contains(&("orphaned".into(), "machines/ghost/tok".into())),
        "{json}"
    );
}

/// Review 3, finding 3: a committed spare nested a thousand levels deep made recovery keep a
/// descriptor open per level, so every locking command failed with "too many open files"
/// under a 128-descriptor limit. Removal now keeps one directory open at a time.
#[test]
fn a_deeply_nested_committed_spare_is_removed_within_few_descriptors() {
    if !sandboxed() {
        return;
    }
    let env = two_machines();
    env.ok(&["generate"]);
    let spare = env.store().join(".vars-swap-x");
    let deep: std::path::PathBuf = std::iter::repeat_n("d", 1000).collect();
    std::fs::create_dir_all(spare.join(&deep)).unwrap();
    std::fs::write(spare.join(&deep).join("f"), "x").unwrap();
    std::fs::write(spare.join("d/g"), "y").unwrap();
    let vars = env.command(&["generate"]);
    let mut limited = std::process::Command::new("sh");
    limited
        .args(["-c", "ulimit -n 128 && exec \"$0\" \"$@\""])
        .arg(vars.get_program())
        .args(vars.get_args())
        .current_dir(env.root())
        .env_clear();
    for (k, v) in vars.get_envs() {
        if let Some(v) = v {
            limited.env(k, v);
        }
    }
    let out = limited.output().unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(!spare.exists(), "the spare is gone");
    env.ok(&["check"]);
}

/// `settings.store` may not lead out of the repository nor into `.git` (where the files
/// vars writes would sit among git's hooks and config).
#[test]
fn a_store_outside_the_repository_or_in_git_is_refused() {
    for store in [
        "../elsewhere",
        "/tmp/vars-store",
        ".git/vars",
        "sub/.GIT",
        "vars/../..",
        ".g\u{200c}it/vars",
        ".git./vars",
        "GIT~1/vars",
    ] {
        let env = TestEnv::yaml(&format!(
            "version: 1\nsettings: {{ store: '{store}' }}\nadmins: [alice]\nusers:\n  alice: {{ recipients: [\"{{admin}}\"] }}\n"
        ));
        for cmd in [&["check"][..], &["generate"][..]] {
            let out = env.vars(cmd);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{store} {cmd:?}: {}",
                common::stderr(&out)
            );
            assert!(
                common::stderr(&out).contains("must be a relative path inside the repository"),
                "{store}: {}",
                common::stderr(&out)
            );
        }
        let written: Vec<_> = common::walk(&env.root())
            .into_iter()
            .filter(|p| !p.ends_with("vars.yaml"))
            .collect();
        assert!(written.is_empty(), "{store}: {written:?}");
    }
}

/// Review finding 5: a machine's `{ generated: … }` recipient is as opaque as `vault.pub`. A
/// commit that swaps it for the attacker's key must not get the machine's secrets encrypted
/// to that key on the next `generate`; a regeneration by this machine, or a change the person
/// confirms with `vars trust`, is taken.
#[test]
fn a_swapped_generated_recipient_is_not_encrypted_to() {
    if !sandboxed()
        || !common::require_tool("age", "apt-get install age")
        || !common::require_tool("ssh-keygen", "apt-get install openssh-client")
    {
        return;
    }
    let env = TestEnv::yaml(
        r#"version: 1
admins: [alice]
users:
  alice: { recipients: ["{admin}"] }
machines:
  fresh:
    recipients: [{ generated: ssh-host-ed25519/ssh_host_ed25519_key.pub }]
    generators: [ssh-host-ed25519, app]
generators:
  app:
    share: false
    files: { token: {} }
    script: head -c 12 /dev/urandom | base64 > "$out/token"
"#,
    );
    let admin = env.key("users/crs58.age").display().to_string();
    env.ok(&["generate", "-i", &admin]);
    let key_pub = env
        .store()
        .join("machines/fresh/ssh-host-ed25519/ssh_host_ed25519_key.pub");
    // This machine regenerating the key is no change to confirm.
    env.ok(&["generate", "--regenerate", "ssh-host-ed25519", "-i", &admin]);
    env.ok(&["generate", "--regenerate", "app", "-i", &admin]);
    let (attacker, attacker_id) = forged_key(&env, "attacker");
    std::fs::write(&key_pub, format!("{attacker}\n")).unwrap();
    let out = env.vars(&["generate", "--regenerate", "app", "-i", &admin]);
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    assert!(
        common::stderr(&out).contains("changed since this machine last used")
            && common::stderr(&out).contains("vars trust"),
        "{}",
        common::stderr(&out)
    );
    let out = env.vars(&["rekey", "--yes", "-i", &admin]);
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    let token = env.store().join("machines/fresh/app/token.age");
    assert!(common::age_decrypt(&token, &attacker_id).is_none());
    // Read-only commands still work, and the person can confirm the change.
    env.ok(&["list"]);
    let out = env.vars(&[
        "trust",
        "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq",
    ]);
    assert_eq!(out.status.code(), Some(1));
    env.ok(&["trust", &attacker]);
    env.ok(&["generate", "--regenerate", "app", "-i", &admin]);
    assert!(
        common::age_decrypt(&token, &attacker_id).is_some(),
        "once confirmed, the machine's new key reads its secrets"
    );
}
