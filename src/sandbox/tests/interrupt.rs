//! Interrupts: the signal handler kills live runs and removes their work dirs (prompt values
//! included) before vars exits; a signal ignored at start stays ignored; SIGKILL leaves the
//! dir to the next run's sweep. Each test spawns this test binary as the child that is
//! interrupted.

use super::*;

/// Environment variable that turns [`interrupt_child`] from a no-op into the child half of
/// [`interrupt_removes_work_dirs_and_kills_runs`].
const INTERRUPT_ROOT: &str = "VARS_TEST_INTERRUPT_ROOT";

/// Child half: installs the handler and starts a long run (`sleep $VARS_TEST_SLEEP`). Ignored
/// by default and a no-op without the env var, so it runs only when a parent test spawns it.
#[test]
#[ignore = "spawned by interrupt_removes_work_dirs_and_kills_runs"]
fn interrupt_child() {
    let Some(root) = std::env::var_os(INTERRUPT_ROOT) else {
        return;
    };
    let kind = match std::env::var("VARS_TEST_INTERRUPT_KIND").as_deref() {
        Ok("bwrap") => detect(SandboxChoice::Auto).unwrap(),
        _ => SandboxKind::Unsandboxed,
    };
    install_interrupt_cleanup().unwrap();
    let sleep = std::env::var("VARS_TEST_SLEEP").unwrap();
    let mut job = Job::new("machines/m/g", "g", format!("sleep {sleep}"));
    job.work_root = Some(PathBuf::from(root));
    let _ = run(&kind, &job);
    unreachable!("the parent interrupts this run");
}

/// Start [`interrupt_child`] running `sleep <sleep>` in `kind` with work dirs in `fx`, and
/// wait until the script runs.
fn start_child(kind: &SandboxKind, fx: &Fixture, sleep: &str) -> std::process::Child {
    start_child_ignoring(kind, fx, sleep, "")
}

/// [`start_child`] with the signals `ignore` (e.g. `HUP`, as `nohup` does) ignored from the
/// start, through bash's `trap ''` before it execs the child.
fn start_child_ignoring(
    kind: &SandboxKind,
    fx: &Fixture,
    sleep: &str,
    ignore: &str,
) -> std::process::Child {
    let child = Command::new("bash")
        .args(["-c", &format!("trap '' {ignore}; exec \"$0\" \"$@\"")])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "sandbox::tests::interrupt::interrupt_child",
            "--nocapture",
        ])
        .env(INTERRUPT_ROOT, fx.path())
        .env(
            "VARS_TEST_INTERRUPT_KIND",
            if kind.is_sandboxed() { "bwrap" } else { "none" },
        )
        .env("VARS_TEST_SLEEP", sleep)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the script runs", || !sleeping(sleep).is_empty());
    let work_dirs = fs::read_dir(fx.path()).unwrap().count();
    assert_eq!(work_dirs, 1, "{kind}: the run's work dir exists");
    child
}

fn wait_for_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let mut status = None;
    wait_until("the child exits", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status.unwrap()
}

/// Processes whose command line is exactly `sleep <arg>` and that are not zombies.
pub(super) fn sleeping(arg: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z'));
        let argv: Vec<&[u8]> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .collect();
        if !zombie && argv.len() == 2 && argv[0].ends_with(b"sleep") && argv[1] == arg.as_bytes() {
            found.push(pid);
        }
    }
    found
}

pub(super) fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn interrupt_removes_work_dirs_and_kills_runs() {
    for kind in kinds() {
        let fx = Fixture::new();
        // A distinctive argument per kind, so the test can find the script's process.
        let sleep = if kind.is_sandboxed() {
            "987.25"
        } else {
            "987.75"
        };
        // SIGHUP (a closed terminal, a dropped ssh connection) and SIGQUIT too: review 2,
        // finding 4 (the prompt's plaintext stayed in the work dir); and the other signals
        // that terminate by default (review 3, finding 5).
        use rustix::process::Signal;
        for (signal, code) in [
            (Signal::INT, 130),
            (Signal::TERM, 143),
            (Signal::HUP, 129),
            (Signal::QUIT, 131),
            (Signal::USR1, 138),
            (Signal::ALARM, 142),
            (Signal::XCPU, 152),
            (Signal::POWER, 158),
        ] {
            let mut child = start_child(&kind, &fx, sleep);
            let pid = rustix::process::Pid::from_child(&child);
            rustix::process::kill_process(pid, signal).unwrap();
            assert_eq!(
                wait_for_exit(&mut child).code(),
                Some(code),
                "{kind} {signal:?}"
            );
            fx.assert_clean(&kind);
            wait_until(
                &format!("the script is gone after {signal:?} ({kind})"),
                || sleeping(sleep).is_empty(),
            );
        }
    }
}

/// A signal vars was started with ignored stays ignored (`nohup` ignores SIGHUP): the run goes
/// on, and the next signal that is not ignored still cleans up.
#[test]
fn signals_ignored_at_start_stay_ignored() {
    use rustix::process::Signal;
    let kind = SandboxKind::Unsandboxed;
    let fx = Fixture::new();
    let sleep = "987.125";
    let mut child = start_child_ignoring(&kind, &fx, sleep, "HUP");
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, Signal::HUP).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP ended a nohup run"
    );
    assert_eq!(sleeping(sleep).len(), 1, "the run goes on");
    rustix::process::kill_process(pid, Signal::TERM).unwrap();
    assert_eq!(wait_for_exit(&mut child).code(), Some(143));
    fx.assert_clean(&kind);
    wait_until("the script is gone", || sleeping(sleep).is_empty());
}

/// SIGKILL leaves no chance to clean up: bubblewrap's sandbox still dies with vars
/// (`--die-with-parent`), and the next run in the same root removes the orphaned work dir.
#[test]
fn killed_runs_die_and_their_work_dir_is_swept_later() {
    let Some(kind) = bwrap() else { return };
    let fx = Fixture::new();
    let sleep = "987.5";
    let mut child = start_child(&kind, &fx, sleep);
    child.kill().unwrap();
    wait_for_exit(&mut child);
    wait_until("the script is gone", || sleeping(sleep).is_empty());
    assert_eq!(
        fs::read_dir(fx.path()).unwrap().count(),
        1,
        "the orphan is still there"
    );
    fx.run(&kind, &fx.job("true", &[])).unwrap();
}
