//! Blocks, block operations and transforms: the shapes of DESIGN §3.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ids::BlockId;

/// The fixed part of every block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockHeader {
    /// The block's own id.
    pub id: BlockId,
    /// Application-defined block type (e.g. a B-tree node kind).
    #[serde(rename = "type")]
    pub block_type: String,
    /// The collection this block belongs to.
    pub collection_id: BlockId,
}

/// A block: a header plus arbitrary JSON-like fields, kept exactly as given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Block {
    /// Identity and type of the block.
    pub header: BlockHeader,
    /// Every other field, in insertion order.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

/// `[entity, index, deleteCount, inserted]`: splice the array field `entity` when
/// `inserted` is an array, otherwise set `entity` to `inserted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "(String, u64, u64, Value)", into = "(String, u64, u64, Value)")]
pub struct BlockOperation {
    /// Name of the field the operation changes.
    pub entity: String,
    /// Splice position (ignored for a replace).
    pub index: u64,
    /// Elements removed at `index` (ignored for a replace).
    pub delete_count: u64,
    /// Elements to insert (array) or the new value (anything else).
    pub inserted: Value,
}

impl From<(String, u64, u64, Value)> for BlockOperation {
    fn from((entity, index, delete_count, inserted): (String, u64, u64, Value)) -> Self {
        Self {
            entity,
            index,
            delete_count,
            inserted,
        }
    }
}

impl From<BlockOperation> for (String, u64, u64, Value) {
    fn from(op: BlockOperation) -> Self {
        (op.entity, op.index, op.delete_count, op.inserted)
    }
}

/// Changes to one block, applied in the order insert, updates, delete.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transform {
    /// A whole new block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insert: Option<Block>,
    /// Operations on the block's fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updates: Option<Vec<BlockOperation>>,
    /// Whether the block is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<bool>,
}

impl Transform {
    /// True when the transform changes nothing.
    pub fn is_empty(&self) -> bool {
        self.insert.is_none()
            && self.updates.as_ref().is_none_or(Vec::is_empty)
            && !self.delete.unwrap_or(false)
    }
}

/// Changes to many blocks, keyed by block id.
///
/// Written always with all three fields, an empty one as `{}` or `[]`: the
/// seed's `Transforms` type requires each, and its client iterates them.
/// Read, a field may be absent, and an empty one reads as absent, so a value
/// survives a round trip unchanged (`None` stands for empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transforms {
    /// Blocks inserted, by id.
    #[serde(
        default,
        serialize_with = "map_or_empty",
        deserialize_with = "nonempty_map"
    )]
    pub inserts: Option<BTreeMap<BlockId, Block>>,
    /// Operations per block id.
    #[serde(
        default,
        serialize_with = "map_or_empty",
        deserialize_with = "nonempty_map"
    )]
    pub updates: Option<BTreeMap<BlockId, Vec<BlockOperation>>>,
    /// Blocks deleted. An empty object reads as none: JavaScript's
    /// `JSON.stringify` writes a `Set` (the seed's type for this field) as `{}`.
    #[serde(
        default,
        serialize_with = "list_or_empty",
        deserialize_with = "deletes_list_or_empty_set"
    )]
    pub deletes: Option<Vec<BlockId>>,
}

fn map_or_empty<S: serde::Serializer, V: Serialize>(
    m: &Option<BTreeMap<BlockId, V>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap as _;
    match m {
        Some(m) => m.serialize(s),
        None => s.serialize_map(Some(0))?.end(),
    }
}

fn nonempty_map<'de, D, V>(d: D) -> Result<Option<BTreeMap<BlockId, V>>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    let m: Option<BTreeMap<BlockId, V>> = Option::deserialize(d)?;
    Ok(m.filter(|m| !m.is_empty()))
}

fn list_or_empty<S: serde::Serializer>(l: &Option<Vec<BlockId>>, s: S) -> Result<S::Ok, S::Error> {
    l.as_deref().unwrap_or_default().serialize(s)
}

/// Reads `deletes`: a list of ids, `null`, or `{}` (a serialized `Set`, whose
/// members `JSON.stringify` drops; an object with entries is refused rather
/// than guessed at).
fn deletes_list_or_empty_set<'de, D>(d: D) -> Result<Option<Vec<BlockId>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Deletes;
    impl<'de> serde::de::Visitor<'de> for Deletes {
        type Value = Option<Vec<BlockId>>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list of block ids (or {}, an empty JavaScript Set)")
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D2: serde::Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(Deletes)
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut ids = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            while let Some(id) = seq.next_element()? {
                ids.push(id);
            }
            Ok((!ids.is_empty()).then_some(ids))
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            match map.next_key::<serde::de::IgnoredAny>()? {
                None => Ok(None),
                Some(_) => Err(serde::de::Error::custom(
                    "deletes must be a list of block ids; an object is read only when empty (how JSON.stringify writes a Set)",
                )),
            }
        }
    }
    d.deserialize_any(Deletes)
}

impl Transforms {
    /// Every block id the transforms touch, sorted and distinct.
    pub fn block_ids(&self) -> BTreeSet<BlockId> {
        let mut ids = BTreeSet::new();
        ids.extend(self.inserts.iter().flat_map(|m| m.keys().cloned()));
        ids.extend(self.updates.iter().flat_map(|m| m.keys().cloned()));
        ids.extend(self.deletes.iter().flatten().cloned());
        ids
    }

    /// The part of the transforms that concerns `blocks`.
    pub fn restricted_to(&self, blocks: &BTreeSet<BlockId>) -> Transforms {
        fn keep<V: Clone>(
            m: &Option<BTreeMap<BlockId, V>>,
            blocks: &BTreeSet<BlockId>,
        ) -> Option<BTreeMap<BlockId, V>> {
            let kept: BTreeMap<BlockId, V> = m
                .iter()
                .flatten()
                .filter(|(id, _)| blocks.contains(*id))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (!kept.is_empty()).then_some(kept)
        }
        let deletes: Vec<BlockId> = self
            .deletes
            .iter()
            .flatten()
            .filter(|id| blocks.contains(*id))
            .cloned()
            .collect();
        Transforms {
            inserts: keep(&self.inserts, blocks),
            updates: keep(&self.updates, blocks),
            deletes: (!deletes.is_empty()).then_some(deletes),
        }
    }

    /// The part of the transforms that concerns `id`.
    pub fn for_block(&self, id: &BlockId) -> Transform {
        Transform {
            insert: self.inserts.as_ref().and_then(|m| m.get(id)).cloned(),
            updates: self.updates.as_ref().and_then(|m| m.get(id)).cloned(),
            delete: self
                .deletes
                .as_ref()
                .filter(|d| d.contains(id))
                .map(|_| true),
        }
    }

    /// Builds the many-block form holding one block's transform.
    pub fn from_block(id: &BlockId, t: &Transform) -> Self {
        Self {
            inserts: t.insert.clone().map(|b| BTreeMap::from([(id.clone(), b)])),
            updates: t.updates.clone().map(|u| BTreeMap::from([(id.clone(), u)])),
            deletes: t.delete.filter(|d| *d).map(|_| vec![id.clone()]),
        }
    }

    /// Merges another block's transforms into these (ids must not overlap).
    pub fn merge(&mut self, other: Transforms) {
        if let Some(i) = other.inserts {
            self.inserts.get_or_insert_with(BTreeMap::new).extend(i);
        }
        if let Some(u) = other.updates {
            self.updates.get_or_insert_with(BTreeMap::new).extend(u);
        }
        if let Some(d) = other.deletes {
            self.deletes.get_or_insert_with(Vec::new).extend(d);
        }
    }
}
