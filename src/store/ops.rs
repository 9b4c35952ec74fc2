//! The operations of the sled store as they travel through the log and the applier: their
//! encoding in log frames, and write-behind coalescing.
//!
//! A log payload is either a versioned [`codec`](super::codec) record of an [`Op`] (first byte
//! = the codec version), or an append (first byte [`APPEND`]) laid out so that each message body
//! sits whole at a known offset — the body's permanent home:
//!
//! ```text
//! 0xA1 | header len u32 LE | header: codec record of (queue, metas, body lengths) | body 1 | body 2 …
//! ```
//!
//! Each body is a codec record of [`MessageBody`]. sled stores a message's meta with the
//! [`BodyLoc`] of its body; reading a body is one positioned read of the log segment.

use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::StoreError;
use super::codec::{decode, encode};
use crate::core::model::{
    DeliveryRecord, GroupRecord, IdempotencyRecord, MessageBody, MessageMeta, QueueRecord, SubscriptionRecord,
};

/// First byte of an append payload (codec versions are small numbers).
pub const APPEND: u8 = 0xA1;

/// Where a message body is: log segment id, byte offset of its record in the segment, length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BodyLoc {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
}

/// One message of an append.
#[derive(Debug, Clone)]
pub struct AppendEntry {
    pub meta: MessageMeta,
    /// The body, held until applied so reads need not go to the log (absent after a replay:
    /// the log has it).
    pub body: Option<Arc<MessageBody>>,
    /// Set when the frame is placed in the log.
    pub loc: BodyLoc,
}

/// One store operation, as logged and applied.
///
/// `Append` never goes through serde: see the module doc for its layout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Op {
    PutQueue(QueueRecord),
    DeleteQueue(Uuid),
    PutGroup(GroupRecord),
    DeleteGroup(Uuid, u32),
    Remove(Uuid, Vec<u64>),
    /// A copy of a message (dead-lettering, redrive): the copy's meta points at the same body.
    Transfer {
        from: Uuid,
        from_seq: u64,
        to: Uuid,
        meta: MessageMeta,
        keep_source: bool,
    },
    SetDelivery(Uuid, u32, Vec<(u64, DeliveryRecord)>),
    ClearDelivery(Uuid, u32, Vec<u64>),
    PutIdempotency(IdempotencyRecord),
    DeleteIdempotency(Vec<(String, String, String)>),
    PutSubscription(SubscriptionRecord),
    DeleteSubscription(Uuid),
    /// Raises a queue's sequence high-water mark (what is left of appends coalescing removed).
    HighWater(Uuid, u64),
    /// Last: serde numbers variants by position, and a skipped variant before others would
    /// shift the numbers of those after it on decoding.
    #[serde(skip)]
    Append(Uuid, Vec<AppendEntry>),
}

#[derive(Serialize, Deserialize)]
struct AppendHeader {
    queue: Uuid,
    metas: Vec<MessageMeta>,
    lens: Vec<u32>,
}

/// An encoded payload, and for an append the (offset, length) of each body within it.
pub struct Encoded {
    pub payload: Vec<u8>,
    pub bodies: Vec<(u32, u32)>,
}

impl Op {
    /// Encodes the operation for the log.
    pub fn encode(&self) -> Encoded {
        let Op::Append(queue, entries) = self else {
            return Encoded { payload: encode(self), bodies: Vec::new() };
        };
        let bodies: Vec<Vec<u8>> = entries
            .iter()
            .map(|e| e.body.as_deref().map(encode).expect("an append being logged has its bodies"))
            .collect();
        let header = encode(&AppendHeader {
            queue: *queue,
            metas: entries.iter().map(|e| e.meta.clone()).collect(),
            lens: bodies.iter().map(|b| b.len() as u32).collect(),
        });
        let mut payload = Vec::with_capacity(5 + header.len() + bodies.iter().map(Vec::len).sum::<usize>());
        payload.push(APPEND);
        payload.extend_from_slice(&(header.len() as u32).to_le_bytes());
        payload.extend_from_slice(&header);
        let mut spans = Vec::with_capacity(bodies.len());
        for b in &bodies {
            spans.push((payload.len() as u32, b.len() as u32));
            payload.extend_from_slice(b);
        }
        Encoded { payload, bodies: spans }
    }

    /// Decodes a log payload found at `offset` of segment `segment` (appends get the locations
    /// of their bodies from there, not their bodies).
    pub fn decode(payload: &[u8], segment: u64, offset: u64) -> Result<Op, StoreError> {
        if payload.first() != Some(&APPEND) {
            return decode(payload, "log operation");
        }
        let corrupt = || StoreError("corrupt append in the log".into());
        let hlen = payload.get(1..5).ok_or_else(corrupt)?;
        let hlen = u32::from_le_bytes(hlen.try_into().expect("4 bytes")) as usize;
        let header: AppendHeader = decode(payload.get(5..5 + hlen).ok_or_else(corrupt)?, "append header")?;
        if header.metas.len() != header.lens.len() {
            return Err(corrupt());
        }
        let mut at = 5 + hlen as u64;
        let mut entries = Vec::with_capacity(header.metas.len());
        for (meta, len) in header.metas.into_iter().zip(header.lens) {
            entries.push(AppendEntry { meta, body: None, loc: BodyLoc { segment, offset: offset + at, len } });
            at += u64::from(len);
        }
        if at > payload.len() as u64 {
            return Err(corrupt());
        }
        Ok(Op::Append(header.queue, entries))
    }

    /// Roughly how many keys applying it touches.
    pub fn weight(&self) -> usize {
        match self {
            Op::Append(_, m) => m.len() + 1,
            Op::Remove(_, s) | Op::ClearDelivery(_, _, s) => 2 * s.len(),
            Op::SetDelivery(_, _, e) => e.len(),
            Op::DeleteIdempotency(k) => k.len(),
            _ => 1,
        }
    }
}

/// Write-behind coalescing: a message appended and removed within one set of pending operations
/// (consumed before the applier got to it) never needs to touch sled — its append, its delivery
/// records and its removal all drop out; only the sequence high-water mark stays. Messages that
/// are the source of a transfer in the same set are kept (the transfer reads their location).
pub fn coalesce(ops: &mut [(u64, Op)]) {
    // Removals first: a set with none (publishing only) costs one pass and no hashing.
    let mut removed: HashSet<(Uuid, u64)> = HashSet::new();
    let mut sources: HashSet<(Uuid, u64)> = HashSet::new();
    for (_, op) in ops.iter() {
        match op {
            Op::Remove(q, seqs) => removed.extend(seqs.iter().map(|s| (*q, *s))),
            Op::Transfer { from, from_seq, .. } => {
                sources.insert((*from, *from_seq));
            }
            _ => {}
        }
    }
    if removed.is_empty() {
        return;
    }
    let mut gone: HashSet<(Uuid, u64)> = HashSet::new();
    for (_, op) in ops.iter() {
        if let Op::Append(q, m) = op {
            gone.extend(m.iter().map(|e| (*q, e.meta.seq)).filter(|k| removed.contains(k) && !sources.contains(k)));
        }
    }
    if gone.is_empty() {
        return;
    }
    for (_, op) in ops.iter_mut() {
        match op {
            Op::Append(q, m) => {
                let q = *q;
                let high = m.iter().map(|e| e.meta.seq).max().unwrap_or(0);
                m.retain(|e| !gone.contains(&(q, e.meta.seq)));
                if m.is_empty() {
                    *op = Op::HighWater(q, high);
                }
            }
            Op::Remove(q, seqs) => {
                let q = *q;
                seqs.retain(|s| !gone.contains(&(q, *s)));
            }
            Op::SetDelivery(q, _, e) => {
                let q = *q;
                e.retain(|(s, _)| !gone.contains(&(q, *s)));
            }
            Op::ClearDelivery(q, _, seqs) => {
                let q = *q;
                seqs.retain(|s| !gone.contains(&(q, *s)));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{BodyKind, DeliveryState, MessageId};

    fn meta(seq: u64) -> MessageMeta {
        MessageMeta {
            seq,
            id: MessageId(seq as u128),
            kind: BodyKind::Text,
            priority: 8,
            enqueued_at: 0,
            not_before: 0,
            size: 1,
            tags: vec![],
            origin: None,
        }
    }

    fn entry(seq: u64, body: &[u8]) -> AppendEntry {
        AppendEntry {
            meta: meta(seq),
            body: Some(Arc::new(MessageBody { body: body.to_vec(), attributes: Default::default() })),
            loc: BodyLoc { segment: 0, offset: 0, len: 0 },
        }
    }

    #[test]
    fn an_append_places_each_body_where_its_decoded_location_says() {
        let q = Uuid::new_v4();
        let op = Op::Append(q, vec![entry(1, b"first body"), entry(2, b"second")]);
        let enc = op.encode();
        // As if the payload sat at offset 100 of segment 7.
        let Op::Append(dq, entries) = Op::decode(&enc.payload, 7, 100).unwrap() else { panic!("not an append") };
        assert_eq!(dq, q);
        assert_eq!(entries.iter().map(|e| e.meta.seq).collect::<Vec<_>>(), vec![1, 2]);
        for (i, (e, want)) in entries.iter().zip([&b"first body"[..], b"second"]).enumerate() {
            assert_eq!(e.loc.segment, 7);
            assert_eq!((e.loc.offset, e.loc.len), (100 + u64::from(enc.bodies[i].0), enc.bodies[i].1));
            let at = (e.loc.offset - 100) as usize;
            let body: MessageBody = decode(&enc.payload[at..at + e.loc.len as usize], "body").unwrap();
            assert_eq!(body.body, want);
        }
        let other = Op::Remove(q, vec![3]).encode();
        assert!(matches!(Op::decode(&other.payload, 7, 0).unwrap(), Op::Remove(_, s) if s == vec![3]));
        assert!(Op::decode(&enc.payload[..enc.payload.len() - 1], 7, 100).is_err(), "a short append is corrupt");
    }

    #[test]
    fn appended_then_removed_messages_never_reach_sled() {
        let q = Uuid::new_v4();
        let rec = DeliveryRecord { deliveries: 1, failures: 0, first_delivered_at: 0, state: DeliveryState::Acked };
        let mut ops = vec![
            (1, Op::Append(q, vec![entry(1, b"x"), entry(2, b"x")])),
            (2, Op::SetDelivery(q, 0, vec![(1, rec.clone()), (2, rec.clone())])),
            (3, Op::Append(q, vec![entry(3, b"x")])),
            (4, Op::Transfer { from: q, from_seq: 3, to: q, meta: meta(9), keep_source: true }),
            (5, Op::Remove(q, vec![1, 3, 7])),
        ];
        coalesce(&mut ops);
        match &ops[0].1 {
            Op::Append(_, m) => assert_eq!(m.iter().map(|e| e.meta.seq).collect::<Vec<_>>(), vec![2]),
            other => panic!("{other:?}"),
        }
        match &ops[1].1 {
            Op::SetDelivery(_, _, e) => assert_eq!(e.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![2]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(&ops[2].1, Op::Append(_, m) if m.len() == 1), "a transfer source stays");
        match &ops[4].1 {
            Op::Remove(_, s) => assert_eq!(s, &vec![3, 7], "7 was appended earlier, 3 is a transfer source"),
            other => panic!("{other:?}"),
        }
        let mut all_gone = vec![(1, Op::Append(q, vec![entry(5, b"x")])), (2, Op::Remove(q, vec![5]))];
        coalesce(&mut all_gone);
        assert!(matches!(all_gone[0].1, Op::HighWater(_, 5)));
    }
}
