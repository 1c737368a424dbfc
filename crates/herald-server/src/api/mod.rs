//! The HTTP API under `/v1`, plus operations endpoints. Routes and their OpenAPI description
//! come from the same handler annotations, so the served document cannot drift from the server.

pub mod admin;
pub mod campaigns;
pub mod categories;
pub mod channels;
pub mod deliveries;
pub mod devices;
pub mod extract;
pub mod inbox;
pub mod live;
pub mod ops;
pub mod preferences;
pub mod publish;
pub mod stream;
pub mod tokens;
pub mod topics;
pub mod webpush;
pub mod ws;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::problem::Problem;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Herald", description = "Notification platform: publish, inbox, live delivery."),
    modifiers(&Security),
    tags(
        (name = "publish", description = "Product services publish notifications (API key)"),
        (name = "topics", description = "Topic subscriptions (API key)"),
        (name = "devices", description = "Devices that receive push (user token; admin twin with API key)"),
        (name = "inbox", description = "Notification center (user token; admin twin with API key)"),
        (name = "campaigns", description = "Campaigns: an audience of any size at a chosen time (API key)"),
        (name = "policy", description = "Categories (API key), user preferences (user token; admin twin with API key) and delivery decisions"),
        (name = "live", description = "Live delivery over SSE and WebSocket (user token)"),
        (name = "channels", description = "Realtime channels: publish any bytes (API key); read over SSE or WebSocket (user token with a channels claim)"),
        (name = "operations", description = "Health and metrics"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        let mut token = Http::new(HttpAuthScheme::Bearer);
        token.bearer_format = Some("JWT".into());
        components.add_security_scheme("user_token", SecurityScheme::Http(token));
    }
}

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(publish::publish))
        .routes(routes!(publish::get_notification))
        .routes(routes!(topics::subscribe, topics::unsubscribe))
        .routes(routes!(topics::bulk, topics::list))
        .routes(routes!(inbox::my_notifications))
        .routes(routes!(inbox::my_unread))
        .routes(routes!(inbox::mark_read))
        .routes(routes!(inbox::mark_all_read))
        .routes(routes!(inbox::archive))
        .routes(routes!(inbox::user_notifications))
        .routes(routes!(devices::register_mine, devices::list_mine))
        .routes(routes!(devices::remove_mine))
        .routes(routes!(devices::register_for_user, devices::list_for_user))
        .routes(routes!(devices::remove_for_user))
        .routes(routes!(publish::dead_letters))
        .routes(routes!(categories::list_categories))
        .routes(routes!(
            categories::put_category,
            categories::get_category,
            categories::delete_category
        ))
        .routes(routes!(preferences::get_mine, preferences::put_mine))
        .routes(routes!(
            preferences::get_for_user,
            preferences::put_for_user
        ))
        .routes(routes!(deliveries::user_deliveries))
        .routes(routes!(campaigns::create, campaigns::list))
        .routes(routes!(campaigns::get))
        .routes(routes!(campaigns::upload))
        .routes(routes!(campaigns::start))
        .routes(routes!(campaigns::pause))
        .routes(routes!(campaigns::resume))
        .routes(routes!(campaigns::cancel))
        .routes(routes!(stream::stream))
        .routes(routes!(ws::websocket))
        .merge(channel_routes())
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::metrics))
        .routes(routes!(tokens::mint))
        .routes(routes!(admin::overview))
        .routes(routes!(webpush::vapid_public_key))
        .split_for_parts();
    // Shared bytes, not a String: axum clones handlers (and the router, per connection).
    let document = bytes::Bytes::from(
        openapi
            .to_pretty_json()
            .expect("the OpenAPI document serializes"),
    );
    router
        .merge(crate::web::router())
        .route(
            "/v1/openapi.json",
            get(move || async move { ([("content-type", "application/json")], document) }),
        )
        .fallback(|| async {
            Problem::not_found("no such route; see /v1/openapi.json for the API")
        })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "this route does not take that method; see /v1/openapi.json",
            )
        })
        .layer(DefaultBodyLimit::max(state.config.limits.max_body_bytes))
        .layer(middleware::from_fn(observe))
        .with_state(state)
}

/// Realtime channels. Their publish bodies are streamed and limited by `[channels]`, not by
/// `limits.max_body_bytes`.
fn channel_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(channels::publish))
        .routes(routes!(channels::publish_batch))
        .routes(routes!(channels::stream))
        .routes(routes!(channels::websocket))
        .layer(DefaultBodyLimit::disable())
}

/// Request metrics and a debug log line. Query strings are never logged: they may hold tokens.
async fn observe(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await.into_response();
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    metrics::histogram!("herald_http_request_seconds", "route" => route.clone())
        .record(elapsed.as_secs_f64());
    metrics::counter!("herald_http_requests_total", "route" => route.clone(), "status" => status.to_string()).increment(1);
    tracing::debug!(%method, %route, status, micros = elapsed.as_micros() as u64, "request");
    response
}
