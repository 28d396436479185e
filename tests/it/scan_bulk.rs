//! `vars scan` at scale: hundreds of real short keys made by openssl, each must be found
//! (review 2, finding 2).

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{self, TestEnv};
use crate::scan::{found, run};

/// `vars scan --json ARGS` in `env`, killed (and the test failed) after `limit`.
fn scan_within(
    env: &TestEnv,
    args: &[&str],
    limit: Duration,
) -> (i32, serde_json::Value, Duration) {
    let mut all = vec!["scan", "--json"];
    all.extend_from_slice(args);
    let out = tempfile::tempfile().unwrap();
    let mut child = env
        .command(&all)
        .stdout(out.try_clone().unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("vars scan {args:?} took over {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = started.elapsed();
    let mut out = out;
    use std::io::{Read, Seek};
    out.rewind().unwrap();
    let mut bytes = Vec::new();
    out.read_to_end(&mut bytes).unwrap();
    let v = serde_json::from_slice(&bytes).unwrap();
    (status.code().unwrap(), v, took)
}

#[test]
fn every_short_pkcs8_key_openssl_makes_is_found() {
    if !common::require_tool("openssl", "apt-get install openssl") {
        return;
    }
    // About 1 in 16 bodies ends in `/` or `+`, which scan used to trim as syntax (finding 2).
    const EACH: usize = 200;
    let env = TestEnv::empty();
    let root = env.root();
    std::fs::create_dir_all(root.join("k")).unwrap();
    let mut ending_in_syntax = 0;
    for alg in ["ed25519", "x25519"] {
        for i in 0..EACH {
            let name = format!("k/{alg}-{i}.pem");
            run(
                &root,
                "openssl",
                &["genpkey", "-algorithm", alg, "-out", &name],
            );
            let pem = std::fs::read_to_string(root.join(&name)).unwrap();
            let body = pem.lines().nth(1).unwrap();
            assert_eq!(body.len(), 64, "{alg}: the shortest body there is");
            ending_in_syntax += usize::from(body.ends_with(['+', '/']));
        }
    }
    assert!(ending_in_syntax > 0, "400 keys and none ends in + or /?");
    let (code, r, _) = scan_within(&env, &["k"], Duration::from_secs(120));
    assert_eq!(code, 3);
    let f = found(&r);
    assert_eq!(f.len(), 2 * EACH, "{ending_in_syntax} end in + or /: {r:#}");
    assert!(f.iter().all(|(_, rule)| rule == "private-key"), "{f:?}");
}
