//! The Python the interop and event tests drive real client libraries with.

use std::path::PathBuf;
use std::process::Command;

/// `TOKENGATE_PYTHON`, else the venv `scripts/test` makes
/// (`target/interop-venv`), else `python3`; panics, saying how to get them,
/// if it cannot import `modules` (e.g. `"kafka"`, `"jwt, authlib"`), which
/// `what` names for people.
pub fn with(modules: &str, what: &str) -> PathBuf {
    let python = std::env::var_os("TOKENGATE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let venv =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/interop-venv/bin/python");
            if venv.exists() {
                venv
            } else {
                "python3".into()
            }
        });
    let ready = Command::new(&python)
        .args(["-c", &format!("import {modules}")])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ready,
        "{} lacks {what}: run scripts/test, which installs \
         tests/interop/requirements.txt into target/interop-venv",
        python.display()
    );
    python
}
