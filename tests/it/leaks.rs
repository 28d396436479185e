//! A sentinel secret goes through every command; it must never appear in stdout (except where
//! `vars get` is asked for it), stderr, the repo, HOME, the runtime dir, /tmp or /dev/shm.

use std::path::Path;

use crate::common;

/// A sentinel made fresh each run, so no file (this test's source included) can contain it
/// by accident.
fn sentinel() -> &'static str {
    static S: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        let (_, r) = vars::crypto::new_identity();
        format!("SENTINEL-{}", &r[5..29])
    })
}

/// Files below `dir` written since `since` that contain the sentinel. Older files cannot hold
/// it (it is new each run), so only recent ones are read.
fn leaks_in(dir: &Path, since: std::time::SystemTime) -> Vec<String> {
    let mut hits = Vec::new();
    for p in common::walk(dir) {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if !meta.is_file()
            || meta.len() > 32 * 1024 * 1024
            || meta.modified().is_ok_and(|m| m < since)
        {
            continue;
        }
        if let Ok(bytes) = std::fs::read(&p)
            && bytes
                .windows(sentinel().len())
                .any(|w| w == sentinel().as_bytes())
        {
            hits.push(p.display().to_string());
        }
    }
    hits
}

#[test]
fn sentinel_never_leaks() {
    if !common::require_tool("bwrap", "apt-get install bubblewrap") {
        return;
    }
    let since = std::time::SystemTime::now() - std::time::Duration::from_secs(2);
    let env = common::TestEnv::mini(
        "cat \"$prompts/pw\" > \"$out/key\"\nsha256sum < \"$prompts/pw\" | cut -c1-16 > \"$out/id\"",
        "{ key: {}, id: { secret: false } }",
    );
    // Give the generator a persisted prompt too.
    let yaml = std::fs::read_to_string(env.root().join("vars.yaml")).unwrap();
    let yaml = yaml.replace(
        "    timeout: 2s\n",
        "    timeout: 2s\n    prompts:\n      pw: { type: hidden, persist: true }\n",
    );
    std::fs::write(env.root().join("vars.yaml"), yaml).unwrap();
    let admin = env.key("users/crs58.age");
    let admin_s = admin.display().to_string();
    let prompt = format!("g.pw={}", sentinel());
    let commands: Vec<Vec<&str>> = vec![
        vec!["generate", "--prompt", &prompt],
        vec!["generate", "--regenerate", "--dry-run", "--prompt", &prompt],
        vec![
            "generate",
            "--regenerate",
            "--prompt",
            &prompt,
            "--identity",
            &admin_s,
        ],
        vec!["check"],
        vec!["check", "--json"],
        vec!["list"],
        vec!["list", "--json"],
        vec!["graph"],
        vec!["get", "machines/host1/g/id"],
        vec!["rekey", "--rotate-vault", "--yes", "--identity", &admin_s],
        vec!["rekey", "--dry-run"],
    ];
    for args in &commands {
        let out = env.vars(args);
        assert!(out.status.success(), "{args:?}: {}", common::stderr(&out));
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains(sentinel()),
            "{args:?} printed the secret on stdout"
        );
        assert!(
            !common::stderr(&out).contains(sentinel()),
            "{args:?} printed the secret on stderr"
        );
    }
    // get of the secret prints it on stdout only, and decrypts through the vault for an admin.
    for file in ["key", "pw"] {
        let out = env.vars(&[
            "get",
            &format!("machines/host1/g/{file}"),
            "--identity",
            &admin_s,
        ]);
        assert!(out.status.success(), "{}", common::stderr(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains(sentinel()));
        assert!(!common::stderr(&out).contains(sentinel()));
    }
    // A failing generator run with the sentinel in its inputs does not echo it either.
    let out = env.vars(&[
        "generate",
        "--regenerate",
        "--prompt",
        "g.pw=short",
        "--identity",
        "/nonexistent",
    ]);
    assert!(!common::stderr(&out).contains(sentinel()));

    assert_eq!(
        leaks_in(env.dir.path(), since),
        Vec::<String>::new(),
        "sentinel on disk in the test dir"
    );
    for shared in ["/tmp", "/dev/shm"] {
        assert_eq!(
            leaks_in(Path::new(shared), since),
            Vec::<String>::new(),
            "sentinel on disk under {shared}"
        );
    }
}
