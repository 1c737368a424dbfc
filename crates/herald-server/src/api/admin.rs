//! `GET /v1/admin/overview` (API key): what the admin console shows at a glance — queue depths
//! per priority lane and how each push provider's sends went since this node started.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use herald_core::Priority;
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::Publisher;
use crate::problem::ApiResult;
use crate::state::AppState;
use crate::workers::push::stats::{self, ProviderCounts};

/// Items waiting in each priority lane.
#[derive(Serialize, ToSchema, Default)]
pub struct LaneDepths {
    pub high: u64,
    pub normal: u64,
    pub low: u64,
}

impl From<[u64; 3]> for LaneDepths {
    fn from(depths: [u64; 3]) -> Self {
        let mut lanes = LaneDepths::default();
        for (lane, depth) in Priority::LANES.iter().zip(depths) {
            match lane {
                Priority::High => lanes.high = depth,
                Priority::Normal => lanes.normal = depth,
                Priority::Low => lanes.low = depth,
            }
        }
        lanes
    }
}

#[derive(Serialize, ToSchema)]
pub struct Overview {
    /// Fan-out jobs waiting (shared by all nodes on one store).
    pub fanout_queue: LaneDepths,
    /// Push and webhook sends waiting in the outbox, due or not (shared by all nodes).
    pub push_queue: LaneDepths,
    /// Per provider (`fcm`, `apns`, `webpush`, `webhook`): answers this node got since it started.
    pub providers: BTreeMap<String, ProviderCounts>,
    /// Live SSE and WebSocket connections on this node.
    pub live_connections: usize,
    /// Realtime channel subscribers (SSE and WebSocket) on this node.
    pub channel_subscribers: usize,
    pub node: String,
    pub version: &'static str,
}

/// Queue depths per lane and per-provider delivery counts, for the admin console.
#[utoipa::path(
    get, path = "/v1/admin/overview", tag = "operations",
    responses((status = 200, body = Overview),
              (status = 403, body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn overview(
    State(state): State<AppState>,
    _publisher: Publisher,
) -> ApiResult<Json<Overview>> {
    let fanout_queue = state.store.queue_depths().await?.into();
    let push_queue = state.store.push_depths().await?.into();
    Ok(Json(Overview {
        fanout_queue,
        push_queue,
        providers: stats::snapshot()
            .into_iter()
            .map(|(name, counts)| (name.to_owned(), counts))
            .collect(),
        live_connections: state.hub.connections(),
        channel_subscribers: state.channel_hub.subscribers(),
        node: state.config.node_id.clone(),
        version: env!("CARGO_PKG_VERSION"),
    }))
}
