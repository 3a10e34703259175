use super::*;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_from_args(std::iter::once("tokengate").chain(args.iter().copied()))
}

fn command(args: &[&str]) -> Option<Command> {
    parse(args)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
        .command
}

fn config_file(args: &[&str]) -> Option<PathBuf> {
    parse(args).unwrap().config_file().map(Path::to_path_buf)
}

fn client(args: &[&str]) -> ClientAction {
    match command(args) {
        Some(Command::Client(client)) => client.into(),
        other => panic!("{args:?}: {other:?}"),
    }
}

/// The action and `--json`.
fn token(args: &[&str]) -> (TokenAction, bool) {
    match command(args) {
        Some(Command::Token(token)) => {
            let json = token.json;
            (token.into(), json)
        }
        other => panic!("{args:?}: {other:?}"),
    }
}

/// A usage error: exit code 2, the usage line.
fn refused(args: &[&str]) -> clap::Error {
    let error = parse(args).expect_err(&format!("{args:?} parsed"));
    assert_eq!(error.exit_code(), 2, "{args:?}: {error}");
    assert!(
        error.to_string().contains("Usage: tokengate"),
        "{args:?}: {error}"
    );
    error
}

fn new_client(id: &str, kind: ClientKind, scopes: &[&str]) -> NewClient {
    NewClient {
        id: id.into(),
        kind,
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        refresh_tokens: false,
        rate_limit: 0,
    }
}

#[test]
fn the_command_line_is_well_formed() {
    Cli::command().debug_assert();
}

#[test]
fn commands_and_the_config_file() {
    assert_eq!(command(&[]), None, "no command serves");
    assert_eq!(config_file(&[]), None);
    assert_eq!(config_file(&["--config", "a.yml"]), Some("a.yml".into()));
    assert_eq!(config_file(&["-c", "a.yml"]), Some("a.yml".into()));
    for args in [
        &["--config=b.yml", "healthcheck"][..],
        &["healthcheck", "--config", "b.yml"],
        &["-c", "a.yml", "healthcheck", "-c", "b.yml"],
    ] {
        assert!(matches!(command(args), Some(Command::Healthcheck(_))));
        assert_eq!(config_file(args), Some("b.yml".into()), "{args:?}");
    }
    assert!(matches!(command(&["migrate"]), Some(Command::Migrate(_))));
    assert_eq!(
        config_file(&["migrate", "-c", "c.yml"]),
        Some("c.yml".into())
    );
    assert_eq!(
        config_file(&["client", "add", "b", "--kind", "login", "--config", "x.yml"]),
        Some("x.yml".into())
    );
    assert_eq!(
        config_file(&["token", "--config", "x.yml", "list"]),
        Some("x.yml".into())
    );
    assert_eq!(
        config_file(&["--config", "x.yml", "token", "info", "a"]),
        Some("x.yml".into())
    );
    assert_eq!(command(&["hash-secret"]), Some(Command::HashSecret));
    assert_eq!(
        command(&["gen-key", "--algorithm", "EdDSA"]),
        Some(Command::GenKey {
            algorithm: SigningAlgorithm::EdDSA
        })
    );
    // HS256 parses; gen-key then says that it has no key pair.
    assert_eq!(
        command(&["gen-key", "--algorithm=HS256"]),
        Some(Command::GenKey {
            algorithm: SigningAlgorithm::HS256
        })
    );
    for bad in [
        &["--config"][..],
        &["serve-forever"],
        &["hash-secret", "hash-secret"],
        &["hash-secret", "--config", "a.yml"],
        &["--config", "a.yml", "hash-secret"],
        &["--config", "a.yml", "gen-key", "--algorithm", "EdDSA"],
        &["gen-key"],
        &["gen-key", "--algorithm=HS512"],
        &["gen-key", "--algorithm", "EdDSA", "--config", "a.yml"],
        &["--algorithm", "EdDSA"],
        &["migrate", "now"],
        &["migrate", "--json"],
        &["healthcheck", "--refresh-tokens"],
        &["--frobnicate"],
    ] {
        refused(bad);
    }
}

#[test]
fn help_and_version() {
    let help = parse(&["--help"]).unwrap_err();
    assert_eq!(help.kind(), ErrorKind::DisplayHelp);
    assert_eq!(help.exit_code(), 0);
    let help = help.to_string();
    for command in [
        "migrate",
        "client",
        "token",
        "hash-secret",
        "healthcheck",
        "gen-key",
        "--config <PATH>",
        "--version",
        "TOKENGATE__SECTION__KEY",
    ] {
        assert!(help.contains(command), "{command} in\n{help}");
    }
    let version = parse(&["--version"]).unwrap_err();
    assert_eq!(version.kind(), ErrorKind::DisplayVersion);
    assert_eq!(version.exit_code(), 0);
    assert_eq!(
        version.to_string(),
        format!("tokengate {}\n", env!("CARGO_PKG_VERSION"))
    );
    // Every command has its own, with what its options mean.
    for (args, says) in [
        (
            &["token", "create", "--help"][..],
            "Only its SHA-256 is stored",
        ),
        (&["token", "create", "--help"], "--ttl <DAYS>"),
        (&["token", "list", "-h"], "Revoked and expired ones too"),
        (&["token", "--help"], "--json"),
        (
            &["client", "add", "--help"],
            "possible values: login, oauth",
        ),
        (&["client", "add", "--help"], "--scopes <SCOPE>..."),
        (&["client", "--help"], "database.clients_refresh"),
        (&["help", "gen-key"], "--algorithm <ALG>"),
        (&["healthcheck", "--help"], "--config <PATH>"),
    ] {
        let help = parse(args).unwrap_err();
        assert_eq!(help.kind(), ErrorKind::DisplayHelp, "{args:?}");
        assert!(help.to_string().contains(says), "{says} in\n{help}");
    }
    let hash_secret = parse(&["hash-secret", "--help"]).unwrap_err().to_string();
    assert!(!hash_secret.contains("--config"), "{hash_secret}");
}

#[test]
fn client_subcommands() {
    assert_eq!(
        client(&[
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
        ClientAction::Add(NewClient {
            refresh_tokens: true,
            rate_limit: 600,
            ..new_client("billing", ClientKind::OAuth, &["read", "write"])
        })
    );
    assert_eq!(
        client(&["client", "add", "web", "--kind=login"]),
        ClientAction::Add(new_client("web", ClientKind::Login, &[]))
    );
    // One quoted argument counts as several; repeated --scopes add up.
    assert_eq!(
        client(&[
            "client",
            "add",
            "b",
            "--kind",
            "oauth",
            "--scopes",
            "read  write",
            "jobs",
            "--scopes",
            "audit"
        ]),
        ClientAction::Add(new_client(
            "b",
            ClientKind::OAuth,
            &["read", "write", "jobs", "audit"]
        ))
    );
    assert_eq!(client(&["client", "list"]), ClientAction::List);
    assert_eq!(
        client(&["client", "remove", "billing"]),
        ClientAction::Remove {
            id: "billing".into()
        }
    );
    for bad in [
        &["client"][..],
        &["client", "show"],
        &["client", "add", "--kind", "oauth"],
        &["client", "add", "b"],
        &["client", "add", "b", "--kind", "robot"],
        &["client", "add", "b", "--kind", "oauth", "--scopes"],
        &["client", "add", "b", "--kind", "oauth", "--scopes", " "],
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
        &["client", "add", "b", "--kind", "oauth", "--ttl", "3"],
        &["client", "list", "extra"],
        &["client", "list", "--kind", "oauth"],
        &["client", "list", "--json"],
        &["client", "remove"],
        &["client", "remove", "a", "b"],
        &["--scopes", "read"],
    ] {
        refused(bad);
    }
}

#[test]
fn token_subcommands() {
    assert_eq!(
        token(&[
            "token", "create", "billing", "--scopes", "read", "write", "--ttl", "30", "--json"
        ]),
        (
            TokenAction::Create(NewApiToken {
                name: "billing".into(),
                scopes: vec!["read".into(), "write".into()],
                ttl_days: Some(30),
            }),
            true
        )
    );
    assert_eq!(
        token(&["token", "create", "ci", "--config", "x.yml"]),
        (
            TokenAction::Create(NewApiToken {
                name: "ci".into(),
                scopes: vec![],
                ttl_days: None,
            }),
            false
        )
    );
    // The service judges a name; the command line passes an empty one on.
    assert!(matches!(
        token(&["token", "create", ""]),
        (TokenAction::Create(NewApiToken { name, .. }), false) if name.is_empty()
    ));
    assert_eq!(
        token(&["token", "list", "--all"]),
        (TokenAction::List { all: true }, false)
    );
    assert_eq!(
        token(&["token", "list"]),
        (TokenAction::List { all: false }, false)
    );
    assert_eq!(
        token(&["token", "info", "abc", "--json"]),
        (TokenAction::Info { id: "abc".into() }, true)
    );
    assert_eq!(
        token(&["token", "--json", "revoke", "abc"]),
        (TokenAction::Revoke { id: "abc".into() }, true)
    );
    assert_eq!(
        token(&["token", "revoke", "abc"]),
        (TokenAction::Revoke { id: "abc".into() }, false)
    );
    for bad in [
        &["token"][..],
        &["token", "show", "x"],
        &["token", "create"],
        &["token", "create", "a", "--ttl", "soon"],
        &["token", "create", "a", "--ttl", "-3"],
        &["token", "create", "a", "--all"],
        &["token", "create", "a", "--scopes"],
        &["token", "create", "a", "--scopes", ""],
        &["token", "list", "--ttl", "3"],
        &["token", "list", "--scopes", "a"],
        &["token", "info"],
        &["token", "revoke"],
        &["token", "revoke", "a", "b"],
        &["token", "list", "--json=yes"],
        &["--all"],
        &["--json", "token", "list"],
    ] {
        refused(bad);
    }
}
