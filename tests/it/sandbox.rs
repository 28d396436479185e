//! The generator sandbox through the real `vars` binary (issue 8, DESIGN §6 and §9.7): after
//! `vars unlock` and `vars keygen --keyring` a generator cannot read the vault or the identity
//! from the kernel keyring; a descriptor the caller left open reaches no generator, sandboxed
//! or not; vars runs without core dumps and non-dumpable; a script's terminal escapes are
//! printed as text.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, TestEnv};
use crate::fleets;

const BWRAP: (&str, &str) = ("bwrap", "apt-get install bubblewrap");
const KEYCTL: (&str, &str) = ("keyctl", "apt-get install keyutils");

fn tools(list: &[(&str, &str)]) -> bool {
    list.iter().all(|(t, hint)| common::require_tool(t, hint))
}

/// Declare a shared generator `probe` with one public output `report` for both darwin2
/// laptops, running `script`.
fn add_probe(env: &TestEnv, script: &str, runtime_inputs: &str) {
    let yaml = env.root().join("vars.yaml");
    let text = std::fs::read_to_string(&yaml).unwrap();
    let text = text.replace(
        "generators: [ssh-host-ed25519, wifi-psk, restic-password]",
        "generators: [ssh-host-ed25519, wifi-psk, restic-password, probe]",
    );
    let indented: String = script.lines().map(|l| format!("      {l}\n")).collect();
    let probe = format!(
        "  probe:\n    share: true\n    files:\n      report: {{ secret: false }}\n    \
         runtime-inputs: [{runtime_inputs}]\n    script: |\n{indented}"
    );
    let text = text.replace("\ngenerators:\n", &format!("\ngenerators:\n{probe}"));
    std::fs::write(&yaml, text).unwrap();
}

fn report(env: &TestEnv) -> String {
    // The probe's public output, as committed.
    std::fs::read_to_string(env.store().join("shared/probe/report")).unwrap()
}

/// Issue 8, item 1, end to end: inside `keyctl session -`, `vars keygen --keyring` and
/// `vars unlock` put the admin identity and the vault key into the kernel keyring; a generator
/// that then runs keyctl every way it can writes what it got into a public output, which is
/// committed: neither key is in it.
#[test]
fn a_generator_cannot_read_the_unlocked_vault_or_the_keyring_identity() {
    if !tools(&[BWRAP, KEYCTL]) {
        return;
    }
    let _turn = crate::identity::KEYRING
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let env = fleets::generated("darwin2");
    let key = env.key("users/seth.age");
    // vault.pub is committed, so a hostile script can name the cache entry exactly.
    let vault_pub = std::fs::read_to_string(env.store().join("keys/vault.pub")).unwrap();
    let vault_entry = format!("vars-vault:{}", vault_pub.trim());
    add_probe(
        &env,
        &format!(
            "{{\n\
             for r in @s @u @us; do keyctl show \"$r\"; done\n\
             for id in $(keyctl rlist @s; keyctl rlist @u); do keyctl pipe \"$id\"; echo; done\n\
             keyctl pipe \"$(keyctl search @s user {vault_entry})\"\n\
             keyctl pipe %user:{vault_entry}\n\
             keyctl request user keyring:identity@vars\n\
             keyctl pipe %user:keyring:identity@vars\n\
             keyctl get_persistent @s\n\
             }} > \"$out/report\" 2>&1 || true"
        ),
        "keyctl",
    );
    let script = "trap 'keyctl purge user keyring:identity@vars >/dev/null 2>&1 || true' EXIT\n\
         \"$VARS\" keygen --keyring > /dev/null\n\
         \"$VARS\" unlock --identity \"$KEY\"\n\
         \"$VARS\" generate --identity \"$KEY\"\n\
         cp vars/shared/probe/report sandboxed.report\n\
         # The control: without the sandbox the same probe reads the keyring.\n\
         \"$VARS\" generate probe --regenerate --no-sandbox --identity \"$KEY\" 2> /dev/null\n\
         cp vars/shared/probe/report unsandboxed.report\n\
         # What the keyring holds, read from outside the sandbox, to compare with.\n\
         keyctl pipe \"$(keyctl search @s user \"vars-vault:$(cat vars/keys/vault.pub)\")\" > vault.secret\n\
         keyctl pipe %user:keyring:identity@vars > identity.secret || true\n\
         \"$VARS\" lock\n";
    let out = Command::new("keyctl")
        .args(["session", "-", "sh", "-ec", script])
        .current_dir(env.root())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &env.home)
        .env("VARS_RUNTIME_DIR", env.runtime_dir())
        .env("LANG", "C.UTF-8")
        .env("VARS", env!("CARGO_BIN_EXE_vars"))
        .env("KEY", &key)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    // Lossy: `keyctl pipe` of a keyring prints binary serial numbers.
    let read = |name: &str| {
        String::from_utf8_lossy(&std::fs::read(env.root().join(name)).unwrap_or_default())
            .into_owned()
    };
    let report = read("sandboxed.report");
    let vault = read("vault.secret");
    assert!(vault.len() > 16, "the vault was cached: {vault:?}");
    assert!(
        read("unsandboxed.report").contains(vault.trim()),
        "the probe reads the keyring when nothing stops it:\n{}",
        read("unsandboxed.report")
    );
    assert!(!report.contains(vault.trim()), "vault leaked:\n{report}");
    let identity = read("identity.secret");
    if !identity.trim().is_empty() {
        assert!(
            !report.contains(identity.trim()),
            "identity leaked:\n{report}"
        );
    }
    assert!(
        !report.to_uppercase().contains("AGE-SECRET-KEY"),
        "an age identity leaked:\n{report}"
    );
    assert!(report.contains("Operation not permitted"), "{report}");
}

/// Issue 8, item 5: a descriptor the caller of vars left open (here fd 3 on a file holding a
/// sentinel) reaches no generator, whether sandboxed or not.
#[test]
fn inherited_descriptors_do_not_reach_generators() {
    if !tools(&[BWRAP]) {
        return;
    }
    let env = fleets::generated("darwin2");
    let secret = env.dir.path().join("inherited-secret");
    std::fs::write(&secret, "INHERITED-FD-SENTINEL\n").unwrap();
    add_probe(
        &env,
        "ls /proc/$$/fd > \"$TMPDIR/fds\"\n\
         {\n\
         cat \"$TMPDIR/fds\"\n\
         for fd in 3 4 5 6 7 8 9; do cat /proc/self/fd/$fd; cat <&$fd; done\n\
         } > \"$out/report\" 2>&1 || true",
        "",
    );
    let key = env.key("users/seth.age");
    for sandbox in ["", "--no-sandbox"] {
        let args = format!(
            "exec 3< '{}'; exec \"$VARS\" generate probe --regenerate --identity '{}' {sandbox}",
            secret.display(),
            key.display()
        );
        let out = env
            .command(&[])
            .env("VARS", env!("CARGO_BIN_EXE_vars"))
            .output_with_shell(&args);
        assert!(out.status.success(), "{sandbox}: {}", common::stderr(&out));
        let report = report(&env);
        assert!(
            !report.contains("INHERITED-FD-SENTINEL"),
            "{sandbox}: fd 3 leaked:\n{report}"
        );
        let fds: Vec<&str> = report
            .lines()
            .take_while(|l| l.parse::<u32>().is_ok())
            .collect();
        assert_eq!(fds, ["0", "1", "2", "255"], "{sandbox}:\n{report}");
    }
}

/// Run the env's command line through `sh -c`, keeping its environment and directory.
trait ShellOutput {
    fn output_with_shell(&mut self, script: &str) -> std::process::Output;
}

impl ShellOutput for Command {
    fn output_with_shell(&mut self, script: &str) -> std::process::Output {
        let mut sh = Command::new("/bin/sh");
        sh.args(["-c", script]);
        if let Some(dir) = self.get_current_dir() {
            sh.current_dir(dir);
        }
        sh.env_clear();
        for (k, v) in self.get_envs() {
            if let Some(v) = v {
                sh.env(k, v);
            }
        }
        sh.stdin(Stdio::null()).output().unwrap()
    }
}

/// Issue 8, item 9: while vars runs (here: waiting for a generator), its core-dump limit is 0
/// and it is not dumpable, which the kernel shows by giving the files in its /proc directory
/// to root. As root the test runs vars as nobody, so that the owner tells the two apart.
#[test]
fn vars_runs_without_core_dumps_and_not_dumpable() {
    let root = rustix::process::getuid().is_root();
    let env = TestEnv::fleet("darwin2");
    add_probe(&env, "sleep 30\necho done > \"$out/report\"", "");
    let key = env.key("users/seth.age");
    let mut cmd = env.command(&[
        "generate",
        "--no-sandbox",
        "--identity",
        key.to_str().unwrap(),
    ]);
    let mut args = Vec::new();
    args.extend(fleets::prompts("darwin2"));
    cmd.args(&args).stdout(Stdio::null()).stderr(Stdio::null());
    if root {
        use std::os::unix::process::CommandExt as _;
        // nobody must be able to reach everything vars touches.
        for dir in [env.dir.path(), env.run.path()] {
            give_to_nobody(dir);
        }
        cmd.uid(65534).gid(65534);
    }
    let child = cmd.spawn().unwrap();
    let pid = child.id();
    // Stops vars (SIGTERM: it cleans up) however the test ends.
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_child(&self.0),
                rustix::process::Signal::TERM,
            );
            let _ = self.0.wait();
        }
    }
    let mut child = Stop(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    // Wait until the generator's sleep runs, so vars is past start-up.
    while !sleeping_child_of(pid) {
        assert!(
            Instant::now() < deadline && child.0.try_wait().unwrap().is_none(),
            "vars did not reach the generator"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(fields[4..6], ["0", "0"], "{core}");
    use std::os::unix::fs::MetadataExt as _;
    // The kernel gives the files of a non-dumpable process's /proc directory to root.
    let owner = std::fs::metadata(format!("/proc/{pid}/status"))
        .unwrap()
        .uid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        !uid_line.split_whitespace().nth(1).unwrap().eq("0"),
        "vars runs as a user: {uid_line}"
    );
    assert_eq!(
        owner, 0,
        "a non-dumpable process's /proc files belong to root"
    );
    drop(child);
}

/// Give `dir` and everything in it to nobody (as root the test runs vars as nobody).
fn give_to_nobody(dir: &Path) {
    let _ = std::os::unix::fs::lchown(dir, Some(65534), Some(65534));
    if std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            give_to_nobody(&entry.path());
        }
    }
}

/// Whether a `sleep 30` runs among the descendants of `pid`.
fn sleeping_child_of(pid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let cmdline = std::fs::read(path.join("cmdline")).unwrap_or_default();
        if cmdline != b"sleep\x0030\x00" {
            continue;
        }
        // Walk up the parents to vars.
        let mut current = entry.file_name().to_string_lossy().into_owned();
        for _ in 0..8 {
            let stat = std::fs::read_to_string(format!("/proc/{current}/stat")).unwrap_or_default();
            let Some(ppid) = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().nth(1))
            else {
                break;
            };
            if ppid == pid.to_string() {
                return true;
            }
            current = ppid.to_owned();
        }
    }
    false
}

/// Issue 8, item 10 (part): a failing script's stderr is shown with its control characters
/// escaped, so `ESC ] 0 ; … BEL` cannot retitle the terminal.
#[test]
fn a_scripts_terminal_escapes_are_printed_as_text() {
    if !tools(&[BWRAP]) {
        return;
    }
    let env = fleets::generated("darwin2");
    add_probe(
        &env,
        "printf 'before\\033]0;pwned\\007after\\n' >&2\nexit 1",
        "",
    );
    let key = env.key("users/seth.age");
    let out = env.vars(&["generate", "--identity", key.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(!err.contains('\x1b') && !err.contains('\x07'), "{err:?}");
    assert!(err.contains("before\\e]0;pwned\\x07after"), "{err}");
}

/// Issue 8, item 7: without slirp4netns a `network: true` generator stops with an install hint
/// (and never falls back to the host's network namespace).
#[test]
fn network_without_slirp4netns_stops_with_an_install_hint() {
    if !tools(&[BWRAP]) {
        return;
    }
    let env = fleets::generated("darwin2");
    let yaml = env.root().join("vars.yaml");
    add_probe(&env, "echo ran > \"$out/report\"", "");
    let text = std::fs::read_to_string(&yaml).unwrap();
    std::fs::write(
        &yaml,
        text.replace(
            "  probe:\n    share: true\n",
            "  probe:\n    share: true\n    network: true\n",
        ),
    )
    .unwrap();
    // A PATH with every system program but slirp4netns (links resolve into /usr, so the
    // sandbox accepts them).
    let bin = env.dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for dir in ["/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let link = bin.join(&name);
            if name != "slirp4netns" && !link.exists() {
                let _ = std::os::unix::fs::symlink(entry.path(), link);
            }
        }
    }
    let key = env.key("users/seth.age");
    let out = env
        .command(&["generate", "--identity", key.to_str().unwrap()])
        .env("PATH", &bin)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    let err = common::stderr(&out);
    assert!(err.contains("network: true"), "{err}");
    assert!(err.contains("apt-get install slirp4netns"), "{err}");
    assert!(!env.store().join("shared/probe/report").exists());
}

/// A one-machine clan8 fleet whose `db-password` extends the shipped `random-password`, with
/// `extra` appended to its definition.
fn db_password(extra: &str) -> TestEnv {
    TestEnv::yaml(&format!(
        "version: 1\nadmins: [crs58]\nusers:\n  crs58:\n    recipients: [\"{{admin}}\"]\n\
         machines:\n  cinnabar:\n    recipients: [\"{{host}}\"]\n    generators: [db-password]\n\
         generators:\n  db-password:\n    extends: random-password\n{extra}"
    ))
}

/// Review 2, finding 1 (poc1): a committed `tools/head -> /usr/bin/echo` may not become the
/// `head` of the shipped `random-password` script, which would then write the constant
/// `c1024devurandom…`: named as a runtime input it is refused (by `/proc/self/cwd` or by the
/// checkout's path), and a checkout directory first on `PATH` is skipped for the real `head`.
#[test]
fn a_committed_link_cannot_rename_a_system_program() {
    if !tools(&[BWRAP]) {
        return;
    }
    for (input, expected) in [
        ("/proc/self/cwd/tools/head".to_owned(), "goes through /proc"),
        (String::new(), "a program of another name"),
    ] {
        let env = db_password("");
        let tools_dir = env.root().join("tools");
        std::fs::create_dir(&tools_dir).unwrap();
        std::os::unix::fs::symlink("/usr/bin/echo", tools_dir.join("head")).unwrap();
        let input = if input.is_empty() {
            tools_dir.join("head").display().to_string()
        } else {
            input
        };
        let yaml = env.root().join("vars.yaml");
        let text = std::fs::read_to_string(&yaml).unwrap();
        std::fs::write(&yaml, format!("{text}    runtime-inputs: [\"{input}\"]\n")).unwrap();
        let key = env.key("users/crs58.age");
        let out = env.vars(&["generate", "--identity", key.to_str().unwrap()]);
        let err = common::stderr(&out);
        assert!(!out.status.success(), "{input}: generated\n{err}");
        assert!(err.contains(expected), "{input}: {err}");
        assert!(!env.store().join("machines/cinnabar/db-password").exists());
    }

    let env = db_password("");
    let tools_dir = env.root().join("tools");
    std::fs::create_dir(&tools_dir).unwrap();
    std::os::unix::fs::symlink("/usr/bin/echo", tools_dir.join("head")).unwrap();
    let path = std::env::join_paths(
        std::iter::once(tools_dir.clone())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let key = env.key("users/crs58.age");
    let key = key.to_str().unwrap();
    let out = env
        .command(&["generate", "--identity", key])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let password = env.ok(&[
        "get",
        "--identity",
        key,
        "machines/cinnabar/db-password/password",
    ]);
    let password = String::from_utf8(password).unwrap();
    assert_eq!(password.len(), 32, "{password}");
    assert!(!password.contains("c1024"), "echo ran as head: {password}");
}

/// A one-machine clan8 fleet with the generator `netgen` (one public file), whose definition
/// gets `extra` lines, and `other` more generators.
fn netgen(extra: &str, other: &str) -> TestEnv {
    TestEnv::yaml(&format!(
        "version: 1\nadmins: [crs58]\nusers:\n  crs58:\n    recipients: [\"{{admin}}\"]\n\
         machines:\n  cinnabar:\n    recipients: [\"{{host}}\"]\n    generators: [netgen]\n\
         generators:\n  netgen:\n{extra}    files: {{ x: {{ secret: false }} }}\n    \
         script: printf x > \"$out/x\"\n{other}"
    ))
}

/// Review 2, finding 5 (poc3): `timeout: "18446744073709551615"` on a network generator made
/// `vars generate` panic (an `Instant + Duration` overflow). Now a positioned load error; zero
/// is refused too, 24h is the limit.
#[test]
fn a_huge_timeout_is_a_positioned_error_not_a_panic() {
    if !tools(&[BWRAP]) {
        return;
    }
    let env = netgen(
        "    network: true\n    timeout: \"18446744073709551615\"\n",
        "",
    );
    let key = env.key("users/crs58.age");
    let out = env.vars(&["generate", "--identity", key.to_str().unwrap()]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("vars.yaml:13:14:"), "positioned: {err}");
    assert!(err.contains("it may be at most 24h"), "{err}");

    for (timeout, ok) in [
        ("24h", true),
        ("86401", false),
        ("24h1s", false),
        ("0", false),
    ] {
        let env = netgen(&format!("    timeout: \"{timeout}\"\n"), "");
        let loaded = vars::model::load(&env.root().join("vars.yaml"));
        assert_eq!(loaded.is_ok(), ok, "{timeout}");
    }
}

/// Review 2, finding 3: a `network: true` generator could send what it is given anywhere, so it
/// is given nothing secret: a prompt or a plain dependency is a positioned load error with a
/// hint; the public files of `machines/*/GEN` are fine.
#[test]
fn a_network_generator_gets_no_secret_input() {
    let refused = |extra: &str, other: &str, expected: &str| {
        let env = netgen(&format!("    network: true\n{extra}"), other);
        let err = vars::model::load(&env.root().join("vars.yaml"))
            .err()
            .unwrap_or_else(|| panic!("{extra} loads"))
            .to_string();
        assert!(err.contains("vars.yaml:1"), "positioned: {err}");
        assert!(err.contains(expected), "{err}");
        assert!(err.contains("hint: split it"), "{err}");
    };
    refused(
        "    prompts: { pw: { type: hidden } }\n",
        "",
        "has network: true and a prompt \"pw\"",
    );
    refused(
        "    dependencies: [ssh-ca]\n",
        "",
        "has network: true and depends on \"ssh-ca\"",
    );
    // Also a dependency with public files only today: the rule is read off this definition.
    refused(
        "    dependencies: [pub]\n",
        "  pub:\n    files: { p: { secret: false } }\n    script: printf p > \"$out/p\"\n",
        "depends on \"pub\"",
    );

    let env = netgen(
        "    network: true\n    dependencies: [\"machines/*/wireguard-key\"]\n",
        "",
    );
    let text = std::fs::read_to_string(env.root().join("vars.yaml")).unwrap();
    let text = text.replace(
        "generators: [netgen]",
        "generators: [netgen, wireguard-key]",
    );
    std::fs::write(env.root().join("vars.yaml"), text).unwrap();
    if let Err(e) = vars::model::load(&env.root().join("vars.yaml")) {
        panic!("machines/*/GEN is public: {e}");
    }
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// Review 2, finding 4 (poc4): SIGHUP (a closed terminal, a dropped ssh connection) ended
/// `vars generate` without removing the run's work dir, so the prompt's plaintext stayed in the
/// runtime dir. Now vars cleans up and exits 129 (SIGQUIT alike, 131).
#[test]
fn a_hang_up_leaves_no_prompt_behind() {
    if !tools(&[BWRAP]) {
        return;
    }
    for (signal, code) in [
        (rustix::process::Signal::HUP, 129),
        (rustix::process::Signal::QUIT, 131),
    ] {
        let env = netgen("    prompts: { pw: { type: hidden } }\n", "");
        let yaml = env.root().join("vars.yaml");
        let text = std::fs::read_to_string(&yaml).unwrap();
        std::fs::write(
            &yaml,
            text.replace(
                "script: printf x > \"$out/x\"",
                "script: sleep 30; cp \"$prompts/pw\" \"$out/x\"",
            ),
        )
        .unwrap();
        let pw = env.dir.path().join("pw");
        std::fs::write(&pw, "HUNTER2-PLAINTEXT").unwrap();
        let key = env.key("users/crs58.age");
        let mut child = env
            .command(&[
                "generate",
                "--identity",
                key.to_str().unwrap(),
                "--prompt-file",
                &format!("netgen.pw={}", pw.display()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let holds_plaintext = |run: &Path| {
            files_under(run)
                .iter()
                .any(|f| std::fs::read(f).is_ok_and(|b| b == b"HUNTER2-PLAINTEXT"))
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !holds_plaintext(&env.runtime_dir()) {
            assert!(
                Instant::now() < deadline,
                "the prompt never reached the work dir"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid = rustix::process::Pid::from_child(&child);
        rustix::process::kill_process(pid, signal).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "{signal:?}: {status}");
        assert!(
            !holds_plaintext(&env.runtime_dir()),
            "{signal:?}: the prompt is still in {:?}",
            files_under(&env.runtime_dir())
        );
    }
}
