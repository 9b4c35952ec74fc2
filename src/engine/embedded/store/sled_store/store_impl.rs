//! [`Store`] for [`SledStore`]: each operation becomes one logged [`Op`] submitted to the
//! pipeline; reads go to sled (or to the bodies not yet applied).

use super::*;

impl Store for SledStore {
    fn load(&self) -> StoreResult<Snapshot> {
        self.flush_blocking()?;
        let db = &self.shared.db()?;
        let mut queues: HashMap<Uuid, QueueSnapshot> = HashMap::new();
        let mut snap = Snapshot::default();
        for kv in db.iter() {
            let (k, v) = kv?;
            match k.first() {
                Some(b'Q') => {
                    let rec: QueueRecord = decode(&v, "queue")?;
                    let id = rec.id;
                    queues.entry(id).or_default().record = Some(rec);
                }
                Some(b'G') => {
                    let rec: GroupRecord = decode(&v, "group")?;
                    queues.entry(rec.queue_id).or_default().groups.push(rec);
                }
                Some(b'S') => {
                    let q = uuid_at(&k, 1)?;
                    queues.entry(q).or_default().last_seq = u64_at(&v, 0)?;
                }
                Some(b'M') => {
                    let q = uuid_at(&k, 1)?;
                    queues.entry(q).or_default().messages.push(stored_meta(&v)?.meta);
                }
                Some(b'D') => {
                    let q = uuid_at(&k, 1)?;
                    let seq = u64_at(&k, 17)?;
                    let group = u32_at(&k, 25)?;
                    let rec: DeliveryRecord = decode(&v, "delivery")?;
                    queues.entry(q).or_default().deliveries.push((group, seq, rec));
                }
                Some(b'I') => snap.idempotency.push(decode(&v, "idempotency")?),
                Some(b'U') => snap.subscriptions.push(decode(&v, "subscription")?),
                _ => {}
            }
        }
        // Orphans (a record without its queue) can only come from a torn external edit; ignore.
        snap.queues = queues.into_values().filter(|q| q.record.is_some()).collect();
        for q in &mut snap.queues {
            q.deliveries.sort_by_key(|(g, s, _)| (*g, *s));
            if let Some(last) = q.messages.last() {
                q.last_seq = q.last_seq.max(last.seq);
            }
        }
        Ok(snap)
    }

    fn put_queue(&self, queue: &QueueRecord) -> StoreResult<()> {
        self.submit(Op::PutQueue(queue.clone()))
    }

    fn delete_queue(&self, queue: Uuid) -> StoreResult<()> {
        self.submit(Op::DeleteQueue(queue))?;
        self.shared.pipe.lock().gone.insert(queue);
        Ok(())
    }

    fn put_group(&self, group: &GroupRecord) -> StoreResult<()> {
        self.submit(Op::PutGroup(group.clone()))
    }

    fn delete_group(&self, queue: Uuid, group: u32) -> StoreResult<()> {
        self.submit(Op::DeleteGroup(queue, group))
    }

    fn append(&self, queue: Uuid, messages: &[(MessageMeta, MessageBody)]) -> StoreResult<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let entries = messages
            .iter()
            .map(|(meta, body)| AppendEntry {
                meta: meta.clone(),
                body: Some(Arc::new(body.clone())),
                loc: BodyLoc { segment: 0, offset: 0, len: 0 },
            })
            .collect();
        self.submit(Op::Append(queue, entries))
    }

    fn body(&self, queue: Uuid, seq: u64) -> StoreResult<Option<MessageBody>> {
        {
            let p = self.shared.pipe.lock();
            if p.gone.contains(&queue) {
                return Ok(None);
            }
            if let Some(b) = p.bodies.get(&(queue, seq)).cloned() {
                drop(p);
                return Ok(Some((*b).clone()));
            }
        }
        // Applied: sled knows where in the log it is (and the log has it: only written
        // operations are applied).
        let Some(v) = self.shared.db()?.get(mkey(queue, seq))? else { return Ok(None) };
        let loc = loc_of(&v)?;
        match self.shared.segments.read_at(loc.segment, loc.offset, loc.len)? {
            Some(bytes) => Ok(Some(decode(&bytes, "body")?)),
            // Removed and its segment dropped since the lookup.
            None => Ok(None),
        }
    }

    fn remove(&self, queue: Uuid, seqs: &[u64]) -> StoreResult<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.submit(Op::Remove(queue, seqs.to_vec()))
    }

    fn transfer(&self, from: Uuid, from_seq: u64, to: Uuid, meta: &MessageMeta, keep_source: bool) -> StoreResult<()> {
        // The copy shares the source's body in the log; until the applier gets there, reads of
        // the copy find the body in memory.
        let Some(body) = self.body(from, from_seq)? else {
            return Err(StoreError::new(format!("transfer of missing message {from}/{from_seq}")));
        };
        self.shared.submit(
            Op::Transfer { from, from_seq, to, meta: meta.clone(), keep_source },
            Some(((to, meta.seq), Arc::new(body))),
        )
    }

    fn lease(&self, queue: Uuid, group: u32, seq: u64, record: &DeliveryRecord) -> StoreResult<()> {
        self.submit(Op::SetDelivery(queue, group, vec![(seq, record.clone())]))
    }

    fn release(&self, queue: Uuid, group: u32, seq: u64, record: &DeliveryRecord) -> StoreResult<()> {
        self.submit(Op::SetDelivery(queue, group, vec![(seq, record.clone())]))
    }

    fn settle(&self, queue: Uuid, group: u32, entries: &[(u64, DeliveryRecord)]) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.submit(Op::SetDelivery(queue, group, entries.to_vec()))
    }

    fn forget(&self, queue: Uuid, group: u32, seqs: &[u64]) -> StoreResult<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.submit(Op::ClearDelivery(queue, group, seqs.to_vec()))
    }

    fn put_idempotency(&self, record: &IdempotencyRecord) -> StoreResult<()> {
        self.submit(Op::PutIdempotency(record.clone()))
    }

    fn delete_idempotency(&self, keys: &[(String, String, String)]) -> StoreResult<()> {
        self.submit(Op::DeleteIdempotency(keys.to_vec()))
    }

    fn put_subscription(&self, sub: &SubscriptionRecord) -> StoreResult<()> {
        self.submit(Op::PutSubscription(sub.clone()))
    }

    fn delete_subscription(&self, id: Uuid) -> StoreResult<()> {
        self.submit(Op::DeleteSubscription(id))
    }

    /// Stops both threads (the committer first writes and syncs what is buffered; what the
    /// applier had not applied is replayed from the log at the next open), then lets sled write
    /// its own state, so a restart in the same process can reopen the database at once.
    fn flush(&self) -> StoreResult<()> {
        self.flush_blocking()
    }

    fn close(&self) -> StoreResult<()> {
        let threads: Vec<_> = {
            let mut p = self.shared.pipe.lock();
            p.closing = true;
            self.threads.lock().drain(..).collect()
        };
        if threads.is_empty() {
            return Ok(());
        }
        self.shared.commit_cv.notify_all();
        self.shared.apply_cv.notify_all();
        self.shared.checkpoint_cv.notify_all();
        for t in threads {
            let _ = t.join();
        }
        let mut p = self.shared.pipe.lock();
        if p.error.is_none() {
            let fault = p.fault().cloned();
            let unwritten = p.next_lsn - p.written_lsn;
            p.error = Some(StoreError::new("the store is closed"));
            drop(p);
            if let Some(e) = fault {
                // Every change a caller was told is durable is on disk (only a successful
                // fsync answers a sync); what is lost are lazy changes (leases, acks), which
                // turns into redelivery. Nothing to fail the shutdown for.
                tracing::error!(error = %e, unwritten, "closed in a storage fault: changes not answered as durable were not written (those deliveries may come again)");
                return Ok(());
            }
            // After an I/O error sled's flush can wait forever; the log holds what matters anyway.
            self.shared.db()?.flush()?;
        }
        Ok(())
    }

    fn metrics(&self) -> Vec<crate::core::engine::StorageMetric> {
        use crate::core::engine::StorageMetric as M;
        let s = &self.shared;
        let log_bytes: u64 = s.segments.ids().into_iter().map(|id| s.segments.size(id)).sum();
        vec![
            M {
                name: "fsyncs_total",
                help: "Log writes made durable (each one group commit).",
                value: s.flushes.load(Ordering::Relaxed),
                counter: true,
            },
            M {
                name: "synced_writes_total",
                help: "Writes answered durable; divided by fsyncs, the writes per group commit.",
                value: s.syncs.load(Ordering::Relaxed),
                counter: true,
            },
            M { name: "log_bytes", help: "Size of the write-ahead log.", value: log_bytes, counter: false },
            M {
                name: "log_segments",
                help: "Files of the write-ahead log.",
                value: s.segments.ids().len() as u64,
                counter: false,
            },
            M {
                name: "compactions_total",
                help: "Log compaction runs.",
                value: s.compactions.load(Ordering::Relaxed),
                counter: true,
            },
            M {
                name: "checkpoints_total",
                help: "Checkpoints (sled flushed, old log segments dropped).",
                value: s.checkpoints.load(Ordering::Relaxed),
                counter: true,
            },
        ]
    }

    fn readiness(&self) -> Result<(), String> {
        match self.shared.pipe.lock().fault() {
            Some(e) => Err(e.message.clone()),
            None => Ok(()),
        }
    }

    fn sync(&self) -> SyncFuture {
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let mut p = self.shared.pipe.lock();
            match p.fault() {
                Some(e) => {
                    let _ = tx.send(Err(e.clone()));
                }
                None if p.synced_lsn >= p.next_lsn && !p.lagging() => {
                    let _ = tx.send(Ok(()));
                    self.shared.syncs.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    let lsn = p.next_lsn;
                    p.waiters.push((lsn, tx));
                    // A busy committer looks at the waiters again when its write is done.
                    if p.committer_idle || p.gather_target > 0 && p.waiters.len() >= p.gather_target {
                        self.shared.commit_cv.notify_one();
                    }
                }
            }
        }
        Box::pin(async move { rx.await.unwrap_or_else(|_| Err(StoreError::new("the store is closed"))) })
    }
}
