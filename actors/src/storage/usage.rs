//! Disk space a directory tree occupies: the blocks allocated to its files (what
//! `du` reports), not their lengths. The embedded engine's journal is created
//! sparse at 64 MiB, so an empty node's files are 64 MiB long while holding a
//! few kilobytes.

use std::fs;
use std::io;
use std::path::Path;

/// Bytes allocated to the files under `dir` (apparent lengths where the platform
/// has no block count).
pub(crate) fn allocated_bytes(dir: &Path) -> io::Result<u64> {
    let mut n = 0;
    for e in fs::read_dir(dir)? {
        let e = e?;
        let md = e.metadata()?;
        n += if md.is_dir() {
            allocated_bytes(&e.path())?
        } else {
            allocated(&md)
        };
    }
    Ok(n)
}

#[cfg(unix)]
fn allocated(md: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    // `st_blocks` counts 512-byte units whatever the file system's block size.
    md.blocks() * 512
}

#[cfg(not(unix))]
fn allocated(md: &fs::Metadata) -> u64 {
    md.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparse_file_counts_what_it_holds_not_its_length() {
        let dir = tempfile::tempdir().unwrap();
        let sparse = fs::File::create(dir.path().join("journal")).unwrap();
        sparse.set_len(64 << 20).unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("sub").join("data"), vec![7u8; 10_000]).unwrap();
        let n = allocated_bytes(dir.path()).unwrap();
        assert!((10_000..1 << 20).contains(&n), "{n}");
    }
}
