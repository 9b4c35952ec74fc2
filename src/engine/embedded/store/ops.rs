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
/// First byte of a relocation payload: the same layout, with (queue, seq, old location) in the
/// header instead of metas.
pub const RELOCATE: u8 = 0xA2;

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
    /// Compaction: bodies copied out of a sparse log segment; each message is repointed to its
    /// copy if it still points at the old place when this is applied.
    #[serde(skip)]
    Relocate(Vec<Move>),
}

/// One body moved by compaction.
#[derive(Debug, Clone)]
pub struct Move {
    pub queue: Uuid,
    pub seq: u64,
    pub from: BodyLoc,
    /// The body record's bytes, copied verbatim (absent after a replay: the log has them).
    pub bytes: Option<Vec<u8>>,
    /// Set when the frame is placed in the log.
    pub loc: BodyLoc,
}

#[derive(Serialize, Deserialize)]
struct RelocateHeader {
    moves: Vec<(Uuid, u64, BodyLoc)>,
    lens: Vec<u32>,
}

/// Lays out `[tag | header len | header | bodies…]`; returns the payload and the body spans.
fn with_bodies(tag: u8, header: &[u8], bodies: &[&[u8]]) -> Encoded {
    let mut payload = Vec::with_capacity(5 + header.len() + bodies.iter().map(|b| b.len()).sum::<usize>());
    payload.push(tag);
    payload.extend_from_slice(&(header.len() as u32).to_le_bytes());
    payload.extend_from_slice(header);
    let mut spans = Vec::with_capacity(bodies.len());
    for b in bodies {
        spans.push((payload.len() as u32, b.len() as u32));
        payload.extend_from_slice(b);
    }
    Encoded { payload, bodies: spans }
}

/// Splits a payload laid out by [`with_bodies`] into its header and the locations of its
/// bodies, given where the payload is in the log.
fn split_bodies<'a>(
    payload: &'a [u8],
    lens: impl Fn(&'a [u8]) -> Result<Vec<u32>, StoreError>,
    segment: u64,
    offset: u64,
) -> Result<(&'a [u8], Vec<BodyLoc>), StoreError> {
    let corrupt = || StoreError::new("corrupt log record");
    let hlen = payload.get(1..5).ok_or_else(corrupt)?;
    let hlen = u32::from_le_bytes(hlen.try_into().expect("4 bytes")) as usize;
    let header = payload.get(5..5 + hlen).ok_or_else(corrupt)?;
    let mut at = 5 + hlen as u64;
    let mut locs = Vec::new();
    for len in lens(header)? {
        locs.push(BodyLoc { segment, offset: offset + at, len });
        at += u64::from(len);
    }
    if at > payload.len() as u64 {
        return Err(corrupt());
    }
    Ok((header, locs))
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
        match self {
            Op::Append(queue, entries) => {
                let bodies: Vec<Vec<u8>> = entries
                    .iter()
                    .map(|e| e.body.as_deref().map(encode).expect("an append being logged has its bodies"))
                    .collect();
                let header = encode(&AppendHeader {
                    queue: *queue,
                    metas: entries.iter().map(|e| e.meta.clone()).collect(),
                    lens: bodies.iter().map(|b| b.len() as u32).collect(),
                });
                with_bodies(APPEND, &header, &bodies.iter().map(Vec::as_slice).collect::<Vec<_>>())
            }
            Op::Relocate(moves) => {
                let bodies: Vec<&[u8]> = moves
                    .iter()
                    .map(|m| m.bytes.as_deref().expect("a relocation being logged has its bodies"))
                    .collect();
                let header = encode(&RelocateHeader {
                    moves: moves.iter().map(|m| (m.queue, m.seq, m.from)).collect(),
                    lens: bodies.iter().map(|b| b.len() as u32).collect(),
                });
                with_bodies(RELOCATE, &header, &bodies)
            }
            _ => Encoded { payload: encode(self), bodies: Vec::new() },
        }
    }

    /// Decodes a log payload found at `offset` of segment `segment` (appends get the locations
    /// of their bodies from there, not their bodies).
    pub fn decode(payload: &[u8], segment: u64, offset: u64) -> Result<Op, StoreError> {
        let corrupt = || StoreError::new("corrupt log record");
        match payload.first() {
            Some(&APPEND) => {
                let lens = |h: &[u8]| Ok(decode::<AppendHeader>(h, "append header")?.lens);
                let (header, locs) = split_bodies(payload, lens, segment, offset)?;
                let header: AppendHeader = decode(header, "append header")?;
                if header.metas.len() != locs.len() {
                    return Err(corrupt());
                }
                let entries = header
                    .metas
                    .into_iter()
                    .zip(locs)
                    .map(|(meta, loc)| AppendEntry { meta, body: None, loc })
                    .collect();
                Ok(Op::Append(header.queue, entries))
            }
            Some(&RELOCATE) => {
                let lens = |h: &[u8]| Ok(decode::<RelocateHeader>(h, "relocation header")?.lens);
                let (header, locs) = split_bodies(payload, lens, segment, offset)?;
                let header: RelocateHeader = decode(header, "relocation header")?;
                if header.moves.len() != locs.len() {
                    return Err(corrupt());
                }
                let moves = header
                    .moves
                    .into_iter()
                    .zip(locs)
                    .map(|((queue, seq, from), loc)| Move { queue, seq, from, bytes: None, loc })
                    .collect();
                Ok(Op::Relocate(moves))
            }
            _ => decode(payload, "log operation"),
        }
    }

    /// Roughly how many keys applying it touches.
    pub fn weight(&self) -> usize {
        match self {
            Op::Append(_, m) => m.len() + 1,
            Op::Relocate(m) => m.len(),
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
    fn a_relocation_places_each_copied_body_where_its_decoded_location_says() {
        let q = Uuid::new_v4();
        let old = |i: u64| BodyLoc { segment: 3, offset: 100 * i, len: 4 };
        let mv = |seq: u64, bytes: &[u8]| Move {
            queue: q,
            seq,
            from: old(seq),
            bytes: Some(bytes.to_vec()),
            loc: BodyLoc { segment: 0, offset: 0, len: 0 },
        };
        let op = Op::Relocate(vec![mv(1, b"aaaa"), mv(2, b"bbbbbb")]);
        let enc = op.encode();
        let Op::Relocate(moves) = Op::decode(&enc.payload, 9, 40).unwrap() else { panic!("not a relocation") };
        assert_eq!(moves.len(), 2);
        for (m, (want_seq, want)) in moves.iter().zip([(1u64, &b"aaaa"[..]), (2, b"bbbbbb")]) {
            assert_eq!((m.queue, m.seq, m.from), (q, want_seq, old(want_seq)));
            assert_eq!(m.loc.segment, 9);
            let at = (m.loc.offset - 40) as usize;
            assert_eq!(&enc.payload[at..at + m.loc.len as usize], want, "the copy is verbatim");
        }
        assert!(Op::decode(&enc.payload[..enc.payload.len() - 2], 9, 40).is_err());
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
