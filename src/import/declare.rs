//! The declarations an import writes: a `generators/<gen>.yaml` per imported generator, and
//! the imported generators added to the `generators:` lists of machines and users in
//! vars.yaml, as small text edits that keep the file's comments and layout (a reviewable
//! diff). The edits understand block mappings with `generators: [a, b]`, a block list, no
//! list yet, and a machine written as one flow mapping (`m: { recipients: […] }`); anything
//! else is refused with the lines to add by hand. What the edit gives is checked by loading
//! the result ([`super::apply`] verifies the instances and readers), never trusted.

use super::{Edit, ImportError, PlannedGenerator, Source};
use crate::store::layout::PrincipalKind;

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// A line with YAML content (not blank, not only a comment).
fn content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// The mapping key a line starts with and the byte index just after its colon.
fn key_of(line: &str) -> Option<(String, usize)> {
    let start = indent(line);
    let t = &line[start..];
    let (key, after) = match t.chars().next()? {
        q @ ('"' | '\'') => {
            let end = t[1..].find(q)? + 1;
            (t[1..end].to_owned(), end + 1)
        }
        _ => {
            let colon = t.find(':')?;
            (t[..colon].trim_end().to_owned(), colon)
        }
    };
    let rest = &t[after..];
    let rest = rest.strip_prefix(':')?;
    if !(rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t')) {
        return None;
    }
    Some((key, start + after + 1))
}

/// Split a value from a trailing comment (`# …` outside quotes, after whitespace).
fn split_comment(rest: &str) -> (&str, &str) {
    let mut quote: Option<char> = None;
    let mut prev_space = true;
    for (i, c) in rest.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') if prev_space => return (&rest[..i], &rest[i..]),
            _ => {}
        }
        prev_space = c == ' ' || c == '\t';
    }
    (rest, "")
}

/// A generator name as a YAML list item: quoted when YAML could read it as something else.
fn item(name: &str) -> String {
    let plain = name.starts_with(|c: char| c.is_ascii_alphabetic())
        && !matches!(
            name.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        );
    if plain {
        name.to_owned()
    } else {
        format!("\"{name}\"")
    }
}

/// `[a, b]` with `add` appended, or `None` if `list` is not a one-line flow list.
fn extend_flow_list(list: &str, add: &[String]) -> Option<String> {
    let inner = list.trim().strip_prefix('[')?.strip_suffix(']')?;
    if inner.contains(['[', ']', '{', '}']) {
        return None;
    }
    let mut items: Vec<String> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    items.extend(add.iter().map(|g| item(g)));
    Some(format!("[{}]", items.join(", ")))
}

/// The end (exclusive) of the block that starts at line `at` with indentation `level`.
fn block_end(lines: &[String], at: usize, level: usize) -> usize {
    (at + 1..lines.len())
        .find(|&i| content(&lines[i]) && indent(&lines[i]) <= level)
        .unwrap_or(lines.len())
}

fn add_one(
    lines: &mut Vec<String>,
    section: &str,
    name: &str,
    gens: &[String],
) -> Result<(), String> {
    let s = lines
        .iter()
        .position(|l| indent(l) == 0 && key_of(l).is_some_and(|(k, _)| k == section))
        .ok_or_else(|| format!("vars.yaml has no top-level {section}: section"))?;
    let (value, _) = split_comment(&lines[s][key_of(&lines[s]).expect("a key").1..]);
    if !value.trim().is_empty() {
        return Err(format!("{section}: is written in flow style"));
    }
    let end = block_end(lines, s, 0);
    let child = (s + 1..end)
        .find(|&i| content(&lines[i]))
        .map(|i| indent(&lines[i]))
        .ok_or_else(|| format!("{section}: is empty"))?;
    let k = (s + 1..end)
        .find(|&i| {
            content(&lines[i])
                && indent(&lines[i]) == child
                && key_of(&lines[i]).is_some_and(|(key, _)| key == name)
        })
        .ok_or_else(|| format!("{section}.{name} is not where vars looks for it"))?;
    let after_key = key_of(&lines[k]).expect("a key").1;
    let (value, comment) = split_comment(&lines[k][after_key..]);
    let value = value.trim().to_owned();
    let comment = comment.to_owned();
    if value.is_empty() {
        let pend = block_end(lines, k, child);
        let ci = (k + 1..pend)
            .find(|&i| content(&lines[i]))
            .map(|i| indent(&lines[i]))
            .unwrap_or(child + 2);
        let g = (k + 1..pend).find(|&i| {
            content(&lines[i])
                && indent(&lines[i]) == ci
                && key_of(&lines[i]).is_some_and(|(key, _)| key == "generators")
        });
        let Some(g) = g else {
            lines.insert(
                k + 1,
                format!(
                    "{}generators: [{}]",
                    " ".repeat(ci),
                    gens.iter().map(|g| item(g)).collect::<Vec<_>>().join(", ")
                ),
            );
            return Ok(());
        };
        let at = key_of(&lines[g]).expect("a key").1;
        let (gv, gc) = split_comment(&lines[g][at..]);
        let (gv, gc) = (gv.trim().to_owned(), gc.to_owned());
        if gv.starts_with('[') {
            let list = extend_flow_list(&gv, gens)
                .ok_or_else(|| format!("{section}.{name}.generators is not a one-line list"))?;
            let comment = if gc.is_empty() {
                String::new()
            } else {
                format!("  {gc}")
            };
            lines[g] = format!("{}generators: {list}{comment}", " ".repeat(ci));
            return Ok(());
        }
        if !gv.is_empty() {
            return Err(format!("{section}.{name}.generators is not a list"));
        }
        // A block list: `- item` lines below, at the list's indentation.
        let mut last = None;
        let mut item_indent = None;
        for (i, line) in lines.iter().enumerate().take(pend).skip(g + 1) {
            if !content(line) {
                continue;
            }
            let ind = indent(line);
            let t = line.trim_start();
            let is_item = t.starts_with("- ") || t == "-";
            match item_indent {
                None if is_item && ind >= ci => {
                    item_indent = Some(ind);
                    last = Some(i);
                }
                Some(ii) if is_item && ind == ii => last = Some(i),
                Some(ii) if ind > ii => last = Some(i),
                _ => break,
            }
        }
        let (Some(last), Some(ii)) = (last, item_indent) else {
            return Err(format!("{section}.{name}.generators is empty"));
        };
        for (n, gen_name) in gens.iter().enumerate() {
            lines.insert(
                last + 1 + n,
                format!("{}- {}", " ".repeat(ii), item(gen_name)),
            );
        }
        return Ok(());
    }
    // One flow mapping on the key's line: `name: { recipients: [...], generators: [...] }`.
    let inner = value
        .strip_prefix('{')
        .and_then(|v| v.strip_suffix('}'))
        .ok_or_else(|| format!("{section}.{name} is not a mapping vars can edit"))?;
    let new_inner = match inner.find("generators:") {
        Some(pos) => {
            let after = &inner[pos + "generators:".len()..];
            let open = after
                .find('[')
                .ok_or_else(|| format!("{section}.{name}.generators is not a list"))?;
            let close = after
                .find(']')
                .ok_or_else(|| format!("{section}.{name}.generators is not a list"))?;
            if !after[..open].trim().is_empty() || close < open {
                return Err(format!(
                    "{section}.{name}.generators is not a one-line list"
                ));
            }
            let list = extend_flow_list(&after[open..=close], gens)
                .ok_or_else(|| format!("{section}.{name}.generators is not a one-line list"))?;
            format!("{}generators: {list}{}", &inner[..pos], &after[close + 1..])
        }
        None if inner.trim().is_empty() => format!(
            " generators: [{}] ",
            gens.iter().map(|g| item(g)).collect::<Vec<_>>().join(", ")
        ),
        None => format!(
            " generators: [{}],{}",
            gens.iter().map(|g| item(g)).collect::<Vec<_>>().join(", "),
            if inner.starts_with(' ') {
                inner.to_owned()
            } else {
                format!(" {inner}")
            }
        ),
    };
    let comment = if comment.is_empty() {
        String::new()
    } else {
        format!("  {comment}")
    };
    let prefix = lines[k][..after_key].to_owned();
    lines[k] = format!("{prefix} {{{new_inner}}}{comment}");
    Ok(())
}

/// vars.yaml with `edits` applied; an error says what to add by hand.
pub(super) fn add_generators(text: &str, edits: &[Edit]) -> Result<String, ImportError> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut by_principal: std::collections::BTreeMap<(PrincipalKind, &str), Vec<String>> =
        std::collections::BTreeMap::new();
    for e in edits {
        by_principal
            .entry((e.kind, e.principal.as_str()))
            .or_default()
            .push(e.generator.clone());
    }
    for ((kind, name), gens) in &by_principal {
        let section = match kind {
            PrincipalKind::Machine => "machines",
            PrincipalKind::User => "users",
        };
        add_one(&mut lines, section, name, gens).map_err(|why| {
            let by_hand: Vec<String> = by_principal
                .iter()
                .map(|((k, n), g)| format!("{}.{n}.generators: add {}", k.dir(), g.join(", ")))
                .collect();
            ImportError::Declarations(format!(
                "{why}; add by hand, then import again: {}",
                by_hand.join("; ")
            ))
        })?;
    }
    let mut out = lines.join("\n");
    if text.ends_with('\n') || text.is_empty() {
        out.push('\n');
    }
    Ok(out)
}

/// Printable text for a YAML comment: control characters become `?`.
fn comment_text(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The text of `generators/<gen>.yaml` for an imported generator: its files, `share`, and a
/// script that refuses to run (the values come from the import; DESIGN §5 never regenerates
/// what is current, and `vars set` replaces a value).
pub(super) fn generator_yaml(source: Source, g: &PlannedGenerator) -> String {
    let origin = comment_text(&g.origin);
    let mut out = format!(
        "# yaml-language-server: $schema=../schema/generator.schema.json\n\
         #\n\
         # Imported by `vars import {src}` from {origin}. vars cannot generate these values: its\n\
         # script refuses to run. Replace a value with `vars set INSTANCE/FILE`.\n",
        src = source.as_str()
    );
    let description = format!("imported from {}: {}", source.as_str(), g.origin);
    out.push_str(&format!(
        "description: {}\n",
        serde_json::to_string(&description).expect("a string serializes")
    ));
    if g.share {
        out.push_str("share: true\n");
    }
    out.push_str("files:\n");
    for f in &g.files {
        let mut opts = Vec::new();
        if !f.secret {
            opts.push("secret: false");
        }
        if !f.deploy {
            opts.push("deploy: false");
        }
        let opts = if opts.is_empty() {
            "{}".to_owned()
        } else {
            format!("{{ {} }}", opts.join(", "))
        };
        out.push_str(&format!(
            "  \"{}\": {opts}  # {}\n",
            f.name,
            comment_text(&f.origin)
        ));
    }
    out.push_str(&format!(
        "script: |\n  echo \"{name}: its values were imported from {src}; vars cannot generate them. Replace one with: vars set INSTANCE/FILE\" >&2\n  exit 1\n",
        name = g.name,
        src = source.as_str()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(kind: PrincipalKind, principal: &str, generator: &str) -> Edit {
        Edit {
            kind,
            principal: principal.into(),
            generator: generator.into(),
        }
    }

    #[test]
    fn every_layout_of_a_machine_gets_its_generators() {
        let text = "\
version: 1
admins: [a]
users:
  a:                       # the admin
    recipients: [\"age1x\"]
machines:
  flow: { recipients: [\"age1y\"], tags: [t] }   # one line
  flowgen: {recipients: [\"age1y\"], generators: [x]}
  list:
    recipients: [\"age1y\"]
    generators: [old]      # keep me
  block:
    recipients:
      - \"age1y\"
    generators:
      - old
      - other
  # a comment between
  bare:
    recipients: [\"age1y\"]
tags: {}
";
        let edits = [
            edit(PrincipalKind::Machine, "flow", "api-token"),
            edit(PrincipalKind::Machine, "flowgen", "g"),
            edit(PrincipalKind::Machine, "list", "g"),
            edit(PrincipalKind::Machine, "block", "g"),
            edit(PrincipalKind::Machine, "bare", "g"),
            edit(PrincipalKind::Machine, "bare", "true"),
            edit(PrincipalKind::User, "a", "g"),
        ];
        let out = add_generators(text, &edits).unwrap();
        let want = "\
version: 1
admins: [a]
users:
  a:                       # the admin
    generators: [g]
    recipients: [\"age1x\"]
machines:
  flow: { generators: [api-token], recipients: [\"age1y\"], tags: [t] }  # one line
  flowgen: {recipients: [\"age1y\"], generators: [x, g]}
  list:
    recipients: [\"age1y\"]
    generators: [old, g]  # keep me
  block:
    recipients:
      - \"age1y\"
    generators:
      - old
      - other
      - g
  # a comment between
  bare:
    generators: [g, \"true\"]
    recipients: [\"age1y\"]
tags: {}
";
        assert_eq!(out, want);
        let parsed: serde_json::Value = serde_saphyr::from_str(&out).unwrap();
        assert_eq!(parsed["machines"]["bare"]["generators"][1], "true");
        assert_eq!(parsed["machines"]["flow"]["tags"][0], "t");
    }

    #[test]
    fn what_it_cannot_edit_is_refused_with_the_lines_to_add() {
        let text = "version: 1\nmachines: {m: {recipients: [\"age1y\"]}}\n";
        let err = add_generators(text, &[edit(PrincipalKind::Machine, "m", "g")]).unwrap_err();
        assert!(
            err.to_string().contains("machines.m.generators: add g"),
            "{err}"
        );
        let text = "version: 1\nmachines:\n  other: {}\n";
        assert!(add_generators(text, &[edit(PrincipalKind::Machine, "m", "g")]).is_err());
    }
}
