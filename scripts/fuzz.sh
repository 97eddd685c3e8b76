#!/usr/bin/env bash
# Bounded fuzzing of the cargo-fuzz targets in fuzz/ (see fuzz/Cargo.toml).
#
#   bash scripts/fuzz.sh                  # every target
#   bash scripts/fuzz.sh request_json     # one (or several) targets
#
# Each target runs as one libFuzzer job until FUZZ_RUNS inputs or FUZZ_SECONDS
# seconds, whichever comes first, starting from its corpus (fuzz/corpus/<target>,
# kept between runs, git-ignored) plus the committed seeds (fuzz/seeds/<target>).
# Ends with one line per target:
#   target=<name> runs=<N> crashes=<M> seconds=<S>
# and exits non-zero when any target crashed, timed out or ran out of memory
# (the inputs are in fuzz/artifacts/<target>/; reproduce one with
# `cargo +nightly fuzz run -O -a -s none <target> <file>`, shrink it with
# `cargo +nightly fuzz tmin -O -a -s none <target> <file>`).
#
# Settings (environment):
#   FUZZ_RUNS=10000000   inputs per target
#   FUZZ_SECONDS=300     time cap per target
#   FUZZ_SANITIZER=none  none | address (address: ~2-3x slower; the engine has no unsafe code)
#   FUZZ_MAX_LEN=4096    largest input libFuzzer generates
#   FUZZ_TIMEOUT=10      seconds one input may take before it counts as a hang
#   FUZZ_RSS_MB=2048     memory cap per job
#   FUZZ_SEED=<n>        fixed libFuzzer seed (default: random)
#   FUZZ_NICE=10         niceness the whole run takes
# Needs the nightly toolchain; installs cargo-fuzz when missing.
set -euo pipefail

ALL_TARGETS=(frame request_json request_msgpack transform cluster_record storage_meta)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

if [[ -z ${FUZZ_NICED:-} ]]; then
    FUZZ_NICED=1 exec nice -n "${FUZZ_NICE:-10}" bash "$ROOT/scripts/fuzz.sh" "$@"
fi

RUNS=${FUZZ_RUNS:-10000000}
SECS=${FUZZ_SECONDS:-300}
SANITIZER=${FUZZ_SANITIZER:-none}
MAX_LEN=${FUZZ_MAX_LEN:-4096}
TIMEOUT=${FUZZ_TIMEOUT:-10}
RSS_MB=${FUZZ_RSS_MB:-2048}

dict_for() {
    case $1 in
        request_json | transform | cluster_record | storage_meta) echo "$ROOT/fuzz/dicts/json.dict" ;;
        request_msgpack) echo "$ROOT/fuzz/dicts/msgpack.dict" ;;
        *) ;;
    esac
}

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    targets=("${ALL_TARGETS[@]}")
fi
for t in "${targets[@]}"; do
    if [[ " ${ALL_TARGETS[*]} " != *" $t "* ]]; then
        echo "unknown target '$t'; targets: ${ALL_TARGETS[*]}" >&2
        exit 2
    fi
done

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "the nightly toolchain is needed: rustup toolchain install nightly --profile minimal" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

# -O: release profile; -a: debug assertions and overflow checks stay on.
BUILD_FLAGS=(-O -a -s "$SANITIZER")
if [[ ${#targets[@]} -eq ${#ALL_TARGETS[@]} ]]; then
    cargo +nightly fuzz build "${BUILD_FLAGS[@]}"
else
    for t in "${targets[@]}"; do
        cargo +nightly fuzz build "${BUILD_FLAGS[@]}" "$t"
    done
fi

LOGS=$ROOT/fuzz/artifacts/logs
mkdir -p "$LOGS"
summary=()
failed=0
for t in "${targets[@]}"; do
    corpus=$ROOT/fuzz/corpus/$t
    artifacts=$ROOT/fuzz/artifacts/$t
    log=$LOGS/$t.log
    mkdir -p "$corpus" "$artifacts"
    marker=$(mktemp)
    args=(-runs="$RUNS" -max_total_time="$SECS" -max_len="$MAX_LEN" -timeout="$TIMEOUT"
        -rss_limit_mb="$RSS_MB" -print_final_stats=1)
    dict=$(dict_for "$t")
    [[ -n $dict ]] && args+=(-dict="$dict")
    [[ -n ${FUZZ_SEED:-} ]] && args+=(-seed="$FUZZ_SEED")
    echo "fuzzing $t: up to $RUNS runs or ${SECS}s (log: $log)" >&2
    start=$SECONDS
    rc=0
    cargo +nightly fuzz run "${BUILD_FLAGS[@]}" "$t" "$corpus" "$ROOT/fuzz/seeds/$t" -- "${args[@]}" \
        >"$log" 2>&1 || rc=$?
    wall=$((SECONDS - start))

    done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1 || true)
    if [[ -n $done_line ]]; then
        runs=$(sed -E 's/^Done ([0-9]+) runs in ([0-9]+) second.*/\1/' <<<"$done_line")
        secs=$(sed -E 's/^Done ([0-9]+) runs in ([0-9]+) second.*/\2/' <<<"$done_line")
    else
        runs=$(grep -oE '^stat::number_of_executed_units: [0-9]+' "$log" | grep -oE '[0-9]+$' | tail -n 1 || true)
        [[ -z $runs ]] && runs=$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#' || true)
        runs=${runs:-0}
        secs=$wall
    fi
    crashes=$(find "$artifacts" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' \
        -o -name 'oom-*' -o -name 'leak-*' \) -newer "$marker" | wc -l)
    rm -f "$marker"
    if [[ $rc -ne 0 && $crashes -eq 0 ]]; then
        echo "fuzzing $t failed (exit $rc) without leaving an input; see $log:" >&2
        tail -n 20 "$log" >&2
        failed=1
    fi
    if [[ $crashes -ne 0 ]]; then
        echo "$t: $crashes finding(s) in $artifacts; see $log" >&2
        failed=1
    fi
    summary+=("target=$t runs=$runs crashes=$crashes seconds=$secs")
done

printf '%s\n' "${summary[@]}"
exit "$failed"
