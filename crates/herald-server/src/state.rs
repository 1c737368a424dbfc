//! What every request handler can reach.

use std::sync::{Arc, Mutex};

use herald_store::Store;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;

use crate::auth::Auth;
use crate::categories::Categories;
use crate::channels::hub::ChannelHub;
use crate::config::Config;
use crate::hub::Hub;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub hub: Arc<Hub>,
    /// Realtime channel subscribers on this node.
    pub channel_hub: Arc<ChannelHub>,
    pub auth: Arc<Auth>,
    /// Signs the user tokens a publisher mints for its users (`POST /v1/users/{user}/token`).
    /// Never logged: `AppState` has no `Debug`.
    pub token_secret: Arc<str>,
    pub config: Arc<Config>,
    pub categories: Arc<Categories>,
    /// Tells this node's campaign worker that a campaign changed (started, resumed, uploaded).
    pub campaigns_wake: Arc<tokio::sync::Notify>,
    /// Monotonic ULIDs: ids made in the same millisecond still sort in accept order.
    pub ids: Arc<Mutex<ulid::Generator>>,
    pub metrics: PrometheusHandle,
    /// Turns true when the server begins shutting down; live streams end on it.
    pub shutdown: watch::Receiver<bool>,
}

impl AppState {
    pub fn next_id(&self) -> String {
        let mut ids = self.ids.lock().expect("id generator lock");
        match ids.generate() {
            Ok(id) => id.to_string(),
            // Only when more than 2^80 ids fall into one millisecond: take a fresh random one.
            Err(_) => ulid::Ulid::new().to_string(),
        }
    }
}
