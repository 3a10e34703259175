//! One door, one direction (STYLE.md "Phase 3"): the crate's modules import
//! strictly downward, so there is no import circle and no arrow pointing up.
//! The transports reach the rules through the service layer only, and the
//! configuration is plain data that imports nothing from the crate.
//!
//! Read from the source (`crate::<module>` paths outside comments and test
//! modules), so a new arrow fails here before it grows into a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module and its layer, lowest first: a module may import
/// only modules of lower layers.
const LAYERS: &[&[&str]] = &[
    &["config", "time"],
    &["tokens", "proxies", "verifier", "telemetry"],
    &["store"],
    &["db"],
    &["throttle", "events", "session_feed"],
    &["clients"],
    &["oauth", "admin"],
    &["session", "users", "api_tokens"],
    &["metrics"],
    &["service"],
    &["http", "grpc"],
    &["server"],
    &["app"],
    &["ops"],
    &["cli"],
];

fn layer(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|layer| layer.contains(&module))
        .unwrap_or_else(|| panic!("module {module} has no layer in tests/layering.rs"))
}

/// The code of a file without comments and its trailing test module.
fn code_of(text: &str) -> String {
    let end = [
        "#[cfg(test)]\nmod tests",
        "#[cfg(test)]\npub(crate) mod tests",
    ]
    .iter()
    .filter_map(|marker| text.find(marker))
    .min()
    .unwrap_or(text.len());
    text[..end]
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every module's imports of other top-level modules.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut imports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path.file_name().unwrap().to_str().unwrap();
            if !name.ends_with(".rs") || name == "tests.rs" {
                continue;
            }
            let relative = path.strip_prefix(&src).unwrap();
            let first = relative.iter().next().unwrap().to_str().unwrap();
            let module = first.trim_end_matches(".rs").to_owned();
            if module == "main" || module == "lib" {
                continue;
            }
            let code = code_of(&std::fs::read_to_string(&path).unwrap());
            let used = imports.entry(module.clone()).or_default();
            for piece in code.split("crate::").skip(1) {
                let target: String = piece
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !target.is_empty() && target != module {
                    used.insert(target);
                }
            }
        }
    }
    imports
}

#[test]
fn modules_import_strictly_downward() {
    let mut wrong = Vec::new();
    for (module, used) in imports() {
        for target in used {
            if layer(&target) >= layer(&module) {
                wrong.push(format!("{module} -> {target}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that point up or sideways: {wrong:?}"
    );
}

#[test]
fn transports_reach_the_rules_through_the_service_only() {
    let imports = imports();
    for transport in ["http", "grpc"] {
        let used = &imports[transport];
        for forbidden in ["store", "db", "session", "users", "clients", "app"] {
            assert!(!used.contains(forbidden), "{transport} imports {forbidden}");
        }
        let other = if transport == "http" { "grpc" } else { "http" };
        assert!(!used.contains(other), "{transport} imports {other}");
        assert!(
            used.contains("service"),
            "{transport} does not use the service"
        );
    }
}

#[test]
fn the_configuration_imports_nothing_from_the_crate() {
    let imports = imports();
    assert_eq!(imports["config"], BTreeSet::new());
    assert_eq!(imports["time"], BTreeSet::new());
}
