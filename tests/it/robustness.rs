//! The loaders never panic: arbitrary bytes and mutated fixtures as vars.yaml, generator files
//! and meta.json give an error or a value, nothing else (what a fuzzer would check; cargo-fuzz
//! needs a nightly toolchain this project does not assume).

use proptest::prelude::*;

use crate::common;

fn fixture() -> String {
    std::fs::read_to_string(common::repo().join("testdata/schema/valid/everything/vars.yaml"))
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn vars_yaml_loader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vars.yaml");
        std::fs::write(&file, &bytes).unwrap();
        let _ = vars::model::load(&file);
    }

    #[test]
    fn mutated_fixtures_never_panic(cut in 0usize..4000, insert in "[ \\n:\\-\\[\\]{}&*!|>#\"'a-z0-9]{0,12}") {
        let text = fixture();
        let at = cut.min(text.len());
        let at = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        let mutated = format!("{}{}{}", &text[..at], insert, &text[at..]);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("generators")).unwrap();
        std::fs::write(dir.path().join("vars.yaml"), &mutated).unwrap();
        std::fs::write(dir.path().join("generators/extra.yaml"), &insert).unwrap();
        let _ = vars::model::load(&dir.path().join("vars.yaml"));
    }

    /// Any `timeout:` value loads or is refused ("not a duration", "at most 24h", "is zero");
    /// huge ones used to overflow (a panic in debug builds, a silent wrap to 3584 s in release
    /// builds).
    #[test]
    fn any_timeout_loads_or_is_refused(
        timeout in prop_oneof![
            Just("5124095576030432h".to_owned()),
            Just("18446744073709551615s1s".to_owned()),
            "[0-9]{1,25}[smh]?([0-9]{1,25}[smh])?",
        ]
    ) {
        let mut text = fixture();
        let at = text.find("\ngenerators:\n").expect("the fixture has generators");
        text.insert_str(at + "\ngenerators:\n".len(), &format!(
            "  timed:\n    files: {{ f: {{}} }}\n    timeout: \"{timeout}\"\n    script: \"true\"\n"
        ));
        let dir = tempfile::tempdir().unwrap();
        common::copy_dir(&common::repo().join("testdata/schema/valid/everything"), dir.path());
        std::fs::write(dir.path().join("vars.yaml"), &text).unwrap();
        match vars::model::load(&dir.path().join("vars.yaml")) {
            Ok(config) => {
                let t = config.generators["timed"].timeout;
                prop_assert_eq!(Some(t), vars::model::parse_duration(&timeout));
            }
            // Review 2, finding 5: at most 24h, and not zero.
            Err(e) => {
                let (e, parsed) = (e.to_string(), vars::model::parse_duration(&timeout));
                match parsed {
                    Some(d) if d > vars::sandbox::MAX_TIMEOUT => {
                        prop_assert!(e.contains("it may be at most 24h"), "{}", e)
                    }
                    Some(d) if d.is_zero() => prop_assert!(e.contains("is zero"), "{}", e),
                    _ => prop_assert!(e.contains("is not a duration"), "{}", e),
                }
            }
        }
    }

    #[test]
    fn meta_json_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let dir = tempfile::tempdir().unwrap();
        let store = vars::store::Store::new(dir.path());
        let id = vars::model::InstanceId { scope: vars::model::Scope::Shared, generator: "g".into() };
        std::fs::create_dir_all(store.instance_dir(&id)).unwrap();
        std::fs::write(store.instance_dir(&id).join("meta.json"), &bytes).unwrap();
        let _ = store.read_meta(&id);
        let _ = vars::crypto::header_stanzas(&bytes);
    }
}
