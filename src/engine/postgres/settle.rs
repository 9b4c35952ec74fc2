//! Settling deliveries under a transaction on PostgreSQL: the pieces of ack and nack the batch
//! confirm and the hot path share, dead-letter now, and the in-order batch confirm. Each checks the lease is still live (compare-and-set on the lane's
//! lease id, after a refresh) in the transaction that changes it.

use uuid::Uuid;

use super::schema::{ACKED, DYING, LEASED};
use super::{Fx, PResult, PgEngine, Tx, ms, transaction};
use crate::core::clock::Millis;
use crate::core::engine::{Queue, Target};
use crate::core::error::{CoreError, Result};
use crate::core::model::{DeadLetterTarget, DeadReason, QueueRecord};

impl PgEngine {
    /// The `(seq, lease)` a target names.
    pub(crate) async fn resolve(&self, tx: &Tx<'_>, qid: Uuid, grp: u32, target: Target) -> PResult<(u64, u64)> {
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

    /// Releases a live delivery with a failure counted (dead-lettered at the policy's limit,
    /// or now with `dead_now`). `None` when the lease is not live; else whether it went back.
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
                "UPDATE qg_lane SET state = CASE WHEN $5 OR failures + 1 >= $6 THEN 4 ELSE 0 END, lease = 0, \
                 failures = failures + 1 WHERE queue_id = $1 AND seq = $2 AND grp = $3 AND state = 1 AND lease = $4 \
                 AND visible_at > $7 RETURNING state",
            )
            .await?;
        let max = super::refresh::max_failures(rec);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
            [&rec.id, &(seq as i64), &(grp as i32), &(lease as i64), &dead_now, &max, &ms(now)];
        let Some(row) = tx.query_opt(&stmt, &params).await? else {
            return Ok(None);
        };
        if row.get::<_, i16>(0) == DYING {
            let reason = if dead_now { DeadReason::Nacked } else { DeadReason::MaxDeliveries };
            self.bury(tx, rec, &[(grp, seq)], reason, now, fx).await?;
            return Ok(Some(false));
        }
        fx.wake.push(rec.id);
        Ok(Some(true))
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
