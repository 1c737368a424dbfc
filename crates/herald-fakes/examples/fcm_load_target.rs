//! A fake FCM to point a load generator at, until `herald fake-provider` exists:
//!
//! ```text
//! cargo run --release -p herald-fakes --example fcm_load_target -- 127.0.0.1:9443 30
//! h2load -n 200000 -c 4 -m 100 -H 'authorization: Bearer bench-token' \
//!   -d message.json https://127.0.0.1:9443/v1/projects/herald-test/messages:send
//! ```
//!
//! Arguments: listen address (default `127.0.0.1:9443`) and seconds to run (default 30).
//! Static token `bench-token`, recording off; prints the stats when done.

use std::net::SocketAddr;
use std::time::Duration;

use herald_fakes::{FcmConfig, TestCa, serve_fcm};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:9443".into())
        .parse()
        .expect("a socket address");
    let seconds: u64 = args
        .next()
        .map_or(30, |text| text.parse().expect("seconds"));

    let ca = TestCa::new();
    let config = FcmConfig {
        static_access_token: Some("bench-token".into()),
        ..FcmConfig::default()
    };
    let fcm = serve_fcm(addr, &ca, config).await?;
    fcm.set_recording(false);
    println!("fake FCM at {} for {seconds} s", fcm.send_url());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    println!(
        "{}",
        serde_json::to_string(&fcm.stats()).expect("stats serialize")
    );
    Ok(())
}
