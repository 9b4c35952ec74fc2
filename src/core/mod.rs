//! The queue core: one model every dialect maps onto, and the [`Broker`] they call.
//!
//! It knows tenants only as namespace strings, queues, messages, consumer groups, leases,
//! dead letters, idempotency records and subscriptions — never HTTP, XML or a vendor's names.
//! Dialects call [`Broker`] with neutral verbs (`publish`, `receive`, `ack`, `nack`,
//! `change_visibility`, `confirm`, `redrive`, `reset`, …) and render [`CoreError`] in their own
//! format.
//!
//! Layout: [`broker`] (the directory and lifecycle), one module per operation family
//! ([`messages`], [`deadletters`], [`groups`], [`idempotency`], [`subscriptions`]), [`engine`]
//! (the seam: the trait an engine implements, and the values that cross it), [`wakeups`]
//! (long-poll wake-ups), [`receipt`] (handles), [`clock`] (injectable time), [`options`] and
//! [`model`] (the types), [`error`].
//!
//! # Guarantees (whatever the engine)
//!
//! * An answered publish is durable: it survives `kill -9` and power loss of the engine's
//!   storage. Leases, acks and releases may become durable a little later; after a crash they
//!   may be missing, which means redelivery (at-least-once), never loss.
//! * Within a group, one message is leased to at most one consumer at a time; a lease ends by
//!   ack, nack, change of visibility, or time (then the message is delivered again and a
//!   failure is counted).
//! * A receipt handle names one delivery (queue, group, message, lease). A handle this server
//!   did not mint for the queue is *malformed*; one that names a delivery no longer live is
//!   *stale*; the dialects answer them differently.
//! * FIFO queues deliver in sequence order and block behind a leased or delayed head;
//!   standard queues deliver by priority (when enabled) then sequence.
//! * Sequences, and the message ids derived from them, are never reused in a queue.

pub mod broker;
pub mod clock;
pub mod counters;
pub mod deadletters;
pub mod engine;
pub mod error;
pub mod groups;
pub mod idempotency;
pub mod messages;
pub mod model;
pub mod options;
pub mod receipt;
pub mod subscriptions;
pub mod wakeups;

pub use broker::Broker;
pub use clock::{Clock, ManualClock, Millis, SystemClock};
pub use deadletters::{DeadPage, RedriveSelector};
pub use engine::{CreateOutcome, Engine, Queue};
pub use error::{CoreError, Quota, Result, StoreError};
pub use idempotency::{IdempotencyTicket, Idempotent};
pub use options::{ReceiveOptions, ResetPosition};
pub use receipt::ReceiptKey;
pub use wakeups::Wakeups;
