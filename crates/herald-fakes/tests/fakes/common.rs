//! Clients and helpers shared by the tests.

use std::time::Duration;

use herald_fakes::TestCa;
use serde_json::Value;

/// A client trusting only `ca`, offering only `h2` in ALPN.
pub fn http2_client(ca: &TestCa) -> reqwest::Client {
    client_with_alpn(ca, &[b"h2"])
}

/// A client trusting only `ca`, offering only `http/1.1` in ALPN.
pub fn http1_client(ca: &TestCa) -> reqwest::Client {
    client_with_alpn(ca, &[b"http/1.1"])
}

fn client_with_alpn(ca: &TestCa, alpn: &[&[u8]]) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(ca.client_config(alpn))
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client builds")
}

/// Status, headers and JSON body (Null when empty or not JSON) of a response.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub version: reqwest::Version,
    pub json: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

pub async fn answer(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("request completes");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let version = response.version();
    let bytes = response.bytes().await.expect("body reads");
    Answer {
        status,
        headers,
        version,
        json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}
