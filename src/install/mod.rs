//! `vars install`: activation-time decryption (DESIGN §7–§9, `NIX.md` §2,
//! `docs/install-manifest.md`). One way through, each step owned by one module:
//!
//! 1. [`manifest`] — read the install manifest (or, `store_manifest`, a store manifest with
//!    `--store`) and validate every name, mode, unit, link and placeholder;
//! 2. `owners` — resolve owners and groups through NSS (0:0 for dry runs and
//!    `--ignore-passwd`);
//! 3. `secrets` — load the identities, read every source (beneath the store without
//!    following links) and decrypt everything in memory, collecting every error, then render
//!    the templates;
//! 4. `mount` — mount ramfs (tmpfs on request) at the mount point unless a RAM file system
//!    is mounted there already (`--user-mode`: no mount, but the directory must be on one);
//! 5. `generation` — write generation N+1 (mode 0, `O_EXCL|O_NOFOLLOW`, then fchown and
//!    fchmod), work out what changed by comparing plaintext with the running generation,
//!    switch the target symlink atomically, make the links, and prune old generations;
//! 6. `restart` — restart or reload the units of added and changed files (`systemctl
//!    --no-block`, or NixOS's activation lists).
//!
//! Steps 1–3 finish before anything is written (DESIGN §9.8): a failure names every cause
//! and leaves the running generation untouched. A dry run (`--dry-run`,
//! `NIXOS_ACTION=dry-activate`) stops after comparing with the running generation: it mounts
//! nothing and writes nothing (only NixOS's `dry-activation-*-list`, which is how a dry
//! activation reports units). Plaintext is written only below the mount point.

mod generation;
pub mod manifest;
mod mount;
mod owners;
mod restart;
mod secrets;
mod store_manifest;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::fs_util::{Dir, IoContext as _, IoError};
use crate::secret::SecretBytes;
use crate::spec::NeededFor;
use crate::store::Store;
use crate::store::layout::PrincipalKind;

pub use mount::FsKind;
pub use restart::RestartVia;

/// Where NixOS's activation lists live (`activation-restart-list`, …).
pub const ACTIVATION_DIR: &str = "/run/nixos";

/// One thing wrong, named: `subject` is a file, template or option, `cause` what is wrong
/// with it. Never carries plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What the problem is about (`file ssh-host/key`, `identity /etc/ssh/…`).
    pub subject: String,
    /// What is wrong.
    pub cause: String,
}

impl Problem {
    /// A problem with `subject`.
    pub fn new(subject: impl Into<String>, cause: impl Into<String>) -> Self {
        Problem {
            subject: subject.into(),
            cause: cause.into(),
        }
    }
}

impl fmt::Display for Problem {
    /// Both parts may hold names from the repository: escaped for the terminal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let escape = crate::text::escape;
        write!(f, "{}: {}", escape(&self.subject), escape(&self.cause))
    }
}

/// Errors of `vars install`. Each leaves the running generation untouched.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The command line does not make sense (a relative target, `--keep` with nothing to keep).
    #[error("{0}")]
    Usage(String),
    /// The manifest could not be read.
    #[error(transparent)]
    Manifest(IoError),
    /// Problems found before anything was written: every one of them.
    #[error("nothing was installed ({} problem{}); the running generation is untouched", problems.len(), if problems.len() == 1 { "" } else { "s" })]
    Invalid {
        /// Every problem, in the order found.
        problems: Vec<Problem>,
    },
    /// Mounting the secrets file system failed.
    #[error("cannot mount {fs} at {}: {reason}", path.display())]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// What was to be mounted.
        fs: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// The mount point is not on a RAM file system (and vars would not write plaintext there).
    #[error("{} is not on a tmpfs or ramfs; vars writes secrets only to memory", path.display())]
    NotInMemory {
        /// The mount point.
        path: PathBuf,
    },
    /// Writing the new generation failed before the switch (it was removed again).
    #[error(transparent)]
    Io(#[from] IoError),
}

/// What `vars install` is asked to do (the command line, as plain values).
#[derive(Debug, Clone)]
pub struct Request {
    /// `--manifest`: an install manifest, or a store manifest with [`Request::store`].
    pub manifest: PathBuf,
    /// `--store`: the store a store manifest's paths are relative to.
    pub store: Option<PathBuf>,
    /// `--identity`: host keys and age identity files; missing ones are skipped.
    pub identities: Vec<PathBuf>,
    /// `--target`: the symlink to the current generation (`/run/vars`).
    pub target: PathBuf,
    /// `--mount-point`: where generations live; default `<target>.d`.
    pub mount_point: Option<PathBuf>,
    /// `--phase`: which files to install.
    pub phase: NeededFor,
    /// `--keep`: generations to keep (the new one included); 0 never prunes.
    pub keep: u64,
    /// `--dry-run` or `NIXOS_ACTION=dry-activate`.
    pub dry_run: bool,
    /// `--ignore-passwd`: every file is owned by 0:0.
    pub ignore_passwd: bool,
    /// `--user-mode`: no mount, no chown; the mount point must be on a RAM file system.
    pub user_mode: bool,
    /// `--tmpfs`: mount tmpfs (`noswap`) instead of ramfs.
    pub tmpfs: bool,
    /// `--restart-via`.
    pub restart_via: RestartVia,
    /// Where the activation lists are written ([`ACTIVATION_DIR`] unless a test says else).
    pub activation_dir: PathBuf,
}

impl Request {
    /// `--mount-point`, or `<target>.d`.
    pub fn mount_point(&self) -> PathBuf {
        self.mount_point.clone().unwrap_or_else(|| {
            let mut p = self.target.clone().into_os_string();
            p.push(".d");
            PathBuf::from(p)
        })
    }
}

/// What changed compared to the running generation, by plaintext (a rekey changes nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Paths (relative to the target) that are new.
    pub added: Vec<String>,
    /// Paths whose plaintext differs.
    pub modified: Vec<String>,
    /// Paths in the running generation that are gone.
    pub removed: Vec<String>,
}

/// What an install did (or, dry, would do).
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Whose manifest it was.
    pub principal: Option<(PrincipalKind, String)>,
    /// The new generation's number; `None` in a dry run.
    pub generation: Option<u64>,
    /// The new generation's directory.
    pub dir: Option<PathBuf>,
    /// The file system mounted by this run, if it mounted one.
    pub mounted: Option<FsKind>,
    /// Files installed (or to be), templates included.
    pub installed: usize,
    /// Compared with the running generation; `None` when there was none (first install,
    /// boot), so nothing is restarted.
    pub changes: Option<Changes>,
    /// Units restarted (`try-restart`), or listed for it.
    pub restart: Vec<String>,
    /// Units reloaded (`try-reload-or-restart`), or listed for it.
    pub reload: Vec<String>,
    /// Generations removed.
    pub pruned: Vec<u64>,
    /// Things to tell the person that did not stop the install (a skipped identity file).
    pub warnings: Vec<String>,
    /// Failures after the switch (a link, a restart, pruning): the new generation is live,
    /// but the install did not finish cleanly.
    pub late: Vec<Problem>,
}

/// One file of the new generation: what it is, its plaintext, its owner.
type NewItem<'p> = (&'p manifest::Item, SecretBytes, Option<owners::Ids>);

/// Run `vars install`: see the module docs for the steps.
pub fn install(req: &Request) -> Result<Outcome, InstallError> {
    let mount_point = req.mount_point();
    check_paths(&req.target, &mount_point)?;
    let store = req.store.as_ref().map(Store::new);
    let bytes = read_manifest(req, store.as_ref())?;
    let plan = manifest::parse(&bytes, store.is_some())
        .map_err(|problems| InstallError::Invalid { problems })?;
    let mut out = Outcome {
        principal: Some(plan.principal.clone()),
        ..Outcome::default()
    };
    let (new, running) = prepare(req, &plan, store.as_ref(), &mount_point, &mut out)?;
    out.installed = new.len();
    if req.dry_run {
        if let Some(n) = running.current {
            let old = Dir::open(&mount_point).and_then(|d| generation::read(&d, n));
            out.changes = Some(compare(&old_or_warn(old, n, &mut out.warnings), &new));
        }
        finish_units(req, &new, &mut out);
        return Ok(out);
    }
    apply(req, &mount_point, &new, out)
}

/// Steps 1–3: check everything and decrypt everything, collecting every problem, before
/// anything is written (DESIGN §9.8). Also looks at the running generation.
fn prepare<'p>(
    req: &Request,
    plan: &'p manifest::Plan,
    store: Option<&Store>,
    mount_point: &Path,
    out: &mut Outcome,
) -> Result<(Vec<NewItem<'p>>, generation::Running), InstallError> {
    let items: Vec<&manifest::Item> = plan.in_phase(req.phase).collect();
    let mut problems = Vec::new();
    for item in &items {
        if let Some(link) = &item.link {
            problems.extend(generation::check_link_place(link, &req.target, mount_point));
        }
    }
    if req.user_mode {
        match mount::ram_backed_dir(mount_point) {
            Some(true) => {}
            Some(false) => problems.push(Problem::new(
                format!("--mount-point {}", mount_point.display()),
                "is not on a tmpfs or ramfs (vars writes secrets only to memory): use $XDG_RUNTIME_DIR",
            )),
            None => out.warnings.push(format!(
                "cannot tell whether {} is in memory on this system",
                mount_point.display()
            )),
        }
    }
    let lookup = if req.user_mode {
        owners::Lookup::Keep
    } else if req.dry_run || req.ignore_passwd {
        owners::Lookup::Root
    } else {
        owners::Lookup::Nss
    };
    let ids = owners::resolve_all(&items, lookup, &mut problems);
    let keys = secrets::Keys::load(&req.identities, &mut out.warnings);
    let plaintext = secrets::open_all(plan, &items, store, &keys, &mut problems);
    let running = generation::Running::find(&req.target, mount_point, &mut problems);
    match plaintext {
        Some(plaintext) if problems.is_empty() => {
            let new = items
                .into_iter()
                .zip(plaintext)
                .zip(ids)
                .map(|((i, p), o)| (i, p, o))
                .collect();
            Ok((new, running))
        }
        _ => Err(InstallError::Invalid { problems }),
    }
}

/// Steps 4–9: mount, write generation N, compare, switch, link, restart, prune.
fn apply(
    req: &Request,
    mount_point: &Path,
    new: &[NewItem<'_>],
    mut out: Outcome,
) -> Result<Outcome, InstallError> {
    let _lock = generation::lock(&req.target)?;
    out.mounted = if req.user_mode {
        generation::create_private_dir(mount_point)?;
        None
    } else {
        mount::ensure(mount_point, req.tmpfs, &mut out.warnings)?
    };
    if !req.user_mode && mount::ram_backed_dir(mount_point) == Some(false) {
        return Err(InstallError::NotInMemory {
            path: mount_point.to_path_buf(),
        });
    }
    let mount = Dir::open(mount_point)?;
    let dirs = if req.user_mode {
        generation::DirOwner::Own
    } else {
        let dirs = generation::DirOwner::Root {
            gid: owners::keys_gid(),
        };
        generation::own_mount_point(&mount, dirs)?;
        dirs
    };
    // Read again under the lock: another install may have switched meanwhile.
    let running = generation::Running::find(&req.target, mount_point, &mut Vec::new());
    let n = generation::next(&mount, running.current)?;
    let files: Vec<generation::NewFile<'_>> = new
        .iter()
        .map(|(i, p, o)| generation::NewFile {
            rel: &i.rel,
            plaintext: p,
            ids: *o,
            mode: i.mode,
        })
        .collect();
    let dir = generation::write(&mount, n, &files, dirs)?;
    if let Some(current) = running.current {
        let old = generation::read(&mount, current);
        out.changes = Some(compare(&old_or_warn(old, current, &mut out.warnings), new));
    }
    if let Err(e) = generation::switch(&req.target, mount_point, n, running.replace) {
        let _ = mount.remove_all(n.to_string());
        return Err(e.into());
    }
    out.generation = Some(n);
    out.dir = Some(dir);
    for (item, _, o) in new {
        if let Some(link) = &item.link {
            let to = req.target.join(&item.rel);
            if let Err(e) = generation::link(link, &to, *o) {
                out.late.push(Problem::new(
                    format!("link {}", link.display()),
                    e.to_string(),
                ));
            }
        }
    }
    finish_units(req, new, &mut out);
    match generation::prune(&mount, n, req.keep) {
        Ok(pruned) => out.pruned = pruned,
        Err(e) => out
            .late
            .push(Problem::new("pruning old generations", e.to_string())),
    }
    Ok(out)
}

/// Work out the units of added and changed files and restart them (or list them).
fn finish_units(req: &Request, new: &[NewItem<'_>], out: &mut Outcome) {
    let Some(changes) = &out.changes else {
        return;
    };
    let changed: BTreeSet<&str> = changes
        .added
        .iter()
        .chain(&changes.modified)
        .map(String::as_str)
        .collect();
    let mut restart = BTreeSet::new();
    let mut reload = BTreeSet::new();
    for (item, _, _) in new {
        if changed.contains(item.rel.as_str()) {
            restart.extend(item.restart_units.iter().cloned());
            reload.extend(item.reload_units.iter().cloned());
        }
    }
    out.restart = restart.into_iter().collect();
    out.reload = reload.into_iter().collect();
    let units = restart::Units {
        restart: &out.restart,
        reload: &out.reload,
    };
    match restart::apply(
        req.restart_via,
        &units,
        req.dry_run,
        req.user_mode,
        &req.activation_dir,
    ) {
        Ok(warnings) => out.warnings.extend(warnings),
        Err(problems) => out.late.extend(problems),
    }
}

/// The running generation's files; when they cannot be read, none (so every file counts as
/// added and its units are restarted), with a warning.
fn old_or_warn(
    old: Result<BTreeMap<String, SecretBytes>, IoError>,
    n: u64,
    warnings: &mut Vec<String>,
) -> BTreeMap<String, SecretBytes> {
    old.unwrap_or_else(|e| {
        warnings.push(format!(
            "cannot read the running generation {n} ({e}): every file counts as added"
        ));
        BTreeMap::new()
    })
}

/// Compare the running generation's plaintext with the new one's.
fn compare(old: &BTreeMap<String, SecretBytes>, new: &[NewItem<'_>]) -> Changes {
    let mut c = Changes::default();
    let mut seen = BTreeSet::new();
    for (item, plain, _) in new {
        seen.insert(item.rel.as_str());
        match old.get(&item.rel) {
            None => c.added.push(item.rel.clone()),
            Some(before) if before.expose() != plain.expose() => c.modified.push(item.rel.clone()),
            Some(_) => {}
        }
    }
    c.removed = old
        .keys()
        .filter(|k| !seen.contains(k.as_str()))
        .cloned()
        .collect();
    c
}

/// The target and mount point must be absolute, plain, and apart from each other.
fn check_paths(target: &Path, mount_point: &Path) -> Result<(), InstallError> {
    for (what, p) in [("--target", target), ("--mount-point", mount_point)] {
        let plain = p.components().all(|c| {
            matches!(
                c,
                std::path::Component::RootDir | std::path::Component::Normal(_)
            )
        });
        if !p.is_absolute() || !plain || p.parent().is_none() {
            return Err(InstallError::Usage(format!(
                "{what} {} must be a plain absolute path (not /)",
                p.display()
            )));
        }
    }
    if target.starts_with(mount_point) || mount_point.starts_with(target) {
        return Err(InstallError::Usage(format!(
            "--target {} and --mount-point {} must not contain each other",
            target.display(),
            mount_point.display()
        )));
    }
    Ok(())
}

/// Read the manifest. One inside `--store` is read beneath it without following links (the
/// store is untrusted); one elsewhere is a path the person named.
fn read_manifest(req: &Request, store: Option<&Store>) -> Result<Vec<u8>, InstallError> {
    const CAP: u64 = 64 * 1024 * 1024;
    let cwd = std::env::current_dir().at("read the current directory", ".");
    let absolute = |p: &Path| -> Result<PathBuf, InstallError> {
        if p.is_absolute() {
            Ok(p.to_path_buf())
        } else {
            match &cwd {
                Ok(c) => Ok(c.join(p)),
                Err(e) => Err(InstallError::Manifest(IoError {
                    action: e.action,
                    path: e.path.clone(),
                    source: std::io::Error::new(e.source.kind(), e.source.to_string()),
                })),
            }
        }
    };
    let manifest = absolute(&req.manifest)?;
    if let (Some(store), Some(dir)) = (store, &req.store) {
        let dir = absolute(dir)?;
        if let Ok(rel) = manifest.strip_prefix(&dir) {
            let rel = rel.to_string_lossy().into_owned();
            return match store.read_rel(&rel, CAP) {
                Ok(Some(b)) => Ok(b),
                Ok(None) => Err(InstallError::Manifest(IoError {
                    action: "read",
                    path: manifest,
                    source: std::io::ErrorKind::NotFound.into(),
                })),
                Err(crate::store::StoreError::Io(e)) => Err(InstallError::Manifest(e)),
                Err(e) => Err(InstallError::Manifest(IoError {
                    action: "read",
                    path: manifest,
                    source: std::io::Error::other(e.to_string()),
                })),
            };
        }
    }
    // A path the person or the module named: links in it are theirs (an /etc symlink).
    secrets::read_file(&manifest, CAP, true).map_err(InstallError::Manifest)
}

#[cfg(test)]
mod tests;
