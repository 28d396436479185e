//! The Nix side evaluated for real: `nix/lib.nix` and the NixOS, nix-darwin, home-manager and
//! flake-parts modules, with Debian's `nix-instantiate`, against stores the real `vars` binary
//! generates from the clan8 and darwin2 example fleets (plus the broken copies
//! `nix/tests/prepare.sh` makes).
//!
//! The cases live in `nix/tests/` (`values.<case> = { actual; expected; }`, `errors.<case> = {
//! expr; message; }`); this module runs them, as `nix/tests/run.sh` does for the flake's checks.
//! `nix/tests/lib.nix` always runs (CI too). The module tests need nixpkgs' `lib/`, which no
//! package registry carries: they run when `VARS_NIXPKGS_LIB` names one and skip loudly
//! otherwise (the one skip the issue accepts, CI included).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::common;
use crate::fleets;

const NIX_HINT: &str = "apt-get install nix-bin (or any Nix)";

/// The stores, generated once for every test of this module: ROOT/clan8/vars,
/// ROOT/darwin2/vars and ROOT/broken/<case>/vars.
fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        // Stores of earlier runs whose process is gone (a static is never dropped).
        for e in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("nix-tests-")
                && !Path::new("/proc").join(pid).exists()
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let root = base.join(format!("nix-tests-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for fleet in ["clan8", "darwin2"] {
            let env = fleets::generated(fleet);
            common::copy_dir(&env.store(), &root.join(fleet).join("vars"));
        }
        let out = Command::new("bash")
            .arg(common::repo().join("nix/tests/prepare.sh"))
            .arg(&root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "prepare.sh failed:\n{}",
            common::stderr(&out)
        );
        root
    })
}

/// `nix-instantiate --eval --strict [--json] -E EXPR`: (success, stdout, stderr).
fn eval(expr: &str, json: bool) -> (bool, String, String) {
    let mut c = Command::new("nix-instantiate");
    c.args(["--eval", "--strict"]);
    if json {
        c.arg("--json");
    }
    // No <nixpkgs> from the environment: the tests name everything they use.
    let out = c
        .arg("-E")
        .arg(expr)
        .env("NIX_PATH", "")
        .env_remove("NIX_REMOTE")
        .output()
        .expect("nix-instantiate runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn eval_json(expr: &str) -> serde_json::Value {
    let (ok, stdout, stderr) = eval(expr, true);
    assert!(ok, "evaluating {expr} failed:\n{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

/// The test suite in `file` (relative to nix/tests) called with `args` (a Nix attribute set).
fn suite_expr(file: &str, args: &str) -> String {
    format!(
        "(import {} {args})",
        common::repo().join("nix/tests").join(file).display()
    )
}

/// Every `values` case has actual == expected; returns how many there are.
fn check_values(suite: &str) -> usize {
    let values = eval_json(&format!("{suite}.values"));
    let values = values.as_object().expect("values is an attribute set");
    let failures: Vec<String> = values
        .iter()
        .filter(|(_, case)| case["actual"] != case["expected"])
        .map(|(name, case)| {
            format!(
                "{name}:\n  actual   {}\n  expected {}",
                case["actual"], case["expected"]
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    values.len()
}

/// Every `errors` case fails to evaluate, and its error output holds its message; returns how
/// many there are.
fn check_errors(suite: &str) -> usize {
    let messages = eval_json(&format!("{suite}.messages"));
    let messages = messages.as_object().expect("messages is an attribute set");
    let failures: Vec<String> = std::thread::scope(|s| {
        let runs: Vec<_> = messages
            .iter()
            .map(|(name, message)| {
                let message = message.as_str().expect("a message is a string").to_owned();
                let expr = format!("{suite}.errors.{name}.expr");
                s.spawn(move || {
                    let (ok, stdout, stderr) = eval(&expr, false);
                    if ok {
                        Some(format!("{name}: evaluated without an error: {stdout}"))
                    } else if !stderr.contains(&message) {
                        Some(format!(
                            "{name}: the error does not say\n  {message}\nit says:\n{stderr}"
                        ))
                    } else {
                        None
                    }
                })
            })
            .collect();
        runs.into_iter().filter_map(|r| r.join().unwrap()).collect()
    });
    assert!(
        failures.is_empty(),
        "{} error case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    messages.len()
}

fn lib_suite() -> Option<String> {
    if !common::require_tool("nix-instantiate", NIX_HINT) {
        return None;
    }
    Some(suite_expr(
        "lib.nix",
        &format!("{{ root = {}; }}", root().display()),
    ))
}

/// The module suite, or None (with a loud SKIP) without a nixpkgs lib/.
fn modules_suite() -> Option<String> {
    if !common::require_tool("nix-instantiate", NIX_HINT) {
        return None;
    }
    let Some(lib) = std::env::var_os("VARS_NIXPKGS_LIB") else {
        eprintln!(
            "\n!!! SKIPPING the Nix module tests: VARS_NIXPKGS_LIB is not set. Point it at a \
             nixpkgs lib/ directory (e.g. a checkout of nix-community/nixpkgs.lib, kept outside \
             this repository); `nix flake check` runs them with the flake's nixpkgs\n"
        );
        return None;
    };
    let lib = PathBuf::from(lib);
    assert!(
        lib.join("default.nix").is_file(),
        "VARS_NIXPKGS_LIB={} is not a nixpkgs lib/ directory (no default.nix)",
        lib.display()
    );
    Some(suite_expr(
        "modules.nix",
        &format!(
            "{{ nixpkgsLib = {}; root = {}; }}",
            lib.display(),
            root().display()
        ),
    ))
}

#[test]
fn lib_reads_generated_manifests() {
    let Some(suite) = lib_suite() else { return };
    assert!(check_values(&suite) >= 15);
}

#[test]
fn lib_refuses_broken_stores_with_clear_errors() {
    let Some(suite) = lib_suite() else { return };
    assert!(check_errors(&suite) >= 15);
}

#[test]
fn modules_evaluate_to_the_expected_configuration() {
    let Some(suite) = modules_suite() else { return };
    assert!(check_values(&suite) >= 60);
}

#[test]
fn modules_fail_with_clear_errors() {
    let Some(suite) = modules_suite() else { return };
    assert!(check_errors(&suite) >= 20);
}

/// The flake's checks run the same cases through nix/tests/run.sh: it must pass here too, and
/// report a failing case (it is the only runner `nix flake check` has).
#[test]
fn run_sh_runs_the_cases_and_reports_failures() {
    if !common::require_tool("nix-instantiate", NIX_HINT) {
        return;
    }
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_vars"));
    let path = std::env::join_paths(
        std::iter::once(bin.parent().unwrap().to_path_buf())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let run = |repo: &Path, work: &Path| {
        let shm = tempfile::tempdir_in("/dev/shm").unwrap();
        Command::new("bash")
            .arg(repo.join("nix/tests/run.sh"))
            .arg(repo)
            .arg(work)
            .env("PATH", &path)
            .env("HOME", work)
            .env("VARS_RUNTIME_DIR", shm.path())
            .env_remove("VARS_NIXPKGS_LIB")
            .output()
            .unwrap()
    };
    let work = tempfile::tempdir().unwrap();
    let out = run(&common::repo(), work.path());
    let stderr = common::stderr(&out);
    assert!(out.status.success(), "run.sh failed:\n{stderr}");
    assert!(stderr.contains("lib: "), "{stderr}");
    assert!(stderr.contains("!!! SKIPPING the module tests"), "{stderr}");

    // A copy whose expectations are wrong in one value and one message.
    let copy = tempfile::tempdir().unwrap();
    for dir in ["nix", "testdata"] {
        common::copy_dir(&common::repo().join(dir), &copy.path().join(dir));
    }
    let lib = copy.path().join("nix/tests/lib.nix");
    let text = std::fs::read_to_string(&lib).unwrap();
    let broken = text
        .replacen(
            "name = \"vars-borg-passphrase-passphrase.age\";",
            "name = \"vars-borg-passphrase-passphrase\";",
            1,
        )
        .replacen(
            "\"no manifest for machine crs58\"",
            "\"no manifest for machine crs59\"",
            1,
        );
    assert_ne!(broken, text);
    std::fs::write(&lib, broken).unwrap();
    let out = run(copy.path(), work.path());
    let stderr = common::stderr(&out);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("FAIL lib: values differ: [\"secret-store-path\"]"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "FAIL lib user-manifest-as-machine: the error does not say: no manifest for machine crs59"
        ),
        "{stderr}"
    );
}

/// Every Nix file of the project parses (the examples cannot be evaluated here: they need
/// nixpkgs, nix-darwin and home-manager).
#[test]
fn every_nix_file_parses() {
    if !common::require_tool("nix-instantiate", NIX_HINT) {
        return;
    }
    let repo = common::repo();
    let mut files = vec![repo.join("flake.nix")];
    for dir in ["nix", "examples"] {
        files.extend(
            common::walk(&repo.join(dir))
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "nix")),
        );
    }
    assert!(files.len() >= 20, "{files:?}");
    for f in &files {
        let out = Command::new("nix-instantiate")
            .arg("--parse")
            .arg(f)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            f.display(),
            common::stderr(&out)
        );
    }
}
