//! The core's errors: one enum every dialect maps exhaustively onto its own error codes.

use thiserror::Error;

/// A storage failure inside an engine. The message is for logs; dialects answer with their
/// own "internal error".
#[derive(Debug, Clone, Error)]
#[error("{0}")]
pub struct StoreError(pub String);

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
    #[error("storage failure: {0}")]
    Storage(#[from] StoreError),
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
