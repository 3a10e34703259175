//! Command line: which subcommand, which config file. Small enough that a
//! hand-written parser is clearer than a dependency.

use std::iter::Peekable;
use std::path::PathBuf;

use crate::api_tokens::NewApiToken;
use crate::config::SigningAlgorithm;
use crate::db::ClientKind;
use crate::ops::clients::{ClientAction, NewClient};
use crate::ops::tokens::TokenAction;

pub const USAGE: &str = "\
usage: tokengate [--config PATH]              run the service
       tokengate migrate [--config PATH]      apply the database migrations and exit
       tokengate client add ID --kind login|oauth [--scopes A B ...] [--refresh-tokens]
                            [--rate-limit N] [--config PATH]
                                              keep a client in the database; prints its new
                                              secret once (only its argon2id hash is stored)
       tokengate client list [--config PATH]  the clients in the database: id, kind, scopes, created
       tokengate client remove ID [--config PATH]
                                              remove a client from the database
       tokengate token create NAME [--scopes A B ...] [--ttl DAYS] [--json] [--config PATH]
                                              create an API token; prints it once (only its
                                              SHA-256 is stored)
       tokengate token list [--all] [--json] [--config PATH]
                                              the active API tokens (--all: revoked and expired too)
       tokengate token info ID [--json] [--config PATH]
                                              one API token's record
       tokengate token revoke ID [--json] [--config PATH]
                                              revoke an API token on every replica at once
       tokengate hash-secret                  read a secret (client, admin token) on stdin, print
                                              its argon2id hash
       tokengate healthcheck [--config PATH]  exit 0 if this host's replica answers GET /ping
       tokengate gen-key --algorithm ALG      print a new PKCS#8 PEM signing key (EdDSA, ES256, RS256)
       tokengate --help | --version

Configuration: config.yml in the working directory (or --config PATH), then
TOKENGATE__SECTION__KEY environment variables, e.g. TOKENGATE__SERVER__PORT=9000.
migrate, client and token use the database of database.url, as the service does; every
replica sees a client added or removed within database.clients_refresh (default 5s),
a token revoked at once (token revoke also clears it from the cache in cache.url).";

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Serve {
        config: Option<PathBuf>,
    },
    Migrate {
        config: Option<PathBuf>,
    },
    Client {
        config: Option<PathBuf>,
        action: ClientAction,
    },
    Token {
        config: Option<PathBuf>,
        action: TokenAction,
        /// JSON on standard output instead of a table.
        json: bool,
    },
    HashSecret,
    Healthcheck {
        config: Option<PathBuf>,
    },
    GenKey {
        algorithm: SigningAlgorithm,
    },
    Help,
    Version,
}

/// The options given, before we know which subcommand may take them.
#[derive(Default)]
struct Options {
    config: Option<PathBuf>,
    algorithm: Option<String>,
    kind: Option<String>,
    scopes: Option<Vec<String>>,
    refresh_tokens: bool,
    rate_limit: Option<String>,
    ttl: Option<String>,
    all: bool,
    json: bool,
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args = args.into_iter().peekable();
    let mut words = Vec::new();
    let mut o = Options::default();
    while let Some(arg) = args.next() {
        // `--name=value` as well as `--name value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        match flag {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "-c" | "--config" => {
                o.config = Some(value(&mut args, inline, "--config needs a path")?.into());
            }
            "--algorithm" => {
                o.algorithm = Some(value(&mut args, inline, "--algorithm needs a value")?);
            }
            "--kind" => o.kind = Some(value(&mut args, inline, "--kind needs login or oauth")?),
            "--rate-limit" => {
                o.rate_limit = Some(value(&mut args, inline, "--rate-limit needs a number")?);
            }
            "--refresh-tokens" if inline.is_none() => o.refresh_tokens = true,
            "--ttl" => o.ttl = Some(value(&mut args, inline, "--ttl needs a number of days")?),
            "--all" if inline.is_none() => o.all = true,
            "--json" if inline.is_none() => o.json = true,
            "--scopes" => {
                // Values up to the next option; "a b" in one argument counts as two.
                let mut given: Vec<String> = inline.into_iter().collect();
                while let Some(next) = args.next_if(|a| !a.starts_with('-')) {
                    given.push(next);
                }
                let scopes: Vec<String> = given
                    .iter()
                    .flat_map(|v| v.split(' ').filter(|s| !s.is_empty()))
                    .map(str::to_owned)
                    .collect();
                if scopes.is_empty() {
                    return Err("--scopes needs at least one scope".into());
                }
                o.scopes.get_or_insert_default().extend(scopes);
            }
            _ if !arg.starts_with('-') => words.push(arg),
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    let mut words = words.into_iter();
    let command = match words.next().as_deref() {
        None => Command::Serve {
            config: o.config.take(),
        },
        Some("migrate") => Command::Migrate {
            config: o.config.take(),
        },
        Some("healthcheck") => Command::Healthcheck {
            config: o.config.take(),
        },
        Some("hash-secret") => Command::HashSecret,
        Some("gen-key") => Command::GenKey {
            algorithm: o
                .algorithm
                .take()
                .ok_or("gen-key needs --algorithm")?
                .parse()?,
        },
        Some("client") => {
            let action = match words.next().as_deref() {
                Some("add") => ClientAction::Add(new_client(&mut o, words.next())?),
                Some("list") => ClientAction::List,
                Some("remove") => ClientAction::Remove {
                    id: words.next().ok_or("client remove needs the client's ID")?,
                },
                _ => return Err("client needs add, list or remove".into()),
            };
            Command::Client {
                config: o.config.take(),
                action,
            }
        }
        Some("token") => {
            let verb = words.next();
            let mut id = || {
                words.next().ok_or_else(|| {
                    format!(
                        "token {} needs the token's ID",
                        verb.as_deref().unwrap_or("")
                    )
                })
            };
            let action = match verb.as_deref() {
                Some("create") => TokenAction::Create(new_token(&mut o, id().ok())?),
                Some("list") => TokenAction::List {
                    all: std::mem::take(&mut o.all),
                },
                Some("info") => TokenAction::Info { id: id()? },
                Some("revoke") => TokenAction::Revoke { id: id()? },
                _ => return Err("token needs create, list, info or revoke".into()),
            };
            Command::Token {
                config: o.config.take(),
                action,
                json: std::mem::take(&mut o.json),
            }
        }
        Some(other) => return Err(format!("unexpected argument {other:?}")),
    };
    if let Some(extra) = words.next() {
        return Err(format!("unexpected argument {extra:?}"));
    }
    if o.config.is_some() {
        return Err("hash-secret and gen-key take no --config".into());
    }
    if o.algorithm.is_some() {
        return Err("only gen-key takes --algorithm".into());
    }
    if o.kind.is_some() || o.scopes.is_some() || o.refresh_tokens || o.rate_limit.is_some() {
        return Err(
            "--kind, --scopes, --refresh-tokens and --rate-limit are for client add \
             (--scopes also for token create)"
                .into(),
        );
    }
    if o.ttl.is_some() || o.all || o.json {
        return Err("--ttl is for token create, --all for token list, --json for token".into());
    }
    Ok(command)
}

/// The next argument, or the one after `=`.
fn value(
    args: &mut Peekable<impl Iterator<Item = String>>,
    inline: Option<String>,
    missing: &str,
) -> Result<String, String> {
    inline
        .or_else(|| args.next_if(|a| !a.starts_with('-')))
        .ok_or_else(|| missing.to_owned())
}

/// `client add ID --kind …`, taking the options it uses.
fn new_client(o: &mut Options, id: Option<String>) -> Result<NewClient, String> {
    let id = id.ok_or("client add needs the new client's ID")?;
    let kind = o.kind.take().ok_or("client add needs --kind login|oauth")?;
    let kind = ClientKind::parse(&kind).ok_or("--kind must be login or oauth")?;
    let rate_limit = match o.rate_limit.take() {
        None => 0,
        Some(text) => text
            .parse()
            .map_err(|_| "--rate-limit must be a whole number of requests per minute")?,
    };
    Ok(NewClient {
        id,
        kind,
        scopes: o.scopes.take().unwrap_or_default(),
        refresh_tokens: std::mem::take(&mut o.refresh_tokens),
        rate_limit,
    })
}

/// `token create NAME [--scopes …] [--ttl DAYS]`, taking the options it uses.
fn new_token(o: &mut Options, name: Option<String>) -> Result<NewApiToken, String> {
    let name = name.ok_or("token create needs the new token's NAME")?;
    let ttl_days = match o.ttl.take() {
        None => None,
        Some(text) => Some(
            text.parse()
                .map_err(|_| "--ttl must be a whole number of days")?,
        ),
    };
    Ok(NewApiToken {
        name,
        scopes: o.scopes.take().unwrap_or_default(),
        ttl_days,
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
        assert!(p(&["hash-secret", "--config", "a.yml"]).is_err());
        assert_eq!(
            p(&["gen-key", "--algorithm", "EdDSA"]),
            Ok(Command::GenKey {
                algorithm: SigningAlgorithm::EdDSA
            })
        );
        assert!(p(&["gen-key"]).is_err());
        assert!(p(&["gen-key", "--algorithm=HS512"]).is_err());
        assert!(p(&["--algorithm", "EdDSA"]).is_err());
        assert_eq!(
            p(&["migrate", "-c", "c.yml"]),
            Ok(Command::Migrate {
                config: Some("c.yml".into())
            })
        );
        assert!(p(&["migrate", "now"]).is_err());
    }

    fn client(action: ClientAction) -> Result<Command, String> {
        Ok(Command::Client {
            config: None,
            action,
        })
    }

    #[test]
    fn client_subcommands() {
        assert_eq!(
            p(&[
                "client",
                "add",
                "billing",
                "--kind",
                "oauth",
                "--scopes",
                "read",
                "write",
                "--refresh-tokens",
                "--rate-limit=600",
                "--config",
                "x.yml"
            ]),
            Ok(Command::Client {
                config: Some("x.yml".into()),
                action: ClientAction::Add(NewClient {
                    id: "billing".into(),
                    kind: ClientKind::OAuth,
                    scopes: vec!["read".into(), "write".into()],
                    refresh_tokens: true,
                    rate_limit: 600,
                }),
            })
        );
        assert_eq!(
            p(&["client", "add", "web", "--kind=login"]),
            client(ClientAction::Add(NewClient {
                id: "web".into(),
                kind: ClientKind::Login,
                scopes: vec![],
                refresh_tokens: false,
                rate_limit: 0,
            }))
        );
        let Ok(Command::Client {
            action: ClientAction::Add(quoted),
            ..
        }) = p(&[
            "client",
            "add",
            "b",
            "--kind",
            "oauth",
            "--scopes=read write",
            "jobs",
        ])
        else {
            panic!("quoted scopes");
        };
        assert_eq!(quoted.scopes, ["read", "write", "jobs"]);
        assert_eq!(p(&["client", "list"]), client(ClientAction::List));
        assert_eq!(
            p(&["client", "remove", "billing"]),
            client(ClientAction::Remove {
                id: "billing".into()
            })
        );
        for bad in [
            &["client"][..],
            &["client", "show"],
            &["client", "add", "--kind", "oauth"],
            &["client", "add", "b"],
            &["client", "add", "b", "--kind", "robot"],
            &["client", "add", "b", "--kind", "oauth", "--scopes"],
            &[
                "client",
                "add",
                "b",
                "--kind",
                "oauth",
                "--rate-limit",
                "-1",
            ],
            &[
                "client",
                "add",
                "b",
                "--kind",
                "oauth",
                "--rate-limit",
                "lots",
            ],
            &[
                "client",
                "add",
                "b",
                "--kind",
                "oauth",
                "--refresh-tokens=yes",
            ],
            &["client", "list", "extra"],
            &["client", "list", "--kind", "oauth"],
            &["client", "remove"],
            &["client", "remove", "a", "b"],
            &["--scopes", "read"],
            &["healthcheck", "--refresh-tokens"],
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }

    fn token(action: TokenAction, json: bool) -> Result<Command, String> {
        Ok(Command::Token {
            config: None,
            action,
            json,
        })
    }

    #[test]
    fn token_subcommands() {
        assert_eq!(
            p(&[
                "token", "create", "billing", "--scopes", "read", "write", "--ttl", "30", "--json"
            ]),
            token(
                TokenAction::Create(NewApiToken {
                    name: "billing".into(),
                    scopes: vec!["read".into(), "write".into()],
                    ttl_days: Some(30),
                }),
                true
            )
        );
        assert_eq!(
            p(&["token", "create", "ci", "--config", "x.yml"]),
            Ok(Command::Token {
                config: Some("x.yml".into()),
                action: TokenAction::Create(NewApiToken {
                    name: "ci".into(),
                    scopes: vec![],
                    ttl_days: None,
                }),
                json: false,
            })
        );
        assert_eq!(
            p(&["token", "list", "--all"]),
            token(TokenAction::List { all: true }, false)
        );
        assert_eq!(
            p(&["token", "list"]),
            token(TokenAction::List { all: false }, false)
        );
        assert_eq!(
            p(&["token", "info", "abc", "--json"]),
            token(TokenAction::Info { id: "abc".into() }, true)
        );
        assert_eq!(
            p(&["token", "revoke", "abc"]),
            token(TokenAction::Revoke { id: "abc".into() }, false)
        );
        for bad in [
            &["token"][..],
            &["token", "show", "x"],
            &["token", "create"],
            &["token", "create", "a", "--ttl", "soon"],
            &["token", "create", "a", "--ttl", "-3"],
            &["token", "create", "a", "--all"],
            &["token", "list", "--ttl", "3"],
            &["token", "list", "--scopes", "a"],
            &["token", "info"],
            &["token", "revoke"],
            &["token", "revoke", "a", "b"],
            &["token", "list", "--json=yes"],
            &["client", "list", "--json"],
            &["--all"],
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }
}
