//! How an embedded file is answered: content type, caching, and the security headers.

use std::sync::LazyLock;

use axum::body::Body;
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG,
    IF_NONE_MATCH, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use sha2::{Digest, Sha256};

use super::assets::{ASSETS, Asset, Kind};

/// The pages load only their own scripts and styles and talk only to this server. No inline
/// script or style is allowed, so injected markup cannot run; the bell styles its shadow DOM
/// through a constructed stylesheet, which CSP does not count as inline.
pub const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; worker-src 'self'; manifest-src 'self'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Strong validators, one per file (same order as [`ASSETS`]): browsers revalidate on every
/// load (`no-cache`), and a new binary with changed files is seen at once.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let digest = Sha256::digest(a.body);
            HeaderValue::from_str(&format!("\"{}\"", hex::encode(&digest[..12])))
                .expect("hex is a valid header value")
        })
        .collect()
});

fn content_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Html => "text/html; charset=utf-8",
        Kind::Script | Kind::ServiceWorker => "text/javascript; charset=utf-8",
        // TypeScript declarations are text a tool downloads; there is no registered type.
        Kind::Types => "application/typescript; charset=utf-8",
        Kind::Css => "text/css; charset=utf-8",
    }
}

pub fn respond(asset: &'static Asset, request: &HeaderMap) -> Response {
    let index = ASSETS
        .iter()
        .position(|a| std::ptr::eq(a, asset))
        .expect("an embedded asset");
    let etag = ETAGS[index].clone();
    let unchanged = request.get(IF_NONE_MATCH).is_some_and(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii() == etag.as_bytes())
    });
    let mut response = if unchanged {
        Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
    } else {
        Response::builder()
            .status(StatusCode::OK)
            .header(CONTENT_TYPE, content_type(asset.kind))
            .body(Body::from(asset.body))
    }
    .expect("static response parts are valid");
    let headers = response.headers_mut();
    headers.insert(ETAG, etag);
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    match asset.kind {
        Kind::Html => {
            headers.insert(
                CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(PAGE_POLICY),
            );
            headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
            headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        }
        Kind::ServiceWorker => {
            // Registered with scope `/` from `/sdk/`, so it can show pushes for the whole site.
            headers.insert("service-worker-allowed", HeaderValue::from_static("/"));
        }
        // Public code and types: a product page on another origin may import them as modules.
        Kind::Script | Kind::Types => {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        }
        Kind::Css => {}
    }
    response
}
