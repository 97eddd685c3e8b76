//! The storage metadata readers: read_file_meta / read_embedded_meta (checksummed
//! records of the file and embedded backends) over the raw input, over the input
//! sealed in a correct envelope (then they must agree with plain JSON /
//! MessagePack decoding of it) and over one with a wrong checksum (always refused);
//! and BlockMeta decoded as JSON and as MessagePack. Never panics; whatever decodes
//! survives both round trips; rebuilding it range by range with add_range covers
//! exactly the union of its ranges.

use optimystic_actors::storage::{read_embedded_meta, read_file_meta, BlockMeta, RevRange};
use xxhash_rust::xxh3::xxh3_64;

/// The file backend's envelope (storage/seal.rs documents it), written independently.
fn file_envelope(record: &[u8], sum: u64) -> Vec<u8> {
    let mut out = format!("{{\"xxh3\":\"{sum:016x}\",\"record\":").into_bytes();
    out.extend_from_slice(record);
    out.push(b'}');
    out
}

/// The embedded backend's value header: 0xC1, checksum little-endian, record.
fn embedded_value(record: &[u8], sum: u64) -> Vec<u8> {
    let mut out = vec![0xC1];
    out.extend_from_slice(&sum.to_le_bytes());
    out.extend_from_slice(record);
    out
}

/// Ranges re-added one by one to check add_range.
const REBUILT: usize = 16;

/// Revisions worth probing around a range: its edges and their neighbours.
fn edges(r: &RevRange) -> impl Iterator<Item = u64> {
    let s = r.start;
    let e = r.end.unwrap_or(u64::MAX);
    [
        s.wrapping_sub(1),
        s,
        s.saturating_add(1),
        e.wrapping_sub(1),
        e,
        e.saturating_add(1),
    ]
    .into_iter()
}

fn check(meta: &BlockMeta) {
    let json = serde_json::to_vec(meta).expect("metadata encodes as JSON");
    let back: BlockMeta = serde_json::from_slice(&json).expect("encoded JSON metadata decodes");
    assert_eq!(&back, meta, "metadata changes through JSON");
    let mp = rmp_serde::to_vec_named(meta).expect("metadata encodes as MessagePack");
    let back: BlockMeta = rmp_serde::from_slice(&mp).expect("encoded MessagePack metadata decodes");
    assert_eq!(&back, meta, "metadata changes through MessagePack");

    // The first REBUILT ranges only: the check is quadratic in them.
    let ranges = &meta.ranges[..meta.ranges.len().min(REBUILT)];
    let probes: Vec<u64> = ranges.iter().flat_map(edges).chain([0, u64::MAX]).collect();
    let mut built = BlockMeta::default();
    for (i, added) in ranges.iter().enumerate() {
        let prev = built.clone();
        built.add_range(*added);
        assert!(
            built.ranges.windows(2).all(|w| w[0].start <= w[1].start),
            "ranges not sorted after add_range"
        );
        for &p in &probes {
            assert_eq!(
                built.covers(p),
                prev.covers(p) || added.contains(p),
                "after adding range #{i} {added:?}, revision {p} coverage is wrong"
            );
        }
    }
    let _ = meta.latest.as_ref().map(|l| meta.covers(l.rev));
}

/// One input (the fuzz target and the corpus replay in `tests/fuzz_corpus.rs` both call it).
pub fn run(data: &[u8]) {
    // Raw bytes: almost always refused (a checksum cannot be guessed), never a panic.
    for r in [read_file_meta(data), read_embedded_meta(data)] {
        match r {
            Ok(meta) => check(&meta),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    // Sealed correctly: exactly what plain decoding gives.
    let sum = xxh3_64(data);
    let from_file = read_file_meta(&file_envelope(data, sum));
    let plain_json = serde_json::from_slice::<BlockMeta>(data);
    assert_eq!(
        from_file.as_ref().ok(),
        plain_json.as_ref().ok(),
        "file reader disagrees with JSON"
    );
    let from_embedded = read_embedded_meta(&embedded_value(data, sum));
    let plain_mp = rmp_serde::from_slice::<BlockMeta>(data);
    assert_eq!(
        from_embedded.as_ref().ok(),
        plain_mp.as_ref().ok(),
        "embedded reader disagrees with MessagePack"
    );
    // Sealed with a wrong checksum: refused.
    assert!(
        read_file_meta(&file_envelope(data, !sum)).is_err(),
        "file checksum not checked"
    );
    assert!(
        read_embedded_meta(&embedded_value(data, !sum)).is_err(),
        "embedded checksum not checked"
    );
    if let Ok(meta) = serde_json::from_slice::<BlockMeta>(data) {
        check(&meta);
    }
    if let Ok(meta) = rmp_serde::from_slice::<BlockMeta>(data) {
        check(&meta);
    }
}
