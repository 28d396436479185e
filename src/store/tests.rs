use super::*;
use std::fs;
use std::os::unix::fs::symlink;

#[test]
fn gitignore_is_ours_to_update_but_not_the_users() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::new(t.path());
    let path = t.path().join(".gitignore");
    fs::write(&path, "# written by vars: older patterns\n.*.staging\n").unwrap();
    drop(store.lock().unwrap());
    assert_eq!(fs::read_to_string(&path).unwrap(), GITIGNORE);
    fs::write(&path, "mine\n").unwrap();
    drop(store.lock().unwrap());
    assert_eq!(fs::read_to_string(&path).unwrap(), "mine\n");
}

#[test]
fn second_lock_fails() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::new(t.path());
    let _l = store.lock().unwrap();
    assert!(matches!(store.lock(), Err(StoreError::Locked { .. })));
}

#[test]
fn a_linked_store_or_lock_is_refused() {
    let repo = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    symlink(elsewhere.path(), repo.path().join("vars")).unwrap();
    let store = Store::beneath(repo.path(), Path::new("vars"), Backend::Age);
    assert!(store.lock().is_err());
    assert!(store.read_meta(&id("machines/m/g")).is_err());
    assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0);

    fs::remove_file(repo.path().join("vars")).unwrap();
    fs::create_dir(repo.path().join("vars")).unwrap();
    symlink("/nonexistent-vars-lock", repo.path().join("vars/.lock")).unwrap();
    let store = Store::beneath(repo.path(), Path::new("vars"), Backend::Age);
    assert!(store.lock().is_err());
    assert!(!Path::new("/nonexistent-vars-lock").exists());
}

fn id(rel: &str) -> InstanceId {
    layout::parse_instance_rel(rel).unwrap()
}

#[test]
fn linked_bookkeeping_is_damage_not_a_read_outside() {
    let t = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("meta.json"), b"{}").unwrap();
    fs::create_dir_all(t.path().join("machines/m/g")).unwrap();
    symlink(
        outside.path().join("meta.json"),
        t.path().join("machines/m/g/meta.json"),
    )
    .unwrap();
    symlink(outside.path(), t.path().join("machines/m2")).unwrap();
    let store = Store::new(t.path());
    for i in ["machines/m/g", "machines/m2/g"] {
        match store.read_meta(&id(i)) {
            Err(StoreError::BadMeta { reason, .. }) => {
                assert!(reason.contains("symbolic link"), "{reason}")
            }
            other => panic!("{i}: {other:?}"),
        }
    }
    let listing = store.instances().unwrap();
    assert_eq!(
        listing.strays,
        [Stray {
            rel: "machines/m2".into(),
            kind: Kind::Symlink
        }]
    );
    assert_eq!(listing.instances.len(), 1);
    assert_eq!(listing.instances[0].entries[0].kind, Kind::Symlink);
}

#[test]
fn meta_json_may_name_only_files_of_its_instance() {
    let t = tempfile::tempdir().unwrap();
    fs::create_dir_all(t.path().join("shared/g")).unwrap();
    let meta = r#"{"definition-hash":"d","dependencies":{},"files":{"../../../etc/passwd":{"deploy":true,"secret":false}},"format":1,"generation":"x","generator":"g","scope":"shared","validation-hash":"v"}"#;
    fs::write(t.path().join("shared/g/meta.json"), meta).unwrap();
    let err = Store::new(t.path()).read_meta(&id("shared/g")).unwrap_err();
    assert!(err.to_string().contains("not a file name"), "{err}");
}

#[test]
fn listing_finds_instances_and_strays() {
    let t = tempfile::tempdir().unwrap();
    for d in ["machines/m/g", "users/u/h", "shared/s", "keys"] {
        fs::create_dir_all(t.path().join(d)).unwrap();
    }
    fs::write(t.path().join("machines/m/manifest.json"), "{}").unwrap();
    fs::write(t.path().join("machines/m/notes.txt"), "x").unwrap();
    fs::write(t.path().join("keys/vault.pub"), "x").unwrap();
    fs::write(t.path().join("keys/extra"), "x").unwrap();
    fs::write(t.path().join("README"), "x").unwrap();
    fs::write(t.path().join(".gitignore"), "x").unwrap();
    let listing = Store::new(t.path()).instances().unwrap();
    let ids: Vec<String> = listing.instances.iter().map(|i| i.id.to_string()).collect();
    assert_eq!(ids, ["machines/m/g", "shared/s", "users/u/h"]);
    let strays: Vec<&str> = listing.strays.iter().map(|s| s.rel.as_str()).collect();
    assert_eq!(strays, ["README", "keys/extra", "machines/m/notes.txt"]);
}
