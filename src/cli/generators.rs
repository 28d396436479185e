//! `vars generators [NAME…] [--json | --markdown]`: the shipped generator library with
//! descriptions, files, prompts and parameters (data, on stdout). `--markdown` is
//! `docs/generators.md`, which a test keeps equal to it.

use vars::model::{Generator, shipped};
use vars::text::escape;

use super::{CliError, ui};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only these generators
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// Print JSON on stdout
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// Print docs/generators.md
    #[arg(long)]
    pub markdown: bool,
}

pub fn run(args: Args) -> Result<(), CliError> {
    let all = shipped::all().map_err(|d| CliError::new(format!("{d}")))?;
    for n in &args.names {
        if !all.iter().any(|g| &g.name == n) {
            return Err(
                CliError::usage(format!("{:?} is not a shipped generator", escape(n)))
                    .hint("vars generators without a name lists them all"),
            );
        }
    }
    let selected: Vec<&Generator> = all
        .iter()
        .filter(|g| args.names.is_empty() || args.names.contains(&g.name))
        .collect();
    if args.markdown {
        let owned: Vec<Generator> = selected.into_iter().cloned().collect();
        return ui::data(shipped::markdown(&owned).as_bytes());
    }
    if args.json {
        let list: Vec<serde_json::Value> = selected.iter().map(|g| json(g)).collect();
        let mut out = serde_json::to_vec_pretty(&serde_json::json!({ "generators": list }))
            .expect("JSON serializes");
        out.push(b'\n');
        return ui::data(&out);
    }
    let mut text = String::new();
    for g in selected {
        text.push_str(&format!(
            "{}{}\n    {}\n",
            g.name,
            if g.share { " (shared)" } else { "" },
            escape(g.description.as_deref().unwrap_or(""))
        ));
        let files: Vec<String> = g
            .files
            .iter()
            .map(|(n, f)| {
                let kind = match (f.secret, f.deploy) {
                    (false, _) => "public",
                    (true, true) => "secret",
                    (true, false) => "secret, admins only",
                };
                format!(
                    "{n} ({kind}, {}:{} {:04o})",
                    f.owner.as_deref().unwrap_or("root"),
                    f.group.as_deref().unwrap_or("root"),
                    f.mode
                )
            })
            .collect();
        text.push_str(&format!("    files: {}\n", files.join(", ")));
        if !g.prompts.is_empty() {
            let prompts: Vec<String> = g
                .prompts
                .iter()
                .map(|(n, p)| format!("{n}{}", if p.persist { " (stored)" } else { "" }))
                .collect();
            text.push_str(&format!("    prompts: {}\n", prompts.join(", ")));
        }
        for (n, p) in &g.parameters {
            let default = p
                .default
                .as_ref()
                .map(|d| d.to_string())
                .unwrap_or_else(|| "(none)".into());
            text.push_str(&format!(
                "    parameter {n} = {}: {}\n",
                escape(&default),
                escape(&p.description)
            ));
        }
    }
    ui::data(text.as_bytes())
}

fn json(g: &Generator) -> serde_json::Value {
    serde_json::json!({
        "name": g.name,
        "description": g.description,
        "share": g.share,
        "runtime-inputs": g.runtime_inputs,
        "dependencies": g.dependencies.iter().map(|d| match d {
            vars::model::DepRef::Same(n) => n.clone(),
            vars::model::DepRef::EveryMachine(n) => format!("machines/*/{n}"),
        }).collect::<Vec<_>>(),
        "files": g.files.iter().map(|(n, f)| serde_json::json!({
            "name": n,
            "secret": f.secret,
            "deploy": f.deploy,
            "owner": f.owner,
            "group": f.group,
            "mode": format!("{:04o}", f.mode),
            "needed-for": f.needed_for,
        })).collect::<Vec<_>>(),
        "prompts": g.prompts.iter().map(|(n, p)| serde_json::json!({
            "name": n,
            "description": p.description,
            "type": p.kind.as_str(),
            "persist": p.persist,
        })).collect::<Vec<_>>(),
        "parameters": g.parameters.iter().map(|(n, p)| serde_json::json!({
            "name": n,
            "description": p.description,
            "default": p.default,
        })).collect::<Vec<_>>(),
    })
}
