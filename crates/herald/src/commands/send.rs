//! `herald send`: publish a notification to a running server.

use serde_json::{Value, json};

use super::http::{Connection, parse_server};
use crate::ConfigArgs;

#[derive(clap::Args)]
pub struct Args {
    /// Server URL.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "HERALD_SERVER")]
    server: String,
    /// Publisher API key [default: HERALD_API_KEY, else the data directory's api_key file]
    #[arg(long)]
    api_key: Option<String>,
    /// Comma-separated user ids.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["topic", "all"])]
    to: Vec<String>,
    /// A topic's subscribers.
    #[arg(long, conflicts_with = "all")]
    topic: Option<String>,
    /// Everyone.
    #[arg(long)]
    all: bool,
    #[arg(long)]
    title: String,
    #[arg(long, default_value = "")]
    body: String,
    #[arg(long)]
    category: Option<String>,
    /// high, normal or low.
    #[arg(long, default_value = "normal")]
    priority: String,
    /// The notification's `data`: a JSON object handed to clients as is.
    #[arg(long, value_name = "JSON")]
    payload: Option<String>,
    #[arg(long)]
    idempotency_key: Option<String>,
    #[command(flatten)]
    config: ConfigArgs,
}

pub fn run(args: Args) -> Result<(), String> {
    let to = match (&args.to[..], &args.topic, args.all) {
        ([], None, true) => json!({ "all": true }),
        ([], Some(topic), false) => json!({ "topic": topic }),
        (users, None, false) if !users.is_empty() => json!({ "users": users }),
        _ => return Err("say who it is for: --to USER[,USER...], --topic NAME or --all".into()),
    };
    let mut body =
        json!({ "to": to, "title": args.title, "body": args.body, "priority": args.priority });
    if let Some(category) = &args.category {
        body["category"] = json!(category);
    }
    if let Some(payload) = &args.payload {
        body["data"] = serde_json::from_str::<Value>(payload)
            .map_err(|e| format!("--payload is not JSON: {e}"))?;
    }
    if let Some(key) = &args.idempotency_key {
        body["idempotency_key"] = json!(key);
    }
    let key = super::api_key(args.api_key.as_deref(), &args.config)?;
    let addr = parse_server(&args.server)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let response = runtime.block_on(async {
        let mut conn = Connection::open(addr)
            .await
            .map_err(|e| format!("cannot reach {}: {e}", args.server))?;
        conn.request(
            "POST",
            "/v1/notifications",
            Some(&key),
            Some(body.to_string().as_bytes()),
        )
        .await
        .map_err(|e| e.to_string())
    })?;
    let text = String::from_utf8_lossy(&response.body);
    if response.status == 202 {
        println!("{text}");
        Ok(())
    } else {
        Err(format!("server answered {}: {text}", response.status))
    }
}
