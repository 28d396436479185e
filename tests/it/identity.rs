//! Identities end to end: `vars keygen` (0600, never overwriting without --force, interop with
//! the Debian `age` program), passphrase-protected age identities and encrypted ssh keys with
//! VARS_PASSPHRASE_FILE, a plugin identity whose plugin is missing, the keyring identity, and
//! `vars unlock` / `vars lock` inside a kernel session keyring (`keyctl session -`).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use vars::secret::SecretBytes;

use crate::common::{self, TestEnv};
use crate::fleets;

/// seth's age recipient in testdata/fleets/darwin2/vars.yaml.
const SETH_AGE: &str = "age16w9metp0jujca6hppv6kkqx3m9z5efmfch3p9mkmampp3uwzmarsm097rv";
/// Encrypted to seth's recipients directly (a user secret).
const SETH_SECRET: &str = "users/seth/git-signing-key/signing-key";
/// Encrypted to the machines and the vault: seth reads it through the vault.
const VAULT_SECRET: &str = "shared/restic-password/password";

/// The keyring identity entry is per kernel user (and linked into the persistent keyring), so
/// tests that may read or write it take turns.
pub(crate) static KEYRING: Mutex<()> = Mutex::new(());

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn write_0600(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn get_with(env: &TestEnv, path: &str, identity: &Path, passphrase: Option<&Path>) -> Output {
    let mut c = env.command(&["get", path, "--identity", identity.to_str().unwrap()]);
    if let Some(p) = passphrase {
        c.env("VARS_PASSPHRASE_FILE", p);
    }
    c.output().unwrap()
}

fn tools(list: &[(&str, &str)]) -> bool {
    list.iter().all(|(t, hint)| common::require_tool(t, hint))
}

const BWRAP: (&str, &str) = ("bwrap", "apt-get install bubblewrap");
const AGE: (&str, &str) = ("age", "apt-get install age");
const KEYCTL: (&str, &str) = ("keyctl", "apt-get install keyutils");
const SSH_KEYGEN: (&str, &str) = ("ssh-keygen", "apt-get install openssh-client");

#[test]
fn keygen_creates_0600_refuses_overwrite_and_force_replaces() {
    let env = TestEnv::empty();
    let out = env.vars(&["keygen"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let recipient = stdout(&out).trim().to_owned();
    assert!(
        recipient.starts_with("age1") && !recipient.contains('\n'),
        "stdout is only the recipient: {recipient:?}"
    );
    let path = env.home.join(".config/vars/identity.txt");
    assert!(common::stderr(&out).contains(&path.display().to_string()));
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&env.home.join(".config/vars")), 0o700);
    let before = std::fs::read(&path).unwrap();
    assert!(String::from_utf8_lossy(&before).contains(&recipient));

    // No overwrite without --force: exit 1, the message says how, the file is untouched.
    let again = env.vars(&["keygen"]);
    assert_eq!(again.status.code(), Some(1), "{}", common::stderr(&again));
    assert!(common::stderr(&again).contains("--force"));
    assert!(again.stdout.is_empty(), "no recipient printed on failure");
    assert_eq!(std::fs::read(&path).unwrap(), before);

    let forced = env.vars(&["keygen", "--force"]);
    assert!(forced.status.success(), "{}", common::stderr(&forced));
    let new_recipient = stdout(&forced).trim().to_owned();
    assert_ne!(new_recipient, recipient);
    assert_eq!(mode(&path), 0o600);
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains(&new_recipient)
    );

    // --out is relative to the working directory; --keyring and --out exclude each other.
    let out = env.vars(&["keygen", "--out", "keys/admin.txt"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(mode(&env.root().join("keys/admin.txt")), 0o600);
    let both = env.vars(&["keygen", "--keyring", "--out", "x"]);
    assert_eq!(both.status.code(), Some(2));
}

#[test]
fn keygen_identity_interoperates_with_age_and_administers_a_fleet() {
    if !tools(&[AGE, BWRAP]) {
        return;
    }
    let env = TestEnv::fleet("darwin2");
    let out = env.vars(&["keygen", "--out", "admin.txt"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let recipient = stdout(&out).trim().to_owned();
    let identity = env.root().join("admin.txt");

    // age encrypts to the printed recipient and decrypts with the written identity.
    let msg = env.dir.path().join("msg.age");
    let mut enc = Command::new("age")
        .args(["-e", "-r", &recipient, "-o"])
        .arg(&msg)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(enc.stdin.as_mut().unwrap(), b"hello age").unwrap();
    drop(enc.stdin.take());
    assert!(enc.wait().unwrap().success());
    assert_eq!(
        common::age_decrypt(&msg, &identity).as_deref(),
        Some(&b"hello age"[..])
    );

    // Make it seth's key: vars encrypts to it, age and vars decrypt with it.
    let yaml = env.root().join("vars.yaml");
    let text = std::fs::read_to_string(&yaml).unwrap();
    std::fs::write(&yaml, text.replace(SETH_AGE, &recipient)).unwrap();
    let mut args = vec![
        "generate".to_owned(),
        "--identity".into(),
        identity.display().to_string(),
    ];
    args.extend(fleets::prompts("darwin2"));
    env.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(common::age_decrypt(&env.store().join("keys/vault.age"), &identity).is_some());
    for secret in [SETH_SECRET, VAULT_SECRET] {
        let out = get_with(&env, secret, &identity, None);
        assert!(out.status.success(), "{secret}: {}", common::stderr(&out));
        assert!(!out.stdout.is_empty());
    }
}

#[test]
fn passphrase_protected_identity_decrypts_with_vars_passphrase_file() {
    if !tools(&[BWRAP]) {
        return;
    }
    let env = fleets::generated("darwin2");
    let plain_key = env.key("users/seth.age");
    let expected_user = get_with(&env, SETH_SECRET, &plain_key, None).stdout;
    let expected_vault = get_with(&env, VAULT_SECRET, &plain_key, None).stdout;
    assert!(!expected_user.is_empty() && !expected_vault.is_empty());

    let identity = SecretBytes::new(std::fs::read(&plain_key).unwrap());
    let pass = SecretBytes::new(b"correct horse battery".to_vec());
    let pass_file = env.dir.path().join("pass");
    write_0600(&pass_file, b"correct horse battery\n"); // the newline is ignored
    for armor in [true, false] {
        let protected = env.dir.path().join(format!("seth-protected-{armor}.age"));
        let ct = vars::crypto::encrypt_with_passphrase(&identity, &pass, armor).unwrap();
        write_0600(&protected, &ct);
        for (secret, expected) in [
            (SETH_SECRET, &expected_user),
            (VAULT_SECRET, &expected_vault),
        ] {
            let out = get_with(&env, secret, &protected, Some(&pass_file));
            assert!(
                out.status.success(),
                "armor={armor} {secret}: {}",
                common::stderr(&out)
            );
            assert_eq!(&out.stdout, expected);
        }
    }
    let protected = env.dir.path().join("seth-protected-true.age");

    // Found through VARS_IDENTITY_FILE as well.
    let out = env
        .command(&["get", SETH_SECRET])
        .env("VARS_IDENTITY_FILE", &protected)
        .env("VARS_PASSPHRASE_FILE", &pass_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(out.stdout, expected_user);

    // A wrong passphrase is named as such.
    let wrong = env.dir.path().join("wrong");
    write_0600(&wrong, b"incorrect horse");
    let out = get_with(&env, SETH_SECRET, &protected, Some(&wrong));
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(err.contains("wrong passphrase"), "{err}");
    assert!(out.stdout.is_empty());

    // No passphrase file and no terminal: say how to provide one.
    let out = get_with(&env, SETH_SECRET, &protected, None);
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(
        err.contains("passphrase") && err.contains("VARS_PASSPHRASE_FILE"),
        "{err}"
    );
}

#[test]
fn encrypted_ssh_key_works_with_vars_passphrase_file() {
    if !tools(&[BWRAP, SSH_KEYGEN]) {
        return;
    }
    let env = fleets::generated("darwin2");
    let expected = get_with(&env, SETH_SECRET, &env.key("users/seth.age"), None).stdout;
    let expected_vault = get_with(&env, VAULT_SECRET, &env.key("users/seth.age"), None).stdout;

    // seth's ssh recipient, with a passphrase added.
    let key = env.key("users/seth_ssh");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-p", "-P", "", "-N", "ssh pass phrase", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", common::stderr(&st));
    let pass_file = env.dir.path().join("ssh-pass");
    write_0600(&pass_file, b"ssh pass phrase\n");
    let out = get_with(&env, SETH_SECRET, &key, Some(&pass_file));
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(out.stdout, expected);
    let out = get_with(&env, VAULT_SECRET, &key, Some(&pass_file));
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(out.stdout, expected_vault);

    let wrong = env.dir.path().join("wrong");
    write_0600(&wrong, b"nope\n");
    let out = get_with(&env, SETH_SECRET, &key, Some(&wrong));
    assert_eq!(out.status.code(), Some(1));
    assert!(common::stderr(&out).contains("wrong passphrase"));

    // A fresh encrypted key (ssh-keygen -N) is parsed and asks for its passphrase too.
    let fresh = env.dir.path().join("fresh_ed25519");
    let st = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "ssh pass phrase",
            "-C",
            "t",
            "-f",
        ])
        .arg(&fresh)
        .output()
        .unwrap();
    assert!(st.status.success());
    let out = get_with(&env, SETH_SECRET, &fresh, None);
    assert!(common::stderr(&out).contains("VARS_PASSPHRASE_FILE"));
    let out = get_with(&env, SETH_SECRET, &fresh, Some(&pass_file));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::stderr(&out).contains("cannot decrypt")
            || common::stderr(&out).contains("none of your identities"),
        "the key loads but is not a recipient: {}",
        common::stderr(&out)
    );
}

#[test]
fn plugin_identity_without_its_plugin_names_the_program() {
    if !tools(&[BWRAP]) {
        return;
    }
    let env = fleets::generated("darwin2");
    let line = vars::crypto::plugin_default_identity("yubikey").unwrap();
    assert!(line.starts_with("AGE-PLUGIN-YUBIKEY-1"), "{line}");
    let file = env.dir.path().join("yubikey.txt");
    write_0600(
        &file,
        format!("# serial: 1, slot: 1\n# recipient: age1yubikey1…\n{line}\n").as_bytes(),
    );
    // A PATH with no plugins on it, whatever this machine has installed.
    let empty = tempfile::tempdir().unwrap();
    let out = env
        .command(&["get", SETH_SECRET, "--identity", file.to_str().unwrap()])
        .env("PATH", empty.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(err.contains("age-plugin-yubikey"), "{err}");
    assert!(err.contains("install"), "{err}");
}

/// Run `script` with `sh` inside a new kernel session keyring, in the env's repo with the
/// env's clean environment; `$VARS` is the binary.
fn in_session(env: &TestEnv, script: &str, extra: &[(&str, &Path)]) -> Output {
    let mut c = Command::new("keyctl");
    c.args(["session", "-", "sh", "-ec", script])
        .current_dir(env.root())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &env.home)
        .env("VARS_RUNTIME_DIR", env.runtime_dir())
        .env("LANG", "C.UTF-8")
        .env("VARS", env!("CARGO_BIN_EXE_vars"))
        .stdin(std::process::Stdio::null());
    for (k, v) in extra {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// Removes the keyring identity entry (`keyring:identity@vars`, also linked into the
/// persistent keyring) however the test ends.
const CLEAN_KEYRING_IDENTITY: &str =
    "trap 'keyctl purge user keyring:identity@vars >/dev/null 2>&1 || true' EXIT\n";

#[test]
fn keyring_identity_from_keygen_is_used() {
    if !tools(&[KEYCTL, BWRAP]) {
        return;
    }
    let _turn = KEYRING.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::fleet("darwin2");
    let prompts = fleets::prompts("darwin2")
        .iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let script = format!(
        "{CLEAN_KEYRING_IDENTITY}\
         R=$(\"$VARS\" keygen --keyring)\n\
         case \"$R\" in age1*) ;; *) echo \"bad recipient $R\" >&2; exit 10;; esac\n\
         sed -i \"s/{SETH_AGE}/$R/\" vars.yaml\n\
         \"$VARS\" generate {prompts}\n\
         \"$VARS\" get {SETH_SECRET} > user.out\n\
         \"$VARS\" get {VAULT_SECRET} > vault.out\n\
         if \"$VARS\" keygen --keyring 2> again.err; then exit 11; fi\n\
         grep -q -- --force again.err || exit 12\n"
    );
    let out = in_session(&env, &script, &[]);
    assert!(
        out.status.success(),
        "{}\n{}",
        common::stderr(&out),
        stdout(&out)
    );
    for f in ["user.out", "vault.out"] {
        assert!(
            !std::fs::read(env.root().join(f)).unwrap().is_empty(),
            "{f}"
        );
    }
    // The identity lived only in that session's keyring: outside it nothing is found.
    let out = env.vars(&["get", SETH_SECRET]);
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(err.contains("no identity found"), "{err}");
    assert!(
        err.contains("OS keyring"),
        "the keyring is named as tried: {err}"
    );
}

#[test]
fn unlock_caches_the_vault_until_lock_or_timeout() {
    if !tools(&[KEYCTL, BWRAP]) {
        return;
    }
    let _turn = KEYRING.lock().unwrap_or_else(|e| e.into_inner());
    let env = fleets::generated("darwin2");
    let key = env.key("users/seth.age");
    let script = format!(
        "{CLEAN_KEYRING_IDENTITY}\
         \"$VARS\" unlock --identity \"$KEY\" --ttl 5m\n\
         # cached: a second unlock needs no identity (it renews)\n\
         \"$VARS\" unlock 2> renew.err\n\
         grep -q 'renewed' renew.err || exit 10\n\
         \"$VARS\" lock\n\
         if \"$VARS\" unlock 2> locked.err; then exit 11; fi\n\
         grep -q 'no identity found' locked.err || exit 12\n\
         # the kernel drops the key when the ttl runs out\n\
         \"$VARS\" unlock --identity \"$KEY\" --ttl 1\n\
         sleep 2\n\
         if \"$VARS\" unlock 2> expired.err; then exit 13; fi\n\
         grep -q 'no identity found' expired.err || exit 14\n"
    );
    let out = in_session(&env, &script, &[("KEY", &key)]);
    assert!(
        out.status.success(),
        "exit {:?}\n{}",
        out.status.code(),
        common::stderr(&out)
    );
}

/// After `vars unlock`, `vars get` reads a secret through the cached vault key without any
/// identity.
#[test]
fn get_after_unlock_needs_no_identity() {
    if !tools(&[KEYCTL, BWRAP]) {
        return;
    }
    let _turn = KEYRING.lock().unwrap_or_else(|e| e.into_inner());
    let env = fleets::generated("darwin2");
    let key = env.key("users/seth.age");
    let script = format!(
        "{CLEAN_KEYRING_IDENTITY}\
         \"$VARS\" unlock --identity \"$KEY\"\n\
         \"$VARS\" get {VAULT_SECRET} > vault.out\n\
         \"$VARS\" lock\n\
         if \"$VARS\" get {VAULT_SECRET}; then exit 10; fi\n"
    );
    let out = in_session(&env, &script, &[("KEY", &key)]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(
        !std::fs::read(env.root().join("vault.out"))
            .unwrap()
            .is_empty()
    );
}

/// This process's session keyring is only the per-user fallback (no real session).
fn outside_any_session() -> bool {
    let out = Command::new("keyctl").args(["rdescribe", "@s"]).output();
    out.map(|o| stdout(&o).contains(";_uid_ses."))
        .unwrap_or(false)
}

#[test]
fn unlock_outside_a_session_keyring_fails_with_the_fix_and_changes_nothing() {
    if !tools(&[KEYCTL, BWRAP]) {
        return;
    }
    let env = fleets::generated("darwin2");
    let key = env.key("users/seth.age");
    let before: Vec<(PathBuf, Vec<u8>)> = common::walk(&env.root())
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    let out = if outside_any_session() {
        env.vars(&["unlock", "--identity", key.to_str().unwrap()])
    } else {
        // The test runs inside a session already: join the per-user fallback keyring, which
        // is what a process without a session of its own gets.
        let uid = rustix::process::getuid().as_raw();
        let plain = env.command(&[]);
        let envs: Vec<_> = plain
            .get_envs()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned())))
            .collect();
        let mut k = Command::new("keyctl");
        k.args(["session", &format!("_uid_ses.{uid}")])
            .arg(env!("CARGO_BIN_EXE_vars"))
            .args(["unlock", "--identity", key.to_str().unwrap()])
            .current_dir(env.root())
            .env_clear()
            .envs(envs)
            .stdin(std::process::Stdio::null());
        k.output().unwrap()
    };
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    let err = common::stderr(&out);
    assert!(err.contains("session keyring"), "{err}");
    assert!(err.contains("keyctl session - vars"), "{err}");
    let after: Vec<(PathBuf, Vec<u8>)> = common::walk(&env.root())
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    assert_eq!(before, after, "nothing in the repo changed");

    // lock says the same.
    let out = env.vars(&["lock"]);
    if outside_any_session() {
        assert_eq!(out.status.code(), Some(1));
        assert!(common::stderr(&out).contains("keyctl session -"));
    }
}

/// DESIGN §9.5: an identity file readable by group or others is refused, wherever it was found,
/// with the fix in the hint; a named identity that is missing is an error naming it (issue
/// 10.4); an ssh-rsa private key is refused as an identity (SECURITY.md).
#[test]
fn open_missing_and_rsa_identities_are_refused_with_the_fix() {
    if !tools(&[BWRAP]) {
        return;
    }
    let env = fleets::generated("darwin2");
    let key = env.key("users/seth.age");
    let refused = |out: &Output, path: &Path, what: &str| {
        assert_eq!(
            out.status.code(),
            Some(1),
            "{what}: {}",
            common::stderr(out)
        );
        let err = common::stderr(out);
        assert!(err.contains(&path.display().to_string()), "{what}: {err}");
        assert!(
            err.contains("0644") && err.contains("group or others"),
            "{what}: {err}"
        );
        assert!(
            err.contains(&format!("chmod 600 {}", path.display())),
            "{what}: {err}"
        );
        assert!(out.stdout.is_empty(), "{what}: nothing decrypted");
    };

    // --identity and VARS_IDENTITY_FILE.
    let open = env.dir.path().join("open.age");
    std::fs::copy(&key, &open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    refused(
        &get_with(&env, SETH_SECRET, &open, None),
        &open,
        "--identity",
    );
    let out = env
        .command(&["get", SETH_SECRET])
        .env("VARS_IDENTITY_FILE", &open)
        .output()
        .unwrap();
    refused(&out, &open, "VARS_IDENTITY_FILE");

    // The default places: ~/.config/vars/identity.txt, then ~/.ssh/id_ed25519 (a 0644 one is
    // refused, not skipped in favour of the next place).
    let config = env.home.join(".config/vars/identity.txt");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::copy(&key, &config).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    refused(&env.vars(&["get", SETH_SECRET]), &config, "identity.txt");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = env.vars(&["get", SETH_SECRET]);
    assert!(
        out.status.success(),
        "0600 is fine: {}",
        common::stderr(&out)
    );
    std::fs::remove_file(&config).unwrap();
    let ssh = env.home.join(".ssh/id_ed25519");
    std::fs::create_dir_all(ssh.parent().unwrap()).unwrap();
    std::fs::copy(env.key("users/seth_ssh"), &ssh).unwrap();
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o644)).unwrap();
    refused(&env.vars(&["get", SETH_SECRET]), &ssh, "id_ed25519");
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = env.vars(&["get", SETH_SECRET]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    std::fs::remove_file(&ssh).unwrap();

    // A named identity that does not exist fails like --identity does, naming the path, even
    // though a usable default exists.
    write_0600(&config, &std::fs::read(&key).unwrap());
    let missing = env.dir.path().join("missing-identity.txt");
    for out in [
        env.command(&["get", SETH_SECRET])
            .env("VARS_IDENTITY_FILE", &missing)
            .output()
            .unwrap(),
        get_with(&env, SETH_SECRET, &missing, None),
    ] {
        assert_eq!(out.status.code(), Some(1));
        let err = common::stderr(&out);
        assert!(err.contains(&missing.display().to_string()), "{err}");
        assert!(err.contains("does not exist"), "{err}");
        assert!(out.stdout.is_empty());
    }

    // ssh-rsa: refused as an identity, with what to use instead.
    let rsa = env.dir.path().join("id_rsa");
    write_0600(
        &rsa,
        &std::fs::read(common::repo().join("testdata/keys/rsa/id_rsa")).unwrap(),
    );
    let out = get_with(&env, SETH_SECRET, &rsa, None);
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(err.contains("ssh-rsa") && err.contains("ed25519"), "{err}");
}
