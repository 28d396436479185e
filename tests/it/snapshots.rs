//! The CLI's main plans and error messages, as insta snapshots (`tests/it/snapshots/`), with
//! temp paths, recipients and generation-dependent bytes normalised. A changed message shows
//! up as a diff in review; `INSTA_UPDATE=always cargo test` rewrites them on purpose.

use crate::common::{self, TestEnv};

fn normalised(env: &TestEnv, text: &str, name: &str) {
    let tmp = env.dir.path().display().to_string();
    let text = text.replace(&tmp, "[TMP]");
    insta::with_settings!({
        filters => vec![
            (r"age1[0-9a-z]{58}", "[AGE1]"),
            (r"age1[0-9a-z]{20,23}…", "[AGE1…]"),
            (r"sha256:[0-9a-f]{64}", "[SHA256]"),
        ],
        prepend_module_to_snapshot => false,
    }, {
        insta::assert_snapshot!(name, text);
    });
}

fn fleet() -> TestEnv {
    TestEnv::yaml(
        r#"version: 1
admins: [alice]
users:
  alice: { recipients: ["{admin}"] }
  bob: { recipients: ["{user}"], generators: [pw] }
machines:
  m1: { recipients: ["{host}"], generators: [cert], users: [bob] }
  m2: { recipients: ["{host2}"], generators: [cert] }
generators:
  ca:
    share: true
    files: { key: { deploy: false }, cert: { secret: false } }
    script: |
      echo k > "$out/key"
      echo c > "$out/cert"
  cert:
    dependencies: [ca]
    files: { cert: { secret: false }, key: {} }
    script: |
      echo "$machine" > "$out/cert"
      echo secret > "$out/key"
  pw:
    prompts: { password: { type: hidden, persist: true } }
    files: { hash: { secret: false } }
    script: sha256sum < "$prompts/password" > "$out/hash"
"#,
    )
}

#[test]
fn plans_and_errors_read_as_they_did() {
    if !common::require_tool("bwrap", "apt-get install bubblewrap") {
        return;
    }
    let env = fleet();
    let out = env.vars(&["generate"]);
    normalised(&env, &common::stderr(&out), "generate-missing-prompts");
    let out = env.vars(&["generate", "--dry-run", "--prompt", "pw.password=x"]);
    normalised(&env, &common::stderr(&out), "generate-dry-run");
    let out = env.vars(&["generate", "--machine", "m9"]);
    normalised(&env, &common::stderr(&out), "generate-unknown-machine");
    env.ok(&["generate", "--prompt", "pw.password=x"]);

    let admin = env.key("users/crs58.age").display().to_string();
    let out = env.vars(&["generate", "--regenerate", "shared/ca", "--dry-run"]);
    normalised(&env, &common::stderr(&out), "generate-regenerate-shared");

    std::fs::write(env.store().join("machines/m2/cert/meta.json"), "{").unwrap();
    let out = env.vars(&["generate", "-i", &admin]);
    normalised(&env, &common::stderr(&out), "generate-damaged");
    let out = env.vars(&["check"]);
    normalised(&env, &common::stderr(&out), "check-damaged");
    env.ok(&["generate", "--regenerate", "machines/m2/cert", "-i", &admin]);

    // bob now also uses m2, and m3 joins with the shared CA.
    let yaml = std::fs::read_to_string(env.root().join("vars.yaml")).unwrap();
    let host3 =
        std::fs::read_to_string(common::repo().join("testdata/keys/clan8/hosts/electrum.pub"))
            .unwrap();
    let m2 = yaml
        .lines()
        .find(|l| l.starts_with("  m2:"))
        .unwrap()
        .to_owned();
    let joined = yaml.replace(
        &m2,
        &format!(
            "{}, users: [bob] }}\n  m3: {{ recipients: [\"{}\"], generators: [cert] }}",
            m2.trim_end_matches(" }"),
            host3.trim()
        ),
    );
    std::fs::write(env.root().join("vars.yaml"), joined).unwrap();
    let out = env.vars(&["check"]);
    normalised(&env, &common::stderr(&out), "check-stale-recipients");
    let out = env.vars(&["rekey", "--add-user", "bob", "--dry-run"]);
    normalised(&env, &common::stderr(&out), "rekey-add-user");
}
