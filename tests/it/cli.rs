//! CLI wiring: exit codes, stdout/stderr discipline, dry runs, prompts without a terminal.

use crate::common::{self, TestEnv};

#[test]
fn usage_errors_exit_2() {
    let env = TestEnv::empty();
    let out = env.vars(&["generate", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[test]
fn missing_config_says_what_to_do() {
    let env = TestEnv::empty();
    let out = env.vars(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(
        err.contains("no vars.yaml found") && err.contains("vars init"),
        "{err}"
    );
}

#[test]
fn check_on_ungenerated_fleet_exits_3_and_json_is_stable() {
    let env = TestEnv::fleet("darwin2");
    let out = env.vars(&["check"]);
    assert_eq!(out.status.code(), Some(3), "{}", common::stderr(&out));
    assert!(out.stdout.is_empty(), "human output goes to stderr");
    let out = env.vars(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["ok"], false);
    let kinds: Vec<&str> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"vault-missing"), "{kinds:?}");
}

#[test]
fn dry_run_prints_plan_and_writes_nothing() {
    let env = TestEnv::fleet("mesh17");
    let out = env.vars(&["generate", "--dry-run"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let err = common::stderr(&out);
    assert!(
        err.contains("generate machines/cortex-alpha/wireguard-hub (not generated yet)"),
        "{err}"
    );
    assert!(err.contains("create vault key"), "{err}");
    assert!(!env.store().exists(), "dry run created the store");
}

#[test]
fn missing_prompts_are_all_listed_without_a_terminal() {
    let env = TestEnv::fleet("clan8");
    let out = env.vars(&["generate"]);
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    for p in [
        "users/crs58/user-password.password",
        "users/raquel/user-password.password",
        "machines/stibnite/tailscale-authkey.authkey",
    ] {
        assert!(err.contains(p), "{p} not listed: {err}");
    }
    assert!(err.contains("--prompt"), "{err}");
    assert!(!env.store().join("machines").exists(), "nothing generated");
}

#[test]
fn schema_graph_and_completions_print_to_stdout() {
    let env = TestEnv::fleet("clan8");
    let schema: serde_json::Value = serde_json::from_slice(&env.ok(&["schema"])).unwrap();
    assert_eq!(schema["title"], "vars.yaml");
    let graph = String::from_utf8(env.ok(&["graph"])).unwrap();
    assert!(
        graph.contains("\"machines/galena/ssh-host-cert\" -> \"shared/ssh-ca\""),
        "{graph}"
    );
    let mermaid = String::from_utf8(env.ok(&["graph", "--format", "mermaid"])).unwrap();
    assert!(mermaid.starts_with("graph LR"));
    assert!(
        String::from_utf8(env.ok(&["completions", "bash"]))
            .unwrap()
            .contains("vars")
    );
}

#[test]
fn init_writes_a_scaffold_and_refuses_to_overwrite() {
    let env = TestEnv::empty();
    env.ok(&["init"]);
    assert!(env.root().join("vars.yaml").is_file());
    assert!(env.root().join("schema/vars.schema.json").is_file());
    let out = env.vars(&["init"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(common::stderr(&out).contains("--force"));
    // The scaffold's placeholders are reported with their position.
    let out = env.vars(&["check"]);
    assert!(
        common::stderr(&out).contains("vars.yaml:"),
        "{}",
        common::stderr(&out)
    );
}

#[test]
fn generate_selects_a_machine_and_jobs_1_matches() {
    if !common::require_tool("bwrap", "apt-get install bubblewrap") {
        return;
    }
    let env = TestEnv::fleet("mesh17");
    let out = env.vars(&["generate", "--machine", "cortex-beta", "--jobs", "1"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(
        env.store()
            .join("machines/cortex-beta/wireguard-key/private-key.age")
            .is_file()
    );
    // The hub's peer list depends on every machine's key (issue 10): generating beta's key
    // generates it too, and with it the other keys it needs, in the same run.
    let plan = common::stderr(&out);
    assert!(
        plan.contains("generate machines/cortex-alpha/wireguard-hub (not generated yet)"),
        "{plan}"
    );
    assert!(
        env.store()
            .join("machines/cortex-gamma/wireguard-key")
            .is_dir()
    );
    assert!(
        !env.store().join("users/ada/age-identity").exists(),
        "a user of another machine is untouched"
    );
    env.ok(&["check", "--machine", "cortex-beta"]);
    let list = String::from_utf8(env.ok(&["list", "--machine", "cortex-beta"])).unwrap();
    assert!(
        list.contains("current") && list.contains("machines/cortex-beta/wireguard-key"),
        "{list}"
    );
    // Regenerating beta's key regenerates the hub's peer list, nothing else.
    let ada = env.key("users/ada.age").display().to_string();
    let out = env.vars(&[
        "generate",
        "--machine",
        "cortex-beta",
        "--regenerate",
        "-i",
        &ada,
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let plan = common::stderr(&out);
    assert!(
        plan.contains(
            "generate machines/cortex-alpha/wireguard-hub (dependency machines/cortex-beta/wireguard-key regenerated"
        ),
        "{plan}"
    );
    assert!(!plan.contains("cortex-gamma"), "{plan}");
    assert!(
        !plan.contains("shared/mesh-psk"),
        "a shared instance only when named: {plan}"
    );
    env.ok(&["check", "--machine", "cortex-beta"]);
    let hub = String::from_utf8(env.ok(&["list", "--machine", "cortex-alpha"])).unwrap();
    assert!(
        hub.lines()
            .any(|l| l.starts_with("current") && l.contains("machines/cortex-alpha/wireguard-hub")),
        "{hub}"
    );
}

/// On a terminal, prompts are asked interactively with hidden input (no echo), and a progress
/// bar shows. Python's `pty` gives the run a pseudo-terminal and types each answer once its
/// question shows.
#[test]
fn prompts_are_asked_on_a_terminal_without_echo() {
    if !common::require_tool("python3", "apt-get install python3")
        || !common::require_tool("bwrap", "apt-get install bubblewrap")
    {
        return;
    }
    let env = TestEnv::fleet("darwin2");
    let vars = env!("CARGO_BIN_EXE_vars");
    // A pseudo-terminal driven like a person: each answer is typed only once its question is
    // on the screen (typing earlier would be echoed before vars turns echo off).
    let driver = r#"
import os, pty, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "--config", "stage1.vars.yaml", "generate"])
screen = b""
answers = [(b"wifi-psk.passphrase", b"typed-passphrase-1\n"), (b"user-password.password", b"typed-login-pw\n")]
deadline = time.time() + 300
while True:
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    screen += chunk
    if answers and answers[0][0] in screen.split(b"Plan:")[-1]:
        time.sleep(0.2)
        os.write(fd, answers.pop(0)[1])
    if time.time() > deadline:
        break
os.waitpid(pid, 0)
sys.stdout.buffer.write(screen)
"#;
    // The system's Python: a pyenv shim would look for its root in the test's empty HOME.
    let python = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())
        .unwrap_or("python3");
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(driver)
        .arg(vars)
        .current_dir(env.root())
        .env("HOME", &env.home)
        .env("VARS_RUNTIME_DIR", env.runtime_dir())
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(
        screen.contains("shared/wifi-psk.passphrase (Wi-Fi passphrase"),
        "{screen}{}",
        common::stderr(&out)
    );
    assert!(
        screen.contains("users/seth/user-password.password"),
        "{screen}"
    );
    assert!(screen.contains("Done: 5 generated"), "{screen}");
    assert!(
        screen.contains("generating ["),
        "a progress bar on the terminal: {screen}"
    );
    assert!(
        !screen.contains("typed-passphrase-1") && !screen.contains("typed-login-pw"),
        "hidden input was echoed: {screen}"
    );
    let seth = env.key("users/seth.age").display().to_string();
    let psk = env.ok(&[
        "--config",
        "stage1.vars.yaml",
        "get",
        "shared/wifi-psk/psk",
        "--identity",
        &seth,
    ]);
    assert_eq!(String::from_utf8_lossy(&psk), "typed-passphrase-1\n");
}

#[test]
fn undeclared_instances_left_in_the_store_are_reported() {
    if !common::require_tool("bwrap", "apt-get install bubblewrap") {
        return;
    }
    let env = crate::fleets::generated("mesh17");
    let yaml = std::fs::read_to_string(env.root().join("vars.yaml")).unwrap();
    assert!(yaml.contains("    generators: [age-identity]"));
    std::fs::write(
        env.root().join("vars.yaml"),
        yaml.replace("    generators: [age-identity]", "    generators: []"),
    )
    .unwrap();
    env.ok(&["generate"]);
    let out = env.vars(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let orphans: Vec<&str> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "orphaned")
        .map(|f| f["subject"].as_str().unwrap())
        .collect();
    assert_eq!(orphans, vec!["users/ada/age-identity"], "{json}");
}

/// `check` reports missing and outdated manifests; `check --machine` only what that machine
/// receives.
#[test]
fn check_reports_manifests_and_machine_narrows_it() {
    if !common::require_tool("bwrap", "apt-get install bubblewrap") {
        return;
    }
    let env = crate::fleets::generated("mesh17");
    let manifest = |m: &str| env.store().join(format!("machines/{m}/manifest.json"));
    std::fs::remove_file(manifest("cortex-beta")).unwrap();
    let edited = std::fs::read_to_string(manifest("cortex-gamma"))
        .unwrap()
        .replacen('{', "{\"x\": 1, ", 1);
    std::fs::write(manifest("cortex-gamma"), edited).unwrap();
    let findings = |args: &[&str]| -> Vec<(String, String, String)> {
        let out = env.vars(args);
        assert_eq!(out.status.code(), Some(3), "{}", common::stderr(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let s = |k: &str| f[k].as_str().unwrap().to_owned();
                (s("kind"), s("subject"), s("message"))
            })
            .collect()
    };
    let all = findings(&["check", "--json"]);
    let manifest_finding = |m: &str, what: &str| {
        (
            "manifest-outdated".to_owned(),
            format!("machines/{m}/manifest.json"),
            format!("{what}: run vars generate"),
        )
    };
    assert_eq!(
        all,
        vec![
            manifest_finding("cortex-beta", "missing"),
            manifest_finding("cortex-gamma", "out of date"),
        ]
    );
    let beta = findings(&["check", "--machine", "cortex-beta", "--json"]);
    assert_eq!(beta, vec![manifest_finding("cortex-beta", "missing")]);
    let out = env.vars(&["check", "--machine", "cortex-alpha"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
}
