//! Push subscriptions of the embedded engine: durable records, kept in memory as well.

use uuid::Uuid;

use super::EmbeddedEngine;
use crate::core::error::{CoreError, Result};
use crate::core::model::SubscriptionRecord;

impl EmbeddedEngine {
    pub(crate) async fn subscribe(&self, rec: SubscriptionRecord) -> Result<()> {
        self.queue_by_id(&rec.namespace, rec.queue_id).map_err(|_| CoreError::QueueNotFound)?;
        self.store.put_subscription(&rec)?;
        self.subs.lock().insert(rec.id, rec);
        self.store.sync().await?;
        Ok(())
    }

    pub(crate) async fn unsubscribe(&self, id: Uuid) -> Result<bool> {
        if self.subs.lock().remove(&id).is_none() {
            return Ok(false);
        }
        self.store.delete_subscription(id)?;
        self.store.sync().await?;
        Ok(true)
    }

    pub(crate) fn subscription(&self, id: Uuid) -> Option<SubscriptionRecord> {
        self.subs.lock().get(&id).cloned()
    }

    pub(crate) fn subscriptions(&self) -> Vec<SubscriptionRecord> {
        self.subs.lock().values().cloned().collect()
    }

    pub(crate) fn subscriptions_of(&self, queue: Uuid) -> Vec<SubscriptionRecord> {
        let mut v: Vec<_> = self.subs.lock().values().filter(|s| s.queue_id == queue).cloned().collect();
        v.sort_by_key(|s| (s.created_at, s.id));
        v
    }
}
