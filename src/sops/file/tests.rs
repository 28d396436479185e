use super::*;

/// Encrypt like sops does (for tests that need no sops program): values of the tree in
/// order, MAC over them, data key wrapped to `recipient`.
fn seal_value(plain: &[u8], key: &[u8; 32], aad: &str, kind: &str, iv: [u8; 32]) -> String {
    let cipher = AesGcm::<Aes256, U32>::new_from_slice(key).unwrap();
    let out = cipher
        .encrypt(
            Nonce::<U32>::from_slice(&iv),
            Payload {
                msg: plain,
                aad: aad.as_bytes(),
            },
        )
        .unwrap();
    let (data, tag) = out.split_at(out.len() - 16);
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{kind}]",
        b64.encode(data),
        b64.encode(iv),
        b64.encode(tag)
    )
}

fn binary_file(plain: &[u8], vault: &crypto::VaultKey) -> (Vec<u8>, [u8; 32]) {
    use sha2::Digest as _;
    let key = [7u8; 32];
    let r = crypto::Recipient::parse(&vault.recipient()).unwrap();
    let enc = crypto::encrypt(&SecretBytes::new(key.to_vec()), &[&r], true).unwrap();
    let mac = format!("{:X}", sha2::Sha512::digest(plain));
    let lm = "2024-01-01T00:00:00Z";
    let json = serde_json::json!({
        "data": seal_value(plain, &key, "data:", "str", [1; 32]),
        "sops": {
            "age": [{"recipient": vault.recipient(), "enc": String::from_utf8(enc).unwrap()}],
            "lastmodified": lm,
            "mac": seal_value(mac.as_bytes(), &key, lm, "str", [2; 32]),
            "version": "3.11.0",
        }
    });
    (serde_json::to_vec(&json).unwrap(), key)
}

#[test]
fn binary_round_trip_and_tampering_is_detected() {
    let vault = crypto::VaultKey::generate();
    let mut ids = Identities::default();
    ids.add_vault(&vault);
    let (bytes, _) = binary_file(b"s3cret\x00\xff", &vault);
    assert!(looks_like_sops(&bytes));
    assert_eq!(
        open_binary(&bytes, &ids).unwrap().expose(),
        b"s3cret\x00\xff"
    );
    let st = SopsFile::parse_binary(&bytes).unwrap().stanzas().unwrap();
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].kind, "X25519");

    // Another key: no data key.
    let other = crypto::VaultKey::generate();
    let mut wrong = Identities::default();
    wrong.add_vault(&other);
    assert!(matches!(
        open_binary(&bytes, &wrong),
        Err(FileError::NoKey { .. })
    ));

    // A value moved to another path does not decrypt (the path is authenticated).
    let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let data = v["data"].clone();
    v.as_object_mut().unwrap().remove("data");
    v["other"] = data;
    let moved = serde_json::to_vec(&v).unwrap();
    assert!(SopsFile::parse_binary(&moved).is_err());
    let f = SopsFile::parse(&moved, Format::Json).unwrap();
    let k = f.data_key(&ids).unwrap();
    assert!(matches!(f.decrypt(&k), Err(FileError::Damaged(_))));

    // An emptied value is caught by the MAC.
    let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    v["data"] = "".into();
    let emptied = serde_json::to_vec(&v).unwrap();
    let err = open_binary(&emptied, &ids).err().unwrap();
    assert!(err.to_string().contains("MAC"), "{err}");
}

#[test]
fn other_master_keys_count_as_stanzas_and_groups_are_refused() {
    let vault = crypto::VaultKey::generate();
    let (bytes, _) = binary_file(b"x", &vault);
    let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    v["sops"]["pgp"] = serde_json::json!([{"fp": "AB", "enc": "x", "created_at": "t"}]);
    let f = SopsFile::parse_binary(&serde_json::to_vec(&v).unwrap()).unwrap();
    let kinds: Vec<String> = f.stanzas().unwrap().into_iter().map(|s| s.kind).collect();
    assert_eq!(kinds, ["X25519", "sops-pgp"]);
    v["sops"]["key_groups"] = serde_json::json!([{"age": []}]);
    let err = SopsFile::parse_binary(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(matches!(err, FileError::Unsupported(_)), "{err}");
}

#[test]
fn not_sops_is_a_clear_error() {
    for bad in [
        &b"age-encryption.org/v1\n"[..],
        b"[]",
        b"{\"data\": 1}",
        b"{}",
    ] {
        assert!(SopsFile::parse_binary(bad).is_err());
    }
    assert!(!looks_like_sops(b"age-encryption.org/v1"));
}

#[test]
fn encryption_rules_follow_sops() {
    let rules = Rules {
        unencrypted_suffix: Some("_unencrypted".into()),
        ..Rules::default()
    };
    let p = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert!(rules.encrypted(&p(&["a", "b"])));
    assert!(!rules.encrypted(&p(&["a_unencrypted", "b"])));
    let rules = Rules {
        encrypted_regex: Some(regex::Regex::new("^(data|stringData)$").unwrap()),
        ..Rules::default()
    };
    assert!(rules.encrypted(&p(&["data", "x"])));
    assert!(!rules.encrypted(&p(&["metadata", "name"])));
}

#[test]
fn yaml_keeps_document_order() {
    let n = parse_yaml("b: 1\na: {y: true, x: [1, 2.5, \"s\"], z: yes}\n").unwrap();
    let Node::Map(m) = n else { panic!() };
    assert_eq!(m[0].0, "b");
    assert_eq!(m[1].0, "a");
    assert_eq!(
        m[1].1,
        Node::Map(vec![
            ("y".into(), Node::Bool(true)),
            (
                "x".into(),
                Node::List(vec![Node::Int(1), Node::Float(2.5), Node::Str("s".into())])
            ),
            ("z".into(), Node::Str("yes".into())),
        ])
    );
    assert_eq!(Node::Float(2.5).mac_bytes().unwrap(), b"2.5");
    assert_eq!(Node::Bool(false).mac_bytes().unwrap(), b"False");
}
