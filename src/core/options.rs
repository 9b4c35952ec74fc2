//! What a caller asks of a receive or a consume reset: plain values both sides of the engine
//! seam understand.

use super::clock::Millis;
use super::model::TagRule;

/// How a consume reset positions a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetPosition {
    Earliest,
    Latest,
    /// Messages enqueued at or after this instant become deliverable.
    Time(Millis),
}

/// What a receive wants.
#[derive(Debug, Clone)]
pub struct ReceiveOptions {
    pub max: usize,
    /// Lease length; `None` uses the queue's visibility timeout.
    pub lease_ms: Option<u64>,
    /// Long-poll wait; `None` uses the queue's polling wait.
    pub wait_ms: Option<u64>,
    /// The group's tag rule (named groups): fixed by the first receive that gives one.
    pub rule: Option<TagRule>,
    /// Stop adding messages once their bodies would exceed this many bytes (at least one is
    /// always returned).
    pub max_bytes: Option<u64>,
}

impl ReceiveOptions {
    pub fn new(max: usize) -> Self {
        ReceiveOptions { max, lease_ms: None, wait_ms: None, rule: None, max_bytes: None }
    }
}
