//! Validating one declaration file's YAML into model types: strict parsing with alias and
//! size budgets, names, file attributes, prompts, dependencies and timeouts, each problem a
//! positioned [`Diagnostic`]. [`super::resolve`] then resolves scopes and instances.

use std::collections::BTreeMap;
use std::path::Path;

use crate::diagnostic::Diagnostic;
use crate::sandbox::{DEFAULT_TIMEOUT, MAX_TIMEOUT};
use crate::spec::{self, Loc, Name, NeededFor, PromptKind};

use super::{
    CONFIG_FILE, DepRef, FileDef, Generator, Origin, ParameterDef, PromptDef, check_file_name,
    check_name, hash_json, parse_duration,
};

/// Collects every diagnostic of a load, so one run reports all problems.
#[derive(Default)]
pub(super) struct Validator {
    pub(super) diags: Vec<Diagnostic>,
}

impl Validator {
    pub(super) fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    pub(super) fn parse<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &Path,
        text: &str,
    ) -> Option<T> {
        // Tight budget: a declaration file is small; alias bombs and huge inputs are errors.
        let options = serde_saphyr::options! {
            budget: serde_saphyr::budget! {
                max_events: 200_000,
                max_aliases: 1_000,
                max_anchors: 1_000,
                max_nodes: 100_000,
                max_depth: 64,
                max_total_scalar_bytes: 8 * 1024 * 1024,
                max_documents: 1,
            },
            alias_limits: serde_saphyr::alias_limits! {
                max_total_replayed_events: 10_000,
                max_alias_expansions_per_anchor: 100,
            },
            with_snippet: false,
        };
        match serde_saphyr::from_str_with_options::<T>(text, options) {
            Ok(v) => Some(v),
            Err(e) => {
                let (line, column) = e
                    .location()
                    .map(|l| (l.line(), l.column()))
                    .unwrap_or((0, 0));
                let message = yaml_message(&e);
                let hint = yaml_hint(&message, path);
                let mut d = Diagnostic::at(path, text, line, column, message);
                if let Some(h) = hint {
                    d = d.hint(h);
                }
                self.push(d);
                None
            }
        }
    }

    pub(super) fn name(&mut self, file: &Path, src: &str, what: &str, n: &Loc<Name>) -> bool {
        match check_name(&n.value.0) {
            Ok(()) => true,
            Err(msg) => {
                self.push(
                    Diagnostic::at(file, src, n.line, n.column, format!("{what} name {:?} {msg}", n.value.0))
                        .hint("names are letters, digits, '.', '_' and '-', starting with a letter or digit"),
                );
                false
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn generator(
        &mut self,
        name: &str,
        g: spec::GeneratorSpec,
        origin: Origin,
        shadows_shipped: bool,
        file: &Path,
        src: &str,
        line: u64,
        column: u64,
    ) -> Option<Generator> {
        let before = self.diags.len();
        if let Err(msg) = check_name(name) {
            self.push(
                Diagnostic::at(
                    file,
                    src,
                    line,
                    column,
                    format!("generator name {name:?} {msg}"),
                )
                .hint(
                    "names are letters, digits, '.', '_' and '-', starting with a letter or digit",
                ),
            );
        }
        let mut files = BTreeMap::new();
        for (fname, f) in &g.files {
            if let Err(msg) = check_file_name(&fname.value.0) {
                self.push(
                    Diagnostic::at(
                        file,
                        src,
                        fname.line,
                        fname.column,
                        format!("file name {:?} of generator {name:?} {msg}", fname.value.0),
                    )
                    .hint("rename the file"),
                );
                continue;
            }
            let mode = match &f.mode {
                None => 0o400,
                Some(m) => match parse_mode(m.value.strip_prefix("0o").unwrap_or(&m.value)) {
                    Some(mode) => mode,
                    None => {
                        self.push(
                            Diagnostic::at(
                                file,
                                src,
                                m.line,
                                m.column,
                                format!(
                                    "mode {:?} of file {:?} is not an octal permission mode",
                                    m.value, fname.value.0
                                ),
                            )
                            .hint("write it as a quoted octal string of permission bits, e.g. mode: \"0440\" (no setuid, setgid or sticky bit: vars install refuses them)"),
                        );
                        0o400
                    }
                },
            };
            files.insert(
                fname.value.0.clone(),
                FileDef {
                    secret: f.secret.unwrap_or(true),
                    deploy: f.deploy.unwrap_or(true),
                    owner: f.owner.clone(),
                    group: f.group.clone(),
                    mode,
                    needed_for: f.needed_for.unwrap_or(NeededFor::Services),
                },
            );
        }
        let mut prompts = BTreeMap::new();
        for (pname, p) in &g.prompts {
            if let Err(msg) = check_file_name(&pname.value.0) {
                self.push(Diagnostic::at(
                    file,
                    src,
                    pname.line,
                    pname.column,
                    format!(
                        "prompt name {:?} of generator {name:?} {msg}",
                        pname.value.0
                    ),
                ));
                continue;
            }
            let def = PromptDef {
                description: p.description.clone(),
                kind: p.kind.unwrap_or(PromptKind::Line),
                persist: p.persist.unwrap_or(false),
            };
            if def.persist && !files.contains_key(&pname.value.0) {
                // A persisted prompt is stored as a secret file of the same name (DESIGN §2).
                files.insert(
                    pname.value.0.clone(),
                    FileDef {
                        secret: true,
                        deploy: true,
                        owner: None,
                        group: None,
                        mode: 0o400,
                        needed_for: NeededFor::Services,
                    },
                );
            }
            prompts.insert(pname.value.0.clone(), def);
        }
        let Some(script) = &g.script else {
            self.push(
                Diagnostic::at(file, src, line, column, format!("generator {name:?} has no script"))
                    .hint("add script:, or start from a shipped generator with extends: <name> (vars generators lists them)"),
            );
            return None;
        };
        if files.is_empty() && self.diags.len() == before {
            self.push(
                Diagnostic::at(
                    file,
                    src,
                    script.line,
                    script.column,
                    format!("generator {name:?} declares no files"),
                )
                .hint("list what the script writes to $out under files:, e.g. files: { key: {} }"),
            );
        }
        let mut dependencies = Vec::new();
        let mut dependency_positions = Vec::new();
        for d in &g.dependencies {
            let dep = match d.value.strip_prefix("machines/*/") {
                Some(gdef) => DepRef::EveryMachine(gdef.to_owned()),
                None => DepRef::Same(d.value.clone()),
            };
            if let Err(msg) = check_name(dep.generator()) {
                self.push(
                    Diagnostic::at(file, src, d.line, d.column, format!("dependency {:?} of generator {name:?} {msg}", d.value))
                        .hint("write a generator name, or machines/*/<generator> for every machine's public files"),
                );
                continue;
            }
            if dependencies
                .iter()
                .any(|x: &DepRef| x.generator() == dep.generator())
            {
                self.push(
                    Diagnostic::at(
                        file,
                        src,
                        d.line,
                        d.column,
                        format!("generator {name:?} depends on {:?} twice", dep.generator()),
                    )
                    .hint("both forms would write $in/<generator>/; keep one"),
                );
                continue;
            }
            if dep.generator() == name {
                self.push(Diagnostic::at(
                    file,
                    src,
                    d.line,
                    d.column,
                    format!("generator {name:?} depends on itself"),
                ));
                continue;
            }
            dependencies.push(dep);
            dependency_positions.push((d.line, d.column));
        }
        let timeout = match &g.timeout {
            None => DEFAULT_TIMEOUT,
            Some(t) => {
                // Capped (review 2, finding 5): a deadline that far away overflowed, and no
                // generator needs a day; zero would kill every run at once.
                let problem = match parse_duration(&t.value) {
                    Some(d) if d > MAX_TIMEOUT => Err(format!(
                        "timeout {:?} of generator {name:?} is too long: it may be at most 24h",
                        t.value
                    )),
                    Some(d) if d.is_zero() => Err(format!(
                        "timeout {:?} of generator {name:?} is zero: every run would be killed",
                        t.value
                    )),
                    Some(d) => Ok(d),
                    None => Err(format!("timeout {:?} is not a duration", t.value)),
                };
                problem.unwrap_or_else(|msg| {
                    self.push(
                        Diagnostic::at(file, src, t.line, t.column, msg)
                            .hint("write e.g. 90s, 5m or 1h (at most 24h)"),
                    );
                    DEFAULT_TIMEOUT
                })
            }
        };
        if g.network {
            self.network_inputs(name, &g, file, src);
        }
        let mut parameters = BTreeMap::new();
        for (pname, p) in &g.parameters {
            if let Err(msg) = check_name(&pname.value.0) {
                self.push(Diagnostic::at(
                    file,
                    src,
                    pname.line,
                    pname.column,
                    format!(
                        "parameter name {:?} of generator {name:?} {msg}",
                        pname.value.0
                    ),
                ));
                continue;
            }
            parameters.insert(
                pname.value.0.clone(),
                ParameterDef {
                    description: p.description.clone(),
                    default: p.default.clone(),
                },
            );
        }
        // What `validation` says is what is hashed (DESIGN §5); with parameters, the script
        // sees their defaults overlaid with it.
        let (vline, vcolumn) = g
            .validation
            .as_ref()
            .map(|v| (v.line, v.column))
            .unwrap_or((line, column));
        let explicit = g
            .validation
            .as_ref()
            .map(|v| v.value.clone())
            .unwrap_or(serde_json::Value::Null);
        let validation = if parameters.is_empty() {
            explicit.clone()
        } else {
            let mut effective: serde_json::Map<String, serde_json::Value> = parameters
                .iter()
                .filter_map(|(k, p)| p.default.clone().map(|d| (k.clone(), d)))
                .collect();
            match &explicit {
                serde_json::Value::Null => {}
                serde_json::Value::Object(map) => {
                    for (k, value) in map {
                        if parameters.contains_key(k) {
                            effective.insert(k.clone(), value.clone());
                        } else {
                            self.push(
                                Diagnostic::at(
                                    file,
                                    src,
                                    vline,
                                    vcolumn,
                                    format!("generator {name:?} has no parameter {k:?}"),
                                )
                                .hint(format!(
                                    "its parameters are: {}",
                                    parameters.keys().cloned().collect::<Vec<_>>().join(", ")
                                )),
                            );
                        }
                    }
                }
                _ => self.push(
                    Diagnostic::at(
                        file,
                        src,
                        vline,
                        vcolumn,
                        format!(
                            "validation of generator {name:?} must be a mapping of its parameters"
                        ),
                    )
                    .hint(format!(
                        "e.g. validation: {{ {}: … }}",
                        parameters.keys().next().expect("parameters is not empty")
                    )),
                ),
            }
            serde_json::Value::Object(effective)
        };
        if self.diags.len() != before {
            return None;
        }
        let share = g.share.unwrap_or(false);
        // What the outputs are made from: the script and what it is given and must write.
        // Install attributes (deploy, owner, group, mode, needed-for) are not in it: changing
        // them re-encrypts or rewrites manifests, and must not warn "definition changed".
        let mut definition = serde_json::json!({
            "script": script.value,
            "files": files.iter().map(|(k, f)| (k.clone(), serde_json::json!({ "secret": f.secret })))
                .collect::<serde_json::Map<_, _>>(),
            "prompts": prompts.keys().collect::<Vec<_>>(),
            "dependencies": g.dependencies.iter().map(|d| d.value.clone()).collect::<Vec<_>>(),
            "runtime-inputs": g.runtime_inputs.iter().map(|d| d.value.clone()).collect::<Vec<_>>(),
            "share": share,
            "network": g.network,
        });
        // The hash as vars 0.1 computed it (with the install attributes, without parameters):
        // instances generated then are not reported as changed.
        let legacy = serde_json::json!({
            "script": script.value,
            "files": files.iter().map(|(k, f)| (k.clone(), serde_json::json!({
                "secret": f.secret, "deploy": f.deploy,
                "owner": f.owner.as_deref().unwrap_or("root"),
                "group": f.group.as_deref().unwrap_or("root"),
                "mode": f.mode, "needed-for": f.needed_for,
            }))).collect::<serde_json::Map<_, _>>(),
            "prompts": prompts.keys().collect::<Vec<_>>(),
            "dependencies": g.dependencies.iter().map(|d| d.value.clone()).collect::<Vec<_>>(),
            "runtime-inputs": g.runtime_inputs.iter().map(|d| d.value.clone()).collect::<Vec<_>>(),
            "share": share,
            "network": g.network,
        });
        if !parameters.is_empty() {
            // Only when there are any, so definitions from before parameters keep their hash.
            definition["parameters"] = serde_json::json!(
                parameters
                    .iter()
                    .map(|(k, p)| (k.clone(), p.default.clone()))
                    .collect::<BTreeMap<_, _>>()
            );
        }
        Some(Generator {
            name: name.to_owned(),
            extends: g.extends.map(|e| e.value.0),
            description: g.description,
            parameters,
            files,
            prompts,
            dependencies,
            dependency_positions,
            runtime_inputs: g.runtime_inputs.into_iter().map(|r| r.value).collect(),
            script: script.value.clone(),
            share,
            network: g.network,
            timeout,
            origin,
            shadows_shipped,
            validation_hash: hash_json(&explicit),
            validation,
            definition_hash: hash_json(&definition),
            legacy_definition_hash: hash_json(&legacy),
        })
    }
}

impl Validator {
    /// Review 2, finding 3: a `network: true` generator could send what it is given anywhere,
    /// so it is given no secret. It may have no prompts (persisted or not), and depend only on
    /// `machines/*/GEN`, which hands over public files. A plain dependency is refused whatever
    /// it holds today: the rule is decided from this definition alone (a reviewer reads one
    /// definition; a dependency that gains a secret file later cannot silently open it).
    fn network_inputs(&mut self, name: &str, g: &spec::GeneratorSpec, file: &Path, src: &str) {
        if let Some((p, _)) = g.prompts.iter().next() {
            self.push(
                Diagnostic::at(
                    file,
                    src,
                    p.line,
                    p.column,
                    format!(
                        "generator {name:?} has network: true and a prompt {:?}: a network \
                         generator may receive no secret input",
                        p.value.0
                    ),
                )
                .hint(NETWORK_HINT),
            );
        }
        if let Some(d) = g
            .dependencies
            .iter()
            .find(|d| !d.value.starts_with("machines/*/"))
        {
            self.push(
                Diagnostic::at(
                    file,
                    src,
                    d.line,
                    d.column,
                    format!(
                        "generator {name:?} has network: true and depends on {:?}: a network \
                         generator may depend only on machines/*/GEN (public files)",
                        d.value
                    ),
                )
                .hint(NETWORK_HINT),
            );
        }
    }
}

const NETWORK_HINT: &str = "split it: fetch with a network generator that gets no inputs, \
     and combine its public output with secrets in a second generator without network that \
     depends on both";

/// serde-saphyr's message without its own location suffix (we print file:line:col ourselves).
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let msg = e.without_snippet().to_string();
    let msg = match msg.find(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg,
    };
    // serde-saphyr's advice about its own options is not for vars users.
    let msg = msg.replace(", set DuplicateKeyPolicy in Options if acceptable", "");
    let msg = msg.replace(
        "data did not match any variant of untagged enum RecipientSpec",
        "a recipient is a string (age1…, ssh-ed25519 …) or { generated: GEN/FILE }",
    );
    msg.trim().to_owned()
}

fn yaml_hint(message: &str, path: &Path) -> Option<String> {
    let schema = if path.file_name().is_some_and(|f| f == CONFIG_FILE) {
        "schema/vars.schema.json"
    } else {
        "schema/generator.schema.json"
    };
    if message.contains("unknown field") {
        Some(format!(
            "check the spelling; the allowed keys are listed in {schema} (vars schema)"
        ))
    } else if message.to_lowercase().contains("duplicate") {
        Some("each key may appear once in a mapping; remove or merge the repeated one".into())
    } else if message.to_lowercase().contains("budget") || message.to_lowercase().contains("alias")
    {
        Some("declarations must be small, plain YAML; expand anchors and aliases by hand".into())
    } else if message.contains("missing field") {
        Some(format!("add the field; see {schema}"))
    } else if message.starts_with("expected")
        || message.contains("while parsing")
        || message.contains("did not find")
    {
        Some("this is not valid YAML here: check indentation, quotes and closing brackets".into())
    } else {
        None
    }
}

/// A file mode as `vars.yaml`, manifests and `vars install` take it: `"0400"`, `"400"`,
/// `"0640"`; permission bits only (no setuid, setgid or sticky bit).
pub fn parse_mode(mode: &str) -> Option<u32> {
    let digits = match mode.len() {
        3 => mode,
        4 => mode.strip_prefix('0')?,
        _ => return None,
    };
    if !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(digits, 8).ok()
}

/// Whether a path component names the `.git` directory on some file system: any case,
/// ignoring the code points HFS+ ignores and the trailing dots and spaces NTFS drops, or
/// NTFS's short name `GIT~1` (git's own `is_hfs_dotgit` / `is_ntfs_dotgit` rules).
pub(super) fn names_git_dir(component: &str) -> bool {
    let ignorable = |c: char| {
        matches!(c,
            '\u{200c}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{206a}'..='\u{206f}' | '\u{feff}')
    };
    let folded: String = component.chars().filter(|c| !ignorable(*c)).collect();
    let trimmed = folded.trim_end_matches(['.', ' ']);
    trimmed.eq_ignore_ascii_case(".git") || trimmed.eq_ignore_ascii_case("git~1")
}
