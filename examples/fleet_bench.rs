//! The reference-fleet benchmark of DESIGN §10 (run it with `scripts/bench`).
//!
//! Builds 100 machines × 20 secrets + 10 shared generators (each shared by 10 machines; every
//! machine has an ssh-ed25519 and an age recipient, so a secret has ~3 recipients on average),
//! generates it with the release `vars` binary, then measures in one run:
//! - a non-admin user joining: `vars rekey --add-user` vs. what an agenix user does (decrypt
//!   and re-encrypt every file, one `age` process each);
//! - `vars rekey --rotate-vault` (every file re-encrypted) vs. the same with `age` processes,
//!   and how close that is to the bound set by the X25519 scalar multiplications, counted and
//!   timed both as the age crate computes them and as vars does;
//! - an admin joining (`vault.age` re-wrap only);
//! - `vars check` vs. reading every file once (`cat`);
//! - peak memory of `vars rekey` (with GNU time, when installed).
//!
//! The baseline runs in three slices, each followed by a user join, an admin join and a
//! rotation, and each event is reported as the median of its three runs, so that the VM's
//! speed drift cancels out.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Machines in the reference fleet; `VARS_BENCH_MACHINES` (a multiple of [`SHARED`]) makes
/// a smaller one, which CI runs to keep this program working.
fn machines() -> usize {
    std::env::var("VARS_BENCH_MACHINES")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|n| n % SHARED == 0 && *n > 0)
        .unwrap_or(100)
}
const PER_MACHINE: usize = 20;
const SHARED: usize = 10;
/// Rotations measured, each after a slice of the baseline.
const ROUNDS: usize = 3;

fn main() {
    let vars =
        PathBuf::from(std::env::var("VARS_BIN").unwrap_or_else(|_| "target/release/vars".into()));
    assert!(
        vars.is_file(),
        "build the release binary first: cargo build --release"
    );
    let vars = vars.canonicalize().unwrap();
    let dir = tempfile::Builder::new()
        .prefix("vars-bench-")
        .tempdir()
        .unwrap();
    // VARS_BENCH_KEEP=1 keeps the fleet for profiling.
    let kept = std::env::var_os("VARS_BENCH_KEEP").map(|_| dir.path().to_path_buf());
    let root = dir.path();
    eprintln!("building the reference fleet in {}", root.display());
    let admin = write_fleet(root);

    let t = Instant::now();
    run(
        &vars,
        root,
        &[
            "generate",
            "--no-sandbox",
            "--identity",
            admin.to_str().unwrap(),
        ],
    );
    let generate = t.elapsed();
    let secrets: Vec<PathBuf> = walk(&root.join("vars"))
        .into_iter()
        .filter(|p| {
            p.extension().is_some_and(|e| e == "age") && !p.starts_with(root.join("vars/keys"))
        })
        .collect();
    let files = walk(&root.join("vars"));
    eprintln!(
        "generated {} secrets ({} files) in {generate:.2?}",
        secrets.len(),
        files.len()
    );

    // This VM's speed drifts by tens of percent over a minute, so the baseline runs in three
    // slices, and each is followed by the events measured against it: a non-admin user joins
    // (declared with a key, on 5 machines, and given one shared generator), an admin joins (only
    // vault.age is re-wrapped), and the vault is rotated. The baseline is the sum of the slices,
    // each event the median of its three runs.
    let yaml_path = root.join("vars.yaml");
    let mut yaml = std::fs::read_to_string(&yaml_path).unwrap();
    let rekey = |args: &[&str]| {
        let mut all = vec!["rekey", "--yes", "--identity", admin.to_str().unwrap()];
        all.extend_from_slice(args);
        timed(&vars, root, &all)
    };
    let mut agenix = Duration::ZERO;
    let (mut user_joins, mut admin_joins, mut rotations) = (Vec::new(), Vec::new(), Vec::new());
    let (mut user_rss, mut rotate_rss) = (None, None);
    for slice in 0..ROUNDS {
        let files: Vec<&PathBuf> = secrets.iter().skip(slice).step_by(ROUNDS).collect();
        agenix += agenix_rekey(root, &admin, &files);

        let user = format!("user{slice}");
        let (_, key) = vars::crypto::new_identity();
        yaml = yaml.replace(
            "users:\n",
            &format!(
                "users:\n  {user}:\n    recipients: [\"{key}\"]\n    generators: [shared-{slice}]\n"
            ),
        );
        for m in 5 * slice..5 * slice + 5 {
            yaml = yaml.replace(
                &format!("  m{m:03}:\n    users: []"),
                &format!("  m{m:03}:\n    users: [{user}]"),
            );
        }
        std::fs::write(&yaml_path, &yaml).unwrap();
        let (t, rss) = rekey(&["--add-user", &user]);
        user_joins.push(t);
        user_rss = user_rss.max(rss);

        let admin_name = format!("admin{slice}");
        let (_, key) = vars::crypto::new_identity();
        yaml = yaml
            .replace(
                "users:\n",
                &format!("users:\n  {admin_name}:\n    recipients: [\"{key}\"]\n"),
            )
            .replace("admins: [root", &format!("admins: [root, {admin_name}"));
        std::fs::write(&yaml_path, &yaml).unwrap();
        admin_joins.push(rekey(&["--add-user", &admin_name]).0);

        let (t, rss) = rekey(&["--rotate-vault"]);
        rotations.push(t);
        rotate_rss = rotate_rss.max(rss);
    }
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let runs = |v: &[Duration]| {
        v.iter()
            .map(|r| format!("{r:.2?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (user_runs, admin_runs, rotate_runs) =
        (runs(&user_joins), runs(&admin_joins), runs(&rotations));
    let (user_join, admin_join, rotate) =
        (median(user_joins), median(admin_joins), median(rotations));

    // check vs reading every file once.
    let (check, check_rss) = timed(&vars, root, &["check"]);
    settle();
    let t = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg("find vars -type f -print0 | xargs -0 cat > /dev/null")
        .current_dir(root)
        .status()
        .unwrap();
    assert!(status.success());
    let cat = t.elapsed();

    // The X25519 bound. Re-encrypting a secret unwraps its vault stanza and wraps the file key
    // once per recipient. Counted as the age crate computes it (DESIGN §10's "near 25x"):
    // an unwrap is a variable-base scalar multiplication (a Montgomery ladder) plus a fixed-base
    // one (age derives the identity's public key each time); an X25519 wrap a fixed-base
    // (ephemeral key) and a variable-base; ssh-ed25519 one more variable-base (the tweak).
    // vars computes the same stanzas with less (src/crypto/curve.rs): an unwrap is one
    // variable-base multiplication, every wrap one fixed-base and one variable-base. Each
    // operation is timed in-process, both ways.
    let (mut x25519, mut ssh) = (0u32, 0u32);
    for f in &secrets {
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(f.parent().unwrap().join("meta.json")).unwrap())
                .unwrap();
        let name = f.file_stem().unwrap().to_str().unwrap();
        for r in meta["files"][name]["recipients"].as_array().unwrap() {
            if r.as_str().unwrap().starts_with("ssh-ed25519 ") {
                ssh += 1;
            } else {
                x25519 += 1;
            }
        }
    }
    let files = secrets.len() as u32;
    let age_counts = (files + x25519 + 2 * ssh, files + x25519 + ssh);
    let vars_counts = (files + x25519 + ssh, x25519 + ssh);
    let ssh_key = std::fs::read_to_string(root.join("hostkeys/m000.pub")).unwrap();
    let age_ops = time_age_crypto(ssh_key.trim());
    let vars_ops = time_vars_crypto(ssh_key.trim());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let bound = |ops: Ops| {
        (ops.unwrap * files + ops.wrap_x25519 * x25519 + ops.wrap_ssh * ssh) / cores as u32
    };
    let (age_bound, vars_bound) = (bound(age_ops), bound(vars_ops));

    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "reference fleet: {} machines x {PER_MACHINE} secrets + {SHARED} shared = {} secret files, {cores} cores",
        machines(),
        secrets.len()
    );
    println!("| event | vars | baseline | factor | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| non-admin user joins: rekey --add-user vs agenix re-encrypt all (age per file; median of {ROUNDS}: {user_runs}) | {user_join:.3?} | {agenix:.2?} | {:.0}x faster | >= 100x |",
        ratio(agenix, user_join)
    );
    println!(
        "| rekey --rotate-vault (all files) vs age per file (median of {ROUNDS}: {rotate_runs}) | {rotate:.3?} | {agenix:.2?} | {:.1}x faster | >= 15x |",
        ratio(agenix, rotate)
    );
    println!(
        "| admin joins: rekey --add-user (vault.age re-wrap; median of {ROUNDS}: {admin_runs}) | {admin_join:.3?} | {agenix:.2?} | {:.0}x faster | |",
        ratio(agenix, admin_join)
    );
    println!(
        "| check vs cat every file | {check:.3?} | {cat:.3?} | {:.2}x of cat | <= 3x |",
        ratio(check, cat)
    );
    println!(
        "| rotate-vault vs the age crate's X25519 work for the same stanzas ({} variable-base + {} fixed-base scalar mults; unwrap {:.0?}, wrap X25519 {:.0?}, wrap ssh-ed25519 {:.0?}; / {cores} cores) | {rotate:.3?} | {age_bound:.3?} | {:.2}x of bound | bound: {:.0}x faster than age per file |",
        age_counts.0,
        age_counts.1,
        age_ops.unwrap,
        age_ops.wrap_x25519,
        age_ops.wrap_ssh,
        ratio(rotate, age_bound),
        ratio(agenix, age_bound)
    );
    println!(
        "| rotate-vault vs its own X25519 work ({} variable-base + {} fixed-base scalar mults; unwrap {:.0?}, wrap X25519 {:.0?}, wrap ssh-ed25519 {:.0?}; / {cores} cores) | {rotate:.3?} | {vars_bound:.3?} | {:.2}x of bound | bound: {:.0}x faster than age per file |",
        vars_counts.0,
        vars_counts.1,
        vars_ops.unwrap,
        vars_ops.wrap_x25519,
        vars_ops.wrap_ssh,
        ratio(rotate, vars_bound),
        ratio(agenix, vars_bound)
    );
    let kib = |v: Option<u64>| {
        v.map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
            .unwrap_or_else(|| "n/a (install GNU time)".into())
    };
    println!(
        "| peak memory: rekey --add-user / rotate-vault / check | {} / {} / {} | | | < 64 MiB |",
        kib(user_rss),
        kib(rotate_rss),
        kib(check_rss)
    );
    println!("(generate of the whole fleet, unsandboxed: {generate:.2?})");
    if let Some(path) = kept {
        let _ = dir.keep();
        eprintln!("kept {}", path.display());
    }
}

/// What an agenix user does to re-encrypt `files`: one `age` process to decrypt and one to
/// re-encrypt each, as `agenix -r` does (without its per-file Nix evaluation). Decrypts with
/// the vault identity, so it can read every file.
fn agenix_rekey(root: &Path, admin: &Path, files: &[&PathBuf]) -> Duration {
    let vault_id = root.join("vault-identity.txt");
    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(admin)
        .arg(root.join("vars/keys/vault.age"))
        .output()
        .unwrap();
    assert!(out.status.success(), "age cannot unwrap vault.age");
    std::fs::write(&vault_id, &out.stdout).unwrap();
    settle();
    let t = Instant::now();
    for f in files {
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(f.parent().unwrap().join("meta.json")).unwrap())
                .unwrap();
        let name = f.file_stem().unwrap().to_str().unwrap();
        let recipients: Vec<String> = meta["files"][name]["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect();
        let mut dec = Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(&vault_id)
            .arg(f)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut enc = Command::new("age");
        enc.arg("-e").arg("-o").arg(root.join("agenix-out.age"));
        for r in &recipients {
            enc.arg("-r").arg(r);
        }
        let status = enc.stdin(dec.stdout.take().unwrap()).status().unwrap();
        assert!(status.success() && dec.wait().unwrap().success());
    }
    t.elapsed()
}

/// Write vars.yaml with generated keys; returns the admin identity file.
fn write_fleet(root: &Path) -> PathBuf {
    let (admin_secret, admin_recipient) = vars::crypto::new_identity();
    let admin = root.join("admin.txt");
    std::fs::write(&admin, admin_secret.expose()).unwrap();
    // vars refuses identities others can read, as ssh does.
    std::fs::set_permissions(&admin, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut yaml = format!(
        "version: 1\nadmins: [root]\nusers:\n  root:\n    recipients: [\"{admin_recipient}\"]\nmachines:\n"
    );
    let keys = root.join("hostkeys");
    std::fs::create_dir_all(&keys).unwrap();
    let count = machines();
    for m in 0..count {
        let key = keys.join(format!("m{m:03}"));
        let st = Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                &format!("root@m{m:03}"),
                "-f",
            ])
            .arg(&key)
            .status()
            .unwrap();
        assert!(st.success());
        let ssh = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let (_, age) = vars::crypto::new_identity();
        let shared = format!("shared-{}", m / (count / SHARED));
        yaml.push_str(&format!("  m{m:03}:\n    users: []\n    recipients: [\"{}\", \"{age}\"]\n    tags: [fleet]\n    generators: [{shared}]\n", ssh.trim()));
    }
    yaml.push_str("tags:\n  fleet:\n    generators: [");
    yaml.push_str(
        &(0..PER_MACHINE)
            .map(|g| format!("secret-{g:02}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    yaml.push_str("]\ngenerators:\n");
    let script = "    script: head -c 32 /dev/urandom | base64 > \"$out/secret\"\n";
    for g in 0..PER_MACHINE {
        yaml.push_str(&format!(
            "  secret-{g:02}:\n    files: {{ secret: {{}} }}\n{script}"
        ));
    }
    for s in 0..SHARED {
        yaml.push_str(&format!(
            "  shared-{s}:\n    share: true\n    files: {{ secret: {{}} }}\n{script}"
        ));
    }
    std::fs::write(root.join("vars.yaml"), yaml).unwrap();
    admin
}

fn run(vars: &Path, root: &Path, args: &[&str]) {
    let out = Command::new(vars)
        .args(args)
        .current_dir(root)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vars {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run under GNU time when available to get the peak resident set size (KiB).
fn timed(vars: &Path, root: &Path, args: &[&str]) -> (Duration, Option<u64>) {
    let gnu_time = Path::new("/usr/bin/time");
    let rss_file = root.join("rss.txt");
    settle();
    let t = Instant::now();
    let out = if gnu_time.is_file() {
        Command::new(gnu_time)
            .arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(&rss_file)
            .arg(vars)
            .args(args)
            .current_dir(root)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    } else {
        Command::new(vars)
            .args(args)
            .current_dir(root)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let elapsed = t.elapsed();
    assert!(
        out.status.success(),
        "vars {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rss = std::fs::read_to_string(&rss_file)
        .ok()
        .and_then(|s| s.trim().lines().last()?.parse().ok());
    (elapsed, rss)
}

/// Flush dirty pages first, so each measurement pays only for its own writes.
fn settle() {
    let _ = Command::new("sync").status();
}

/// Single-threaded time of one unwrap of an X25519 stanza, and of encrypting to one X25519 and
/// to one ssh-ed25519 recipient (each with a 44-byte payload, like the fleet's secrets).
#[derive(Clone, Copy)]
struct Ops {
    unwrap: Duration,
    wrap_x25519: Duration,
    wrap_ssh: Duration,
}

const OPS: u32 = 300;

fn per_op(f: &dyn Fn()) -> Duration {
    f();
    let t = Instant::now();
    for _ in 0..OPS {
        f();
    }
    t.elapsed() / OPS
}

/// The operations as vars performs them (`vars::crypto`).
fn time_vars_crypto(ssh_recipient: &str) -> Ops {
    use vars::crypto::{Identities, Recipient, VaultKey, encrypt};
    let key = VaultKey::generate();
    let to_key = Recipient::parse(&key.recipient()).unwrap();
    let to_ssh = Recipient::parse(ssh_recipient).unwrap();
    let plain = vars::secret::SecretBytes::new(vec![b'x'; 44]);
    let sealed = encrypt(&plain, &[&to_key], false).unwrap();
    let mut ids = Identities::default();
    ids.add_vault(&key);
    Ops {
        unwrap: per_op(&|| {
            std::hint::black_box(ids.decrypt(&sealed).unwrap());
        }),
        wrap_x25519: per_op(&|| {
            std::hint::black_box(encrypt(&plain, &[&to_key], false).unwrap());
        }),
        wrap_ssh: per_op(&|| {
            std::hint::black_box(encrypt(&plain, &[&to_ssh], false).unwrap());
        }),
    }
}

/// The same operations with the age crate's own recipients and identities.
fn time_age_crypto(ssh_recipient: &str) -> Ops {
    use std::io::{Read, Write};
    use std::str::FromStr;
    let identity = age::x25519::Identity::generate();
    let to_key = identity.to_public();
    let to_ssh = age::ssh::Recipient::from_str(ssh_recipient).unwrap();
    let encrypt = |to: &dyn age::Recipient| {
        let mut out = Vec::new();
        let mut w = age::Encryptor::with_recipients(std::iter::once(to))
            .unwrap()
            .wrap_output(&mut out)
            .unwrap();
        w.write_all(&[b'x'; 44]).unwrap();
        w.finish().unwrap();
        out
    };
    let sealed = encrypt(&to_key);
    Ops {
        unwrap: per_op(&|| {
            let mut plain = Vec::new();
            age::Decryptor::new_buffered(&sealed[..])
                .unwrap()
                .decrypt(std::iter::once(&identity as &dyn age::Identity))
                .unwrap()
                .read_to_end(&mut plain)
                .unwrap();
            std::hint::black_box(plain);
        }),
        wrap_x25519: per_op(&|| {
            std::hint::black_box(encrypt(&to_key));
        }),
        wrap_ssh: per_op(&|| {
            std::hint::black_box(encrypt(&to_ssh));
        }),
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
