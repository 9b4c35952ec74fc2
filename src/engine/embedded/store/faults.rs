//! Fault injection: makes the store's own I/O fail on demand, so tests can check what a full
//! disk or a dying device does to it (and that it recovers) without filling a real disk.
//!
//! A [`Faults`] is handed to the store in its options; production passes none. Each point fails
//! with the errno set for it until cleared: log writes (after writing half of what they were
//! given, as a write cut short by ENOSPC does), log fsyncs, and sled (a batch, a flush, an open,
//! as sled reports its own I/O errors). A checkpoint hook runs between the steps of a checkpoint,
//! where a test copies the data directory to get what a crash at that point leaves on disk.

use std::sync::atomic::{AtomicI32, Ordering};

use parking_lot::Mutex;

use super::StoreError;

/// "No space left on device".
pub const ENOSPC: i32 = 28;
/// "Input/output error".
pub const EIO: i32 = 5;

/// Where a fault is injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    LogWrite,
    LogSync,
    Sled,
}

/// Steps of a checkpoint, in order (see `sled_store::checkpoint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// About to flush sled.
    BeforeFlush,
    /// sled flushed; the log segments it made unnecessary not yet deleted.
    Flushed,
    /// Dead segments deleted.
    Dropped,
}

type Hook = Box<dyn Fn(Step) + Send + Sync>;

/// Faults to inject (tests only).
#[derive(Default)]
pub struct Faults {
    log_write: AtomicI32,
    log_sync: AtomicI32,
    sled: AtomicI32,
    hook: Mutex<Option<Hook>>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("log_write", &self.log_write)
            .field("log_sync", &self.log_sync)
            .field("sled", &self.sled)
            .finish_non_exhaustive()
    }
}

impl Faults {
    /// Makes `at` fail with `errno` from now on (`None`: works again).
    pub fn set(&self, at: Point, errno: Option<i32>) {
        self.slot(at).store(errno.unwrap_or(0), Ordering::SeqCst);
    }

    /// Runs `hook` between the steps of every checkpoint.
    pub fn on_checkpoint(&self, hook: impl Fn(Step) + Send + Sync + 'static) {
        *self.hook.lock() = Some(Box::new(hook));
    }

    fn slot(&self, at: Point) -> &AtomicI32 {
        match at {
            Point::LogWrite => &self.log_write,
            Point::LogSync => &self.log_sync,
            Point::Sled => &self.sled,
        }
    }

    /// The error injected at `at`, if any.
    pub(crate) fn check(&self, at: Point) -> std::io::Result<()> {
        match self.slot(at).load(Ordering::SeqCst) {
            0 => Ok(()),
            errno => Err(std::io::Error::from_raw_os_error(errno)),
        }
    }

    pub(crate) fn step(&self, s: Step) {
        if let Some(h) = &*self.hook.lock() {
            h(s);
        }
    }
}

/// The error injected at `at`, as the store reports I/O errors (`faults` is `None` in production).
pub(crate) fn check(faults: Option<&Faults>, at: Point) -> Result<(), StoreError> {
    match faults.map(|f| f.check(at)) {
        Some(Err(e)) => Err(io_error(&format!("injected at {at:?}"), e)),
        _ => Ok(()),
    }
}

/// A store error for a failed I/O call: *unavailable* (retried) when the disk is full or the
/// quota is exhausted, otherwise a failure that the store still retries but reports as such.
pub(crate) fn io_error(what: &str, e: std::io::Error) -> StoreError {
    use std::io::ErrorKind as K;
    let message = format!("{what}: {e}");
    match e.kind() {
        K::StorageFull | K::QuotaExceeded => StoreError::unavailable(format!("storage full: {message}")),
        _ => StoreError::unavailable(format!("storage failing: {message}")),
    }
}
