//! The socket as hyper sees it, watched: which bytes arrive while no request is being served
//! (the start of a request head, for the header timeout), and which responses hyper writes on
//! its own.
//!
//! hyper answers a request it cannot parse (a bad request line or header, a URI or a header
//! section too large) by itself, with 400/414/431 and an empty body, before any service — and so
//! any dialect — sees it, and it offers no hook to change that answer. Clients then see an empty
//! error with nothing to report. This wrapper recognises such an answer — a final response head
//! written while no request is in the service, with status 4xx and `content-length: 0` — and
//! writes a neutral JSON error with a request id in its place.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::conn::ConnState;

/// A stream (the TCP socket) watched for [`ConnState`].
pub struct Watched<S> {
    inner: S,
    state: Arc<ConnState>,
    /// A replacement response still being written: bytes and how far.
    pending: Option<(Vec<u8>, usize)>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, state: Arc<ConnState>) -> Self {
        Watched { inner, state, pending: None }
    }
}

/// The status of a response head hyper wrote on its own for a request it could not parse, if
/// `buf` is one.
fn automatic_error(buf: &[u8]) -> Option<u16> {
    if buf.len() > 512 || !buf.starts_with(b"HTTP/1.1 4") || !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let text = std::str::from_utf8(buf).ok()?;
    if !text.to_ascii_lowercase().contains("\r\ncontent-length: 0\r\n") {
        return None;
    }
    text.get(9..12)?.parse().ok()
}

/// The neutral error written instead of hyper's empty one.
fn neutral_error(status: u16) -> Vec<u8> {
    let (code, reason, message) = match status {
        414 => ("URITooLong", "URI Too Long", "The request URI is too long."),
        431 => (
            "RequestHeaderFieldsTooLarge",
            "Request Header Fields Too Large",
            "The request headers are too large or too many.",
        ),
        _ => ("BadRequest", "Bad Request", "The request could not be parsed as HTTP/1.1."),
    };
    let id = crate::http::new_request_id();
    let body = serde_json::json!({"error": {"code": code, "message": message, "request_id": id}}).to_string();
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: {id}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl<S: AsyncWrite + Unpin> Watched<S> {
    /// Writes what is left of a replacement response.
    fn drive_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, at)) = &mut self.pending {
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *at += n;
            if *at == bytes.len() {
                self.pending = None;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Whether `first` (the start of a write) is a response head hyper wrote on its own; then
    /// the replacement is queued.
    fn intercept(&mut self, first: &[u8]) -> bool {
        if !first.starts_with(b"HTTP/1.") || first.get(9) == Some(&b'1') {
            return false;
        }
        if self.state.claim_response_head() {
            return false;
        }
        match automatic_error(first) {
            Some(status) => {
                tracing::info!(status, "unparsable request: answered with a neutral error");
                self.pending = Some((neutral_error(status), 0));
                true
            }
            None => false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.bytes_read();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        std::task::ready!(self.drive_pending(cx))?;
        if self.intercept(buf) {
            // hyper's bytes count as written; ours go out instead.
            let _ = self.drive_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.drive_pending(cx))?;
        if let Some(first) = bufs.iter().find(|b| !b.is_empty())
            && self.intercept(first)
        {
            let _ = self.drive_pending(cx)?;
            return Poll::Ready(Ok(first.len()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drive_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drive_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_hypers_empty_error_heads() {
        let hyper = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Fri, 04 Dec 2026 19:00:00 GMT\r\n\r\n";
        assert_eq!(automatic_error(hyper), Some(431));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 57\r\n\r\n";
        assert_eq!(automatic_error(ours), None, "a response with a body is a dialect's own");
        assert_eq!(automatic_error(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"), None);
        assert_eq!(automatic_error(b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n"), None, "an unfinished head");
        let body = String::from_utf8(neutral_error(414)).unwrap();
        assert!(body.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{body}");
        let (head, json) = body.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", json.len())));
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["error"]["code"], "URITooLong");
        assert!(v["error"]["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    }
}
