//! One subscriber of one channel, on either system: Herald's channel WebSocket
//! (`/v1/channels/{channel}/ws`) or a socket.io v4 room of the relay. Both ride the same
//! WebSocket client (tokio-tungstenite over a loopback TCP connection with Nagle off), so the
//! two systems differ only in what their frames say.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::ops::Range;

use futures_util::StreamExt as _;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::socketio;

pub type Ws = WebSocketStream<TcpStream>;

/// Largest WebSocket frame and message accepted: socket.io sends a 100 MB attachment as one
/// frame; Herald sends 256 KiB chunks.
const MAX_WS_MESSAGE: usize = 160 * 1024 * 1024;

/// One message as the subscriber's application sees it.
pub enum Delivery {
    /// Text that needed no unescaping: a slice of the WebSocket frame it came in, not copied.
    InFrame(Utf8Bytes, Range<usize>),
    Text(String),
    Binary(Vec<u8>),
}

impl Delivery {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Delivery::InFrame(frame, range) => &frame.as_bytes()[range.clone()],
            Delivery::Text(t) => t.as_bytes(),
            Delivery::Binary(b) => b,
        }
    }

    /// The text `data`, parsed out of `frame`, as a delivery: a slice of the frame when serde
    /// could borrow it (no escapes), a copy otherwise.
    pub fn of_text(frame: &Utf8Bytes, data: Cow<'_, str>) -> Self {
        match data {
            Cow::Borrowed(s) => {
                let start = s.as_ptr() as usize - frame.as_str().as_ptr() as usize;
                Delivery::InFrame(frame.clone(), start..start + s.len())
            }
            Cow::Owned(s) => Delivery::Text(s),
        }
    }
}

/// Where a subscriber connects, and how it proves it may.
#[derive(Clone)]
pub enum Endpoint {
    /// Herald: a user token whose `channels` claim covers the channel.
    Herald { addr: SocketAddr, token: String },
    /// The socket.io relay: rooms are open to anyone who can connect.
    Relay { addr: SocketAddr },
}

pub enum Subscriber {
    Herald(Ws),
    Relay(socketio::Client),
}

/// Opens a WebSocket to `path` on `addr`.
pub async fn open_ws(addr: SocketAddr, path: &str) -> Result<Ws, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_WS_MESSAGE))
        .max_frame_size(Some(MAX_WS_MESSAGE));
    let url = format!("ws://{addr}{path}");
    let (ws, _) = tokio_tungstenite::client_async_with_config(url.as_str(), tcp, Some(config))
        .await
        .map_err(|e| format!("WebSocket handshake with {}: {e}", redact(&url)))?;
    Ok(ws)
}

/// A URL with the value of its `token` parameter left out, for error messages.
fn redact(url: &str) -> String {
    match url.find("token=") {
        Some(at) => {
            let rest = &url[at + 6..];
            let end = rest.find('&').unwrap_or(rest.len());
            format!("{}token=...{}", &url[..at], &rest[end..])
        }
        None => url.to_owned(),
    }
}

/// A string field that stays a slice of the frame when it has no escapes (serde borrows a
/// `Cow` only when it is the field itself, not inside an `Option`).
#[derive(Deserialize)]
struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);

/// A text frame of Herald's channel socket.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    data: Option<Borrowed<'a>>,
    #[serde(default)]
    chunks: Option<usize>,
    #[serde(default)]
    bytes: Option<usize>,
    #[serde(default)]
    position: Option<u64>,
    #[serde(default)]
    from: Option<u64>,
    #[serde(default)]
    to: Option<u64>,
}

impl Subscriber {
    pub async fn connect(endpoint: &Endpoint, channel: &str) -> Result<Self, String> {
        match endpoint {
            Endpoint::Herald { addr, token } => {
                let path = format!("/v1/channels/{channel}/ws?token={token}");
                Ok(Subscriber::Herald(open_ws(*addr, &path).await?))
            }
            Endpoint::Relay { addr } => Ok(Subscriber::Relay(
                socketio::Client::connect(*addr, channel).await?,
            )),
        }
    }

    /// The next message of the channel. A gap, a close or a protocol surprise is an error.
    pub async fn next(&mut self) -> Result<Delivery, String> {
        match self {
            Subscriber::Herald(ws) => herald_next(ws).await,
            Subscriber::Relay(client) => client.next().await,
        }
    }
}

/// Reads one WebSocket message, mapping the end of the stream and a close to errors.
pub async fn read(ws: &mut Ws) -> Result<Message, String> {
    loop {
        match ws.next().await {
            None => return Err("the connection ended".into()),
            Some(Err(e)) => return Err(format!("WebSocket: {e}")),
            Some(Ok(Message::Close(frame))) => {
                return Err(match frame {
                    Some(f) => format!("closed by the server: {} {}", u16::from(f.code), f.reason),
                    None => "closed by the server".into(),
                });
            }
            // Pongs to pings go out with the next read.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(m)) => return Ok(m),
        }
    }
}

async fn herald_next(ws: &mut Ws) -> Result<Delivery, String> {
    loop {
        let text = match read(ws).await? {
            Message::Text(t) => t,
            Message::Binary(b) => {
                return Err(format!(
                    "a binary frame of {} bytes without a message header before it",
                    b.len()
                ));
            }
            _ => continue,
        };
        let frame: Frame = serde_json::from_str(text.as_str())
            .map_err(|e| format!("unreadable frame {:?}: {e}", abbreviate(text.as_str())))?;
        match frame.kind.as_ref() {
            "message" => {}
            "gap" => {
                return Err(format!(
                    "gap from {} to {}",
                    frame.from.unwrap_or(0),
                    frame.to.unwrap_or(0)
                ));
            }
            // Anything else (a greeting, a heartbeat) carries no message.
            _ => continue,
        }
        if let Some(data) = frame.data {
            return Ok(Delivery::of_text(&text, data.0));
        }
        let Some(chunks) = frame.chunks else {
            return Err(format!(
                "message {} has neither data nor chunks",
                frame.position.unwrap_or(0)
            ));
        };
        let mut body = Vec::with_capacity(frame.bytes.unwrap_or(0));
        for i in 0..chunks {
            match read(ws).await? {
                Message::Binary(b) => body.extend_from_slice(&b),
                other => {
                    return Err(format!(
                        "chunk {i} of {chunks} of message {} is a {} frame, not binary",
                        frame.position.unwrap_or(0),
                        kind_of(&other)
                    ));
                }
            }
        }
        if let Some(expected) = frame.bytes
            && expected != body.len()
        {
            return Err(format!(
                "message {} announced {expected} bytes and brought {}",
                frame.position.unwrap_or(0),
                body.len()
            ));
        }
        return Ok(Delivery::Binary(body));
    }
}

pub fn kind_of(m: &Message) -> &'static str {
    match m {
        Message::Text(_) => "text",
        Message::Binary(_) => "binary",
        Message::Ping(_) => "ping",
        Message::Pong(_) => "pong",
        Message::Close(_) => "close",
        Message::Frame(_) => "raw",
    }
}

/// The start of a long text, for error messages.
pub fn abbreviate(text: &str) -> String {
    match text.char_indices().nth(120) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn herald_text_is_sliced_out_of_its_frame() {
        let text = Utf8Bytes::from(
            r#"{"type":"message","position":3,"bytes":9,"data":"[1,2,111]"}"#.to_owned(),
        );
        let frame: Frame = serde_json::from_str(text.as_str()).unwrap();
        let delivery = Delivery::of_text(&text, frame.data.unwrap().0);
        assert!(matches!(delivery, Delivery::InFrame(..)));
        assert_eq!(delivery.bytes(), b"[1,2,111]");
        let escaped = Utf8Bytes::from(r#"{"type":"message","data":"a\"b"}"#.to_owned());
        let frame: Frame = serde_json::from_str(escaped.as_str()).unwrap();
        assert_eq!(
            Delivery::of_text(&escaped, frame.data.unwrap().0).bytes(),
            b"a\"b"
        );
        assert_eq!(
            redact("ws://h/v1/channels/c/ws?token=abc&after=2"),
            "ws://h/v1/channels/c/ws?token=...&after=2"
        );
    }
}
