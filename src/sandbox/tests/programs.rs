//! Tests of [`super`]: resolving runtime inputs and the core set, against the real system
//! and against temporary "allowed" trees (links that lead out, rename a program, or go through
//! `/proc`).

use super::*;

fn job(inputs: &[&str]) -> Job {
    let mut job = Job::new("machines/m/g", "g", "true");
    job.runtime_inputs = inputs.iter().map(|s| s.to_string()).collect();
    job
}

#[test]
fn core_set_has_bash_and_coreutils() {
    let p = resolve(&job(&[])).unwrap();
    assert!(p.bash.ends_with("bash"), "{}", p.bash.display());
    let names: Vec<&str> = p.core.iter().map(|(n, _)| n.as_str()).collect();
    for n in ["bash", "cat", "truncate", "sleep", "ln", "head"] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    assert!(!names.contains(&"ssh-keygen"));
    assert!(p.bin.is_empty());
}

#[test]
fn names_resolve_to_canonical_paths() {
    let p = resolve(&job(&["bash", "bash"])).unwrap();
    assert_eq!(p.bin.len(), 1, "duplicates collapse");
    assert_eq!(p.bin[0].1, fs::canonicalize(&p.bin[0].1).unwrap());
}

#[test]
fn unknown_and_relative_inputs_are_not_found() {
    for bad in [
        "no-such-program-vars-test",
        "./bash",
        "",
        "..",
        "/no/such/path",
    ] {
        match resolve(&job(&[bad])) {
            Err(SandboxError::RuntimeInputNotFound { program, generator }) => {
                assert_eq!(program, bad);
                assert_eq!(generator, "g");
            }
            Err(other) => panic!("{bad}: wrong error {other}"),
            Ok(_) => panic!("{bad}: resolved"),
        }
    }
}

fn exe(path: &Path) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, "#!/bin/sh\n").unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn vars_is_the_running_binary() {
    let p = resolve(&job(&["vars"])).unwrap();
    let exe = fs::canonicalize(env::current_exe().unwrap()).unwrap();
    assert_eq!(p.bin, vec![("vars".to_owned(), exe.clone())]);
    assert!(p.host_paths.iter().any(|h| exe.starts_with(h)) || exe.starts_with("/usr"));
}

/// A core set for `resolve_with`, leaked: tests need a `&'static` one.
fn core() -> &'static Core {
    Box::leak(Box::new(resolve_core(&host_path(), &allowed()).unwrap()))
}

fn outside_error(result: Result<Programs, SandboxError>, input: &str) -> PathBuf {
    match result {
        Err(SandboxError::RuntimeInputOutside {
            program,
            generator,
            resolved,
        }) => {
            assert_eq!(program, input);
            assert_eq!(generator, "g");
            resolved
        }
        Err(other) => panic!("{input}: wrong error {other}"),
        Ok(_) => panic!("{input}: resolved"),
    }
}

#[test]
fn system_directory_inputs_contribute_their_bin_dir() {
    let p = resolve(&job(&["/usr", "/usr/bin/env"])).unwrap();
    assert_eq!(p.path_dirs, vec![PathBuf::from("/usr/bin")]);
    assert!(p.host_paths.is_empty(), "/usr is mounted anyway");
    assert_eq!(p.bin[0].0, "env");

    let store = tempfile::tempdir().unwrap();
    let pkg = store.path().join("pkg");
    fs::create_dir_all(pkg.join("bin")).unwrap();
    let allowed = vec![fs::canonicalize(store.path()).unwrap()];
    let input = pkg.to_str().unwrap();
    let p = resolve_with(&job(&[input]), core(), &host_path(), &allowed).unwrap();
    let bin = fs::canonicalize(&pkg).unwrap().join("bin");
    assert_eq!(p.path_dirs, vec![bin.clone()]);
    assert!(p.host_paths.contains(&bin), "outside /usr, so it is bound");

    fs::create_dir(store.path().join("empty")).unwrap();
    let empty = store.path().join("empty");
    let result = resolve_with(
        &job(&[empty.to_str().unwrap()]),
        core(),
        &host_path(),
        &allowed,
    );
    assert!(matches!(
        result,
        Err(SandboxError::RuntimeInputNotFound { .. })
    ));
}

/// Issue 8: `tools/bin -> ~/.ssh` in the repo plus `runtime-inputs: [/path/to/checkout/tools]`.
#[test]
fn a_checkout_directory_with_bin_linked_to_the_home_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let ssh = root.path().join("home/.ssh");
    fs::create_dir_all(&ssh).unwrap();
    fs::write(ssh.join("id_ed25519"), "PRIVATE KEY").unwrap();
    let tools = root.path().join("checkout/tools");
    fs::create_dir_all(&tools).unwrap();
    std::os::unix::fs::symlink(&ssh, tools.join("bin")).unwrap();
    let input = tools.to_str().unwrap();
    let resolved = outside_error(resolve(&job(&[input])), input);
    assert_eq!(resolved, fs::canonicalize(&tools).unwrap());
    let msg = resolve(&job(&[input])).err().unwrap().to_string();
    assert!(msg.contains(input), "{msg}");
    assert!(msg.contains("/nix/store"), "{msg}");

    // Also when the directory itself is in an allowed prefix: its `bin` leads out.
    let allowed = vec![fs::canonicalize(root.path().join("checkout")).unwrap()];
    let resolved = outside_error(
        resolve_with(&job(&[input]), core(), &host_path(), &allowed),
        input,
    );
    assert_eq!(resolved, fs::canonicalize(&ssh).unwrap());

    // A file input linked out of an allowed place, and a plain file in the checkout.
    std::os::unix::fs::symlink(ssh.join("id_ed25519"), tools.join("key")).unwrap();
    let key = tools.join("key");
    outside_error(
        resolve_with(
            &job(&[key.to_str().unwrap()]),
            core(),
            &host_path(),
            &allowed,
        ),
        key.to_str().unwrap(),
    );
    for input in ["/etc/passwd", "/tmp", "/root"] {
        if Path::new(input).exists() {
            outside_error(resolve(&job(&[input])), input);
        }
    }
}

#[test]
fn path_lookup_skips_matches_outside_the_allowed_prefixes() {
    let root = tempfile::tempdir().unwrap();
    let root_path = fs::canonicalize(root.path()).unwrap();
    let (home, sys) = (root_path.join("home/bin"), root_path.join("sys/bin"));
    exe(&home.join("tool"));
    exe(&sys.join("tool"));
    exe(&home.join("only-home"));
    // A system-looking link that leads into the home is outside too.
    std::os::unix::fs::symlink(home.join("only-home"), sys.join("linked")).unwrap();
    let allowed = vec![root_path.join("sys")];
    let path = env::join_paths([&home, &sys]).unwrap();
    assert_eq!(
        lookup("tool", &path, &allowed),
        Lookup::Found(sys.join("tool"))
    );
    assert_eq!(
        lookup("only-home", &path, &allowed),
        Lookup::Refused(Refusal::Outside(home.join("only-home")))
    );
    assert_eq!(
        lookup("linked", &path, &allowed),
        Lookup::Refused(Refusal::Outside(home.join("only-home")))
    );
    assert_eq!(lookup("missing", &path, &allowed), Lookup::Missing);
    let result = resolve_with(&job(&["only-home"]), core(), &path, &allowed);
    assert_eq!(outside_error(result, "only-home"), home.join("only-home"));
}

fn renamed_error(result: Result<Programs, SandboxError>, input: &str) -> PathBuf {
    match result {
        Err(SandboxError::RuntimeInputRenamed {
            program,
            generator,
            link,
        }) => {
            assert_eq!(program, input);
            assert_eq!(generator, "g");
            link
        }
        Err(other) => panic!("{input}: wrong error {other}"),
        Ok(p) => panic!("{input}: resolved to {:?}", p.bin),
    }
}

/// Review 2, finding 1: a committed `tools/head -> /usr/bin/echo` named as a runtime input
/// (by the checkout's path, or found first on `PATH`) would make every `head` of a shipped
/// script an `echo`, and `random-password` constant.
#[test]
fn a_link_that_renames_a_system_program_is_refused_or_skipped() {
    let root = tempfile::tempdir().unwrap();
    let root_path = fs::canonicalize(root.path()).unwrap();
    let sys = root_path.join("sys/bin");
    exe(&sys.join("echo"));
    exe(&sys.join("head"));
    let tools = root_path.join("checkout/tools");
    fs::create_dir_all(&tools).unwrap();
    std::os::unix::fs::symlink(sys.join("echo"), tools.join("head")).unwrap();
    // A relative chain through a second repository link ends at the same place.
    std::os::unix::fs::symlink("../../sys/bin/echo", tools.join("hop")).unwrap();
    std::os::unix::fs::symlink("hop", tools.join("tail")).unwrap();
    let allowed = vec![root_path.join("sys")];

    let head = tools.join("head");
    let input = head.to_str().unwrap();
    let result = resolve_with(&job(&[input]), core(), &host_path(), &allowed);
    assert_eq!(renamed_error(result, input), sys.join("echo"));
    let tail = tools.join("tail");
    let input = tail.to_str().unwrap();
    let result = resolve_with(&job(&[input]), core(), &host_path(), &allowed);
    assert_eq!(renamed_error(result, input), sys.join("echo"));

    // On PATH, the renaming link is skipped for the next real `head`...
    let path = env::join_paths([&tools, &sys]).unwrap();
    assert_eq!(
        lookup("head", &path, &allowed),
        Lookup::Found(sys.join("head"))
    );
    let p = resolve_with(&job(&["head"]), core(), &path, &allowed).unwrap();
    assert_eq!(p.bin, vec![("head".to_owned(), sys.join("head"))]);
    // ...and when there is none, the error says why.
    let only = env::join_paths([&tools]).unwrap();
    let result = resolve_with(&job(&["head"]), core(), &only, &allowed);
    assert_eq!(renamed_error(result, "head"), sys.join("echo"));

    // The same attack against the real system: echo is never `head`.
    if let Ok(echo) = fs::canonicalize("/usr/bin/echo") {
        std::os::unix::fs::symlink(&echo, tools.join("cat")).unwrap();
        let cat = tools.join("cat");
        let input = cat.to_str().unwrap();
        renamed_error(resolve(&job(&[input])), input);
    }
}

/// The NixOS layout keeps working: `/run/current-system/sw/bin/head ->
/// /nix/store/…-system-path/bin/head -> /nix/store/…-coreutils/bin/coreutils`, exposed
/// as `head` so that the multi-call binary acts as `head`.
#[test]
fn a_link_chain_into_a_multi_call_binary_keeps_its_system_name() {
    let root = tempfile::tempdir().unwrap();
    let root_path = fs::canonicalize(root.path()).unwrap();
    let store = root_path.join("nix/store");
    let coreutils = store.join("aaa-coreutils/bin/coreutils");
    exe(&coreutils);
    let system_path = store.join("bbb-system-path/bin");
    fs::create_dir_all(&system_path).unwrap();
    std::os::unix::fs::symlink(&coreutils, system_path.join("head")).unwrap();
    std::os::unix::fs::symlink("coreutils", coreutils.with_file_name("tail")).unwrap();
    let run = root_path.join("run/current-system");
    fs::create_dir_all(&run).unwrap();
    std::os::unix::fs::symlink(store.join("bbb-system-path"), run.join("sw")).unwrap();
    let allowed = vec![store.clone()];

    let sw = run.join("sw/bin/head");
    let p = resolve_with(
        &job(&[sw.to_str().unwrap()]),
        core(),
        &host_path(),
        &allowed,
    )
    .unwrap();
    assert_eq!(p.bin, vec![("head".to_owned(), coreutils.clone())]);
    let path = env::join_paths([run.join("sw/bin"), coreutils.parent().unwrap().into()]).unwrap();
    assert_eq!(
        lookup("head", &path, &allowed),
        Lookup::Found(coreutils.clone())
    );
    assert_eq!(lookup("tail", &path, &allowed), Lookup::Found(coreutils));
}

/// `/proc/self/cwd/…` is the checkout vars runs in, `/proc/self/root/…` and `/dev/fd/…`
/// reach anything; `..` hides where a path goes. None names an installed program.
#[test]
fn proc_dev_and_dotdot_inputs_are_refused() {
    for bad in [
        "/proc/self/cwd/tools/head",
        "/proc/self/root/usr/bin/head",
        "/dev/fd/3/head",
        "/usr/bin/../bin/head",
        "/usr/../proc/self/exe",
    ] {
        match resolve(&job(&[bad])) {
            Err(SandboxError::RuntimeInputNotPlain { program, generator }) => {
                assert_eq!(program, bad);
                assert_eq!(generator, "g");
            }
            Err(other) => panic!("{bad}: wrong error {other}"),
            Ok(_) => panic!("{bad}: resolved"),
        }
    }
    assert!(resolve(&job(&["/usr/bin/env"])).is_ok());
}

/// A name missing from `PATH` is fine when a later input provides it: an extending
/// definition appends a store path for a program the shipped one names.
#[test]
fn a_later_input_can_provide_a_name_missing_from_path() {
    let root = tempfile::tempdir().unwrap();
    let root_path = fs::canonicalize(root.path()).unwrap();
    let tool = root_path.join("store/pkg/bin/vars-test-tool");
    exe(&tool);
    let allowed = vec![root_path.join("store")];
    let empty = std::ffi::OsString::new();
    let input = tool.to_str().unwrap();
    let p = resolve_with(&job(&["vars-test-tool", input]), core(), &empty, &allowed).unwrap();
    assert_eq!(p.bin, vec![("vars-test-tool".to_owned(), tool)]);
    let result = resolve_with(&job(&["vars-test-tool"]), core(), &empty, &allowed);
    assert!(matches!(
        result,
        Err(SandboxError::RuntimeInputNotFound { .. })
    ));
}

/// Review 2, finding 6 (poc2): a committed `tools/x` linked to a file whose name carries
/// terminal escapes; the "outside" error printed its canonical path raw.
#[test]
fn the_outside_error_escapes_the_path_it_names() {
    let root = tempfile::tempdir().unwrap();
    let tools = root.path().join("tools");
    let evil = tools.join("q\x1b]0;PWNED-TITLE\x07\x1b[2K\rinnocent");
    exe(&evil);
    std::os::unix::fs::symlink(evil.file_name().unwrap(), tools.join("x")).unwrap();
    let x = tools.join("x");
    let err = resolve(&job(&[x.to_str().unwrap()])).err().unwrap();
    assert!(
        matches!(err, SandboxError::RuntimeInputOutside { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        !msg.contains('\x1b') && !msg.contains('\x07') && !msg.contains('\r'),
        "{msg:?}"
    );
    assert!(msg.contains("q\\e]0;PWNED-TITLE\\x07"), "{msg}");
}
