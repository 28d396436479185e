//! The regeneration rules clan vars users rely on (issue 10, DESIGN §5), as library tests on
//! a fleet generated unsandboxed (no bwrap, no age program): a regeneration reaches every
//! dependent, `--machine M --regenerate` leaves shared instances alone, stored prompt values
//! are reused, and definition changes that move files leave a consistent store.

use crate::common::{Lab, request};
use vars::generate::{Request, Selection};
use vars::plan::{Action, Reason};
use vars::prompt::Source;

const FLEET: &str = r#"version: 1
admins: [alice]
users:
  alice: { recipients: ["{admin}"] }
  bob: { recipients: ["{user}"], generators: [pw] }
machines:
  m1: { recipients: ["{host}"], generators: [cert, peer, local], users: [bob] }
  m2: { recipients: ["{host2}"], generators: [cert, peer] }
generators:
  ca:
    share: true
    files: { key: { deploy: false }, cert: { secret: false } }
    script: |
      head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$out/key"
      echo "ca-$(cat "$out/key")" > "$out/cert"
  cert:
    dependencies: [ca]
    files: { cert: { secret: false }, key: {} }
    script: |
      echo "$machine signed by $(cat "$in/ca/cert")" > "$out/cert"
      head -c 8 /dev/urandom > "$out/key"
  network:
    share: true
    files: { id: { secret: false } }
    script: head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$out/id"
  peer:
    dependencies: [network]
    files: { identity: {} }
    script: head -c 8 /dev/urandom > "$out/identity"
  local:
    files: { x: {} }
    script: head -c 4 /dev/urandom > "$out/x"
  pw:
    prompts: { password: { type: hidden, persist: true } }
    files: { hash: { secret: false } }
    script: sha256sum < "$prompts/password" | cut -c1-16 > "$out/hash"
    validation: { rounds: 1 }
"#;

const INSTANCES: &[&str] = &[
    "shared/ca",
    "shared/network",
    "machines/m1/cert",
    "machines/m2/cert",
    "machines/m1/peer",
    "machines/m2/peer",
    "machines/m1/local",
    "users/bob/pw",
];

fn generated() -> Lab {
    let lab = Lab::new(FLEET);
    lab.generate(&request(&[], false), &[("pw.password", "hunter2")])
        .unwrap();
    assert!(lab.errors().is_empty(), "{:?}", lab.errors());
    lab
}

fn generations(lab: &Lab) -> Vec<(&'static str, String)> {
    INSTANCES.iter().map(|i| (*i, lab.generation(i))).collect()
}

/// Which instances got a new generation id between `before` and now.
fn changed(lab: &Lab, before: &[(&'static str, String)]) -> Vec<&'static str> {
    before
        .iter()
        .filter(|(i, g)| lab.generation(i) != *g)
        .map(|(i, _)| *i)
        .collect()
}

fn reasons(plan: &vars::generate::GeneratePlan, instance: &str) -> Vec<Reason> {
    match plan
        .plan
        .instances
        .iter()
        .find(|p| p.id.to_string() == instance)
    {
        Some(p) => match &p.action {
            Action::Generate { reasons } => reasons.clone(),
            _ => Vec::new(),
        },
        None => Vec::new(),
    }
}

fn id(s: &str) -> vars::model::InstanceId {
    vars::store::layout::parse_instance_rel(s).unwrap()
}

/// Rule 1: regenerating an instance regenerates everything that depends on it, on every
/// machine, in the same run; `check` is clean afterwards.
#[test]
fn a_regeneration_reaches_every_dependent_on_every_machine() {
    let lab = generated();
    let before = generations(&lab);
    let req = request(&["shared/ca"], true);
    let plan = lab.plan(&req);
    for cert in ["machines/m1/cert", "machines/m2/cert"] {
        assert_eq!(
            reasons(&plan, cert),
            [Reason::DependencyRegenerated {
                dependency: id("shared/ca")
            }],
            "{cert}"
        );
    }
    lab.generate(&req, &[]).unwrap();
    assert_eq!(
        changed(&lab, &before),
        ["shared/ca", "machines/m1/cert", "machines/m2/cert"]
    );
    assert!(lab.errors().is_empty(), "{:?}", lab.errors());

    // The same through a generator name: every dependent of the shared network.
    let before = generations(&lab);
    lab.generate(&request(&["network"], true), &[]).unwrap();
    assert_eq!(
        changed(&lab, &before),
        ["shared/network", "machines/m1/peer", "machines/m2/peer"]
    );
    assert!(lab.errors().is_empty(), "{:?}", lab.errors());
}

/// Rule 2: `--machine M --regenerate` regenerates M's own instances (and their dependents),
/// never a shared instance M merely uses, nor M's users' instances.
#[test]
fn a_machine_regeneration_leaves_shared_instances_alone() {
    let lab = generated();
    let before = generations(&lab);
    let req = Request {
        selection: Selection {
            machines: vec!["m1".into()],
            ..Default::default()
        },
        regenerate: true,
        trust_vault: None,
    };
    lab.generate(&req, &[]).unwrap();
    assert_eq!(
        changed(&lab, &before),
        ["machines/m1/cert", "machines/m1/peer", "machines/m1/local"]
    );
    assert!(lab.errors().is_empty(), "{:?}", lab.errors());
}

/// Rule 1: `vars generate GEN` that has to create a missing dependency also regenerates that
/// dependency's other dependents, outside the selection.
#[test]
fn creating_a_missing_dependency_regenerates_its_other_dependents() {
    let lab = generated();
    let before = generations(&lab);
    std::fs::remove_dir_all(lab.store_dir().join("shared/ca")).unwrap();
    let req = request(&["machines/m1/cert"], false);
    let plan = lab.plan(&req);
    assert_eq!(reasons(&plan, "shared/ca"), [Reason::Missing]);
    assert_eq!(
        reasons(&plan, "machines/m2/cert"),
        [Reason::DependencyRegenerated {
            dependency: id("shared/ca")
        }]
    );
    lab.generate(&req, &[]).unwrap();
    assert!(lab.errors().is_empty(), "{:?}", lab.errors());
    assert_eq!(
        changed(&lab, &before[1..]),
        ["machines/m1/cert", "machines/m2/cert"]
    );
}

/// Rule 1: on a clean store, generating one instance generates its dependents too.
#[test]
fn a_clean_store_generates_the_dependents_of_what_it_creates() {
    let lab = Lab::new(FLEET);
    lab.generate(&request(&["ca"], false), &[]).unwrap();
    for i in ["shared/ca", "machines/m1/cert", "machines/m2/cert"] {
        assert!(lab.store_dir().join(i).join("meta.json").is_file(), "{i}");
    }
    assert!(!lab.store_dir().join("machines/m1/local").exists());
    let errors = lab.errors();
    assert!(
        errors
            .iter()
            .all(|e| !e.contains("/cert") && !e.contains("shared/ca")),
        "{errors:?}"
    );
}

/// Rule 3: stored prompt values are reused when their instance regenerates; a new value on
/// the command line replaces the stored one; without an identity the error says why.
#[test]
fn stored_prompt_values_are_reused() {
    let lab = generated();
    let hash = lab.read("users/bob/pw/hash");
    lab.write(&FLEET.replace("rounds: 1", "rounds: 2"));
    let plan = lab.plan(&request(&[], false));
    assert_eq!(reasons(&plan, "users/bob/pw"), [Reason::ValidationChanged]);
    assert!(
        plan.prompts
            .iter()
            .any(|(i, p, s)| i.to_string() == "users/bob/pw"
                && p == "password"
                && *s == Source::Stored),
        "{:?}",
        plan.prompts
    );
    lab.generate(&request(&[], false), &[]).unwrap();
    assert_eq!(
        lab.read("users/bob/pw/hash"),
        hash,
        "the stored value was used"
    );
    assert!(lab.errors().is_empty(), "{:?}", lab.errors());

    lab.generate(&request(&["pw"], true), &[("pw.password", "new value")])
        .unwrap();
    assert_ne!(
        lab.read("users/bob/pw/hash"),
        hash,
        "the given value replaced it"
    );

    lab.write(&FLEET.replace("rounds: 1", "rounds: 3"));
    let err = lab
        .generate_as(&request(&[], false), &[], None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("users/bob/pw.password") && err.contains("needs the vault"),
        "{err}"
    );
}

/// Rule 5: a secret/public or deploy flip is reflected in meta.json and the manifests at
/// once; a share flip moves the instance and removes the old ones in the same run.
#[test]
fn definition_changes_that_move_files_leave_a_consistent_store() {
    let lab = generated();
    lab.write(&FLEET.replace("files: { x: {} }", "files: { x: { secret: false } }"));
    lab.generate(&request(&[], false), &[]).unwrap();
    assert!(lab.store_dir().join("machines/m1/local/x").is_file());
    assert!(!lab.store_dir().join("machines/m1/local/x.age").exists());
    let manifest: serde_json::Value =
        serde_json::from_slice(&lab.read("machines/m1/manifest.json")).unwrap();
    assert_eq!(
        manifest["generators"]["local"]["files"]["x"]["secret"],
        false
    );
    assert!(lab.errors().is_empty(), "{:?}", lab.errors());

    let fleet = FLEET.replace(
        "files: { cert: { secret: false }, key: {} }",
        "files: { cert: { secret: false }, key: { deploy: false } }",
    );
    lab.write(&fleet);
    lab.generate(&request(&[], false), &[]).unwrap();
    let meta: serde_json::Value =
        serde_json::from_slice(&lab.read("machines/m1/cert/meta.json")).unwrap();
    assert_eq!(meta["files"]["key"]["deploy"], false);
    assert_eq!(
        meta["files"]["key"]["readers"],
        serde_json::json!(["vault"])
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&lab.read("machines/m1/manifest.json")).unwrap();
    assert!(manifest["generators"]["cert"]["files"].get("key").is_none());
    assert!(lab.check().is_empty(), "{:?}", lab.check());

    // share: false -> true moves machines/m1/local to shared/local.
    let shared = fleet.replace(
        "  local:\n    files:",
        "  local:\n    share: true\n    files:",
    );
    lab.write(&shared);
    let report = lab.generate(&request(&[], false), &[]).unwrap();
    assert_eq!(
        report
            .removed
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["machines/m1/local"]
    );
    assert!(lab.store_dir().join("shared/local/meta.json").is_file());
    assert!(!lab.store_dir().join("machines/m1/local").exists());
    assert!(lab.check().is_empty(), "no orphan left: {:?}", lab.check());
    // And back.
    lab.write(&fleet);
    lab.generate(&request(&[], false), &[]).unwrap();
    assert!(
        lab.store_dir()
            .join("machines/m1/local/meta.json")
            .is_file()
    );
    assert!(!lab.store_dir().join("shared/local").exists());
    assert!(lab.check().is_empty(), "{:?}", lab.check());
}

/// Rule 5: `check` describes a removed recipient as one that can still read the secret.
#[test]
fn a_removed_reader_is_described_as_removed() {
    let lab = generated();
    lab.write(&FLEET.replace(", users: [bob] }", " }"));
    let errors = lab.errors();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("stale-recipients users/bob/pw")
                && e.contains("still readable by machine m1")
                && !e.contains("not readable yet")),
        "{errors:?}"
    );
}

/// The same rules through the binary, with the real bwrap sandbox: regeneration spreads,
/// `--machine --regenerate` spares shared instances, stored prompts are reused, a share flip
/// moves the instance; `vars check` passes after every run.
#[test]
fn the_rules_hold_end_to_end() {
    if !crate::common::require_tool("bwrap", "apt-get install bubblewrap") {
        return;
    }
    let env = crate::common::TestEnv::yaml(FLEET);
    let admin = env.key("users/crs58.age").display().to_string();
    let stdin_prompt = |args: &[&str], value: &str| {
        use std::io::Write as _;
        let mut child = env
            .command(args)
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(value.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", crate::common::stderr(&out));
        crate::common::stderr(&out)
    };
    // The prompt value from standard input, never on the command line.
    stdin_prompt(&["generate", "--prompt-file", "pw.password=-"], "hunter2");
    env.ok(&["check"]);
    let hash = std::fs::read(env.store().join("users/bob/pw/hash")).unwrap();

    let plan =
        crate::common::stderr(&env.vars(&["generate", "--regenerate", "shared/ca", "-i", &admin]));
    assert!(
        plan.contains("generate machines/m2/cert (dependency shared/ca regenerated)"),
        "{plan}"
    );
    assert!(plan.contains("reaches machines m1, m2"), "{plan}");
    env.ok(&["check"]);

    let plan = crate::common::stderr(&env.vars(&[
        "generate",
        "--machine",
        "m1",
        "--regenerate",
        "-i",
        &admin,
    ]));
    assert!(!plan.contains("shared/"), "{plan}");
    assert!(!plan.contains("users/bob"), "{plan}");
    env.ok(&["check"]);

    let yaml = std::fs::read_to_string(env.root().join("vars.yaml")).unwrap();
    std::fs::write(
        env.root().join("vars.yaml"),
        yaml.replace("rounds: 1", "rounds: 2"),
    )
    .unwrap();
    let plan = crate::common::stderr(&env.vars(&["generate", "-i", &admin]));
    assert!(
        plan.contains("reuse the stored value of users/bob/pw.password"),
        "{plan}"
    );
    assert_eq!(
        std::fs::read(env.store().join("users/bob/pw/hash")).unwrap(),
        hash
    );
    env.ok(&["check"]);

    let yaml = std::fs::read_to_string(env.root().join("vars.yaml")).unwrap();
    std::fs::write(
        env.root().join("vars.yaml"),
        yaml.replace(
            "  local:\n    files:",
            "  local:\n    share: true\n    files:",
        ),
    )
    .unwrap();
    let plan = crate::common::stderr(&env.vars(&["generate", "-i", &admin]));
    assert!(plan.contains("remove machines/m1/local"), "{plan}");
    assert!(!env.store().join("machines/m1/local").exists());
    let out = env.vars(&["check"]);
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    assert!(
        !crate::common::stderr(&out).contains("warning"),
        "{}",
        crate::common::stderr(&out)
    );
}
