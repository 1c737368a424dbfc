//! The HTTPS server under every fake: CA trust, protocol choice, shutdown on drop.

use std::sync::Arc;

use bytes::Bytes;
use herald_fakes::server::FakeResponse;
use herald_fakes::{HttpsListener, Protocols, TestCa};
use http_body_util::Full;

use crate::common::{http1_client, http2_client};

fn echo_path() -> herald_fakes::server::Handler {
    Arc::new(|request| {
        let path = request.uri().path().to_string();
        Box::pin(async move { FakeResponse::new(Full::new(Bytes::from(path))) })
    })
}

#[tokio::test]
async fn serves_both_protocols_and_stops_on_drop() {
    let ca = TestCa::new();
    let listener = HttpsListener::bind_loopback().await.expect("binds");
    let url = listener.url();
    assert!(url.starts_with("https://127.0.0.1:"));
    let server = listener.serve(&ca, Protocols::Http2AndHttp1, echo_path());
    assert_eq!(server.url(), url);

    for (client, version) in [
        (http2_client(&ca), reqwest::Version::HTTP_2),
        (http1_client(&ca), reqwest::Version::HTTP_11),
    ] {
        let response = client
            .get(format!("{url}/hello"))
            .send()
            .await
            .expect("answers");
        assert_eq!(response.version(), version);
        assert_eq!(response.text().await.expect("body"), "/hello");
    }

    // A client trusting another CA refuses the certificate.
    let stranger = http2_client(&TestCa::new());
    assert!(stranger.get(format!("{url}/hello")).send().await.is_err());

    drop(server);
    tokio::task::yield_now().await;
    let fresh = http2_client(&ca);
    assert!(
        fresh.get(format!("{url}/hello")).send().await.is_err(),
        "dropped servers stop"
    );
}

#[tokio::test]
async fn writes_the_ca_for_other_processes() {
    let ca = TestCa::new();
    let path = std::env::temp_dir().join(format!("herald-fakes-ca-{}.pem", std::process::id()));
    ca.write_ca_pem(&path).expect("writes");
    let written = std::fs::read_to_string(&path).expect("reads");
    std::fs::remove_file(&path).expect("removes");
    assert_eq!(written, ca.ca_pem());
    assert!(written.starts_with("-----BEGIN CERTIFICATE-----"));
}
