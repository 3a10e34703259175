//! Command line: which subcommand, which config file. Small enough that a
//! hand-written parser is clearer than a dependency.

use std::path::PathBuf;

use crate::config::SigningAlgorithm;

pub const USAGE: &str = "\
usage: tokengate [--config PATH]              run the service
       tokengate hash-secret                  read a client secret on stdin, print its argon2id hash
       tokengate healthcheck [--config PATH]  exit 0 if this host's replica answers GET /ping
       tokengate gen-key --algorithm ALG      print a new PKCS#8 PEM signing key (EdDSA, ES256, RS256)
       tokengate --help | --version

Configuration: config.yml in the working directory (or --config PATH), then
TOKENGATE__SECTION__KEY environment variables, e.g. TOKENGATE__SERVER__PORT=9000.";

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Serve { config: Option<PathBuf> },
    HashSecret,
    Healthcheck { config: Option<PathBuf> },
    GenKey { algorithm: SigningAlgorithm },
    Help,
    Version,
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args = args.into_iter();
    let mut subcommand = None;
    let mut config = None;
    let mut algorithm = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--algorithm" => {
                algorithm = Some(args.next().ok_or("--algorithm needs a value")?);
            }
            _ if arg.starts_with("--algorithm=") => {
                algorithm = Some(arg["--algorithm=".len()..].to_owned());
            }
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "-c" | "--config" => {
                let path = args.next().ok_or("--config needs a path")?;
                config = Some(PathBuf::from(path));
            }
            _ if arg.starts_with("--config=") => {
                config = Some(PathBuf::from(&arg["--config=".len()..]));
            }
            "hash-secret" | "healthcheck" | "gen-key" if subcommand.is_none() => {
                subcommand = Some(arg);
            }
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    if algorithm.is_some() != (subcommand.as_deref() == Some("gen-key")) {
        return Err("gen-key needs --algorithm, and only gen-key takes it".into());
    }
    Ok(match subcommand.as_deref() {
        None => Command::Serve { config },
        Some("hash-secret" | "gen-key") if config.is_some() => {
            return Err("only the service and healthcheck take --config".into());
        }
        Some("hash-secret") => Command::HashSecret,
        Some("gen-key") => Command::GenKey {
            algorithm: algorithm.unwrap_or_default().parse()?,
        },
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
        assert_eq!(
            p(&["gen-key", "--algorithm", "EdDSA"]),
            Ok(Command::GenKey {
                algorithm: SigningAlgorithm::EdDSA
            })
        );
        assert!(p(&["gen-key"]).is_err());
        assert!(p(&["gen-key", "--algorithm=HS512"]).is_err());
        assert!(p(&["--algorithm", "EdDSA"]).is_err());
    }
}
