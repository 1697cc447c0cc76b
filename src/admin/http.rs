//! Just enough HTTP/1.1 for the admin API: one request per connection,
//! its head read under a size and a time limit, no body, `Connection:
//! close`. Parsing never panics; anything it does not understand is a 400.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest request head (request line and headers) read.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// What the admin API needs of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    /// The path, without its query string.
    pub path: String,
    /// The `Authorization` header's value, if any.
    pub authorization: Option<String>,
}

/// Why no request could be read; each maps to a response or to silence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("request head over {MAX_HEAD_BYTES} bytes")]
    TooLarge,
    #[error("no complete request head in time")]
    Timeout,
    /// The peer closed (or the socket failed) before a whole head: nothing
    /// to answer.
    #[error("connection closed")]
    Closed,
}

/// Parses a complete head (up to and including the blank line).
pub fn parse_head(head: &[u8]) -> Result<HttpRequest, HeadError> {
    let text = std::str::from_utf8(head).map_err(|_| HeadError::Malformed("not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed(
            "the request line is not METHOD TARGET VERSION",
        ));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HeadError::Malformed("bad method"));
    }
    if !target.starts_with('/') {
        return Err(HeadError::Malformed("the target is not an absolute path"));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(HeadError::Malformed("not HTTP/1.0 or HTTP/1.1"));
    }
    let mut authorization = None;
    for line in lines.take_while(|line| !line.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(HeadError::Malformed("a header line without a colon"));
        };
        if name.is_empty() || name.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(HeadError::Malformed("bad header name"));
        }
        if name.eq_ignore_ascii_case("authorization") {
            authorization = Some(value.trim().to_string());
        }
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    Ok(HttpRequest {
        method: method.to_string(),
        path: path.to_string(),
        authorization,
    })
}

/// Where the head ends: the index just past the blank line.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Reads one request head within `limit`.
pub async fn read_request<R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: Duration,
) -> Result<HttpRequest, HeadError> {
    let read = async {
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 1024];
        loop {
            let n = reader
                .read(&mut chunk)
                .await
                .map_err(|_| HeadError::Closed)?;
            if n == 0 {
                return Err(HeadError::Closed);
            }
            // Only the new bytes (and the three before them) can complete
            // the terminator.
            let from = buf.len().saturating_sub(3);
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = head_end(&buf[from..]) {
                return parse_head(&buf[..from + end]);
            }
            if buf.len() > MAX_HEAD_BYTES {
                return Err(HeadError::TooLarge);
            }
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .unwrap_or(Err(HeadError::Timeout))
}

/// A whole response, written at once.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: &'static str,
    /// Extra header lines, each without its CRLF.
    pub headers: Vec<String>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(status: u16, body: impl Into<String>) -> HttpResponse {
        HttpResponse {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: body.into().into_bytes(),
        }
    }

    pub fn json(value: &serde_json::Value) -> HttpResponse {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        HttpResponse {
            status: 200,
            content_type: "application/json",
            headers: Vec::new(),
            body,
        }
    }

    pub fn with_header(mut self, line: impl Into<String>) -> HttpResponse {
        self.headers.push(line.into());
        self
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        for line in &self.headers {
            out.push_str(line);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }

    pub async fn write_to<W: AsyncWrite + Unpin>(&self, writer: &mut W) -> std::io::Result<()> {
        writer.write_all(&self.to_bytes()).await?;
        writer.shutdown().await
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_request_with_a_token_and_a_query() {
        let head = b"GET /status?x=1 HTTP/1.1\r\nHost: a\r\nauthorization:  Bearer abc \r\n\r\n";
        let request = parse_head(head).unwrap();
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/status");
        assert_eq!(request.authorization.as_deref(), Some("Bearer abc"));
    }

    #[test]
    fn malformed_heads_are_errors_not_panics() {
        let cases: &[&[u8]] = &[
            b"\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET /\r\n\r\n",
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"get / HTTP/1.1\r\n\r\n",
            b"GET status HTTP/1.1\r\n\r\n",
            b"GET / HTTP/2\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
            b"GET / HTTP/1.1\r\n: empty name\r\n\r\n",
            b"GET / HTTP/1.1\r\nbad name: x\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01\x02\x00\r\n\r\n",
        ];
        for head in cases {
            assert!(
                matches!(parse_head(head), Err(HeadError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[tokio::test]
    async fn a_head_is_read_across_reads_and_bounded() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            for piece in [&b"GET /healthz HT"[..], b"TP/1.1\r\n", b"\r", b"\n"] {
                client.write_all(piece).await.unwrap();
            }
            client
        });
        let request = read_request(&mut server, Duration::from_secs(5)).await;
        assert_eq!(request.unwrap().path, "/healthz");
        drop(writer.await);

        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD_BYTES));
        client.write_all(big.as_bytes()).await.unwrap();
        let request = read_request(&mut server, Duration::from_secs(5)).await;
        assert_eq!(request, Err(HeadError::TooLarge));

        let (_client, mut server) = tokio::io::duplex(64);
        let request = read_request(&mut server, Duration::from_millis(20)).await;
        assert_eq!(request, Err(HeadError::Timeout));

        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        let request = read_request(&mut server, Duration::from_secs(5)).await;
        assert_eq!(request, Err(HeadError::Closed));
    }

    #[test]
    fn a_response_says_its_length_and_closes() {
        let bytes = HttpResponse::text(404, "no\n").to_bytes();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        assert!(text.contains("Content-Length: 3\r\n") && text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\nno\n"));
    }
}
