//! A real SSE client over reqwest's streaming body, parsing events as browsers do.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// What the reader task saw: events, comments (heartbeats), and the end of the stream.
#[derive(Debug)]
pub enum Seen {
    Event(SseEvent),
    Comment(String),
    End,
}

pub struct SseClient {
    pub rx: mpsc::UnboundedReceiver<Seen>,
    pub last_id: Option<String>,
}

impl SseClient {
    pub async fn connect(url: &str, bearer: Option<&str>, last_event_id: Option<&str>) -> Self {
        Self::from_response(Self::request(url, bearer, last_event_id).await)
    }

    /// Opens the stream without reading it yet (a slow client).
    pub async fn request(
        url: &str,
        bearer: Option<&str>,
        last_event_id: Option<&str>,
    ) -> reqwest::Response {
        let client = super::http_client().build().unwrap();
        let mut request = client.get(url).header("accept", "text/event-stream");
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            200,
            "stream refused: {}",
            response.text().await.unwrap()
        );
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        response
    }

    /// Starts reading an opened stream.
    pub fn from_response(response: reqwest::Response) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut body = response.bytes_stream();
            let mut buf = String::new();
            let mut current = SseEvent {
                id: None,
                event: "message".into(),
                data: String::new(),
            };
            while let Some(chunk) = body.next().await {
                let Ok(chunk) = chunk else { break };
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find('\n') {
                    let line: String = buf.drain(..=end).collect();
                    let line = line.trim_end_matches(['\n', '\r']);
                    if line.is_empty() {
                        if !current.data.is_empty() || current.id.is_some() {
                            let done = std::mem::replace(
                                &mut current,
                                SseEvent {
                                    id: None,
                                    event: "message".into(),
                                    data: String::new(),
                                },
                            );
                            let _ = tx.send(Seen::Event(done));
                        }
                    } else if let Some(comment) = line.strip_prefix(':') {
                        let _ = tx.send(Seen::Comment(comment.trim().to_owned()));
                    } else {
                        let (field, value) = line.split_once(':').unwrap_or((line, ""));
                        let value = value.strip_prefix(' ').unwrap_or(value);
                        match field {
                            "id" => current.id = Some(value.to_owned()),
                            "event" => current.event = value.to_owned(),
                            "data" => {
                                if !current.data.is_empty() {
                                    current.data.push('\n');
                                }
                                current.data.push_str(value);
                            }
                            _ => {}
                        }
                    }
                }
            }
            let _ = tx.send(Seen::End);
        });
        SseClient { rx, last_id: None }
    }

    /// The next event (skipping heartbeats), within `timeout`.
    pub async fn next_event(&mut self, timeout: Duration) -> SseEvent {
        loop {
            match tokio::time::timeout(timeout, self.rx.recv()).await {
                Ok(Some(Seen::Event(e))) => {
                    if e.id.is_some() {
                        self.last_id = e.id.clone();
                    }
                    return e;
                }
                Ok(Some(Seen::Comment(_))) => continue,
                Ok(Some(Seen::End)) | Ok(None) => panic!("the stream ended"),
                Err(_) => panic!("no event within {timeout:?}"),
            }
        }
    }

    /// The next event named `name`, skipping others.
    pub async fn next_named(&mut self, name: &str, timeout: Duration) -> SseEvent {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let e = self.next_event(left).await;
            if e.event == name {
                return e;
            }
        }
    }

    /// Every event until the server ends the stream (bounded by `timeout`).
    pub async fn until_end(&mut self, timeout: Duration) -> Vec<SseEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut events = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(Seen::Event(e))) => {
                    if e.id.is_some() {
                        self.last_id = e.id.clone();
                    }
                    events.push(e);
                }
                Ok(Some(Seen::Comment(_))) => continue,
                Ok(Some(Seen::End)) | Ok(None) => return events,
                Err(_) => panic!(
                    "the stream did not end within {timeout:?} ({} events so far)",
                    events.len()
                ),
            }
        }
    }

    /// Asserts no event arrives within `wait`.
    pub async fn assert_quiet(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => return,
                Ok(Some(Seen::Comment(_))) => continue,
                Ok(other) => panic!("expected no event, got {other:?}"),
            }
        }
    }
}
