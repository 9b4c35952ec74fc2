//! The core's errors: one enum every dialect maps exhaustively onto its own error codes.

use thiserror::Error;

/// A storage failure inside an engine. The message is for logs.
///
/// `unavailable` tells a passing condition (the disk is full, writes fail and are being retried,
/// the database is unreachable) from a failure nobody can retry past: dialects answer the first
/// with their own "service unavailable" (503-class: retry later, nothing was lost) and the second
/// with their "internal error".
#[derive(Debug, Clone, Error)]
#[error("{message}")]
pub struct StoreError {
    pub message: String,
    pub unavailable: bool,
}

impl StoreError {
    /// A failure (corruption, a bug, an I/O error the engine cannot recover from).
    pub fn new(message: impl Into<String>) -> Self {
        StoreError { message: message.into(), unavailable: false }
    }

    /// A passing condition: the engine cannot store anything right now and recovers by itself.
    pub fn unavailable(message: impl Into<String>) -> Self {
        StoreError { message: message.into(), unavailable: true }
    }
}

#[derive(Debug, Error)]
pub enum CoreError {
    #[error("queue does not exist")]
    QueueNotFound,
    /// Create of a name that exists. `same` tells whether the requested configuration equals
    /// the stored one (MNS answers 204 then, infrai 409 either way).
    #[error("queue already exists")]
    QueueExists { same: bool },
    #[error("consumer group does not exist")]
    GroupNotFound,
    #[error("consumer group already exists")]
    GroupExists,
    #[error("message does not exist")]
    MessageNotFound,
    /// Ack/nack by id of a message that exists but is not leased right now.
    #[error("message is not in flight")]
    NotInFlight,
    /// The receipt handle is not one this server minted for this queue (garbled, forged, foreign).
    #[error("receipt handle is malformed")]
    ReceiptMalformed,
    /// The receipt handle was minted here but no longer names a live delivery.
    #[error("receipt handle is stale")]
    ReceiptStale,
    /// A value the core itself rejects (the message names the field).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("quota of {0} exceeded")]
    QuotaExceeded(Quota),
    /// A consume with a tag rule different from the one fixed for the group.
    #[error("the group's tag rule is fixed and differs")]
    TagRuleChanged,
    /// Consume reset without force while the group has deliveries in flight.
    #[error("the group has messages in flight")]
    GroupBusy,
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The engine cannot store anything right now (disk full, I/O errors being retried, the
    /// database unreachable); it recovers by itself. The request was not applied, or not made
    /// durable: the client retries later.
    #[error("storage unavailable: {0}")]
    Unavailable(StoreError),
    #[error("storage failure: {0}")]
    Storage(StoreError),
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        if e.unavailable { CoreError::Unavailable(e) } else { CoreError::Storage(e) }
    }
}

/// What a quota limits (each dialect names its own error code after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// Queues per namespace (and region).
    Queues,
    /// Named consumer groups per queue.
    Groups,
}

impl std::fmt::Display for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Quota::Queues => "queues",
            Quota::Groups => "groups",
        })
    }
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;
