//! Named consumer groups of the embedded engine: create, list, delete, look up, reset.

use super::EmbeddedEngine;
use crate::core::clock::Millis;
use crate::core::engine::Queue;
use crate::core::error::{CoreError, Quota, Result};
use crate::core::model::{DEFAULT_GROUP, GroupInfo, GroupRecord, RetentionMode};
use crate::core::options::ResetPosition;

impl EmbeddedEngine {
    pub(crate) async fn create_groups(
        &self,
        q: &Queue,
        names: &[String],
        max_groups: Option<usize>,
        now: Millis,
    ) -> Result<Vec<GroupRecord>> {
        let c = self.cell(q)?;
        let created = self.with_state(&c, now, |st, cx| {
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

    pub(crate) fn groups(&self, q: &Queue, now: Millis) -> Result<Vec<GroupInfo>> {
        let c = self.cell(q)?;
        self.with_state(&c, now, |st, _| {
            let mut out = Vec::new();
            for g in st.groups.values().filter(|g| g.no() != DEFAULT_GROUP) {
                out.push(GroupInfo { record: g.record.clone(), stats: st.stats(g.no())? });
            }
            Ok(out)
        })
    }

    pub(crate) fn group_no(&self, q: &Queue, id_or_name: &str) -> Result<u32> {
        let key = id_or_name.trim();
        let c = self.cell(q)?;
        let st = c.state.lock();
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

    pub(crate) fn group(&self, q: &Queue, no: u32) -> Result<GroupRecord> {
        let c = self.cell(q)?;
        let st = c.state.lock();
        if st.deleted {
            return Err(CoreError::QueueNotFound);
        }
        st.group(no).map(|g| g.record.clone())
    }

    pub(crate) async fn delete_groups(&self, q: &Queue, nos: &[u32], now: Millis) -> Result<()> {
        let c = self.cell(q)?;
        self.with_state(&c, now, |st, _| {
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

    pub(crate) async fn reset(
        &self,
        q: &Queue,
        group: u32,
        pos: ResetPosition,
        force: bool,
        now: Millis,
    ) -> Result<()> {
        let c = self.cell(q)?;
        self.with_state(&c, now, |st, cx| st.reset(group, pos, force, cx))?;
        self.store.sync().await?;
        Ok(())
    }
}
