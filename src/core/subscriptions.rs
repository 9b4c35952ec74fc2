//! Push subscriptions as durable records. Delivering them is the push module's job; the core
//! only stores them, lists them, and drops them with their queue.

use std::sync::Arc;

use uuid::Uuid;

use super::broker::Broker;
use super::engine::Queue;
use super::error::{CoreError, Result};
use super::model::SubscriptionRecord;

impl Broker {
    /// Stores a new subscription (durably).
    pub async fn subscribe(&self, rec: SubscriptionRecord) -> Result<()> {
        self.engine.subscribe(rec).await
    }

    /// Removes a subscription; false when there was none.
    pub async fn unsubscribe(&self, id: Uuid) -> Result<bool> {
        self.engine.unsubscribe(id).await
    }

    pub async fn subscription(&self, id: Uuid) -> Result<Option<SubscriptionRecord>> {
        self.engine.subscription(id).await
    }

    /// Every subscription (start-up of the delivery workers).
    pub async fn subscriptions(&self) -> Result<Vec<SubscriptionRecord>> {
        self.engine.subscriptions().await
    }

    /// The subscriptions of one queue, oldest first.
    pub async fn subscriptions_of(&self, q: &Queue) -> Result<Vec<SubscriptionRecord>> {
        self.engine.subscriptions_of(q.id()).await
    }

    /// The queue a subscription delivers from.
    pub async fn subscription_queue(&self, sub: &SubscriptionRecord) -> Result<Arc<Queue>> {
        self.queue_by_id(&sub.namespace, sub.queue_id).await.map_err(|_| CoreError::QueueNotFound)
    }
}
