//! The documentation is checked against what it documents:
//! - `docs/configuration.md`'s tables name every key of `config.yml` — which
//!   the service loads with unknown keys refused, and whose values a unit test
//!   holds to the built-in defaults — with the same default, and no key that
//!   does not exist;
//! - every relative link of the README and `docs/` reaches a file, and a
//!   heading in it when it names one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use config::{Config, File, FileFormat, Value, ValueKind};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `config.yml`'s keys, dotted, each with its value as the docs write a
/// default: `empty` for `""` and `[]`, `—` for `null`.
fn config_file_keys() -> BTreeMap<String, String> {
    let text = read(&root().join("config.yml"));
    let table = Config::builder()
        .add_source(File::from_str(&text, FileFormat::Yaml))
        .build()
        .expect("config.yml parses")
        .cache
        .into_table()
        .expect("config.yml is a map");
    let mut keys = BTreeMap::new();
    for (name, value) in table {
        flatten(&name, value, &mut keys);
    }
    keys
}

fn flatten(key: &str, value: Value, out: &mut BTreeMap<String, String>) {
    let shown = match value.kind {
        ValueKind::Table(table) => {
            for (name, value) in table {
                flatten(&format!("{key}.{name}"), value, out);
            }
            return;
        }
        ValueKind::Nil => "—".to_owned(),
        ValueKind::Array(items) if items.is_empty() => "empty".to_owned(),
        ValueKind::String(text) if text.is_empty() => "empty".to_owned(),
        other => Value::new(None, other).to_string(),
    };
    out.insert(key.to_owned(), shown);
}

/// The rows of every `| key | default | meaning |` table: each key of the
/// first cell (one row may name several) with the second cell, backticks
/// dropped.
fn documented_keys(markdown: &str) -> BTreeMap<String, String> {
    let mut keys = BTreeMap::new();
    let mut in_table = false;
    for line in markdown.lines() {
        if line.starts_with("| key | default |") {
            in_table = true;
            continue;
        }
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if !in_table || cells.len() < 4 || cells[1].starts_with("---") {
            continue;
        }
        let default = cells[2].replace('`', "");
        for key in cells[1].split(',') {
            keys.insert(key.trim().trim_matches('`').to_owned(), default.clone());
        }
    }
    keys
}

#[test]
fn the_configuration_reference_matches_config_yml() {
    let file = config_file_keys();
    let config_text = read(&root().join("config.yml"));
    let docs = documented_keys(&read(&root().join("docs/configuration.md")));
    assert!(docs.len() > 50, "the tables were found: {docs:?}");

    let missing: Vec<_> = file.keys().filter(|k| !docs.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "config.yml keys not in docs/configuration.md: {missing:?}"
    );

    for (key, default) in &docs {
        match file.get(key) {
            Some(value) => assert_eq!(
                default, value,
                "docs/configuration.md gives {key} the default {default:?}, config.yml {value:?}"
            ),
            // Keys config.yml leaves out: under a key whose default is null
            // (`cache.sentinel.master`), or shown there as a comment
            // (`# touch_interval: …`).
            None => {
                let parent = key.rsplit_once('.').map(|(parent, _)| parent);
                let leaf = key.rsplit('.').next().unwrap_or(key);
                let under_null = parent.is_some_and(|p| file.get(p).is_some_and(|v| v == "—"));
                let commented = config_text
                    .lines()
                    .any(|line| line.trim_start().starts_with(&format!("# {leaf}:")));
                assert!(
                    under_null || commented,
                    "docs/configuration.md documents {key}, which config.yml does not have"
                );
            }
        }
    }
}

/// `[text](target)` links of a markdown text, outside code.
fn links(markdown: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let Some(end) = after.find(')') else { break };
            found.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    found
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces as
/// dashes.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut fenced = false;
    markdown
        .lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
            }
            !fenced && line.starts_with('#')
        })
        .map(|line| anchor(line.trim_start_matches('#')))
        .collect()
}

#[test]
fn links_between_the_docs_resolve() {
    let mut pages: Vec<PathBuf> = vec![root().join("README.md")];
    for entry in std::fs::read_dir(root().join("docs")).expect("docs/") {
        let path = entry.expect("docs/ entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    let mut broken = Vec::new();
    for page in &pages {
        let text = read(page);
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (file, fragment) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap_or(root()).join(file)
            };
            if !target.exists() {
                broken.push(format!("{}: {link} (no such file)", page.display()));
            } else if !fragment.is_empty()
                && target.extension().is_some_and(|e| e == "md")
                && !anchors(&read(&target)).contains(fragment)
            {
                broken.push(format!("{}: {link} (no such heading)", page.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
