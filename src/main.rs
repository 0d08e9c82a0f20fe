//! `citygauge`: one binary, one subcommand per service. `main` only parses
//! configuration, starts telemetry and hands over to the libraries.

mod cli;
mod commands;
mod config_file;
mod dev;

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = match config_file::parse() {
        Ok(cli) => cli,
        Err(error) => {
            eprintln!("citygauge: {error:#}");
            return ExitCode::from(2);
        }
    };
    cli::init_tracing(&cli.log, cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("citygauge: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    runtime.spawn(cli::stop_on_signal(shutdown.clone()));
    match runtime.block_on(commands::run(cli.command, shutdown)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("citygauge: {error:#}");
            ExitCode::FAILURE
        }
    }
}
