//! What the frames mean: repo requests and replies in JSON or MessagePack, the
//! error reply `{"error":{"code","message"}}`, and the block-transfer messages.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::protocol::Encoding;
use crate::model::{
    BlockId, ErrorCode, Failure, OpResult, RepoError, RepoMessage, RepoOperation, Rev,
};

pub use crate::model::codes;
pub use crate::model::{ConfigsReply, StoreReply};

/// `{"error":{"code","message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// The error.
    pub error: ErrorBody,
}

/// Body of an [`ErrorReply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code (see [`codes`]).
    pub code: String,
    /// Human-readable detail.
    pub message: String,
    /// With `wrong_cluster`: the configurations the member holds of the regions
    /// concerned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub view: Vec<crate::model::RegionView>,
}

impl ErrorReply {
    /// An error reply.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            error: ErrorBody {
                code: code.to_string(),
                message: message.into(),
                view: Vec::new(),
            },
        }
    }

    /// The error as a typed failure.
    pub fn into_failure(self) -> Failure {
        Failure {
            code: ErrorCode::parse(&self.error.code),
            message: self.error.message,
            view: self.error.view,
        }
    }
}

impl From<&Failure> for ErrorReply {
    fn from(f: &Failure) -> Self {
        let mut e = Self::new(f.code.as_str(), f.message.clone());
        e.error.view = f.view.clone();
        e
    }
}

impl From<RepoError> for ErrorReply {
    fn from(e: RepoError) -> Self {
        Self::from(&e.to_failure())
    }
}

/// A request on the cluster protocol: `{"operation":"update"|"query","record":…}`,
/// `{"operation":"coordinate","message":…}` (a write forwarded to a block's
/// coordinator), `{"operation":"configs","regions":[…]}` (what configurations the
/// peer holds), `{"operation":"store","archives":[…]}` (blocks handed to a peer
/// about to join their regions' configurations), `heads`/`digests` over regions,
/// or `{"operation":"blockHeads","blocks":[…]}` (the latest revisions of named
/// blocks: a comparison of many blocks with one peer in one round trip).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterRequest {
    /// `update`, `query`, `coordinate`, `configs`, `store`, `heads`, `digests`
    /// or `blockHeads`.
    pub operation: String,
    /// The record (`update`, `query`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<crate::model::ClusterRecord>,
    /// The repo message to coordinate (`coordinate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<RepoMessage>,
    /// The regions asked about (`configs`, `heads`, `digests`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<Vec<crate::model::Region>>,
    /// The blocks to store (`store`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archives: Option<Vec<crate::model::BlockArchive>>,
    /// `store`: the archives' pending transactions are the whole set the
    /// receiver must hold of those blocks (a hand-over inside a change).
    #[serde(
        rename = "pendingExact",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub pending_exact: bool,
    /// `heads`: the page after this block (the last one of the previous page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<crate::model::BlockId>,
    /// The blocks asked about (`blockHeads`, at most [`HEADS_PER_REPLY`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<Vec<BlockId>>,
}

impl ClusterRequest {
    /// A request of `operation` with none of the optional parts.
    pub fn new(operation: &str) -> Self {
        Self {
            operation: operation.to_string(),
            record: None,
            message: None,
            regions: None,
            archives: None,
            pending_exact: false,
            after: None,
            blocks: None,
        }
    }
}

/// The answer to `heads`: the blocks the peer stores in the regions asked
/// about, with their latest revisions — a page of at most
/// [`HEADS_PER_REPLY`], after the request's `after`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadsReply {
    /// The blocks, sorted by id.
    pub heads: Vec<crate::model::BlockHead>,
    /// More follow: ask again with `after` the last of these.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub more: bool,
}

/// The answer to `digests`: one digest per region asked about in which the
/// peer holds a block with a committed revision (a region left out holds none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestsReply {
    /// By region, in order.
    pub digests: Vec<crate::model::RegionDigest>,
}

/// Most heads in one `heads` reply (well inside a frame even with the longest
/// ids).
pub const HEADS_PER_REPLY: usize = 2048;

/// Ask a peer for a block's archive (`{prefix}/block/1.0.0`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockRequest {
    /// The block.
    pub block_id: BlockId,
    /// First revision wanted; absent: just the latest revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<Rev>,
}

/// Ask a peer for several blocks' archives in one request
/// (`{"blocks":[BlockRequest, …]}` on `{prefix}/block/1.0.0`). The reply is a
/// JSON array, one archive (or `null`) per block asked, in order, which may stop
/// early: before the archive that would take it past [`ARCHIVES_REPLY_BYTES`]
/// (never before the first); the rest are asked again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlocksRequest {
    /// The blocks, 1 to [`BLOCKS_PER_REQUEST`].
    pub blocks: Vec<BlockRequest>,
}

/// Most blocks one [`BlocksRequest`] asks for.
pub const BLOCKS_PER_REQUEST: usize = 256;

/// Bytes of archives past which a reply to a [`BlocksRequest`] stops (half
/// the block frame, so the archive that crosses it still fits).
pub const ARCHIVES_REPLY_BYTES: usize = 4 << 20;

/// A request on the block protocol: one block, or several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockAsk {
    /// `{"blockId","rev"?}`: the reply is one archive or `null`.
    One(BlockRequest),
    /// `{"blocks":[…]}`: the reply is an array of them.
    Many(Vec<BlockRequest>),
}

impl BlockAsk {
    /// Decodes a block-protocol request (JSON).
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if v.get("blocks").is_some() {
            let many: BlocksRequest = serde_json::from_value(v).map_err(|e| e.to_string())?;
            if many.blocks.is_empty() || many.blocks.len() > BLOCKS_PER_REQUEST {
                return Err(format!(
                    "a block request asks for 1 to {BLOCKS_PER_REQUEST} blocks, not {}",
                    many.blocks.len()
                ));
            }
            return Ok(Self::Many(many.blocks));
        }
        serde_json::from_value(v).map(Self::One).map_err(|e| {
            format!("{e} (a block request is {{\"blockId\",\"rev\"?}} or {{\"blocks\":[…]}})")
        })
    }
}

/// Encodes a message.
pub fn encode<T: Serialize>(enc: Encoding, value: &T) -> Result<Vec<u8>, String> {
    match enc {
        Encoding::Json => serde_json::to_vec(value).map_err(|e| e.to_string()),
        Encoding::MsgPack => rmp_serde::to_vec_named(value).map_err(|e| e.to_string()),
    }
}

/// Decodes a message.
pub fn decode<T: DeserializeOwned>(enc: Encoding, bytes: &[u8]) -> Result<T, String> {
    match enc {
        Encoding::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        Encoding::MsgPack => rmp_serde::from_slice(bytes).map_err(|e| e.to_string()),
    }
}

/// Decodes a reply that may be an [`ErrorReply`] instead of `T`.
pub fn decode_reply<T: DeserializeOwned>(
    enc: Encoding,
    bytes: &[u8],
) -> Result<Result<T, ErrorReply>, String> {
    match decode::<T>(enc, bytes) {
        Ok(v) => Ok(Ok(v)),
        Err(e) => match decode::<ErrorReply>(enc, bytes) {
            Ok(err) => Ok(Err(err)),
            Err(_) => Err(e),
        },
    }
}

/// Decodes the reply to `op` (its result type, or an error reply).
pub fn decode_op_result(
    enc: Encoding,
    op: &RepoOperation,
    bytes: &[u8],
) -> Result<Result<OpResult, ErrorReply>, String> {
    fn typed<T: DeserializeOwned>(
        enc: Encoding,
        bytes: &[u8],
        wrap: impl FnOnce(T) -> OpResult,
    ) -> Result<Result<OpResult, ErrorReply>, String> {
        Ok(decode_reply::<T>(enc, bytes)?.map(wrap))
    }
    match op {
        RepoOperation::Get(_) => typed(enc, bytes, OpResult::Get),
        RepoOperation::Pend(_) => typed(enc, bytes, OpResult::Pend),
        RepoOperation::Commit(_) => typed(enc, bytes, OpResult::Commit),
        RepoOperation::PendCommit(_) => typed(enc, bytes, OpResult::PendCommit),
        RepoOperation::Cancel(_) => Ok(decode_reply::<crate::model::CancelReply>(enc, bytes)?
            .and_then(|r| {
                r.done()
                    .map(|()| OpResult::Cancel)
                    .map_err(|reason| ErrorReply::new(codes::CONFLICT, reason))
            })),
    }
}

const OPERATIONS: [&str; 5] = ["get", "pend", "cancel", "commit", "pendCommit"];

/// Decodes a repo request into its single operation, or the error reply to send.
pub fn decode_request(
    enc: Encoding,
    bytes: &[u8],
) -> Result<(RepoOperation, Option<u64>), ErrorReply> {
    let msg: RepoMessage = decode(enc, bytes).map_err(|e| {
        // Tell an unknown operation apart from a malformed message.
        let unknown = decode::<serde_json::Value>(enc, bytes).ok().and_then(|v| {
            let ops = v.get("operations")?.as_array()?.clone();
            ops.iter()
                .filter_map(|op| op.as_object()?.keys().next().cloned())
                .find(|k| !OPERATIONS.contains(&k.as_str()))
        });
        match unknown {
            Some(op) => ErrorReply::new(
                codes::UNKNOWN_OPERATION,
                format!("unknown operation {op:?}; expected one of {OPERATIONS:?}"),
            ),
            None => ErrorReply::new(codes::BAD_REQUEST, e),
        }
    })?;
    let expiration = msg.expiration;
    let mut ops = msg.operations.into_iter();
    match (ops.next(), ops.next()) {
        (Some(op), None) => Ok((op, expiration)),
        (None, _) => Err(ErrorReply::new(
            codes::BAD_REQUEST,
            "a repo message needs one operation",
        )),
        (Some(_), Some(_)) => Err(ErrorReply::new(
            codes::BAD_REQUEST,
            "a repo message carries exactly one operation",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_decoding_errors_are_typed() {
        let enc = Encoding::Json;
        let ok = br#"{"operations":[{"get":{"blockIds":["a"]}}],"expiration":5}"#;
        assert!(matches!(
            decode_request(enc, ok),
            Ok((RepoOperation::Get(_), Some(5)))
        ));
        let code = |b: &[u8]| decode_request(enc, b).unwrap_err().error.code;
        assert_eq!(
            code(br#"{"operations":[{"drop":{}}]}"#),
            codes::UNKNOWN_OPERATION
        );
        assert_eq!(code(b"{nope"), codes::BAD_REQUEST);
        assert_eq!(code(br#"{"operations":[]}"#), codes::BAD_REQUEST);
        assert_eq!(
            code(br#"{"operations":[{"get":{"blockIds":["../x"]}}]}"#),
            codes::BAD_REQUEST
        );
        let two = br#"{"operations":[{"get":{"blockIds":["a"]}},{"get":{"blockIds":["b"]}}]}"#;
        assert_eq!(code(two), codes::BAD_REQUEST);
    }

    #[test]
    fn a_cancel_reply_in_the_refusal_shape_is_a_refusal() {
        let cancel: RepoOperation =
            serde_json::from_str(r#"{"cancel":{"trxRef":{"trxId":"t","blockIds":["b"]}}}"#)
                .unwrap();
        for enc in [Encoding::Json, Encoding::MsgPack] {
            let done = encode(enc, &serde_json::json!({})).unwrap();
            assert!(matches!(
                decode_op_result(enc, &cancel, &done),
                Ok(Ok(OpResult::Cancel))
            ));
            let refused = encode(
                enc,
                &serde_json::json!({"success": false, "reason": "held"}),
            )
            .unwrap();
            let e = decode_op_result(enc, &cancel, &refused)
                .unwrap()
                .unwrap_err();
            assert_eq!(
                (e.error.code.as_str(), e.error.message.as_str()),
                (codes::CONFLICT, "held")
            );
            // An error frame is the error, never a cancel done.
            let frame = encode(enc, &ErrorReply::new(codes::UNAVAILABLE, "no quorum")).unwrap();
            let e = decode_op_result(enc, &cancel, &frame).unwrap().unwrap_err();
            assert_eq!(e.error.code, codes::UNAVAILABLE);
        }
    }

    #[test]
    fn error_reply_shape() {
        let e = ErrorReply::new(codes::BUSY, "later");
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"error":{"code":"busy","message":"later"}}"#
        );
        let bytes = encode(Encoding::MsgPack, &e).unwrap();
        let back = decode_reply::<crate::model::CommitResult>(Encoding::MsgPack, &bytes).unwrap();
        assert_eq!(back, Err(e));
    }
}
