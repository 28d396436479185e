//! `vars scan`: CI's and pre-commit's question "does any tracked or staged file hold plaintext
//! key material?" Findings go to stderr for people, or as JSON, SARIF or GitHub annotations
//! to stdout (or `--output F`). Exit 0 clean, 3 findings, 1 error, 2 usage.

use std::path::PathBuf;

use super::{CliError, Global, ui};

/// How findings are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `path:line:col: error[rule]: message` and a hint, on stderr
    Human,
    /// The documented JSON report (format 1), on stdout
    Json,
    /// SARIF 2.1.0 for GitHub code scanning, on stdout
    Sarif,
    /// GitHub workflow annotations (::error …), on stdout
    Github,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only what differs from HEAD in the index (what a commit would add)
    #[arg(long)]
    pub staged: bool,
    /// Also scan untracked files that are not ignored
    #[arg(long)]
    pub untracked: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Same as --format json
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Write the JSON, SARIF or GitHub output to FILE instead of stdout
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Make warnings fail the scan too
    #[arg(long)]
    pub strict: bool,
    /// Also accept the findings allowed by FILE's scan: section (for a repository without a
    /// vars.yaml)
    #[arg(long, value_name = "FILE")]
    pub allow_file: Option<PathBuf>,
    /// Skip files larger than this many bytes (default 16 MiB)
    #[arg(long, value_name = "BYTES", default_value_t = vars::scan::rules::DEFAULT_MAX_SIZE)]
    pub max_size: u64,
    /// Only these paths (outside a git repository: the files and directories to read)
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

pub fn run(global: &Global, args: Args) -> Result<(), CliError> {
    let format = if args.json { Format::Json } else { args.format };
    if args.output.is_some() && format == Format::Human {
        return Err(CliError::usage(
            "--output needs a data format: --format json, sarif or github",
        ));
    }
    let cwd = global.cwd()?;
    // The store rules and scan.allow need vars.yaml; without one, the content rules still
    // run (a repository that only wants the guard needs no fleet).
    let config_file = match &global.config {
        Some(f) => Some(cwd.join(f)),
        None => vars::model::find_config(&cwd).ok(),
    };
    let config = config_file.map(|f| vars::model::load(&f)).transpose()?;
    let mut req = vars::scan::Request::new(&cwd);
    req.staged = args.staged;
    req.untracked = args.untracked;
    req.paths = args.paths;
    req.max_size = args.max_size;
    if let Some(c) = &config {
        req.allow.extend(c.scan.allow.iter().cloned());
    }
    if let Some(f) = &args.allow_file {
        req.allow
            .extend(vars::model::load_scan_file(&cwd.join(f))?.allow);
    }
    let report = vars::scan::scan(&req, config.as_ref()).map_err(scan_error)?;
    let data = match format {
        Format::Human => None,
        Format::Json => Some(vars::scan::format::json(&report)),
        Format::Sarif => Some(vars::scan::format::sarif(&report)),
        Format::Github => Some(vars::scan::format::github(&report)),
    };
    let human = vars::scan::format::human(&report, args.strict);
    match data {
        None => eprint_block(&human),
        Some(bytes) => {
            match &args.output {
                Some(f) => {
                    let path = cwd.join(f);
                    std::fs::write(&path, &bytes).map_err(|e| {
                        CliError::new(format!("cannot write {}: {e}", path.display()))
                    })?;
                }
                None => ui::data(&bytes)?,
            }
            // Only the summary: the findings are in the data.
            if let Some(last) = human.lines().last() {
                ui::status(last);
            }
        }
    }
    if report.fails(args.strict) {
        return Err(CliError::findings(format!(
            "{} finding(s): plaintext secret material is in the repository",
            report.findings.len()
        ))
        .hint("each finding above says what to do; nothing was changed"));
    }
    Ok(())
}

fn eprint_block(text: &str) {
    for line in text.lines() {
        ui::status(line);
    }
}

fn scan_error(e: vars::scan::ScanError) -> CliError {
    use vars::scan::ScanError as S;
    let err = CliError::new(e.to_string());
    match e {
        S::NotARepository { .. } => err.hint(
            "run vars scan inside a git repository, or name the files and directories to scan",
        ),
        S::OutsideRepository { .. } => {
            CliError::usage(err.message).hint("name paths inside the repository")
        }
        S::Bare => err.hint("run vars scan in a clone with a worktree"),
        S::Git { .. } | S::Io { .. } => err,
    }
}
