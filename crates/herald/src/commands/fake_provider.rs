//! `herald fake-provider fcm|apns|webpush|webhook`: a fake push provider speaking the real
//! protocol over TLS and HTTP/2, for staging and benchmarks. It writes what a Herald pointed at it
//! needs (its CA certificate, the FCM service account, the APNs signing key) into `--out`.

use std::net::SocketAddr;
use std::path::PathBuf;

use herald_fakes::{ApnsConfig, FakeApns, FakeHandle, FcmConfig, TestCa};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Kind {
    Fcm,
    Apns,
    Webpush,
    Webhook,
}

#[derive(clap::Args)]
pub struct Args {
    kind: Kind,
    /// Address to listen on (port 0: any free port; the chosen URL is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Directory for ca.pem and, per kind, service-account.json (fcm) or apns-key.p8 (apns).
    #[arg(long, default_value = "./fake-provider")]
    out: PathBuf,
    /// FCM: a bearer token always accepted, for load generators such as h2load.
    #[arg(long, value_name = "TOKEN")]
    static_token: Option<String>,
    /// Webhook: the secret signatures are checked with.
    #[arg(long, default_value = "whsec_fake_provider_secret")]
    secret: String,
    /// Keep only counters, not copies of what arrives (for load tests).
    #[arg(long)]
    no_record: bool,
}

pub fn run(args: Args) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> Result<(), String> {
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let write = |name: &str, text: &str| -> Result<PathBuf, String> {
        let path = args.out.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    };
    // A new CA each start: Herald must be given the fresh ca.pem (`[tls] extra_ca`).
    let ca = TestCa::new();
    let ca_path = write("ca.pem", &ca.ca_pem())?;
    let io = |e: std::io::Error| format!("cannot start the fake on {}: {e}", args.listen);
    let record = !args.no_record;
    // Each arm keeps its handle alive until Ctrl-C: dropping it stops the fake.
    let (url, _handle): (String, Box<dyn std::any::Any + Send>) = match args.kind {
        Kind::Fcm => {
            let config = FcmConfig {
                static_access_token: args.static_token.clone(),
                ..FcmConfig::default()
            };
            let fake = herald_fakes::serve_fcm(args.listen, &ca, config)
                .await
                .map_err(io)?;
            fake.set_recording(record);
            let sa = write("service-account.json", &fake.service_account_json())?;
            println!(
                "[push.fcm]\ncredentials = {:?}\nendpoint = {:?}",
                sa,
                fake.url()
            );
            (fake.url(), Box::new(fake))
        }
        Kind::Apns => {
            let config = ApnsConfig::default();
            let key = write("apns-key.p8", FakeApns::signing_key_pem())?;
            println!(
                "[push.apns]\nkey_file = {key:?}\nkey_id = {:?}\nteam_id = {:?}\ntopic = {:?}",
                config.key_id, config.team_id, config.topics[0]
            );
            let fake = herald_fakes::serve_apns(args.listen, &ca, config)
                .await
                .map_err(io)?;
            fake.set_recording(record);
            println!("endpoint = {:?}", fake.url());
            (fake.url(), Box::new(fake))
        }
        Kind::Webpush => {
            let fake = herald_fakes::serve_webpush(args.listen, &ca)
                .await
                .map_err(io)?;
            fake.set_recording(record);
            println!("# Subscriptions: POST {}/_fake/subscribe", fake.url());
            (fake.url(), Box::new(fake))
        }
        Kind::Webhook => {
            let fake = herald_fakes::serve_webhook(args.listen, &ca, args.secret.clone())
                .await
                .map_err(io)?;
            fake.set_recording(record);
            println!(
                "[[webhooks]]\nurl = {:?}\nsecret = {:?}",
                fake.endpoint_url(),
                args.secret
            );
            (fake.url(), Box::new(fake))
        }
    };
    println!("\n[tls]\nextra_ca = {ca_path:?}");
    println!(
        "\n# listening on {url}; counters at {url}/_fake/stats; steer with POST {url}/_fake/behaviour"
    );
    // Lets a parent process (a benchmark) know the fake is up and where.
    write("url", &url)?;
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| format!("cannot wait for Ctrl-C: {e}"))?;
    Ok(())
}
