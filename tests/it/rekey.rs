//! `vars rekey` end to end: the seed scenario (a second laptop and its user join), exactly the
//! stale secrets re-encrypted, confirmation and dry-run exit codes, intent flags checked
//! against vars.yaml, admins added (re-wrap only) and removed (vault rotation).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::common::{self, TestEnv};

fn tools() -> bool {
    common::require_tool("bwrap", "apt-get install bubblewrap")
        && common::require_tool("age", "apt-get install age")
}

fn snapshot(env: &TestEnv) -> BTreeMap<PathBuf, Vec<u8>> {
    common::files_in(&env.store())
}

fn changed(
    before: &BTreeMap<PathBuf, Vec<u8>>,
    after: &BTreeMap<PathBuf, Vec<u8>>,
    store: &std::path::Path,
) -> Vec<String> {
    let mut out: Vec<String> = after
        .iter()
        .filter(|(p, b)| before.get(*p) != Some(*b))
        .map(|(p, _)| p.strip_prefix(store).unwrap().display().to_string())
        .collect();
    out.extend(
        before
            .keys()
            .filter(|p| !after.contains_key(*p))
            .map(|p| format!("-{}", p.strip_prefix(store).unwrap().display())),
    );
    out.sort();
    out
}

/// DESIGN's seed scenario on darwin2: one laptop and one user, then a second laptop and its
/// user join.
#[test]
fn second_laptop_and_user_join() {
    if !tools() {
        return;
    }
    let env = TestEnv::fleet("darwin2");
    let seth = env.key("users/seth.age").display().to_string();
    let prompts = crate::fleets::prompts("darwin2");
    let mut args: Vec<&str> = vec!["--config", "stage1.vars.yaml", "generate"];
    args.extend(prompts.iter().map(String::as_str));
    env.ok(&args);
    env.ok(&["--config", "stage1.vars.yaml", "check"]);
    crate::fleets::verify_readers(&env);

    // air13 and maya are declared in vars.yaml (the full fleet).
    let out = env.vars(&["check"]);
    assert_eq!(out.status.code(), Some(3));
    let err = common::stderr(&out);
    assert!(
        err.contains("shared/wifi-psk: psk: not readable yet by machine air13"),
        "{err}"
    );

    let before = snapshot(&env);
    let mut args: Vec<&str> = vec!["generate", "--machine", "air13", "--identity", &seth];
    args.extend(prompts.iter().map(String::as_str));
    env.ok(&args);
    let diff = changed(&before, &snapshot(&env), &env.store());
    // seth's own instances are untouched by a new laptop joining.
    assert!(
        !diff
            .iter()
            .any(|f| f.starts_with("users/seth/") && !f.ends_with("manifest.json")),
        "{diff:?}"
    );
    assert!(
        !diff
            .iter()
            .any(|f| f.starts_with("machines/megabookpro/ssh-host")),
        "{diff:?}"
    );

    let out = env.vars(&["rekey", "--add-user", "maya", "--yes", "--identity", &seth]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    env.ok(&["check"]);
    crate::fleets::verify_readers(&env);
    // Both hosts read the shared secret with the age program.
    let psk = env.store().join("shared/wifi-psk/psk.age");
    for host in ["megabookpro", "air13"] {
        assert!(
            common::age_decrypt(&psk, &env.key(&format!("hosts/{host}"))).is_some(),
            "{host}"
        );
    }
}

#[test]
fn rekey_touches_exactly_the_stale_secrets() {
    if !tools() {
        return;
    }
    let env = crate::fleets::generated("clan8");
    let admin = env.key("users/crs58.age").display().to_string();
    // raquel's laptop gets a second host key (rosegold's, which shared/zerotier-network is
    // already encrypted to): only what blackphos reads and that key does not is stale.
    let extra =
        std::fs::read_to_string(common::repo().join("testdata/keys/clan8/hosts/rosegold.pub"))
            .unwrap();
    let yaml = std::fs::read_to_string(env.root().join("vars.yaml")).unwrap();
    let marker = "root@blackphos\"]";
    assert!(yaml.contains(marker));
    let yaml = yaml.replace(marker, &format!("root@blackphos\", \"{}\"]", extra.trim()));
    std::fs::write(env.root().join("vars.yaml"), yaml).unwrap();

    let out = env.vars(&["rekey", "--dry-run"]);
    assert_eq!(out.status.code(), Some(3), "{}", common::stderr(&out));
    assert!(
        common::stderr(&out).contains(
            "re-encrypt machines/blackphos/tailscale-authkey/authkey (+ machine blackphos)"
        ),
        "{}",
        common::stderr(&out)
    );

    // Without a terminal rekey needs --yes.
    let out = env.vars(&["rekey"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(common::stderr(&out).contains("--yes"));

    let before = snapshot(&env);
    env.ok(&["rekey", "--yes", "--identity", &admin]);
    let diff = changed(&before, &snapshot(&env), &env.store());
    assert_eq!(
        diff,
        vec![
            "machines/blackphos/tailscale-authkey/authkey.age",
            "machines/blackphos/tailscale-authkey/meta.json",
            "users/raquel/user-password/meta.json",
            "users/raquel/user-password/password-hash.age",
        ]
    );
    let out = env.vars(&["rekey", "--dry-run"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "nothing stale now: {}",
        common::stderr(&out)
    );
    env.ok(&["check"]);
}

#[test]
fn intent_flags_must_agree_with_vars_yaml() {
    let env = TestEnv::fleet("darwin2");
    let prompts = crate::fleets::prompts("darwin2");
    if !tools() {
        return;
    }
    let mut args: Vec<&str> = vec!["generate"];
    args.extend(prompts.iter().map(String::as_str));
    env.ok(&args);
    for (flags, needle) in [
        (
            vec!["--add-user", "zoe"],
            "user \"zoe\" is not declared in vars.yaml",
        ),
        (
            vec!["--add-machine", "nope"],
            "machine \"nope\" is not declared",
        ),
        (
            vec!["--remove-user", "maya"],
            "user \"maya\" is still declared in vars.yaml",
        ),
    ] {
        let mut args = vec!["rekey", "--yes"];
        args.extend(flags);
        let out = env.vars(&args);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            common::stderr(&out).contains(needle),
            "{}",
            common::stderr(&out)
        );
    }
}

#[test]
fn adding_an_admin_rewraps_only_the_vault() {
    if !tools() {
        return;
    }
    let env = crate::fleets::generated("darwin2");
    let seth = env.key("users/seth.age").display().to_string();
    let yaml = std::fs::read_to_string(env.root().join("vars.yaml")).unwrap();
    let yaml = yaml.replace("admins: [seth]", "admins: [seth, maya]");
    assert!(
        yaml.contains("admins: [seth, maya]"),
        "fixture layout changed"
    );
    std::fs::write(env.root().join("vars.yaml"), yaml).unwrap();
    let before = snapshot(&env);
    let out = env.vars(&["rekey", "--add-user", "maya", "--yes", "--identity", &seth]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(
        common::stderr(&out).contains("re-wrap keys/vault.age (+ admin maya)"),
        "{}",
        common::stderr(&out)
    );
    assert_eq!(
        changed(&before, &snapshot(&env), &env.store()),
        vec!["keys/vault.age", "keys/vault.json"]
    );
    // maya can now read seth's secrets through the vault.
    let maya = env.key("users/maya.age").display().to_string();
    let out = env.vars(&[
        "get",
        "users/seth/git-signing-key/signing-key",
        "--identity",
        &maya,
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("OPENSSH PRIVATE KEY"));
}

#[test]
fn removing_an_admin_rotates_the_vault_and_lists_what_they_could_read() {
    if !tools() {
        return;
    }
    let env = crate::fleets::generated("clan8");
    let crs58 = env.key("users/crs58.age").display().to_string();
    let cameron = env.key("users/cameron.age");
    let yaml = std::fs::read_to_string(env.root().join("vars.yaml")).unwrap();
    let start = yaml.find("  cameron:\n").unwrap();
    let end = start + yaml[start..].find("  raquel:").unwrap();
    let yaml = format!("{}{}", &yaml[..start], &yaml[end..])
        .replace("admins: [crs58, cameron]", "admins: [crs58]")
        .replace("users: [crs58, cameron]", "users: [crs58]")
        .replace(
            "users: [christophersmith, cameron]",
            "users: [christophersmith]",
        );
    std::fs::write(env.root().join("vars.yaml"), yaml).unwrap();
    let old_vault = std::fs::read(env.store().join("keys/vault.pub")).unwrap();

    let out = env.vars(&[
        "rekey",
        "--remove-user",
        "cameron",
        "--yes",
        "--identity",
        &crs58,
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let err = common::stderr(&out);
    assert!(
        err.contains("rotate the vault key (admin cameron was removed)"),
        "{err}"
    );
    assert!(
        err.contains("users/cameron/user-password/password-hash"),
        "{err}"
    );
    assert!(
        err.contains("machines/cinnabar/borg-passphrase/passphrase")
            || err.contains("every secret"),
        "{err}"
    );
    assert_ne!(
        std::fs::read(env.store().join("keys/vault.pub")).unwrap(),
        old_vault
    );
    assert!(!env.store().join("users/cameron").exists());
    env.ok(&["check"]);
    // cameron's key opens neither the new vault nor anything re-encrypted.
    assert!(common::age_decrypt(&env.store().join("keys/vault.age"), &cameron).is_none());
    for f in common::walk(&env.store())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "age"))
    {
        assert!(
            common::age_decrypt(&f, &cameron).is_none(),
            "{}",
            f.display()
        );
    }
    // crs58 still reads everything through the new vault.
    let out = env.vars(&[
        "get",
        "machines/galena/borg-passphrase/passphrase",
        "--identity",
        &crs58,
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
}

#[test]
fn rotate_vault_on_demand_keeps_every_plaintext() {
    if !tools() {
        return;
    }
    let env = crate::fleets::generated("mesh17");
    let ada = env.key("users/ada.age").display().to_string();
    let get = |path: &str| {
        let out = env.vars(&["get", path, "--identity", &ada]);
        assert!(out.status.success(), "{}", common::stderr(&out));
        out.stdout
    };
    let paths = [
        "machines/cortex-beta/wireguard-key/private-key",
        "shared/mesh-psk/psk",
        "machines/cortex-alpha/wireguard-hub/peers-psk.conf",
    ];
    let before: Vec<Vec<u8>> = paths.iter().map(|p| get(p)).collect();
    let out = env.vars(&["rekey", "--rotate-vault", "--yes", "--identity", &ada]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let after: Vec<Vec<u8>> = paths.iter().map(|p| get(p)).collect();
    assert_eq!(before, after);
    env.ok(&["check"]);
}

#[test]
fn bad_identities_and_a_damaged_vault_change_nothing() {
    if !tools() {
        return;
    }
    let env = crate::fleets::generated("clan8");
    let yaml = std::fs::read_to_string(env.root().join("vars.yaml")).unwrap();
    std::fs::write(
        env.root().join("vars.yaml"),
        yaml.replace(
            "admins: [crs58, cameron]",
            "admins: [crs58, cameron, raquel]",
        ),
    )
    .unwrap();
    let before = snapshot(&env);
    // raquel is not an admin yet: her key decrypts no vault.
    let raquel = env.key("users/raquel.age").display().to_string();
    let out = env.vars(&["rekey", "--yes", "--identity", &raquel]);
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(
        err.contains("none of your identities can decrypt") && err.contains("admins:"),
        "{err}"
    );
    assert_eq!(
        changed(&before, &snapshot(&env), &env.store()),
        Vec::<String>::new()
    );

    // A corrupted vault.age is reported, and nothing changes.
    let vault = env.store().join("keys/vault.age");
    std::fs::write(&vault, b"-----BEGIN AGE ENCRYPTED FILE-----\ngarbage\n").unwrap();
    let before = snapshot(&env);
    let crs58 = env.key("users/crs58.age").display().to_string();
    let out = env.vars(&["rekey", "--yes", "--identity", &crs58]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::stderr(&out).contains("keys/vault.age"),
        "{}",
        common::stderr(&out)
    );
    assert_eq!(
        changed(&before, &snapshot(&env), &env.store()),
        Vec::<String>::new()
    );
}

#[test]
fn meta_json_that_does_not_match_the_ciphertext_is_reported() {
    if !tools() {
        return;
    }
    let env = crate::fleets::generated("darwin2");
    let meta_path = env
        .store()
        .join("machines/megabookpro/ssh-host-ed25519/meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    // Claim one recipient fewer than the file really has.
    let recipients = meta["files"]["ssh_host_ed25519_key"]["recipients"]
        .as_array_mut()
        .unwrap();
    recipients.pop();
    std::fs::write(&meta_path, serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
    let out = env.vars(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let damaged: Vec<&str> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "damaged")
        .map(|f| f["message"].as_str().unwrap())
        .collect();
    assert!(
        damaged.iter().any(|m| m.contains(
            "ssh_host_ed25519_key.age is encrypted to 2 recipient(s) but meta.json lists 1"
        )),
        "{json}"
    );
}
