//! The write-ahead log in front of sled, which is also where message bodies live.
//!
//! Every store operation is framed and appended here, in order, before sled sees it; a sync
//! request `fdatasync`s the log (group commit: one fsync covers every frame written so far).
//! Frames: `lsn u64 | len u32 | crc32 u32 | payload` (little-endian; payload as in
//! [`ops`](super::ops)). A frame that does not check out ends its segment (a write torn by a
//! crash; the next write opens a new segment).
//!
//! The log lives in segment files `wal/<id, 20 digits>.log`, where the id is the lsn of the
//! segment's first frame. The pipeline decides which segment a frame goes to when it frames it
//! (so it knows at once where each message body will be: segment id and byte offset), and starts
//! a new segment once the current one holds [`SEGMENT_BYTES`]. Message bodies are never copied
//! into sled: sled keeps only where they are in the log. A segment is deleted once sled holds all
//! of its operations durably and no stored message still points into it; compaction moves the
//! few live bodies out of segments that are mostly dead.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use super::StoreError;
use super::faults::{self, Faults, Point, io_error};

/// Bytes of a frame header.
pub const HEADER: usize = 16;
/// A new segment is started once the current one is this large.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

fn io(what: &str, e: std::io::Error) -> StoreError {
    StoreError::new(format!("{what}: {e}"))
}

/// Appends one frame to `buf`.
pub fn frame(buf: &mut Vec<u8>, lsn: u64, payload: &[u8]) {
    buf.extend_from_slice(&lsn.to_le_bytes());
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    buf.extend_from_slice(payload);
}

/// One frame read back: its lsn, the offset of its payload in the segment, the payload.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub lsn: u64,
    pub offset: u64,
    pub payload: &'a [u8],
}

/// Splits a segment's bytes into frames, stopping at the first bad one.
pub fn frames(bytes: &[u8]) -> Vec<Frame<'_>> {
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
        out.push(Frame { lsn, offset: (at + HEADER) as u64, payload });
        at += HEADER + len;
    }
    out
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.log"))
}

/// The segments of a log, shared by the writer (the committer), the readers of message bodies
/// and whoever deletes segments. Each segment has a read handle; a reader holding one keeps
/// reading even if the segment is deleted meanwhile.
pub struct Segments {
    dir: PathBuf,
    files: RwLock<BTreeMap<u64, Arc<File>>>,
}

impl Segments {
    /// Opens the log directory (creating it) and every segment in it.
    pub fn open(dir: &Path) -> Result<Arc<Segments>, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io("create the log directory", e))?;
        let mut files = BTreeMap::new();
        for e in std::fs::read_dir(dir).map_err(|e| io("list the log", e))? {
            let e = e.map_err(|e| io("list the log", e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".log").and_then(|n| n.parse::<u64>().ok()) {
                let f = File::open(e.path()).map_err(|e| io("open a log segment", e))?;
                files.insert(id, Arc::new(f));
            }
        }
        Ok(Arc::new(Segments { dir: dir.to_path_buf(), files: RwLock::new(files) }))
    }

    /// Segment ids, oldest first.
    pub fn ids(&self) -> Vec<u64> {
        self.files.read().keys().copied().collect()
    }

    /// The bytes of segment `id`, to split with [`frames`] (replay reads one segment at a time,
    /// so a long log never has to fit in memory at once).
    pub fn read_segment(&self, id: u64) -> Result<Vec<u8>, StoreError> {
        let mut bytes = Vec::new();
        File::open(segment_path(&self.dir, id))
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| io("read the log", e))?;
        Ok(bytes)
    }

    /// Reads `len` bytes at `offset` of segment `id`; `None` if the segment is gone.
    pub fn read_at(&self, id: u64, offset: u64, len: u32) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(f) = self.files.read().get(&id).cloned() else { return Ok(None) };
        let mut buf = vec![0; len as usize];
        f.read_exact_at(&mut buf, offset).map_err(|e| io("read a message body from the log", e))?;
        Ok(Some(buf))
    }

    /// Size of segment `id` in bytes (0 if it is gone).
    pub fn size(&self, id: u64) -> u64 {
        self.files.read().get(&id).and_then(|f| f.metadata().ok()).map_or(0, |m| m.len())
    }

    /// Deletes segment `id` (its file; readers holding it finish their reads).
    pub fn delete(&self, id: u64) -> Result<(), StoreError> {
        self.files.write().remove(&id);
        match std::fs::remove_file(segment_path(&self.dir, id)) {
            // Already gone is what we wanted.
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove a log segment", e)),
            _ => Ok(()),
        }
    }

    fn create(&self, id: u64) -> Result<File, StoreError> {
        let path = segment_path(&self.dir, id);
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_error("create a log segment", e))?;
        // Make the new file's directory entry durable too.
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        let reader = File::open(&path).map_err(|e| io("open a log segment", e))?;
        self.files.write().insert(id, Arc::new(reader));
        Ok(f)
    }
}

/// The writing end of the log (owned by the committer).
///
/// It knows how much of the segment being written an fsync has confirmed. After a failed write
/// or fsync nothing past that is trusted (after a failed fsync the kernel may have dropped the
/// pages it could not write while still serving them from its cache): the next write first cuts
/// the segment back to the confirmed length, and the caller writes again what it had written
/// since — the same bytes at the same offsets, so body locations handed out stay true.
pub struct Wal {
    segments: Arc<Segments>,
    /// The segment being written.
    file: Option<Current>,
    faults: Option<Arc<Faults>>,
}

struct Current {
    id: u64,
    file: File,
    /// Bytes written, and bytes an fsync confirmed.
    len: u64,
    synced: u64,
    /// A write or fsync failed since the last successful fsync: cut back before writing.
    suspect: bool,
}

impl Wal {
    pub fn new(segments: Arc<Segments>, faults: Option<Arc<Faults>>) -> Wal {
        Wal { segments, file: None, faults }
    }

    /// Writes frames to segment `id`, starting it if it is not the one being written (after
    /// syncing that one: a segment is complete and durable before the next begins). A restart
    /// never appends to an old segment: its tail may be torn.
    pub fn write(&mut self, id: u64, bytes: &[u8]) -> Result<(), StoreError> {
        self.cut_back()?;
        if self.file.as_ref().is_none_or(|c| c.id != id) {
            if self.file.as_ref().is_some_and(|c| c.len > c.synced) {
                self.sync()?;
            }
            let file = self.segments.create(id)?;
            self.file = Some(Current { id, file, len: 0, synced: 0, suspect: false });
        }
        let c = self.file.as_mut().expect("a segment is open");
        c.suspect = true;
        if let Err(e) = faults::check(self.faults.as_deref(), Point::LogWrite) {
            // As a full disk does: part of the write lands.
            let _ = c.file.write_all(&bytes[..bytes.len() / 2]);
            return Err(e);
        }
        c.file.write_all(bytes).map_err(|e| io_error("write the log", e))?;
        c.len += bytes.len() as u64;
        c.suspect = false;
        Ok(())
    }

    /// The segment being written.
    pub fn segment(&self) -> Option<u64> {
        self.file.as_ref().map(|c| c.id)
    }

    /// Makes everything written durable.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        let Some(c) = self.file.as_mut() else { return Ok(()) };
        c.suspect = true;
        faults::check(self.faults.as_deref(), Point::LogSync)?;
        c.file.sync_data().map_err(|e| io_error("sync the log", e))?;
        c.synced = c.len;
        c.suspect = false;
        Ok(())
    }

    /// After a failure: cuts the segment back to what an fsync confirmed.
    fn cut_back(&mut self) -> Result<(), StoreError> {
        let Some(c) = self.file.as_mut().filter(|c| c.suspect) else { return Ok(()) };
        c.file.set_len(c.synced).map_err(|e| io_error("cut the log back after a failed write", e))?;
        c.file.sync_data().map_err(|e| io_error("sync the log after cutting it back", e))?;
        c.len = c.synced;
        c.suspect = false;
        Ok(())
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
        assert_eq!(
            whole,
            vec![Frame { lsn: 1, offset: 16, payload: b"one" }, Frame { lsn: 2, offset: 16 + 3 + 16, payload: b"two" }]
        );
        assert_eq!(&buf[whole[1].offset as usize..][..3], b"two", "offsets point at the payload");
        assert_eq!(frames(&buf[..buf.len() - 1]).len(), 1, "a torn last frame is dropped");
        let mut bad = buf.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert_eq!(frames(&bad).len(), 1, "a corrupt frame ends the log");
    }

    #[test]
    fn segments_are_written_read_at_offsets_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let segs = Segments::open(dir.path()).unwrap();
        let mut w = Wal::new(segs.clone(), None);
        let mut buf = Vec::new();
        frame(&mut buf, 1, b"a");
        w.write(1, &buf).unwrap();
        let mut buf = Vec::new();
        frame(&mut buf, 2, b"bcd");
        w.write(2, &buf).unwrap();
        w.sync().unwrap();
        assert_eq!(segs.ids(), vec![1, 2]);
        assert_eq!(segs.read_at(2, 16, 3).unwrap().as_deref(), Some(&b"bcd"[..]));
        let again = Segments::open(dir.path()).unwrap();
        assert_eq!(again.ids(), vec![1, 2]);
        assert_eq!(frames(&again.read_segment(1).unwrap())[0].payload, b"a");
        segs.delete(1).unwrap();
        segs.delete(1).unwrap();
        assert_eq!(segs.ids(), vec![2]);
        assert_eq!(segs.read_at(1, 16, 1).unwrap(), None, "a deleted segment reads as gone");
        assert_eq!(Segments::open(dir.path()).unwrap().ids(), vec![2]);
    }
}
