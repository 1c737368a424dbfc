//! The browser face of Herald, carried inside the binary: the SDK (`/sdk/...`), the bell demo
//! (`/demo`) and the admin console (`/admin`). The files live in `crates/herald-server/web/` and
//! are embedded at compile time, so there is nothing to deploy next to the binary and no build
//! step: they are plain ES modules.

mod assets;
mod headers;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;

use crate::state::AppState;
use assets::ASSETS;

/// Routes for every embedded file (and `/demo/`, `/admin/` for their pages).
pub fn router() -> Router<AppState> {
    let mut router = Router::new();
    for asset in ASSETS {
        for url in asset.urls {
            router = router.route(
                url,
                get(move |request: HeaderMap| async move { headers::respond(asset, &request) }),
            );
        }
    }
    router
}
