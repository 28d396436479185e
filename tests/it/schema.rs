//! The committed JSON schemas equal what the code generates, every valid fixture loads, and
//! every invalid fixture fails with exactly the message in its `expected.txt`.

use std::path::Path;

use crate::common;

#[test]
fn committed_schemas_do_not_drift() {
    for (file, text) in [
        ("vars.schema.json", vars::spec::vars_schema()),
        ("generator.schema.json", vars::spec::generator_schema()),
    ] {
        let committed =
            std::fs::read_to_string(common::repo().join("schema").join(file)).unwrap_or_default();
        assert!(
            committed == text,
            "schema/{file} is out of date: run `cargo run -q -- schema{} > schema/{file}`",
            if file.starts_with("gen") {
                " --generator"
            } else {
                ""
            }
        );
    }
}

/// Load a fixture and render its first error the way the CLI does, with the fixture
/// directory stripped from paths.
fn load_error(dir: &Path) -> Option<String> {
    let err = match vars::model::load(&dir.join("vars.yaml")) {
        Ok(_) => return None,
        Err(e) => e.to_string(),
    };
    Some(err.replace(&format!("{}/", dir.display()), ""))
}

#[test]
fn valid_fixtures_load() {
    for e in std::fs::read_dir(common::repo().join("testdata/schema/valid"))
        .unwrap()
        .flatten()
    {
        assert_eq!(load_error(&e.path()), None, "{}", e.path().display());
    }
}

#[test]
fn invalid_fixtures_fail_with_their_exact_message() {
    let mut seen = 0;
    for e in std::fs::read_dir(common::repo().join("testdata/schema/invalid"))
        .unwrap()
        .flatten()
    {
        let dir = e.path();
        let got =
            load_error(&dir).unwrap_or_else(|| panic!("{} loaded but must fail", dir.display()));
        let expected_path = dir.join("expected.txt");
        if std::env::var_os("VARS_BLESS").is_some() {
            std::fs::write(&expected_path, format!("{got}\n")).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|_| {
            panic!(
                "{} has no expected.txt (VARS_BLESS=1 writes it)",
                dir.display()
            )
        });
        assert_eq!(got, expected.trim_end_matches('\n'), "{}", dir.display());
        seen += 1;
    }
    assert!(seen >= 20, "only {seen} invalid fixtures");
}
