//! A minimal HTTP/1.1 client over one keep-alive TCP connection, for `herald send` and the
//! benchmarks: a load generator must cost the machine as little as possible next to the server.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

pub struct Connection {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    host: String,
}

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        Ok(Self { reader: BufReader::with_capacity(16 * 1024, r), writer: w, host: addr.to_string() })
    }

    /// Sends one request and reads its whole response (Content-Length bodies only).
    pub async fn request(&mut self, method: &str, path: &str, bearer: Option<&str>, body: Option<&[u8]>) -> std::io::Result<Response> {
        self.send(method, path, bearer, body).await?;
        self.read_response().await
    }

    pub async fn send(&mut self, method: &str, path: &str, bearer: Option<&str>, body: Option<&[u8]>) -> std::io::Result<()> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if let Some(token) = bearer {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        if let Some(body) = body {
            head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut buf = head.into_bytes();
        if let Some(body) = body {
            buf.extend_from_slice(body);
        }
        self.writer.write_all(&buf).await
    }

    pub async fn read_response(&mut self) -> std::io::Result<Response> {
        let mut line = String::new();
        self.reader.read_line(&mut line).await?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut length = 0usize;
        loop {
            line.clear();
            if self.reader.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            if let Some((name, value)) = trimmed.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).await?;
        Ok(Response { status, body })
    }

    /// Reads raw bytes (for streaming responses such as SSE).
    pub async fn read_some(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.reader.read(buf).await
    }

    /// Reads one line (for streaming responses such as SSE).
    pub async fn read_line(&mut self, line: &mut String) -> std::io::Result<usize> {
        self.reader.read_line(line).await
    }
}

/// `http://host:port` → socket address.
pub fn parse_server(url: &str) -> Result<SocketAddr, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url:?}: only http:// servers are supported"))?;
    let hostport = rest.trim_end_matches('/');
    let hostport = hostport.strip_prefix("localhost:").map(|p| format!("127.0.0.1:{p}")).unwrap_or(hostport.to_owned());
    hostport.parse().map_err(|_| format!("{url:?}: give the server as http://IP:PORT"))
}
