//! Terminal I/O for the subcommands: status lines to stderr, data to stdout (quiet on broken
//! pipe), plans printed for people, prompt values read from the terminal, standard input and
//! the environment (the library never reads them itself).

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use vars::plan::{Action, Reader};
use vars::prompt::{PromptError, Question};
use vars::secret::SecretBytes;
use vars::spec::PromptKind;

use super::CliError;

/// A status line on stderr. Whatever it carries (names, recipients, messages that quote the
/// repository's files) has its control characters escaped here, at the one sink, so no
/// message can forget it (DESIGN §3: text from the repository is untrusted).
pub fn status(line: impl AsRef<str>) {
    let _ = writeln!(
        std::io::stderr(),
        "{}",
        vars::text::escape_lines(line.as_ref())
    );
}

/// Data on stdout. A closed pipe (`vars get … | head -c1`) is not an error.
pub fn data(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::new(format!("cannot write to stdout: {e}"))),
    }
}

/// A progress bar on stderr when it is a terminal (and `NO_COLOR` unset keeps colour off
/// anyway: the template has none); `None` otherwise, so logs and CI stay clean.
pub fn progress(len: u64, what: &str) -> Option<indicatif::ProgressBar> {
    if len < 2 || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len);
    let style = indicatif::ProgressStyle::with_template(&format!(
        "{what} [{{bar:30}}] {{pos}}/{{len}} {{msg}}"
    ))
    .expect("the template is valid")
    .progress_chars("=> ");
    bar.set_style(style);
    Some(bar)
}

/// `--jobs`, defaulting to the number of cores.
pub fn jobs(jobs: Option<usize>) -> usize {
    jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
}

/// Take the store's write lock and repair what an interrupted run left (not for a dry run,
/// which changes nothing and needs no lock).
pub fn lock_store(
    store: &vars::store::Store,
    dry_run: bool,
) -> Result<Option<vars::store::StoreLock>, CliError> {
    if dry_run {
        return Ok(None);
    }
    let lock = store.lock()?;
    for repaired in store.recover()? {
        status(format!(
            "repaired {} (an earlier run was interrupted)",
            repaired.display()
        ));
    }
    Ok(Some(lock))
}

/// The sandbox for generator runs. `settings.sandbox: none` comes from the repository, which
/// is untrusted (DESIGN §6): it turns the sandbox off only together with `--no-sandbox` (or
/// `VARS_NO_SANDBOX=1`) from the person running vars.
pub fn sandbox(
    config: &vars::model::Config,
    no_sandbox: bool,
    will_run: bool,
) -> Result<vars::sandbox::SandboxKind, CliError> {
    use vars::sandbox::{SandboxKind, detect};
    use vars::spec::SandboxChoice;
    let setting = if no_sandbox {
        SandboxChoice::None
    } else {
        if config.sandbox == vars::spec::SandboxChoice::None && will_run {
            return Err(CliError::new(
                "vars.yaml says settings.sandbox: none, but that alone does not turn the sandbox off",
            )
            .hint("the repository could have been changed by anyone who can commit to it; if you mean it, also pass --no-sandbox (or set VARS_NO_SANDBOX=1)"));
        }
        SandboxChoice::Auto
    };
    let kind = detect(setting).map_err(|e| CliError::new(e.to_string()))?;
    if matches!(kind, SandboxKind::Unsandboxed) && will_run {
        status("warning: running generator scripts WITHOUT a sandbox (--no-sandbox)");
    }
    Ok(kind)
}

/// Prompt values from `--prompt`, `--prompt-file` (`-` is standard input) and the
/// `VARS_PROMPT_…` environment.
pub fn prompt_values(
    values: &[String],
    files: &[String],
) -> Result<vars::prompt::PromptValues, CliError> {
    // Taken out of the environment at start-up, so that no child of vars inherits them.
    let environment = vars::hardening::prompt_environment();
    let mut stdin = || vars::prompt::read_secret(std::io::stdin().lock());
    vars::prompt::PromptValues::parse(values, files, environment, &mut stdin)
        .map_err(|e| CliError::usage(e.to_string()))
}

/// Asks prompts on the terminal: hidden input for hidden kinds.
pub struct TerminalAsker(());

impl TerminalAsker {
    /// An asker when stdin and stderr are a terminal; `None` otherwise.
    pub fn new() -> Option<Self> {
        (std::io::stdin().is_terminal() && std::io::stderr().is_terminal())
            .then_some(TerminalAsker(()))
    }
}

impl vars::prompt::Asker for TerminalAsker {
    fn ask(&self, q: &Question<'_>) -> Result<Option<SecretBytes>, PromptError> {
        let label = match &q.description {
            Some(d) => format!("{} ({d})", q.key),
            None => q.key.to_owned(),
        };
        let io_err = |e| vars::fs_util::IoError {
            action: "read",
            path: "<terminal>".into(),
            source: e,
        };
        let value = match q.kind {
            PromptKind::Hidden => SecretBytes::new(
                rpassword::prompt_password(format!("{label}: "))
                    .map_err(io_err)?
                    .into_bytes(),
            ),
            PromptKind::Line => {
                let _ = write!(std::io::stderr(), "{label}: ");
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .map_err(io_err)?;
                let trimmed = line.trim_end_matches(['\n', '\r']).as_bytes().to_vec();
                zeroize::Zeroize::zeroize(&mut line);
                SecretBytes::new(trimmed)
            }
            PromptKind::Multiline | PromptKind::MultilineHidden => {
                let hidden = if q.kind == PromptKind::MultilineHidden {
                    ", input is not hidden on all terminals"
                } else {
                    ""
                };
                let _ = writeln!(std::io::stderr(), "{label} (end with Ctrl-D{hidden}):");
                vars::prompt::read_secret(std::io::stdin().lock()).map_err(io_err)?
            }
        };
        Ok(Some(value))
    }
}

fn readers(list: &[Reader]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `+ added; - removed` of a stale secret, and the backend it is converted from.
pub fn changes(
    added: &[Reader],
    removed: &[Reader],
    convert_from: Option<vars::spec::Backend>,
) -> String {
    let mut parts = Vec::new();
    if let Some(from) = convert_from {
        parts.push(format!("converted from the {from} backend"));
    }
    if !added.is_empty() {
        parts.push(format!("+ {}", readers(added)));
    }
    if !removed.is_empty() {
        parts.push(format!("- {}", readers(removed)));
    }
    if parts.is_empty() {
        parts.push("deploy changed".into());
    }
    parts.join("; ")
}

/// Print a generate plan for people.
pub fn print_generate_plan(config: &vars::model::Config, plan: &vars::generate::GeneratePlan) {
    if plan.create_vault {
        status("  create vault key (keys/vault.pub, keys/vault.age)");
    }
    for p in &plan.plan.instances {
        match &p.action {
            Action::UpToDate => {}
            Action::Generate { reasons } => {
                let why: Vec<String> = reasons.iter().map(ToString::to_string).collect();
                // What regenerating a shared instance reaches (issue 10): everyone who uses it.
                let regenerating = !reasons.contains(&vars::plan::Reason::Missing);
                let reach = if p.id.scope == vars::model::Scope::Shared && regenerating {
                    let inst = &config.instances[&p.id];
                    let mut who = Vec::new();
                    if !inst.machines.is_empty() {
                        let list: Vec<&str> = inst.machines.iter().map(String::as_str).collect();
                        who.push(format!("machines {}", list.join(", ")));
                    }
                    if !inst.users.is_empty() {
                        let list: Vec<&str> = inst.users.iter().map(String::as_str).collect();
                        who.push(format!("users {}", list.join(", ")));
                    }
                    if who.is_empty() {
                        String::new()
                    } else {
                        format!("; reaches {}", who.join(" and "))
                    }
                } else {
                    String::new()
                };
                status(format!("  generate {} ({}{reach})", p.id, why.join(", ")));
            }
            Action::Rekey { secrets } => {
                for s in secrets {
                    status(format!(
                        "  re-encrypt {}/{} ({})",
                        p.id,
                        s.file,
                        changes(&s.added, &s.removed, s.convert_from)
                    ));
                }
            }
        }
        if p.definition_changed {
            status(format!(
                "  warning: {}: definition changed since generation; not regenerated (use --regenerate)",
                p.id
            ));
        }
    }
    for id in &plan.moved {
        status(format!(
            "  remove {id} (its generator's share setting changed; replaced by the new instance)"
        ));
    }
    for (id, name, source) in &plan.prompts {
        if *source == vars::prompt::Source::Stored {
            status(format!("  reuse the stored value of {id}.{name}"));
        }
    }
    // Manifests follow from what is generated; listed only when they are all there is to do.
    if plan.plan.is_empty() && plan.moved.is_empty() {
        for (kind, name) in &plan.manifests {
            status(format!("  rewrite {}/{name}/manifest.json", kind.dir()));
        }
    }
}
