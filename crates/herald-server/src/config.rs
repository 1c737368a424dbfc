//! Server configuration: built-in defaults, then `herald.toml` (`--config`), then `HERALD_*`
//! environment variables (nested keys with `__`, e.g. `HERALD_LIMITS__MAX_BODY_BYTES`), then flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use herald_core::Limits;
use herald_core::policy::{Cap, PolicyDefaults};
use herald_push::PushConfig;
use herald_push::config::WebhookConfig;
use herald_store::{ChannelOptions, StoreOptions};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Data directory of the embedded store and generated secrets.
    pub data: PathBuf,
    /// Publisher API key. Without one, a key is generated into the data directory on first start.
    pub api_key: Option<String>,
    /// HS256 secret for user tokens. Without one, a secret is generated into the data directory.
    pub token_secret: Option<String>,
    /// PEM files of RS256 or ES256 public keys whose signed user tokens are also accepted.
    pub token_public_keys: Vec<PathBuf>,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `herald_server=debug,info`.
    pub log_level: String,
    pub limits: Limits,
    pub store: StoreOptions,
    pub stream: StreamOptions,
    /// `[channels]`: realtime channels' history, chunking and limits.
    pub channels: ChannelsConfig,
    pub workers: WorkerOptions,
    /// Seconds a shutdown waits for in-flight work before it gives up.
    pub shutdown_grace_seconds: u64,
    /// Use Redis as the store (`redis://[:password@]host:port[/db]`) instead of the embedded one.
    pub redis_url: Option<String>,
    /// This node's name among the Herald nodes sharing a Redis; stable across restarts and unique.
    pub node_id: String,
    /// Fan-out jobs another node took and left unfinished this long (ms) are taken over.
    pub redis_claim_idle_ms: u64,
    /// `[push]`: FCM, APNs, Web Push and how sends are retried.
    pub push: PushConfig,
    /// `[[webhooks]]`: URLs that receive notifications as signed JSON.
    pub webhooks: Vec<WebhookConfig>,
    pub tls: TlsOptions,
    /// Server-wide policy: overall caps per user and what categories leave unsaid.
    pub policy: PolicyDefaults,
}

/// `[tls]`: trust for outgoing connections (push providers, webhooks).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsOptions {
    /// A PEM file of CA certificates trusted besides the public roots (tests, staging).
    pub extra_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StreamOptions {
    /// Events buffered per live connection; a client that falls this far behind is disconnected
    /// and resumes from its last position when it reconnects.
    pub buffer: usize,
    /// Seconds between heartbeats on idle SSE and WebSocket connections.
    pub heartbeat_seconds: u64,
    /// Most events replayed on resume; past it the client is told to refetch.
    pub replay_max: usize,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            buffer: 256,
            heartbeat_seconds: 15,
            replay_max: 1000,
        }
    }
}

/// `[channels]`: realtime channels (`/v1/channels/{channel}/...`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelsConfig {
    /// How long a message stays in its channel's history.
    pub history_seconds: u64,
    /// Most messages kept per channel; the oldest are dropped past it.
    pub history_messages: usize,
    /// A channel with no message for this long is forgotten, positions included.
    pub idle_seconds: u64,
    /// Payload bytes per chunk: larger messages are stored and delivered in chunks this size.
    pub chunk_bytes: usize,
    /// Largest message body; larger uploads are refused with 413 and nothing is published.
    pub max_message_bytes: u64,
    /// Largest body of a batch publish.
    pub max_batch_bytes: usize,
    /// Bytes of small messages queued for one subscriber that it has not taken yet; past it the
    /// subscriber is cut off and resumes from its position.
    pub subscriber_buffer_bytes: usize,
}

impl Default for ChannelsConfig {
    fn default() -> Self {
        Self {
            history_seconds: 300,
            history_messages: 10_000,
            idle_seconds: 3600,
            chunk_bytes: 256 * 1024,
            max_message_bytes: 128 * 1024 * 1024,
            max_batch_bytes: 8 * 1024 * 1024,
            subscriber_buffer_bytes: 8 * 1024 * 1024,
        }
    }
}

impl ChannelsConfig {
    /// The store's share of these settings.
    pub fn store_options(&self) -> ChannelOptions {
        ChannelOptions {
            history_ms: (self.history_seconds as i64).saturating_mul(1000),
            history_messages: self.history_messages,
            idle_ms: (self.idle_seconds as i64).saturating_mul(1000),
            chunk_bytes: self.chunk_bytes,
            ..ChannelOptions::default()
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerOptions {
    /// Jobs a fan-out worker takes at once.
    pub fanout_batch: usize,
    /// Topic subscribers read per step of a topic fan-out (each step is checkpointed).
    pub topic_page: usize,
    /// How long a node's claim on a campaign it is sending holds without progress; then
    /// another node takes the campaign over from its last checkpoint.
    pub campaign_lease_ms: u64,
    /// How long an ended campaign's uploaded recipient list is kept; then it is deleted (its
    /// count stays in the report).
    pub campaign_recipients_keep_seconds: u64,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            fanout_batch: 512,
            topic_page: 2000,
            campaign_lease_ms: 15_000,
            campaign_recipients_keep_seconds: 24 * 3600,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            data: PathBuf::from("./herald-data"),
            api_key: None,
            token_secret: None,
            token_public_keys: Vec::new(),
            log_format: LogFormat::Text,
            log_level: "info,fjall=warn,lsm_tree=warn".into(),
            limits: Limits::default(),
            store: StoreOptions::default(),
            stream: StreamOptions::default(),
            channels: ChannelsConfig::default(),
            workers: WorkerOptions::default(),
            shutdown_grace_seconds: 10,
            redis_url: None,
            node_id: default_node_id(),
            redis_claim_idle_ms: 15_000,
            push: PushConfig::default(),
            webhooks: Vec::new(),
            tls: TlsOptions::default(),
            policy: PolicyDefaults::default(),
        }
    }
}

/// The host name: nodes on different machines get different names without configuration.
fn default_node_id() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "herald".into())
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

/// `HERALD_*` variables that belong to the `herald` client commands (`send`), not to the server's
/// configuration, so a shell that sets them can still run `herald serve`.
const CLIENT_VARIABLES: &[&str] = &["HERALD_SERVER"];

/// The `HERALD_*` variables. `HERALD_LOG` is the short name of `HERALD_LOG_LEVEL` (like `RUST_LOG`).
fn herald_environment() -> std::collections::HashMap<String, String> {
    let mut vars: std::collections::HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("HERALD_"))
        .collect();
    if let Some(level) = vars.remove("HERALD_LOG") {
        vars.entry("HERALD_LOG_LEVEL".into()).or_insert(level);
    }
    for client_only in CLIENT_VARIABLES {
        vars.remove(*client_only);
    }
    vars
}

impl Config {
    /// Defaults, then the file (if given), then `HERALD_*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            builder = builder.add_source(config::File::from(file).format(config::FileFormat::Toml));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("HERALD")
                .source(Some(herald_environment()))
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("token_public_keys"),
        );
        let built = builder.build().map_err(|e| ConfigError(e.to_string()))?;
        let config: Config = built
            .try_deserialize()
            .map_err(|e| ConfigError(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let bad = |what: &str| Err(ConfigError(what.to_owned()));
        if self.stream.buffer == 0 {
            return bad("stream.buffer must be at least 1");
        }
        if self.stream.heartbeat_seconds == 0 {
            return bad("stream.heartbeat_seconds must be at least 1");
        }
        if self.store.inbox_max == 0 || self.store.global_max == 0 {
            return bad("store.inbox_max and store.global_max must be at least 1");
        }
        let ch = &self.channels;
        if ch.history_seconds == 0 || ch.history_messages == 0 || ch.idle_seconds == 0 {
            return bad(
                "channels.history_seconds, channels.history_messages and channels.idle_seconds must be at least 1",
            );
        }
        if ch.chunk_bytes < 1024 || ch.chunk_bytes > 64 * 1024 * 1024 {
            return bad("channels.chunk_bytes must be between 1024 and 67108864");
        }
        if ch.max_message_bytes == 0 || ch.max_batch_bytes == 0 || ch.subscriber_buffer_bytes == 0 {
            return bad(
                "channels.max_message_bytes, channels.max_batch_bytes and channels.subscriber_buffer_bytes must be at least 1",
            );
        }
        if self.workers.fanout_batch == 0 || self.workers.topic_page == 0 {
            return bad("workers.fanout_batch and workers.topic_page must be at least 1");
        }
        if self.api_key.as_ref().is_some_and(|k| k.len() < 16) {
            return bad("api_key must be at least 16 characters");
        }
        if self.token_secret.as_ref().is_some_and(|k| k.len() < 32) {
            return bad("token_secret must be at least 32 characters");
        }
        if self.push.batch == 0 || self.push.max_in_flight == 0 || self.push.retry.max_attempts == 0
        {
            return bad(
                "push.batch, push.max_in_flight and push.retry.max_attempts must be at least 1",
            );
        }
        let mut caps = herald_core::validation::Checker::default();
        Cap::check_all(&mut caps, "policy.user_caps", &self.policy.user_caps);
        caps.finish().map_err(|e| ConfigError(e.to_string()))?;
        if self.policy.collapse_window_seconds == 0 {
            return bad("policy.collapse_window_seconds must be at least 1");
        }
        let mut names = std::collections::HashSet::new();
        for (i, hook) in self.webhooks.iter().enumerate() {
            let name = hook.name_at(i);
            if !names.insert(name.clone()) {
                return Err(ConfigError(format!("two webhooks are named {name:?}")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented example is a valid configuration, with its commented-out tables switched on.
    #[test]
    fn example_configuration_loads() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../herald.example.toml");
        let text = std::fs::read_to_string(&example).unwrap();
        // Uncomment `# key = value` lines and `# [table]` headers, as a user enabling them would.
        let enabled: String = text
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest) if is_setting(rest) => rest,
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.toml");
        std::fs::write(&path, &text).unwrap();
        let plain = Config::load(Some(&path)).unwrap();
        assert!(plain.push.fcm.is_none());
        std::fs::write(&path, &enabled).unwrap();
        let full = Config::load(Some(&path)).unwrap();
        let fcm = full.push.fcm.expect("[push.fcm] enabled");
        assert_eq!(fcm.endpoint, "https://fcm.googleapis.com");
        assert_eq!(fcm.limits.concurrency, 512);
        assert_eq!(full.push.apns.expect("[push.apns]").key_id, "ABC123DEFG");
        assert!(full.push.webpush.is_some());
        assert_eq!(full.webhooks.len(), 1);
        assert_eq!(full.webhooks[0].categories, ["billing"]);
        assert!(full.tls.extra_ca.is_some());
    }

    /// `[table]`, `[[table]]` or `key = value` (not prose, not the alternative Redis URLs).
    fn is_setting(text: &str) -> bool {
        if text.starts_with('[') {
            return true;
        }
        text.split_once(" = ").is_some_and(|(key, _)| {
            !["redis_url", "api_key", "token_secret"].contains(&key)
                && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        })
    }
}
