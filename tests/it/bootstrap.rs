//! A new host in one deploy (issue 11, item 7): a machine whose recipient is a public file of
//! its own generated host key. That instance is readable by the vault only, everything else of
//! the machine is encrypted to the new key, and `vars bootstrap` writes the key for the first
//! boot; the real `age` then decrypts the machine's secrets with it.

use crate::common::{self, Lab, TestEnv, request};

const FLEET: &str = r#"version: 1
admins: [alice]
users:
  alice: { recipients: ["{admin}"] }
machines:
  fresh:
    recipients: [{ generated: ssh-host-ed25519/ssh_host_ed25519_key.pub }]
    generators: [ssh-host-ed25519, app]
  old: { recipients: ["{host}"], generators: [app] }
generators:
  app:
    share: false
    files: { token: {} }
    script: head -c 12 /dev/urandom | base64 > "$out/token"
"#;

fn recipients(lab: &Lab, rel: &str) -> Vec<String> {
    let meta: serde_json::Value = serde_json::from_slice(&lab.read(rel)).unwrap();
    let files = meta["files"].as_object().unwrap();
    let secret = files.values().find(|f| f["secret"] == true).unwrap();
    secret["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_generated_host_key_is_the_machine_recipient() {
    if !common::require_tool("ssh-keygen", "apt-get install openssh-client") {
        return;
    }
    let lab = Lab::new(FLEET);
    lab.generate(&request(&[], false), &[]).unwrap();
    let host_pub =
        String::from_utf8(lab.read("machines/fresh/ssh-host-ed25519/ssh_host_ed25519_key.pub"))
            .unwrap();
    let host_pub = host_pub.trim().to_owned();
    // The key's own instance: the vault only. The machine's other secrets: the key and vault.
    assert_eq!(
        recipients(&lab, "machines/fresh/ssh-host-ed25519/meta.json").len(),
        1
    );
    let app = recipients(&lab, "machines/fresh/app/meta.json");
    assert_eq!(app.len(), 2);
    assert!(app.contains(&host_pub), "{app:?}");
    assert!(lab.check().is_empty(), "{:?}", lab.check());
    // Regenerating the host key re-encrypts the machine's secrets to the new one.
    lab.generate(&request(&["machines/fresh/ssh-host-ed25519"], true), &[])
        .unwrap();
    let new_pub =
        String::from_utf8(lab.read("machines/fresh/ssh-host-ed25519/ssh_host_ed25519_key.pub"))
            .unwrap();
    assert_ne!(new_pub.trim(), host_pub);
    assert!(recipients(&lab, "machines/fresh/app/meta.json").contains(&new_pub.trim().to_owned()));
    assert!(lab.check().is_empty(), "{:?}", lab.check());
}

#[test]
fn bootstrap_writes_the_host_key_that_decrypts_the_machine() {
    if !common::require_tool("bwrap", "apt-get install bubblewrap")
        || !common::require_tool("age", "apt-get install age")
    {
        return;
    }
    let env = TestEnv::yaml(FLEET);
    env.ok(&["generate"]);
    env.ok(&["check"]);
    let admin = env.key("users/crs58.age").display().to_string();
    let dir = env.dir.path().join("extra-files");
    let out = env.vars(&[
        "bootstrap",
        "--machine",
        "old",
        dir.to_str().unwrap(),
        "-i",
        &admin,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::stderr(&out).contains("no generated recipient"),
        "{}",
        common::stderr(&out)
    );
    env.ok(&[
        "bootstrap",
        "--machine",
        "fresh",
        dir.to_str().unwrap(),
        "-i",
        &admin,
    ]);
    let key = dir.join("etc/ssh/ssh_host_ed25519_key");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(dir.join("etc/ssh/ssh_host_ed25519_key.pub").is_file());
    let token = common::age_decrypt(&env.store().join("machines/fresh/app/token.age"), &key);
    assert!(
        token.is_some_and(|t| !t.is_empty()),
        "the new host reads its secrets"
    );
    assert!(
        common::age_decrypt(&env.store().join("machines/old/app/token.age"), &key).is_none(),
        "and nothing of another machine"
    );
    // Never overwritten.
    let out = env.vars(&[
        "bootstrap",
        "--machine",
        "fresh",
        dir.to_str().unwrap(),
        "-i",
        &admin,
    ]);
    assert_eq!(out.status.code(), Some(1));
}
