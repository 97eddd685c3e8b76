//! apply_transform / check_transform on a block and a transform decoded from the
//! input: `block JSON \0 transform JSON` (no \0: no prior block, the whole input
//! is the transform). Never panics; check agrees with apply; the prior block is
//! never changed; a result keeps the header it came from and survives a JSON
//! round trip; applying twice gives the same verdict.

use optimystic_actors::model::{apply_transform, check_transform, Block, BlockId, Transform};

/// One input (the fuzz target and the corpus replay in `tests/fuzz_corpus.rs` both call it).
pub fn run(data: &[u8]) {
    let (block_part, transform_part) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let prior: Option<Block> = serde_json::from_slice(block_part).ok();
    let Ok(t) = serde_json::from_slice::<Transform>(transform_part) else {
        return;
    };

    let fallback = BlockId::new("b").expect("a valid id");
    let id = prior
        .as_ref()
        .map(|b| b.header.id.clone())
        .or_else(|| t.insert.as_ref().map(|b| b.header.id.clone()))
        .unwrap_or(fallback);
    let before = prior.clone();

    for prior in [prior.as_ref(), None] {
        let r = apply_transform(&id, prior, &t);
        assert_eq!(
            before.as_ref().filter(|_| prior.is_some()),
            prior,
            "prior block changed"
        );
        assert_eq!(
            check_transform(&id, prior, &t).is_ok(),
            r.is_ok(),
            "check disagrees with apply"
        );
        assert_eq!(
            apply_transform(&id, prior, &t),
            r,
            "apply is not deterministic"
        );
        match &r {
            Ok(Some(b)) => {
                assert!(!t.delete.unwrap_or(false), "deleted block returned");
                let header = t.insert.as_ref().or(prior).map(|b| &b.header);
                assert_eq!(Some(&b.header), header, "header changed");
                assert!(
                    !b.fields.contains_key("header"),
                    "a field shadows the header"
                );
                let json = serde_json::to_vec(b).expect("a block encodes");
                let back: Block = serde_json::from_slice(&json).expect("an applied block decodes");
                assert_eq!(&back, b, "applied block changes through JSON");
            }
            Ok(None) => assert!(
                t.delete.unwrap_or(false) || (prior.is_none() && t.insert.is_none()),
                "block vanished without a delete"
            ),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}
