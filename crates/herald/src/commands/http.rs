//! A minimal HTTP/1.1 client over one keep-alive TCP connection, for `herald send` and the
//! benchmarks: a load generator must cost the machine as little as possible next to the server.
//!
//! Requests and responses reuse the connection's buffers, so a request loop allocates nothing
//! once warm. [`SseReader`] turns a streaming response into Server-Sent Events.

use std::io::Write as _;
use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Longest status, header or SSE line accepted before the peer is considered broken.
const MAX_LINE: usize = 64 * 1024;
/// Largest response body read into memory.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// Bytes read from a streamed request body and sent as one chunk.
const STREAM_CHUNK: usize = 64 * 1024;

pub struct Connection {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    host: String,
    /// The request being written (head and body), reused between requests.
    out: Vec<u8>,
    /// Scratch for status and header lines.
    line: Vec<u8>,
}

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// A response's status line and the headers that frame its body.
pub struct Head {
    pub status: u16,
    pub content_length: Option<usize>,
    pub chunked: bool,
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> std::io::Result<Self> {
        Self::open_with_buffer(addr, 16 * 1024).await
    }

    /// Opens a connection whose read buffer holds `capacity` bytes (small for idle streams).
    pub async fn open_with_buffer(addr: SocketAddr, capacity: usize) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        Ok(Self {
            reader: BufReader::with_capacity(capacity, r),
            writer: w,
            host: addr.to_string(),
            out: Vec::new(),
            line: Vec::new(),
        })
    }

    /// Sends one request and reads its whole response.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&[u8]>,
    ) -> std::io::Result<Response> {
        self.send(method, path, bearer, body).await?;
        self.read_response().await
    }

    /// Sends one request and reads its response body into `body`; returns the status.
    pub async fn request_into(
        &mut self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        request_body: Option<&[u8]>,
        body: &mut Vec<u8>,
    ) -> std::io::Result<u16> {
        self.send(method, path, bearer, request_body).await?;
        self.read_response_into(body).await
    }

    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&[u8]>,
    ) -> std::io::Result<()> {
        let out = &mut self.out;
        out.clear();
        write!(out, "{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host)?;
        if let Some(token) = bearer {
            write!(out, "Authorization: Bearer {token}\r\n")?;
        }
        if let Some(body) = body {
            write!(
                out,
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            )?;
        }
        out.extend_from_slice(b"\r\n");
        if let Some(body) = body {
            out.extend_from_slice(body);
        }
        self.writer.write_all(out).await
    }

    /// Sends a request whose body is read from `body` as it is sent, in chunked transfer
    /// encoding, so a file of any size goes out in constant memory; then reads the response.
    pub async fn request_streamed(
        &mut self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        content_type: &str,
        mut body: impl AsyncRead + Unpin,
    ) -> std::io::Result<Response> {
        let out = &mut self.out;
        out.clear();
        write!(out, "{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host)?;
        if let Some(token) = bearer {
            write!(out, "Authorization: Bearer {token}\r\n")?;
        }
        write!(
            out,
            "Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
        )?;
        // The head, then each chunk once read; the zero-length chunk ends the body.
        let mut chunk = vec![0; STREAM_CHUNK];
        let mut last = false;
        loop {
            if let Err(e) = self.writer.write_all(&self.out).await {
                // The server may have answered early (413 past its upload limit) and closed:
                // its answer says more than the broken pipe.
                return self.read_response().await.map_err(|_| e);
            }
            if last {
                break;
            }
            // A failing read of the body is returned at once: waiting for an answer to a
            // half-sent body would hang.
            let n = body.read(&mut chunk).await?;
            self.out.clear();
            write!(self.out, "{n:x}\r\n")?;
            self.out.extend_from_slice(&chunk[..n]);
            self.out.extend_from_slice(b"\r\n");
            last = n == 0;
        }
        self.read_response().await
    }

    pub async fn read_response(&mut self) -> std::io::Result<Response> {
        let mut body = Vec::new();
        let status = self.read_response_into(&mut body).await?;
        Ok(Response { status, body })
    }

    /// Reads a whole response (`Content-Length` or chunked body) into `body`; returns the status.
    pub async fn read_response_into(&mut self, body: &mut Vec<u8>) -> std::io::Result<u16> {
        let head = self.read_head().await?;
        self.read_body(&head, body).await?;
        Ok(head.status)
    }

    /// Reads the body that follows `head` into `body`.
    pub async fn read_body(&mut self, head: &Head, body: &mut Vec<u8>) -> std::io::Result<()> {
        body.clear();
        if head.chunked {
            loop {
                let size = self.chunk_size().await?;
                if size == 0 {
                    // Trailers, if any, end with an empty line.
                    for _ in 0..256 {
                        if self.read_header_line().await?.is_empty() {
                            break;
                        }
                    }
                    return Ok(());
                }
                if body.len() + size > MAX_BODY {
                    return Err(invalid(format!(
                        "response body larger than {MAX_BODY} bytes"
                    )));
                }
                let start = body.len();
                body.resize(start + size, 0);
                self.reader.read_exact(&mut body[start..]).await?;
            }
        } else if let Some(length) = head.content_length {
            if length > MAX_BODY {
                return Err(invalid(format!(
                    "response body of {length} bytes; the limit is {MAX_BODY}"
                )));
            }
            body.resize(length, 0);
            self.reader.read_exact(body).await?;
        }
        Ok(())
    }

    /// Reads a status line and headers, leaving the body unread.
    pub async fn read_head(&mut self) -> std::io::Result<Head> {
        let line = self.read_header_line().await?;
        let status = std::str::from_utf8(line)
            .ok()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                invalid(format!(
                    "bad status line {:?}",
                    String::from_utf8_lossy(line)
                ))
            })?;
        let mut head = Head {
            status,
            content_length: None,
            chunked: false,
        };
        for _ in 0..256 {
            let line = self.read_header_line().await?;
            if line.is_empty() {
                return Ok(head);
            }
            let Ok(line) = std::str::from_utf8(line) else {
                continue;
            };
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                head.content_length = value.parse().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                && value.eq_ignore_ascii_case("chunked")
            {
                head.chunked = true;
            }
        }
        Err(invalid("more than 256 response headers".into()))
    }

    /// One CRLF-terminated line without its terminator; end of stream is an error.
    async fn read_header_line(&mut self) -> std::io::Result<&[u8]> {
        self.line.clear();
        if read_line_bounded(&mut self.reader, &mut self.line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        trim_eol(&mut self.line);
        Ok(&self.line)
    }

    /// The size line of the next chunk, skipping the CRLF that ends the previous one.
    async fn chunk_size(&mut self) -> std::io::Result<usize> {
        for _ in 0..2 {
            let line = self.read_header_line().await?;
            if line.is_empty() {
                continue;
            }
            let text = std::str::from_utf8(line).unwrap_or("");
            let digits = text.split(';').next().unwrap_or("").trim();
            return usize::from_str_radix(digits, 16)
                .map_err(|_| invalid(format!("bad chunk size line {text:?}")));
        }
        Err(invalid(
            "empty lines where a chunk size was expected".into(),
        ))
    }

    /// Hands the connection, whose head has been read, to an event-stream reader.
    pub fn into_sse(self, head: &Head) -> SseReader {
        SseReader {
            conn: self,
            chunked: head.chunked,
            remaining: 0,
            line: Vec::with_capacity(512),
        }
    }
}

/// Reads up to and including `\n`, refusing lines longer than [`MAX_LINE`].
async fn read_line_bounded(
    reader: &mut BufReader<OwnedReadHalf>,
    out: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let (used, done) = {
            let buf = reader.fill_buf().await?;
            if buf.is_empty() {
                return Ok(total);
            }
            match buf.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    out.extend_from_slice(&buf[..=i]);
                    (i + 1, true)
                }
                None => {
                    out.extend_from_slice(buf);
                    (buf.len(), false)
                }
            }
        };
        reader.consume(used);
        total += used;
        if done {
            return Ok(total);
        }
        if out.len() > MAX_LINE {
            return Err(invalid(format!("line longer than {MAX_LINE} bytes")));
        }
    }
}

fn trim_eol(line: &mut Vec<u8>) {
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
}

/// One Server-Sent Event. Its buffers are reused from event to event.
#[derive(Default)]
pub struct SseEvent {
    pub id: Vec<u8>,
    pub event: Vec<u8>,
    pub data: Vec<u8>,
}

impl SseEvent {
    fn clear(&mut self) {
        self.id.clear();
        self.event.clear();
        self.data.clear();
    }

    fn is_empty(&self) -> bool {
        self.id.is_empty() && self.event.is_empty() && self.data.is_empty()
    }
}

/// Reads Server-Sent Events from a streaming response, de-chunking it on the way, line by line.
pub struct SseReader {
    conn: Connection,
    chunked: bool,
    /// Bytes left in the current chunk.
    remaining: usize,
    line: Vec<u8>,
}

impl SseReader {
    /// Reads the next event into `event`; `false` when the stream has ended. Comments
    /// (heartbeats) are skipped.
    pub async fn next_event(&mut self, event: &mut SseEvent) -> std::io::Result<bool> {
        event.clear();
        loop {
            if !self.next_line().await? {
                return Ok(false);
            }
            let line = &self.line[..];
            if line.is_empty() {
                if event.is_empty() {
                    continue;
                }
                return Ok(true);
            }
            if line[0] == b':' {
                continue;
            }
            let (name, value) = match line.iter().position(|&b| b == b':') {
                Some(i) => {
                    let value = &line[i + 1..];
                    (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (line, &[][..]),
            };
            match name {
                b"data" => {
                    if !event.data.is_empty() {
                        event.data.push(b'\n');
                    }
                    event.data.extend_from_slice(value);
                }
                b"event" => {
                    event.event.clear();
                    event.event.extend_from_slice(value);
                }
                b"id" => {
                    event.id.clear();
                    event.id.extend_from_slice(value);
                }
                _ => {}
            }
        }
    }

    /// Reads the next line of the event stream into `self.line`; `false` at its end.
    async fn next_line(&mut self) -> std::io::Result<bool> {
        self.line.clear();
        loop {
            if self.chunked && self.remaining == 0 {
                match self.conn.chunk_size().await {
                    Ok(0) => return Ok(false),
                    Ok(size) => self.remaining = size,
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
                    Err(e) => return Err(e),
                }
            }
            let (used, done) = {
                let buf = self.conn.reader.fill_buf().await?;
                if buf.is_empty() {
                    return Ok(false);
                }
                let avail = if self.chunked {
                    buf.len().min(self.remaining)
                } else {
                    buf.len()
                };
                let buf = &buf[..avail];
                match buf.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.line.extend_from_slice(&buf[..i]);
                        (i + 1, true)
                    }
                    None => {
                        self.line.extend_from_slice(buf);
                        (avail, false)
                    }
                }
            };
            self.conn.reader.consume(used);
            if self.chunked {
                self.remaining -= used;
            }
            if done {
                if self.line.last() == Some(&b'\r') {
                    self.line.pop();
                }
                return Ok(true);
            }
            if self.line.len() > MAX_LINE {
                return Err(invalid(format!(
                    "event-stream line longer than {MAX_LINE} bytes"
                )));
            }
        }
    }
}

/// `http://host:port` → socket address.
pub fn parse_server(url: &str) -> Result<SocketAddr, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: only http:// servers are supported"))?;
    let hostport = rest.trim_end_matches('/');
    let hostport = hostport
        .strip_prefix("localhost:")
        .map(|p| format!("127.0.0.1:{p}"))
        .unwrap_or(hostport.to_owned());
    hostport
        .parse()
        .map_err(|_| format!("{url:?}: give the server as http://IP:PORT"))
}
