//! `herald token USER`

use herald_server::auth::{issue_channel_token, token_secret};

use crate::ConfigArgs;

#[derive(clap::Args)]
pub struct Args {
    /// The user id the token is for (its `sub` claim).
    user: String,
    /// How long the token is valid: seconds, or with a unit (15m, 12h, 7d).
    #[arg(long, default_value = "24h")]
    ttl: String,
    /// A realtime channel the token may read: a name, or a prefix ending in `*`
    /// (`session:1234*`). Repeat for several.
    #[arg(long = "channel", value_name = "PATTERN")]
    channels: Vec<String>,
    #[command(flatten)]
    config: ConfigArgs,
}

pub fn run(args: Args) -> Result<(), String> {
    let config = super::load_config(&args.config)?;
    let ttl = super::parse_duration(&args.ttl)?;
    let secret = token_secret(&config).map_err(|e| e.to_string())?;
    println!(
        "{}",
        issue_channel_token(&secret, &args.user, ttl, &args.channels)?
    );
    Ok(())
}
