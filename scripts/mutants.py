#!/usr/bin/env python3
"""The mutation pass of docs/RELIABILITY.md ("Which test catches a broken
rule"): breaks one safety rule at a time in the source, builds, runs the tests
that should notice, restores the source, and prints which tests failed.

    python3 scripts/mutants.py                 # every mutation (~4 min each)
    python3 scripts/mutants.py signature ...   # some of them

Never run it beside another build; it edits files under actors/src and puts
them back even when interrupted by an exception (not by SIGKILL: then
`git checkout actors/src`).
"""
import json
import os
import re
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

MUTATIONS = {
    "signature": ("actors/src/cluster/votes.rs",
                  "if !key.verify(&bytes, &raw) {",
                  "if false && !key.verify(&bytes, &raw) {"),
    "message_hash": ("actors/src/cluster/votes.rs",
                     "if !checks.hash_known && message_hash(&r.message) != r.message_hash {",
                     "if false && !checks.hash_known && message_hash(&r.message) != r.message_hash {"),
    "lifetime": ("actors/src/cluster/votes.rs",
                 "if deadline.saturating_sub(checks.now_ms) > checks.max_lifetime_ms {",
                 "if false && deadline.saturating_sub(checks.now_ms) > checks.max_lifetime_ms {"),
    "peer_set": ("actors/src/membership/table.rs",
                 "    ) -> Result<(), Vec<Mismatch>> {\n        if !epochs.keys().eq(regions.iter()) {",
                 "    ) -> Result<(), Vec<Mismatch>> {\n        if regions.len() < usize::MAX {\n"
                 "            return Ok(());\n        }\n        if !epochs.keys().eq(regions.iter()) {"),
    "reservation": ("actors/src/cluster/member/reservations.rs",
                    "if let Some(holder) = self.conflict(claim, hash) {",
                    "if let Some(holder) = self.conflict(claim, hash).filter(|_| false) {"),
    "ack_at_one": ("actors/src/coordinator/agree/commits.rs",
                   ".find(|(_, votes)| quorum.met_by(&votes.keys().map(String::as_str).collect()))",
                   ".find(|(_, votes)| !votes.is_empty() || quorum.met_by(&votes.keys().map(String::as_str).collect()))"),
    "no_fsync": ("actors/src/storage/embedded/writer.rs",
                 "        } else {\n            PersistMode::SyncData\n        };",
                 "        } else {\n            PersistMode::Buffer\n        };"),
    "no_fsync_file": ("actors/src/storage/file.rs",
                      "            f.sync_data()?;\n",
                      ""),
}

# (package, test target or None for the library's unit tests, name filters)
SUITES = [
    ("optimystic-actors", None, []),
    ("optimystic-actors", "members", []),
    ("optimystic-actors", "crash", []),
    ("optimystic", "consensus_safety", []),
    ("optimystic", "cluster", []),
    ("optimystic", "cluster_kill", []),
    ("optimystic", "power_loss", []),
    ("optimystic", "membership", ["a_peer_set_of_the_proposers_choosing_is_refused",
                                  "invented_voters_are_not_counted",
                                  "a_wrong_epoch_gets_the_members_view",
                                  "a_record_that_would_never_expire_is_refused"]),
]


def cargo(pkg, target, extra):
    cmd = ["cargo", "test", "-p", pkg] + (["--test", target] if target else ["--lib"])
    return cmd + extra


def main(names):
    os.chdir(ROOT)
    for name in names or list(MUTATIONS):
        path, old, new = MUTATIONS[name]
        src = open(path).read()
        if src.count(old) != 1:
            sys.exit(f"{name}: the code to break is not in {path} exactly once (did it move?)")
        open(path, "w").write(src.replace(old, new))
        try:
            caught = {}
            for pkg, target, filters in SUITES:
                build = subprocess.run(cargo(pkg, target, ["--no-run"]), capture_output=True, text=True)
                if build.returncode != 0:
                    caught[target or "lib"] = ["(does not build)"]
                    continue
                run = subprocess.run(cargo(pkg, target, ["--"] + filters), capture_output=True,
                                     text=True, timeout=1200)
                failed = re.findall(r"^test (\S+) \.\.\. FAILED", run.stdout, re.M)
                if run.returncode != 0 and not failed:
                    failed = [f"(exit {run.returncode})"]
                caught[target or f"{pkg} lib"] = failed
            print(name, json.dumps(caught), flush=True)
        finally:
            open(path, "w").write(src)


if __name__ == "__main__":
    main(sys.argv[1:])
