//! The requests a load sends, built without I/O: blocks with a payload, their
//! insert and update transforms, one transaction's pend and commit (or both as one
//! pendCommit), reads, fresh transaction ids, and which block a lane works on.

use optimystic_actors::model::{
    Block, BlockGets, BlockHeader, BlockId, BlockOperation, CommitRequest, PendCommitRequest,
    PendPolicy, PendRequest, Rev, Transforms, TrxBlocks, TrxId,
};
use serde_json::Value;

/// A fresh transaction id: a random UUID, never reused by another run or process.
pub fn new_trx_id() -> Result<TrxId, String> {
    TrxId::new(uuid::Uuid::new_v4().to_string()).map_err(|e| e.to_string())
}

/// The block id `name`; why it is not one as text.
pub fn block_id(name: impl Into<String>) -> Result<BlockId, String> {
    BlockId::new(name).map_err(|e| e.to_string())
}

/// Block `id` of type `block_type` in collection `collection`, with `fields`
/// after its header in the order given.
pub fn block<'a>(
    id: &BlockId,
    block_type: &str,
    collection: &str,
    fields: impl IntoIterator<Item = (&'a str, Value)>,
) -> Result<Block, String> {
    Ok(Block {
        header: BlockHeader {
            id: id.clone(),
            block_type: block_type.to_string(),
            collection_id: block_id(collection)?,
        },
        fields: fields
            .into_iter()
            .map(|(name, value)| (name.to_string(), value))
            .collect(),
    })
}

/// A payload: a string of `size` copies of `fill` (`size` bytes for an ASCII `fill`).
pub fn payload(fill: char, size: usize) -> Value {
    Value::String(fill.to_string().repeat(size))
}

/// Inserts `block` under its own id.
pub fn insert(block: Block) -> Transforms {
    Transforms {
        inserts: Some([(block.header.id.clone(), block)].into()),
        ..Transforms::default()
    }
}

/// Sets field `entity` of block `id` to `value`.
pub fn set_field(id: &BlockId, entity: &str, value: Value) -> Transforms {
    let op = BlockOperation {
        entity: entity.into(),
        index: 0,
        delete_count: 0,
        inserted: value,
    };
    Transforms {
        updates: Some([(id.clone(), vec![op])].into()),
        ..Transforms::default()
    }
}

/// A read of block `id`: the node's copy, no context, the default consistency.
pub fn gets(id: BlockId) -> BlockGets {
    BlockGets {
        block_ids: vec![id],
        context: None,
        consistency: None,
    }
}

/// One transaction on one block: its pend (failing on other pending
/// transactions) and its commit, at the same revision.
#[derive(Debug, Clone, PartialEq)]
pub struct Txn {
    /// The pend.
    pub pend: PendRequest,
    /// The commit.
    pub commit: CommitRequest,
}

impl Txn {
    /// Transaction `trx` making `transforms` revision `rev` of block `id`.
    pub fn new(trx: TrxId, id: BlockId, rev: Rev, transforms: Transforms) -> Self {
        Self {
            pend: PendRequest {
                trx_id: trx.clone(),
                rev: Some(rev),
                transforms,
                policy: PendPolicy::Fail,
            },
            commit: CommitRequest {
                trx_id: trx,
                block_ids: vec![id],
                rev,
                header_id: None,
                tail_id: None,
            },
        }
    }

    /// Transaction `trx` inserting `block` as its revision 1.
    pub fn insert(trx: TrxId, block: Block) -> Self {
        let id = block.header.id.clone();
        Self::new(trx, id, 1, insert(block))
    }

    /// The pend and the commit as one pendCommit request.
    pub fn one_round(self) -> PendCommitRequest {
        PendCommitRequest {
            pend: self.pend,
            commit: self.commit,
        }
    }

    /// The transaction and its blocks, to cancel its pend.
    pub fn blocks(&self) -> TrxBlocks {
        TrxBlocks {
            trx_id: self.commit.trx_id.clone(),
            block_ids: self.commit.block_ids.clone(),
        }
    }
}

/// The block (of `0..blocks`) that lane `lane` of `lanes` works on in its `k`th
/// operation: each lane cycles through its own blocks (lane, lane + lanes, …),
/// so two lanes never update one block; with fewer blocks than lanes, some share.
pub fn lane_block(lane: u64, lanes: u64, k: u64, blocks: u64) -> u64 {
    let (lanes, blocks) = (lanes.max(1), blocks.max(1));
    let per_lane = (blocks / lanes).max(1);
    (lane + lanes * (k % per_lane)) % blocks
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use serde_json::json;

    use super::*;

    #[test]
    fn transaction_ids_are_fresh_uuids() {
        let (a, b) = (new_trx_id().unwrap(), new_trx_id().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 36);
    }

    #[test]
    fn a_block_keeps_its_fields_in_order_and_its_payload_size() {
        let id = block_id("bench7-3").unwrap();
        let fields = [
            ("items", json!([])),
            ("n", json!(3u64)),
            ("value", payload('v', 256)),
        ];
        let b = block(&id, "bench", "bench", fields).unwrap();
        assert_eq!(b.header.id, id);
        assert_eq!(b.header.block_type, "bench");
        assert_eq!(b.header.collection_id.as_str(), "bench");
        let names: Vec<&str> = b.fields.keys().map(String::as_str).collect();
        assert_eq!(names, ["items", "n", "value"]);
        assert_eq!(b.fields["value"].as_str().map(str::len), Some(256));
        // The same block, on the wire too, as parsed from JSON.
        let parsed: Block = serde_json::from_value(json!({
            "header": {"id": "bench7-3", "type": "bench", "collectionId": "bench"},
            "items": [], "n": 3, "value": "v".repeat(256)
        }))
        .unwrap();
        assert_eq!(b, parsed);
        assert_eq!(
            serde_json::to_string(&b).unwrap(),
            serde_json::to_string(&parsed).unwrap()
        );
        assert!(block(&id, "T", "not an id", Vec::new()).is_err());
        assert_eq!(payload('x', 0), json!(""));
    }

    #[test]
    fn an_insert_is_revision_one_of_its_block() {
        let id = block_id("c1").unwrap();
        let b = block(&id, "T", "c", [("v", payload('x', 200))]).unwrap();
        let trx = new_trx_id().unwrap();
        let t = Txn::insert(trx.clone(), b.clone());
        assert_eq!((&t.pend.trx_id, &t.commit.trx_id), (&trx, &trx));
        assert_eq!((t.pend.rev, t.commit.rev), (Some(1), 1));
        assert_eq!(t.pend.policy, PendPolicy::Fail);
        assert_eq!(t.commit.block_ids, vec![id.clone()]);
        assert!(t.commit.header_id.is_none() && t.commit.tail_id.is_none());
        let inserted: BTreeMap<BlockId, Block> = [(id.clone(), b)].into();
        assert_eq!(t.pend.transforms.inserts, Some(inserted));
        assert!(t.pend.transforms.updates.is_none() && t.pend.transforms.deletes.is_none());
        assert_eq!(
            t.blocks(),
            TrxBlocks {
                trx_id: trx,
                block_ids: vec![id]
            }
        );
        assert!(t.one_round().check().is_ok());
    }

    #[test]
    fn an_update_sets_one_field_at_its_revision() {
        let id = block_id("bench7-3").unwrap();
        let t = Txn::new(
            new_trx_id().unwrap(),
            id.clone(),
            5,
            set_field(&id, "n", json!(42)),
        );
        assert_eq!((t.pend.rev, t.commit.rev), (Some(5), 5));
        let updates = t.pend.transforms.updates.clone().unwrap();
        let op = BlockOperation {
            entity: "n".into(),
            index: 0,
            delete_count: 0,
            inserted: json!(42),
        };
        let expected: BTreeMap<BlockId, Vec<BlockOperation>> = [(id.clone(), vec![op])].into();
        assert_eq!(updates, expected);
        assert!(t.pend.transforms.inserts.is_none());
        assert_eq!(t.commit.block_ids, vec![id]);
        assert!(t.one_round().check().is_ok());
    }

    #[test]
    fn a_read_is_of_the_one_block() {
        let id = block_id("bench7-3").unwrap();
        let g = gets(id.clone());
        assert_eq!(g.block_ids, vec![id]);
        assert!(g.context.is_none() && g.consistency.is_none());
    }

    #[test]
    fn lanes_work_on_their_own_blocks() {
        let of = |lane| {
            (0..8)
                .map(|k| lane_block(lane, 4, k, 10))
                .collect::<BTreeSet<u64>>()
        };
        assert_eq!(of(0), BTreeSet::from([0, 4]));
        assert_eq!(of(3), BTreeSet::from([3, 7]));
        assert!((0..4).all(|a| (0..4).all(|b| a == b || of(a).is_disjoint(&of(b)))));
        assert_eq!(lane_block(0, 64, 5, 1000), 320);
        // Fewer blocks than lanes: lanes share, every pick is a block.
        assert_eq!(lane_block(3, 4, 0, 3), 0);
        assert!((0..4).all(|lane| (0..9).all(|k| lane_block(lane, 4, k, 3) < 3)));
    }
}
