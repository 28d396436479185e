//! A sentinel secret goes through every command; it must never appear in stdout (except where
//! `vars get` is asked for it), stderr, the repo, HOME, the runtime dir, /tmp or /dev/shm.

use std::path::Path;

use crate::common;

const SENTINEL: &str = "SENTINEL-c0ffee-5ecret-7f3a";

fn leaks_in(dir: &Path) -> Vec<String> {
    let mut hits = Vec::new();
    for p in common::walk(dir) {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if !meta.is_file() || meta.len() > 32 * 1024 * 1024 {
            continue;
        }
        if let Ok(bytes) = std::fs::read(&p)
            && bytes
                .windows(SENTINEL.len())
                .any(|w| w == SENTINEL.as_bytes())
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
    let env = crate::bad_input::mini(
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
    let prompt = format!("g.pw={SENTINEL}");
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
            !String::from_utf8_lossy(&out.stdout).contains(SENTINEL),
            "{args:?} printed the secret on stdout"
        );
        assert!(
            !common::stderr(&out).contains(SENTINEL),
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
        assert!(String::from_utf8_lossy(&out.stdout).contains(SENTINEL));
        assert!(!common::stderr(&out).contains(SENTINEL));
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
    assert!(!common::stderr(&out).contains(SENTINEL));

    assert_eq!(
        leaks_in(env.dir.path()),
        Vec::<String>::new(),
        "sentinel on disk in the test dir"
    );
    for shared in ["/tmp", "/dev/shm"] {
        assert_eq!(
            leaks_in(Path::new(shared)),
            Vec::<String>::new(),
            "sentinel on disk under {shared}"
        );
    }
}
