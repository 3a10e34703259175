//! `tokengate`: parse arguments, load the configuration the command uses,
//! start logging when serving, run.

use std::path::Path;
use std::process::ExitCode;

use tokengate::cli::{Cli, Command};
use tokengate::config::Settings;
use tokengate::{ops, telemetry};

fn main() -> ExitCode {
    match run(Cli::from_args()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokengate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let file = cli.config_file().map(Path::to_path_buf);
    let file = file.as_deref();
    let Some(command) = cli.command else {
        let settings = Settings::load(file).map_err(|e| e.to_string())?;
        telemetry::init(&settings.logging);
        return block_on(ops::serve::run(settings));
    };
    // Read, not loaded: each command resolves the sections it uses.
    let read = || Settings::read(file).map_err(|e| e.to_string());
    match command {
        Command::HashSecret => {
            let hash = ops::hash_secret_from(std::io::stdin().lock())?;
            println!("{hash}");
            Ok(())
        }
        Command::GenKey { algorithm } => {
            let pem = tokengate::tokens::keys::generate_private_key(algorithm)?;
            print!("{pem}");
            Ok(())
        }
        Command::Healthcheck(_) => block_on(ops::healthcheck(&read()?.server)),
        Command::Migrate(_) => block_on(ops::migrate(&read()?.database)),
        Command::Client(client) => block_on(ops::clients::run(&read()?, client.into())),
        Command::Token(token) => {
            let json = token.json;
            block_on(ops::tokens::run(&read()?, token.into(), json))
        }
    }
}

/// Runs `command` on a new runtime (after its configuration was read).
fn block_on(command: impl Future<Output = Result<(), String>>) -> Result<(), String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?
        .block_on(command)
}
