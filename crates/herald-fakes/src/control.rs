//! The steering endpoints every fake serves beside its protocol: `GET /_fake/stats` and
//! `POST /_fake/behaviour`, for a staging user driving a running fake with curl.

use http::{Method, StatusCode};

use crate::behaviour::{Behaviour, BehaviourUpdate};
use crate::reply;
use crate::server::{FakeRequest, FakeResponse};

/// What the steering endpoints need from a fake.
pub(crate) trait Steerable {
    /// The counters `GET /_fake/stats` shows (and the handle's `stats()` returns).
    type Stats: serde::Serialize;
    fn behaviour(&self) -> &Behaviour;
    fn set_recording(&self, on: bool);
    fn stats(&self) -> Self::Stats;
}

/// The answer to a `/_fake/...` request, or `None` when `request` is for the protocol itself.
pub(crate) fn answer(fake: &impl Steerable, request: &FakeRequest) -> Option<FakeResponse> {
    let route = request.uri().path().strip_prefix("/_fake/")?;
    Some(match (request.method(), route) {
        (&Method::GET, "stats") => {
            let stats = serde_json::to_value(fake.stats()).expect("stats serialize");
            reply::json_value(StatusCode::OK, &stats)
        }
        (&Method::POST, "behaviour") => update_behaviour(fake, request.body()),
        (&Method::GET, "behaviour") => summary(fake),
        (_, "stats" | "behaviour") => {
            reply::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => reply::text(StatusCode::NOT_FOUND, "no such steering endpoint"),
    })
}

fn update_behaviour(fake: &impl Steerable, body: &[u8]) -> FakeResponse {
    let update: BehaviourUpdate = match serde_json::from_slice(body) {
        Ok(update) => update,
        Err(error) => {
            return reply::text(
                StatusCode::BAD_REQUEST,
                format!("bad behaviour JSON: {error}"),
            );
        }
    };
    if let Err(error) = fake.behaviour().apply(&update) {
        return reply::text(StatusCode::BAD_REQUEST, error);
    }
    if let Some(on) = update.recording {
        fake.set_recording(on);
    }
    summary(fake)
}

fn summary(fake: &impl Steerable) -> FakeResponse {
    let summary = serde_json::to_value(fake.behaviour().summary()).expect("summary serializes");
    reply::json_value(StatusCode::OK, &summary)
}
