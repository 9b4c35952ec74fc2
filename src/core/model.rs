//! The shared data model: queues, messages, consumer groups, dead letters, subscriptions.
//!
//! These types are what every dialect maps onto and what the engines keep. They carry no
//! wire format: a dialect turns its own request into a [`QueueConfig`] or [`NewMessage`], and
//! renders a [`Delivery`] or [`QueueInfo`] back in its own shape. Durations of queue attributes
//! are in seconds (every vendor API speaks seconds there); instants and per-message delays are in
//! milliseconds since the epoch ([`Millis`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use super::clock::Millis;

/// Standard queues serve by (priority, sequence); FIFO queues serve strictly by sequence and block
/// a group behind a leased or delayed head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueKind {
    Standard,
    Fifo,
}

/// What happens to a message once every group has acknowledged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetentionMode {
    /// MNS / infrai: an acknowledged message is gone.
    WorkQueue,
    /// DMS / CTYun: messages stay until retention, so a group can be reset and replay them.
    Log,
}

/// Where dead letters go and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterPolicy {
    /// A message is dead-lettered when its failure count reaches this number.
    pub max_failures: u32,
    pub target: DeadLetterTarget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeadLetterTarget {
    /// The queue's own per-group dead-letter store.
    Own,
    /// Another queue of the same namespace (by id): dead letters become its ordinary messages.
    Queue(Uuid),
}

/// The attributes of a queue: the union of what the dialects expose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueConfig {
    pub kind: QueueKind,
    pub mode: RetentionMode,
    /// Default lease length for a receive that names none.
    pub visibility_timeout_secs: u64,
    /// Default delay for a message that names none.
    pub delay_secs: u64,
    /// Largest body accepted by publish (the dialect measures the body as sent).
    pub max_message_bytes: u64,
    /// How long a message is kept, whatever its state.
    pub retention_secs: u64,
    /// Default long-poll wait for a receive that names none.
    pub polling_wait_secs: u64,
    pub dead_letter: Option<DeadLetterPolicy>,
    /// When false, message priorities are stored but ignored for ordering.
    pub priority: bool,
    pub description: String,
    /// Stored and echoed (MNS LoggingEnabled); no effect.
    pub logging: bool,
    /// CTYun regionId: stored and echoed, not a namespace.
    pub region: Option<String>,
    /// Resource labels on the queue itself (DMS queue tags), key → value.
    pub labels: BTreeMap<String, String>,
    /// The vendor's name for the queue mode when it has no behaviour of its own here
    /// (CTYun/DMS `KAFKA_HA` …: served as standard queues, echoed as created).
    pub mode_label: Option<String>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            kind: QueueKind::Standard,
            mode: RetentionMode::WorkQueue,
            visibility_timeout_secs: 30,
            delay_secs: 0,
            max_message_bytes: 256 * 1024,
            retention_secs: 4 * 86_400,
            polling_wait_secs: 0,
            dead_letter: None,
            priority: true,
            description: String::new(),
            logging: false,
            region: None,
            labels: BTreeMap::new(),
            mode_label: None,
        }
    }
}

/// A queue as stored: identity plus configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRecord {
    pub id: Uuid,
    pub namespace: String,
    pub name: String,
    pub config: QueueConfig,
    pub created_at: Millis,
    pub modified_at: Millis,
}

/// A queue as reported to dialects: the record plus live counts of the default group.
#[derive(Debug, Clone)]
pub struct QueueInfo {
    pub record: QueueRecord,
    pub stats: GroupStats,
    /// Number of named consumer groups.
    pub group_count: usize,
    /// Messages currently stored (any state, any group).
    pub stored: u64,
}

/// How a message body should be read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BodyKind {
    /// The bytes are a JSON document (infrai payloads, DMS/CTYun bodies).
    Json,
    /// Opaque text as sent (MNS bodies, base64 or raw).
    Text,
}

/// A message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub body: Vec<u8>,
    pub kind: BodyKind,
    /// Attribute name → value. JSON dialects store each value's JSON text.
    pub attributes: BTreeMap<String, String>,
    /// At most three message tags, used by group tag filters.
    pub tags: Vec<String>,
    /// 1 (first) ..= 16 (last); `None` means the default, 8.
    pub priority: Option<u8>,
    /// Messages with the same key are delivered one at a time, in order: the next is not
    /// deliverable while an earlier one is leased (MNS MessageGroupId).
    pub order_key: Option<String>,
    /// `None` means the queue's default delay; `Some(0)` overrides it.
    pub delay_ms: Option<u64>,
}

impl NewMessage {
    /// A text message with no attributes, tags, priority or delay.
    pub fn text(body: impl Into<Vec<u8>>) -> Self {
        NewMessage {
            body: body.into(),
            kind: BodyKind::Text,
            attributes: BTreeMap::new(),
            tags: Vec::new(),
            priority: None,
            delay_ms: None,
            order_key: None,
        }
    }

    /// A JSON message (the bytes must be a JSON document).
    pub fn json(body: impl Into<Vec<u8>>) -> Self {
        NewMessage { kind: BodyKind::Json, ..NewMessage::text(body) }
    }
}

/// Default message priority (MNS scale: 1 is served first, 16 last).
pub const DEFAULT_PRIORITY: u8 = 8;
/// Most tags a message may carry.
pub const MAX_TAGS: usize = 3;

/// A number derived from a queue's id that binds receipt handles and message ids to the queue.
pub fn queue_salt(id: uuid::Uuid) -> u64 {
    let b = id.as_bytes();
    u64::from_be_bytes(b[0..8].try_into().expect("8 bytes")) ^ u64::from_be_bytes(b[8..16].try_into().expect("8 bytes"))
}

/// Tags that start with this character are the core's own, never a client's (publish refuses
/// them): [`ORDER_TAG`] + key is a message's ordering key. Kept among the tags so that the key
/// is in the message's in-memory metadata and durable without a record format of its own.
pub const RESERVED_TAG: char = '\u{1}';
/// The reserved tag prefix of an ordering key.
pub const ORDER_TAG: &str = "\u{1}order:";

/// A message id: opaque, unique within its queue, rendered as 32 upper-case hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageId(pub u128);

impl MessageId {
    pub(crate) fn new(salt: u64, seq: u64) -> Self {
        MessageId(((salt as u128) << 64) | seq as u128)
    }

    /// The queue salt and sequence this id was minted with.
    pub(crate) fn parts(self) -> (u64, u64) {
        ((self.0 >> 64) as u64, self.0 as u64)
    }

    /// Parses the 32-hex-digit form (either case).
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u128::from_str_radix(s, 16).ok().map(MessageId)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032X}", self.0)
    }
}

/// Why a message was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeadReason {
    /// Explicitly rejected without requeue.
    Nacked,
    /// Its failures reached the queue's (or subscription's) limit.
    MaxDeliveries,
}

/// Where a dead letter kept in another queue came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub queue_id: Uuid,
    pub reason: DeadReason,
    pub died_at: Millis,
    pub deliveries: u32,
    pub failures: u32,
    pub first_enqueued_at: Millis,
}

/// A message without its body: everything ordering and filtering need (the embedded engine
/// keeps these in memory and reads bodies on delivery).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageMeta {
    pub seq: u64,
    pub id: MessageId,
    pub kind: BodyKind,
    pub priority: u8,
    pub enqueued_at: Millis,
    /// Not deliverable before this instant (== enqueued_at when not delayed).
    pub not_before: Millis,
    pub size: u32,
    pub tags: Vec<String>,
    pub origin: Option<Box<Origin>>,
}

impl MessageMeta {
    /// The message's ordering key, if it has one.
    pub fn order_key(&self) -> Option<&str> {
        self.tags.iter().find_map(|t| t.strip_prefix(ORDER_TAG))
    }

    /// The tags a client gave (without the core's reserved ones).
    pub fn user_tags(&self) -> Vec<String> {
        self.tags.iter().filter(|t| !t.starts_with(RESERVED_TAG)).cloned().collect()
    }
}

/// The part of a stored message only read on delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageBody {
    pub body: Vec<u8>,
    pub attributes: BTreeMap<String, String>,
}

/// A tag filter of a consumer group: fixed by the group's first consume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRule {
    /// Sorted, deduplicated. Empty means "no filter".
    pub tags: Vec<String>,
    pub mode: TagMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TagMode {
    /// The message has at least one of the tags.
    Or,
    /// The message has every tag.
    And,
}

impl TagRule {
    /// A rule from any list of tags (order and duplicates do not matter).
    pub fn new(tags: impl IntoIterator<Item = String>, mode: TagMode) -> Self {
        let mut tags: Vec<String> = tags.into_iter().collect();
        tags.sort();
        tags.dedup();
        // With no tags the mode is meaningless: normalise so "no filter" is one rule.
        let mode = if tags.is_empty() { TagMode::Or } else { mode };
        TagRule { tags, mode }
    }

    /// The rule that lets everything through.
    pub fn none() -> Self {
        TagRule::new(Vec::new(), TagMode::Or)
    }

    pub fn matches(&self, msg_tags: &[String]) -> bool {
        if self.tags.is_empty() {
            return true;
        }
        match self.mode {
            TagMode::Or => self.tags.iter().any(|t| msg_tags.contains(t)),
            TagMode::And => self.tags.iter().all(|t| msg_tags.contains(t)),
        }
    }
}

/// Number of the default group of every queue.
pub const DEFAULT_GROUP: u32 = 0;

/// A named consumer group as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub queue_id: Uuid,
    /// Local number within the queue (the default group is 0 and is never stored).
    pub no: u32,
    /// External id, `g-<uuid>`.
    pub id: String,
    pub name: String,
    pub rule: Option<TagRule>,
    pub created_at: Millis,
    /// Set by a consume reset: messages below this sequence that were still delayed at the reset
    /// are skipped when their delay ends.
    pub reset_floor: u64,
}

/// A group as reported to dialects.
#[derive(Debug, Clone)]
pub struct GroupInfo {
    pub record: GroupRecord,
    pub stats: GroupStats,
}

/// Live counts of one group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// Deliverable now.
    pub ready: u64,
    /// Leased, lease not yet over.
    pub in_flight: u64,
    /// Waiting for their delay to end.
    pub delayed: u64,
    /// Dead letters of this group not yet consumed (own store), plus those kept elsewhere.
    pub dead: u64,
    /// Dead letters ever created for this group that are still retained (own store).
    pub dead_total: u64,
    /// Retained messages this group acknowledged.
    pub acked: u64,
    /// Retained messages (the queue's, any state).
    pub produced: u64,
    /// Enqueue time of the oldest message this group still has to finish.
    pub oldest_enqueued_at: Option<Millis>,
}

/// How a dead letter of the queue's own store is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeadState {
    Ready,
    Leased { until: Millis, lease: u64 },
    Acked,
}

/// The persisted state of one message in one group. Absent means "ready, never delivered".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub deliveries: u32,
    pub failures: u32,
    pub first_delivered_at: Millis,
    pub state: DeliveryState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryState {
    Ready,
    Leased {
        until: Millis,
        lease: u64,
    },
    Acked,
    /// Passed over by a consume reset.
    Skipped,
    Dead {
        died_at: Millis,
        reason: DeadReason,
        dl: DeadState,
    },
}

/// One delivered message: what a receive returns.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub meta: MessageMeta,
    pub body: MessageBody,
    /// The receipt handle naming this delivery.
    pub handle: String,
    pub lease_until: Millis,
    /// Times delivered, this delivery included.
    pub deliveries: u32,
    pub failures: u32,
    pub first_delivered_at: Millis,
}

/// A message looked at without leasing it (peek).
#[derive(Debug, Clone)]
pub struct Peeked {
    pub meta: MessageMeta,
    pub body: MessageBody,
    pub deliveries: u32,
    pub first_delivered_at: Option<Millis>,
}

/// A dead letter as listed.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub meta: MessageMeta,
    pub body: MessageBody,
    /// The queue the message died in.
    pub source_queue: Uuid,
    pub died_at: Millis,
    pub reason: DeadReason,
    pub deliveries: u32,
    pub failures: u32,
    pub first_enqueued_at: Millis,
}

/// A push subscription as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    pub id: Uuid,
    pub namespace: String,
    pub queue_id: Uuid,
    pub url: String,
    pub secret: Option<String>,
    pub max_retries: u32,
    pub visibility_timeout_secs: u64,
    pub dead_letter_queue: Option<Uuid>,
    pub created_at: Millis,
}

/// A remembered answer to an idempotent request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub namespace: String,
    pub capability: String,
    pub key: String,
    pub fingerprint: [u8; 32],
    pub status: u16,
    pub body: Vec<u8>,
    pub created_at: Millis,
}
