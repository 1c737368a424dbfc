//! `herald campaign`: create, upload to, start, steer and watch campaigns on a running server,
//! through its HTTP API.

mod create;
mod watch;

use std::net::SocketAddr;
use std::path::Path;

use serde_json::Value;

use super::http::{Connection, Response, parse_server};
use crate::ConfigArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Create a campaign, upload its users and start it (or leave it scheduled with --at).
    Create(create::Args),
    /// Follow a campaign until it completes (exit 0) or is cancelled (exit 1).
    Watch(watch::Args),
    /// Campaigns, newest first.
    List(ListArgs),
    /// One campaign as JSON.
    Show(IdArgs),
    /// Append users from a file to a campaign's list (again after a broken upload: nobody is
    /// listed twice).
    Upload(UploadArgs),
    /// Start a draft, or a scheduled campaign ahead of its time.
    Start(IdArgs),
    /// Pause: nothing more is sent until resume.
    Pause(IdArgs),
    /// Resume a paused campaign where it stopped.
    Resume(IdArgs),
    /// Cancel for good.
    Cancel(IdArgs),
}

/// Where the server is and how to authenticate, shared by every subcommand.
#[derive(clap::Args)]
struct Remote {
    /// Server URL.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "HERALD_SERVER")]
    server: String,
    /// Publisher API key [default: HERALD_API_KEY, else the data directory's api_key file]
    #[arg(long)]
    api_key: Option<String>,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(clap::Args)]
struct IdArgs {
    /// The campaign id.
    id: String,
    #[command(flatten)]
    remote: Remote,
}

#[derive(clap::Args)]
struct ListArgs {
    /// At most this many (1 to 100).
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// Campaigns created before this one (the id `list` suggests for the next page).
    #[arg(long, value_name = "ID")]
    before: Option<String>,
    /// Print the server's JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: Remote,
}

#[derive(clap::Args)]
struct UploadArgs {
    id: String,
    /// User ids: `.csv` (a header names the id column), `.ndjson`/`.jsonl`, else one a line.
    file: std::path::PathBuf,
    /// The CSV column holding user ids [default: user_id, user or id].
    #[arg(long)]
    column: Option<String>,
    #[command(flatten)]
    remote: Remote,
}

pub fn run(args: Args) -> Result<(), String> {
    match args.command {
        Command::Create(args) => create::run(args),
        Command::Watch(args) => watch::run(args),
        Command::List(args) => list(args),
        Command::Show(args) => {
            let view = Client::new(&args.remote)?.call("GET", &campaign_path(&args.id, ""))?;
            println!("{}", pretty(&view));
            Ok(())
        }
        Command::Upload(args) => {
            let client = Client::new(&args.remote)?;
            let report = client.upload(&args.id, &args.file, args.column.as_deref())?;
            println!("{}", upload_report(&args.file, &report));
            Ok(())
        }
        Command::Start(args) => act(args, "start"),
        Command::Pause(args) => act(args, "pause"),
        Command::Resume(args) => act(args, "resume"),
        Command::Cancel(args) => act(args, "cancel"),
    }
}

fn list(args: ListArgs) -> Result<(), String> {
    let mut path = format!("/v1/campaigns?limit={}", args.limit);
    if let Some(before) = &args.before {
        path.push_str(&format!("&before={}", encode(before)));
    }
    let page = Client::new(&args.remote)?.call("GET", &path)?;
    if args.json {
        println!("{}", pretty(&page));
        return Ok(());
    }
    println!(
        "{:<26}  {:<9}  {:>15}  NAME",
        "ID", "STATE", "DONE/RECIPIENTS"
    );
    for c in page["campaigns"].as_array().into_iter().flatten() {
        println!(
            "{:<26}  {:<9}  {:>15}  {}",
            text(&c["id"]),
            text(&c["state"]),
            format!("{}/{}", c["done"], c["recipients"]),
            text(&c["name"])
        );
    }
    if let Some(next) = page["next"].as_str() {
        println!("(more: herald campaign list --before {next})");
    }
    Ok(())
}

fn act(args: IdArgs, action: &str) -> Result<(), String> {
    let view = Client::new(&args.remote)?.call("POST", &campaign_path(&args.id, action))?;
    println!("{} {}", text(&view["id"]), text(&view["state"]));
    Ok(())
}

/// A blocking client: each call opens its own connection, so a watch polling every minute
/// never meets a keep-alive connection the server has closed meanwhile.
struct Client {
    addr: SocketAddr,
    server: String,
    key: String,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    fn new(remote: &Remote) -> Result<Self, String> {
        Ok(Self {
            addr: parse_server(&remote.server)?,
            server: remote.server.clone(),
            key: super::api_key(remote.api_key.as_deref(), &remote.config)?,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?,
        })
    }

    /// A request without a body; the answer's JSON, or the server's problem as the error.
    fn call(&self, method: &str, path: &str) -> Result<Value, String> {
        self.call_with(method, path, None)
    }

    fn call_with(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let body = body.map(|b| b.to_string());
        let response = self.runtime.block_on(async {
            self.connect()
                .await?
                .request(
                    method,
                    path,
                    Some(&self.key),
                    body.as_deref().map(str::as_bytes),
                )
                .await
                .map_err(|e| format!("{method} {path}: {e}"))
        })?;
        answer(response)
    }

    /// Streams `file` into the campaign's recipient list; the upload report.
    fn upload(&self, id: &str, file: &Path, column: Option<&str>) -> Result<Value, String> {
        let mut path = campaign_path(id, "recipients");
        if let Some(column) = column {
            path.push_str(&format!("?column={}", encode(column)));
        }
        let response = self.runtime.block_on(async {
            let body = tokio::fs::File::open(file)
                .await
                .map_err(|e| format!("{}: {e}", file.display()))?;
            self.connect()
                .await?
                .request_streamed("PUT", &path, Some(&self.key), content_type(file), body)
                .await
                .map_err(|e| format!("uploading {}: {e}", file.display()))
        })?;
        answer(response)
    }

    async fn connect(&self) -> Result<Connection, String> {
        Connection::open(self.addr)
            .await
            .map_err(|e| format!("cannot reach {}: {e}", self.server))
    }
}

/// A success's JSON, or the problem's `detail` and field errors.
fn answer(response: Response) -> Result<Value, String> {
    let json = serde_json::from_slice::<Value>(&response.body);
    if (200..300).contains(&response.status) {
        return json.map_err(|e| format!("the server's answer is not JSON: {e}"));
    }
    let Ok(problem) = json else {
        let text = String::from_utf8_lossy(&response.body);
        return Err(format!("server answered {}: {text}", response.status));
    };
    let detail = match problem["detail"].as_str() {
        Some(detail) => detail.to_owned(),
        None => problem.to_string(),
    };
    let mut message = format!("server answered {}: {detail}", response.status);
    // Validation problems may already list their fields in `detail`; each is said once.
    for error in problem["errors"].as_array().into_iter().flatten() {
        let line = format!("{}: {}", text(&error["field"]), text(&error["message"]));
        if !detail.contains(&line) {
            message.push_str(&format!("\n  {line}"));
        }
    }
    Err(message)
}

/// The upload's format, by the file's extension.
fn content_type(file: &Path) -> &'static str {
    let extension = file.extension().and_then(|e| e.to_str()).unwrap_or("");
    match extension.to_ascii_lowercase().as_str() {
        "csv" => "text/csv",
        "ndjson" | "jsonl" => "application/x-ndjson",
        _ => "text/plain",
    }
}

/// `users.csv: 3 added, 1 duplicate, 1 malformed (line 5: ...); 3 recipients`, with the
/// first malformed lines, for a person fixing the file.
fn upload_report(file: &Path, report: &Value) -> String {
    const SHOWN: usize = 5;
    let mut out = format!(
        "{}: {} added, {} duplicates, {} malformed; {} recipients",
        file.display(),
        report["added"],
        report["duplicates"],
        report["malformed"],
        report["recipients"]
    );
    let lines = report["malformed_lines"].as_array().map_or(&[][..], |l| l);
    for line in lines.iter().take(SHOWN) {
        out.push_str(&format!(
            "\n  line {}: {}",
            line["line"],
            text(&line["reason"])
        ));
    }
    let more = report["malformed"].as_u64().unwrap_or(0) as usize;
    if more > SHOWN.min(lines.len()) {
        out.push_str(&format!("\n  and {} more", more - SHOWN.min(lines.len())));
    }
    out
}

/// `/v1/campaigns/{id}` or `/v1/campaigns/{id}/{action}`.
fn campaign_path(id: &str, action: &str) -> String {
    let mut path = format!("/v1/campaigns/{}", encode(id));
    if !action.is_empty() {
        path.push('/');
        path.push_str(action);
    }
    path
}

/// Percent-encodes a path segment or query value (ids come from the command line).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A JSON string without its quotes (anything else as JSON).
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn formats_follow_the_extension() {
        assert_eq!(content_type(Path::new("a/users.CSV")), "text/csv");
        assert_eq!(content_type(Path::new("u.jsonl")), "application/x-ndjson");
        assert_eq!(content_type(Path::new("u.ndjson")), "application/x-ndjson");
        assert_eq!(content_type(Path::new("users")), "text/plain");
    }

    #[test]
    fn problems_show_their_detail_and_fields() {
        let body = json!({"type": "urn:herald:problem:validation", "status": 422,
            "detail": "the request is invalid",
            "errors": [{"field": "message.title", "message": "must not be empty"}]});
        let err = answer(Response {
            status: 422,
            body: body.to_string().into_bytes(),
        })
        .unwrap_err();
        assert_eq!(
            err,
            "server answered 422: the request is invalid\n  message.title: must not be empty"
        );
        let listed = json!({"status": 422, "detail": "name: too long; message.title: empty",
            "errors": [{"field": "name", "message": "too long"},
                       {"field": "message.title", "message": "empty"}]});
        let err = answer(Response {
            status: 422,
            body: listed.to_string().into_bytes(),
        })
        .unwrap_err();
        assert_eq!(
            err,
            "server answered 422: name: too long; message.title: empty"
        );
    }

    #[test]
    fn the_report_names_the_first_malformed_lines() {
        let report = json!({"added": 3, "duplicates": 1, "malformed": 7, "recipients": 3,
            "malformed_lines": (1..=7).map(|i| json!({"line": i, "reason": "bad"})).collect::<Vec<_>>()});
        let text = upload_report(Path::new("u.csv"), &report);
        assert!(text.starts_with("u.csv: 3 added, 1 duplicates, 7 malformed; 3 recipients"));
        assert!(text.contains("\n  line 5: bad") && !text.contains("line 6"));
        assert!(text.ends_with("and 2 more"), "{text}");
        assert_eq!(encode("a b/ü"), "a%20b%2F%C3%BC");
    }
}
