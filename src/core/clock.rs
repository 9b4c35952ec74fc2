//! Time, injected.
//!
//! Every time-dependent decision of the core (lease expiry, delays, retention, idempotency
//! windows, long-poll deadlines) reads a [`Clock`]. Production uses [`SystemClock`]; tests use
//! [`ManualClock`] and move time forward explicitly, so no test has to sleep to see a lease
//! expire. Waiting is part of the clock too ([`Clock::sleep_until`]): a long poll parked on a
//! manual clock wakes when the test advances the clock past its deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (UTC). The core's only notion of time.
pub type Millis = u64;

/// A boxed future returned by [`Clock::sleep_until`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A source of time the core can be given.
pub trait Clock: Send + Sync + 'static {
    /// The current time in ms since the epoch.
    fn now(&self) -> Millis;
    /// A future that completes once `now() >= at`.
    fn sleep_until(&self, at: Millis) -> Sleep;
}

/// Wall-clock time; sleeps on tokio's timer.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }

    fn sleep_until(&self, at: Millis) -> Sleep {
        let now = self.now();
        let wait = Duration::from_millis(at.saturating_sub(now));
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that only moves when told to. Sleepers wake when [`ManualClock::advance`] or
/// [`ManualClock::set`] moves time past their deadline.
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

#[derive(Debug)]
struct ManualInner {
    now: AtomicU64,
    tick: tokio::sync::watch::Sender<Millis>,
}

impl ManualClock {
    /// A manual clock starting at `start` ms since the epoch.
    pub fn new(start: Millis) -> Self {
        let (tick, _) = tokio::sync::watch::channel(start);
        ManualClock { inner: Arc::new(ManualInner { now: AtomicU64::new(start), tick }) }
    }

    /// Moves time forward by `d`.
    pub fn advance(&self, d: Duration) {
        let now = self.inner.now.fetch_add(d.as_millis() as u64, Ordering::SeqCst) + d.as_millis() as u64;
        self.inner.tick.send_replace(now);
    }

    /// Sets the time (it may not go backwards: earlier values are ignored).
    pub fn set(&self, at: Millis) {
        let now = self.inner.now.fetch_max(at, Ordering::SeqCst).max(at);
        self.inner.tick.send_replace(now);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        self.inner.now.load(Ordering::SeqCst)
    }

    fn sleep_until(&self, at: Millis) -> Sleep {
        let mut rx = self.inner.tick.subscribe();
        Box::pin(async move {
            loop {
                if *rx.borrow_and_update() >= at {
                    return;
                }
                if rx.changed().await.is_err() {
                    // The clock is gone: nobody can ever advance it again.
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}
