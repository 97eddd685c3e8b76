//! Judging the copies of one block that its members hold against what the
//! workload did to it — pure, so it can be shown failing on broken histories.
//!
//! The workload (`faults::Workload`) inserts each block as `{block}-insert` at
//! revision 1 with empty `items`, then prepends one unique value `v` per write as
//! transaction `{block}-w{v}` at the revision it names. A member's copy, read
//! straight from its storage (the block protocol's archive: no catch-up, no
//! repair), must be exactly that history: every revision from 1 to the latest,
//! each one write of the workload applied whole and once, the `items` of every
//! revision the values of revisions 2..=it newest first, every acknowledged write
//! at its revision with its value, the latest revision the last acknowledged one,
//! and nothing pending. Every member holds the same history.

use std::collections::BTreeMap;

use optimystic_actors::model::{Rev, Transform};
use optimystic_actors::storage::BlockArchive;
use serde_json::Value;

use super::{append, bid, insert};

/// The transaction of the workload's write of `value` to `block`.
pub fn trx_of(block: &str, value: i64) -> String {
    format!("{block}-w{value}")
}

/// The transaction that inserts `block`.
pub fn insert_trx(block: &str) -> String {
    format!("{block}-insert")
}

/// What the workload did to one block.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// Acknowledged appends, by revision: the value.
    pub acked: BTreeMap<Rev, i64>,
    /// Appends that were not acknowledged (each may or may not have landed, whole,
    /// at the revision it named): value → revision.
    pub unacked: BTreeMap<i64, Rev>,
}

/// Why a block's copies do not match what the workload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A member holds no copy at all.
    Missing { member: String },
    /// A member's copy does not start at revision 1 or skips revisions.
    Hole { member: String, detail: String },
    /// A member still holds pending transactions (the block stays held).
    Held {
        member: String,
        pending: Vec<String>,
    },
    /// Two members hold different histories.
    Diverged {
        member: String,
        other: String,
        rev: Rev,
    },
    /// A revision is not one whole write of the workload.
    Foreign { rev: Rev, detail: String },
    /// A revision's `items` are not the history up to it.
    Content {
        rev: Rev,
        want: Vec<i64>,
        got: Value,
    },
    /// An acknowledged write is not at its revision.
    Lost { rev: Rev, value: i64, found: String },
    /// The latest revision is not the last acknowledged one.
    Latest { want: Option<Rev>, got: Rev },
}

/// Judges `copies` — (member, its archive from revision 1, `None` if it holds
/// none) — of `block` against `expected`. Every copy is judged on its own, then
/// against the first.
pub fn judge(
    block: &str,
    expected: &Expected,
    copies: &[(String, Option<BlockArchive>)],
) -> Result<(), Violation> {
    for (member, copy) in copies {
        let Some(a) = copy else {
            return Err(Violation::Missing {
                member: member.clone(),
            });
        };
        judge_one(block, expected, member, a)?;
    }
    let Some((first, Some(a))) = copies.first() else {
        return Ok(());
    };
    for (member, copy) in &copies[1..] {
        let Some(b) = copy else { continue };
        let longest = a.revisions.len().max(b.revisions.len());
        for k in 0..longest {
            let (x, y) = (a.revisions.get(k), b.revisions.get(k));
            let same = match (x, y) {
                (Some(x), Some(y)) => x.trx_rev == y.trx_rev && x.transform == y.transform,
                _ => false,
            };
            if !same {
                return Err(Violation::Diverged {
                    member: member.clone(),
                    other: first.clone(),
                    rev: k as Rev + 1,
                });
            }
        }
    }
    Ok(())
}

/// One member's copy: whole, the workload's writes only, content exact.
fn judge_one(block: &str, e: &Expected, member: &str, a: &BlockArchive) -> Result<(), Violation> {
    if !a.pending.is_empty() {
        return Err(Violation::Held {
            member: member.to_string(),
            pending: a.pending.iter().map(|(t, _)| t.to_string()).collect(),
        });
    }
    let revs: Vec<Rev> = a.revisions.iter().map(|r| r.trx_rev.rev).collect();
    let whole: Vec<Rev> = (1..=revs.len() as Rev).collect();
    if a.range.start != 1 || revs != whole {
        return Err(Violation::Hole {
            member: member.to_string(),
            detail: format!("range {:?}, revisions {revs:?}", a.range),
        });
    }
    let id = bid(block);
    // Newest first, as the appends prepend.
    let mut items: Vec<i64> = Vec::new();
    let mut landed: BTreeMap<Rev, i64> = BTreeMap::new();
    for r in &a.revisions {
        let rev = r.trx_rev.rev;
        let trx = r.trx_rev.trx_id.as_str();
        let foreign = |detail: String| Violation::Foreign { rev, detail };
        let want: Transform = if rev == 1 {
            if trx != insert_trx(block) {
                return Err(foreign(format!("transaction {trx} is not the insert")));
            }
            insert(block).for_block(&id)
        } else {
            let value = trx
                .strip_prefix(&format!("{block}-w"))
                .and_then(|v| v.parse::<i64>().ok())
                .ok_or_else(|| foreign(format!("transaction {trx} is not the workload's")))?;
            let named = e.acked.get(&rev) == Some(&value) || e.unacked.get(&value) == Some(&rev);
            if !named {
                return Err(foreign(format!(
                    "{trx} was never written at revision {rev}"
                )));
            }
            items.insert(0, value);
            landed.insert(rev, value);
            append(block, value).for_block(&id)
        };
        if r.transform != want {
            return Err(foreign(format!(
                "{trx}'s transform is {:?}, the write was {want:?}",
                r.transform
            )));
        }
        let got = r
            .block
            .as_ref()
            .and_then(|b| b.fields.get("items"))
            .cloned()
            .unwrap_or(Value::Null);
        if got != Value::from(items.clone()) {
            return Err(Violation::Content {
                rev,
                want: items.clone(),
                got,
            });
        }
    }
    for (rev, value) in &e.acked {
        if landed.get(rev) != Some(value) {
            return Err(Violation::Lost {
                rev: *rev,
                value: *value,
                found: format!("{:?} on {member}", landed.get(rev)),
            });
        }
    }
    let latest = *revs.last().unwrap_or(&0);
    let last_ack = e.acked.keys().next_back().copied();
    if last_ack.is_some_and(|r| r != latest) {
        return Err(Violation::Latest {
            want: last_ack,
            got: latest,
        });
    }
    Ok(())
}
