//! `herald serve`

use std::net::SocketAddr;

use herald_server::auth::Secrets;
use herald_server::config::{Config, LogFormat};
use tracing_subscriber::EnvFilter;

use crate::ConfigArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    /// Address to listen on [default: 127.0.0.1:8080, env: HERALD_LISTEN]
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Use Redis as the store, e.g. redis://127.0.0.1:6379 [env: HERALD_REDIS_URL]
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// Run the whole pipeline but deliver no push: FCM validates only, APNs, Web Push and
    /// webhooks are not called [env: HERALD_PUSH__DRY_RUN]
    #[arg(long)]
    dry_run: bool,
}

pub fn run(args: Args) -> Result<(), String> {
    let mut config = super::load_config(&args.config)?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if args.redis.is_some() {
        config.redis_url = args.redis;
    }
    if args.dry_run {
        config.push.dry_run = true;
    }
    init_logging(&config);
    let secrets = Secrets::load_or_generate(&config).map_err(|e| e.to_string())?;
    if let Some(path) = &secrets.generated_api_key {
        // Shown once, on the start that creates it; later starts only say where it is.
        println!(
            "Generated a publisher API key (saved in {}):",
            path.display()
        );
        println!("  {}", secrets.api_key);
        println!(
            "Send it as `Authorization: Bearer <key>`. Set HERALD_API_KEY to choose your own."
        );
    } else if config.api_key.is_none() {
        println!(
            "Publisher API key: in {}",
            config.data.join("api_key").display()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let store = herald_server::open_store(&config)
            .await
            .map_err(|e| e.to_string())?;
        println!("Herald listening on http://{}", config.listen);
        herald_server::serve(config, secrets, store, shutdown_signal())
            .await
            .map_err(|e| e.to_string())
    })
}

fn init_logging(config: &Config) {
    let filter = EnvFilter::new(&config.log_level);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
