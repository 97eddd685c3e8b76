//! Every fuzz target's committed seeds and saved inputs, replayed through the
//! same checks libFuzzer runs (`fuzz/src`), by an ordinary `cargo test` on
//! stable: `fuzz/seeds/<target>/`, and when present the corpus libFuzzer grew
//! (`fuzz/corpus/<target>/`) and the inputs it saved as failures
//! (`fuzz/artifacts/<target>/`). `scripts/fuzz.sh` does the fuzzing itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../fuzz/src/lib.rs"]
#[allow(unreachable_pub, dead_code)]
mod fuzz;

use std::path::PathBuf;

use optimystic_actors::net::Encoding;

type Check = fn(&[u8]);

fn targets() -> Vec<(&'static str, Check)> {
    vec![
        ("frame", fuzz::frame::run),
        ("request_json", |d| fuzz::check_request(Encoding::Json, d)),
        ("request_msgpack", |d| {
            fuzz::check_request(Encoding::MsgPack, d)
        }),
        ("transform", fuzz::transform::run),
        ("cluster_record", fuzz::cluster_record::run),
        ("storage_meta", fuzz::storage_meta::run),
    ]
}

/// The files of `fuzz/<dir>/<target>/`, if that folder exists.
fn inputs(dir: &str, target: &str) -> Vec<PathBuf> {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(dir)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&folder) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_none_or(|x| x != "py"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_seed_and_saved_input_passes_its_targets_checks() {
    let mut failures = Vec::new();
    for (target, check) in targets() {
        let seeds = inputs("seeds", target);
        assert!(!seeds.is_empty(), "{target} has no committed seed");
        let all = seeds
            .into_iter()
            .chain(inputs("corpus", target))
            .chain(inputs("artifacts", target));
        for file in all {
            let data = std::fs::read(&file).unwrap();
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "inputs failing their target: {failures:?}"
    );
}

/// Every target of `fuzz/Cargo.toml` is replayed here (a new target cannot be
/// left out).
#[test]
fn every_fuzz_target_is_replayed() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/Cargo.toml")).unwrap();
    let declared: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "optimystic-fuzz")
        .collect();
    let replayed: Vec<&str> = targets().into_iter().map(|(t, _)| t).collect();
    let mut d = declared.clone();
    d.sort_unstable();
    let mut r = replayed.clone();
    r.sort_unstable();
    assert_eq!(d, r);
}
