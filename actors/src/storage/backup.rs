//! Backups: a store's block records as of one instant, in one file, and the
//! reader that checks a file whole before anything is restored from it.
//!
//! Format, version 1 (integers little-endian):
//!
//! ```text
//! "OPTIMYSTIC-BACKUP 1\n"
//! record*   : space (u8: 0 meta, 1 pend, 2 data) · key length (u32) · key
//!             · value length (u32) · value          (the engine's bytes, as stored)
//! trailer   : 0xFF · record count (u64) · xxh3-64 of every byte before the 0xFF
//! ```
//!
//! Values keep their per-record checksums, so a restored store verifies each
//! record as it is read, as any store does; the trailer's checksum covers the
//! file. Cluster transaction states and the node's configurations are not
//! included: a restored node starts with its blocks and none of the old node's
//! consensus state (docs/OPERATIONS.md, "Backup and restore").

use std::io::{Read, Write};

use xxhash_rust::xxh3::Xxh3;

use super::StorageError;

/// The first bytes of every backup.
pub const MAGIC: &[u8] = b"OPTIMYSTIC-BACKUP 1\n";
/// Where an export hands each record: keyspace, key, value (as stored).
pub type ExportSink<'a> = dyn FnMut(u8, &[u8], &[u8]) -> Result<(), StorageError> + 'a;
/// Where a reader hands each record it read.
pub type ImportSink<'a> = dyn FnMut(u8, Vec<u8>, Vec<u8>) -> Result<(), StorageError> + 'a;

/// Marks the trailer.
const END: u8 = 0xFF;
/// Keyspaces a backup holds, by their number in it.
pub const SPACES: [&str; 3] = ["meta", "pend", "data"];
/// Longest key and value a reader accepts (a bogus length is refused, not
/// allocated).
const MAX_KEY: u32 = 64 << 10;
const MAX_VALUE: u32 = 64 << 20;

/// Writes a backup to `w` record by record.
pub struct BackupWriter<W: Write> {
    w: W,
    hash: Xxh3,
    count: u64,
}

impl<W: Write> BackupWriter<W> {
    /// Starts a backup (writes the magic line).
    pub fn new(mut w: W) -> std::io::Result<Self> {
        let mut hash = Xxh3::new();
        w.write_all(MAGIC)?;
        hash.update(MAGIC);
        Ok(Self { w, hash, count: 0 })
    }

    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.hash.update(bytes);
        self.w.write_all(bytes)
    }

    /// Adds one record of keyspace `space`.
    pub fn record(&mut self, space: u8, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        let len = |n: usize, max: u32| {
            u32::try_from(n)
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| std::io::Error::other(format!("record of {n} bytes is too large")))
        };
        let (k, v) = (len(key.len(), MAX_KEY)?, len(value.len(), MAX_VALUE)?);
        self.put(&[space])?;
        self.put(&k.to_le_bytes())?;
        self.put(key)?;
        self.put(&v.to_le_bytes())?;
        self.put(value)?;
        self.count += 1;
        Ok(())
    }

    /// Writes the trailer; returns the writer and how many records it holds.
    pub fn finish(mut self) -> std::io::Result<(W, u64)> {
        let sum = self.hash.digest();
        self.w.write_all(&[END])?;
        self.w.write_all(&self.count.to_le_bytes())?;
        self.w.write_all(&sum.to_le_bytes())?;
        self.w.flush()?;
        Ok((self.w, self.count))
    }
}

fn bad(message: impl std::fmt::Display) -> StorageError {
    StorageError::corrupt("backup", message)
}

/// Reads exactly `buf.len()` bytes, or says where the file ended.
fn fill(r: &mut impl Read, buf: &mut [u8], what: &str) -> Result<(), StorageError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => bad(format!("truncated inside {what}")),
        _ => bad(e),
    })
}

/// Reads a backup from `r`, handing each record to `each` in order, and checks
/// the trailer: the count and the checksum of everything read. Returns the
/// number of records. Any damage — a wrong magic line, a bad space or length, a
/// truncated file, bytes after the trailer, a wrong checksum — is an error;
/// records already handed over must then be discarded by the caller (restore
/// reads a file twice: once to check it, once to import it).
pub fn read_backup(
    mut r: impl Read,
    mut each: impl FnMut(u8, Vec<u8>, Vec<u8>) -> Result<(), StorageError>,
) -> Result<u64, StorageError> {
    let mut hash = Xxh3::new();
    let mut magic = vec![0u8; MAGIC.len()];
    fill(&mut r, &mut magic, "the header")?;
    if magic != MAGIC {
        return Err(bad("not an Optimystic backup (version 1)"));
    }
    hash.update(&magic);
    let mut count = 0u64;
    loop {
        let mut space = [0u8; 1];
        fill(&mut r, &mut space, "a record")?;
        if space[0] == END {
            break;
        }
        if usize::from(space[0]) >= SPACES.len() {
            return Err(bad(format!(
                "record {count}: unknown keyspace {}",
                space[0]
            )));
        }
        hash.update(&space);
        let mut field = |max: u32, what: &str| -> Result<Vec<u8>, StorageError> {
            let mut len = [0u8; 4];
            fill(&mut r, &mut len, what)?;
            let n = u32::from_le_bytes(len);
            if n > max {
                return Err(bad(format!("record {count}: {what} of {n} bytes")));
            }
            let mut bytes = vec![0u8; n as usize];
            fill(&mut r, &mut bytes, what)?;
            hash.update(&len);
            hash.update(&bytes);
            Ok(bytes)
        };
        let key = field(MAX_KEY, "a key")?;
        let value = field(MAX_VALUE, "a value")?;
        each(space[0], key, value)?;
        count += 1;
    }
    let mut trailer = [0u8; 16];
    fill(&mut r, &mut trailer, "the trailer")?;
    let (n, sum) = trailer.split_at(8);
    let n = u64::from_le_bytes(n.try_into().map_err(bad)?);
    let sum = u64::from_le_bytes(sum.try_into().map_err(bad)?);
    if n != count {
        return Err(bad(format!("holds {count} records, its trailer says {n}")));
    }
    if sum != hash.digest() {
        return Err(bad("checksum mismatch"));
    }
    if r.read(&mut [0u8; 1]).map_err(bad)? != 0 {
        return Err(bad("bytes after the trailer"));
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = BackupWriter::new(Vec::new()).unwrap();
        w.record(0, b"b1", b"meta").unwrap();
        w.record(2, b"b1/rev/1", &[7u8; 300]).unwrap();
        w.finish().unwrap().0
    }

    #[test]
    fn a_backup_reads_back_and_any_damage_is_refused() {
        let file = sample();
        let mut got = Vec::new();
        let n = read_backup(&file[..], |s, k, v| {
            got.push((s, k, v.len()));
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            got,
            [(0, b"b1".to_vec(), 4), (2, b"b1/rev/1".to_vec(), 300)]
        );
        let refused = |bytes: &[u8]| read_backup(bytes, |_, _, _| Ok(())).is_err();
        for cut in [0, 5, MAGIC.len(), MAGIC.len() + 3, file.len() - 1] {
            assert!(refused(&file[..cut]), "truncated at {cut}");
        }
        let mut flipped = file.clone();
        flipped[MAGIC.len() + 8] ^= 1;
        assert!(refused(&flipped));
        let mut longer = file.clone();
        longer.push(0);
        assert!(refused(&longer));
        let mut space = file.clone();
        space[MAGIC.len()] = 9;
        assert!(refused(&space));
        let mut huge = file;
        huge[MAGIC.len() + 1..MAGIC.len() + 5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(refused(&huge));
    }
}
