//! `tokengate`: parse arguments, load configuration, start logging, serve.

use std::process::ExitCode;

use tokengate::cli::{self, Command};
use tokengate::config::Settings;
use tokengate::{ops, telemetry};

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("tokengate: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    // Serving loads the configuration whole; the other commands read it and
    // resolve the sections they use (ops).
    let result = match command {
        Command::Help => {
            println!("{}", cli::USAGE);
            Ok(())
        }
        Command::Version => {
            println!("tokengate {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::HashSecret => ops::hash_secret_from(std::io::stdin().lock()).map(|hash| {
            println!("{hash}");
        }),
        Command::GenKey { algorithm } => {
            tokengate::tokens::keys::generate_private_key(algorithm).map(|pem| print!("{pem}"))
        }
        Command::Healthcheck { config } => Settings::read(config.as_deref())
            .map_err(|e| e.to_string())
            .and_then(|settings| runtime()?.block_on(ops::healthcheck(&settings.server))),
        Command::Migrate { config } => Settings::read(config.as_deref())
            .map_err(|e| e.to_string())
            .and_then(|settings| runtime()?.block_on(ops::migrate(&settings.database))),
        Command::Client { config, action } => Settings::read(config.as_deref())
            .map_err(|e| e.to_string())
            .and_then(|settings| runtime()?.block_on(ops::clients::run(&settings, action))),
        Command::Token {
            config,
            action,
            json,
        } => Settings::read(config.as_deref())
            .map_err(|e| e.to_string())
            .and_then(|settings| runtime()?.block_on(ops::tokens::run(&settings, action, json))),
        Command::Serve { config } => Settings::load(config.as_deref())
            .map_err(|e| e.to_string())
            .and_then(|settings| {
                telemetry::init(&settings.logging);
                runtime()?.block_on(ops::serve::run(settings))
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokengate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}
