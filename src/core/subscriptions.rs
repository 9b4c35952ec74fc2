//! Push subscriptions as durable records. Delivering them is the push module's job; the core
//! only stores them, lists them, and drops them with their queue.

use uuid::Uuid;

use super::broker::{Broker, Queue};
use super::error::{CoreError, Result};
use super::model::SubscriptionRecord;

impl Broker {
    /// Stores a new subscription (durably).
    pub async fn subscribe(&self, rec: SubscriptionRecord) -> Result<()> {
        self.queue_by_id(&rec.namespace, rec.queue_id).await?;
        self.store.put_subscription(&rec)?;
        self.subs.lock().insert(rec.id, rec);
        self.store.sync().await?;
        Ok(())
    }

    /// Removes a subscription; false when there was none.
    pub async fn unsubscribe(&self, id: Uuid) -> Result<bool> {
        if self.subs.lock().remove(&id).is_none() {
            return Ok(false);
        }
        self.store.delete_subscription(id)?;
        self.store.sync().await?;
        Ok(true)
    }

    pub async fn subscription(&self, id: Uuid) -> Option<SubscriptionRecord> {
        self.subs.lock().get(&id).cloned()
    }

    /// Every subscription (start-up of the delivery workers).
    pub async fn subscriptions(&self) -> Vec<SubscriptionRecord> {
        self.subs.lock().values().cloned().collect()
    }

    /// The subscriptions of one queue, oldest first.
    pub async fn subscriptions_of(&self, q: &Queue) -> Vec<SubscriptionRecord> {
        let mut v: Vec<_> = self.subs.lock().values().filter(|s| s.queue_id == q.id).cloned().collect();
        v.sort_by_key(|s| (s.created_at, s.id));
        v
    }

    /// The queue a subscription delivers from.
    pub async fn subscription_queue(&self, sub: &SubscriptionRecord) -> Result<std::sync::Arc<Queue>> {
        self.queue_by_id(&sub.namespace, sub.queue_id).await.map_err(|_| CoreError::QueueNotFound)
    }
}
