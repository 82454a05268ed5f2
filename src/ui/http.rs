//! Just enough HTTP/1.1 for the console: one request per connection (then close), a head of
//! at most [`MAX_HEAD`] bytes, a body of at most [`MAX_BODY`] bytes, and whole responses or a
//! server-sent-event stream. Browsers and curl need nothing more from a local page.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest request head read.
pub const MAX_HEAD: usize = 16 * 1024;
/// The largest request body read (fault commands are a few dozen bytes).
pub const MAX_BODY: usize = 4 * 1024;
/// A client that has not sent its whole request by then is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Without the query string.
    pub path: String,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The client went away or sent nothing in time: answer nothing.
    Gone,
    /// Malformed or too large: answer with this status.
    Bad(&'static str),
}

/// Reads one request.
pub async fn read_request(stream: &mut TcpStream) -> Result<Request, ReadError> {
    tokio::time::timeout(READ_TIMEOUT, read(stream))
        .await
        .unwrap_or(Err(ReadError::Gone))
}

async fn read(stream: &mut TcpStream) -> Result<Request, ReadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(ReadError::Bad("431 Request Header Fields Too Large"));
        }
        let n = stream.read(&mut chunk).await.map_err(|_| ReadError::Gone)?;
        if n == 0 {
            return Err(ReadError::Gone);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head =
        std::str::from_utf8(&buf[..head_end]).map_err(|_| ReadError::Bad("400 Bad Request"))?;
    let mut lines = head.split("\r\n");
    let mut words = lines.next().unwrap_or_default().split_whitespace();
    let (Some(method), Some(target)) = (words.next(), words.next()) else {
        return Err(ReadError::Bad("400 Bad Request"));
    };
    let path = target.split('?').next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = match headers.iter().find(|(k, _)| k == "content-length") {
        Some((_, v)) => v.parse().map_err(|_| ReadError::Bad("400 Bad Request"))?,
        None => 0,
    };
    if length > MAX_BODY {
        return Err(ReadError::Bad("413 Payload Too Large"));
    }
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.map_err(|_| ReadError::Gone)?;
        if n == 0 {
            return Err(ReadError::Gone);
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(Request {
        method: method.to_string(),
        path,
        headers,
        body,
    })
}

/// Writes a whole response and closes the connection.
pub async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}

/// Starts a server-sent-event stream; the events follow through [`event`].
pub async fn start_events(stream: &mut (impl AsyncWrite + Unpin)) -> std::io::Result<()> {
    stream
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n")
        .await
}

/// One event of a stream: `event: <name>` and its data (JSON has no raw newlines).
pub async fn event(
    stream: &mut (impl AsyncWrite + Unpin),
    name: &str,
    data: &str,
) -> std::io::Result<()> {
    let mut text = String::with_capacity(data.len() + name.len() + 16);
    text.push_str("event: ");
    text.push_str(name);
    text.push('\n');
    for line in data.split('\n') {
        text.push_str("data: ");
        text.push_str(line);
        text.push('\n');
    }
    text.push('\n');
    stream.write_all(text.as_bytes()).await
}
