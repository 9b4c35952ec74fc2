//! One keep-alive HTTP/1.1 connection per bench worker (hyper's low-level client: no pool, no
//! hidden concurrency), with a timing helper.

use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{SendRequest, handshake};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

/// A request ready to send.
pub type Req = Request<Full<Bytes>>;

pub struct Conn {
    send: SendRequest<Full<Bytes>>,
}

/// One answer and how long it took.
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
    pub micros: u64,
}

impl Conn {
    pub async fn open(addr: &str) -> Result<Conn, String> {
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let (send, conn) = handshake(TokioIo::new(tcp)).await.map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { send })
    }

    /// Sends a request and reads the whole answer.
    pub async fn call(&mut self, req: Req) -> Result<Answer, String> {
        let started = Instant::now();
        self.send.ready().await.map_err(|e| format!("connection: {e}"))?;
        let resp = self.send.send_request(req).await.map_err(|e| format!("request: {e}"))?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
        Ok(Answer { status, body, micros: started.elapsed().as_micros() as u64 })
    }
}
