//! Named consumer groups (DMS / CTYun): create, list, delete, look up, reset.
//!
//! Every named group sees every message of its queue (fan-out) and keeps its own leases, acks,
//! failure counts and dead letters. A new group starts at the earliest retained message.

use super::broker::Broker;
use super::engine::Queue;
use super::error::Result;
use super::model::{GroupInfo, GroupRecord};
use super::options::ResetPosition;

impl Broker {
    /// Creates groups by name, all or none: an existing or repeated name is
    /// [`CoreError::GroupExists`](super::CoreError::GroupExists); more than `max_groups` named
    /// groups in total is [`CoreError::QuotaExceeded`](super::CoreError::QuotaExceeded).
    pub async fn create_groups(
        &self,
        q: &Queue,
        names: &[String],
        max_groups: Option<usize>,
    ) -> Result<Vec<GroupRecord>> {
        self.engine.create_groups(q, names, max_groups, self.now()).await
    }

    /// The named groups of a queue with their counts, oldest first.
    pub async fn groups(&self, q: &Queue) -> Result<Vec<GroupInfo>> {
        self.engine.groups(q, self.now()).await
    }

    /// Finds a named group by id (`g-…`, case-insensitive) or by name.
    pub async fn group_no(&self, q: &Queue, id_or_name: &str) -> Result<u32> {
        self.engine.group_no(q, id_or_name).await
    }

    /// The record of a named group.
    pub async fn group(&self, q: &Queue, no: u32) -> Result<GroupRecord> {
        self.engine.group(q, no).await
    }

    /// Deletes named groups (all or none), with their leases and dead letters.
    pub async fn delete_groups(&self, q: &Queue, nos: &[u32]) -> Result<()> {
        self.engine.delete_groups(q, nos, self.now()).await
    }

    /// Repositions a group (consume reset). Without `force`, a group with deliveries in flight
    /// is [`CoreError::GroupBusy`](super::CoreError::GroupBusy); with it, those deliveries'
    /// handles die.
    pub async fn reset(&self, q: &Queue, group: u32, pos: ResetPosition, force: bool) -> Result<()> {
        self.engine.reset(q, group, pos, force, self.now()).await
    }
}
