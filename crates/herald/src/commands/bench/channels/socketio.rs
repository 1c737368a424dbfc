//! A socket.io v4 client over a raw WebSocket, just enough to sit in one room and receive
//! `message` events: what the socket.io JavaScript client does with `transports: ["websocket"]`.
//!
//! Engine.io v4 over WebSocket: the server opens with `0{"sid":..,"pingInterval":..}`, pings with
//! `2` (answered `3`) and wraps socket.io packets as `4...`. Socket.io: `40` connects to the main
//! namespace (answered `40{"sid":..}`), `42["event",arg]` is an event, and
//! `45N-["event",{"_placeholder":true,"num":0}]` is an event with N binary attachments that
//! follow as N binary WebSocket messages.

use std::borrow::Cow;
use std::net::SocketAddr;

use futures_util::SinkExt as _;
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;

use super::subscriber::{Delivery, Ws, abbreviate, kind_of, open_ws, read};

pub struct Client {
    ws: Ws,
}

/// The argument of a `message` event: a string, or a placeholder for a binary attachment.
#[derive(Deserialize)]
#[serde(untagged)]
enum Arg<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Placeholder {
        #[serde(rename = "_placeholder")]
        placeholder: bool,
        num: usize,
    },
}

impl Client {
    /// Connects to the main namespace and joins the room of `channel` through the handshake
    /// query, as the relay expects; returns once the server has acknowledged the connection.
    pub async fn connect(addr: SocketAddr, channel: &str) -> Result<Self, String> {
        let path = format!("/socket.io/?EIO=4&transport=websocket&channel={channel}");
        let mut ws = open_ws(addr, &path).await?;
        match read(&mut ws).await? {
            Message::Text(t) if t.starts_with('0') => {}
            other => {
                return Err(format!(
                    "expected the engine.io open packet, got a {} frame {:?}",
                    kind_of(&other),
                    abbreviate(other.to_text().unwrap_or(""))
                ));
            }
        }
        ws.send(Message::text("40"))
            .await
            .map_err(|e| format!("send 40: {e}"))?;
        let mut client = Client { ws };
        loop {
            match read(&mut client.ws).await? {
                Message::Text(t) if t.starts_with("40") => return Ok(client),
                Message::Text(t) if t.as_str() == "2" => client.pong().await?,
                Message::Text(t) if t.starts_with("44") => {
                    return Err(format!("socket.io refused the connection: {}", &t[2..]));
                }
                other => {
                    return Err(format!(
                        "expected the socket.io connect packet, got a {} frame {:?}",
                        kind_of(&other),
                        abbreviate(other.to_text().unwrap_or(""))
                    ));
                }
            }
        }
    }

    async fn pong(&mut self) -> Result<(), String> {
        self.ws
            .send(Message::text("3"))
            .await
            .map_err(|e| format!("send pong: {e}"))
    }

    /// The next `message` event; other events are skipped.
    pub async fn next(&mut self) -> Result<Delivery, String> {
        loop {
            let text = match read(&mut self.ws).await? {
                Message::Text(t) => t,
                Message::Binary(b) => {
                    return Err(format!(
                        "a binary frame of {} bytes that no event announced",
                        b.len()
                    ));
                }
                _ => continue,
            };
            let packet = text.as_str();
            match packet.as_bytes().first() {
                Some(b'2') => {
                    self.pong().await?;
                    continue;
                }
                Some(b'4') => {}
                // Noop (6) and anything engine.io adds later.
                Some(b'6') => continue,
                Some(b'1') => return Err("engine.io close packet".into()),
                _ => return Err(format!("unknown engine.io packet {:?}", abbreviate(packet))),
            }
            let body = &packet[1..];
            match body.as_bytes().first() {
                Some(b'2') => {
                    // EVENT: 2[optional ack id]["name",arg]
                    let json = &body[body.find('[').unwrap_or(body.len())..];
                    let (name, arg): (Cow<str>, Arg) = serde_json::from_str(json)
                        .map_err(|e| format!("unreadable event {:?}: {e}", abbreviate(packet)))?;
                    if name != "message" {
                        continue;
                    }
                    return match arg {
                        Arg::Text(t) => Ok(Delivery::of_text(&text, t)),
                        _ => Err(format!(
                            "a message event without text: {}",
                            abbreviate(packet)
                        )),
                    };
                }
                Some(b'5') => {
                    // BINARY_EVENT: 5N-["name",{"_placeholder":true,"num":0}], then N frames.
                    let dash = body.find('-').ok_or_else(|| {
                        format!("binary event without '-': {}", abbreviate(packet))
                    })?;
                    let attachments: usize = body[1..dash]
                        .parse()
                        .map_err(|_| format!("bad attachment count in {}", abbreviate(packet)))?;
                    let json = &body[body.find('[').unwrap_or(body.len())..];
                    let (name, arg): (Cow<str>, Arg) = serde_json::from_str(json)
                        .map_err(|e| format!("unreadable event {:?}: {e}", abbreviate(packet)))?;
                    let mut frames = Vec::with_capacity(attachments);
                    for i in 0..attachments {
                        match read(&mut self.ws).await? {
                            Message::Binary(b) => frames.push(b),
                            other => {
                                return Err(format!(
                                    "attachment {i} of {attachments} is a {} frame",
                                    kind_of(&other)
                                ));
                            }
                        }
                    }
                    if name != "message" {
                        continue;
                    }
                    return match arg {
                        Arg::Placeholder {
                            placeholder: true,
                            num,
                        } if num < frames.len() => {
                            let frame = frames.swap_remove(num);
                            Ok(Delivery::Binary(Vec::from(frame)))
                        }
                        _ => Err(format!(
                            "a binary message event without a usable placeholder: {}",
                            abbreviate(packet)
                        )),
                    };
                }
                Some(b'1') => return Err("disconnected by the server".into()),
                Some(b'4') => return Err(format!("socket.io error: {}", &body[1..])),
                // CONNECT again, ACKs: nothing for a listener.
                _ => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_text_is_borrowed_and_placeholders_are_read() {
        let (name, arg): (Cow<str>, Arg) =
            serde_json::from_str(r#"["message","[1,2,111]"]"#).unwrap();
        assert_eq!(name, "message");
        assert!(matches!(arg, Arg::Text(Cow::Borrowed("[1,2,111]"))));
        let (_, arg): (Cow<str>, Arg) =
            serde_json::from_str(r#"["message",{"_placeholder":true,"num":0}]"#).unwrap();
        assert!(matches!(
            arg,
            Arg::Placeholder {
                placeholder: true,
                num: 0
            }
        ));
    }
}
