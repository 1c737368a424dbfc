//! Herald's server: the HTTP API, the realtime hub and the background workers, on top of a store.

pub mod api;
pub mod auth;
pub mod categories;
pub mod channels;
pub mod config;
pub mod hub;
pub mod metrics;
pub mod problem;
pub mod state;
pub mod web;
pub mod workers;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::serve::{Listener, ListenerExt};
use herald_store::{EmbeddedStore, RedisOptions, RedisStore, Store};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::{Auth, Secrets};
use crate::categories::Categories;
use crate::config::Config;
use crate::hub::Hub;
use crate::state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Setup(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Pending connections the kernel queues for us; reconnect storms after a restart need more than the default 128.
const LISTEN_BACKLOG: u32 = 4096;

fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Opens the configured store: Redis when `redis_url` is set, else the embedded store in the
/// data directory.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, ServerError> {
    let mut options = config.store.clone();
    options.channels = config.channels.store_options();
    if let Some(url) = &config.redis_url {
        let node = RedisOptions {
            node_id: config.node_id.clone(),
            claim_idle: Duration::from_millis(config.redis_claim_idle_ms),
        };
        let store = RedisStore::open(url, options, node).await.map_err(|e| {
            ServerError::Setup(format!("cannot use Redis at {}: {e}", redacted(url)))
        })?;
        tracing::info!(redis = %redacted(url), node = %config.node_id, "using the Redis store");
        return Ok(Arc::new(store));
    }
    let dir = config.data.join("store");
    let store = EmbeddedStore::open(&dir, options).map_err(|e| {
        ServerError::Setup(format!("cannot open the store in {}: {e}", dir.display()))
    })?;
    Ok(Arc::new(store))
}

/// A Redis URL without its password, for messages and logs.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Runs the server until `shutdown` resolves, then drains: stops accepting, ends live streams,
/// lets the fan-out worker finish its batch and syncs the store.
pub async fn serve(
    config: Config,
    secrets: Secrets,
    store: Arc<dyn Store>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let config = Arc::new(config);
    let auth = Auth::new(&secrets, &config.token_public_keys)
        .map_err(|e| ServerError::Setup(e.to_string()))?;
    let hub = Hub::new(config.stream.buffer);
    let channel_hub = channels::hub::ChannelHub::new(config.channels.subscriber_buffer_bytes);
    let (stop_tx, stop_rx) = watch::channel(false);
    let categories = Arc::new(Categories::new(store.clone()));
    let campaigns_wake = Arc::new(tokio::sync::Notify::new());
    let state = AppState {
        store: store.clone(),
        hub: hub.clone(),
        channel_hub: channel_hub.clone(),
        auth: Arc::new(auth),
        token_secret: secrets.token_secret.as_str().into(),
        config: config.clone(),
        categories: categories.clone(),
        campaigns_wake: campaigns_wake.clone(),
        ids: Arc::new(Mutex::new(ulid::Generator::new())),
        metrics: crate::metrics::install(),
        shutdown: stop_rx.clone(),
    };
    tokio::spawn(workers::housekeeping::dispatch_live(
        store.clone(),
        hub.clone(),
    ));
    tokio::spawn(channels::dispatch(store.clone(), channel_hub));
    tokio::spawn(workers::housekeeping::run(
        store.clone(),
        Duration::from_secs(config.workers.campaign_recipients_keep_seconds),
        stop_rx.clone(),
    ));
    let providers =
        Arc::new(workers::push::Providers::from_config(&config).map_err(ServerError::Setup)?);
    tracing::info!(providers = %providers.describe(), dry_run = config.push.dry_run, "push delivery");
    let policy = Arc::new(workers::policy::PolicyContext {
        categories: categories.clone(),
        defaults: config.policy.clone(),
    });
    let campaigns = tokio::spawn(
        workers::campaigns::CampaignWorker {
            store: store.clone(),
            providers: providers.clone(),
            policy: policy.clone(),
            node: config.node_id.clone(),
            wake: campaigns_wake.clone(),
            lease: Duration::from_millis(config.workers.campaign_lease_ms),
            warmed: Default::default(),
        }
        .run(stop_rx.clone()),
    );
    let fanout = tokio::spawn(workers::fanout::run(
        store.clone(),
        providers.clone(),
        policy,
        config.workers.clone(),
        stop_rx.clone(),
    ));
    let sender = tokio::spawn(workers::push::sender::run(
        store.clone(),
        providers,
        config.push.clone(),
        stop_rx.clone(),
    ));

    let listener = bind(config.listen)
        .map_err(|source| ServerError::Listen {
            addr: config.listen,
            source,
        })?
        .tap_io(|tcp| {
            // Live events are small writes that must leave at once.
            let _ = tcp.set_nodelay(true);
        });
    let local = listener
        .local_addr()
        .map_err(|e| ServerError::Setup(e.to_string()))?;
    tracing::info!(listen = %local, data = %config.data.display(), "herald is serving");

    let app = api::router(state);
    let stop_for_signal = stop_tx.clone();
    let graceful = async move {
        shutdown.await;
        tracing::info!("shutting down: draining connections and work in progress");
        let _ = stop_for_signal.send(true);
    };
    let served = axum::serve(listener, app.into_make_service()).with_graceful_shutdown(graceful);
    let mut stopped = stop_rx.clone();
    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    tokio::select! {
        result = served => {
            if let Err(e) = result {
                tracing::error!(error = %e, "server error");
            }
        }
        // Connections that outlive the grace period are abandoned.
        _ = async { let _ = stopped.wait_for(|s| *s).await; tokio::time::sleep(grace).await } => {
            tracing::warn!("connections still open after the grace period; closing anyway");
        }
    }
    let _ = stop_tx.send(true);
    if tokio::time::timeout(grace, fanout).await.is_err() {
        tracing::warn!(
            "fan-out did not finish within the grace period; it resumes on the next start"
        );
    }
    if tokio::time::timeout(grace, campaigns).await.is_err() {
        tracing::warn!("a campaign batch did not finish within the grace period; it repeats");
    }
    if tokio::time::timeout(grace, sender).await.is_err() {
        tracing::warn!(
            "push sends still in flight after the grace period; they repeat on the next start"
        );
    }
    if let Err(e) = store.close().await {
        tracing::error!(error = %e, "store did not close cleanly");
    }
    tracing::info!("stopped");
    Ok(())
}
