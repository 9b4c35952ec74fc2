//! The workloads: what each bench worker does in its loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;

use super::conn::Conn;
use super::dialect::Target;
use super::stats::Tally;

/// What a worker loop does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// `GET /healthz`: the HTTP ceiling of the machine at that moment.
    Healthz,
    /// One message per request.
    Publish,
    /// The dialect's largest batch per request.
    Batch,
    /// Publish one, receive one, acknowledge it.
    Cycle,
    /// The same with the dialect's largest batches.
    CycleBatch,
    /// Consumers long-polling an empty queue while a producer trickles messages.
    LongPoll,
    /// MNS only: one message per request published to a topic with three queue subscriptions.
    Fanout,
}

impl Workload {
    pub fn parse(s: &str) -> Option<Workload> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "healthz" => Workload::Healthz,
            "publish" => Workload::Publish,
            "batch" => Workload::Batch,
            "cycle" => Workload::Cycle,
            "cycle-batch" => Workload::CycleBatch,
            "longpoll" => Workload::LongPoll,
            "fanout" => Workload::Fanout,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Workload::Healthz => "healthz",
            Workload::Publish => "publish",
            Workload::Batch => "batch",
            Workload::Cycle => "cycle",
            Workload::CycleBatch => "cycle-batch",
            Workload::LongPoll => "longpoll",
            Workload::Fanout => "fanout",
        }
    }
}

/// Live counters the progress line reads.
#[derive(Default)]
pub struct Live {
    pub requests: AtomicU64,
    pub messages: AtomicU64,
    pub errors: AtomicU64,
}

/// A random printable body of `size` bytes (base64 alphabet, so every dialect carries it as is).
pub fn body(size: usize, seed: u64) -> String {
    const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHA[(x % 64) as usize] as char
        })
        .collect()
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// What every worker shares.
pub struct Shared {
    pub target: Option<Target>,
    pub host: String,
    pub body_size: usize,
    pub live: Arc<Live>,
    pub stop: Arc<AtomicBool>,
}

/// One worker: loops until `stop`, returns its tally.
pub async fn worker(mut conn: Conn, w: Workload, sh: Arc<Shared>, id: u64) -> Tally {
    let mut t = Tally::default();
    let mut n = 0u64;
    while !sh.stop.load(Ordering::Relaxed) {
        n += 1;
        let before = (t.requests, t.messages, t.errors);
        match step(&mut conn, w, &sh, id * 1_000_000 + n, &mut t).await {
            Ok(()) => {}
            Err(e) => {
                t.error(e);
                if t.errors > 100 {
                    break;
                }
            }
        }
        sh.live.requests.fetch_add(t.requests - before.0, Ordering::Relaxed);
        sh.live.messages.fetch_add(t.messages - before.1, Ordering::Relaxed);
        sh.live.errors.fetch_add(t.errors - before.2, Ordering::Relaxed);
    }
    t
}

async fn step(conn: &mut Conn, w: Workload, sh: &Shared, seed: u64, t: &mut Tally) -> Result<(), String> {
    if w == Workload::Healthz {
        let req = Request::get("/healthz").header("host", &sh.host).body(Full::new(Bytes::new())).expect("valid");
        let a = conn.call(req).await?;
        t.record(a.micros);
        return if a.status == 200 { Ok(()) } else { Err(format!("healthz answered {}", a.status)) };
    }
    let target = sh.target.as_ref().expect("a target for this workload");
    let n = match w {
        Workload::Batch | Workload::CycleBatch => target.kind.batch(),
        _ => 1,
    };
    let bodies: Vec<String> = (0..n).map(|i| body(sh.body_size, seed * 101 + i as u64)).collect();
    let a = conn.call(target.publish(&bodies)).await?;
    t.record(a.micros);
    if !target.published(a.status.as_u16()) {
        return Err(format!(
            "publish answered {}: {}",
            a.status,
            String::from_utf8_lossy(&a.body[..a.body.len().min(300)])
        ));
    }
    if matches!(w, Workload::Publish | Workload::Batch | Workload::Fanout) {
        t.messages += n as u64;
        return Ok(());
    }
    // Full cycle: receive what is there (another worker's messages count the same) and ack it.
    let a = conn.call(target.receive(n, 1, 60)).await?;
    t.record(a.micros);
    let got = target.received(a.status.as_u16(), &a.body)?;
    if got.is_empty() {
        return Ok(());
    }
    let tokens: Vec<String> = got.into_iter().map(|(tok, _)| tok).collect();
    for req in target.ack(&tokens) {
        let a = conn.call(req).await?;
        t.record(a.micros);
        if !target.acked(a.status.as_u16(), &a.body) {
            return Err(format!(
                "ack answered {}: {}",
                a.status,
                String::from_utf8_lossy(&a.body[..a.body.len().min(300)])
            ));
        }
    }
    t.messages += tokens.len() as u64;
    Ok(())
}

/// A long-poll consumer: waits for messages, records the delivery latency (publish to receipt)
/// carried in their bodies, acknowledges them.
pub async fn poller(mut conn: Conn, sh: Arc<Shared>, wait: u64) -> Tally {
    let target = sh.target.clone().expect("a target");
    let mut t = Tally::default();
    while !sh.stop.load(Ordering::Relaxed) {
        let a = match conn.call(target.receive(1, wait, 60)).await {
            Ok(a) => a,
            Err(e) => {
                t.error(e);
                break;
            }
        };
        t.requests += 1;
        let got = match target.received(a.status.as_u16(), &a.body) {
            Ok(g) => g,
            // The run is over and its queue deleted under the waiting polls: that is how they end.
            Err(_) if sh.stop.load(Ordering::Relaxed) => break,
            Err(e) => {
                t.error(e);
                continue;
            }
        };
        let received = now_micros();
        for (tok, body) in got {
            let sent: u64 = body.split('-').next().and_then(|s| s.parse().ok()).unwrap_or(received);
            t.latencies.push(received.saturating_sub(sent).min(u32::MAX as u64) as u32);
            t.messages += 1;
            sh.live.messages.fetch_add(1, Ordering::Relaxed);
            for req in target.ack(std::slice::from_ref(&tok)) {
                match conn.call(req).await {
                    Ok(a) if target.acked(a.status.as_u16(), &a.body) => t.requests += 1,
                    Ok(a) => t.error(format!("ack answered {}", a.status)),
                    Err(e) => t.error(e),
                }
            }
        }
    }
    t
}

/// The trickling producer of the long-poll workload: `rate` messages per second, each body
/// starting with its send time in µs.
pub async fn producer(mut conn: Conn, sh: Arc<Shared>, rate: f64) -> Tally {
    let target = sh.target.clone().expect("a target");
    let mut t = Tally::default();
    let gap = Duration::from_secs_f64(1.0 / rate.max(0.1));
    let mut next = Instant::now();
    let mut n = 0u64;
    while !sh.stop.load(Ordering::Relaxed) {
        tokio::time::sleep_until(next.into()).await;
        next += gap;
        n += 1;
        let b = format!("{}-{}", now_micros(), body(sh.body_size.saturating_sub(24).max(1), n));
        match conn.call(target.publish(&[b])).await {
            Ok(a) if target.published(a.status.as_u16()) => t.requests += 1,
            Ok(a) => t.error(format!("publish answered {}", a.status)),
            Err(e) => t.error(e),
        }
        sh.live.requests.fetch_add(1, Ordering::Relaxed);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_printable_and_sized() {
        let b = body(256, 7);
        assert_eq!(b.len(), 256);
        assert!(b.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/'));
        assert_ne!(body(16, 1), body(16, 2));
        assert_eq!(Workload::parse("cycle-batch"), Some(Workload::CycleBatch));
        assert_eq!(Workload::parse("nope"), None);
    }
}
