//! `vars graph`: the instance DAG as Graphviz dot or Mermaid.

use super::{CliError, Global, ui};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Dot,
    Mermaid,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format
    #[arg(long, value_enum, default_value = "dot")]
    pub format: Format,
}

pub fn run(global: &Global, args: Args) -> Result<(), CliError> {
    let config = global.load()?;
    let dag = &config.dag;
    let mut out = String::new();
    match args.format {
        Format::Dot => {
            out.push_str("digraph vars {\n  rankdir=LR;\n");
            for (node, deps) in &dag.deps {
                out.push_str(&format!("  \"{node}\";\n"));
                for d in deps {
                    out.push_str(&format!("  \"{node}\" -> \"{d}\";\n"));
                }
            }
            out.push_str("}\n");
        }
        Format::Mermaid => {
            out.push_str("graph LR\n");
            let ids: Vec<String> = dag.deps.keys().map(ToString::to_string).collect();
            let idx = |s: &str| {
                ids.iter()
                    .position(|i| i == s)
                    .expect("every node is listed")
            };
            for (i, node) in ids.iter().enumerate() {
                out.push_str(&format!("  n{i}[\"{node}\"]\n"));
            }
            for (node, deps) in &dag.deps {
                for d in deps {
                    out.push_str(&format!(
                        "  n{} --> n{}\n",
                        idx(&node.to_string()),
                        idx(&d.to_string())
                    ));
                }
            }
        }
    }
    ui::data(out.as_bytes())
}
