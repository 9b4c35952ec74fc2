//! [`Engine`] for the PostgreSQL engine: each method delegates to the inherent method of the
//! same name in the file of its family (this file only adapts signatures).

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use super::PgEngine;
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
impl Engine for PgEngine {
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
        PgEngine::create_queue(self, ns, name, config, max_queues, now).await
    }

    async fn update_queue(&self, q: &Queue, config: QueueConfig, now: Millis) -> Result<QueueRecord> {
        PgEngine::update_queue(self, q, config, now).await
    }

    async fn delete_queue(&self, q: &Queue) -> Result<()> {
        PgEngine::delete_queue(self, q).await
    }

    async fn queue(&self, ns: &str, name: &str) -> Result<Arc<Queue>> {
        PgEngine::queue(self, ns, name).await
    }

    async fn queue_cached(&self, ns: &str, name: &str) -> Result<Arc<Queue>> {
        PgEngine::queue_cached(self, ns, name).await
    }

    async fn queue_by_id(&self, ns: &str, id: Uuid) -> Result<Arc<Queue>> {
        PgEngine::queue_by_id(self, ns, id).await
    }

    async fn list_queues(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Arc<Queue>>, bool)> {
        PgEngine::list_queues(self, ns, prefix, after, limit).await
    }

    async fn queue_count_in(&self, ns: &str, region: Option<&str>) -> Result<usize> {
        PgEngine::queue_count_in(self, ns, region).await
    }

    async fn namespaces(&self) -> Result<Vec<String>> {
        PgEngine::namespaces(self).await
    }

    async fn publish(&self, q: &Queue, msgs: Vec<NewMessage>, now: Millis) -> Result<Vec<MessageMeta>> {
        PgEngine::publish(self, q, msgs, now).await
    }

    async fn claim(&self, q: &Queue, group: u32, opts: &ReceiveOptions, now: Millis) -> Result<Claim> {
        PgEngine::claim(self, q, group, opts, now).await
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
        PgEngine::claim_dead(self, q, group, max, lease_ms, max_bytes, now).await
    }

    async fn ack(&self, q: &Queue, group: u32, target: Target, now: Millis) -> Result<()> {
        PgEngine::ack(self, q, group, target, now).await
    }

    async fn nack(&self, q: &Queue, group: u32, target: Target, dead_now: bool, now: Millis) -> Result<bool> {
        PgEngine::nack(self, q, group, target, dead_now, now).await
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
        PgEngine::change_visibility(self, q, group, seq, lease, until, now).await
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
        PgEngine::dead_letter_delivery(self, q, group, seq, lease, target, now).await
    }

    async fn settle_dead(&self, q: &Queue, group: u32, seq: u64, lease: u64, success: bool, now: Millis) -> Result<()> {
        PgEngine::settle_dead(self, q, group, seq, lease, success, now).await
    }

    async fn confirm(
        &self,
        q: &Queue,
        group: u32,
        dead: bool,
        entries: &[(Option<(u64, u64)>, bool)],
        now: Millis,
    ) -> Result<u64> {
        PgEngine::confirm(self, q, group, dead, entries, now).await
    }

    async fn peek(&self, q: &Queue, group: u32, max: usize, now: Millis) -> Result<Vec<Peeked>> {
        PgEngine::peek(self, q, group, max, now).await
    }

    async fn purge(&self, q: &Queue, now: Millis) -> Result<u64> {
        PgEngine::purge(self, q, now).await
    }

    async fn stats(&self, q: &Queue, group: u32, now: Millis) -> Result<GroupStats> {
        PgEngine::stats(self, q, group, now).await
    }

    async fn info(&self, q: &Queue, now: Millis) -> Result<QueueInfo> {
        PgEngine::info(self, q, now).await
    }

    async fn create_groups(
        &self,
        q: &Queue,
        names: &[String],
        max_groups: Option<usize>,
        now: Millis,
    ) -> Result<Vec<GroupRecord>> {
        PgEngine::create_groups(self, q, names, max_groups, now).await
    }

    async fn groups(&self, q: &Queue, now: Millis) -> Result<Vec<GroupInfo>> {
        PgEngine::groups(self, q, now).await
    }

    async fn group_no(&self, q: &Queue, id_or_name: &str) -> Result<u32> {
        PgEngine::group_no(self, q, id_or_name).await
    }

    async fn group(&self, q: &Queue, no: u32) -> Result<GroupRecord> {
        PgEngine::group(self, q, no).await
    }

    async fn delete_groups(&self, q: &Queue, nos: &[u32], now: Millis) -> Result<()> {
        PgEngine::delete_groups(self, q, nos, now).await
    }

    async fn reset(&self, q: &Queue, group: u32, pos: ResetPosition, force: bool, now: Millis) -> Result<()> {
        PgEngine::reset(self, q, group, pos, force, now).await
    }

    async fn dead_letters(
        &self,
        q: &Queue,
        after: Option<(Millis, MessageId)>,
        limit: usize,
        now: Millis,
    ) -> Result<DeadPage> {
        PgEngine::dead_letters(self, q, after, limit, now).await
    }

    async fn redrive(&self, q: &Queue, sel: RedriveSelector, max: usize, now: Millis) -> Result<u64> {
        PgEngine::redrive(self, q, sel, max, now).await
    }

    async fn idempotency_begin(
        &self,
        ns: &str,
        capability: &str,
        key: &str,
        fingerprint: [u8; 32],
        now: Millis,
    ) -> Result<Idempotent> {
        PgEngine::idempotency_begin(self, ns, capability, key, fingerprint, now).await
    }

    async fn idempotency_lookup(
        &self,
        ns: &str,
        capability: &str,
        key: &str,
        now: Millis,
    ) -> Result<Option<([u8; 32], u16, Vec<u8>)>> {
        PgEngine::idempotency_lookup(self, ns, capability, key, now).await
    }

    async fn idempotency_record(&self, record: IdempotencyRecord) -> Result<()> {
        PgEngine::idempotency_record(self, record).await
    }

    async fn subscribe(&self, rec: SubscriptionRecord) -> Result<()> {
        PgEngine::subscribe(self, rec).await
    }

    async fn unsubscribe(&self, id: Uuid) -> Result<bool> {
        PgEngine::unsubscribe(self, id).await
    }

    async fn subscription(&self, id: Uuid) -> Result<Option<SubscriptionRecord>> {
        PgEngine::subscription(self, id).await
    }

    async fn subscriptions(&self) -> Result<Vec<SubscriptionRecord>> {
        PgEngine::subscriptions(self).await
    }

    async fn subscriptions_of(&self, queue: Uuid) -> Result<Vec<SubscriptionRecord>> {
        PgEngine::subscriptions_of(self, queue).await
    }

    async fn claim_owner(&self, key: &str, node: Uuid, until: Millis, now: Millis) -> Result<bool> {
        PgEngine::claim_owner(self, key, node, until, now).await
    }

    async fn sweep(&self, now: Millis) -> Result<()> {
        PgEngine::sweep(self, now).await
    }

    async fn next_due(&self) -> Option<Millis> {
        PgEngine::next_due(self).await
    }

    fn readiness(&self) -> std::result::Result<(), String> {
        PgEngine::readiness(self)
    }

    fn storage_metrics(&self) -> Vec<crate::core::engine::StorageMetric> {
        PgEngine::storage_metrics(self)
    }

    fn close(&self) -> Result<()> {
        PgEngine::close(self)
    }
}
