//! Just enough RESP2 over a blocking `TcpStream` to probe a redis process: send one
//! command, read one reply. Used by the waits; tests talk to redis with their own client
//! or with `RedisServer::cmd`.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const IO_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(String),
    Array(Vec<Reply>),
    Nil,
}

impl Reply {
    /// The text of a simple or bulk string reply.
    pub(crate) fn text(&self) -> Option<&str> {
        match self {
            Reply::Simple(s) | Reply::Bulk(s) => Some(s),
            _ => None,
        }
    }
}

/// Runs one command against 127.0.0.1:`port` on a fresh connection.
pub(crate) fn query(port: u16, args: &[&str]) -> Result<Reply, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).ok();
    stream.set_write_timeout(Some(IO_TIMEOUT)).ok();
    (&stream)
        .write_all(&encode(args))
        .map_err(|e| format!("write to {addr}: {e}"))?;
    read_reply(&mut BufReader::new(&stream)).map_err(|e| format!("reply from {addr}: {e}"))
}

/// `PING` answered with `+PONG` (a loading or broken server answers otherwise).
pub(crate) fn ping(port: u16) -> Result<(), String> {
    match query(port, &["PING"])? {
        Reply::Simple(s) if s == "PONG" => Ok(()),
        other => Err(format!("PING answered {other:?}")),
    }
}

/// A bulk-string reply (`INFO`, `CLUSTER INFO`) as text.
pub(crate) fn query_text(port: u16, args: &[&str]) -> Result<String, String> {
    match query(port, args)? {
        Reply::Bulk(s) | Reply::Simple(s) => Ok(s),
        other => Err(format!("{} answered {other:?}", args.join(" "))),
    }
}

/// The value of `field:` in an `INFO`-style text.
pub(crate) fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn read_reply(reader: &mut impl BufRead) -> Result<Reply, String> {
    let line = read_line(reader)?;
    let (kind, rest) = line.split_at_checked(1).ok_or("empty reply line")?;
    let number = || {
        rest.parse::<i64>()
            .map_err(|e| format!("bad length {rest:?}: {e}"))
    };
    Ok(match kind {
        "+" => Reply::Simple(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Int(number()?),
        "$" => match usize::try_from(number()?) {
            Err(_) => Reply::Nil,
            Ok(len) => {
                let mut buf = vec![0; len + 2];
                reader.read_exact(&mut buf).map_err(|e| e.to_string())?;
                buf.truncate(len);
                Reply::Bulk(String::from_utf8_lossy(&buf).into_owned())
            }
        },
        "*" => match usize::try_from(number()?) {
            Err(_) => Reply::Nil,
            Ok(len) => Reply::Array(
                (0..len)
                    .map(|_| read_reply(reader))
                    .collect::<Result<_, _>>()?,
            ),
        },
        _ => return Err(format!("unexpected reply line {line:?}")),
    })
}

fn read_line(reader: &mut impl BufRead) -> Result<String, String> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) => Err("connection closed".to_owned()),
        Ok(_) => Ok(line.trim_end_matches(['\r', '\n']).to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_commands() {
        assert_eq!(encode(&["PING"]), b"*1\r\n$4\r\nPING\r\n");
    }

    #[test]
    fn reads_nested_replies() {
        let mut input: &[u8] = b"*3\r\n$5\r\nhello\r\n:42\r\n*2\r\n+OK\r\n$-1\r\n";
        assert_eq!(
            read_reply(&mut input).unwrap(),
            Reply::Array(vec![
                Reply::Bulk("hello".into()),
                Reply::Int(42),
                Reply::Array(vec![Reply::Simple("OK".into()), Reply::Nil]),
            ])
        );
    }

    #[test]
    fn finds_info_fields() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:1\r\n";
        assert_eq!(info_field(info, "connected_slaves"), Some("1"));
        assert_eq!(info_field(info, "role"), Some("master"));
        assert_eq!(info_field(info, "connected"), None);
    }
}
