//! `herald campaign create`: one command from a file of users to a running campaign.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::{Client, Remote, campaign_path, pretty, text, upload_report};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("audience").required(true).args(["users", "topic", "all"])))]
pub struct Args {
    #[arg(long)]
    title: String,
    #[arg(long, default_value = "")]
    body: String,
    /// The campaign's name [default: the title]
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    category: Option<String>,
    /// high, normal or low [default: the server's]
    #[arg(long)]
    priority: Option<String>,
    /// Comma-separated: inbox, realtime, push, webhook [default: all configured]
    #[arg(long, value_delimiter = ',')]
    channels: Vec<String>,
    /// At most this many recipients a second.
    #[arg(long, value_name = "N")]
    rate: Option<u32>,
    /// Run everything without delivering push.
    #[arg(long)]
    dry_run: bool,
    /// Users from a file, streamed: `.csv` (a header names the id column),
    /// `.ndjson`/`.jsonl`, else one user id a line.
    #[arg(long, value_name = "FILE")]
    users: Option<PathBuf>,
    /// The CSV column holding user ids [default: user_id, user or id]
    #[arg(long, requires = "users")]
    column: Option<String>,
    /// A topic's subscribers when the campaign is sent.
    #[arg(long, value_name = "NAME")]
    topic: Option<String>,
    /// Everyone.
    #[arg(long)]
    all: bool,
    /// Send then (RFC 3339, e.g. 2026-12-01T18:30:00Z) instead of now.
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
    /// Print the campaign as JSON instead of its id.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: Remote,
}

pub fn run(args: Args) -> Result<(), String> {
    // A missing file is found before a campaign is left behind for it.
    if let Some(file) = &args.users {
        std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    }
    let client = Client::new(&args.remote)?;
    let mut view = client.call_with("POST", "/v1/campaigns", Some(&request(&args)))?;
    let id = text(&view["id"]);
    // What goes to stderr is for people; stdout carries only the id (or the JSON), so that
    // `id=$(herald campaign create ...)` works.
    eprintln!("created campaign {id} ({})", text(&view["state"]));
    if let Some(file) = &args.users {
        let report = client
            .upload(&id, file, args.column.as_deref())
            .map_err(|e| {
                format!(
                    "{e}\nthe campaign {id} is still {}: `herald campaign upload {id} FILE` \
                     adds what is missing, `herald campaign cancel {id}` drops it",
                    text(&view["state"])
                )
            })?;
        eprintln!("{}", upload_report(file, &report));
    }
    if args.at.is_none() {
        view = client
            .call("POST", &campaign_path(&id, "start"))
            .map_err(|e| format!("{e}\nthe campaign {id} was created but not started"))?;
        eprintln!("started; follow it with `herald campaign watch {id}`");
    } else {
        eprintln!("scheduled for {}", text(&view["send_at"]));
    }
    if args.json {
        println!("{}", pretty(&view));
    } else {
        println!("{id}");
    }
    Ok(())
}

/// The `POST /v1/campaigns` body; the server validates every field.
fn request(args: &Args) -> Value {
    let mut message = json!({ "title": args.title, "body": args.body });
    if let Some(category) = &args.category {
        message["category"] = json!(category);
    }
    if let Some(priority) = &args.priority {
        message["priority"] = json!(priority);
    }
    if !args.channels.is_empty() {
        message["channels"] = json!(args.channels);
    }
    let audience = match (&args.topic, args.all) {
        (Some(topic), _) => json!({ "topic": topic }),
        (None, true) => json!("all"),
        (None, false) => json!("list"),
    };
    let mut body = json!({
        "name": args.name.as_deref().unwrap_or(&args.title),
        "message": message,
        "audience": audience,
        "dry_run": args.dry_run,
    });
    if let Some(at) = &args.at {
        body["send_at"] = json!(at);
    }
    if let Some(rate) = args.rate {
        body["rate_per_second"] = json!(rate);
    }
    body
}
