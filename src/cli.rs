//! The command line, declared with clap: the commands, their arguments and
//! `--config`. What a command does is in [`crate::ops`], which never sees
//! these types; `main` loads the configuration the command uses and runs it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::api_tokens::NewApiToken;
use crate::config::SigningAlgorithm;
use crate::db::ClientKind;
use crate::ops::clients::{ClientAction, NewClient};
use crate::ops::tokens::TokenAction;

/// Under the help: where the configuration comes from, and which of it
/// each command checks.
const CONFIGURATION: &str = "\
Configuration: config.yml in the working directory (or --config PATH), then
TOKENGATE__SECTION__KEY environment variables, e.g. TOKENGATE__SERVER__PORT=9000.
Running the service checks all of it; a command checks only what it uses: migrate,
client and token the database of database.url (token revoke also the cache of
cache.url), healthcheck server.host and server.port.";

/// A stateless JWT session service for NGINX auth_request. Without a
/// command, it runs the service.
#[derive(Debug, PartialEq, Eq, Parser)]
#[command(name = "tokengate", version, after_help = CONFIGURATION)]
pub struct Cli {
    /// The configuration file [default: config.yml in the working directory, if there is one]
    #[arg(short, long, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Apply the database migrations and exit
    Migrate(ConfigFile),
    /// Clients kept in the database, beside those in config.yml
    ///
    /// Every replica sees a client added or removed within
    /// database.clients_refresh (default 5s).
    Client(ClientCommand),
    /// API tokens kept in the database
    ///
    /// Every replica refuses a revoked token at once: token revoke also
    /// clears it from the cache of cache.url.
    Token(TokenCommand),
    /// Read a secret (client, admin token) on stdin, print its argon2id hash
    HashSecret,
    /// Exit 0 if this host's replica answers GET /ping
    ///
    /// For container health checks: the image needs no curl.
    Healthcheck(ConfigFile),
    /// Print a new PKCS#8 PEM signing key
    GenKey {
        /// EdDSA, ES256 or RS256
        #[arg(long, value_name = "ALG")]
        algorithm: SigningAlgorithm,
    },
}

/// `--config PATH` of a command that reads the configuration; given before
/// the command, it is the same option.
#[derive(Debug, PartialEq, Eq, Args)]
pub struct ConfigFile {
    /// The configuration file [default: config.yml in the working directory, if there is one]
    #[arg(short, long, value_name = "PATH", global = true)]
    config: Option<PathBuf>,
}

/// `tokengate client …`.
#[derive(Debug, PartialEq, Eq, Args)]
pub struct ClientCommand {
    #[command(flatten)]
    file: ConfigFile,
    #[command(subcommand)]
    action: ClientVerb,
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
enum ClientVerb {
    /// Keep a client in the database; prints its new secret once
    ///
    /// The secret goes to standard output, the rest to standard error, so
    /// SECRET=$(tokengate client add …) works. Only its argon2id hash is
    /// stored: a lost secret means remove and add again.
    Add(AddClient),
    /// The clients in the database: id, kind, scopes, created
    List,
    /// Remove a client from the database
    Remove {
        /// The client's id
        id: String,
    },
}

#[derive(Debug, PartialEq, Eq, Args)]
struct AddClient {
    /// The new client's id (no ':')
    id: String,
    /// A trusted caller of /login and /register, or a client of /oauth/token
    #[arg(long, value_enum)]
    kind: Kind,
    /// OAuth only: the most it may ask for (several, or one quoted "a b")
    #[arg(long, value_name = "SCOPE", num_args = 1.., value_parser = scope_words)]
    scopes: Vec<Scopes>,
    /// OAuth only: it gets refresh tokens
    #[arg(long)]
    refresh_tokens: bool,
    /// OAuth only: token requests per minute; 0 = unlimited
    #[arg(long, value_name = "N", default_value_t = 0)]
    rate_limit: u32,
}

/// `--kind`, as typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    Login,
    Oauth,
}

/// `tokengate token …`.
#[derive(Debug, PartialEq, Eq, Args)]
pub struct TokenCommand {
    #[command(flatten)]
    file: ConfigFile,
    /// JSON on standard output (the admin API's shapes) instead of a table
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    action: TokenVerb,
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
enum TokenVerb {
    /// Create an API token; prints it once
    ///
    /// Only its SHA-256 is stored: keep the token now.
    Create {
        /// What it is for, as listed
        name: String,
        /// The scopes it carries (several, or one quoted "a b")
        #[arg(long, value_name = "SCOPE", num_args = 1.., value_parser = scope_words)]
        scopes: Vec<Scopes>,
        /// Days until it expires [default: never]
        #[arg(long, value_name = "DAYS")]
        ttl: Option<u32>,
    },
    /// The active API tokens
    List {
        /// Revoked and expired ones too
        #[arg(long)]
        all: bool,
    },
    /// One API token's record
    Info {
        /// The token's id (from token list)
        id: String,
    },
    /// Revoke an API token on every replica at once
    Revoke {
        /// The token's id (from token list)
        id: String,
    },
}

impl Cli {
    /// The arguments of this process. A usage error exits 2 with the usage
    /// line; `--help` and `--version` exit 0.
    pub fn from_args() -> Self {
        Self::try_from_args(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// Parses `args`, the program's name first.
    pub fn try_from_args(
        args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> Result<Self, clap::Error> {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let cli = Self::try_parse_from(&args).map_err(|e| with_usage(e, &args))?;
        let reads_no_config = matches!(
            cli.command,
            Some(Command::HashSecret | Command::GenKey { .. })
        );
        if cli.config.is_some() && reads_no_config {
            return Err(Self::command().error(
                ErrorKind::ArgumentConflict,
                "hash-secret and gen-key read no configuration: they take no --config",
            ));
        }
        Ok(cli)
    }

    /// The configuration file given, after the command or before it.
    pub fn config_file(&self) -> Option<&Path> {
        let after = match &self.command {
            Some(Command::Migrate(file) | Command::Healthcheck(file)) => Some(file),
            Some(Command::Client(client)) => Some(&client.file),
            Some(Command::Token(token)) => Some(&token.file),
            Some(Command::HashSecret | Command::GenKey { .. }) | None => None,
        };
        after
            .and_then(|file| file.config.as_deref())
            .or(self.config.as_deref())
    }
}

impl From<ClientCommand> for ClientAction {
    fn from(command: ClientCommand) -> Self {
        match command.action {
            ClientVerb::Add(add) => ClientAction::Add(NewClient {
                id: add.id,
                kind: match add.kind {
                    Kind::Login => ClientKind::Login,
                    Kind::Oauth => ClientKind::OAuth,
                },
                scopes: scopes(add.scopes),
                refresh_tokens: add.refresh_tokens,
                rate_limit: add.rate_limit,
            }),
            ClientVerb::List => ClientAction::List,
            ClientVerb::Remove { id } => ClientAction::Remove { id },
        }
    }
}

impl From<TokenCommand> for TokenAction {
    fn from(command: TokenCommand) -> Self {
        match command.action {
            TokenVerb::Create {
                name,
                scopes: s,
                ttl,
            } => TokenAction::Create(NewApiToken {
                name,
                scopes: scopes(s),
                ttl_days: ttl,
            }),
            TokenVerb::List { all } => TokenAction::List { all },
            TokenVerb::Info { id } => TokenAction::Info { id },
            TokenVerb::Revoke { id } => TokenAction::Revoke { id },
        }
    }
}

/// `error` with the usage line of the command `args` name, where clap leaves
/// it out (a bad value): every usage error shows one.
fn with_usage(mut error: clap::Error, args: &[OsString]) -> clap::Error {
    if error.exit_code() != 2 || error.get(ContextKind::Usage).is_some() {
        return error;
    }
    let mut cli = Cli::command();
    cli.build();
    let mut command = &cli;
    for word in args.iter().skip(1).filter_map(|a| a.to_str()) {
        command = command.find_subcommand(word).unwrap_or(command);
    }
    let usage = command.clone().render_usage();
    error.insert(ContextKind::Usage, ContextValue::StyledStr(usage));
    error
}

/// One argument of `--scopes`: a scope, or several apart by spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Scopes(Vec<String>);

fn scope_words(arg: &str) -> Result<Scopes, &'static str> {
    let words: Vec<String> = arg.split_whitespace().map(str::to_owned).collect();
    if words.is_empty() {
        return Err("no scope in it");
    }
    Ok(Scopes(words))
}

/// Every `--scopes` argument's scopes, in order.
fn scopes(given: Vec<Scopes>) -> Vec<String> {
    given.into_iter().flat_map(|Scopes(words)| words).collect()
}

#[cfg(test)]
mod tests;
