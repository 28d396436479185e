//! Finding and reading the declarations: `vars.yaml` (found by walking up, or named), the
//! `generators/*.yaml` beside it, never through a link of the repository (DESIGN §3).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::resolve::Resolver;
use super::validate::Validator;
use super::{CONFIG_FILE, Config, ConfigError, Origin, check_name, shipped};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::fs_util::{self, Dir, Kind};
use crate::{spec, text};

/// Find `vars.yaml` in `start` or its parents. A `vars.yaml` that is a symbolic link is not
/// taken: the repository is untrusted (DESIGN §3), and a link could make an error message
/// print lines of any file. Name it with `--config` to use it anyway.
pub fn find_config(start: &Path) -> Result<PathBuf, ConfigError> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        let candidate = d.join(CONFIG_FILE);
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.is_file() => return Ok(candidate),
            Ok(m) if m.file_type().is_symlink() => {
                return Err(ConfigError::Io(fs_util::IoError {
                    action: "read",
                    path: candidate,
                    source: std::io::Error::other(
                        "it is a symbolic link, which vars does not follow in a repository (name it with --config FILE to use it)",
                    ),
                }));
            }
            _ => {}
        }
        dir = d.parent();
    }
    Err(ConfigError::NotFound {
        start: start.to_path_buf(),
    })
}

/// Find `vars.yaml` from `start` upwards ([`find_config`]) and load it without following links.
pub fn discover(start: &Path) -> Result<Config, ConfigError> {
    let file = find_config(start)?;
    load_from(&file, false)
}

/// Read and validate `config_file` (a file the person named: a link to it is followed), the
/// `generators/*.yaml` beside it (never through a link) and the shipped generators.
pub fn load(config_file: &Path) -> Result<Config, ConfigError> {
    load_from(config_file, true)
}

/// Largest declaration file read.
const MAX_DECLARATIONS: u64 = 8 * 1024 * 1024;

fn load_from(config_file: &Path, named: bool) -> Result<Config, ConfigError> {
    let root = config_file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let root_dir = Dir::open(if root.as_os_str().is_empty() {
        Path::new(".")
    } else {
        &root
    })?;
    let text = if named {
        fs_util::read_to_string(config_file)?
    } else {
        let name = config_file.file_name().unwrap_or_default();
        let bytes = root_dir
            .read_capped(Path::new(name), MAX_DECLARATIONS)?
            .ok_or_else(|| ConfigError::NotFound {
                start: root.clone(),
            })?;
        String::from_utf8(bytes).map_err(|_| {
            ConfigError::Io(fs_util::IoError {
                action: "read",
                path: config_file.to_path_buf(),
                source: std::io::Error::other("it is not UTF-8 text"),
            })
        })?
    };
    let mut v = Validator::default();
    let vars: Option<spec::VarsFile> = v.parse(config_file, &text);

    let mut defs: BTreeMap<String, (spec::GeneratorSpec, Origin, PathBuf, String, u64, u64)> =
        BTreeMap::new();
    let gen_dir = root.join("generators");
    let link_refused = |path: &Path, kind: Kind| {
        Diagnostic::at(
            path,
            "",
            0,
            0,
            format!(
                "is a {}, not a regular file: vars does not follow links in a repository",
                kind.describe()
            ),
        )
        .hint("replace it with the file itself, or remove it")
    };
    match root_dir.kind("generators")? {
        None => {}
        Some(Kind::Dir) => {
            let dir = root_dir
                .open_dir("generators")?
                .expect("it was there a moment ago");
            for entry in dir.entries()? {
                let Some(name) = entry.name_str().map(str::to_owned) else {
                    continue;
                };
                let path = gen_dir.join(&name);
                let Some(stem) = name
                    .strip_suffix(".yaml")
                    .or_else(|| name.strip_suffix(".yml"))
                    .map(str::to_owned)
                else {
                    continue;
                };
                if entry.kind != Kind::File {
                    v.push(link_refused(&path, entry.kind));
                    continue;
                }
                let bytes = dir
                    .read_capped(Path::new(&name), MAX_DECLARATIONS)?
                    .unwrap_or_default();
                let Ok(text) = String::from_utf8(bytes) else {
                    v.push(Diagnostic::at(&path, "", 0, 0, "is not UTF-8 text"));
                    continue;
                };
                if let Err(msg) = check_name(&stem) {
                    v.push(
                        Diagnostic::at(
                            &path,
                            "",
                            0,
                            0,
                            format!("generator file name {:?} {msg}", text::escape(&stem)),
                        )
                        .hint("rename the file to <generator-name>.yaml"),
                    );
                    continue;
                }
                if let Some(g) = v.parse::<spec::GeneratorSpec>(&path, &text) {
                    defs.insert(stem, (g, Origin::Local(path.clone()), path, text, 0, 0));
                }
            }
        }
        Some(kind) => v.push(link_refused(&gen_dir, kind)),
    }
    let Some(mut vars) = vars else {
        return Err(ConfigError::Invalid(Diagnostics(v.diags)));
    };
    for (name, g) in std::mem::take(&mut vars.generators) {
        if let Some((_, _, path, ..)) = defs.get(&name.value.0) {
            v.push(
                Diagnostic::at(
                    config_file,
                    &text,
                    name.line,
                    name.column,
                    format!("generator {:?} is defined twice", name.value.0),
                )
                .hint(format!("remove it here or delete {}", path.display())),
            );
            continue;
        }
        defs.insert(
            name.value.0.clone(),
            (
                g,
                Origin::Inline,
                config_file.to_path_buf(),
                text.clone(),
                name.line,
                name.column,
            ),
        );
    }
    let mut generators = BTreeMap::new();
    let mut sources = BTreeMap::new();
    let mut broken = BTreeSet::new();
    for (name, (g, origin, path, src, line, col)) in defs {
        let shadows = shipped::find(&name).is_some();
        let g = if g.extends.is_some() {
            match shipped::extend(&mut v, &name, g, &path, &src) {
                Some(g) => g,
                None => {
                    broken.insert(name);
                    continue;
                }
            }
        } else {
            g
        };
        match v.generator(&name, g, origin, shadows, &path, &src, line, col) {
            Some(gdef) => {
                generators.insert(name.clone(), gdef);
            }
            None => {
                broken.insert(name.clone());
            }
        }
        sources.insert(name, src);
    }
    // Shipped generators are parsed lazily: only the ones referenced and not defined locally.
    let mut resolver = Resolver::new(&mut v, config_file, &text, vars, generators, root.clone());
    resolver.broken = broken;
    resolver.sources = sources;
    resolver.finish()
}
