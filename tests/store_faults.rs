//! Fault injection into the embedded store: full disks and failing devices on log writes, log
//! fsyncs and sled (through the store's injectable fault points), a sled snapshot left
//! unfinished by a start on a full disk, a torn write at the log's tail (cut and garbled at
//! every byte of the last record), and a crash between the steps of a checkpoint (the data
//! directory copied at each step is what a crash there leaves on disk).
//!
//! The rule every test checks: what a sync answered as durable is there after a reopen; what
//! the store refused is not; the store recovers by itself once the fault is gone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use qgate::core::model::*;
use qgate::engine::embedded::store::faults::{EIO, ENOSPC, Faults, Point, Step};
use qgate::engine::embedded::store::{SledOptions, SledStore, Snapshot, Store};
use uuid::Uuid;

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

fn queue() -> QueueRecord {
    QueueRecord {
        id: Uuid::new_v4(),
        namespace: "t".into(),
        name: "q".into(),
        config: QueueConfig::default(),
        created_at: 1,
        modified_at: 1,
    }
}

fn msg(seq: u64) -> (MessageMeta, MessageBody) {
    let meta = MessageMeta {
        seq,
        id: MessageId((9u128 << 64) | seq as u128),
        kind: BodyKind::Text,
        priority: 8,
        enqueued_at: 100 + seq,
        not_before: 100 + seq,
        size: 10,
        tags: Vec::new(),
        origin: None,
    };
    let mut attributes = BTreeMap::new();
    attributes.insert("n".to_string(), seq.to_string());
    (meta, MessageBody { body: format!("message {seq:03}").into_bytes(), attributes })
}

fn acked() -> DeliveryRecord {
    DeliveryRecord { deliveries: 1, failures: 0, first_delivered_at: 5, state: DeliveryState::Acked }
}

fn options(dir: &Path, faults: &Arc<Faults>) -> SledOptions {
    SledOptions { faults: Some(faults.clone()), ..SledOptions::new(dir) }
}

/// (seq, acked by group 0) of every message of the one queue in `snap`.
fn contents(snap: &Snapshot) -> Vec<(u64, bool)> {
    let q = &snap.queues[0];
    q.messages
        .iter()
        .map(|m| {
            (m.seq, q.deliveries.iter().any(|(g, s, r)| *g == 0 && *s == m.seq && r.state == DeliveryState::Acked))
        })
        .collect()
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn check_bodies(s: &SledStore, q: Uuid, seqs: &[u64]) {
    for &seq in seqs {
        let got = s.body(q, seq).unwrap().unwrap_or_else(|| panic!("body of {seq} missing"));
        assert_eq!(got, msg(seq).1, "body of {seq}");
    }
}

/// A write cut short by a full disk, or an fsync that fails: the sync fails (never a false
/// "durable"), new messages are refused, other changes wait in memory, and once the fault is
/// gone the store writes them — the log cut back and written again at the same offsets — and
/// accepts messages again. Nothing answered is lost; nothing refused appears.
fn log_fault_recovers(point: Point, errno: i32) {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let s = SledStore::open(&options(dir.path(), &faults)).unwrap();
    let q = queue();
    s.put_queue(&q).unwrap();
    s.append(q.id, &[msg(1), msg(2)]).unwrap();
    block(s.sync()).unwrap();
    assert_eq!(s.readiness(), Ok(()));

    faults.set(point, Some(errno));
    s.append(q.id, &[msg(3)]).unwrap();
    let failed = block(s.sync()).expect_err("a sync over a failing log must fail");
    assert!(failed.unavailable, "a passing condition: {failed}");
    let reason = s.readiness().expect_err("not ready in a fault");
    if errno == ENOSPC {
        assert!(reason.contains("storage full"), "{reason}");
    }
    let refused = s.append(q.id, &[msg(4)]).expect_err("new messages are refused in a fault");
    assert!(refused.unavailable);
    // An ack meanwhile is kept and written later.
    s.settle(q.id, 0, &[(1, acked())]).unwrap();
    assert!(block(s.sync()).is_err(), "syncs fail fast while the fault lasts");
    check_bodies(&s, q.id, &[1, 2, 3]);

    faults.set(point, None);
    wait_until("the log recovers", || s.readiness().is_ok());
    block(s.sync()).unwrap();
    s.append(q.id, &[msg(4)]).unwrap();
    block(s.sync()).unwrap();
    check_bodies(&s, q.id, &[1, 2, 3, 4]);
    drop(s);

    let s = SledStore::open(&SledOptions::new(dir.path())).unwrap();
    let snap = s.load().unwrap();
    assert_eq!(contents(&snap), vec![(1, true), (2, false), (3, false), (4, false)]);
    check_bodies(&s, q.id, &[1, 2, 3, 4]);
}

#[test]
fn log_write_enospc_recovers() {
    log_fault_recovers(Point::LogWrite, ENOSPC);
}

#[test]
fn log_write_eio_recovers() {
    log_fault_recovers(Point::LogWrite, EIO);
}

#[test]
fn log_fsync_eio_is_not_trusted_and_recovers() {
    log_fault_recovers(Point::LogSync, EIO);
}

#[test]
fn log_fsync_enospc_recovers() {
    log_fault_recovers(Point::LogSync, ENOSPC);
}

/// sled failing (it keeps its first I/O error for good): the store reopens it by itself once
/// it can, replays the log beyond what sled holds, and nothing logged is lost.
#[test]
fn sled_failure_reopens_and_replays() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let s = SledStore::open(&options(dir.path(), &faults)).unwrap();
    let q = queue();
    s.put_queue(&q).unwrap();
    s.append(q.id, &[msg(1)]).unwrap();
    s.checkpoint_now().unwrap();

    faults.set(Point::Sled, Some(ENOSPC));
    // The log still takes it: answered durable. Applying it to sled fails.
    s.append(q.id, &[msg(2)]).unwrap();
    block(s.sync()).unwrap();
    wait_until("the sled fault is seen", || s.readiness().is_err());
    assert!(s.append(q.id, &[msg(3)]).is_err(), "new messages are refused while sled is down");
    s.settle(q.id, 0, &[(2, acked())]).unwrap();
    assert!(block(s.sync()).is_err());
    assert!(s.checkpoint_now().is_err(), "no checkpoint while sled is down");

    faults.set(Point::Sled, None);
    wait_until("sled is reopened", || s.readiness().is_ok());
    s.append(q.id, &[msg(3)]).unwrap();
    block(s.sync()).unwrap();
    s.checkpoint_now().unwrap();
    check_bodies(&s, q.id, &[1, 2, 3]);
    drop(s);

    let s = SledStore::open(&SledOptions::new(dir.path())).unwrap();
    assert_eq!(contents(&s.load().unwrap()), vec![(1, false), (2, true), (3, false)]);
    check_bodies(&s, q.id, &[1, 2, 3]);
}

/// A start on a full disk leaves an empty `snap.*.generating` file in sled's directory, which
/// sled then takes for its newest snapshot ("Read corrupted data" at every later start). The
/// store removes it and opens with every message.
#[test]
fn an_unfinished_sled_snapshot_does_not_brick_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(&SledOptions::new(dir.path())).unwrap();
    let q = queue();
    s.put_queue(&q).unwrap();
    for i in 1..=20 {
        s.append(q.id, &[msg(i)]).unwrap();
    }
    block(s.sync()).unwrap();
    s.checkpoint_now().unwrap();
    drop(s);
    let sled_dir = dir.path().join("sled");
    assert!(sled_dir.is_dir());
    std::fs::write(sled_dir.join("snap.FFFFFFFFFFFFFFFF.generating"), b"").unwrap();

    let s =
        SledStore::open(&SledOptions::new(dir.path())).unwrap_or_else(|e| panic!("open after a torn snapshot: {e}"));
    assert_eq!(contents(&s.load().unwrap()).len(), 20);
    check_bodies(&s, q.id, &(1..=20).collect::<Vec<_>>());
    assert!(!sled_dir.join("snap.FFFFFFFFFFFFFFFF.generating").exists());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Damage to the last log record: cut at a byte offset, or one byte garbled.
#[derive(Debug, Clone, Copy)]
enum Harm {
    Cut(usize),
    Garble(usize),
}

/// The newest log segment and where its last frame starts. The frame layout is the log's
/// documented format: `lsn u64 | len u32 | crc32 u32 | payload`, little-endian.
fn last_frame(dir: &Path) -> (PathBuf, usize, usize) {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir.join("wal")).unwrap().map(|e| e.unwrap().path()).collect();
    segs.sort();
    let seg = segs.pop().expect("a log segment");
    let bytes = std::fs::read(&seg).unwrap();
    let (mut at, mut last) = (0usize, None);
    while bytes.len() - at >= 16 {
        let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        last = Some(at);
        at += 16 + len;
    }
    assert_eq!(at, bytes.len(), "the segment holds whole frames");
    (seg, last.expect("a frame"), bytes.len())
}

/// A torn write at the log's tail: the last record cut at every byte offset, or garbled at
/// every byte. Recovery keeps every record before it and drops the torn one, and the store
/// works on (a new message is durable across another reopen).
#[test]
fn a_torn_last_record_is_dropped_and_everything_before_it_kept() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let s = SledStore::open(&options(dir.path(), &faults)).unwrap();
    let q = queue();
    s.put_queue(&q).unwrap();
    for i in 1..=5 {
        s.append(q.id, &[msg(i)]).unwrap();
    }
    block(s.sync()).unwrap();
    s.checkpoint_now().unwrap();
    // The last record reaches the log but not sled (as after a crash right after its fsync).
    faults.set(Point::Sled, Some(EIO));
    s.append(q.id, &[msg(6)]).unwrap();
    block(s.sync()).unwrap();
    drop(s);

    let whole = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), whole.path());
    let s = SledStore::open(&SledOptions::new(whole.path())).unwrap();
    assert_eq!(contents(&s.load().unwrap()).len(), 6, "the intact log has the last record");
    drop(s);

    let (seg, start, end) = last_frame(dir.path());
    let name = seg.file_name().unwrap().to_owned();
    let before: Vec<(u64, bool)> = (1..=5).map(|i| (i, false)).collect();
    let damage = (start..end).map(Harm::Cut).chain((start..end).map(Harm::Garble));
    for harm in damage {
        let what = format!("{harm:?}");
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        let path = copy.path().join("wal").join(&name);
        let mut bytes = std::fs::read(&path).unwrap();
        match harm {
            Harm::Cut(at) => bytes.truncate(at),
            Harm::Garble(at) => bytes[at] ^= 0x5a,
        }
        std::fs::write(&path, bytes).unwrap();

        let s = SledStore::open(&SledOptions::new(copy.path())).unwrap_or_else(|e| panic!("{what}: open: {e}"));
        let snap = s.load().unwrap();
        match harm {
            // The checksum covers the payload, not the lsn: a garbled lsn with an intact
            // payload still replays the record (or skips it, if the lsn fell below sled's).
            Harm::Garble(at) if at < start + 8 => {
                assert!(contents(&snap).starts_with(&before), "{what}: {:?}", contents(&snap))
            }
            _ => assert_eq!(contents(&snap), before, "{what}"),
        }
        check_bodies(&s, q.id, &[1, 2, 3, 4, 5]);
        s.append(q.id, &[msg(7)]).unwrap();
        block(s.sync()).unwrap();
        drop(s);
        let s = SledStore::open(&SledOptions::new(copy.path())).unwrap();
        let seqs: Vec<u64> = contents(&s.load().unwrap()).into_iter().map(|(q, _)| q).collect();
        assert!(seqs.starts_with(&[1, 2, 3, 4, 5]) && seqs.ends_with(&[7]), "{what}: after a new append {seqs:?}");
        check_bodies(&s, q.id, &[1, 2, 3, 4, 5, 7]);
    }
}

/// A crash between any two steps of a checkpoint (sled flush, log segments deleted) — and of
/// a compaction, which is a logged relocation followed by checkpoints — loses nothing: each
/// copy of the data directory taken at a step opens with every synced message and body.
#[test]
fn a_crash_between_checkpoint_steps_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let crashes = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    // sled's own background flush off: the files copied at a step are exactly what the
    // checkpoint has (or has not yet) written.
    let opts = SledOptions {
        segment_bytes: 1024,
        flush_every_ms: 3_600_000,
        faults: Some(faults.clone()),
        ..SledOptions::new(dir.path())
    };
    let s = SledStore::open(&opts).unwrap();
    let q = queue();
    s.put_queue(&q).unwrap();
    for i in 1..=60 {
        s.append(q.id, &[msg(i)]).unwrap();
    }
    block(s.sync()).unwrap();
    let taken = Arc::new(std::sync::Mutex::new(Vec::<(String, Vec<u64>)>::new()));
    let expected = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    {
        let (taken, expected, from) = (taken.clone(), expected.clone(), dir.path().to_path_buf());
        let root = crashes.path().to_path_buf();
        faults.on_checkpoint(move |step: Step| {
            let mut t = taken.lock().unwrap();
            let to = root.join(format!("{}-{step:?}", t.len()));
            copy_dir(&from, &to);
            t.push((to.to_string_lossy().into_owned(), expected.lock().unwrap().clone()));
        });
    }
    let keep = [5u64, 20, 35, 50];
    *expected.lock().unwrap() = (1..=60).collect();
    s.checkpoint_now().unwrap();
    s.remove(q.id, &(1..=60).filter(|i| !keep.contains(i)).collect::<Vec<_>>()).unwrap();
    block(s.sync()).unwrap();
    *expected.lock().unwrap() = keep.to_vec();
    s.checkpoint_now().unwrap();
    assert_eq!(s.compact_now().unwrap(), keep.len(), "the sparse segments are compacted");
    drop(s);

    let taken = taken.lock().unwrap().clone();
    assert!(taken.len() >= 9, "copies at every step of three checkpoints and a compaction: {}", taken.len());
    for (at, want) in taken {
        let s = SledStore::open(&SledOptions::new(&at)).unwrap_or_else(|e| panic!("{at}: {e}"));
        let got: Vec<u64> = contents(&s.load().unwrap()).into_iter().map(|(q, _)| q).collect();
        assert_eq!(got, want, "{at}");
        check_bodies(&s, q.id, &want);
    }
}
