//! The `herald` command. Each subcommand lives in `commands/`; this file only dispatches.

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "Herald: a notification platform in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options every command that reads configuration shares.
#[derive(clap::Args, Clone)]
pub struct ConfigArgs {
    /// Configuration file (TOML). Environment variables HERALD_* override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory [default: ./herald-data, env: HERALD_DATA]
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(commands::serve::Args),
    /// Print a user token (JWT) signed with the server's token secret.
    Token(commands::token::Args),
    /// Publish a notification to a running server.
    Send(commands::send::Args),
    /// Create, start, steer and watch campaigns on a running server.
    Campaign(commands::campaign::Args),
    /// Run a benchmark against a freshly started server and print figures.
    Bench(commands::bench::Args),
    /// Generate a VAPID key pair for Web Push.
    VapidKeys(commands::vapid_keys::Args),
    /// Run a fake FCM, APNs, Web Push or webhook receiver (real protocol, TLS, HTTP/2) for staging.
    FakeProvider(commands::fake_provider::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => commands::serve::run(args),
        Command::Token(args) => commands::token::run(args),
        Command::Send(args) => commands::send::run(args),
        Command::Campaign(args) => commands::campaign::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::VapidKeys(args) => commands::vapid_keys::run(args),
        Command::FakeProvider(args) => commands::fake_provider::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("herald: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
