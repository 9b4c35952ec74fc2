//! Wake-ups across nodes: a long poll on node B wakes when node A publishes.
//!
//! A NOTIFY inside a publish transaction would take PostgreSQL's cluster-wide notify lock at
//! every commit and hold it through the WAL flush, serialising all publishes; so publishers
//! never notify. Each node instead gathers the ids of queues that changed and sends them at
//! most every 20 ms, in a transaction of its own (`pg_notify`, several ids per payload); an id
//! that arrives while a send is under way waits for the next one, never dropped. Each node
//! keeps one connection of its own that LISTENs and wakes local waiters (a deleted queue's
//! waiters end).
//!
//! Nothing depends on a notification arriving: when the listening connection drops, every
//! local waiter is woken (and again once it is back), and a waiter with nothing to wait for
//! looks again within a second anyway (`claim` reports a next-due time at most a second away),
//! so a lost notification delays a delivery by at most ~1 s.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_postgres::Pool;
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};
use uuid::Uuid;

use crate::core::wakeups::Wakeups;

/// The channel every node listens on.
pub const CHANNEL: &str = "qgate";
/// How long changes are gathered before they are sent.
const GATHER: Duration = Duration::from_millis(20);
/// Ids per notification (a payload holds at most 8000 bytes).
const PER_PAYLOAD: usize = 200;

pub struct Notifier {
    node: Uuid,
    pending: Mutex<Pending>,
    kick: Notify,
    /// Whether the listening connection is up.
    pub listening: AtomicBool,
    stop: AtomicBool,
}

#[derive(Default)]
struct Pending {
    wake: HashSet<Uuid>,
    gone: HashSet<Uuid>,
}

impl Notifier {
    /// Starts the sender and the listener of this node.
    pub fn start(cfg: tokio_postgres::Config, pool: Pool, wakeups: Arc<Wakeups>) -> Arc<Notifier> {
        let n = Arc::new(Notifier {
            node: Uuid::new_v4(),
            pending: Mutex::new(Pending::default()),
            kick: Notify::new(),
            listening: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        tokio::spawn(send_loop(n.clone(), pool));
        tokio::spawn(listen_loop(n.clone(), cfg, wakeups));
        n
    }

    /// Queue `id` may have something deliverable: tell the other nodes.
    pub fn wake(&self, id: Uuid) {
        if self.pending.lock().wake.insert(id) {
            self.kick.notify_one();
        }
    }

    /// Queue `id` was deleted: end the other nodes' waits on it.
    pub fn gone(&self, id: Uuid) {
        if self.pending.lock().gone.insert(id) {
            self.kick.notify_one();
        }
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.kick.notify_one();
    }

    /// The payloads of what is pending: `NODE ID,ID,-ID` (`-`: deleted).
    fn take_payloads(&self) -> Vec<String> {
        let p = std::mem::take(&mut *self.pending.lock());
        let items: Vec<String> = p
            .gone
            .iter()
            .map(|id| format!("-{}", id.simple()))
            .chain(p.wake.iter().map(|id| id.simple().to_string()))
            .collect();
        items.chunks(PER_PAYLOAD).map(|c| format!("{} {}", self.node.simple(), c.join(","))).collect()
    }

    fn put_back(&self, payloads: &[String]) {
        let mut p = self.pending.lock();
        for payload in payloads {
            let Some((_, ids)) = payload.split_once(' ') else { continue };
            for item in ids.split(',') {
                match item.strip_prefix('-') {
                    Some(id) => {
                        if let Ok(id) = Uuid::parse_str(id) {
                            p.gone.insert(id);
                        }
                    }
                    None => {
                        if let Ok(id) = Uuid::parse_str(item) {
                            p.wake.insert(id);
                        }
                    }
                }
            }
        }
    }
}

async fn send_loop(n: Arc<Notifier>, pool: Pool) {
    loop {
        n.kick.notified().await;
        if n.stop.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep(GATHER).await;
        let payloads = n.take_payloads();
        if payloads.is_empty() {
            continue;
        }
        let sent = async {
            let client = pool.get().await.map_err(|e| e.to_string())?;
            let stmt = client.prepare_cached("SELECT pg_notify($1, $2)").await.map_err(|e| e.to_string())?;
            for p in &payloads {
                client.execute(&stmt, &[&CHANNEL, p]).await.map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(())
        }
        .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, "cannot notify other nodes; retrying");
            n.put_back(&payloads);
            tokio::time::sleep(Duration::from_secs(1)).await;
            n.kick.notify_one();
        }
    }
}

async fn listen_loop(n: Arc<Notifier>, cfg: tokio_postgres::Config, wakeups: Arc<Wakeups>) {
    let mut logged = false;
    while !n.stop.load(Ordering::SeqCst) {
        match listen_once(&n, &cfg, &wakeups).await {
            Ok(()) => {}
            Err(e) if !logged => {
                tracing::warn!(error = %e, "the listening connection to PostgreSQL is down; reconnecting");
                logged = true;
            }
            Err(_) => {}
        }
        n.listening.store(false, Ordering::SeqCst);
        // Whatever was notified meanwhile is lost: every waiter looks again.
        wakeups.wake_all();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn listen_once(n: &Notifier, cfg: &tokio_postgres::Config, wakeups: &Wakeups) -> Result<(), String> {
    let (client, mut conn) = cfg.connect(NoTls).await.map_err(|e| e.to_string())?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(m) = stream.next().await {
            match m {
                Ok(AsyncMessage::Notification(note)) => {
                    if tx.send(note.payload().to_string()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "listening connection ended");
                    return;
                }
            }
        }
    });
    let listened = client.batch_execute(&format!("LISTEN {CHANNEL}")).await;
    if let Err(e) = listened {
        driver.abort();
        return Err(e.to_string());
    }
    n.listening.store(true, Ordering::SeqCst);
    tracing::info!("listening for other nodes' changes");
    // Changes made while this connection was down were not heard: look again.
    wakeups.wake_all();
    let me = n.node.simple().to_string();
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Some(payload) => {
                    let Some((node, ids)) = payload.split_once(' ') else { continue };
                    if node == me {
                        continue;
                    }
                    for item in ids.split(',') {
                        match item.strip_prefix('-') {
                            Some(id) => if let Ok(id) = Uuid::parse_str(id) { wakeups.forget(id) },
                            None => if let Ok(id) = Uuid::parse_str(item) { wakeups.wake(id) },
                        }
                    }
                }
                None => break,
            },
            _ = n.kick_stop() => break,
        }
    }
    drop(client);
    driver.abort();
    Err("connection closed".into())
}

impl Notifier {
    async fn kick_stop(&self) {
        while !self.stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
