//! Checksums on stored records (integrity on disk).
//!
//! Every record a persistent backend writes carries an XXH3-64 checksum of its
//! encoded bytes, and every read verifies it before decoding:
//!
//! - **file backend**: the file is still one JSON document,
//!   `{"xxh3":"<16 lowercase hex>","record":<the record's JSON>}`; the checksum
//!   covers exactly the bytes of `<the record's JSON>` as written;
//! - **embedded backend**: the value is `0xC1` (a byte MessagePack never uses),
//!   the checksum as 8 little-endian bytes, then the record's MessagePack.
//!
//! A record that fails its checksum, is truncated, or does not decode is reported
//! as [`StorageError::Corrupt`] (and counted in
//! [`StorageStats::corrupt`](super::StorageStats::corrupt)); [`BlockStorage`]
//! then treats it as missing and asks peers to restore the block, so a damaged
//! record is never served as valid data.
//!
//! [`BlockStorage`]: super::BlockStorage

use serde::de::DeserializeOwned;
use xxhash_rust::xxh3::xxh3_64;

use super::{BlockMeta, StorageError};

const JSON_HEAD: &[u8] = b"{\"xxh3\":\"";
const JSON_MID: &[u8] = b"\",\"record\":";
const HEX_LEN: usize = 16;
const MAGIC: u8 = 0xC1;
const VALUE_HEAD: usize = 1 + 8;

/// Wraps a record's JSON in the checksummed envelope of the file backend.
pub(crate) fn seal_json(record: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(JSON_HEAD.len() + HEX_LEN + JSON_MID.len() + record.len() + 1);
    out.extend_from_slice(JSON_HEAD);
    out.extend_from_slice(format!("{:016x}", xxh3_64(record)).as_bytes());
    out.extend_from_slice(JSON_MID);
    out.extend_from_slice(record);
    out.push(b'}');
    out
}

/// The record's JSON inside a file written by [`seal_json`], checksum verified.
pub(crate) fn open_json(bytes: &[u8]) -> Result<&[u8], String> {
    let rest = bytes
        .strip_prefix(JSON_HEAD)
        .ok_or("no checksum envelope (truncated, foreign or damaged file)")?;
    if rest.len() < HEX_LEN + JSON_MID.len() + 1 {
        return Err("truncated".into());
    }
    let (hex, rest) = rest.split_at(HEX_LEN);
    let record = rest
        .strip_prefix(JSON_MID)
        .and_then(|r| r.strip_suffix(b"}"))
        .ok_or("malformed checksum envelope (truncated or damaged)")?;
    let want = std::str::from_utf8(hex)
        .ok()
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or("malformed checksum")?;
    check(want, record)?;
    Ok(record)
}

/// Prefixes a record's MessagePack with the embedded backend's checksum header.
pub(crate) fn seal_value(record: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(VALUE_HEAD + record.len());
    out.push(MAGIC);
    out.extend_from_slice(&xxh3_64(record).to_le_bytes());
    out.extend_from_slice(record);
    out
}

/// The record inside a value written by [`seal_value`], checksum verified.
pub(crate) fn open_value(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.first() != Some(&MAGIC) {
        return Err("no checksum header (damaged or foreign value)".into());
    }
    let head = bytes
        .get(1..VALUE_HEAD)
        .and_then(|h| <[u8; 8]>::try_from(h).ok())
        .ok_or("truncated")?;
    let record = &bytes[VALUE_HEAD..];
    check(u64::from_le_bytes(head), record)?;
    Ok(record)
}

fn check(want: u64, record: &[u8]) -> Result<(), String> {
    let got = xxh3_64(record);
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "checksum mismatch (stored {want:016x}, computed {got:016x})"
        ))
    }
}

/// Decodes a file-backend record (`what` names it in errors).
pub(crate) fn decode_json<T: DeserializeOwned>(
    what: &str,
    bytes: &[u8],
) -> Result<T, StorageError> {
    let record = open_json(bytes).map_err(|e| StorageError::corrupt(what, e))?;
    serde_json::from_slice(record).map_err(|e| StorageError::corrupt(what, e))
}

/// Decodes an embedded-backend record (`what` names it in errors).
pub(crate) fn decode_value<T: DeserializeOwned>(
    what: &str,
    bytes: &[u8],
) -> Result<T, StorageError> {
    let record = open_value(bytes).map_err(|e| StorageError::corrupt(what, e))?;
    rmp_serde::from_slice(record).map_err(|e| StorageError::corrupt(what, e))
}

/// Reads a block's `meta.json` as the file backend does: checksum, then JSON.
pub fn read_file_meta(bytes: &[u8]) -> Result<BlockMeta, StorageError> {
    decode_json("meta.json", bytes)
}

/// Reads a block's metadata value as the embedded backend does: checksum, then MessagePack.
pub fn read_embedded_meta(bytes: &[u8]) -> Result<BlockMeta, StorageError> {
    decode_value("meta", bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn json_envelope_round_trips_and_is_json() {
        let sealed = seal_json(br#"{"a":[1,2]}"#);
        assert_eq!(open_json(&sealed).unwrap(), br#"{"a":[1,2]}"#);
        let v: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
        assert_eq!(v["record"]["a"][1], 2);
    }

    #[test]
    fn every_single_byte_change_or_truncation_is_detected() {
        let record = br#"{"ranges":[{"start":0}],"latest":{"trxId":"t1","rev":3}}"#;
        for sealed in [seal_json(record), seal_value(record)] {
            let open = |b: &[u8]| {
                if sealed[0] == MAGIC {
                    open_value(b).map(<[u8]>::to_vec)
                } else {
                    open_json(b).map(<[u8]>::to_vec)
                }
            };
            assert_eq!(open(&sealed).unwrap(), record);
            for i in 0..sealed.len() {
                let mut bad = sealed.clone();
                bad[i] ^= 0x20;
                // A flip that lands in the hex digits' case may still parse to the
                // same number only if it was a letter; either way the content is intact.
                if let Ok(r) = open(&bad) {
                    assert_eq!(r, record, "byte {i} changed the record undetected");
                }
                assert!(open(&sealed[..i]).is_err(), "truncation at {i} undetected");
            }
        }
    }
}
