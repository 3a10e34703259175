//! Command line: which subcommand, which config file. Small enough that a
//! hand-written parser is clearer than a dependency.

use std::path::PathBuf;

pub const USAGE: &str = "\
usage: tokengate [--config PATH]              run the service
       tokengate hash-secret                  read a client secret on stdin, print its argon2id hash
       tokengate healthcheck [--config PATH]  exit 0 if this host's replica answers GET /ping
       tokengate --help | --version

Configuration: config.yml in the working directory (or --config PATH), then
TOKENGATE__SECTION__KEY environment variables, e.g. TOKENGATE__SERVER__PORT=9000.";

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Serve { config: Option<PathBuf> },
    HashSecret,
    Healthcheck { config: Option<PathBuf> },
    Help,
    Version,
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args = args.into_iter();
    let mut subcommand = None;
    let mut config = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "-c" | "--config" => {
                let path = args.next().ok_or("--config needs a path")?;
                config = Some(PathBuf::from(path));
            }
            _ if arg.starts_with("--config=") => {
                config = Some(PathBuf::from(&arg["--config=".len()..]));
            }
            "hash-secret" | "healthcheck" if subcommand.is_none() => subcommand = Some(arg),
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    Ok(match subcommand.as_deref() {
        None => Command::Serve { config },
        Some("hash-secret") if config.is_none() => Command::HashSecret,
        Some("hash-secret") => return Err("hash-secret takes no --config".into()),
        _ => Command::Healthcheck { config },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, String> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn commands() {
        assert_eq!(p(&[]), Ok(Command::Serve { config: None }));
        assert_eq!(
            p(&["--config", "a.yml"]),
            Ok(Command::Serve {
                config: Some("a.yml".into())
            })
        );
        assert_eq!(
            p(&["--config=b.yml", "healthcheck"]),
            Ok(Command::Healthcheck {
                config: Some("b.yml".into())
            })
        );
        assert_eq!(p(&["hash-secret"]), Ok(Command::HashSecret));
        assert_eq!(p(&["--help"]), Ok(Command::Help));
        assert!(p(&["--config"]).is_err());
        assert!(p(&["serve-forever"]).is_err());
        assert!(p(&["hash-secret", "hash-secret"]).is_err());
    }
}
