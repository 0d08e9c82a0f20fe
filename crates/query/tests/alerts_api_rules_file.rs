//! `deploy/alert-rules.toml` is the built-in rule set (`RuleSet::default()`)
//! written out, each setting commented with the doc comment of its field in
//! `citygauge-alerts`. This test fails when the file and the defaults (or
//! their docs) drift apart; regenerate it with
//!
//! ```text
//! UPDATE_ALERT_RULES=1 cargo test -p citygauge-query --test alerts_api_rules_file
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use citygauge_alerts::RuleSet;

const HEADER: &str = "\
# citygauge alert rules: the built-in defaults, every setting written out.
#
# Generated from RuleSet::default() and the settings' documentation in
# crates/alerts (regenerate: UPDATE_ALERT_RULES=1 cargo test -p citygauge-query
# --test alerts_api_rules_file). Edit a copy, not this file.
#
# Use: `citygauge query --alert-rules-file FILE` installs a file as the rule
# set when the database holds none; after that the rules change through the
# admin API (GET/PUT /api/v1/alerts/rules, recorded in alert_rule_sets with
# who and why; GET /api/v1/alerts/rules/history). Every change is validated
# and an error names the field (`water_level.margin_m`, `overrides[2].set...`).
# Try a candidate on a past storm first:
# `citygauge alerts replay --from ... --to ... --rules FILE`.
#
# Overrides: settings for some districts or stations, merged over these
# (district overrides first, then station overrides, in file order), e.g.
#
#   [[overrides]]
#   sensors = [\"kh-wl-0001\"]
#   [overrides.set.water_level]
#   warning_3_m = 2.4
#   warning_2_m = 3.1
#   warning_1_m = 3.8
#
#   [[overrides]]
#   districts = [\"Qijin\"]
#   [overrides.set.water_level]
#   margin_m = 0.2
";

/// A field of a struct in the alerts crate: its type and doc comment.
#[derive(Debug, Clone)]
struct Field {
    ty: String,
    doc: Vec<String>,
}

/// A `pub struct` of the alerts crate: its fields in order, its doc, and
/// the doc of the module that defines it.
#[derive(Debug, Clone, Default)]
struct Struct {
    fields: Vec<(String, Field)>,
    doc: Vec<String>,
    module_doc: Vec<String>,
}

type Known = HashMap<String, Struct>;

/// Every `pub struct` of the alerts crate's sources.
fn structs(dir: &Path, out: &mut Known) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            structs(&path, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let module_doc: Vec<String> = text
            .lines()
            .map_while(|l| l.strip_prefix("//!"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d).to_string())
            .collect();
        let mut current: Option<String> = None;
        let mut doc: Vec<String> = Vec::new();
        for line in text.lines() {
            let trimmed = line.trim();
            if let Some(rest) = trimmed.strip_prefix("pub struct ") {
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if rest.trim_end().ends_with('{') {
                    current = Some(name.clone());
                    let doc = std::mem::take(&mut doc);
                    out.insert(name, Struct { fields: Vec::new(), doc, module_doc: module_doc.clone() });
                }
                doc.clear();
            } else if current.is_some() && line.starts_with('}') {
                current = None;
                doc.clear();
            } else if let Some(d) = trimmed.strip_prefix("///") {
                doc.push(d.strip_prefix(' ').unwrap_or(d).to_string());
            } else if trimmed.starts_with("#[") {
                // Attributes sit between a doc and what it documents.
            } else if let (Some(name), Some(rest)) = (&current, trimmed.strip_prefix("pub ")) {
                if let Some((field, ty)) = rest.split_once(':') {
                    let ty = ty.trim().trim_end_matches(',').to_string();
                    let fields = &mut out.get_mut(name).unwrap().fields;
                    fields.push((field.trim().to_string(), Field { ty, doc: std::mem::take(&mut doc) }));
                }
                doc.clear();
            } else {
                doc.clear();
            }
        }
    }
}

/// The struct a field's type names (`water::WaterLevelRules`, `Vec<Override>`, `Option<X>`).
fn struct_of<'a>(ty: &str, known: &'a Known) -> Option<&'a str> {
    ty.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .rev()
        .filter(|word| !word.is_empty())
        .find_map(|word| known.get_key_value(word).map(|(k, _)| k.as_str()))
}

/// The struct of the table at `path` (`["water_level", "confirm"]`).
fn table<'a>(path: &[&str], known: &'a Known) -> Option<&'a Struct> {
    let mut name = "RuleSet";
    for key in path {
        let (_, field) = known.get(name)?.fields.iter().find(|(f, _)| f == key)?;
        name = struct_of(&field.ty, known)?;
    }
    known.get(name)
}

fn field<'a>(path: &[&str], key: &str, known: &'a Known) -> Option<&'a Field> {
    table(path, known)?.fields.iter().find(|(n, _)| n == key).map(|(_, f)| f)
}

fn comment(doc: &[String], out: &mut String) {
    for line in doc {
        if line.is_empty() {
            out.push_str("#\n");
        } else {
            out.push_str(&format!("# {line}\n"));
        }
    }
}

/// The file as it should be: the defaults as TOML, each key and table
/// preceded by its doc, optional settings that are unset listed commented out.
fn generate() -> String {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../alerts/src");
    let mut known = HashMap::new();
    structs(&src, &mut known);
    let plain = toml::to_string(&RuleSet::default()).unwrap();
    let mut out = String::from(HEADER);
    let mut path: Vec<String> = Vec::new();
    let mut written: Vec<String> = Vec::new();
    let mut last_doc: Vec<String> = Vec::new();
    let close = |path: &[String], written: &[String], out: &mut String| {
        let keys: Vec<&str> = path.iter().map(String::as_str).collect();
        let Some(table) = table(&keys, &known) else { return };
        for (name, field) in &table.fields {
            if field.ty.starts_with("Option<") && !written.contains(name) {
                comment(&field.doc, out);
                out.push_str(&format!("# {name} = (unset by default)\n"));
            }
        }
    };
    out.push('\n');
    for line in plain.lines() {
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            close(&path, &written, &mut out);
            written.clear();
            path = header.split('.').map(str::to_string).collect();
            let keys: Vec<&str> = path.iter().map(String::as_str).collect();
            out.push('\n');
            if let Some((last, parent)) = keys.split_last() {
                let mut doc = match field(parent, last, &known) {
                    Some(f) if !f.doc.is_empty() => f.doc.clone(),
                    _ => match table(&keys, &known) {
                        // A family's section: what its module says, then its settings struct.
                        Some(t) if parent.is_empty() && !t.module_doc.is_empty() => {
                            [t.module_doc.clone(), vec![String::new()], t.doc.clone()].concat()
                        }
                        Some(t) => t.doc.clone(),
                        None => Vec::new(),
                    },
                };
                // Tables of one kind in a row (the rain classes) say it once.
                if doc == last_doc {
                    doc.clear();
                } else {
                    last_doc = doc.clone();
                }
                comment(&doc, &mut out);
            }
            out.push_str(line);
            out.push('\n');
        } else if let Some((key, _)) = line.split_once(" = ") {
            let keys: Vec<&str> = path.iter().map(String::as_str).collect();
            if let Some(f) = field(&keys, key.trim(), &known) {
                comment(&f.doc, &mut out);
            }
            written.push(key.trim().to_string());
            out.push_str(line);
            out.push('\n');
        } else if !line.trim().is_empty() {
            out.push_str(line);
            out.push('\n');
        }
    }
    close(&path, &written, &mut out);
    out
}

#[test]
fn the_shipped_rules_file_is_the_documented_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/alert-rules.toml");
    let expected = generate();
    if std::env::var_os("UPDATE_ALERT_RULES").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let rules = RuleSet::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        rules,
        RuleSet::default(),
        "{} is not the defaults: regenerate it (see this test's doc)",
        path.display()
    );
    assert!(
        text == expected,
        "{} is out of date with the defaults' documentation: regenerate it (see this test's doc)",
        path.display()
    );
}

#[test]
fn the_example_in_the_header_is_valid() {
    let example: String = HEADER.lines().filter_map(|l| l.strip_prefix("#   ")).map(|l| format!("{l}\n")).collect();
    let rules = RuleSet::from_toml(&example).unwrap_or_else(|e| panic!("{e}\n{example}"));
    assert_eq!(rules.overrides.len(), 2);
}

#[test]
fn the_generated_file_comments_every_section() {
    let text = generate();
    let defaults = toml::Value::try_from(RuleSet::default()).unwrap();
    for (section, value) in defaults.as_table().unwrap() {
        if !value.is_table() {
            continue;
        }
        let header = format!("\n[{section}]\n");
        let at = text.find(&header).unwrap_or_else(|| panic!("no [{section}]"));
        let before = text[..at].trim_end().lines().last().unwrap_or("");
        assert!(before.starts_with('#'), "[{section}] has no comment");
    }
}
