//! DESIGN §9 invariant 4 by fault injection: `vars generate` and `vars rekey` are killed with
//! SIGKILL at many moments of a run on the clan8 fleet. After each kill: every instance
//! directory is whole (exactly its declared files, public hashes as recorded), every secret
//! decrypts with the vault key (or, mid-rotation, the one being rotated in), each ciphertext
//! has as many recipient stanzas as meta.json records, and a re-run finishes the job so that
//! `vars check` passes — without changing any value that existed before the kill.
//!
//! Kill moments are spread over the measured length of an uninterrupted run, plus a few right
//! after start. Each kill is classified by the state it left (instances present, secrets
//! already on the new vault key, keys swapped), and the test requires that the kills landed
//! in several different phases, so it does not silently test only "before" and "after".

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use vars::crypto::{self, Identities};
use vars::meta::Meta;
use vars::store::Store;

use crate::common::{self, TestEnv};
use crate::fleets;

const FLEET: &str = "clan8";

/// What a (killed or finished) run left in the store, after checking invariants (a)–(c).
struct State {
    /// Instance directories holding a meta.json.
    instances: usize,
    /// Swap leftovers (spares, `.X.old`, `.X.removing`) and temp files, relative paths.
    leftovers: Vec<String>,
    /// Every stored file's content, secrets decrypted: relative path → bytes.
    values: BTreeMap<String, Vec<u8>>,
    /// `keys/vault.pub`, if any.
    vault: Option<String>,
    /// `keys/next.pub`, if a rotation is under way.
    next: Option<String>,
    /// Secret files whose recorded recipients include `next` (or the vault, if none).
    on_target: usize,
    /// Secret files in total.
    secrets: usize,
}

fn admin_ids(env: &TestEnv) -> Identities {
    let mut ids = Identities::default();
    ids.add_file(&env.key(fleets::admin_key(FLEET))).unwrap();
    ids
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Check invariants (a), (b) and (c) on the store as it is now, and describe it.
fn inspect(env: &TestEnv, context: &str) -> State {
    let store = Store::new(env.store()).with_state_dir(None);
    let config = vars::model::load(&env.root().join("vars.yaml")).unwrap();
    let admin = admin_ids(env);
    // (b) The vault (and a vault being rotated in) unwraps with the admin key.
    let vault = read_trimmed(&store.vault_pub_path());
    let next = read_trimmed(&env.store().join("keys/next.pub"));
    let mut vault_ids = Identities::default();
    let mut current = None;
    if let Some(v) = &vault {
        let key = vars::vault::unwrap_vault(&store, &admin)
            .unwrap_or_else(|e| panic!("{context}: vault.age does not unwrap: {e}"));
        assert_eq!(
            &key.recipient(),
            v,
            "{context}: vault.pub/vault.age mismatch"
        );
        vault_ids.add_vault(&key);
        current = Some(key);
    }
    if let Some(n) = &next {
        // The rotation's next key is proven by the current vault (keys/vault.json).
        let old = current.as_ref().expect("next.* exist only beside a vault");
        let key = vars::vault::unwrap_next(&store, old, &admin)
            .unwrap_or_else(|e| panic!("{context}: next.age does not unwrap: {e}"));
        assert_eq!(&key.recipient(), n, "{context}: next.pub/next.age mismatch");
        vault_ids.add_vault(&key);
    }
    let target = next.clone().or(vault.clone());

    let mut state = State {
        instances: 0,
        leftovers: Vec::new(),
        values: BTreeMap::new(),
        vault,
        next,
        on_target: 0,
        secrets: 0,
    };
    let mut dirs: Vec<_> = [env.store()].into_iter().filter(|d| d.is_dir()).collect();
    while let Some(dir) = dirs.pop() {
        let rel_dir = dir.strip_prefix(env.store()).unwrap().to_path_buf();
        let mut names = BTreeSet::new();
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let name = e.file_name().into_string().unwrap();
            let rel = rel_dir.join(&name).display().to_string();
            let is_leftover = [".old", ".removing"]
                .iter()
                .any(|s| name.starts_with('.') && name.ends_with(s))
                || name.starts_with(".vars-tmp-")
                || name.starts_with(".vars-swap-");
            if is_leftover {
                state.leftovers.push(rel);
            } else if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            } else {
                names.insert(name);
            }
        }
        if !names.contains("meta.json") {
            continue;
        }
        // (a) A whole instance: exactly its declared files, public files as recorded.
        state.instances += 1;
        let rel_dir = rel_dir.display().to_string();
        let meta: Meta = serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap())
            .unwrap_or_else(|e| panic!("{context}: {rel_dir}/meta.json: {e}"));
        let declared: BTreeSet<&String> = config.generators[&meta.generator].files.keys().collect();
        assert_eq!(
            meta.files.keys().collect::<BTreeSet<_>>(),
            declared,
            "{context}: {rel_dir}: meta.json lists other files than the generator declares"
        );
        let mut want: BTreeSet<String> = meta
            .files
            .iter()
            .map(|(f, m)| {
                if m.secret {
                    format!("{f}.age")
                } else {
                    f.clone()
                }
            })
            .collect();
        want.insert("meta.json".into());
        assert_eq!(names, want, "{context}: {rel_dir} is not whole");
        for (file, m) in &meta.files {
            if m.secret {
                let ct = std::fs::read(dir.join(format!("{file}.age"))).unwrap();
                let recorded = m.recipients.clone().unwrap_or_default();
                // (c) meta.json matches the ciphertext.
                let stanzas = crypto::header_stanzas(&ct).unwrap();
                assert_eq!(
                    stanzas.len(),
                    recorded.len(),
                    "{context}: {rel_dir}/{file}.age: stanzas vs meta.json recipients"
                );
                // (b) Every secret decrypts with the vault (or the next vault).
                let plain = vault_ids.decrypt(&ct).unwrap_or_else(|e| {
                    panic!("{context}: {rel_dir}/{file}.age does not decrypt with the vault: {e}")
                });
                state.secrets += 1;
                if target.as_ref().is_some_and(|t| recorded.contains(t)) {
                    state.on_target += 1;
                }
                state
                    .values
                    .insert(format!("{rel_dir}/{file}"), plain.expose().to_vec());
            } else {
                let bytes = std::fs::read(dir.join(file)).unwrap();
                assert_eq!(
                    m.sha256.as_deref(),
                    Some(vars::meta::sha256(&bytes).as_str()),
                    "{context}: {rel_dir}/{file}: hash differs from meta.json"
                );
                state.values.insert(format!("{rel_dir}/{file}"), bytes);
            }
        }
    }
    state.leftovers.sort();
    state
}

/// Run `vars ARGS`, SIGKILL it after `delay`; returns whether it had already exited.
fn run_and_kill(env: &TestEnv, args: &[&str], delay: Duration) -> bool {
    let mut child = env
        .command(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let finished = child.try_wait().unwrap().is_some();
    let _ = child.kill(); // SIGKILL on Unix
    child.wait().unwrap();
    finished
}

/// How long an uninterrupted run takes: the shorter of two runs on fresh copies (the other
/// tests of the binary compete for the CPU).
fn timed(fresh: impl Fn() -> TestEnv, args: impl Fn(&TestEnv) -> Vec<String>) -> Duration {
    (0..2)
        .map(|_| {
            let env = fresh();
            let args = args(&env);
            let start = Instant::now();
            let status = env
                .command(&refs(&args))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "vars {args:?}");
            start.elapsed()
        })
        .min()
        .unwrap()
}

/// Kill moments: a few right after start, then `n` spread evenly up to the run's length.
fn moments(run: Duration, n: u32) -> Vec<Duration> {
    let mut out: Vec<Duration> = [0, 2, 5].map(Duration::from_millis).to_vec();
    out.extend((1..=n).map(|i| run.mul_f64(f64::from(i) / f64::from(n))));
    out
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn generate_args(env: &TestEnv) -> Vec<String> {
    let mut a = owned(&["generate", "--identity"]);
    a.push(env.key(fleets::admin_key(FLEET)).display().to_string());
    a.extend(fleets::prompts(FLEET));
    a
}

fn rekey_args(env: &TestEnv, extra: &[&str]) -> Vec<String> {
    let mut a = owned(&["rekey", "--yes", "-i"]);
    a.push(env.key(fleets::admin_key(FLEET)).display().to_string());
    a.extend(owned(extra));
    a
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Re-run `args` after a kill, then `vars check`; both must succeed. Returns the final state.
fn finish(env: &TestEnv, args: &[&str], context: &str) -> State {
    let out = env.vars(args);
    assert!(
        out.status.success(),
        "{context}: re-run failed:\n{}",
        common::stderr(&out)
    );
    let out = env.vars(&["check"]);
    assert!(
        out.status.success(),
        "{context}: check after the re-run failed:\n{}",
        common::stderr(&out)
    );
    let state = inspect(env, &format!("{context}, after the re-run"));
    assert!(
        state.leftovers.is_empty(),
        "{context}: leftovers after the re-run: {:?}",
        state.leftovers
    );
    assert!(state.next.is_none(), "{context}: rotation not finished");
    state
}

/// Every value present in `before` is unchanged in `after` (paths under `gone` may vanish).
fn assert_kept(before: &State, after: &State, gone: &str, context: &str) {
    for (path, value) in &before.values {
        if !gone.is_empty() && path.starts_with(gone) {
            continue;
        }
        let now = after
            .values
            .get(path)
            .unwrap_or_else(|| panic!("{context}: {path} was lost"));
        assert!(now == value, "{context}: {path} changed its value");
    }
}

fn tools() -> bool {
    common::require_tool("bwrap", "apt-get install bubblewrap")
}

/// Sandbox work dirs (plaintext on tmpfs) a SIGKILL left behind.
fn stale_workdirs(env: &TestEnv) -> usize {
    std::fs::read_dir(env.runtime_dir()).unwrap().count()
}

#[test]
fn kill_during_first_generate() {
    if !tools() {
        return;
    }
    let full = timed(|| TestEnv::fleet(FLEET), generate_args);
    let complete = inspect(&fleets::generated(FLEET), "uninterrupted").instances;
    let mut phases = BTreeSet::new();
    let mut report = Vec::new();
    let mut workdirs = 0;
    for delay in moments(full, 10) {
        let env = TestEnv::fleet(FLEET);
        let args = generate_args(&env);
        let exited = run_and_kill(&env, &refs(&args), delay);
        let context = format!("generate killed at {delay:?}");
        let killed = inspect(&env, &context);
        workdirs += stale_workdirs(&env);
        let phase = match (killed.vault.is_some(), killed.instances) {
            (false, _) => "no vault yet".to_owned(),
            (true, n) if n == complete => "all instances".to_owned(),
            (true, n) => format!("{n}/{complete} instances"),
        };
        report.push(format!(
            "{delay:?}: {phase}{}, {} leftover(s)",
            if exited { " (had exited)" } else { "" },
            killed.leftovers.len()
        ));
        phases.insert(phase);
        let after = finish(&env, &refs(&args), &context);
        assert_eq!(after.instances, complete, "{context}");
        assert_kept(&killed, &after, "", &context);
    }
    eprintln!(
        "generate ({full:?} uninterrupted), kills:\n  {}\n  sandbox work dirs left on tmpfs by kills: {workdirs}",
        report.join("\n  ")
    );
    assert!(
        phases.len() >= 3,
        "kills landed in too few phases: {report:#?}"
    );
}

/// A generated clan8 store copied into a fresh env (cheaper than generating it again).
fn copy_of(template: &TestEnv) -> TestEnv {
    let env = TestEnv::fleet(FLEET);
    common::copy_dir(&template.store(), &env.store());
    env
}

/// Kill `rekey` at many moments on copies of `template` (after `edit`), check, re-run.
fn kill_rekey(template: &TestEnv, edit: fn(&TestEnv), extra: &[&str], gone: &str) {
    let before = inspect(template, "template");
    let fresh = || {
        let env = copy_of(template);
        edit(&env);
        env
    };
    let full = timed(fresh, |env| rekey_args(env, extra));
    let mut phases = BTreeSet::new();
    let mut report = Vec::new();
    for delay in moments(full, 16) {
        let env = fresh();
        let args = rekey_args(&env, extra);
        let exited = run_and_kill(&env, &refs(&args), delay);
        let context = format!("rekey {extra:?} killed at {delay:?}");
        let killed = inspect(&env, &context);
        assert_kept(&before, &killed, gone, &context);
        let phase = match (&killed.next, killed.vault == before.vault) {
            (None, true) => "not started".to_owned(),
            (Some(_), _) => format!("rotating {}/{}", killed.on_target, killed.secrets),
            (None, false) => "keys swapped".to_owned(),
        };
        report.push(format!(
            "{delay:?}: {phase}{}{}, {} leftover(s)",
            if exited { " (had exited)" } else { "" },
            if !gone.is_empty() && env.store().join(gone).exists() {
                ", removed user still on disk"
            } else {
                ""
            },
            killed.leftovers.len()
        ));
        phases.insert(phase.split(' ').next().unwrap().to_owned());
        let after = finish(&env, &refs(&args), &context);
        assert_kept(&before, &after, gone, &context);
        assert_ne!(after.vault, before.vault, "{context}: vault not rotated");
        assert_eq!(after.on_target, after.secrets, "{context}");
        if !gone.is_empty() {
            assert!(!env.store().join(gone).exists(), "{context}: {gone} kept");
        }
    }
    eprintln!(
        "rekey {extra:?} ({full:?} uninterrupted), kills:\n  {}",
        report.join("\n  ")
    );
    assert!(
        phases.contains("rotating"),
        "no kill landed during the rotation: {report:#?}"
    );
}

fn no_edit(_: &TestEnv) {}

/// Drop cameron (an admin and a user) from vars.yaml everywhere.
fn drop_cameron(env: &TestEnv) {
    let path = env.root().join("vars.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    let mut skip = 0;
    for line in text.lines() {
        if line == "  cameron:" {
            skip = 2; // its recipients and generators lines
            continue;
        }
        if skip > 0 {
            skip -= 1;
            continue;
        }
        out.push_str(
            &line
                .replace("[crs58, cameron]", "[crs58]")
                .replace("[christophersmith, cameron]", "[christophersmith]"),
        );
        out.push('\n');
    }
    assert!(!out.contains("cameron"), "cameron left in vars.yaml");
    std::fs::write(&path, out).unwrap();
}

#[test]
fn kill_during_rotation() {
    if !tools() {
        return;
    }
    let template = fleets::generated(FLEET);
    kill_rekey(&template, no_edit, &["--rotate-vault"], "");
}

#[test]
fn kill_during_rekey_after_admin_removal() {
    if !tools() {
        return;
    }
    let template = fleets::generated(FLEET);
    kill_rekey(
        &template,
        drop_cameron,
        &["--remove-user", "cameron"],
        "users/cameron",
    );
    // The removed admin can open neither the vault nor anything re-encrypted.
    let env = copy_of(&template);
    drop_cameron(&env);
    env.ok(&refs(&rekey_args(&env, &["--remove-user", "cameron"])));
    let mut cameron = Identities::default();
    cameron.add_file(&env.key("users/cameron.age")).unwrap();
    assert!(
        vars::vault::unwrap_vault(&Store::new(env.store()).with_state_dir(None), &cameron).is_err()
    );
    for f in common::walk(&env.store()) {
        if f.extension().is_some_and(|e| e == "age") {
            let ct = std::fs::read(&f).unwrap();
            assert!(
                cameron.decrypt(&ct).is_err(),
                "cameron still reads {}",
                f.display()
            );
        }
    }
}

/// The state a kill between swapping `keys/` and writing the manifests leaves (a window too
/// short to hit reliably by timing): the re-run must still rewrite the manifests.
#[test]
fn rekey_rerun_writes_manifests_an_interrupted_run_left_behind() {
    if !tools() {
        return;
    }
    let template = fleets::generated(FLEET);
    let env = copy_of(&template);
    drop_cameron(&env);
    let args = rekey_args(&env, &["--remove-user", "cameron"]);
    env.ok(&refs(&args));
    for m in ["argentum", "cinnabar"] {
        let rel = format!("machines/{m}/manifest.json");
        std::fs::copy(template.store().join(&rel), env.store().join(&rel)).unwrap();
    }
    assert!(!env.vars(&["check"]).status.success());
    env.ok(&refs(&args));
    env.ok(&["check"]);
    // generate finds them too (it is what `vars check` hints at).
    std::fs::copy(
        template.store().join("machines/argentum/manifest.json"),
        env.store().join("machines/argentum/manifest.json"),
    )
    .unwrap();
    env.ok(&["generate"]);
    env.ok(&["check"]);
}
