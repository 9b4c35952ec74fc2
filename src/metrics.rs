//! Prometheus metrics: what `/metrics` on the admin listener serves.
//!
//! Request counts and latencies are recorded as requests finish (by dialect, operation and
//! status class: the operation names are the dialects' own, a fixed set, so the label space is
//! bounded). Everything about queues is read when scraped — depth by state and the counters of
//! [`crate::core::counters`] for each queue that exists then, each named consumer group's
//! backlog, long polls waiting, the engine's storage numbers, pushes, the process — into a
//! registry built for that scrape, so a deleted queue's series are gone at the next scrape and
//! nothing has to be unregistered. The text is encoded by `prometheus-client` (OpenMetrics
//! text, which Prometheus scrapes natively).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::core::{Broker, Millis};
use crate::http::Operation;

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    dialect: &'static str,
    operation: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    dialect: &'static str,
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    tenant: String,
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    tenant: String,
    queue: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    tenant: String,
    queue: String,
    group: String,
}

/// What is recorded as requests happen.
pub struct Metrics {
    started: Instant,
    requests: Family<RequestLabels, Counter>,
    latency: Family<OperationLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            started: Instant::now(),
            requests: Family::default(),
            // 0.25 ms … about 8 s.
            latency: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.000_25, 2.0, 16))),
        }
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

impl Metrics {
    /// Counts a finished request of the vendor listener.
    pub fn record(&self, op: Operation, status: u16, took: Duration) {
        let labels = RequestLabels { dialect: op.dialect, operation: op.name, status: status_class(status) };
        self.requests.get_or_create(&labels).inc();
        self.latency
            .get_or_create(&OperationLabels { dialect: op.dialect, operation: op.name })
            .observe(took.as_secs_f64());
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The exposition text, read now.
    pub async fn render(&self, broker: &Broker, data_dir: &std::path::Path) -> String {
        let mut reg = Registry::with_prefix("qgate");
        reg.register("requests", "Requests answered, by dialect, operation and status class", self.requests.clone());
        reg.register_with_unit(
            "request_duration",
            "Time to answer a request (long polls included), by dialect and operation",
            Unit::Seconds,
            self.latency.clone(),
        );
        queues(&mut reg, broker).await;
        let waiting: Gauge = Gauge::default();
        waiting.set(broker.waiting.load(Ordering::Relaxed));
        reg.register("long_poll_waiters", "Receives waiting for a message right now", waiting);
        storage(&mut reg, broker, data_dir);
        pushes(&mut reg);
        process(&mut reg, self.uptime());
        let mut out = String::with_capacity(64 * 1024);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &reg) {
            tracing::error!(error = %e, "encoding the metrics failed");
        }
        out
    }
}

/// Per-queue and per-group series, for every queue of every tenant namespace.
async fn queues(reg: &mut Registry, broker: &Broker) {
    let messages = Family::<StateLabels, Gauge>::default();
    let oldest = Family::<QueueLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let published = Family::<QueueLabels, Counter>::default();
    let delivered = Family::<QueueLabels, Counter>::default();
    let redelivered = Family::<QueueLabels, Counter>::default();
    let acked = Family::<QueueLabels, Counter>::default();
    let dead_lettered = Family::<QueueLabels, Counter>::default();
    let backlog = Family::<GroupLabels, Gauge>::default();
    let now = broker.now();
    let namespaces = broker.namespaces().await.unwrap_or_default();
    for ns in namespaces.iter().filter(|ns| !Broker::is_internal(ns)) {
        let Ok(list) = broker.all_queues_of(ns, "").await else { continue };
        for q in list {
            let Ok(info) = broker.info(&q).await else { continue };
            let ql = QueueLabels { tenant: ns.clone(), queue: q.name().to_string() };
            let s = &info.stats;
            for (state, n) in [("ready", s.ready), ("in_flight", s.in_flight), ("delayed", s.delayed), ("dead", s.dead)]
            {
                let l = StateLabels { tenant: ns.clone(), queue: q.name().to_string(), state };
                messages.get_or_create(&l).set(n as i64);
            }
            let age = oldest_ready_age(s.oldest_enqueued_at, now, s.ready);
            oldest.get_or_create(&ql).set(age.unwrap_or(0.0));
            let c = broker.counters.get(q.id());
            published.get_or_create(&ql).inc_by(c.published);
            delivered.get_or_create(&ql).inc_by(c.delivered);
            redelivered.get_or_create(&ql).inc_by(c.redelivered);
            acked.get_or_create(&ql).inc_by(c.acked);
            dead_lettered.get_or_create(&ql).inc_by(c.dead_lettered);
            if info.group_count > 0
                && let Ok(groups) = broker.groups(&q).await
            {
                for g in groups {
                    let gl =
                        GroupLabels { tenant: ns.clone(), queue: q.name().to_string(), group: g.record.name.clone() };
                    backlog.get_or_create(&gl).set((g.stats.ready + g.stats.in_flight + g.stats.delayed) as i64);
                }
            }
        }
    }
    reg.register("queue_messages", "Messages of a queue's default group, by state", messages);
    reg.register_with_unit(
        "queue_oldest_ready_age",
        "Age of the oldest message the default group still has to finish (0 when none is ready)",
        Unit::Seconds,
        oldest,
    );
    reg.register("queue_published", "Messages published since the process started", published);
    reg.register("queue_delivered", "Deliveries (receives) since the process started", delivered);
    reg.register("queue_redelivered", "Deliveries of a message delivered before", redelivered);
    reg.register("queue_acked", "Messages acknowledged since the process started", acked);
    reg.register("queue_dead_lettered", "Messages dead-lettered since the process started", dead_lettered);
    reg.register("group_backlog", "Messages a named consumer group has still to finish", backlog);
}

/// Seconds since the oldest unfinished message was enqueued, when something is ready.
pub fn oldest_ready_age(oldest: Option<Millis>, now: Millis, ready: u64) -> Option<f64> {
    match oldest {
        Some(t) if ready > 0 => Some(now.saturating_sub(t) as f64 / 1000.0),
        _ => None,
    }
}

fn storage(reg: &mut Registry, broker: &Broker, data_dir: &std::path::Path) {
    let sub = reg.sub_registry_with_prefix("store");
    for m in broker.engine().storage_metrics() {
        if m.counter {
            let c: Counter = Counter::default();
            c.inc_by(m.value);
            sub.register(m.name.trim_end_matches("_total"), m.help, c);
        } else {
            let g: Gauge = Gauge::default();
            g.set(m.value as i64);
            sub.register(m.name, m.help, g);
        }
    }
    let g: Gauge = Gauge::default();
    g.set(dir_size(data_dir) as i64);
    sub.register_with_unit("data_dir_size", "Bytes in the data directory", Unit::Bytes, g);
    let ready: Gauge = Gauge::default();
    ready.set(i64::from(broker.readiness().is_ok()));
    sub.register("ready", "1 while storage takes writes, 0 while it is full or failing", ready);
}

fn pushes(reg: &mut Registry) {
    let ok: Counter = Counter::default();
    ok.inc_by(crate::push::DELIVERED.load(Ordering::Relaxed));
    reg.register("push_deliveries", "Pushes an endpoint accepted (2xx)", ok);
    let failed: Counter = Counter::default();
    failed.inc_by(crate::push::FAILED.load(Ordering::Relaxed));
    reg.register("push_failures", "Push attempts that failed (status, timeout, connection)", failed);
}

fn process(reg: &mut Registry, uptime: Duration) {
    let sub = reg.sub_registry_with_prefix("process");
    if let Some((rss, cpu)) = proc_stat() {
        let g: Gauge = Gauge::default();
        g.set(rss as i64);
        sub.register_with_unit("resident_memory", "Resident set size", Unit::Bytes, g);
        let c: Counter<f64, std::sync::atomic::AtomicU64> = Counter::default();
        c.inc_by(cpu);
        sub.register_with_unit("cpu", "CPU time used (user and system)", Unit::Seconds, c);
    }
    if let Ok(d) = std::fs::read_dir("/proc/self/fd") {
        let g: Gauge = Gauge::default();
        g.set(d.count() as i64);
        sub.register("open_fds", "Open file descriptors", g);
    }
    let g: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
    g.set(uptime.as_secs_f64());
    sub.register_with_unit("uptime", "Time since the process started", Unit::Seconds, g);
    let info = prometheus_client::metrics::info::Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]);
    reg.register("build", "The running build", info);
}

/// RSS in bytes and CPU seconds of this process (Linux `/proc`).
fn proc_stat() -> Option<(u64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = 100.0; // USER_HZ on Linux
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let rss_pages: u64 = f.get(21)?.parse().ok()?;
    Some((rss_pages * 4096, (utime + stime) / ticks))
}

/// Total size of the files under `dir`.
pub fn dir_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Shared by the vendor listener's middleware and the admin listener.
pub type Shared = Arc<Metrics>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_ages() {
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(404), "4xx");
        assert_eq!(status_class(503), "5xx");
        assert_eq!(oldest_ready_age(Some(1_000), 3_500, 1), Some(2.5));
        assert_eq!(oldest_ready_age(Some(1_000), 3_500, 0), None);
        assert_eq!(oldest_ready_age(None, 3_500, 4), None);
        let (rss, cpu) = proc_stat().expect("linux /proc");
        assert!(rss > 0 && cpu >= 0.0);
    }
}
