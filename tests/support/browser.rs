//! A real browser for the browser-session tests (SPEC §15): headless Chromium
//! from Debian (`/usr/bin/chromium`), driven by Node scripts in `tests/browser/`
//! with `playwright-core` (pinned by `tests/browser/package-lock.json`).
//!
//! `scripts/test` installs Debian's `chromium`, `nodejs` and `npm` when they are
//! missing and runs `npm ci` of `tests/browser/` into `target/browser-node`,
//! keyed on the lock file (as the interop venv is keyed on requirements.txt),
//! exporting `TOKENGATE_NODE_MODULES`. Without them the tests skip, saying why,
//! except in CI (`CI` set), where they fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What runs the scenarios.
#[derive(Debug, Clone)]
pub struct Browser {
    pub chromium: PathBuf,
    pub node: PathBuf,
    /// The `node_modules` holding `playwright-core`.
    pub node_modules: PathBuf,
}

/// `tests/browser/`, where the scenarios are.
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Where screenshots go: `target/browser-artifacts/` (`$CARGO_TARGET_DIR` if set).
pub fn artifacts_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)
            }
        })
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("browser-artifacts")
}

impl Browser {
    /// Chromium, node and playwright-core, or `None` (after saying why) when
    /// one is missing and this is not CI; in CI a missing one fails the test.
    pub fn find(test: &str) -> Option<Self> {
        match Self::locate() {
            Ok(browser) => Some(browser),
            Err(missing) => {
                let how = "scripts/test installs them (apt: chromium nodejs npm; \
                           `npm ci` of tests/browser into target/browser-node, \
                           exported as TOKENGATE_NODE_MODULES)";
                assert!(std::env::var_os("CI").is_none(), "{test}: {missing}; {how}");
                eprintln!("SKIPPED {test}: {missing}; {how}");
                None
            }
        }
    }

    fn locate() -> Result<Self, String> {
        let chromium = std::env::var_os("TOKENGATE_CHROMIUM")
            .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
        if !chromium.is_file() {
            return Err(format!("no Chromium at {}", chromium.display()));
        }
        let node =
            std::env::var_os("TOKENGATE_NODE").map_or_else(|| PathBuf::from("node"), PathBuf::from);
        let version = Command::new(&node)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .ok()
            .filter(|out| out.status.success())
            .ok_or_else(|| format!("no node ({})", node.display()))?;
        let major: u32 = String::from_utf8_lossy(&version.stdout)
            .trim()
            .trim_start_matches('v')
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        if major < 18 {
            return Err(format!(
                "node {} is older than 18",
                String::from_utf8_lossy(&version.stdout).trim()
            ));
        }
        let candidates = std::env::var_os("TOKENGATE_NODE_MODULES")
            .map(PathBuf::from)
            .into_iter()
            .chain([
                Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-node/node_modules"),
                scripts_dir().join("node_modules"),
            ]);
        let node_modules = candidates
            .into_iter()
            .find(|dir| dir.join("playwright-core/package.json").is_file())
            .ok_or_else(|| "playwright-core is not installed".to_owned())?;
        Ok(Self {
            chromium,
            node,
            node_modules,
        })
    }

    /// Runs `tests/browser/<script>` with `env`; `Err` with everything it printed
    /// if it failed or took longer than `within`. Its output is printed either
    /// way (`cargo test` shows it for a failed test).
    pub fn run(
        &self,
        script: &str,
        env: &[(&str, String)],
        within: Duration,
    ) -> Result<String, String> {
        let dir = scripts_dir();
        let mut child = Command::new(&self.node)
            .arg(dir.join(script))
            .current_dir(&dir)
            .env("TOKENGATE_NODE_MODULES", &self.node_modules)
            .env("TOKENGATE_CHROMIUM", &self.chromium)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.node.display()))?;
        // Read both pipes on threads so a chatty script never blocks on a full one.
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let out = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
            text
        });
        let err = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            text
        });
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                break Some(status);
            }
            if Instant::now() >= deadline {
                // node and the Chromium it started.
                super::procs::kill_with_children(child.id());
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let output = format!(
            "{}{}",
            out.join().unwrap_or_default(),
            err.join().unwrap_or_default()
        );
        println!("--- node {script} ---\n{output}--- end of node {script} ---");
        match status {
            Some(status) if status.success() => Ok(output),
            Some(status) => Err(format!("node {script} failed ({status}):\n{output}")),
            None => Err(format!(
                "node {script} did not finish within {within:?}:\n{output}"
            )),
        }
    }
}
