//! The write-ahead log in front of sled.
//!
//! Every store operation is framed and appended here, in order, before sled sees it; a sync
//! request `fdatasync`s the log (group commit: one fsync covers every frame written so far).
//! Frames: `lsn u64 | len u32 | crc32 u32 | payload` (little-endian; payload = a versioned
//! [`Op`](super::sled_store::Op) record). A frame that does not check out ends the log (a write
//! torn by a crash). The log lives in segment files `wal/<first lsn, 20 digits>.log`; segments
//! whose every operation sled has durably applied are deleted at checkpoints.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::StoreError;

const HEADER: usize = 16;
/// A segment is closed once it is this large.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

fn io(what: &str, e: std::io::Error) -> StoreError {
    StoreError(format!("{what}: {e}"))
}

/// Appends one frame to `buf`.
pub fn frame(buf: &mut Vec<u8>, lsn: u64, payload: &[u8]) {
    buf.extend_from_slice(&lsn.to_le_bytes());
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    buf.extend_from_slice(payload);
}

/// Splits a segment's bytes into (lsn, payload) frames, stopping at the first bad one.
pub fn frames(bytes: &[u8]) -> Vec<(u64, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= HEADER {
        let lsn = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[at + 12..at + 16].try_into().expect("4 bytes"));
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else { break };
        if crc32fast::hash(payload) != crc {
            break;
        }
        out.push((lsn, payload));
        at += HEADER + len;
    }
    out
}

/// The segment files of a log, in order.
pub struct Wal {
    dir: PathBuf,
    /// (first lsn, path) of every segment, oldest first; the last one is being written.
    segments: Vec<(u64, PathBuf)>,
    file: Option<File>,
    written: u64,
}

impl Wal {
    /// Opens the log directory (creating it) and lists its segments.
    pub fn open(dir: &Path) -> Result<Wal, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io("create the log directory", e))?;
        let mut segments = Vec::new();
        for e in std::fs::read_dir(dir).map_err(|e| io("list the log", e))? {
            let e = e.map_err(|e| io("list the log", e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(first) = name.strip_suffix(".log").and_then(|n| n.parse::<u64>().ok()) {
                segments.push((first, e.path()));
            }
        }
        segments.sort();
        Ok(Wal { dir: dir.to_path_buf(), segments, file: None, written: 0 })
    }

    /// Every frame of every segment, in order.
    #[cfg(test)]
    pub fn read_all(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for i in 0..self.segments.len() {
            out.extend(self.read_segment(i)?);
        }
        Ok(out)
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The frames of segment `i` (oldest first): replay reads one segment at a time, so a long
    /// log never has to fit in memory at once.
    pub fn read_segment(&self, i: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut bytes = Vec::new();
        File::open(&self.segments[i].1)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| io("read the log", e))?;
        Ok(frames(&bytes).into_iter().map(|(l, p)| (l, p.to_vec())).collect())
    }

    /// Deletes every segment (after a replay made sled hold all of it durably).
    pub fn clear(&mut self) -> Result<(), StoreError> {
        self.file = None;
        for (_, path) in self.segments.drain(..) {
            std::fs::remove_file(&path).map_err(|e| io("remove a log segment", e))?;
        }
        Ok(())
    }

    /// Writes frames whose first lsn is `first`; rotates to a new segment when the current one
    /// is full.
    pub fn write(&mut self, first: u64, bytes: &[u8]) -> Result<(), StoreError> {
        if self.file.is_none() || self.written >= SEGMENT_BYTES {
            let path = self.dir.join(format!("{first:020}.log"));
            let f =
                OpenOptions::new().create(true).append(true).open(&path).map_err(|e| io("create a log segment", e))?;
            // Make the new file's directory entry durable too.
            if let Ok(d) = File::open(&self.dir) {
                let _ = d.sync_all();
            }
            self.segments.push((first, path));
            self.file = Some(f);
            self.written = 0;
        }
        let f = self.file.as_mut().expect("a segment is open");
        f.write_all(bytes).map_err(|e| io("write the log", e))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Makes everything written durable.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        match &self.file {
            Some(f) => f.sync_data().map_err(|e| io("sync the log", e)),
            None => Ok(()),
        }
    }

    /// Deletes the closed segments whose operations all have an lsn ≤ `applied`.
    pub fn truncate(&mut self, applied: u64) -> Result<usize, StoreError> {
        let mut removed = 0;
        while self.segments.len() > 1 && self.segments[1].0 <= applied + 1 {
            let (_, path) = self.segments.remove(0);
            match std::fs::remove_file(&path) {
                // Already gone is what we wanted.
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("remove a log segment", e)),
                _ => {}
            }
            removed += 1;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_stop_at_a_torn_tail() {
        let mut buf = Vec::new();
        frame(&mut buf, 1, b"one");
        frame(&mut buf, 2, b"two");
        let whole = frames(&buf);
        assert_eq!(whole, vec![(1, &b"one"[..]), (2, &b"two"[..])]);
        assert_eq!(frames(&buf[..buf.len() - 1]).len(), 1, "a torn last frame is dropped");
        let mut bad = buf.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert_eq!(frames(&bad).len(), 1, "a corrupt frame ends the log");
    }

    #[test]
    fn segments_rotate_replay_and_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::open(dir.path()).unwrap();
        let mut buf = Vec::new();
        frame(&mut buf, 1, b"a");
        w.write(1, &buf).unwrap();
        w.written = SEGMENT_BYTES; // force a rotation
        let mut buf = Vec::new();
        frame(&mut buf, 2, b"b");
        w.write(2, &buf).unwrap();
        w.sync().unwrap();
        assert_eq!(w.segment_count(), 2);
        let again = Wal::open(dir.path()).unwrap();
        assert_eq!(again.read_all().unwrap(), vec![(1, b"a".to_vec()), (2, b"b".to_vec())]);
        assert_eq!(w.truncate(0).unwrap(), 0);
        assert_eq!(w.truncate(1).unwrap(), 1);
        assert_eq!(w.segment_count(), 1, "the segment being written stays");
    }
}
