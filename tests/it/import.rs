//! `vars import` end to end (issue 13) with the real `age`, `sops` and `nix-instantiate`: an
//! agenix repository, a clan store and sops-nix files built in the test are imported into the
//! darwin2 fleet; afterwards `vars check` passes, nothing regenerates, the values are the same
//! and exactly the same machines read them (with the `age` program and their host keys). Bad
//! input changes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{self, TestEnv};

fn tools() -> bool {
    common::require_tool("bwrap", "apt-get install bubblewrap")
        && common::require_tool("age", "apt-get install age")
        && common::require_tool("nix-instantiate", "apt-get install nix-bin")
}

/// Everything of the repo an import may change: vars.yaml, generators/ and the store.
fn snapshot(env: &TestEnv) -> BTreeMap<PathBuf, Vec<u8>> {
    common::files_in(&env.root())
}

fn pubkey(env: &TestEnv, rel: &str) -> String {
    std::fs::read_to_string(
        common::repo()
            .join("testdata/keys")
            .join(&env.fleet)
            .join(rel),
    )
    .unwrap()
    .trim()
    .to_owned()
}

fn age_encrypt(out: &Path, plain: &[u8], recipients: &[&str], armor: bool) {
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let mut cmd = Command::new("age");
    for r in recipients {
        cmd.arg("-r").arg(r);
    }
    if armor {
        cmd.arg("-a");
    }
    let mut child = cmd
        .arg("-o")
        .arg(out)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(plain).unwrap();
    assert!(child.wait().unwrap().success());
}

/// The darwin2 fleet, generated, and seth's (the admin's) identity.
fn fleet() -> (TestEnv, String) {
    let env = crate::fleets::generated("darwin2");
    let seth = env.key("users/seth.age").display().to_string();
    (env, seth)
}

/// An agenix repository beside the fleet: let bindings, a nested path, an armored file, a
/// recipient given in its ssh-to-age form, a user secret and an admin-only one.
fn agenix_repo(env: &TestEnv) -> PathBuf {
    let dir = env.dir.path().join("agenix");
    let mbp = pubkey(env, "hosts/megabookpro.pub");
    let air = pubkey(env, "hosts/air13.pub");
    let air_age = vars::import::ssh_to_age(&air).unwrap();
    let seth = pubkey(env, "users/seth.pub");
    let maya = pubkey(env, "users/maya.pub");
    std::fs::create_dir_all(dir.join("api")).unwrap();
    std::fs::write(
        dir.join("secrets.nix"),
        format!(
            r#"let
  megabookpro = "{mbp}";
  air13 = "{air_age}";   # ssh-to-age of air13's host key
  seth = "{seth}";
  maya = "{maya}";
  laptops = [ megabookpro air13 ];
in {{
  "api/token.age".publicKeys = [ seth megabookpro ];
  "wifi.age" = {{ publicKeys = [ seth ] ++ laptops; armor = true; }};
  "maya-note.age".publicKeys = [ seth maya ];
  "admin-only.age".publicKeys = [ seth ];
}}
"#
        ),
    )
    .unwrap();
    age_encrypt(
        &dir.join("api/token.age"),
        b"tok-123",
        &[&seth, &mbp],
        false,
    );
    age_encrypt(
        &dir.join("wifi.age"),
        b"wifi-psk\n",
        &[&seth, &mbp, &air_age],
        true,
    );
    age_encrypt(&dir.join("maya-note.age"), b"note", &[&seth, &maya], false);
    age_encrypt(&dir.join("admin-only.age"), b"adm", &[&seth], false);
    age_encrypt(
        &dir.join("sentinel.age"),
        sentinel().as_bytes(),
        &[&seth, &mbp],
        false,
    );
    let rules = std::fs::read_to_string(dir.join("secrets.nix")).unwrap();
    let rules = rules.replace(
        "\"admin-only.age\".publicKeys = [ seth ];",
        "\"admin-only.age\".publicKeys = [ seth ];\n  \"sentinel.age\".publicKeys = [ seth megabookpro ];",
    );
    std::fs::write(dir.join("secrets.nix"), rules).unwrap();
    dir
}

/// A value made fresh each run: no file can hold it by accident.
fn sentinel() -> &'static str {
    static S: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    S.get_or_init(|| format!("SENTINEL-{}", &vars::crypto::new_identity().1[5..29]))
}

/// Files below `dir` holding the sentinel in plaintext.
fn holding_sentinel(dir: &Path) -> Vec<PathBuf> {
    common::walk(dir)
        .into_iter()
        .filter(|p| {
            std::fs::read(p).is_ok_and(|b| {
                b.windows(sentinel().len())
                    .any(|w| w == sentinel().as_bytes())
            })
        })
        .collect()
}

#[test]
fn agenix_moves_to_vars_with_one_command() {
    if !tools() {
        return;
    }
    let (env, seth) = fleet();
    let rules = agenix_repo(&env).join("secrets.nix");
    let rules = rules.display().to_string();
    let before = snapshot(&env);
    let out = env.vars(&["import", "agenix", &rules, "-i", &seth, "--dry-run"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(before == snapshot(&env), "a dry run changed something");
    let err = common::stderr(&out);
    for want in [
        "machines/megabookpro/api-token from api/token.age: read by machine megabookpro",
        "shared/wifi from wifi.age: read by machine air13, machine megabookpro",
        // maya's machine (air13) does not read it in agenix: a shared instance keeps it so.
        "shared/maya-note from maya-note.age: read by user maya",
        "users/seth/admin-only from admin-only.age: read by admins only",
        "vars.yaml: machines.air13.generators += wifi",
        "was ASCII-armored",
    ] {
        assert!(err.contains(want), "missing {want:?}:\n{err}");
    }

    let out = env.vars(&["import", "agenix", &rules, "-i", &seth]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(!common::stderr(&out).contains(sentinel()));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(!table.contains(sentinel()));
    assert_eq!(holding_sentinel(env.dir.path()), Vec::<PathBuf>::new());
    assert!(
        table.contains("(age.secrets.<name>.file = …/api/token.age)")
            && table.contains("config.vars.generators.api-token.files.token.path"),
        "{table}"
    );
    env.ok(&["check"]);
    let get = |p: &str| env.ok(&["get", "-i", &seth, p]);
    assert_eq!(get("machines/megabookpro/api-token/token"), b"tok-123");
    assert_eq!(get("shared/wifi/wifi"), b"wifi-psk\n");
    assert_eq!(get("shared/maya-note/maya-note"), b"note");
    assert_eq!(get("users/seth/admin-only/admin-only"), b"adm");
    // Exactly the agenix readers: megabookpro and air13 read wifi; air13 not the token.
    let store = env.store();
    let key = |h: &str| env.key(&format!("hosts/{h}"));
    assert!(common::age_decrypt(&store.join("shared/wifi/wifi.age"), &key("air13")).is_some());
    assert!(
        common::age_decrypt(
            &store.join("machines/megabookpro/api-token/token.age"),
            &key("air13")
        )
        .is_none()
    );
    assert!(
        common::age_decrypt(&store.join("shared/maya-note/maya-note.age"), &key("air13")).is_none()
    );
    assert!(
        common::age_decrypt(
            &store.join("shared/maya-note/maya-note.age"),
            &env.key("users/maya.age")
        )
        .is_some()
    );
    crate::fleets::verify_readers(&env);
    // The generators are declared and can never run.
    let text = std::fs::read_to_string(env.root().join("generators/api-token.yaml")).unwrap();
    assert!(
        text.contains("exit 1") && text.contains("imported from agenix: api/token.age"),
        "{text}"
    );
    let yaml = std::fs::read_to_string(env.root().join("vars.yaml")).unwrap();
    assert!(
        yaml.contains("# joined later: shared secrets are re-encrypted, not regenerated"),
        "comments kept"
    );
    // Nothing regenerates.
    let out = env.vars(&["generate", "-i", &seth]);
    assert!(
        common::stderr(&out).contains("Nothing to do"),
        "{}",
        common::stderr(&out)
    );
    assert_eq!(get("shared/wifi/wifi"), b"wifi-psk\n");
    // A second import of the same rules collides with what the first created.
    let out = env.vars(&["import", "agenix", &rules, "-i", &seth]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::stderr(&out).contains("which vars.yaml already has"),
        "{}",
        common::stderr(&out)
    );
}

#[test]
fn bad_agenix_input_gets_a_clear_error_and_changes_nothing() {
    if !tools() {
        return;
    }
    let (env, seth) = fleet();
    let dir = agenix_repo(&env);
    let rules = dir.join("secrets.nix");
    let original = std::fs::read_to_string(&rules).unwrap();
    let r = rules.display().to_string();
    let run = |extra: &[&str]| {
        let mut args = vec!["import", "agenix", r.as_str(), "-i", seth.as_str()];
        args.extend(extra);
        env.vars(&args)
    };
    let before = snapshot(&env);
    let expect = |out: std::process::Output, want: &str| {
        assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
        assert!(
            common::stderr(&out).contains(want),
            "want {want:?}:\n{}",
            common::stderr(&out)
        );
        assert!(before == snapshot(&env), "{want}: the repo changed");
    };

    std::fs::write(&rules, "{ \"x.age\".publicKeys = [ ; }").unwrap();
    expect(run(&[]), "does not evaluate");
    std::fs::write(&rules, "{ \"x.age\" = 42; }").unwrap();
    expect(run(&[]), "does not evaluate");

    // A file encrypted to nobody here; a recipient nobody declares.
    let (_, stranger) = vars::crypto::new_identity();
    let seth_r = pubkey(&env, "users/seth.pub");
    age_encrypt(&dir.join("lost.age"), b"x", &[&stranger], false);
    age_encrypt(
        &dir.join("shared-with-stranger.age"),
        b"y",
        &[&seth_r, &stranger],
        false,
    );
    std::fs::write(
        &rules,
        format!("{{ \"lost.age\".publicKeys = [ \"{stranger}\" ]; }}"),
    )
    .unwrap();
    expect(run(&[]), "none of your identities");
    expect(run(&["--yes"]), "none of your identities");
    std::fs::write(
        &rules,
        format!("{{ \"shared-with-stranger.age\".publicKeys = [ \"{seth_r}\" \"{stranger}\" ]; }}"),
    )
    .unwrap();
    expect(
        run(&[]),
        "is no machine's or user's in vars.yaml: it loses access",
    );
    // A path outside the rules' directory is never read.
    std::fs::write(&rules, "{ \"../outside.age\".publicKeys = [ ]; }").unwrap();
    std::fs::write(env.dir.path().join("outside.age"), b"x").unwrap();
    expect(run(&["--skip-undecryptable"]), "there is nothing to import");
    // Name collisions: with each other, with a generator vars.yaml has.
    std::fs::write(
        &rules,
        format!("{{ \"a-b.age\".publicKeys = [ \"{seth_r}\" ]; \"a/b.age\".publicKeys = [ \"{seth_r}\" ]; }}"),
    )
    .unwrap();
    age_encrypt(&dir.join("a-b.age"), b"1", &[&seth_r], false);
    age_encrypt(&dir.join("a/b.age"), b"2", &[&seth_r], false);
    expect(run(&[]), "would both become \"a-b\"");
    std::fs::write(
        &rules,
        format!("{{ \"wifi-psk.age\".publicKeys = [ \"{seth_r}\" ]; }}"),
    )
    .unwrap();
    age_encrypt(&dir.join("wifi-psk.age"), b"1", &[&seth_r], false);
    expect(run(&[]), "which vars.yaml already has");

    // With the flags the person accepts what the plan listed.
    std::fs::write(
        &rules,
        format!(
            "{{ \"lost.age\".publicKeys = [ \"{stranger}\" ]; \"shared-with-stranger.age\".publicKeys = [ \"{seth_r}\" \"{stranger}\" ]; }}{}",
            ""
        ),
    )
    .unwrap();
    let out = run(&["--yes", "--skip-undecryptable"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    env.ok(&["check"]);
    assert_eq!(
        env.ok(&[
            "get",
            "-i",
            &seth,
            "users/seth/shared-with-stranger/shared-with-stranger"
        ]),
        b"y"
    );
    std::fs::write(&rules, original).unwrap();
}

/// A clan store as clan's sops backend writes it, built with the real sops.
fn clan_repo(env: &TestEnv) -> PathBuf {
    let dir = env.dir.path().join("clan");
    let program = vars::sops::locate().unwrap();
    let seth = pubkey(env, "users/seth.pub");
    // clan gives each machine its own age key (sops/machines/<m>/key.json).
    let mut machine_keys = BTreeMap::new();
    for m in ["megabookpro", "air13"] {
        let (_, r) = vars::crypto::new_identity();
        let kdir = dir.join("sops/machines").join(m);
        std::fs::create_dir_all(&kdir).unwrap();
        std::fs::write(
            kdir.join("key.json"),
            format!("[{{\"publickey\": \"{r}\", \"type\": \"age\"}}]"),
        )
        .unwrap();
        machine_keys.insert(m, r);
    }
    std::fs::create_dir_all(dir.join("sops/users/seth")).unwrap();
    std::fs::write(
        dir.join("sops/users/seth/key.json"),
        format!("{{\"publickey\": \"{seth}\", \"type\": \"age\"}}"),
    )
    .unwrap();
    let secret = |rel: &str, value: &[u8], machines: &[&str]| {
        let fdir = dir.join("vars").join(rel);
        std::fs::create_dir_all(fdir.join("users")).unwrap();
        let mut recipients: Vec<&str> = vec![&seth];
        recipients.extend(machines.iter().map(|m| machine_keys[m].as_str()));
        let ct = program
            .encrypt(&vars::secret::SecretBytes::new(value.to_vec()), &recipients)
            .unwrap();
        std::fs::write(fdir.join("secret"), ct).unwrap();
        std::os::unix::fs::symlink("../../../../../../sops/users/seth", fdir.join("users/seth"))
            .unwrap();
        if !machines.is_empty() {
            std::fs::create_dir_all(fdir.join("machines")).unwrap();
        }
        for m in machines {
            std::os::unix::fs::symlink(
                format!("../../../../../../sops/machines/{m}"),
                fdir.join("machines").join(m),
            )
            .unwrap();
        }
    };
    let value = |rel: &str, bytes: &[u8]| {
        let fdir = dir.join("vars").join(rel);
        std::fs::create_dir_all(&fdir).unwrap();
        std::fs::write(fdir.join("value"), bytes).unwrap();
    };
    for m in ["megabookpro", "air13"] {
        secret(
            &format!("per-machine/{m}/openssh/ssh.id_ed25519"),
            format!("private-{m}").as_bytes(),
            &[m],
        );
        value(
            &format!("per-machine/{m}/openssh/ssh.id_ed25519.pub"),
            format!("public-{m}").as_bytes(),
        );
        std::fs::write(
            dir.join(format!("vars/per-machine/{m}/openssh/.validation-hash")),
            "abc",
        )
        .unwrap();
    }
    secret(
        "shared/zerotier/network-secret",
        b"zt-secret",
        &["megabookpro", "air13"],
    );
    value("shared/zerotier/network-id", b"8056c2e21c000001");
    secret("shared/zerotier/ca-key", b"never-deployed", &[]);
    std::fs::create_dir_all(dir.join("vars/per-export/x")).unwrap();
    dir
}

#[test]
fn a_clan_store_moves_to_vars() {
    if !tools() || crate::sops::sops().is_none() {
        return;
    }
    let (env, seth) = fleet();
    let clan = clan_repo(&env).display().to_string();
    // clan admins keep their key where sops looks for it; vars import looks there too.
    let out = env
        .command(&["import", "clan", &clan])
        .env("SOPS_AGE_KEY_FILE", &seth)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let err = common::stderr(&out);
    assert!(
        err.contains("clan exports have no vars equivalent"),
        "{err}"
    );
    assert!(
        err.contains("clan's age key of air13 is not among machines.air13.recipients"),
        "{err}"
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("config.clan.core.vars.generators.zerotier.files.network-id.path")
            && table.contains("config.vars.generators.zerotier.files.network-id.path"),
        "{table}"
    );
    env.ok(&["check"]);
    let get = |p: &str| env.ok(&["get", "-i", &seth, p]);
    assert_eq!(
        get("machines/air13/openssh/ssh.id_ed25519"),
        b"private-air13"
    );
    assert_eq!(
        get("machines/megabookpro/openssh/ssh.id_ed25519.pub"),
        b"public-megabookpro"
    );
    assert_eq!(get("shared/zerotier/network-secret"), b"zt-secret");
    assert_eq!(get("shared/zerotier/ca-key"), b"never-deployed");
    let meta: vars::meta::Meta = serde_json::from_slice(
        &std::fs::read(env.store().join("shared/zerotier/meta.json")).unwrap(),
    )
    .unwrap();
    assert!(!meta.files["ca-key"].deploy && meta.files["network-secret"].deploy);
    assert!(!meta.files["network-id"].secret);
    let store = env.store();
    let key = |h: &str| env.key(&format!("hosts/{h}"));
    assert!(
        common::age_decrypt(
            &store.join("machines/air13/openssh/ssh.id_ed25519.age"),
            &key("air13")
        )
        .is_some()
    );
    assert!(
        common::age_decrypt(
            &store.join("machines/air13/openssh/ssh.id_ed25519.age"),
            &key("megabookpro")
        )
        .is_none()
    );
    assert!(
        common::age_decrypt(&store.join("shared/zerotier/ca-key.age"), &key("air13")).is_none()
    );
    crate::fleets::verify_readers(&env);
    let text = std::fs::read_to_string(env.root().join("generators/zerotier.yaml")).unwrap();
    assert!(
        text.contains("share: true") && text.contains("deploy: false"),
        "{text}"
    );
}

#[test]
fn a_clan_store_with_an_undeclared_machine_or_a_broken_secret_changes_nothing() {
    if !tools() || crate::sops::sops().is_none() {
        return;
    }
    let (env, seth) = fleet();
    let dir = clan_repo(&env);
    let clan = dir.display().to_string();
    let before = snapshot(&env);
    // A machine vars.yaml does not declare.
    let cp = Command::new("cp")
        .arg("-a")
        .arg(dir.join("vars/per-machine/air13"))
        .arg(dir.join("vars/per-machine/ghost"))
        .status()
        .unwrap();
    assert!(cp.success());
    let out = env.vars(&["import", "clan", &clan, "-i", &seth]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::stderr(&out).contains("machine ghost is not declared in vars.yaml"),
        "{}",
        common::stderr(&out)
    );
    assert!(before == snapshot(&env));
    std::fs::remove_dir_all(dir.join("vars/per-machine/ghost")).unwrap();
    // A tampered secret: its MAC no longer matches.
    let secret = dir.join("vars/shared/zerotier/network-secret/secret");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&secret).unwrap()).unwrap();
    v["data"] = "".into();
    std::fs::write(&secret, serde_json::to_vec(&v).unwrap()).unwrap();
    let out = env.vars(&["import", "clan", &clan, "-i", &seth]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::stderr(&out).contains("its MAC does not match"),
        "{}",
        common::stderr(&out)
    );
    assert!(before == snapshot(&env));
    // Not a clan repository.
    let out = env.vars(&[
        "import",
        "clan",
        env.dir.path().to_str().unwrap(),
        "-i",
        &seth,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::stderr(&out).contains("name the clan repository"),
        "{}",
        common::stderr(&out)
    );
}

/// The X25519 identity ssh-to-age derives from an OpenSSH ed25519 private key (the first 32
/// bytes of SHA-512 of its seed), as an age identity file: what a sops-nix host decrypts with.
fn ssh_to_age_identity(openssh_private: &Path) -> String {
    use base64::Engine as _;
    let text = std::fs::read_to_string(openssh_private).unwrap();
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    fn u32_at(buf: &mut &[u8]) -> usize {
        let n = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
        *buf = &buf[4..];
        n
    }
    fn take(buf: &mut &[u8]) -> Vec<u8> {
        let n = u32_at(buf);
        let s = buf[..n].to_vec();
        *buf = &buf[n..];
        s
    }
    let mut rest: &[u8] = blob.strip_prefix(b"openssh-key-v1\0".as_slice()).unwrap();
    // cipher, kdf, kdf options, number of keys, public key, private section.
    let (_cipher, _kdf, _opts) = (take(&mut rest), take(&mut rest), take(&mut rest));
    let _keys = u32_at(&mut rest);
    let _public = take(&mut rest);
    let private = take(&mut rest);
    // check ints (8 bytes), key type, public key, then the 64-byte secret (seed ‖ public).
    let mut p: &[u8] = &private[8..];
    let (_ty, _pk, sk) = (take(&mut p), take(&mut p), take(&mut p));
    use sha2::Digest as _;
    let h = sha2::Sha512::digest(&sk[..32]);
    bech32::encode::<bech32::Bech32>(bech32::Hrp::parse("age-secret-key-").unwrap(), &h[..32])
        .unwrap()
        .to_uppercase()
}

#[test]
fn sops_nix_files_move_to_vars() {
    if !tools() {
        return;
    }
    let Some(sops) = crate::sops::sops() else {
        return;
    };
    let (env, seth) = fleet();
    let seth_r = pubkey(&env, "users/seth.pub");
    let mbp_age = vars::import::ssh_to_age(&pubkey(&env, "hosts/megabookpro.pub")).unwrap();
    let air_age = vars::import::ssh_to_age(&pubkey(&env, "hosts/air13.pub")).unwrap();
    // The age form is what the host's ssh key decrypts in sops-nix (and with the age program).
    let probe = env.dir.path().join("probe.age");
    age_encrypt(&probe, b"probe", &[&air_age], false);
    let id = env.dir.path().join("air13-x25519.txt");
    std::fs::write(&id, ssh_to_age_identity(&env.key("hosts/air13"))).unwrap();
    assert_eq!(common::age_decrypt(&probe, &id).unwrap(), b"probe");

    let (_, stranger) = vars::crypto::new_identity();
    let dir = env.dir.path().join("nixcfg/secrets");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.parent().unwrap().join(".sops.yaml"),
        format!(
            "keys:\n  - &admin_seth {seth_r}\n  - &server_oldbox {stranger}\ncreation_rules: []\n"
        ),
    )
    .unwrap();
    let plain = "\
wifi:
  home: hunter2
  guest: guestpass
api/token: tok-9
port: 5432
list: [a, b]
note_unencrypted: visible
";
    let file = dir.join("laptops.yaml");
    std::fs::write(&file, plain).unwrap();
    let out = Command::new(&sops)
        .env_clear()
        .env("HOME", env.dir.path())
        .env("SOPS_DISABLE_VERSION_CHECK", "1")
        .args(["--config", "/dev/null", "encrypt", "--age"])
        .arg(format!("{seth_r},{mbp_age},{air_age},{stranger}"))
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&file, &out.stdout).unwrap();
    let f = file.display().to_string();

    let before = snapshot(&env);
    let out = env.vars(&["import", "sops-nix", &f, "-i", &seth]);
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    let err = common::stderr(&out);
    assert!(err.contains("loses access"), "{err}");
    assert!(
        err.contains("machines.oldbox.recipients: [\""),
        "suggests the .sops.yaml name:\n{err}"
    );
    assert!(err.contains("port: is a int value, not a string"), "{err}");
    assert!(err.contains("list: is an item of a list"), "{err}");
    assert!(before == snapshot(&env));

    let out = env.vars(&["import", "sops-nix", &f, "-i", &seth, "--yes"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("config.sops.secrets.\"wifi/home\".path")
            && table.contains("config.vars.generators.laptops.files.wifi.home.path"),
        "{table}"
    );
    env.ok(&["check"]);
    let get = |p: &str| env.ok(&["get", "-i", &seth, p]);
    assert_eq!(get("shared/laptops/wifi.home"), b"hunter2");
    assert_eq!(get("shared/laptops/api-token"), b"tok-9");
    assert_eq!(get("shared/laptops/note_unencrypted"), b"visible");
    let meta: vars::meta::Meta = serde_json::from_slice(
        &std::fs::read(env.store().join("shared/laptops/meta.json")).unwrap(),
    )
    .unwrap();
    assert!(!meta.files["note_unencrypted"].secret && meta.files["wifi.guest"].secret);
    // Both laptops read it with their ssh host keys now.
    for h in ["megabookpro", "air13"] {
        let ct = env.store().join("shared/laptops/wifi.home.age");
        assert_eq!(
            common::age_decrypt(&ct, &env.key(&format!("hosts/{h}"))).unwrap(),
            b"hunter2"
        );
    }
    crate::fleets::verify_readers(&env);
}

#[test]
fn a_vars_yaml_that_cannot_be_edited_safely_is_left_alone() {
    if !tools() {
        return;
    }
    let env = TestEnv::fleet("darwin2");
    let seth = env.key("users/seth.age").display().to_string();
    let rules = agenix_repo(&env).join("secrets.nix");
    // machines: in flow style.
    let yaml = std::fs::read_to_string(env.root().join("vars.yaml")).unwrap();
    let mbp = pubkey(&env, "hosts/megabookpro.pub");
    let air = pubkey(&env, "hosts/air13.pub");
    let start = yaml.find("\nmachines:").unwrap();
    let end = yaml.find("\ntags:").unwrap();
    let flow = format!(
        "\nmachines: {{megabookpro: {{recipients: [\"{mbp}\"], tags: [laptop], users: [seth]}}, air13: {{recipients: [\"{air}\"], tags: [laptop], users: [maya]}}}}\n"
    );
    let yaml = format!("{}{flow}{}", &yaml[..start], &yaml[end..]);
    std::fs::write(env.root().join("vars.yaml"), &yaml).unwrap();
    env.ok(&["list"]);
    let before = snapshot(&env);
    let out = env.vars(&["import", "agenix", rules.to_str().unwrap(), "-i", &seth]);
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(
        err.contains("machines: is written in flow style") && err.contains("add by hand"),
        "{err}"
    );
    assert!(before == snapshot(&env));
}
