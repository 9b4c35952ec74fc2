//! Settling deliveries on PostgreSQL: ack, nack, change visibility, dead-letter now, and the
//! in-order batch confirm. Each checks the lease is still live (compare-and-set on the lane's
//! lease id, after a refresh) in the transaction that changes it.

use uuid::Uuid;

use super::schema::{ACKED, LEASED};
use super::{Fx, PResult, PgEngine, Tx, ms, transaction};
use crate::core::clock::Millis;
use crate::core::engine::{LeaseOf, Queue, Target};
use crate::core::error::{CoreError, Result};
use crate::core::model::{DeadLetterTarget, DeadReason, QueueRecord};

impl PgEngine {
    /// The `(seq, lease)` a target names.
    async fn resolve(&self, tx: &Tx<'_>, qid: Uuid, grp: u32, target: Target) -> PResult<(u64, u64)> {
        match target {
            Target::Lease { seq, lease } => Ok((seq, lease)),
            Target::Message(id) => {
                self.group_row(tx, qid, grp).await?;
                let stmt = tx
                    .prepare_cached(
                        "SELECT m.seq, l.state, l.lease FROM qg_message m LEFT JOIN qg_lane l ON l.queue_id = m.queue_id \
                         AND l.seq = m.seq AND l.grp = $3 WHERE m.queue_id = $1 AND m.id = $2",
                    )
                    .await?;
                let row = tx
                    .query_opt(&stmt, &[&qid, &Uuid::from_u128(id.0), &(grp as i32)])
                    .await?
                    .ok_or(CoreError::MessageNotFound)?;
                match row.get::<_, Option<i16>>(1) {
                    Some(LEASED) => Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(2) as u64)),
                    _ => Err(CoreError::NotInFlight.into()),
                }
            }
        }
    }

    /// Acknowledges a live delivery; false when the lease is not live.
    pub(crate) async fn ack_in(&self, tx: &Tx<'_>, rec: &QueueRecord, grp: u32, seq: u64, lease: u64) -> PResult<bool> {
        let stmt = tx
            .prepare_cached(
                "UPDATE qg_lane SET state = $5, lease = 0 WHERE queue_id = $1 AND seq = $2 AND grp = $3 \
                 AND state = 1 AND lease = $4",
            )
            .await?;
        let n = tx.execute(&stmt, &[&rec.id, &(seq as i64), &(grp as i32), &(lease as i64), &ACKED]).await?;
        if n == 0 {
            return Ok(false);
        }
        self.maybe_remove(tx, rec, seq).await?;
        Ok(true)
    }

    /// Releases a live delivery with a failure counted (dead-lettered per the policy, or now
    /// with `dead_now`). `None` when the lease is not live; else whether it went back.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn nack_in(
        &self,
        tx: &Tx<'_>,
        rec: &QueueRecord,
        grp: u32,
        seq: u64,
        lease: u64,
        dead_now: bool,
        now: Millis,
        fx: &mut Fx,
    ) -> PResult<Option<bool>> {
        let stmt = tx
            .prepare_cached(
                "UPDATE qg_lane SET state = 0, lease = 0, failures = failures + 1 WHERE queue_id = $1 AND seq = $2 \
                 AND grp = $3 AND state = 1 AND lease = $4 RETURNING failures",
            )
            .await?;
        let Some(row) = tx.query_opt(&stmt, &[&rec.id, &(seq as i64), &(grp as i32), &(lease as i64)]).await? else {
            return Ok(None);
        };
        let failures = row.get::<_, i32>(0) as u32;
        let force = dead_now.then_some(DeadReason::Nacked);
        Ok(Some(self.after_failure(tx, rec, grp, seq, failures, force, now, fx).await?))
    }

    pub(crate) async fn ack(&self, q: &Queue, group: u32, target: Target, now: Millis) -> Result<()> {
        transaction!(self, false, |tx, fx| {
            let rec = self.lock(&tx, q.id(), true).await?;
            self.refresh(&tx, &rec, now, fx).await?;
            let (seq, lease) = self.resolve(&tx, rec.id, group, target).await?;
            if !self.ack_in(&tx, &rec, group, seq, lease).await? {
                return Err(CoreError::ReceiptStale.into());
            }
            Ok(())
        })
    }

    pub(crate) async fn nack(
        &self,
        q: &Queue,
        group: u32,
        target: Target,
        dead_now: bool,
        now: Millis,
    ) -> Result<bool> {
        transaction!(self, false, |tx, fx| {
            let rec = self.lock(&tx, q.id(), true).await?;
            self.refresh(&tx, &rec, now, fx).await?;
            let (seq, lease) = self.resolve(&tx, rec.id, group, target).await?;
            match self.nack_in(&tx, &rec, group, seq, lease, dead_now, now, fx).await? {
                Some(back) => Ok(back),
                None => Err(CoreError::ReceiptStale.into()),
            }
        })
    }

    pub(crate) async fn change_visibility(
        &self,
        q: &Queue,
        group: u32,
        seq: u64,
        lease: u64,
        until: Millis,
        now: Millis,
    ) -> Result<LeaseOf> {
        transaction!(self, false, |tx, fx| {
            let rec = self.lock(&tx, q.id(), true).await?;
            self.refresh(&tx, &rec, now, fx).await?;
            let stmt = tx
                .prepare_cached(
                    "UPDATE qg_lane SET visible_at = $5, lease = nextval('qg_lease') WHERE queue_id = $1 AND seq = $2 \
                     AND grp = $3 AND state = 1 AND lease = $4 RETURNING lease",
                )
                .await?;
            let row = tx
                .query_opt(&stmt, &[&rec.id, &(seq as i64), &(group as i32), &(lease as i64), &ms(until)])
                .await?
                .ok_or(CoreError::ReceiptStale)?;
            Ok(LeaseOf { lease: row.get::<_, i64>(0) as u64, until })
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn dead_letter_delivery(
        &self,
        q: &Queue,
        group: u32,
        seq: u64,
        lease: u64,
        target: Option<Uuid>,
        now: Millis,
    ) -> Result<()> {
        transaction!(self, false, |tx, fx| {
            let rec = self.lock(&tx, q.id(), true).await?;
            self.refresh(&tx, &rec, now, fx).await?;
            let stmt = tx
                .prepare_cached(
                    "UPDATE qg_lane SET state = 0, lease = 0, failures = failures + 1 WHERE queue_id = $1 AND seq = $2 \
                     AND grp = $3 AND state = 1 AND lease = $4",
                )
                .await?;
            if tx.execute(&stmt, &[&rec.id, &(seq as i64), &(group as i32), &(lease as i64)]).await? == 0 {
                return Err(CoreError::ReceiptStale.into());
            }
            let target = match target {
                Some(t) => Some(DeadLetterTarget::Queue(t)),
                None => rec.config.dead_letter.as_ref().map(|p| p.target),
            };
            self.dead_letter(&tx, &rec, group, seq, DeadReason::MaxDeliveries, target, now, fx).await?;
            Ok(())
        })
    }

    /// The in-order confirm rule in one transaction: successes count while each entry is a
    /// success of a live delivery; from the first failure on, live deliveries are released.
    pub(crate) async fn confirm(
        &self,
        q: &Queue,
        group: u32,
        dead: bool,
        entries: &[(Option<(u64, u64)>, bool)],
        now: Millis,
    ) -> Result<u64> {
        transaction!(self, false, |tx, fx| {
            let rec = self.lock(&tx, q.id(), true).await?;
            self.refresh(&tx, &rec, now, fx).await?;
            let mut success = 0u64;
            let mut failed = false;
            for (target, ok) in entries {
                if !failed
                    && *ok
                    && let Some((seq, lease)) = *target
                {
                    let done = if dead {
                        self.settle_dead_in(&tx, &rec, group, seq, lease, true, fx).await?
                    } else {
                        self.ack_in(&tx, &rec, group, seq, lease).await?
                    };
                    if done {
                        success += 1;
                        continue;
                    }
                }
                failed = true;
                if let Some((seq, lease)) = *target {
                    // Only live deliveries change; stale or foreign handles just count as failed.
                    if dead {
                        self.settle_dead_in(&tx, &rec, group, seq, lease, false, fx).await?;
                    } else {
                        self.nack_in(&tx, &rec, group, seq, lease, false, now, fx).await?;
                    }
                }
            }
            Ok(success)
        })
    }
}
