//! Generator definitions shipped with vars (`generators/*.yaml` in the source tree, embedded at
//! build time by `build.rs`), and `extends:`, which lets a fleet use one with its own
//! parameters, owners and modes without copying its script (issue 14).
//!
//! A shipped generator is assigned by name; a local definition of the same name wins
//! (DESIGN §2). A local definition with `extends: <shipped>` starts from the shipped one and
//! changes only what it gives: it may keep the name (to change an owner) or take another (two
//! tokens of different lengths). `extend` merges the two specs before
//! `validate` checks the result like any other definition; [`all`] validates every
//! shipped generator for `vars generators` and `docs/generators.md` ([`markdown`]).

use std::path::{Path, PathBuf};

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::spec::{self, GeneratorSpec, Loc};

use super::Generator;
use super::Origin;
use super::validate::Validator;

/// Every shipped generator: (name, YAML text), sorted by name.
pub const SHIPPED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/shipped.rs"));

/// The YAML text of a shipped generator.
pub fn find(name: &str) -> Option<&'static str> {
    SHIPPED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}

/// The path error messages show for a shipped generator's YAML.
pub fn display_path(name: &str) -> PathBuf {
    PathBuf::from(format!("<shipped>/generators/{name}.yaml"))
}

/// Every shipped generator, validated, in name order.
pub fn all() -> Result<Vec<Generator>, Diagnostics> {
    let mut v = Validator::default();
    let mut out = Vec::new();
    for (name, text) in SHIPPED {
        let path = display_path(name);
        if let Some(g) = v.parse::<GeneratorSpec>(&path, text)
            && let Some(g) = v.generator(name, g, Origin::Shipped, false, &path, text, 0, 0)
        {
            out.push(g);
        }
    }
    if v.diags.is_empty() {
        Ok(out)
    } else {
        Err(Diagnostics(v.diags))
    }
}

/// Merge a local definition that says `extends: <shipped>` onto the shipped spec. Every
/// problem is a positioned diagnostic in the local file; `None` when there was one.
pub(super) fn extend(
    v: &mut Validator,
    name: &str,
    local: GeneratorSpec,
    file: &Path,
    src: &str,
) -> Option<GeneratorSpec> {
    let base_name = local
        .extends
        .clone()
        .expect("extend is called for extends: only");
    let at = |l: u64, c: u64, msg: String| Diagnostic::at(file, src, l, c, msg);
    let Some(text) = find(&base_name.value.0) else {
        v.push(
            at(
                base_name.line,
                base_name.column,
                format!(
                    "generator {name:?} extends {:?}, which is not a shipped generator",
                    base_name.value.0
                ),
            )
            .hint("extends: names a shipped generator (vars generators lists them)"),
        );
        return None;
    };
    let base = v.parse::<GeneratorSpec>(&display_path(&base_name.value.0), text)?;
    let before = v.diags.len();
    let refuse = |v: &mut Validator, l: u64, c: u64, what: &str| {
        v.push(
            at(
                l,
                c,
                format!(
                    "generator {name:?} extends {:?} and cannot change its {what}",
                    base_name.value.0
                ),
            )
            .hint(
                "an extending definition changes only description, validation, share, timeout, \
                 runtime-inputs and file owners/modes; drop extends: to write a whole definition",
            ),
        );
    };
    if let Some(s) = &local.script {
        refuse(v, s.line, s.column, "script");
    }
    if let Some(d) = local.dependencies.first() {
        refuse(v, d.line, d.column, "dependencies");
    }
    if let Some((p, _)) = local.parameters.iter().next() {
        refuse(v, p.line, p.column, "parameters");
    }
    if local.network {
        refuse(v, base_name.line, base_name.column, "network access");
    }
    let mut files = base.files;
    for (fname, f) in local.files {
        let persisted = base
            .prompts
            .get(&fname)
            .is_some_and(|p| p.persist == Some(true));
        let Some(target) = files.get_mut(&fname) else {
            if persisted {
                // A stored prompt is a secret file; owner and mode may change, that may not.
                if f.secret == Some(false) {
                    refuse(
                        v,
                        fname.line,
                        fname.column,
                        &format!("secret: of file {:?}", fname.value.0),
                    );
                }
                files.insert(fname, f);
                continue;
            }
            v.push(
                at(
                    fname.line,
                    fname.column,
                    format!(
                        "shipped generator {:?} has no file {:?}",
                        base_name.value.0, fname.value.0
                    ),
                )
                .hint("vars generators lists each shipped generator's files"),
            );
            continue;
        };
        if let Some(secret) = f.secret
            && secret != target.secret.unwrap_or(true)
        {
            // Turning a private key public (or the reverse) is not a parameter: the script
            // decides what the file holds.
            refuse(
                v,
                fname.line,
                fname.column,
                &format!("secret: of file {:?}", fname.value.0),
            );
        }
        target.deploy = f.deploy.or(target.deploy);
        target.owner = f.owner.or(target.owner.take());
        target.group = f.group.or(target.group.take());
        target.mode = f.mode.or(target.mode.take());
        target.needed_for = f.needed_for.or(target.needed_for);
    }
    let mut prompts = base.prompts;
    for (pname, p) in local.prompts {
        let Some(target) = prompts.get_mut(&pname) else {
            v.push(
                at(
                    pname.line,
                    pname.column,
                    format!(
                        "shipped generator {:?} has no prompt {:?}",
                        base_name.value.0, pname.value.0
                    ),
                )
                .hint("vars generators lists each shipped generator's prompts"),
            );
            continue;
        };
        target.description = p.description.or(target.description.take());
        target.kind = p.kind.or(target.kind);
        target.persist = p.persist.or(target.persist);
    }
    if v.diags.len() != before {
        return None;
    }
    // Errors about a dependency point at `extends:`: the local file has no such line.
    let dependencies = base
        .dependencies
        .into_iter()
        .map(|d| Loc {
            line: base_name.line,
            column: base_name.column,
            ..d
        })
        .collect();
    Some(GeneratorSpec {
        extends: Some(base_name),
        description: local.description.or(base.description),
        parameters: base.parameters,
        files,
        prompts,
        dependencies,
        // Appended, never replacing (review 2, finding 1): the shipped script's programs come
        // first, so a local list cannot swap the `head` a shipped script relies on; a local
        // entry adds a program, or provides one the host `PATH` lacks.
        runtime_inputs: base
            .runtime_inputs
            .into_iter()
            .chain(local.runtime_inputs)
            .collect(),
        script: base.script,
        share: local.share.or(base.share),
        validation: merge_validation(base.validation, local.validation),
        network: base.network,
        timeout: local.timeout.or(base.timeout),
    })
}

/// The local `validation` over the shipped one: key by key when both are mappings, else the
/// local value replaces the shipped one.
fn merge_validation(
    base: Option<Loc<serde_json::Value>>,
    local: Option<Loc<serde_json::Value>>,
) -> Option<Loc<serde_json::Value>> {
    match (base, local) {
        (Some(b), Some(l)) => match (b.value, l.value) {
            (serde_json::Value::Object(mut b), serde_json::Value::Object(l_map)) => {
                b.extend(l_map);
                Some(Loc {
                    value: serde_json::Value::Object(b),
                    line: l.line,
                    column: l.column,
                })
            }
            (_, value) => Some(Loc { value, ..l }),
        },
        (b, l) => l.or(b),
    }
}

/// `docs/generators.md`: every shipped generator with its description, files, prompts and
/// parameters, rendered from the YAML files (a test keeps the committed page equal to this).
pub fn markdown(generators: &[Generator]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    s.push_str(
        "# Shipped generators\n\n\
         <!-- Generated from generators/*.yaml by `vars generators --markdown`; do not edit. -->\n\n\
         Assign one by name (`generators: [ssh-host-ed25519]`). Set its parameters with a local \
         definition that extends it, under `generators:` in vars.yaml or in \
         `generators/<name>.yaml`:\n\n\
         ```yaml\ngenerators:\n  api-token:                 # any name; the same name takes the shipped one's place\n    \
         extends: random-hex\n    validation: { bytes: 16 }  # changing a parameter regenerates\n    \
         files:\n      token: { owner: api, mode: \"0440\" }\n```\n\n\
         An extending definition may change `description`, `validation` (merged key by key), \
         `share`, `timeout`, and per file `owner`, `group`, `mode`, `deploy` and `needed-for` \
         (per prompt `description`, `type` and `persist`); its `runtime-inputs` are added \
         after the shipped ones (a program the host's `PATH` lacks, e.g. a `/nix/store` \
         path), they never replace them. The script sees \
         each parameter as `$validation_<name>` (`-` becomes `_`) and all of them as JSON in \
         `$validation`. A parameter default is part of the definition, like the script: \
         changing it in a new vars release regenerates nothing; setting a value in \
         `validation` does.\n\n\
         Files default to `root:root 0400` (in a user instance: the user and their group). \
         Extend a generator to give a file to the service that reads it, e.g. for \
         systemd-networkd, which reads WireGuard keys as `systemd-network` \
         (systemd.netdev(5)):\n\n\
         ```yaml\ngenerators:\n  wireguard-key:\n    extends: wireguard-key\n    \
         files:\n      private-key: { group: systemd-network, mode: \"0440\" }\n```\n\n",
    );
    s.push_str("| generator | what it makes |\n|---|---|\n");
    for g in generators {
        let _ = writeln!(
            s,
            "| [`{}`](#{}) | {} |",
            g.name,
            g.name,
            md(g.description.as_deref().unwrap_or(""))
        );
    }
    for g in generators {
        let _ = write!(s, "\n## `{}`\n\n", g.name);
        if let Some(d) = &g.description {
            let _ = write!(s, "{}\n\n", md(d));
        }
        let scope = if g.share {
            "shared (one instance for every machine that uses it)"
        } else {
            "per machine or per user, wherever it is assigned"
        };
        let _ = writeln!(s, "- Scope: {scope}.");
        if !g.runtime_inputs.is_empty() {
            let _ = writeln!(s, "- Runs: `{}`.", g.runtime_inputs.join("`, `"));
        }
        if !g.dependencies.is_empty() {
            let deps: Vec<String> = g
                .dependencies
                .iter()
                .map(|d| match d {
                    super::DepRef::Same(n) => format!("`{n}`"),
                    super::DepRef::EveryMachine(n) => format!("`machines/*/{n}` (public files)"),
                })
                .collect();
            let _ = writeln!(s, "- Depends on: {}.", deps.join(", "));
        }
        s.push_str("\n| file | kind | owner:group mode | |\n|---|---|---|---|\n");
        for (name, f) in &g.files {
            let kind = match (f.secret, f.deploy) {
                (false, _) => "public",
                (true, true) => "secret",
                (true, false) => "secret, admins only",
            };
            let needed = if f.needed_for == spec::NeededFor::Users {
                "needed-for: users"
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "| `{name}` | {kind} | {}:{} {:04o} | {needed} |",
                f.owner.as_deref().unwrap_or("root"),
                f.group.as_deref().unwrap_or("root"),
                f.mode
            );
        }
        if !g.prompts.is_empty() {
            s.push_str("\n| prompt | type | persisted | description |\n|---|---|---|---|\n");
            for (name, p) in &g.prompts {
                let kind = p.kind.as_str();
                let _ = writeln!(
                    s,
                    "| `{name}` | {kind} | {} | {} |",
                    if p.persist { "yes" } else { "no" },
                    md(p.description.as_deref().unwrap_or(""))
                );
            }
        }
        if g.parameters.is_empty() {
            s.push_str("\nNo parameters.\n");
        } else {
            s.push_str("\n| parameter | default | meaning |\n|---|---|---|\n");
            for (name, p) in &g.parameters {
                let default = p
                    .default
                    .as_ref()
                    .map(|d| format!("`{d}`"))
                    .unwrap_or_else(|| "(none)".into());
                let _ = writeln!(s, "| `{name}` | {default} | {} |", md(&p.description));
            }
        }
    }
    s
}

/// Text for a Markdown table cell: `<` would open an HTML tag, `|` end the cell.
fn md(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(v: serde_json::Value) -> Option<Loc<serde_json::Value>> {
        Some(Loc::unplaced(v))
    }

    #[test]
    fn validation_merges_key_by_key_and_replaces_otherwise() {
        use serde_json::json;
        let merged = |b, l| merge_validation(b, l).map(|v| v.value);
        assert_eq!(
            merged(loc(json!({"a": 1, "b": 2})), loc(json!({"b": 3, "c": 4}))),
            Some(json!({"a": 1, "b": 3, "c": 4}))
        );
        assert_eq!(merged(loc(json!({"a": 1})), loc(json!(7))), Some(json!(7)));
        assert_eq!(merged(None, loc(json!({"a": 1}))), Some(json!({"a": 1})));
        assert_eq!(merged(loc(json!({"a": 1})), None), Some(json!({"a": 1})));
        assert_eq!(merged(None, None), None);
    }

    #[test]
    fn every_shipped_generator_loads_and_is_sorted_by_name() {
        let all = all().expect("shipped generators validate");
        let names: Vec<&str> = all.iter().map(|g| g.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        for (name, _) in SHIPPED {
            assert!(find(name).is_some());
        }
        assert!(find("no-such-generator").is_none());
        // The four names fleets relied on before the library existed.
        for name in [
            "ssh-host-ed25519",
            "wireguard-key",
            "user-password",
            "age-identity",
        ] {
            assert!(names.contains(&name), "{name}");
        }
    }

    #[test]
    fn markdown_lists_every_generator_and_escapes_cells() {
        let all = all().unwrap();
        let page = markdown(&all);
        for g in &all {
            assert!(page.contains(&format!("\n## `{}`\n", g.name)), "{}", g.name);
        }
        assert_eq!(md("<machine> | a & b"), "&lt;machine&gt; \\| a &amp; b");
        assert!(
            !page.contains("\"<machine>"),
            "raw HTML-like text in a cell"
        );
    }

    /// `local` (a generator file extending `wireguard-key`) merged, and the shipped base.
    fn extend_wireguard_key(local: &str) -> (GeneratorSpec, GeneratorSpec) {
        let mut v = Validator::default();
        let local: GeneratorSpec = v.parse(Path::new("vars.yaml"), local).unwrap();
        let merged = extend(&mut v, "wireguard-key", local, Path::new("vars.yaml"), "").unwrap();
        assert!(v.diags.is_empty());
        let base = v
            .parse(
                &display_path("wireguard-key"),
                find("wireguard-key").unwrap(),
            )
            .unwrap();
        (merged, base)
    }

    #[test]
    fn an_extension_keeps_the_script_and_changes_only_what_it_says() {
        let (merged, base) = extend_wireguard_key(
            "extends: wireguard-key\nfiles:\n  private-key: { group: systemd-network, mode: \"0440\" }\n",
        );
        assert_eq!(merged.script, base.script);
        assert_eq!(merged.runtime_inputs, base.runtime_inputs);

        let key = merged
            .files
            .iter()
            .find(|(n, _)| n.value.0 == "private-key")
            .unwrap()
            .1;
        assert_eq!(key.group.as_deref(), Some("systemd-network"));
        assert_eq!(key.mode.as_ref().unwrap().value, "0440");
        let public = merged
            .files
            .iter()
            .find(|(n, _)| n.value.0 == "public-key")
            .unwrap()
            .1;
        assert_eq!(public.secret, Some(false));
    }

    /// Review 2, finding 1: a local `runtime-inputs` is appended to the shipped list, so it
    /// cannot take the place of a program the shipped script relies on.
    #[test]
    fn an_extension_appends_runtime_inputs() {
        let (merged, base) = extend_wireguard_key(
            "extends: wireguard-key\nruntime-inputs: [/nix/store/x-wg/bin/wg, openssl]\n",
        );
        let names = |g: &GeneratorSpec| -> Vec<String> {
            g.runtime_inputs.iter().map(|r| r.value.clone()).collect()
        };
        let mut expected = names(&base);
        assert!(!expected.is_empty(), "wireguard-key names its programs");
        expected.extend(["/nix/store/x-wg/bin/wg".to_owned(), "openssl".to_owned()]);
        assert_eq!(names(&merged), expected);
    }
}
