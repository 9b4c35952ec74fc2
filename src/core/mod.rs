//! The queue core: one model every dialect maps onto (see `shared/design.md`).
//!
//! It knows tenants only as namespace strings, queues, messages, consumer groups, leases,
//! dead letters, idempotency records and subscriptions — never HTTP, XML or a vendor's names.
//! Dialects call [`Broker`] with neutral verbs (`publish`, `receive`, `ack`, `nack`,
//! `change_visibility`, `redrive`, `reset`, …) and render [`CoreError`] in their own format.
//!
//! Layout: [`broker`] (directory, the lock → refresh → act → finish discipline), [`queue`] and
//! [`group`] (the per-queue state machine, over dense indexes: `queue::MessageMap`,
//! [`ready`]), one module per operation family ([`messages`],
//! [`deadletters`], [`groups`], [`idempotency`], [`subscriptions`]), [`receipt`] (handles),
//! [`clock`] (injectable time), [`model`] (the types).

pub mod broker;
pub mod clock;
pub mod deadletters;
pub mod error;
pub(crate) mod group;
pub mod groups;
pub mod idempotency;
pub mod messages;
pub mod model;
pub(crate) mod queue;
pub(crate) mod ready;
pub mod receipt;
pub mod subscriptions;

pub use broker::{Broker, CreateOutcome, Queue};
pub use clock::{Clock, ManualClock, Millis, SystemClock};
pub use deadletters::{DeadPage, RedriveSelector};
pub use error::{CoreError, Quota, Result, StoreError};
pub use idempotency::{IdempotencyTicket, Idempotent};
pub use queue::{ReceiveOptions, ResetPosition};
pub use receipt::ReceiptKey;
