//! The renderings of a scan [`Report`]: for people (`path:line:col: error[rule]: message`),
//! `--json` (format 1, documented in `docs/scan.md`), SARIF 2.1.0 for GitHub code scanning,
//! and GitHub workflow annotations. None of them contains matched text: a finding has none to
//! give (gitleaks' SARIF puts the secret in `snippet.text`; vars has no snippet).

use std::fmt::Write as _;

use serde_json::json;

use super::{Finding, Level, Report, Rule};
use crate::text;

/// The version of the `--json` format.
pub const JSON_FORMAT: u32 = 1;

/// `--json`: `{"format":1,"findings":[…],"summary":{…}}`, pretty, with a final newline.
pub fn json(report: &Report) -> Vec<u8> {
    let v = json!({
        "format": JSON_FORMAT,
        "findings": report.findings,
        "summary": report.summary,
    });
    let mut out = serde_json::to_vec_pretty(&v).expect("reports serialize");
    out.push(b'\n');
    out
}

fn level_word(l: Level) -> &'static str {
    match l {
        Level::Error => "error",
        Level::Warning => "warning",
    }
}

/// For people, on stderr: one block per finding, then a summary line. Repository text (paths)
/// is escaped for the terminal.
pub fn human(report: &Report, strict: bool) -> String {
    let mut out = String::new();
    for f in &report.findings {
        let path = text::escape(&f.path);
        if f.line > 0 {
            let _ = write!(out, "{path}:{}:{}: ", f.line, f.column);
        } else {
            let _ = write!(out, "{path}: ");
        }
        let _ = writeln!(
            out,
            "{}[{}]: {}",
            level_word(f.level),
            f.rule.id(),
            f.message
        );
        let _ = writeln!(out, "  hint: {}", f.hint);
        if !f.rule.is_store_rule() {
            let _ = writeln!(out, "  fingerprint: {}", f.fingerprint);
        }
    }
    let s = &report.summary;
    let errors = report
        .findings
        .iter()
        .filter(|f| f.level == Level::Error)
        .count();
    let warnings = report.findings.len() - errors;
    let mut skipped = Vec::new();
    for (n, what) in [
        (s.skipped.binary, "binary"),
        (s.skipped.too_large, "too large"),
        (s.skipped.symlinks, "symlinks"),
        (s.skipped.submodules, "submodules"),
    ] {
        if n > 0 {
            skipped.push(format!("{n} {what}"));
        }
    }
    let _ = write!(out, "scanned {} file(s), {}", s.files, human_bytes(s.bytes));
    if !skipped.is_empty() {
        let _ = write!(out, " (skipped: {})", skipped.join(", "));
    }
    let _ = write!(
        out,
        "; store rules {}",
        if s.store_checked {
            "applied"
        } else {
            "not applied"
        }
    );
    let _ = write!(out, "; {errors} error(s), {warnings} warning(s)");
    if s.allowed > 0 {
        let _ = write!(out, ", {} allowed", s.allowed);
    }
    if warnings > 0 && !strict && errors == 0 {
        out.push_str(" (warnings fail only with --strict)");
    }
    out.push('\n');
    out
}

fn human_bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

/// GitHub workflow commands: `::error file=P,line=L,col=C,title=vars scan (RULE)::MSG`.
pub fn github(report: &Report) -> Vec<u8> {
    let mut out = String::new();
    for f in &report.findings {
        // Escaped for the terminal first: a CI log is one, and the runner does not escape.
        let mut props = format!("file={}", gh_property(&text::escape(&f.path)));
        if f.line > 0 {
            let _ = write!(
                props,
                ",line={},col={},endLine={},endColumn={}",
                f.line, f.column, f.end_line, f.end_column
            );
        }
        let _ = write!(
            props,
            ",title={}",
            gh_property(&format!("vars scan ({})", f.rule.id()))
        );
        let _ = writeln!(
            out,
            "::{} {props}::{}",
            level_word(f.level),
            gh_data(&format!("{} ({})", f.message, f.hint))
        );
    }
    out.into_bytes()
}

/// Escaping of a workflow command's message.
fn gh_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escaping of a workflow command's property value.
fn gh_property(s: &str) -> String {
    gh_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// SARIF 2.1.0 for `github/codeql-action/upload-sarif`: every rule in `tool.driver.rules`,
/// `%SRCROOT%`-relative locations, columns in Unicode code points, and
/// `partialFingerprints["vars/v1"]` so code scanning tracks a finding across line moves.
pub fn sarif(report: &Report) -> Vec<u8> {
    let rules: Vec<_> = Rule::ALL
        .iter()
        .map(|r| {
            json!({
                "id": r.id(),
                "name": r.id(),
                "shortDescription": { "text": r.description() },
                "fullDescription": { "text": r.description() },
                "help": { "text": r.hint() },
                "defaultConfiguration": { "level": level_word(r.level()) },
                "properties": {
                    "tags": ["security", "secrets"],
                    "security-severity": if r.level() == Level::Error { "9.0" } else { "5.0" },
                },
            })
        })
        .collect();
    let results: Vec<_> = report.findings.iter().map(sarif_result).collect();
    let v = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "vars",
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    });
    let mut out = serde_json::to_vec_pretty(&v).expect("SARIF is plain JSON");
    out.push(b'\n');
    out
}

fn sarif_result(f: &Finding) -> serde_json::Value {
    let index = Rule::ALL
        .iter()
        .position(|r| *r == f.rule)
        .expect("every rule is in Rule::ALL");
    let mut location = json!({
        "artifactLocation": { "uri": uri_path(&f.path), "uriBaseId": "%SRCROOT%" },
    });
    if f.line > 0 {
        location["region"] = json!({
            "startLine": f.line,
            "startColumn": f.column,
            "endLine": f.end_line,
            "endColumn": f.end_column,
        });
    }
    json!({
        "ruleId": f.rule.id(),
        "ruleIndex": index,
        "level": level_word(f.level),
        "message": { "text": format!("{}. {}", f.message, f.hint) },
        "locations": [{ "physicalLocation": location }],
        "partialFingerprints": { "vars/v1": f.fingerprint },
    })
}

/// A relative path as a URI reference: every byte but unreserved characters and `/`
/// percent-encoded.
fn uri_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::{Origin, Summary};

    fn report() -> Report {
        Report {
            findings: vec![Finding {
                rule: Rule::PrivateKey,
                level: Level::Error,
                path: "a dir/k,e:y%\n.pem".into(),
                line: 3,
                column: 5,
                end_line: 9,
                end_column: 36,
                source: Origin::Index,
                oid: Some("abc".into()),
                fingerprint: "sha256:00".into(),
                message: "RSA private key in plaintext".into(),
                hint: "rotate it",
            }],
            summary: Summary {
                files: 1,
                bytes: 10,
                findings: 1,
                ..Default::default()
            },
        }
    }

    #[test]
    fn github_commands_escape_properties_and_data() {
        let out = String::from_utf8(github(&report())).unwrap();
        assert_eq!(
            out,
            "::error file=a dir/k%2Ce%3Ay%25\\n.pem,line=3,col=5,endLine=9,endColumn=36,title=vars scan (private-key)::RSA private key in plaintext (rotate it)\n"
        );
    }

    #[test]
    fn sarif_has_rules_regions_and_fingerprints() {
        let v: serde_json::Value = serde_json::from_slice(&sarif(&report())).unwrap();
        let run = &v["runs"][0];
        assert_eq!(v["version"], "2.1.0");
        assert_eq!(
            run["tool"]["driver"]["rules"].as_array().unwrap().len(),
            Rule::ALL.len()
        );
        let r = &run["results"][0];
        assert_eq!(r["ruleId"], "private-key");
        assert_eq!(
            run["tool"]["driver"]["rules"][r["ruleIndex"].as_u64().unwrap() as usize]["id"],
            "private-key"
        );
        let loc = &r["locations"][0]["physicalLocation"];
        assert_eq!(
            loc["artifactLocation"]["uri"],
            "a%20dir/k%2Ce%3Ay%25%0A.pem"
        );
        assert_eq!(loc["region"]["startLine"], 3);
        assert_eq!(r["partialFingerprints"]["vars/v1"], "sha256:00");
        assert!(r.get("snippet").is_none() && loc.get("contextRegion").is_none());
    }

    #[test]
    fn human_lines_are_escaped_and_summarised() {
        let out = human(&report(), false);
        assert!(out.starts_with("a dir/k,e:y%\\n.pem:3:5: error[private-key]: RSA private key in plaintext\n  hint: rotate it\n"), "{out}");
        assert!(
            out.ends_with(
                "scanned 1 file(s), 10 B; store rules not applied; 1 error(s), 0 warning(s)\n"
            ),
            "{out}"
        );
        let v: serde_json::Value = serde_json::from_slice(&json(&report())).unwrap();
        assert_eq!(v["format"], 1);
        assert_eq!(v["findings"][0]["end_column"], 36);
        assert_eq!(v["summary"]["skipped"]["binary"], 0);
    }
}
