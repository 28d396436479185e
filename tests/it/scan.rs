//! `vars scan` on real git repositories built here, with keys made by the real tools
//! (ssh-keygen, openssl, age-keygen, gpg, nix-store, wg, puttygen) planted in many file kinds
//! and wrappings; decoys that must stay quiet; staged, unstaged and untracked changes; a real
//! pre-commit hook run by `git commit`; symlinks, submodules, huge and binary files; the store
//! and the matched text in no output at all. The store rules and the flake check are in
//! `scan_store.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{self, TestEnv};

/// A git repository in a test environment.
pub struct Repo {
    pub env: TestEnv,
}

impl Repo {
    pub fn new() -> Option<Repo> {
        Self::wrap(TestEnv::empty())
    }

    pub fn wrap(env: TestEnv) -> Option<Repo> {
        if !common::require_tool("git", "apt-get install git") {
            return None;
        }
        let r = Repo { env };
        r.git(&["init", "-q", "-b", "main"]);
        Some(r)
    }

    pub fn root(&self) -> PathBuf {
        self.env.root()
    }

    pub fn git_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("git");
        c.args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.org",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(self.root())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &self.env.home)
        .env("GIT_CONFIG_NOSYSTEM", "1");
        c
    }

    pub fn git(&self, args: &[&str]) -> Output {
        let out = self.git_cmd(args).output().unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) {
        let p = self.root().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    pub fn commit_all(&self) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", "c"]);
    }

    pub fn scan(&self, args: &[&str]) -> Output {
        let mut all = vec!["scan"];
        all.extend_from_slice(args);
        self.env.vars(&all)
    }

    /// `vars scan --json ARGS`: exit code and the parsed report.
    pub fn json(&self, args: &[&str]) -> (i32, serde_json::Value) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.scan(&all);
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{e}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                common::stderr(&out)
            )
        });
        (out.status.code().unwrap(), v)
    }
}

/// (path, rule) of every finding.
pub fn found(report: &serde_json::Value) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["rule"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

pub fn run(dir: &Path, prog: &str, args: &[&str]) -> Output {
    let out = Command::new(prog)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{prog}: {e}"));
    assert!(
        out.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

/// Keys made by the real tools, in a scratch directory: (name, text) pairs.
struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    fn tools() -> bool {
        [
            ("ssh-keygen", "apt-get install openssh-client"),
            ("openssl", "apt-get install openssl"),
            ("age-keygen", "apt-get install age"),
            ("age", "apt-get install age"),
            ("gpg", "apt-get install gnupg"),
            ("nix-store", "apt-get install nix-bin"),
            ("wg", "apt-get install wireguard-tools"),
            ("puttygen", "apt-get install putty-tools"),
        ]
        .iter()
        .all(|(t, hint)| common::require_tool(t, hint))
    }

    pub fn new() -> Keys {
        Keys {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn ssh(&self, name: &str, args: &[&str]) -> (String, String) {
        let mut a = vec!["-q", "-C", "test@vars", "-f", name];
        a.extend_from_slice(args);
        run(self.path(), "ssh-keygen", &a);
        (
            read(self.path(), name),
            read(self.path(), &format!("{name}.pub")),
        )
    }

    fn openssl(&self, name: &str, args: &[&str]) -> String {
        // `-out` right after the command: genrsa wants its bit count last.
        let mut a: Vec<&str> = vec![args[0], "-out", name];
        a.extend_from_slice(&args[1..]);
        run(self.path(), "openssl", &a);
        read(self.path(), name)
    }

    /// Every private key kind the issue names, with its expected rule.
    fn all(&self) -> Vec<(&'static str, String, &'static str)> {
        let mut keys = vec![
            (
                "ssh-ed25519",
                self.ssh("ed", &["-t", "ed25519", "-N", ""]).0,
                "private-key",
            ),
            (
                "ssh-ed25519-passphrase",
                self.ssh("edp", &["-t", "ed25519", "-N", "correct horse"]).0,
                "private-key",
            ),
            (
                "ssh-rsa",
                self.ssh("rsa", &["-t", "rsa", "-b", "2048", "-N", ""]).0,
                "private-key",
            ),
            (
                "ssh-rsa-pem",
                self.ssh(
                    "rsapem",
                    &["-t", "rsa", "-b", "2048", "-m", "PEM", "-N", ""],
                )
                .0,
                "private-key",
            ),
            (
                "ssh-ecdsa",
                self.ssh("ec", &["-t", "ecdsa", "-N", ""]).0,
                "private-key",
            ),
            (
                "ssh-ecdsa-pem",
                self.ssh("ecpem", &["-t", "ecdsa", "-m", "PEM", "-N", ""]).0,
                "private-key",
            ),
            (
                "openssl-genrsa-traditional",
                self.openssl("genrsa.pem", &["genrsa", "-traditional", "2048"]),
                "private-key",
            ),
            (
                "openssl-genrsa-pkcs8",
                self.openssl("genrsa8.pem", &["genrsa", "2048"]),
                "private-key",
            ),
            (
                "openssl-genpkey-ed25519",
                self.openssl("ed.pem", &["genpkey", "-algorithm", "ed25519"]),
                "private-key",
            ),
            (
                "openssl-ec-traditional",
                self.openssl(
                    "ec.pem",
                    &["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
                ),
                "private-key",
            ),
            (
                "openssl-pkcs8-encrypted",
                self.openssl(
                    "enc.pem",
                    &[
                        "genpkey",
                        "-algorithm",
                        "ed25519",
                        "-aes-256-cbc",
                        "-pass",
                        "pass:x",
                    ],
                ),
                "private-key",
            ),
        ];
        // DSA is gone from newer OpenSSH; where it exists it is still a private key.
        if Command::new("ssh-keygen")
            .args(["-q", "-t", "dsa", "-N", "", "-f", "dsa"])
            .current_dir(self.path())
            .output()
            .is_ok_and(|o| o.status.success())
        {
            keys.push(("ssh-dsa", read(self.path(), "dsa"), "private-key"));
        }
        run(self.path(), "age-keygen", &["-o", "age.txt"]);
        keys.push(("age-keygen", read(self.path(), "age.txt"), "age-identity"));
        keys.push(("gpg", self.gpg().0, "private-key"));
        run(
            self.path(),
            "nix-store",
            &[
                "--generate-binary-cache-key",
                "cache.test-1",
                "nix.sk",
                "nix.pk",
            ],
        );
        keys.push(("nix-store", read(self.path(), "nix.sk"), "nix-signing-key"));
        let wg = String::from_utf8(run(self.path(), "wg", &["genkey"]).stdout).unwrap();
        keys.push((
            "wg-quick",
            format!("[Interface]\nPrivateKey = {}Address = 10.1.0.1/24\n", wg),
            "wireguard-private-key",
        ));
        let psk = String::from_utf8(run(self.path(), "wg", &["genpsk"]).stdout).unwrap();
        keys.push((
            "wg-psk",
            format!("[Peer]\nPresharedKey = {psk}"),
            "wireguard-private-key",
        ));
        keys.push((
            "nixos-wireguard",
            format!(
                "{{\n  networking.wireguard.interfaces.wg0.privateKey = \"{}\";\n}}\n",
                wg.trim()
            ),
            "wireguard-private-key",
        ));
        run(
            self.path(),
            "puttygen",
            &[
                "-t",
                "ed25519",
                "-o",
                "k.ppk",
                "--new-passphrase",
                "/dev/null",
            ],
        );
        keys.push(("putty", read(self.path(), "k.ppk"), "putty-private-key"));
        run(
            self.path(),
            "puttygen",
            &[
                "-t",
                "rsa",
                "-b",
                "2048",
                "-o",
                "r.ppk",
                "--new-passphrase",
                "/dev/null",
            ],
        );
        run(
            self.path(),
            "puttygen",
            &["r.ppk", "-O", "private-sshcom", "-o", "r.ssh2"],
        );
        keys.push(("ssh2", read(self.path(), "r.ssh2"), "ssh2-private-key"));
        keys
    }

    /// An armored PGP secret and public key block.
    fn gpg(&self) -> (String, String) {
        let home = self.path().join("gnupg");
        let h = home.to_str().unwrap();
        if !home.exists() {
            std::fs::create_dir_all(&home).unwrap();
            std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .unwrap();
            run(
                self.path(),
                "gpg",
                &[
                    "--homedir",
                    h,
                    "--batch",
                    "--passphrase",
                    "",
                    "--quick-gen-key",
                    "Test <t@example.org>",
                    "ed25519",
                    "sign",
                    "never",
                ],
            );
        }
        let secret = run(
            self.path(),
            "gpg",
            &[
                "--homedir",
                h,
                "--batch",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--armor",
                "--export-secret-keys",
            ],
        )
        .stdout;
        let public = run(
            self.path(),
            "gpg",
            &["--homedir", h, "--batch", "--armor", "--export"],
        )
        .stdout;
        (
            String::from_utf8(secret).unwrap(),
            String::from_utf8(public).unwrap(),
        )
    }
}

/// `text` planted in several file kinds: (file name, content).
fn wrappings(name: &str, text: &str) -> Vec<(String, String)> {
    let indented = |pad: &str| {
        text.trim_end()
            .lines()
            .map(|l| format!("{pad}{l}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let escaped = serde_json::to_string(text).unwrap();
    vec![
        (format!("raw/{name}"), text.to_owned()),
        (
            format!("yaml/{name}.yaml"),
            format!("services:\n  app:\n    key: |\n{}\n", indented("      ")),
        ),
        (
            format!("json/{name}.json"),
            format!("{{\"name\": \"x\", \"key\": {escaped}}}\n"),
        ),
        (
            format!("nix/{name}.nix"),
            format!(
                "{{ pkgs, ... }}:\n{{\n  environment.etc.\"k\".text = ''\n{}\n  '';\n}}\n",
                indented("    ")
            ),
        ),
        (
            format!("nix/{name}-str.nix"),
            format!("{{ key = {escaped}; }}\n"),
        ),
        (
            format!("docs/{name}.md"),
            format!("# Setup\n\nPaste this:\n\n```\n{text}```\n"),
        ),
    ]
}

#[test]
fn real_keys_are_found_in_every_wrapping_and_decoys_are_not() {
    if !Keys::tools() {
        return;
    }
    let Some(repo) = Repo::new() else { return };
    let keys = Keys::new();
    let all = keys.all();
    let mut expected = Vec::new();
    for (name, text, rule) in &all {
        for (path, content) in wrappings(name, text) {
            repo.write(&path, content);
            expected.push((path, rule.to_string()));
        }
    }
    // Decoys: public halves, certificates, armored age, a document quoting header lines.
    let (_, ed_pub) = keys.ssh("decoy", &["-t", "ed25519", "-N", ""]);
    repo.write("decoys/id_ed25519.pub", &ed_pub);
    repo.write("decoys/pgp.asc", keys.gpg().1);
    repo.write("decoys/nix.pk", read(keys.path(), "nix.pk"));
    repo.write(
        "decoys/wg.pub",
        "PublicKey = 6Yp4fCQ8lXJ0pJbZ4bDgU5kzRrKvc5c9o0sE8bqjCGg=\n",
    );
    run(
        keys.path(),
        "openssl",
        &[
            "req", "-x509", "-newkey", "ed25519", "-nodes", "-keyout", "cert.key", "-subj",
            "/CN=t", "-out", "cert.pem",
        ],
    );
    repo.write("decoys/cert.pem", read(keys.path(), "cert.pem"));
    run(
        keys.path(),
        "openssl",
        &["pkey", "-in", "cert.key", "-pubout", "-out", "pub.pem"],
    );
    repo.write("decoys/pub.pem", read(keys.path(), "pub.pem"));
    let recipient =
        String::from_utf8(run(keys.path(), "age-keygen", &["-y", "age.txt"]).stdout).unwrap();
    std::fs::write(keys.path().join("plain"), "hello").unwrap();
    run(
        keys.path(),
        "age",
        &["-a", "-r", recipient.trim(), "-o", "armored.age", "plain"],
    );
    repo.write("decoys/secret.age", read(keys.path(), "armored.age"));
    repo.write(
        "decoys/README.md",
        "An OpenSSH key begins with `-----BEGIN OPENSSH PRIVATE KEY-----` and ends with\n`-----END OPENSSH PRIVATE KEY-----`; an age identity with `AGE-SECRET-KEY-1`.\nSet `PrivateKey = <base64>` in wg0.conf, and `privateKeyFile = \"/run/wg\";` in Nix.\n",
    );
    repo.commit_all();
    let (code, report) = repo.json(&[]);
    assert_eq!(code, 3);
    let mut got = found(&report);
    got.retain(|(p, r)| !(r == "age-identity-placeholder" && p.starts_with("decoys/")));
    let mut want = expected.clone();
    want.sort();
    got.sort();
    let missing: Vec<_> = want.iter().filter(|w| !got.contains(w)).collect();
    let extra: Vec<_> = got.iter().filter(|g| !want.contains(g)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing: {missing:#?}\nextra: {extra:#?}"
    );
    assert!(
        found(&report)
            .iter()
            .all(|(p, _)| !p.starts_with("decoys/")),
        "{report:#}"
    );
    // Positions point at the key, in the right file.
    let f = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "yaml/ssh-ed25519.yaml")
        .unwrap();
    assert_eq!(
        (f["line"].as_u64(), f["column"].as_u64()),
        (Some(4), Some(7))
    );
    assert_eq!(f["level"], "error");
    assert_eq!(f["source"], "index");
    assert_eq!(f["oid"].as_str().unwrap().len(), 40);
    assert_eq!(
        report["summary"]["findings"].as_u64().unwrap() as usize,
        expected.len()
    );
}

#[test]
fn staged_unstaged_and_untracked_are_told_apart() {
    if !common::require_tool("age-keygen", "apt-get install age") {
        return;
    }
    let Some(repo) = Repo::new() else { return };
    repo.write("README.md", "hello\n");
    repo.commit_all();
    run(&repo.root(), "age-keygen", &["-o", "unstaged.txt"]);
    // Tracked with harmless content; the key is only in the worktree.
    let key = read(&repo.root(), "unstaged.txt");
    repo.write("app.conf", "port = 80\n");
    repo.git(&["add", "app.conf"]);
    repo.git(&["commit", "-q", "-m", "app"]);
    repo.write("app.conf", format!("port = 80\n{key}"));
    let (code, r) = repo.json(&["--untracked"]);
    assert_eq!(code, 3);
    assert_eq!(
        found(&r),
        [("unstaged.txt".to_owned(), "age-identity".to_owned())],
        "only the untracked file: the unstaged line is not in the index"
    );
    assert_eq!(r["findings"][0]["source"], "untracked");
    let (code, r) = repo.json(&[]);
    assert_eq!(
        (code, found(&r).len()),
        (0, 0),
        "the index and the worktree differ; the index counts"
    );
    repo.git(&["add", "app.conf"]);
    for args in [&[][..], &["--staged"][..]] {
        let (code, r) = repo.json(args);
        assert_eq!(code, 3, "{args:?}");
        assert_eq!(
            found(&r),
            [("app.conf".to_owned(), "age-identity".to_owned())],
            "{args:?}"
        );
    }
    repo.git(&["commit", "-q", "-m", "oops"]);
    let (code, r) = repo.json(&["--staged"]);
    assert_eq!(
        (code, found(&r).len()),
        (0, 0),
        "committed already: nothing is staged"
    );
    let (code, _) = repo.json(&[]);
    assert_eq!(code, 3, "but the tracked file still holds it");
    // PATH narrows.
    let (code, _) = repo.json(&["README.md"]);
    assert_eq!(code, 0);
    let out = repo.scan(&["../outside"]);
    assert_eq!(out.status.code(), Some(2), "{}", common::stderr(&out));
}

#[test]
fn a_pre_commit_hook_stops_a_commit_that_carries_a_key() {
    if !common::require_tool("ssh-keygen", "apt-get install openssh-client") {
        return;
    }
    let Some(repo) = Repo::new() else { return };
    repo.write("README.md", "hello\n");
    repo.commit_all();
    let hook = repo.root().join(".git/hooks/pre-commit");
    std::fs::create_dir_all(hook.parent().unwrap()).unwrap();
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nexec '{}' scan --staged\n",
            env!("CARGO_BIN_EXE_vars")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    run(
        &repo.root(),
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-f", "deploy_key"],
    );
    repo.git(&["add", "deploy_key", "deploy_key.pub"]);
    let out = repo
        .git_cmd(&["commit", "-q", "-m", "add key"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the hook must stop the commit");
    let err = common::stderr(&out);
    assert!(err.contains("deploy_key:1:1: error[private-key]"), "{err}");
    assert!(!err.contains("deploy_key.pub"), "{err}");
    // Unstage the key, keep the public half: the commit goes through.
    repo.git(&["rm", "-q", "--cached", "deploy_key"]);
    let out = repo
        .git_cmd(&["commit", "-q", "-m", "pub only"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    // `git commit <path>` builds a temporary index (GIT_INDEX_FILE=.git/next-index-*.lock)
    // that holds the key, while .git/index does not.
    repo.write("notes.txt", "x\n");
    repo.git(&["add", "notes.txt"]);
    repo.git(&["commit", "-q", "-m", "notes"]);
    std::fs::copy(
        repo.root().join("deploy_key"),
        repo.root().join("notes.txt"),
    )
    .unwrap();
    let out = repo
        .git_cmd(&["commit", "-q", "-m", "path", "notes.txt"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "git commit <path> must be stopped too"
    );
    assert!(common::stderr(&out).contains("notes.txt:1:1: error[private-key]"));
    let log = repo.git(&["log", "--format=%s"]).stdout;
    assert_eq!(String::from_utf8(log).unwrap(), "notes\npub only\nc\n");
}

#[test]
fn symlinks_submodules_huge_and_binary_files() {
    if !common::require_tool("ssh-keygen", "apt-get install openssh-client") {
        return;
    }
    let Some(repo) = Repo::new() else { return };
    let outside = tempfile::tempdir().unwrap();
    run(
        outside.path(),
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-f", "key"],
    );
    let key = read(outside.path(), "key");
    // A symlink to a key outside the repository: its blob is the target path, and the
    // target is never read.
    std::os::unix::fs::symlink(outside.path().join("key"), repo.root().join("link")).unwrap();
    // A submodule entry (a gitlink) has no content here.
    repo.git(&[
        "update-index",
        "--add",
        "--cacheinfo",
        "160000,1111111111111111111111111111111111111111,sub",
    ]);
    // Huge: over the cap, skipped and counted (even with a key inside).
    let mut huge = key.clone().into_bytes();
    huge.resize(17 * 1024 * 1024, b'x');
    repo.write("huge.txt", &huge);
    let mut bin = vec![0u8, 1, 2, 3];
    bin.extend_from_slice(key.as_bytes());
    repo.write("blob.bin", &bin);
    repo.git(&["add", "link", "huge.txt", "blob.bin"]);
    let (code, r) = repo.json(&[]);
    assert_eq!(code, 0, "{r:#}");
    let s = &r["summary"]["skipped"];
    assert_eq!(
        (s["symlinks"].as_u64(), s["submodules"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        (s["too_large"].as_u64(), s["binary"].as_u64()),
        (Some(1), Some(1))
    );
    // A bigger cap reads the huge file.
    let (code, r) = repo.json(&["--max-size", "20000000"]);
    assert_eq!(code, 3);
    assert_eq!(
        found(&r),
        [("huge.txt".to_owned(), "private-key".to_owned())]
    );
    // --untracked does not follow an untracked symlink either.
    std::os::unix::fs::symlink(outside.path().join("key"), repo.root().join("link2")).unwrap();
    let (code, r) = repo.json(&["--untracked"]);
    assert_eq!(code, 0, "{r:#}");
}

#[test]
fn outside_a_repository_the_paths_given_are_read_from_disk() {
    if !common::require_tool("age-keygen", "apt-get install age") {
        return;
    }
    let env = TestEnv::empty();
    let root = env.root();
    std::fs::create_dir_all(root.join("dir/sub")).unwrap();
    run(&root, "age-keygen", &["-o", "dir/sub/key.txt"]);
    std::fs::write(root.join("dir/ok.txt"), "fine\n").unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    run(elsewhere.path(), "age-keygen", &["-o", "other.txt"]);
    std::os::unix::fs::symlink(
        elsewhere.path().join("other.txt"),
        root.join("dir/link.txt"),
    )
    .unwrap();
    let out = env.vars(&["scan", "--json", "dir"]);
    assert_eq!(out.status.code(), Some(3), "{}", common::stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        found(&r),
        [("dir/sub/key.txt".to_owned(), "age-identity".to_owned())]
    );
    assert_eq!(r["findings"][0]["source"], "file");
    assert_eq!(
        r["summary"]["skipped"]["symlinks"], 1,
        "the link is not followed"
    );
    // Without paths, outside a repository: an error saying what to do.
    let out = env.vars(&["scan"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::stderr(&out).contains("not in a git repository"),
        "{}",
        common::stderr(&out)
    );
    let out = env.vars(&["scan", "--output", "x"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn allowlists_inline_marks_and_strict() {
    if !common::require_tool("age-keygen", "apt-get install age") {
        return;
    }
    let Some(repo) = Repo::new() else { return };
    for name in [
        "fixtures/a.txt",
        "fixtures/b.txt",
        "docs/c.txt",
        "d.txt",
        "e.txt",
    ] {
        std::fs::create_dir_all(repo.root().join(name).parent().unwrap()).unwrap();
        run(&repo.root(), "age-keygen", &["-o", name]);
    }
    let e = read(&repo.root(), "e.txt");
    repo.write(
        "e.txt",
        format!(
            "# vars:allow: a documented example\n{}",
            e.lines().last().unwrap()
        ),
    );
    repo.write(
        "w.nix",
        "{ users.users.a.initialPassword = \"changeme\"; }\n",
    );
    repo.commit_all();
    let (_, r) = repo.json(&[]);
    let fp = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "d.txt")
        .unwrap()["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let allow = format!(
        "scan:\n  allow:\n    - {{ path: \"fixtures/*\", rules: [age-identity], reason: test fixtures }}\n    - {{ fingerprint: \"{fp}\", reason: published example }}\n"
    );
    repo.write("allow.yaml", &allow);
    let (code, r) = repo.json(&["--allow-file", "allow.yaml"]);
    assert_eq!(code, 3);
    assert_eq!(
        found(&r),
        [
            ("docs/c.txt".to_owned(), "age-identity".to_owned()),
            ("w.nix".to_owned(), "nix-plaintext-password".to_owned()),
        ]
    );
    assert_eq!(
        r["summary"]["allowed"], 4,
        "two fixtures, one fingerprint, one inline mark"
    );
    // The fingerprint survives the key moving down the file.
    repo.write(
        "d.txt",
        format!("\n\nmoved\n{}", read(&repo.root(), "d.txt")),
    );
    std::fs::remove_file(repo.root().join("docs/c.txt")).unwrap();
    repo.commit_all();
    let (code, r) = repo.json(&["--allow-file", "allow.yaml"]);
    assert_eq!(code, 0, "warnings alone pass: {r:#}");
    assert_eq!(
        found(&r),
        [("w.nix".to_owned(), "nix-plaintext-password".to_owned())]
    );
    let (code, _) = repo.json(&["--allow-file", "allow.yaml", "--strict"]);
    assert_eq!(code, 3, "--strict makes warnings count");
}

/// The matched text of a finding appears in no output, whatever the format.
#[test]
fn the_match_never_appears_in_any_output() {
    if !common::require_tool("age-keygen", "apt-get install age")
        || !common::require_tool("ssh-keygen", "apt-get install openssh-client")
    {
        return;
    }
    let Some(repo) = Repo::new() else { return };
    run(&repo.root(), "age-keygen", &["-o", "identity.txt"]);
    run(
        &repo.root(),
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-f", "id_ed25519"],
    );
    // A file name with a terminal escape: printed escaped.
    repo.write(
        "evil\x1b]0;pwned\x07.txt",
        read(&repo.root(), "identity.txt"),
    );
    repo.commit_all();
    let identity = read(&repo.root(), "identity.txt");
    let sentinels: Vec<String> = identity
        .lines()
        .filter(|l| l.starts_with("AGE-SECRET-KEY-"))
        .map(str::to_owned)
        .chain(
            read(&repo.root(), "id_ed25519")
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .map(str::to_owned),
        )
        .collect();
    assert!(sentinels.len() >= 3);
    let mut outputs = Vec::new();
    for format in ["human", "json", "sarif", "github"] {
        let out = repo.scan(&["--format", format]);
        assert_eq!(out.status.code(), Some(3), "{format}");
        outputs.push((format.to_owned(), out.stdout, out.stderr));
        let file = repo.root().join(format!("out.{format}"));
        if format != "human" {
            let out = repo.scan(&["--format", format, "--output", file.to_str().unwrap()]);
            assert_eq!(out.status.code(), Some(3));
            assert!(out.stdout.is_empty(), "--output leaves stdout empty");
            outputs.push((
                format!("{format} file"),
                std::fs::read(&file).unwrap(),
                out.stderr,
            ));
        }
    }
    for (what, stdout, stderr) in &outputs {
        for s in &sentinels {
            for (stream, bytes) in [("stdout", stdout), ("stderr", stderr)] {
                assert!(
                    !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                    "{what} {stream} contains key material"
                );
            }
        }
        assert!(
            !stderr.contains(&0x1b) && !stdout.contains(&0x1b),
            "{what}: raw escape printed"
        );
    }
    let human = String::from_utf8_lossy(&outputs[0].2).into_owned();
    assert!(
        human.contains("evil\\e]0;pwned\\x07.txt:3:1: error[age-identity]"),
        "{human}"
    );
    let sarif: serde_json::Value = serde_json::from_slice(&outputs[3].1).unwrap();
    assert_eq!(sarif["runs"][0]["results"].as_array().unwrap().len(), 3);
    let gh = String::from_utf8_lossy(&outputs[5].1).into_owned();
    assert!(gh.contains("::error file=id_ed25519,line=1,col=1,"), "{gh}");
}

#[test]
fn the_hooks_file_runs_what_the_tests_run() {
    let text = std::fs::read_to_string(common::repo().join(".pre-commit-hooks.yaml")).unwrap();
    let hooks: Vec<serde_json::Value> = serde_saphyr::from_str(&text).unwrap();
    let by_id = |id: &str| {
        hooks
            .iter()
            .find(|h| h["id"] == id)
            .unwrap_or_else(|| panic!("no hook {id}"))
    };
    // The commands the hook test above runs through `git commit`, and a pre-push scan.
    for (id, entry, stage, language) in [
        ("vars-scan", "vars scan --staged", "pre-commit", "rust"),
        (
            "vars-scan-system",
            "vars scan --staged",
            "pre-commit",
            "system",
        ),
        ("vars-scan-all", "vars scan", "pre-push", "rust"),
        ("vars-scan-all-system", "vars scan", "pre-push", "system"),
    ] {
        let h = by_id(id);
        assert_eq!(h["entry"], entry, "{id}");
        assert_eq!(h["language"], language, "{id}");
        assert_eq!(
            h["pass_filenames"], false,
            "{id}: the store rules need the whole store"
        );
        assert_eq!(h["always_run"], true, "{id}");
        assert!(
            h["stages"].as_array().unwrap().iter().any(|s| s == stage),
            "{id}"
        );
    }
    for file in [
        "examples/github-actions-vars.yml",
        ".github/workflows/ci.yml",
    ] {
        let text = std::fs::read_to_string(common::repo().join(file)).unwrap();
        let workflow: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert!(
            workflow["jobs"].as_object().is_some_and(|j| !j.is_empty()),
            "{file}"
        );
    }
    let example: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(common::repo().join("examples/github-actions-vars.yml")).unwrap(),
    )
    .unwrap();
    let job = &example["jobs"]["vars"];
    assert_eq!(job["permissions"]["security-events"], "write");
    let steps = job["steps"].as_array().unwrap();
    let runs: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
    assert!(runs.contains(&"vars check"), "{runs:?}");
    assert!(
        runs.contains(&"vars scan --format sarif --output vars.sarif"),
        "{runs:?}"
    );
    let upload = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("github/codeql-action/upload-sarif"))
        })
        .expect("an upload-sarif step");
    assert_eq!(upload["if"], "always()");
    assert_eq!(upload["with"]["sarif_file"], "vars.sarif");
}

/// `prog ARGS` in `dir`, its standard output.
fn stdout_of(dir: &Path, prog: &str, args: &[&str]) -> String {
    String::from_utf8(run(dir, prog, args).stdout).unwrap()
}

#[test]
fn real_keys_in_reviewed_wrappings_are_found() {
    // Review 3: base64 wrapped over lines, newlines collapsed to spaces, base64 of an age
    // identity file, key lines behind a quote or comment prefix.
    for (t, hint) in [
        ("ssh-keygen", "apt-get install openssh-client"),
        ("openssl", "apt-get install openssl"),
        ("age-keygen", "apt-get install age"),
        ("base64", "apt-get install coreutils"),
    ] {
        if !common::require_tool(t, hint) {
            return;
        }
    }
    let Some(repo) = Repo::new() else { return };
    let keys = Keys::new();
    let d = keys.path();
    let (ed, ed_pub) = keys.ssh("ed", &["-t", "ed25519", "-N", ""]);
    keys.openssl("rsa.pem", &["genpkey", "-algorithm", "RSA"]);
    keys.openssl("p8.pem", &["genpkey", "-algorithm", "ed25519"]);
    run(d, "age-keygen", &["-o", "keys.txt"]);
    let indent = |text: &str, pad: &str| {
        text.lines()
            .map(|l| format!("{pad}{l}\n"))
            .collect::<String>()
    };
    let mut want: Vec<(String, &str)> = Vec::new();
    let mut plant = |path: &str, text: String, rule: &'static str| {
        repo.write(path, text);
        want.push((path.to_owned(), rule));
    };
    // 1. base64 over several lines: GNU base64's 76 columns, openssl's 64, a YAML block.
    let ed_b64 = stdout_of(d, "base64", &["ed"]);
    assert!(ed_b64.lines().count() > 3, "{ed_b64}");
    plant("b64/id_ed25519.b64", ed_b64.clone(), "private-key");
    plant(
        "b64/rsa.b64",
        stdout_of(d, "openssl", &["base64", "-in", "rsa.pem"]),
        "private-key",
    );
    plant(
        "b64/secret.yaml",
        format!(
            "data:\n  id_ed25519: |\n{}  other: x\n",
            indent(&ed_b64, "    ")
        ),
        "private-key",
    );
    // 3. base64 of sops' age keys.txt: one line in a Kubernetes Secret, or wrapped.
    let age_b64 = stdout_of(d, "base64", &["-w0", "keys.txt"]);
    plant(
        "age/secret.yaml",
        format!("apiVersion: v1\nkind: Secret\ndata:\n  keys.txt: {age_b64}\n"),
        "age-identity",
    );
    plant("age/keys.b64", age_b64, "age-identity");
    plant(
        "age/keys-wrapped.b64",
        stdout_of(d, "base64", &["keys.txt"]),
        "age-identity",
    );
    // 2. Newlines collapsed to spaces by an unquoted `echo $(cat key)`.
    for (name, file) in [("ed", "id_ed25519"), ("rsa.pem", "rsa.pem")] {
        let collapsed = stdout_of(d, "sh", &["-c", &format!("echo $(cat {name})")]);
        assert_eq!(collapsed.lines().count(), 1);
        plant(
            &format!("collapsed/{file}"),
            collapsed.clone(),
            "private-key",
        );
        plant(
            &format!("collapsed/{file}.env"),
            format!("KEY=\"{}\"\n", collapsed.trim_end()),
            "private-key",
        );
    }
    // 4. Key lines behind a Markdown quote or table, an SQL or a TeX comment.
    for (path, key, script) in [
        ("prefix/reply.md", "ed", "sed 's/^/> /' ed"),
        ("prefix/reply2.md", "ed", "sed 's/^/> > /' ed"),
        ("prefix/keys.sql", "rsa", "sed 's/^/-- /' rsa.pem"),
        ("prefix/keys.tex", "rsa", "sed 's/^/% /' rsa.pem"),
        ("prefix/keys.erl", "p8", "sed 's/^/%% /' p8.pem"),
        (
            "prefix/table.md",
            "p8",
            "awk '{print \"| \" $0 \" |\"}' p8.pem",
        ),
    ] {
        let text = stdout_of(d, "sh", &["-c", script]);
        assert!(text.lines().count() > 2, "{key}: {text}");
        plant(path, text, "private-key");
    }
    // An OpenSSH key's body without its BEGIN and END lines, on one line or on its own.
    let body: Vec<&str> = ed.lines().filter(|l| !l.starts_with("-----")).collect();
    plant(
        "bare/ssh.env",
        format!("SSH_KEY={}\n", body.concat()),
        "private-key",
    );
    plant(
        "bare/ssh-lines",
        format!("{}\n", body.join("\n")),
        "private-key",
    );
    let (rsa_ssh, _) = keys.ssh("rsa", &["-t", "rsa", "-b", "2048", "-N", "pass"]);
    let rsa_body: Vec<&str> = rsa_ssh
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    plant(
        "bare/rsa.yaml",
        format!("ssh_key: {}\n", rsa_body.concat()),
        "private-key",
    );
    // Decoys: public keys and certificates in the same wrappings.
    std::fs::write(d.join("ed.pub"), &ed_pub).unwrap();
    repo.write("decoys/pub.b64", stdout_of(d, "base64", &["ed.pub"]));
    run(
        d,
        "openssl",
        &[
            "req", "-x509", "-key", "rsa.pem", "-subj", "/CN=t", "-out", "cert.pem",
        ],
    );
    repo.write(
        "decoys/cert.b64",
        stdout_of(d, "openssl", &["base64", "-in", "cert.pem"]),
    );
    // What every unencrypted ed25519 key's body starts with.
    repo.write(
        "decoys/ssh-prefix.md",
        format!("An OpenSSH key body starts `{}`.\n", &body[0][..60]),
    );
    repo.write(
        "decoys/cert-quoted.md",
        stdout_of(d, "sh", &["-c", "sed 's/^/> /' cert.pem"]),
    );
    repo.write(
        "decoys/cert-collapsed.txt",
        stdout_of(d, "sh", &["-c", "echo $(cat cert.pem)"]),
    );
    repo.commit_all();
    let (code, report) = repo.json(&[]);
    assert_eq!(code, 3, "{report:#}");
    let mut got = found(&report);
    got.sort();
    let mut want: Vec<(String, String)> =
        want.into_iter().map(|(p, r)| (p, r.to_owned())).collect();
    want.sort();
    assert_eq!(got, want, "{report:#}");
}
