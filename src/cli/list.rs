//! `vars list`: every instance with its files and status.

use std::collections::BTreeSet;

use vars::plan::Action;

use super::{CliError, Global, ui};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only what this machine needs
    #[arg(long = "machine", value_name = "M")]
    pub machines: Vec<String>,
    /// Only this user's vars
    #[arg(long = "user", value_name = "U")]
    pub users: Vec<String>,
    /// Print JSON on stdout
    #[arg(long)]
    pub json: bool,
}

pub fn run(global: &Global, args: Args) -> Result<(), CliError> {
    let config = global.load()?;
    let store = config.store();
    let selection = vars::generate::Selection {
        machines: args.machines,
        users: args.users,
        items: Vec::new(),
    };
    let targets = selection.resolve(&config)?.targets;
    let vault = vars::vault::vault_recipient(&store)?;
    let plan = vars::plan::plan(
        &config,
        &store,
        &targets,
        &BTreeSet::new(),
        vault.as_deref(),
    )?;
    let mut rows = Vec::new();
    for p in plan.instances.iter().filter(|p| targets.contains(&p.id)) {
        let generator = config.generator(&p.id);
        let status = match &p.action {
            Action::UpToDate => "current",
            Action::Generate { reasons } if reasons.contains(&vars::plan::Reason::Missing) => {
                "missing"
            }
            Action::Generate { .. } => "stale",
            Action::Rekey { .. } => "stale-recipients",
        };
        let origin = match &generator.origin {
            vars::model::Origin::Shipped => "shipped".to_owned(),
            vars::model::Origin::Inline => "vars.yaml".to_owned(),
            vars::model::Origin::Local(path) => path
                .strip_prefix(&config.root)
                .unwrap_or(path)
                .display()
                .to_string(),
        };
        rows.push(serde_json::json!({
            "instance": p.id.to_string(),
            "generator": generator.name,
            "description": generator.description,
            "status": status,
            "origin": origin,
            "shadows-shipped": generator.shadows_shipped && generator.extends.is_none(),
            "extends": generator.extends,
            "implicit": config.instances[&p.id].implicit,
            "files": generator.files.iter().map(|(n, f)| serde_json::json!({"name": n, "secret": f.secret, "deploy": f.deploy})).collect::<Vec<_>>(),
        }));
    }
    if args.json {
        let mut out = serde_json::to_vec_pretty(&serde_json::json!({ "instances": rows }))
            .expect("JSON serializes");
        out.push(b'\n');
        return ui::data(&out);
    }
    let mut text = String::new();
    for r in &rows {
        let files: Vec<String> = r["files"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| {
                let name = f["name"].as_str().unwrap_or_default();
                match (f["secret"].as_bool(), f["deploy"].as_bool()) {
                    (Some(true), Some(false)) => format!("{name} (secret, admins only)"),
                    (Some(true), _) => format!("{name} (secret)"),
                    _ => format!("{name} (public)"),
                }
            })
            .collect();
        let mut notes = Vec::new();
        if r["origin"] == "shipped" {
            notes.push("shipped".to_owned());
        }
        if let Some(base) = r["extends"].as_str() {
            notes.push(format!("extends shipped {base}"));
        }
        if r["shadows-shipped"].as_bool() == Some(true) {
            notes.push("local definition shadows the shipped one".to_owned());
        }
        if r["implicit"].as_bool() == Some(true) {
            notes.push("implicit dependency".to_owned());
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!(" [{}]", notes.join("; "))
        };
        text.push_str(&format!(
            "{:<16} {}{}\n    {}\n",
            r["status"].as_str().unwrap_or_default(),
            r["instance"].as_str().unwrap_or_default(),
            notes,
            files.join(", ")
        ));
    }
    ui::data(text.as_bytes())
}
