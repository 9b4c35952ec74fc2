//! [`Engine`] for the embedded engine: each method delegates to the inherent method of the same
//! name in the file of its family (this file only adapts signatures).

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use super::EmbeddedEngine;
use crate::core::clock::Millis;
use crate::core::deadletters::{DeadPage, RedriveSelector};
use crate::core::engine::{Claim, CreateOutcome, Engine, LeaseOf, Queue, Target};
use crate::core::error::Result;
use crate::core::idempotency::Idempotent;
use crate::core::model::{
    GroupInfo, GroupRecord, GroupStats, IdempotencyRecord, MessageId, MessageMeta, NewMessage, Peeked, QueueConfig,
    QueueInfo, QueueRecord, SubscriptionRecord,
};
use crate::core::options::{ReceiveOptions, ResetPosition};
use crate::core::wakeups::Wakeups;

#[async_trait]
impl Engine for EmbeddedEngine {
    fn wakeups(&self) -> &Wakeups {
        &self.wakeups
    }

    async fn create_queue(
        &self,
        ns: &str,
        name: &str,
        config: QueueConfig,
        max_queues: Option<usize>,
        now: Millis,
    ) -> Result<CreateOutcome> {
        EmbeddedEngine::create_queue(self, ns, name, config, max_queues, now).await
    }

    async fn update_queue(&self, q: &Queue, config: QueueConfig, now: Millis) -> Result<QueueRecord> {
        EmbeddedEngine::update_queue(self, q, config, now).await
    }

    async fn delete_queue(&self, q: &Queue) -> Result<()> {
        EmbeddedEngine::delete_queue(self, q).await
    }

    async fn queue(&self, ns: &str, name: &str) -> Result<Arc<Queue>> {
        EmbeddedEngine::queue(self, ns, name)
    }

    async fn queue_by_id(&self, ns: &str, id: Uuid) -> Result<Arc<Queue>> {
        EmbeddedEngine::queue_by_id(self, ns, id)
    }

    async fn list_queues(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Arc<Queue>>, bool)> {
        Ok(EmbeddedEngine::list_queues(self, ns, prefix, after, limit))
    }

    async fn queue_count_in(&self, ns: &str, region: Option<&str>) -> Result<usize> {
        Ok(EmbeddedEngine::queue_count_in(self, ns, region))
    }

    async fn namespaces(&self) -> Result<Vec<String>> {
        Ok(self.dir.read().by_name.keys().cloned().collect())
    }

    async fn publish(&self, q: &Queue, msgs: Vec<NewMessage>, now: Millis) -> Result<Vec<MessageMeta>> {
        EmbeddedEngine::publish(self, q, msgs, now).await
    }

    async fn claim(&self, q: &Queue, group: u32, opts: &ReceiveOptions, now: Millis) -> Result<Claim> {
        EmbeddedEngine::claim(self, q, group, opts, now)
    }

    async fn claim_dead(
        &self,
        q: &Queue,
        group: u32,
        max: usize,
        lease_ms: u64,
        max_bytes: Option<u64>,
        now: Millis,
    ) -> Result<Claim> {
        EmbeddedEngine::claim_dead(self, q, group, max, lease_ms, max_bytes, now)
    }

    async fn ack(&self, q: &Queue, group: u32, target: Target, now: Millis) -> Result<()> {
        EmbeddedEngine::ack(self, q, group, target, now)
    }

    async fn nack(&self, q: &Queue, group: u32, target: Target, dead_now: bool, now: Millis) -> Result<bool> {
        EmbeddedEngine::nack(self, q, group, target, dead_now, now)
    }

    async fn change_visibility(
        &self,
        q: &Queue,
        group: u32,
        seq: u64,
        lease: u64,
        until: Millis,
        now: Millis,
    ) -> Result<LeaseOf> {
        EmbeddedEngine::change_visibility(self, q, group, seq, lease, until, now)
    }

    async fn dead_letter_delivery(
        &self,
        q: &Queue,
        group: u32,
        seq: u64,
        lease: u64,
        target: Option<Uuid>,
        now: Millis,
    ) -> Result<()> {
        EmbeddedEngine::dead_letter_delivery(self, q, group, seq, lease, target, now)
    }

    async fn settle_dead(&self, q: &Queue, group: u32, seq: u64, lease: u64, success: bool, now: Millis) -> Result<()> {
        EmbeddedEngine::settle_dead(self, q, group, seq, lease, success, now)
    }

    async fn confirm(
        &self,
        q: &Queue,
        group: u32,
        dead: bool,
        entries: &[(Option<(u64, u64)>, bool)],
        now: Millis,
    ) -> Result<u64> {
        EmbeddedEngine::confirm(self, q, group, dead, entries, now)
    }

    async fn peek(&self, q: &Queue, group: u32, max: usize, now: Millis) -> Result<Vec<Peeked>> {
        EmbeddedEngine::peek(self, q, group, max, now)
    }

    async fn purge(&self, q: &Queue, now: Millis) -> Result<u64> {
        EmbeddedEngine::purge(self, q, now).await
    }

    async fn stats(&self, q: &Queue, group: u32, now: Millis) -> Result<GroupStats> {
        EmbeddedEngine::stats(self, q, group, now)
    }

    async fn info(&self, q: &Queue, now: Millis) -> Result<QueueInfo> {
        EmbeddedEngine::info(self, q, now)
    }

    async fn create_groups(
        &self,
        q: &Queue,
        names: &[String],
        max_groups: Option<usize>,
        now: Millis,
    ) -> Result<Vec<GroupRecord>> {
        EmbeddedEngine::create_groups(self, q, names, max_groups, now).await
    }

    async fn groups(&self, q: &Queue, now: Millis) -> Result<Vec<GroupInfo>> {
        EmbeddedEngine::groups(self, q, now)
    }

    async fn group_no(&self, q: &Queue, id_or_name: &str) -> Result<u32> {
        EmbeddedEngine::group_no(self, q, id_or_name)
    }

    async fn group(&self, q: &Queue, no: u32) -> Result<GroupRecord> {
        EmbeddedEngine::group(self, q, no)
    }

    async fn delete_groups(&self, q: &Queue, nos: &[u32], now: Millis) -> Result<()> {
        EmbeddedEngine::delete_groups(self, q, nos, now).await
    }

    async fn reset(&self, q: &Queue, group: u32, pos: ResetPosition, force: bool, now: Millis) -> Result<()> {
        EmbeddedEngine::reset(self, q, group, pos, force, now).await
    }

    async fn dead_letters(
        &self,
        q: &Queue,
        after: Option<(Millis, MessageId)>,
        limit: usize,
        now: Millis,
    ) -> Result<DeadPage> {
        EmbeddedEngine::dead_letters(self, q, after, limit, now)
    }

    async fn redrive(&self, q: &Queue, sel: RedriveSelector, max: usize, now: Millis) -> Result<u64> {
        EmbeddedEngine::redrive(self, q, sel, max, now).await
    }

    async fn idempotency_begin(
        &self,
        ns: &str,
        capability: &str,
        key: &str,
        fingerprint: [u8; 32],
        now: Millis,
    ) -> Result<Idempotent> {
        Ok(EmbeddedEngine::idempotency_begin(self, ns, capability, key, fingerprint, now).await)
    }

    async fn idempotency_lookup(
        &self,
        ns: &str,
        capability: &str,
        key: &str,
        now: Millis,
    ) -> Result<Option<([u8; 32], u16, Vec<u8>)>> {
        Ok(EmbeddedEngine::idempotency_lookup(self, ns, capability, key, now))
    }

    async fn idempotency_record(&self, record: IdempotencyRecord) -> Result<()> {
        EmbeddedEngine::idempotency_record(self, record).await
    }

    async fn subscribe(&self, rec: SubscriptionRecord) -> Result<()> {
        EmbeddedEngine::subscribe(self, rec).await
    }

    async fn unsubscribe(&self, id: Uuid) -> Result<bool> {
        EmbeddedEngine::unsubscribe(self, id).await
    }

    async fn subscription(&self, id: Uuid) -> Result<Option<SubscriptionRecord>> {
        Ok(EmbeddedEngine::subscription(self, id))
    }

    async fn subscriptions(&self) -> Result<Vec<SubscriptionRecord>> {
        Ok(EmbeddedEngine::subscriptions(self))
    }

    async fn subscriptions_of(&self, queue: Uuid) -> Result<Vec<SubscriptionRecord>> {
        Ok(EmbeddedEngine::subscriptions_of(self, queue))
    }

    async fn sweep(&self, now: Millis) -> Result<()> {
        EmbeddedEngine::sweep(self, now);
        Ok(())
    }

    async fn next_due(&self) -> Option<Millis> {
        EmbeddedEngine::next_due(self)
    }

    fn readiness(&self) -> std::result::Result<(), String> {
        self.store.readiness()
    }

    fn storage_metrics(&self) -> Vec<crate::core::engine::StorageMetric> {
        self.store.metrics()
    }

    fn close(&self) -> Result<()> {
        if self.closed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        // In a storage fault the flush gives up after a while; the close still runs (it writes
        // what it can and says what it could not). A real failure is reported after closing.
        let flushed = self.store.flush();
        if let Err(e) = &flushed {
            tracing::warn!(error = %e, "the final flush did not complete");
        }
        self.store.close()?;
        match flushed {
            Err(e) if !e.unavailable => Err(e.into()),
            _ => Ok(()),
        }
    }
}
