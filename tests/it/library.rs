//! Library tests (issue 9): the resolver, manifests, `rekey::plan`, every kind of `check`
//! finding and prompt value resolution, on small fleets in temp dirs, generated unsandboxed
//! through the library. No bwrap and no age program: these run in seconds.

use std::collections::BTreeSet;

use crate::common::{Lab, request};
use vars::check::{FindingKind, Severity};
use vars::model::{Dependency, Scope};
use vars::rekey::{Intent, RekeyError, VaultAction};

const FLEET: &str = r#"version: 1
admins: [alice]
users:
  alice: { recipients: ["{admin}"] }
  bob: { recipients: ["{user}"], generators: [key] }
machines:
  m1: { recipients: ["{host}"], tags: [mesh], users: [bob], generators: [hub] }
  m2: { recipients: ["{host2}"], tags: [mesh] }
tags:
  mesh: { generators: [wg, cert] }
generators:
  ca:
    share: true
    files: { key: { deploy: false }, cert: { secret: false } }
    script: |
      echo k > "$out/key"
      echo c > "$out/cert"
  cert:
    dependencies: [ca]
    files: { cert: { secret: false, owner: nginx, mode: "0444" } }
    script: echo "$machine" > "$out/cert"
  wg:
    files: { private: {}, public: { secret: false } }
    script: |
      echo "p-$machine" > "$out/private"
      echo "P-$machine" > "$out/public"
  hub:
    dependencies: ["machines/*/wg"]
    files: { peers: { secret: false } }
    script: cat "$in"/wg/*/public > "$out/peers"
  key:
    files: { id: {} }
    script: echo "$user" > "$out/id"
"#;

fn id(s: &str) -> vars::model::InstanceId {
    vars::store::layout::parse_instance_rel(s).unwrap()
}

fn generated() -> Lab {
    let lab = Lab::new(FLEET);
    lab.generate(&request(&[], false), &[]).unwrap();
    assert!(lab.check().is_empty(), "{:?}", lab.check());
    lab
}

#[test]
fn the_resolver_puts_instances_in_their_scopes() {
    let lab = Lab::new(FLEET);
    let config = lab.config();
    let ids: Vec<String> = config.instances.keys().map(ToString::to_string).collect();
    assert_eq!(
        ids,
        [
            "shared/ca",
            "machines/m1/cert",
            "machines/m1/hub",
            "machines/m1/wg",
            "machines/m2/cert",
            "machines/m2/wg",
            "users/bob/key"
        ]
    );
    // ca is assigned nowhere: implicit, used by whoever uses its dependents.
    let ca = &config.instances[&id("shared/ca")];
    assert!(ca.implicit);
    assert_eq!(ca.machines, BTreeSet::from(["m1".into(), "m2".into()]));
    // machines/*/wg: every machine's instance, in name order.
    let hub = &config.instances[&id("machines/m1/hub")];
    match &hub.dependencies[..] {
        [
            Dependency::EveryMachine {
                generator,
                instances,
            },
        ] => {
            assert_eq!(generator, "wg");
            assert_eq!(instances, &[id("machines/m1/wg"), id("machines/m2/wg")]);
        }
        other => panic!("{other:?}"),
    }
    // Dependencies come first in the one order.
    let order = config.dag.order();
    let pos = |s: &str| order.iter().position(|i| *i == id(s)).unwrap();
    assert!(pos("shared/ca") < pos("machines/m2/cert"));
    assert!(pos("machines/m2/wg") < pos("machines/m1/hub"));
    assert_eq!(config.machines["m1"].generators, ["hub", "wg", "cert"]);
}

#[test]
fn manifests_list_what_each_principal_receives() {
    let lab = generated();
    let m1: serde_json::Value =
        serde_json::from_slice(&lab.read("machines/m1/manifest.json")).unwrap();
    let gens: Vec<&String> = m1["generators"].as_object().unwrap().keys().collect();
    assert_eq!(gens, ["ca", "cert", "hub", "wg"]);
    // deploy: false files are the admins' only.
    assert!(m1["generators"]["ca"]["files"].get("key").is_none());
    let cert = &m1["generators"]["ca"]["files"]["cert"];
    assert_eq!(cert["path"], "shared/ca/cert");
    assert!(cert["sha256"].as_str().unwrap().starts_with("sha256:"));
    let own = &m1["generators"]["cert"]["files"]["cert"];
    assert_eq!(
        (&own["owner"], &own["mode"]),
        (&"nginx".into(), &"0444".into())
    );
    assert_eq!(
        m1["generators"]["wg"]["files"]["private"]["path"],
        "machines/m1/wg/private.age"
    );
    // bob uses m1: his instance is there, owned by him, group his primary one (null).
    let bob_on_m1 = &m1["users"]["bob"]["key"]["files"]["id"];
    assert_eq!(bob_on_m1["owner"], "bob");
    assert!(bob_on_m1["group"].is_null(), "{bob_on_m1}");
    let m2: serde_json::Value =
        serde_json::from_slice(&lab.read("machines/m2/manifest.json")).unwrap();
    assert!(
        m2.get("users").is_none() && m2["generators"].get("hub").is_none(),
        "{m2}"
    );
    let bob: serde_json::Value =
        serde_json::from_slice(&lab.read("users/bob/manifest.json")).unwrap();
    assert_eq!(bob["kind"], "user");
    assert_eq!(
        bob["generators"]["key"]["files"]["id"]["path"],
        "users/bob/key/id.age"
    );
}

#[test]
fn rekey_plan_checks_each_intent_against_vars_yaml() {
    let lab = generated();
    let config = lab.config();
    let store = lab.store(&config);
    let plan = |intent: &Intent| vars::rekey::plan(&config, &store, intent);
    let intent_error = |r: Result<vars::rekey::RekeyPlan, RekeyError>| match r {
        Err(RekeyError::Intent { message }) => message,
        other => panic!("{other:?}"),
    };
    let msg = intent_error(plan(&Intent {
        add_users: vec!["carol".into()],
        ..Default::default()
    }));
    assert!(msg.contains("not declared"), "{msg}");
    let msg = intent_error(plan(&Intent {
        add_machines: vec!["m9".into()],
        ..Default::default()
    }));
    assert!(msg.contains("host key"), "{msg}");
    let msg = intent_error(plan(&Intent {
        remove_users: vec!["bob".into()],
        ..Default::default()
    }));
    assert!(msg.contains("still declared"), "{msg}");
    assert!(plan(&Intent::default()).unwrap().is_empty());
    let rotate = plan(&Intent {
        rotate_vault: true,
        ..Default::default()
    })
    .unwrap();
    assert!(matches!(rotate.vault, VaultAction::Rotate { .. }));
    assert_eq!(
        rotate.instances.len(),
        4,
        "every instance with secrets: {:?}",
        rotate.instances
    );

    // bob joins m2: his key becomes stale for machine m2; carol becomes an admin: re-wrap.
    lab.write(
        &FLEET
            .replace(
                "m2: { recipients: [\"{host2}\"], tags: [mesh] }",
                "m2: { recipients: [\"{host2}\"], tags: [mesh], users: [bob] }",
            )
            .replace("admins: [alice]", "admins: [alice, bob]"),
    );
    let config = lab.config();
    let store = lab.store(&config);
    let joined = vars::rekey::plan(
        &config,
        &store,
        &Intent {
            add_users: vec!["bob".into()],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        joined.vault,
        VaultAction::Rewrap {
            added: vec!["bob".into()]
        }
    );
    let stale: Vec<String> = joined
        .instances
        .iter()
        .map(|(i, s)| format!("{i}/{} +{}", s[0].file, s[0].added[0]))
        .collect();
    assert_eq!(stale, ["users/bob/key/id +machine m2"]);
    assert!(
        joined.notes.iter().any(|n| n.contains("bob is an admin")),
        "{:?}",
        joined.notes
    );
}

#[test]
fn check_reports_every_kind_of_finding() {
    let lab = generated();
    let kinds = |lab: &Lab| -> Vec<(FindingKind, String)> {
        lab.check()
            .into_iter()
            .map(|f| (f.kind, f.subject))
            .collect()
    };
    let has = |lab: &Lab, kind: FindingKind, subject: &str| {
        let all = kinds(lab);
        assert!(
            all.contains(&(kind, subject.to_owned())),
            "{kind:?} {subject}: {all:?}"
        );
    };
    let store = lab.store_dir();
    // missing
    std::fs::remove_file(store.join("machines/m2/wg/public")).unwrap();
    has(&lab, FindingKind::Missing, "machines/m2/wg");
    // stale-dependency: hub recorded the old wg generation
    lab.generate(&request(&["machines/m2/wg"], true), &[])
        .unwrap();
    let meta = store.join("machines/m1/hub/meta.json");
    let saved = std::fs::read(&meta).unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&saved).unwrap();
    m["dependencies"]["machines/m2/wg"] = "0".into();
    std::fs::write(&meta, serde_json::to_vec(&m).unwrap()).unwrap();
    has(&lab, FindingKind::StaleDependency, "machines/m1/hub");
    std::fs::write(&meta, &saved).unwrap();
    // damaged meta.json
    std::fs::write(store.join("users/bob/key/meta.json"), "{").unwrap();
    has(&lab, FindingKind::Damaged, "users/bob/key");
    lab.generate(&request(&["users/bob/key"], true), &[])
        .unwrap();
    // a ciphertext that does not match meta.json
    let other = std::fs::read(store.join("machines/m1/wg/private.age")).unwrap();
    std::fs::write(store.join("users/bob/key/id.age"), other).unwrap();
    has(&lab, FindingKind::Damaged, "users/bob/key");
    lab.generate(&request(&["users/bob/key"], true), &[])
        .unwrap();
    // tampered: a stray file and a link
    std::fs::write(store.join("machines/m1/wg/private"), "plaintext copy").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", store.join("keys/extra")).unwrap();
    has(&lab, FindingKind::Tampered, "machines/m1/wg/private");
    has(&lab, FindingKind::Tampered, "keys/extra");
    std::fs::remove_file(store.join("machines/m1/wg/private")).unwrap();
    std::fs::remove_file(store.join("keys/extra")).unwrap();
    // orphaned (a warning)
    std::fs::create_dir_all(store.join("machines/m2/gone")).unwrap();
    let orphan = lab
        .check()
        .into_iter()
        .find(|f| f.kind == FindingKind::Orphaned)
        .unwrap();
    assert_eq!(
        (orphan.severity, orphan.subject.as_str()),
        (Severity::Warning, "machines/m2/gone")
    );
    std::fs::remove_dir(store.join("machines/m2/gone")).unwrap();
    // manifest-outdated
    std::fs::write(store.join("machines/m2/manifest.json"), "{}").unwrap();
    has(
        &lab,
        FindingKind::ManifestOutdated,
        "machines/m2/manifest.json",
    );
    lab.generate(&request(&[], false), &[]).unwrap();
    assert!(lab.check().is_empty(), "{:?}", lab.check());
    // stale-validation and definition-changed
    lab.write(&FLEET.replace(
        "    script: echo \"$user\" > \"$out/id\"",
        "    script: echo \"$user!\" > \"$out/id\"\n    validation: 2",
    ));
    has(&lab, FindingKind::StaleValidation, "users/bob/key");
    has(&lab, FindingKind::DefinitionChanged, "users/bob/key");
    lab.write(FLEET);
    // stale-recipients (a secret, and vault.age when an admin is added)
    lab.write(
        &FLEET
            .replace("admins: [alice]", "admins: [alice, bob]")
            .replace(
                "m2: { recipients: [\"{host2}\"], tags: [mesh] }",
                "m2: { recipients: [\"{host2}\"], tags: [mesh], users: [bob] }",
            ),
    );
    has(&lab, FindingKind::StaleRecipients, "users/bob/key");
    has(&lab, FindingKind::StaleRecipients, "keys/vault.age");
    lab.write(FLEET);
    // vault-unrecorded, vault-rotation-interrupted, vault-missing
    std::fs::remove_file(store.join("keys/vault.json")).unwrap();
    has(&lab, FindingKind::VaultUnrecorded, "keys");
    let vault_pub = std::fs::read(store.join("keys/vault.pub")).unwrap();
    std::fs::write(store.join("keys/next.pub"), &vault_pub).unwrap();
    has(&lab, FindingKind::VaultRotationInterrupted, "keys");
    std::fs::remove_file(store.join("keys/next.pub")).unwrap();
    std::fs::remove_file(store.join("keys/vault.pub")).unwrap();
    has(&lab, FindingKind::VaultMissing, "keys");
}

#[test]
fn prompt_values_resolve_instance_keys_first_and_read_the_environment() {
    let lab = Lab::new(
        r#"version: 1
admins: [alice]
users:
  alice: { recipients: ["{admin}"], generators: [pw] }
  bob: { recipients: ["{user}"], generators: [pw] }
generators:
  pw:
    prompts: { password: { type: hidden, description: "the \u001b]0;title\u0007 one" } }
    files: { out: { secret: false } }
    script: cat "$prompts/password" > "$out/out"
"#,
    );
    let config = lab.config();
    let environment = [(
        "VARS_PROMPT_USERS_BOB_PW_PASSWORD".to_owned(),
        vars::secret::SecretBytes::new(b"from env".to_vec()),
    )];
    let mut values = vars::prompt::PromptValues::parse(
        &[
            "pw.password=general".into(),
            "users/alice/pw.password=alice's".into(),
        ],
        &[],
        environment,
        &mut || unreachable!(),
    )
    .unwrap();
    values.validate(&config).unwrap();
    let given = |i: &str| {
        values
            .given(&config, &id(i), "password")
            .unwrap()
            .expose()
            .to_vec()
    };
    assert_eq!(given("users/alice/pw"), b"alice's");
    // The environment names bob's instance exactly, so it wins over the generator-wide value.
    assert_eq!(given("users/bob/pw"), b"from env");
    // A key that names no prompt is refused, without echoing values.
    let mut bad = vars::prompt::PromptValues::parse(
        &["pw.nope=secret-value".into()],
        &[],
        [],
        &mut || unreachable!(),
    )
    .unwrap();
    let err = bad.validate(&config).unwrap_err().to_string();
    assert!(
        err.contains("pw.nope") && !err.contains("secret-value"),
        "{err}"
    );
    // What the person is asked shows the description with its terminal escapes defused.
    struct Recorder(std::sync::Mutex<Vec<String>>);
    impl vars::prompt::Asker for Recorder {
        fn ask(
            &self,
            q: &vars::prompt::Question<'_>,
        ) -> Result<Option<vars::secret::SecretBytes>, vars::prompt::PromptError> {
            self.0.lock().unwrap().push(format!(
                "{} {}",
                q.key,
                q.description.clone().unwrap_or_default()
            ));
            Ok(Some(vars::secret::SecretBytes::new(b"asked".to_vec())))
        }
    }
    let asker = Recorder(Default::default());
    let empty = vars::prompt::PromptValues::default();
    let ids = vec![id("users/alice/pw")];
    let sources = vars::prompt::sources(&config, &empty, &ids, |_, _| false);
    let values = vars::prompt::collect(
        &config,
        &empty,
        &sources,
        Some(&asker),
        &mut |_, _| unreachable!(),
    )
    .unwrap();
    assert_eq!(values[&id("users/alice/pw")][0].1.expose(), b"asked");
    let asked = asker.0.lock().unwrap().clone();
    assert_eq!(asked, ["users/alice/pw.password the \\e]0;title\\x07 one"]);
    assert!(matches!(Scope::Shared, Scope::Shared));
}
