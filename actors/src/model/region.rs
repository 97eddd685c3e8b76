//! Regions of the key space: a block's key is `sha256(utf8(blockId))`, and the
//! key space is cut into [`REGIONS`] fixed regions by its first [`REGION_BITS`]
//! bits. A region is the unit that has one configuration (docs/CONSENSUS.md,
//! "Configurations"): every block in it is replicated on the same peers.
//!
//! Why fixed regions: a configuration per block would cost a record per block and
//! leave a block never written without an agreed home; one configuration for the
//! whole network would move every block at once. 4,096 regions keep each node's
//! table small (a few hundred kilobytes at three nodes, a dozen regions each at a
//! thousand) while giving placement enough pieces to spread.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ids::BlockId;

/// Bits of the key that name a region.
pub const REGION_BITS: u32 = 12;
/// Regions in the key space.
pub const REGIONS: u32 = 1 << REGION_BITS;

/// A block's key: `sha256(utf8(blockId))`.
pub fn block_key(block: &BlockId) -> [u8; 32] {
    Sha256::digest(block.as_str().as_bytes()).into()
}

/// One of the [`REGIONS`] regions: the keys whose first [`REGION_BITS`] bits
/// are its number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Region(u16);

impl Region {
    /// Region number `n` (taken modulo [`REGIONS`]).
    pub fn new(n: u32) -> Self {
        Self((n % REGIONS) as u16)
    }

    /// Every region, in order.
    pub fn all() -> impl Iterator<Item = Region> {
        (0..REGIONS).map(Region::new)
    }

    /// The region of a key.
    pub fn of_key(key: &[u8; 32]) -> Self {
        let top = u32::from(u16::from_be_bytes([key[0], key[1]]));
        Self::new(top >> (16 - REGION_BITS))
    }

    /// The region of a block.
    pub fn of(block: &BlockId) -> Self {
        Self::of_key(&block_key(block))
    }

    /// Its number.
    pub fn index(self) -> u32 {
        u32::from(self.0)
    }

    /// The key at the middle of the region: its bits, then a one, then zeros. The
    /// region's placement is decided at this key.
    pub fn midpoint(self) -> [u8; 32] {
        let mut key = [0u8; 32];
        let v = (u32::from(self.0) << (16 - REGION_BITS)) | (1 << (15 - REGION_BITS));
        let [hi, lo] = (v as u16).to_be_bytes();
        key[0] = hi;
        key[1] = lo;
        key
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn regions_cover_the_key_space_by_its_first_bits() {
        assert_eq!(REGIONS, 4096);
        let mut key = [0u8; 32];
        assert_eq!(Region::of_key(&key), Region::new(0));
        key[0] = 0xff;
        key[1] = 0xf0;
        assert_eq!(Region::of_key(&key), Region::new(4095));
        key[1] = 0xff;
        assert_eq!(Region::of_key(&key), Region::new(4095));
        key[0] = 0x12;
        key[1] = 0x34;
        assert_eq!(Region::of_key(&key), Region::new(0x123));
        // The midpoint is inside its region, in the middle of its range.
        for r in [Region::new(0), Region::new(0x123), Region::new(4095)] {
            assert_eq!(Region::of_key(&r.midpoint()), r);
            assert_eq!(r.midpoint()[1] & 0x0f, 0x08);
        }
        // `printf b1 | sha256sum` = 7dc96f77…: region 0x7dc.
        let b = BlockId::new("b1").unwrap();
        assert_eq!(block_key(&b)[..3], [0x7d, 0xc9, 0x6f]);
        assert_eq!(Region::of(&b), Region::new(0x7dc));
        assert_eq!(Region::of(&b).to_string(), "7dc");
        assert_eq!(Region::all().count(), 4096);
    }
}
