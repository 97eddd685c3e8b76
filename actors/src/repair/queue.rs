//! The repair queue (docs/CONSENSUS.md, "Anti-entropy"): the blocks this node
//! found to compare with their cluster and has not settled yet, kept in a file
//! of the data directory so a restarted node resumes where it stopped.
//!
//! The file is a log of lines, `+<blockId>` when a block is queued and
//! `-<blockId>` when it is settled, rewritten whole (to a temporary file,
//! synced, renamed) when it holds more than twice the lines it needs. Adding
//! syncs before it returns: a block is never found and then forgotten by a
//! crash. Removing does not: a removal lost in a crash only makes the node
//! compare that block once more. A torn last line (no newline: a crash
//! mid-write) and any line that is not a queued or settled block id are
//! skipped when the file is read.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::model::BlockId;

/// A node's repair queue, durable when it has a file.
#[derive(Debug)]
pub struct RepairQueue {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    queued: BTreeSet<BlockId>,
    /// The log and how many lines it holds; `None` for a queue in memory.
    file: Option<(PathBuf, File, usize)>,
}

impl Default for RepairQueue {
    fn default() -> Self {
        Self::in_memory()
    }
}

impl RepairQueue {
    /// A queue that lives as long as the process (nodes without a data
    /// directory of their own, tests).
    pub fn in_memory() -> Self {
        Self {
            inner: Mutex::new(Inner {
                queued: BTreeSet::new(),
                file: None,
            }),
        }
    }

    /// Opens (or creates) the queue kept in `path`, with what it held.
    pub fn open(path: &Path) -> io::Result<Self> {
        let mut queued = BTreeSet::new();
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        // Whole lines only: what follows the last newline is a torn write.
        let whole = text
            .iter()
            .rposition(|c| *c == b'\n')
            .map_or(&[][..], |end| &text[..end]);
        for line in whole.split(|c| *c == b'\n') {
            let Some((op, id)) = line.split_first() else {
                continue;
            };
            let Some(id) = std::str::from_utf8(id)
                .ok()
                .and_then(|s| BlockId::new(s).ok())
            else {
                continue;
            };
            match op {
                b'+' => {
                    queued.insert(id);
                }
                b'-' => {
                    queued.remove(&id);
                }
                _ => {}
            }
        }
        let file = rewrite(path, &queued)?;
        Ok(Self {
            inner: Mutex::new(Inner {
                file: Some((path.to_path_buf(), file, queued.len())),
                queued,
            }),
        })
    }

    /// Queues `blocks` (those not queued yet), durably when the queue has a
    /// file.
    pub fn add(&self, blocks: &[BlockId]) -> io::Result<()> {
        let mut inner = self.inner.lock();
        let new: Vec<BlockId> = blocks
            .iter()
            .filter(|b| !inner.queued.contains(*b))
            .cloned()
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        inner.append(b'+', &new, true)?;
        inner.queued.extend(new);
        Ok(())
    }

    /// Takes `blocks` off the queue (settled).
    pub fn remove(&self, blocks: &[BlockId]) -> io::Result<()> {
        let mut inner = self.inner.lock();
        let gone: Vec<BlockId> = blocks
            .iter()
            .filter(|b| inner.queued.contains(*b))
            .cloned()
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        for b in &gone {
            inner.queued.remove(b);
        }
        inner.append(b'-', &gone, false)?;
        inner.compact()
    }

    /// Every queued block, in id order.
    pub fn snapshot(&self) -> Vec<BlockId> {
        self.inner.lock().queued.iter().cloned().collect()
    }

    /// How many blocks are queued.
    pub fn len(&self) -> usize {
        self.inner.lock().queued.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    /// Appends one line per block, `op` first; synced when `sync`.
    fn append(&mut self, op: u8, blocks: &[BlockId], sync: bool) -> io::Result<()> {
        let Some((_, file, lines)) = self.file.as_mut() else {
            return Ok(());
        };
        let mut buf = Vec::with_capacity(blocks.len() * 24);
        for b in blocks {
            buf.push(op);
            buf.extend_from_slice(b.as_str().as_bytes());
            buf.push(b'\n');
        }
        file.write_all(&buf)?;
        if sync {
            file.sync_data()?;
        }
        *lines += blocks.len();
        Ok(())
    }

    /// Rewrites the log with only the queued blocks once it holds more than
    /// twice as many lines (and at least 1,024).
    fn compact(&mut self) -> io::Result<()> {
        let Some((path, _, lines)) = self.file.as_ref() else {
            return Ok(());
        };
        if *lines < 1024 || *lines <= 2 * self.queued.len() {
            return Ok(());
        }
        let path = path.clone();
        let file = rewrite(&path, &self.queued)?;
        self.file = Some((path, file, self.queued.len()));
        Ok(())
    }
}

/// Writes `queued` as a fresh log at `path` (a temporary file, synced, renamed
/// over it, the directory synced) and returns it open for appending.
fn rewrite(path: &Path, queued: &BTreeSet<BlockId>) -> io::Result<File> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        let mut buf = Vec::new();
        for b in queued {
            buf.push(b'+');
            buf.extend_from_slice(b.as_str().as_bytes());
            buf.push(b'\n');
        }
        f.write_all(&buf)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    OpenOptions::new().append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<BlockId> {
        names.iter().map(|n| BlockId::new(*n).unwrap()).collect()
    }

    #[test]
    fn what_was_queued_and_not_settled_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repair-queue");
        let q = RepairQueue::open(&path).unwrap();
        q.add(&ids(&["a", "b", "c"])).unwrap();
        q.add(&ids(&["b", "d"])).unwrap();
        q.remove(&ids(&["a", "x"])).unwrap();
        assert_eq!(q.snapshot(), ids(&["b", "c", "d"]));
        drop(q);
        let q = RepairQueue::open(&path).unwrap();
        assert_eq!(q.snapshot(), ids(&["b", "c", "d"]));
        assert_eq!(q.len(), 3);
    }

    #[test]
    fn a_torn_or_foreign_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repair-queue");
        std::fs::write(&path, b"+a\n+b\n*c\n+bad id\n\n-b\n+\xff\n+d").unwrap();
        let q = RepairQueue::open(&path).unwrap();
        // `+d` has no newline: a torn write, not taken.
        assert_eq!(q.snapshot(), ids(&["a"]));
        // The file was rewritten clean.
        assert_eq!(std::fs::read(&path).unwrap(), b"+a\n");
    }

    #[test]
    fn the_log_is_compacted_once_mostly_settled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repair-queue");
        let q = RepairQueue::open(&path).unwrap();
        let many: Vec<BlockId> = (0..2000)
            .map(|i| BlockId::new(format!("b{i}")).unwrap())
            .collect();
        q.add(&many).unwrap();
        q.remove(&many[..1990]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 10, "not compacted");
        drop(q);
        assert_eq!(RepairQueue::open(&path).unwrap().snapshot(), many[1990..]);
    }

    #[test]
    fn a_queue_in_memory_keeps_no_file() {
        let q = RepairQueue::in_memory();
        q.add(&ids(&["a"])).unwrap();
        assert!(!q.is_empty());
        q.remove(&ids(&["a"])).unwrap();
        assert!(q.is_empty());
    }
}
