#!/usr/bin/env bash
# The soak: five node processes, a mixed workload, a fault on a random node every
# ~8 s (SIGKILL + restart, SIGSTOP, isolation past the expiry, full disk, a network
# partition with connections closed past the dead-peer timeout, a node joining, a
# node retired with `peers remove` and stopped for good), then the
# checker. Usage: scripts/soak.sh [SECONDS] [NODES]   (defaults 600 and 5)
set -euo pipefail
cd "$(dirname "$0")/.."
export SOAK_SECONDS="${1:-600}" SOAK_NODES="${2:-5}"
cargo test --test faults soak -- --ignored --nocapture 2>&1 | tee /tmp/optimystic-soak.log | grep -E '^soak:|panicked|test result'
