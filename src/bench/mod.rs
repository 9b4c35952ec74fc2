//! `qgate bench`: a load generator for a running qgate, through any dialect with its real signing.
//!
//! It first measures `GET /healthz` with the same client, connections and duration — the HTTP
//! ceiling of the machine at that moment — and reports every workload's rate as a ratio to it,
//! so figures compare across noisy machines. Each worker owns one keep-alive connection. Any
//! error fails the run (exit status 1). See BENCHMARKS.md for the workloads and the targets.
//!
//! Besides the throughput workloads, three scale scenarios help measure the server itself (with
//! `--server-pid` and `--data-dir` the report adds its RSS, CPU time and data size):
//! `fill` (publish `--messages` into `--queue` as fast as batches go), `drain` (receive and
//! acknowledge everything in `--queue`), and `idle` (`--pollers` long polls on an empty queue).

pub mod conn;
pub mod dialect;
pub mod stats;
pub mod workload;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use conn::Conn;
use dialect::{Creds, Kind, Target};
use stats::{Row, Tally};
use workload::{Live, Shared, Workload};

/// Queue subscriptions of the fan-out workload's topic.
const FANOUT_QUEUES: usize = 3;

/// Options of `qgate bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// The server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Concurrent keep-alive connections.
    #[arg(long, short = 'c', default_value_t = 64)]
    pub connections: usize,
    /// Seconds per workload.
    #[arg(long, short = 'd', default_value_t = 5.0)]
    pub duration: f64,
    /// Message body size, bytes.
    #[arg(long, default_value_t = 256)]
    pub body_size: usize,
    /// Dialects to drive (infrai, mns, ctyun, dms).
    #[arg(long, value_delimiter = ',', default_value = "infrai,mns,ctyun,dms")]
    pub dialects: Vec<String>,
    /// Workloads (publish, batch, cycle, cycle-batch, longpoll, fanout — MNS only: publish to a
    /// topic with 3 queue subscriptions; fill, drain, idle for scale runs).
    #[arg(long, value_delimiter = ',', default_value = "publish,batch,cycle,cycle-batch,longpoll,fanout")]
    pub workloads: Vec<String>,
    /// Long-poll workload: messages per second the producer trickles.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// `fill`: how many messages.
    #[arg(long, default_value_t = 100_000)]
    pub messages: u64,
    /// `fill` / `drain` / `idle`: the queue (kept between runs).
    #[arg(long, default_value = "bench-scale")]
    pub queue: String,
    /// `idle`: long polls held open.
    #[arg(long, default_value_t = 1000)]
    pub pollers: usize,
    /// The server's process id, to report its RSS and CPU time.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// The server's data directory, to report its size.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long, default_value = "ifr_demo")]
    pub bearer: String,
    #[arg(long, default_value = "demo-ak")]
    pub access_key: String,
    #[arg(long, default_value = "demo-sk")]
    pub secret: String,
    /// DMS project id (default: the demo tenant's).
    #[arg(long)]
    pub project: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

/// The outcome of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub url: String,
    pub connections: usize,
    pub duration_secs: f64,
    pub body_size: usize,
    pub healthz_rps: f64,
    pub rows: Vec<Row>,
    pub errors: u64,
}

/// Resource readings of the server process.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    rss_kib: u64,
    cpu_ticks: u64,
}

fn usage(pid: Option<u32>) -> Option<Usage> {
    let pid = pid?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let cpu_ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Usage { rss_kib, cpu_ticks })
}

fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else { return 0 };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn host_of(url: &str) -> Result<String, String> {
    let rest = url.strip_prefix("http://").ok_or("the bench speaks plain http: --url must start with http://")?;
    Ok(rest.trim_end_matches('/').to_string())
}

struct Runner {
    args: BenchArgs,
    host: String,
    creds: Creds,
    run_id: String,
}

impl Runner {
    async fn connections(&self, n: usize) -> Result<Vec<Conn>, String> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(Conn::open(&self.host).await?);
        }
        Ok(out)
    }

    fn progress(&self, label: String, live: Arc<Live>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
        let quiet = self.args.quiet;
        tokio::spawn(async move {
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if quiet {
                    continue;
                }
                let s = started.elapsed().as_secs_f64().max(0.001);
                eprint!(
                    "\r{label:<24} {:>9.0} req/s {:>9.0} msg/s  errors {:<6}",
                    live.requests.load(Ordering::Relaxed) as f64 / s,
                    live.messages.load(Ordering::Relaxed) as f64 / s,
                    live.errors.load(Ordering::Relaxed)
                );
            }
            if !quiet {
                eprint!("\r{:<80}\r", "");
            }
        })
    }

    /// Runs `workload` with all connections for the configured duration.
    async fn timed(&self, kind: Option<Kind>, w: Workload, healthz: f64) -> Result<Row, String> {
        let mut setup = Conn::open(&self.host).await?;
        let name = format!("bench-{}-{}", w.name(), self.run_id);
        let target = match kind {
            Some(Kind::Mns) if w == Workload::Fanout => {
                Some(Target::setup_fanout(&mut setup, &self.host, &self.creds, &name, FANOUT_QUEUES).await?)
            }
            Some(k) => Some(Target::setup(&mut setup, k, &self.host, &self.creds, &name).await?),
            None => None,
        };
        let live = Arc::new(Live::default());
        let stop = Arc::new(AtomicBool::new(false));
        let sh = Arc::new(Shared {
            target: target.clone(),
            host: self.host.clone(),
            body_size: self.args.body_size,
            live: live.clone(),
            stop: stop.clone(),
        });
        let label = format!("{} {}", kind.map_or("http", |k| k.name()), w.name());
        let conns = self.connections(self.args.connections).await?;
        let progress = self.progress(label, live, stop.clone());
        let started = Instant::now();
        let mut tasks = Vec::new();
        let mut producer = None;
        if w == Workload::LongPoll {
            for c in conns {
                tasks.push(tokio::spawn(workload::poller(c, sh.clone(), 20)));
            }
            producer =
                Some(tokio::spawn(workload::producer(Conn::open(&self.host).await?, sh.clone(), self.args.rate)));
        } else {
            for (i, c) in conns.into_iter().enumerate() {
                tasks.push(tokio::spawn(workload::worker(c, w, sh.clone(), i as u64)));
            }
        }
        tokio::time::sleep(Duration::from_secs_f64(self.args.duration)).await;
        stop.store(true, Ordering::Relaxed);
        let mut total = Tally::default();
        let mut note = None;
        if let Some(p) = producer {
            let produced = p.await.map_err(|e| e.to_string())?;
            note = Some(format!("{} published at {}/s", produced.requests, self.args.rate));
            total.errors += produced.errors;
            total.first_error = produced.first_error;
            // Let the pollers collect what is still in flight, then end their waits.
            tokio::time::sleep(Duration::from_millis(500)).await;
            if let Some(t) = &target {
                let _ = t.teardown(&mut setup).await;
            }
        }
        total.merge(join_all(tasks).await?);
        let secs = started.elapsed().as_secs_f64();
        progress.abort();
        if w != Workload::LongPoll
            && let Some(t) = &target
        {
            t.teardown(&mut setup).await?;
        }
        let mut row = Row::new(kind.map_or("http", |k| k.name()), w.name(), secs, total, healthz);
        row.note = note;
        Ok(row)
    }

    /// `fill`: publishes `--messages` into `--queue` in batches, as fast as it goes.
    async fn fill(&self, kind: Kind, healthz: f64) -> Result<Row, String> {
        let mut setup = Conn::open(&self.host).await?;
        // A new queue is set up; one kept from an earlier run is looked up (CTYun and DMS need its
        // id and consumer group). infrai and MNS targets need neither, so with those a failed
        // setup (e.g. refused credentials) goes on and shows in the publish errors.
        let target = Arc::new(match Target::setup(&mut setup, kind, &self.host, &self.creds, &self.args.queue).await {
            Ok(t) => t,
            Err(created) => Target::lookup(&mut setup, kind, &self.host, &self.creds, &self.args.queue)
                .await
                .map_err(|found| format!("fill {}: {created}; and no existing queue: {found}", kind.name()))?,
        });
        let left = Arc::new(AtomicU64::new(self.args.messages));
        let live = Arc::new(Live::default());
        let stop = Arc::new(AtomicBool::new(false));
        let progress = self.progress(format!("{} fill", kind.name()), live.clone(), stop.clone());
        let started = Instant::now();
        let mut tasks = Vec::new();
        for (i, mut c) in self.connections(self.args.connections).await?.into_iter().enumerate() {
            let (target, left, live, size) = (target.clone(), left.clone(), live.clone(), self.args.body_size);
            tasks.push(tokio::spawn(async move {
                let mut t = Tally::default();
                let batch = kind.batch() as u64;
                let mut n = 0u64;
                // Claims the next batch in one atomic step: a separate load and subtract lets two
                // workers both claim the last partial batch, wrapping `left` below zero (an
                // endless fill).
                while let Ok(prev) =
                    left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| (l > 0).then(|| l - l.min(batch)))
                {
                    let take = prev.min(batch);
                    n += 1;
                    let bodies: Vec<String> =
                        (0..take).map(|j| workload::body(size, (i as u64) << 40 | n << 8 | j)).collect();
                    match c.call(target.publish(&bodies)).await {
                        Ok(a) if target.published(a.status.as_u16()) => {
                            t.record(a.micros);
                            t.messages += take;
                            live.requests.fetch_add(1, Ordering::Relaxed);
                            live.messages.fetch_add(take, Ordering::Relaxed);
                        }
                        Ok(a) => t.error(format!("publish answered {}", a.status)),
                        Err(e) => t.error(e),
                    }
                    if t.errors > 0 {
                        break;
                    }
                }
                t
            }));
        }
        let total = join_all(tasks).await?;
        stop.store(true, Ordering::Relaxed);
        progress.abort();
        Ok(Row::new(kind.name(), "fill", started.elapsed().as_secs_f64(), total, healthz))
    }

    /// `drain`: receives and acknowledges batches from `--queue` until it is empty (CTYun, DMS:
    /// through the bench's consumer group, created if the queue has none).
    async fn drain(&self, kind: Kind, healthz: f64) -> Result<Row, String> {
        let mut setup = Conn::open(&self.host).await?;
        let target = Arc::new(
            Target::lookup(&mut setup, kind, &self.host, &self.creds, &self.args.queue)
                .await
                .map_err(|e| format!("drain {}: {e}", kind.name()))?,
        );
        let live = Arc::new(Live::default());
        let stop = Arc::new(AtomicBool::new(false));
        let progress = self.progress(format!("{} drain", kind.name()), live.clone(), stop.clone());
        let started = Instant::now();
        let deadline = started + Duration::from_secs_f64(self.args.duration);
        let mut tasks = Vec::new();
        for mut c in self.connections(self.args.connections).await? {
            let (target, live) = (target.clone(), live.clone());
            tasks.push(tokio::spawn(async move {
                let mut t = Tally::default();
                while Instant::now() < deadline {
                    let a = match c.call(target.receive(kind.batch().min(16), 0, 300)).await {
                        Ok(a) => a,
                        Err(e) => {
                            t.error(e);
                            break;
                        }
                    };
                    t.record(a.micros);
                    let got = match target.received(a.status.as_u16(), &a.body) {
                        Ok(g) if g.is_empty() => break,
                        Ok(g) => g,
                        Err(e) => {
                            t.error(e);
                            break;
                        }
                    };
                    let tokens: Vec<String> = got.into_iter().map(|(tok, _)| tok).collect();
                    for req in target.ack(&tokens) {
                        match c.call(req).await {
                            Ok(a) if target.acked(a.status.as_u16(), &a.body) => t.record(a.micros),
                            Ok(a) => t.error(format!("ack answered {}", a.status)),
                            Err(e) => t.error(e),
                        }
                    }
                    t.messages += tokens.len() as u64;
                    live.messages.fetch_add(tokens.len() as u64, Ordering::Relaxed);
                    live.requests.fetch_add(2, Ordering::Relaxed);
                }
                t
            }));
        }
        let total = join_all(tasks).await?;
        stop.store(true, Ordering::Relaxed);
        progress.abort();
        Ok(Row::new(kind.name(), "drain", started.elapsed().as_secs_f64(), total, healthz))
    }

    /// `idle`: holds `--pollers` long polls open on an empty queue for the duration.
    async fn idle(&self, kind: Kind, healthz: f64) -> Result<Row, String> {
        let mut setup = Conn::open(&self.host).await?;
        let name = format!("bench-idle-{}", self.run_id);
        let target = Target::setup(&mut setup, kind, &self.host, &self.creds, &name).await?;
        let before = usage(self.args.server_pid);
        let stop = Arc::new(AtomicBool::new(false));
        let sh = Arc::new(Shared {
            target: Some(target.clone()),
            host: self.host.clone(),
            body_size: 16,
            live: Arc::new(Live::default()),
            stop: stop.clone(),
        });
        let mut tasks = Vec::new();
        for _ in 0..self.args.pollers {
            let c = Conn::open(&self.host).await?;
            tasks.push(tokio::spawn(workload::poller(c, sh.clone(), 30)));
        }
        // Let every poll arrive, then measure the quiet period.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let settled = usage(self.args.server_pid);
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs_f64(self.args.duration)).await;
        let after = usage(self.args.server_pid);
        let secs = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        target.teardown(&mut setup).await?;
        let total = join_all(tasks).await?;
        let mut row = Row::new(kind.name(), "idle", secs, total, healthz);
        if let (Some(b), Some(s), Some(a)) = (before, settled, after) {
            row.note = Some(format!(
                "{} pollers: RSS {} → {} MiB (+{} MiB), server CPU {:.1}% while idle",
                self.args.pollers,
                b.rss_kib / 1024,
                s.rss_kib / 1024,
                s.rss_kib.saturating_sub(b.rss_kib) / 1024,
                (a.cpu_ticks - s.cpu_ticks) as f64 / secs
            ));
        }
        Ok(row)
    }
}

/// Runs the bench; the report, or why it could not run.
pub async fn run(args: BenchArgs) -> Result<Report, String> {
    let host = host_of(&args.url)?;
    let project = args.project.clone().unwrap_or_else(|| crate::config::derived_project_id(crate::config::DEMO_TENANT));
    let creds = Creds {
        bearer: args.bearer.clone(),
        access_key: args.access_key.clone(),
        secret: args.secret.clone(),
        project,
    };
    let kinds: Vec<Kind> =
        args.dialects.iter().map(|d| Kind::parse(d).ok_or(format!("unknown dialect {d}"))).collect::<Result<_, _>>()?;
    let run_id = format!("{:08x}", rand::random::<u32>());
    let runner = Runner { args: args.clone(), host, creds, run_id };

    let health = runner.timed(None, Workload::Healthz, 0.0).await?;
    let healthz = health.requests_per_sec;
    let mut rows = vec![Row { ratio_to_healthz: 1.0, ..health }];
    for w in &args.workloads {
        for &k in &kinds {
            if w == "fanout" && k != Kind::Mns {
                continue; // topics are MNS's
            }
            let row = match w.as_str() {
                "fill" => runner.fill(k, healthz).await?,
                "drain" => runner.drain(k, healthz).await?,
                "idle" => runner.idle(k, healthz).await?,
                other => {
                    let wl = Workload::parse(other).ok_or(format!("unknown workload {other}"))?;
                    runner.timed(Some(k), wl, healthz).await?
                }
            };
            if !args.quiet && !args.json {
                eprintln!("{}", line(&row));
            }
            rows.push(row);
        }
    }
    if let Some(u) = usage(args.server_pid) {
        let mut r = Row::new("server", "resources", 0.0, Tally::default(), healthz);
        let data = args.data_dir.as_deref().map(dir_size).unwrap_or(0);
        r.note = Some(format!(
            "RSS {} MiB, CPU {:.1} s, data dir {:.1} MiB",
            u.rss_kib / 1024,
            u.cpu_ticks as f64 / 100.0,
            data as f64 / 1048576.0
        ));
        rows.push(r);
    }
    let errors = rows.iter().map(|r| r.errors).sum();
    Ok(Report {
        url: args.url.clone(),
        connections: args.connections,
        duration_secs: args.duration,
        body_size: args.body_size,
        healthz_rps: healthz,
        rows,
        errors,
    })
}

fn line(r: &Row) -> String {
    if r.seconds <= 0.0 {
        return format!("{:<7} {:<12} {}", r.dialect, r.workload, r.note.as_deref().unwrap_or(""));
    }
    format!(
        "{:<7} {:<12} {:>10.0} msg/s {:>10.0} req/s  ×{:<5.2} p50 {:>7.2} ms  p99 {:>7.2} ms  p99.9 {:>7.2} ms  errors {}{}",
        r.dialect,
        r.workload,
        r.messages_per_sec,
        r.requests_per_sec,
        r.ratio_to_healthz,
        r.p50_ms,
        r.p99_ms,
        r.p999_ms,
        r.errors,
        r.note.as_ref().map(|n| format!("  ({n})")).unwrap_or_default()
    )
}

/// Renders a report as text or JSON.
pub fn render(r: &Report, as_json: bool) -> String {
    if as_json {
        return serde_json::to_string_pretty(&json!(r)).unwrap_or_default();
    }
    let mut out = format!(
        "qgate bench: {} connections, {:.0} s per workload, {} B bodies, healthz {:.0} req/s\n",
        r.connections, r.duration_secs, r.body_size, r.healthz_rps
    );
    for row in &r.rows {
        out.push_str(&line(row));
        out.push('\n');
        if let Some(e) = &row.first_error {
            out.push_str(&format!("        first error: {e}\n"));
        }
    }
    out.push_str(if r.errors == 0 { "no errors\n" } else { "ERRORS: the run failed\n" });
    out
}

/// Waits for every worker and adds up their tallies.
async fn join_all(tasks: Vec<tokio::task::JoinHandle<Tally>>) -> Result<Tally, String> {
    let mut total = Tally::default();
    for t in tasks {
        total.merge(t.await.map_err(|e| e.to_string())?);
    }
    Ok(total)
}
