//! Resolving validated declarations into a [`Config`]: tags expanded, users and admins
//! checked, recipients parsed, and generator instances created in their scopes, with
//! dependencies resolved (and implicit instances added) to a fixpoint (DESIGN §2).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::crypto::Recipient;
use crate::dag::Dag;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::recipients::ParsedRecipients;
use crate::spec::{self, Backend, Loc, Name, SandboxChoice};

use super::validate::Validator;
use super::{
    Config, ConfigError, DepRef, Dependency, Generator, Instance, InstanceId, Machine, Origin,
    Scope, User, shipped,
};

pub(super) struct Resolver<'a> {
    v: &'a mut Validator,
    file: &'a Path,
    src: &'a str,
    root: PathBuf,
    vars: spec::VarsFile,
    generators: BTreeMap<String, Generator>,
    /// Defined, but with errors already reported: referring to them adds no noise.
    pub(super) broken: BTreeSet<String>,
    /// The text each local or inline definition was read from (for positioned errors; never
    /// read again from disk, where it could have become a link).
    pub(super) sources: BTreeMap<String, String>,
    instances: BTreeMap<InstanceId, Instance>,
    /// Recipients as parsed while validating them, kept for the model.
    parsed: ParsedRecipients,
}

impl<'a> Resolver<'a> {
    pub(super) fn new(
        v: &'a mut Validator,
        file: &'a Path,
        src: &'a str,
        vars: spec::VarsFile,
        generators: BTreeMap<String, Generator>,
        root: PathBuf,
    ) -> Self {
        Resolver {
            v,
            file,
            src,
            root,
            vars,
            generators,
            broken: BTreeSet::new(),
            sources: BTreeMap::new(),
            instances: BTreeMap::new(),
            parsed: ParsedRecipients::default(),
        }
    }

    fn diag(&mut self, line: u64, column: u64, msg: String, hint: impl Into<String>) {
        self.v
            .push(Diagnostic::at(self.file, self.src, line, column, msg).hint(hint));
    }

    /// Make sure a generator is known (loading a shipped one on demand).
    fn known(&mut self, name: &str) -> bool {
        if self.generators.contains_key(name) {
            return true;
        }
        let Some(text) = shipped::find(name) else {
            return false;
        };
        let path = shipped::display_path(name);
        let before = self.v.diags.len();
        if let Some(g) = self.v.parse::<spec::GeneratorSpec>(&path, text)
            && let Some(gdef) = self
                .v
                .generator(name, g, Origin::Shipped, false, &path, text, 0, 0)
        {
            self.generators.insert(name.to_owned(), gdef);
            return true;
        }
        self.v.diags.len() == before
    }

    #[allow(clippy::too_many_arguments)]
    fn recipients(
        &mut self,
        who: &str,
        list: &[Loc<String>],
        may_be_empty: bool,
        line: u64,
        column: u64,
        hint: &str,
    ) -> Vec<String> {
        if list.is_empty() && !may_be_empty {
            self.diag(
                line,
                column,
                format!("{who} has no recipients"),
                hint.to_owned(),
            );
        }
        let mut out = Vec::new();
        for r in list {
            match Recipient::parse(&r.value) {
                Ok(p) => {
                    out.push(p.text().to_owned());
                    self.parsed.insert(p);
                }
                Err(e) => self.diag(r.line, r.column, format!("recipient of {who} is malformed: {e}"), "use the output of age-keygen -y, or an ssh public key line (ssh-keyscan HOST / cat ~/.ssh/id_ed25519.pub)"),
            }
        }
        out
    }

    pub(super) fn finish(mut self) -> Result<Config, ConfigError> {
        let vars = std::mem::replace(
            &mut self.vars,
            spec::VarsFile {
                version: Loc::unplaced(0),
                settings: Default::default(),
                admins: vec![],
                users: Default::default(),
                machines: Default::default(),
                tags: Default::default(),
                generators: Default::default(),
                scan: Default::default(),
            },
        );
        if vars.version.value != spec::FORMAT_VERSION {
            self.diag(
                vars.version.line,
                vars.version.column,
                format!("unsupported version {}", vars.version.value),
                format!("this vars reads version: {}", spec::FORMAT_VERSION),
            );
        }
        let store_text = vars
            .settings
            .store
            .as_ref()
            .map(|s| s.value.clone())
            .unwrap_or_else(|| "vars".into());
        // Plain names only (a leading `./` is fine): the store is opened beneath the
        // repository, component by component, never through a link (DESIGN §3).
        let store_rel: PathBuf = Path::new(&store_text)
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect();
        let plain = Path::new(&store_text).components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        });
        // Not inside `.git`: vars would write its files among git's own (hooks among them).
        let in_git = store_rel
            .components()
            .any(|c| super::validate::names_git_dir(&c.as_os_str().to_string_lossy()));
        if let Some(s) = &vars.settings.store
            && (store_rel.as_os_str().is_empty() || !plain || in_git)
        {
            self.diag(
                s.line,
                s.column,
                format!(
                    "store {:?} must be a relative path inside the repository, outside .git",
                    s.value
                ),
                "e.g. store: vars",
            );
        }
        // Tags.
        let mut tags: BTreeMap<String, Vec<Loc<Name>>> = BTreeMap::new();
        for (name, t) in &vars.tags {
            if self.v.name(self.file, self.src, "tag", name) {
                tags.insert(name.value.0.clone(), t.generators.clone());
            }
        }
        // Users.
        let mut users = BTreeMap::new();
        for (name, u) in &vars.users {
            if !self.v.name(self.file, self.src, "user", name) {
                continue;
            }
            let recipients = self.recipients(
                &format!("user {:?}", name.value.0),
                &u.recipients,
                false,
                name.line,
                name.column,
                "add the user's age recipient (vars keygen prints one) or ssh public key under recipients:",
            );
            let mut gens = Vec::new();
            for g in &u.generators {
                if self.assignable(g) {
                    gens.push(g.value.0.clone());
                }
            }
            users.insert(
                name.value.0.clone(),
                User {
                    recipients,
                    generators: gens,
                },
            );
        }
        let mut admins = Vec::new();
        for a in &vars.admins {
            if !users.contains_key(&a.value.0) {
                self.diag(
                    a.line,
                    a.column,
                    format!("admin {:?} is not a declared user", a.value.0),
                    "declare it under users: with its recipients",
                );
            } else {
                admins.push(a.value.0.clone());
            }
        }
        if vars.admins.is_empty() {
            self.diag(
                1,
                1,
                "no admin is declared".into(),
                "add admins: [<user>] so someone can read every secret through the vault key",
            );
        }
        // Machines.
        let mut machines = BTreeMap::new();
        for (name, m) in &vars.machines {
            if !self.v.name(self.file, self.src, "machine", name) {
                continue;
            }
            let keys: Vec<Loc<String>> = m
                .recipients
                .iter()
                .filter_map(|r| match &r.value {
                    spec::RecipientSpec::Key(k) => Some(Loc {
                        value: k.clone(),
                        line: r.line,
                        column: r.column,
                    }),
                    spec::RecipientSpec::Generated(_) => None,
                })
                .collect();
            let generated_specs: Vec<Loc<String>> = m
                .recipients
                .iter()
                .filter_map(|r| match &r.value {
                    spec::RecipientSpec::Generated(g) => Some(Loc {
                        value: g.generated.clone(),
                        line: r.line,
                        column: r.column,
                    }),
                    spec::RecipientSpec::Key(_) => None,
                })
                .collect();
            let recipients = self.recipients(
                &format!("machine {:?}", name.value.0),
                &keys,
                !generated_specs.is_empty(),
                name.line,
                name.column,
                &format!(
                    "add its host key: ssh-keyscan -t ed25519 {} | cut -d' ' -f2-",
                    name.value.0
                ),
            );
            let mut gens: Vec<String> = Vec::new();
            let mut add = |g: String| {
                if !gens.contains(&g) {
                    gens.push(g);
                }
            };
            for g in &m.generators {
                if self.assignable(g) {
                    add(g.value.0.clone());
                }
            }
            for t in &m.tags {
                match tags.get(&t.value.0) {
                    None => self.diag(
                        t.line,
                        t.column,
                        format!("machine {:?} has unknown tag {:?}", name.value.0, t.value.0),
                        "declare it under tags:",
                    ),
                    Some(tg) => {
                        for g in tg.clone() {
                            if self.assignable(&g) {
                                add(g.value.0.clone());
                            }
                        }
                    }
                }
            }
            let mut generated = Vec::new();
            for g in &generated_specs {
                match self.generated_recipient(&name.value.0, &gens, &g.value) {
                    Ok(r) => generated.push(r),
                    Err(msg) => self.diag(
                        g.line,
                        g.column,
                        format!("machine {:?}: {{ generated: {} }} {msg}", name.value.0, crate::text::escape(&g.value)),
                        "name a public file of a generator assigned to this machine, e.g. { generated: ssh-host-ed25519/ssh_host_ed25519_key.pub }",
                    ),
                }
            }
            for u in &m.users {
                if !users.contains_key(&u.value.0) {
                    self.diag(
                        u.line,
                        u.column,
                        format!(
                            "machine {:?} lists unknown user {:?}",
                            name.value.0, u.value.0
                        ),
                        "declare the user under users: with recipients",
                    );
                }
            }
            machines.insert(
                name.value.0.clone(),
                Machine {
                    recipients,
                    generated,
                    tags: m.tags.iter().map(|t| t.value.0.clone()).collect(),
                    users: m.users.iter().map(|u| u.value.0.clone()).collect(),
                    generators: gens,
                },
            );
        }
        let scan = super::allow::validate(self.v, self.file, self.src, &vars.scan);
        if !self.v.diags.is_empty() {
            return Err(ConfigError::Invalid(Diagnostics(std::mem::take(
                &mut self.v.diags,
            ))));
        }
        // Instances: assigned ones first, then dependencies (possibly implicit) to a fixpoint.
        for (m, machine) in &machines {
            for g in &machine.generators {
                self.assign(g, Scope::Machine(m.clone()))
                    .machines
                    .insert(m.clone());
            }
        }
        for (u, user) in &users {
            for g in &user.generators {
                self.assign(g, Scope::User(u.clone()))
                    .users
                    .insert(u.clone());
            }
        }
        let mut queue: Vec<InstanceId> = self.instances.keys().cloned().collect();
        let mut resolved = BTreeSet::new();
        while let Some(id) = queue.pop() {
            if !resolved.insert(id.clone()) {
                continue;
            }
            let gdef = self.generators[&id.generator].clone();
            let mut deps = Vec::new();
            for d in &gdef.dependencies {
                if !self.known(d.generator()) {
                    let (line, column) = self.dep_position(&gdef, d);
                    self.v.push(
                        Diagnostic::at(self.def_file(&gdef), &self.def_src(&gdef), line, column, format!("generator {:?} depends on unknown generator {:?}", gdef.name, d.generator()))
                            .hint("define it under generators:, in generators/<name>.yaml, or fix the name"),
                    );
                    continue;
                }
                let dep_gen = &self.generators[d.generator()];
                match d {
                    DepRef::EveryMachine(g) => {
                        let instances: Vec<InstanceId> = machines
                            .iter()
                            .filter(|(_, m)| m.generators.contains(g))
                            .map(|(name, _)| InstanceId {
                                scope: Scope::Machine(name.clone()),
                                generator: g.clone(),
                            })
                            .collect();
                        if dep_gen.share {
                            let (line, column) = self.dep_position(&gdef, d);
                            self.v.push(
                                Diagnostic::at(
                                    self.def_file(&gdef),
                                    &self.def_src(&gdef),
                                    line,
                                    column,
                                    format!("machines/*/{g} names a shared generator"),
                                )
                                .hint(format!("depend on {g} directly")),
                            );
                            continue;
                        }
                        deps.push(Dependency::EveryMachine {
                            generator: g.clone(),
                            instances,
                        });
                    }
                    DepRef::Same(g) => {
                        let dep_id = if dep_gen.share {
                            InstanceId {
                                scope: Scope::Shared,
                                generator: g.clone(),
                            }
                        } else if id.scope == Scope::Shared {
                            let (line, column) = self.dep_position(&gdef, d);
                            self.v.push(
                                Diagnostic::at(self.def_file(&gdef), &self.def_src(&gdef), line, column, format!("shared generator {:?} depends on {:?}, which is not shared", gdef.name, g))
                                    .hint(format!("make {g:?} share: true, or make {:?} a per-machine generator", gdef.name)),
                            );
                            continue;
                        } else {
                            InstanceId {
                                scope: id.scope.clone(),
                                generator: g.clone(),
                            }
                        };
                        let (ms, us) = {
                            let me = &self.instances[&id];
                            let ms: BTreeSet<String> = match &id.scope {
                                Scope::Machine(m) => [m.clone()].into(),
                                _ => me.machines.clone(),
                            };
                            let us: BTreeSet<String> = match &id.scope {
                                Scope::User(u) => [u.clone()].into(),
                                _ => me.users.clone(),
                            };
                            (ms, us)
                        };
                        let dep = self
                            .instances
                            .entry(dep_id.clone())
                            .or_insert_with(|| new_instance(dep_id.clone(), true));
                        if dep_id.scope == Scope::Shared {
                            // Whoever uses a dependent also uses the shared instance (its public
                            // files are part of what they are configured with).
                            let grew = ms.iter().any(|m| !dep.machines.contains(m))
                                || us.iter().any(|u| !dep.users.contains(u));
                            dep.machines.extend(ms);
                            dep.users.extend(us);
                            if grew {
                                resolved.remove(&dep_id);
                            }
                        }
                        queue.push(dep_id.clone());
                        deps.push(Dependency::One(dep_id));
                    }
                }
            }
            self.instances
                .get_mut(&id)
                .expect("queued instances exist")
                .dependencies = deps;
        }
        if !self.v.diags.is_empty() {
            return Err(ConfigError::Invalid(Diagnostics(std::mem::take(
                &mut self.v.diags,
            ))));
        }
        let settings = vars.settings;
        let dag = Dag::from_instances(&self.instances)?;
        Ok(Config {
            store_dir: self.root.join(&store_rel),
            store_rel,
            root: self.root,
            backend: settings.backend.map(|b| b.value).unwrap_or(Backend::Age),
            armor: settings.armor.unwrap_or(false),
            sandbox: settings.sandbox.unwrap_or(SandboxChoice::Auto),
            admins,
            users,
            machines,
            generators: self.generators,
            instances: self.instances,
            dag,
            recipients: self.parsed,
            scan,
        })
    }

    /// The instance an assignment of `g` in `own` scope creates: the shared one for a shared
    /// generator, else the one in `own`.
    fn assign(&mut self, g: &str, own: Scope) -> &mut Instance {
        let scope = if self.generators[g].share {
            Scope::Shared
        } else {
            own
        };
        let id = InstanceId {
            scope,
            generator: g.to_owned(),
        };
        let inst = self
            .instances
            .entry(id.clone())
            .or_insert_with(|| new_instance(id, false));
        inst.implicit = false;
        inst
    }

    /// Check a `{ generated: GEN/FILE }` recipient of `machine`, whose generators are `gens`.
    fn generated_recipient(
        &self,
        machine: &str,
        gens: &[String],
        text: &str,
    ) -> Result<super::GeneratedRecipient, String> {
        let (generator, file) = text
            .split_once('/')
            .ok_or_else(|| "is not GEN/FILE".to_owned())?;
        if !gens.iter().any(|g| g == generator) {
            return Err(format!(
                "names {generator:?}, which is not assigned to {machine:?}"
            ));
        }
        let def = &self.generators[generator];
        if def.share {
            return Err(format!(
                "names {generator:?}, which is shared: a host key is the host's own"
            ));
        }
        match def.files.get(file) {
            Some(f) if !f.secret => Ok(super::GeneratedRecipient {
                generator: generator.to_owned(),
                file: file.to_owned(),
                resolved: None,
            }),
            Some(_) => Err(format!(
                "names {file:?}, a secret file: the recipient must be public"
            )),
            None => Err(format!(
                "names {file:?}, which {generator:?} does not declare"
            )),
        }
    }

    /// A generator named in an assignment: valid name and known (shipped ones load here).
    fn assignable(&mut self, g: &Loc<Name>) -> bool {
        if !self.v.name(self.file, self.src, "generator", g) {
            return false;
        }
        if self.known(&g.value.0) {
            return true;
        }
        if self.broken.contains(&g.value.0) {
            return false;
        }
        self.diag(
            g.line,
            g.column,
            format!("unknown generator {:?}", g.value.0),
            "define it under generators:, in generators/<name>.yaml beside vars.yaml, or use a \
             shipped one (vars generators lists them)",
        );
        false
    }

    fn def_file(&self, g: &Generator) -> PathBuf {
        match &g.origin {
            Origin::Inline => self.file.to_path_buf(),
            Origin::Local(p) => p.clone(),
            Origin::Shipped => shipped::display_path(&g.name),
        }
    }

    fn def_src(&self, g: &Generator) -> String {
        match &g.origin {
            Origin::Inline => self.src.to_owned(),
            Origin::Local(_) => self.sources.get(&g.name).cloned().unwrap_or_default(),
            Origin::Shipped => shipped::find(&g.name).unwrap_or_default().to_owned(),
        }
    }

    /// Where a dependency is written in its definition file.
    fn dep_position(&self, g: &Generator, d: &DepRef) -> (u64, u64) {
        g.dependencies
            .iter()
            .position(|x| x == d)
            .and_then(|i| g.dependency_positions.get(i).copied())
            .unwrap_or((0, 0))
    }
}

fn new_instance(id: InstanceId, implicit: bool) -> Instance {
    Instance {
        id,
        dependencies: vec![],
        machines: BTreeSet::new(),
        users: BTreeSet::new(),
        implicit,
    }
}
