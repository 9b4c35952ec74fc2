//! Named consumer groups (DMS / CTYun): create, list, delete, look up, reset.
//!
//! Every named group sees every message of its queue (fan-out) and keeps its own leases, acks,
//! failure counts and dead letters. A new group starts at the earliest retained message.

use super::broker::{Broker, Queue};
use super::error::{CoreError, Quota, Result};
use super::model::{DEFAULT_GROUP, GroupInfo, GroupRecord, RetentionMode};
use super::queue::ResetPosition;

impl Broker {
    /// Creates groups by name, all or none: an existing or repeated name is
    /// [`CoreError::GroupExists`]; more than `max_groups` named groups in total is
    /// [`CoreError::QuotaExceeded`].
    pub async fn create_groups(
        &self,
        q: &Queue,
        names: &[String],
        max_groups: Option<usize>,
    ) -> Result<Vec<GroupRecord>> {
        let created = self.with_state(q, |st, cx| {
            let existing: Vec<&str> =
                st.groups.values().filter(|g| g.no() != DEFAULT_GROUP).map(|g| g.record.name.as_str()).collect();
            for (i, n) in names.iter().enumerate() {
                if existing.contains(&n.as_str()) || names[..i].contains(n) {
                    return Err(CoreError::GroupExists);
                }
            }
            if let Some(max) = max_groups
                && existing.len() + names.len() > max
            {
                return Err(CoreError::QuotaExceeded(Quota::Groups));
            }
            let first_no = st.groups.keys().max().copied().unwrap_or(0) + 1;
            let mut out = Vec::new();
            for (no, n) in (first_no..).zip(names) {
                let rec = GroupRecord {
                    queue_id: st.record.id,
                    no,
                    id: format!("g-{}", uuid::Uuid::new_v4()),
                    name: n.clone(),
                    rule: None,
                    created_at: cx.now,
                    reset_floor: 0,
                };
                self.store.put_group(&rec)?;
                st.add_group(rec.clone());
                out.push(rec);
            }
            Ok(out)
        })?;
        self.store.sync().await?;
        Ok(created)
    }

    /// The named groups of a queue with their counts, oldest first.
    pub async fn groups(&self, q: &Queue) -> Result<Vec<GroupInfo>> {
        self.with_state(q, |st, _| {
            let mut out = Vec::new();
            for g in st.groups.values().filter(|g| g.no() != DEFAULT_GROUP) {
                out.push(GroupInfo { record: g.record.clone(), stats: st.stats(g.no())? });
            }
            Ok(out)
        })
    }

    /// Finds a named group by id (`g-…`, case-insensitive) or by name.
    pub async fn group_no(&self, q: &Queue, id_or_name: &str) -> Result<u32> {
        let key = id_or_name.trim();
        let st = q.state.lock();
        if st.deleted {
            return Err(CoreError::QueueNotFound);
        }
        st.groups
            .values()
            .filter(|g| g.no() != DEFAULT_GROUP)
            .find(|g| g.record.id.eq_ignore_ascii_case(key))
            .or_else(|| st.groups.values().filter(|g| g.no() != DEFAULT_GROUP).find(|g| g.record.name == key))
            .map(|g| g.no())
            .ok_or(CoreError::GroupNotFound)
    }

    /// The record of a named group.
    pub async fn group(&self, q: &Queue, no: u32) -> Result<GroupRecord> {
        let st = q.state.lock();
        st.group(no).map(|g| g.record.clone())
    }

    /// Deletes named groups (all or none), with their leases and dead letters.
    pub async fn delete_groups(&self, q: &Queue, nos: &[u32]) -> Result<()> {
        self.with_state(q, |st, _| {
            for no in nos {
                if *no == DEFAULT_GROUP || !st.groups.contains_key(no) {
                    return Err(CoreError::GroupNotFound);
                }
            }
            for no in nos {
                self.store.delete_group(st.record.id, *no)?;
                st.groups.remove(no);
            }
            if st.record.config.mode == RetentionMode::WorkQueue {
                // Messages only the deleted groups still held are finished now.
                let seqs: Vec<u64> = st
                    .msgs
                    .values()
                    .filter(|m| {
                        !st.delayed_seqs.contains(&m.seq) && !st.groups.values().any(|g| g.holds(st.pkey(m), m.seq))
                    })
                    .map(|m| m.seq)
                    .collect();
                for seq in &seqs {
                    st.drop_message(*seq);
                }
                self.store.remove(st.record.id, &seqs)?;
            }
            Ok(())
        })?;
        self.store.sync().await?;
        Ok(())
    }

    /// Repositions a group (consume reset). Without `force`, a group with deliveries in flight
    /// is [`CoreError::GroupBusy`]; with it, those deliveries' handles die.
    pub async fn reset(&self, q: &Queue, group: u32, pos: ResetPosition, force: bool) -> Result<()> {
        self.with_state(q, |st, cx| st.reset(group, pos, force, cx))?;
        self.store.sync().await?;
        Ok(())
    }
}
