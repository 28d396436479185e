//! The sandbox against a hostile script (issue 8, DESIGN §6 and §9.7): no key of the invoking
//! user's kernel keyrings, no inherited descriptor, no runtime input leading out of the system,
//! and with `network: true` still no host loopback or abstract socket.

use std::net::TcpListener;
use std::os::linux::net::SocketAddrExt as _;

use super::*;

/// Issue 8, item 4: `tools/bin -> ~/.ssh` in the checkout and `runtime-inputs:
/// ["/path/to/checkout/tools"]` must not bind the home's keys in; nothing runs.
#[test]
fn runtime_inputs_leading_out_of_the_system_are_refused() {
    let fx = Fixture::new();
    let root = tempfile::tempdir().unwrap();
    let ssh = root.path().join("home/.ssh");
    fs::create_dir_all(&ssh).unwrap();
    fs::write(ssh.join("id_ed25519"), b"KEY-SENTINEL").unwrap();
    let tools = root.path().join("checkout/tools");
    fs::create_dir_all(&tools).unwrap();
    std::os::unix::fs::symlink(&ssh, tools.join("bin")).unwrap();
    let marker = fx.path().join("ran");
    let script = format!("touch {}; cat \"$PATH\" > \"$out/k\"", marker.display());
    for kind in kinds() {
        let mut job = fx.job(&script, &["k"]);
        job.runtime_inputs = vec![tools.to_string_lossy().into_owned()];
        let err = fx.run(&kind, &job).err().expect("refused");
        assert!(
            matches!(&err, SandboxError::RuntimeInputOutside { program, .. }
                if *program == tools.to_string_lossy()),
            "{kind}: {err}"
        );
        let msg = err.to_string();
        assert!(msg.contains("outside"), "{msg}");
        assert!(!msg.contains("KEY-SENTINEL"));
        assert!(!marker.exists(), "{kind}: the script ran");
    }
}

fn slirp4netns() -> bool {
    require_tool(
        "slirp4netns",
        "install slirp4netns: apt-get install slirp4netns / nix profile install nixpkgs#slirp4netns",
    )
}

/// Issue 8, item 7: a `network: true` generator gets its own network namespace with user-mode
/// networking; the host's loopback listener and abstract unix socket stay out of reach.
#[test]
fn network_jobs_cannot_reach_the_hosts_loopback_or_abstract_sockets() {
    let Some(kind) = bwrap() else { return };
    if !slirp4netns() || !require_tool("perl", "install perl: apt-get install perl-base") {
        return;
    }
    let fx = Fixture::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let abstract_name = format!("vars-test-{}-{port}", std::process::id());
    let addr =
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap();
    let _abstract = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    // The kernel completes the handshake from the backlog, so no accept() is needed; the
    // unreachable cases fail fast (refused or unreachable), never by a timeout.
    let script = r#"
        try() { if (exec 3<>"/dev/tcp/$1/$port") 2> /dev/null; then echo "reachable $1"; else echo "unreachable $1"; fi; }
        try 127.0.0.1
        try 10.0.2.2
        perl -MSocket -e '
            socket(my $s, AF_UNIX, SOCK_STREAM, 0) or die "socket: $!";
            print connect($s, pack_sockaddr_un("\0$ARGV[0]")) ? "reachable" : "unreachable", " abstract\n";
        ' "$abstract"
    "#;
    for network in [false, true] {
        let mut job = fx.job(
            &format!("{{\n{script}\n}} > \"$out/r\"\n"),
            &["r", "ifaces"],
        );
        job.script.push_str(
            "cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d ' ' | sort > \"$out/ifaces\"\n",
        );
        job.runtime_inputs = vec!["perl".into()];
        job.env.push(("port".into(), port.to_string()));
        job.env.push(("abstract".into(), abstract_name.clone()));
        job.network = network;
        let out = fx
            .run(&kind, &job)
            .unwrap_or_else(|e| panic!("network: {network}: {e}"));
        assert_eq!(
            text(&out, "r"),
            "unreachable 127.0.0.1\nunreachable 10.0.2.2\nunreachable abstract\n",
            "network: {network}"
        );
        // The user-mode network exists (and only with network: true).
        let expected = if network { "lo\ntap0\n" } else { "lo\n" };
        assert_eq!(text(&out, "ifaces"), expected, "network: {network}");
    }
    // The abstract socket is really there: the host itself reaches it.
    assert!(std::os::unix::net::UnixStream::connect_addr(&addr).is_ok());
}

/// With network the resolver (slirp4netns's forwarder) and CA certificates come along, and
/// only then.
#[test]
fn network_jobs_get_a_resolver_and_certificates() {
    let Some(kind) = bwrap() else { return };
    if !slirp4netns() {
        return;
    }
    let fx = Fixture::new();
    let script = r#"
        cat /etc/resolv.conf > "$out/resolv" 2> /dev/null || true
        if [ -d /etc/ssl/certs ]; then echo yes; else echo no; fi > "$out/certs"
        while read -r iface dest rest; do
            if [ "$dest" = 00000000 ]; then echo "default via $iface"; fi
        done < /proc/net/route > "$out/route"
    "#;
    for network in [false, true] {
        let mut job = fx.job(script, &["resolv", "certs", "route"]);
        job.network = network;
        let out = fx.run(&kind, &job).unwrap();
        let resolv = text(&out, "resolv");
        if network {
            assert!(resolv.starts_with("nameserver 10.0.2.3\n"), "{resolv}");
            assert_eq!(resolv.matches("nameserver").count(), 1, "{resolv}");
            // A default route through the tap device.
            assert_eq!(text(&out, "route"), "default via tap0\n");
        } else {
            assert_eq!(resolv, "");
            assert_eq!(text(&out, "route"), "");
        }
        let host_certs = network && Path::new("/etc/ssl/certs").is_dir();
        assert_eq!(
            text(&out, "certs"),
            if host_certs { "yes\n" } else { "no\n" }
        );
    }
}

/// A failing network run reports the script's failure like any other run.
#[test]
fn network_runs_report_failures_and_time_out_like_others() {
    let Some(kind) = bwrap() else { return };
    if !slirp4netns() {
        return;
    }
    let fx = Fixture::new();
    let mut job = fx.job("echo net-fail >&2; exit 4", &[]);
    job.network = true;
    let err = fx.run(&kind, &job).err().unwrap();
    assert!(
        matches!(&err, SandboxError::Exited { status, stderr, .. }
            if status.code() == Some(4) && stderr.contains("net-fail")),
        "{err}"
    );
    let mut job = fx.job("sleep 30", &[]);
    job.network = true;
    job.timeout = Duration::from_secs(1);
    let err = fx.run(&kind, &job).err().unwrap();
    assert!(matches!(err, SandboxError::TimedOut { .. }), "{err}");
}

/// The script inherits no descriptor beyond 0-2 (bash keeps its script open on 255): not the
/// pipes bubblewrap got for its seccomp filter and the network set-up, and not whatever the
/// test harness inherited from its own parent (the library closes those for bubblewrap even
/// when `hardening::harden_process` never ran; the CLI test covers the unsandboxed mode).
#[test]
fn sandboxed_scripts_inherit_only_the_standard_descriptors() {
    let Some(kind) = bwrap() else { return };
    let fx = Fixture::new();
    let script = r#"ls /proc/$$/fd > "$TMPDIR/l"; sort -n "$TMPDIR/l" | tr '\n' ' ' > "$out/fds""#;
    for network in [false, true] {
        if network && !slirp4netns() {
            continue;
        }
        let mut job = fx.job(script, &["fds"]);
        job.network = network;
        let out = fx.run(&kind, &job).unwrap();
        assert_eq!(text(&out, "fds"), "0 1 2 255 ", "network: {network}");
    }
}

/// Turns [`keyring_child`] from a no-op into the half of
/// [`the_invoking_users_keyrings_are_unreachable`] that runs inside `keyctl session -`.
const KEYRING_ROOT: &str = "VARS_TEST_KEYRING_ROOT";

fn keyctl(args: &[&str]) -> String {
    let out = Command::new("keyctl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "keyctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Child half: inside a fresh session keyring, put a key each into the session, user and
/// persistent keyrings, then let a generator try every way to read them (keyctl show, pipe,
/// print, search, /proc/keys, raw system calls from perl) and write whatever it got into an
/// output. Ignored by default and a no-op without the env var.
#[test]
#[ignore = "spawned by the_invoking_users_keyrings_are_unreachable"]
fn keyring_child() {
    let Some(root) = std::env::var_os(KEYRING_ROOT) else {
        return;
    };
    let kind = detect(SandboxSetting::Auto).unwrap();
    let tag = format!("{}-{}", std::process::id(), rand_tag());
    let secrets = [
        format!("SESSION-SECRET-{tag}"),
        format!("USER-SECRET-{tag}"),
        format!("PERSISTENT-SECRET-{tag}"),
    ];
    // As a login session has it (pam_keyinit): the user keyring linked into the session, so
    // its keys are possessed and readable through it.
    keyctl(&["link", "@u", "@s"]);
    let persistent = keyctl(&["get_persistent", "@s"]);
    let rings = ["@s", "@u", persistent.as_str()];
    let names: Vec<String> = ["s", "u", "p"]
        .iter()
        .map(|r| format!("vars-test-{r}-{tag}"))
        .collect();
    let ids: Vec<String> = (0..3)
        .map(|i| keyctl(&["add", "user", &names[i], &secrets[i], rings[i]]))
        .collect();
    let cleanup = || {
        for (id, ring) in ids.iter().zip(rings) {
            let _ = Command::new("keyctl").args(["unlink", id, ring]).output();
        }
    };
    // The test process itself reads them all.
    for (id, secret) in ids.iter().zip(&secrets) {
        assert_eq!(&keyctl(&["pipe", id]), secret);
    }

    let script = r#"
        {
            for r in @s @u @us; do keyctl show "$r"; done
            for id in $ids; do keyctl pipe "$id"; echo; keyctl print "$id"; done
            for n in $names; do keyctl search @s user "$n"; keyctl search @u user "$n"; done
            keyctl get_persistent @s
            keyctl add user vars-planted x @s
            cat /proc/keys /proc/key-users
            perl -e '
                require "syscall.ph";
                for my $id (@ARGV) {
                    my $buf = "\0" x 256;
                    my $n = syscall(&SYS_keyctl, 11, $id + 0, $buf, 256);
                    print "raw read $id: $n $!\n", substr($buf, 0, $n > 0 ? $n : 0), "\n";
                }
                my ($type, $desc, $data) = ("user", "vars-raw", "x");
                my $r = syscall(&SYS_add_key, $type, $desc, $data, 1, -3);
                print "raw add_key: $r $!\n";
                $r = syscall(&SYS_request_key, $type, $desc, 0, -3);
                print "raw request_key: $r $!\n";
            ' $ids
        } > "$out/report" 2>&1 || true
    "#;
    let mut job = Job::new("machines/m/keyring", "keyring", script);
    job.outputs = vec!["report".into()];
    job.runtime_inputs = vec!["keyctl".into(), "perl".into()];
    job.env = vec![
        ("ids".into(), ids.join(" ")),
        ("names".into(), names.join(" ")),
    ];
    job.work_root = Some(PathBuf::from(&root));
    let sandboxed = run(&kind, &job).map(|out| text(&out, "report"));
    let unsandboxed = run(&SandboxKind::Unsandboxed, &job).map(|out| text(&out, "report"));
    cleanup();
    let report = sandboxed.unwrap();
    for secret in &secrets {
        assert!(
            !report.contains(secret.as_str()),
            "{secret} leaked:\n{report}"
        );
    }
    for name in &names {
        assert!(
            !report.contains(name.as_str()),
            "{name} is visible:\n{report}"
        );
    }
    assert!(report.contains("Operation not permitted"), "{report}");
    assert_eq!(
        report.matches("-1 Operation not permitted").count(),
        5,
        "three raw reads, add_key and request_key fail: {report}"
    );
    // The control: without the sandbox the same script does read the session's key, so the
    // test would see a leak.
    assert!(unsandboxed.unwrap().contains(secrets[0].as_str()));
    fs::write(Path::new(&root).join("keyring-child-ok"), b"").unwrap();
}

/// A short random tag, so concurrent runs never share key names.
fn rand_tag() -> String {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).unwrap();
    hex::encode(b)
}

/// Issue 8, item 1: a generator sees no key of the invoking user's (session, user or
/// persistent keyring), through keyctl or raw system calls.
#[test]
fn the_invoking_users_keyrings_are_unreachable() {
    if bwrap().is_none()
        || !require_tool("keyctl", "install keyutils: apt-get install keyutils")
        || !require_tool("perl", "install perl: apt-get install perl-base")
    {
        return;
    }
    let fx = Fixture::new();
    let out = Command::new("keyctl")
        .args(["session", "-"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "sandbox::tests::isolation::keyring_child",
            "--nocapture",
        ])
        .env(KEYRING_ROOT, fx.path())
        .output()
        .unwrap();
    let ok = fx.path().join("keyring-child-ok");
    assert!(
        out.status.success() && ok.exists(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    fs::remove_file(ok).unwrap();
    fx.assert_clean(&SandboxKind::Unsandboxed);
}
