#!/usr/bin/env bash
# Repair measured as separate processes (docs/BENCHMARKS.md, "Repair"): three node processes on loopback (cluster
# size 3, embedded storage, anti-entropy every 500 ms, `--repair-rate RATE`). `optimystic bench` inserts blocks for
# SECS through all three; node c is stopped (SIGTERM) and inserts go on for SECS through a and b; then the script
# waits until the coordinators have stopped re-sending their decisions to c (70 s: 60 s past each record's
# deadline, with a margin; else the re-sends, not anti-entropy, would bring c the writes), starts c again on its
# data directory, and times until c's `/status` blockCount equals a's: every block it missed taken back by
# anti-entropy, with no client read. Prints one JSON line.
#
#   cargo build --release && scripts/repair-processes.sh target/release/optimystic [SECS] [RATE]
#
# SECS defaults to 10, RATE to 100000 (blocks per second; the node default is 200); STRAGGLERS_DONE (70) is the
# wait before the restart, in seconds.
set -eu
BIN=$1; SECS=${2:-10}; RATE=${3:-100000}
work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start() { # name p2p-port http-port [bootstrap]: starts a node, sets ADDR and PID
  "$BIN" node --data-dir "$work/$1" --listen "/ip4/127.0.0.1/tcp/$2" --http "127.0.0.1:$3" ${4:+--bootstrap "$4"} \
    --cluster-size 3 --anti-entropy-interval-ms 500 --repair-rate "$RATE" >>"$work/$1.log" 2>&1 &
  PID=$!; pids+=("$PID")
  ADDR=
  for _ in $(seq 150); do
    ADDR=$(grep -o "listening on /ip4/127.0.0.1/tcp/$2/[^ ]*" "$work/$1.log" | tail -1 | cut -d' ' -f3) || true
    [ -n "$ADDR" ] && return 0
    sleep 0.2
  done
  echo "node $1 did not start: $(tail -5 "$work/$1.log")" >&2; exit 1
}
count() { # http-port: the node's blockCount, or -1
  python3 -c 'import json,sys,urllib.request
try: print(json.load(urllib.request.urlopen("http://127.0.0.1:%s/status" % sys.argv[1], timeout=5))["blockCount"])
except Exception: print(-1)' "$1"
}
bench() { "$BIN" bench "$@" --clients 64 --workload insert --one-round --duration "$SECS" --json 2>/dev/null | tail -1; }
ops() { python3 -c 'import json,sys; print(json.loads(sys.argv[1] or "{}").get("operations", 0))' "$1"; }

PA=$(port); PB=$(port); PC=$(port); HA=$(port); HB=$(port); HC=$(port)
start a "$PA" "$HA"; A=$ADDR
start b "$PB" "$HB" "$A"; B=$ADDR
start c "$PC" "$HC" "$A"; C=$ADDR; C_PID=$PID
sleep 3
first=$(ops "$(bench --peer "$A" --peer "$B" --peer "$C")")
kill -TERM "$C_PID"; wait "$C_PID" 2>/dev/null || true
missed=$(ops "$(bench --peer "$A" --peer "$B")")
# Past the coordinators' re-sends to c (STRAGGLER_WINDOW, 60 s past a record's deadline).
sleep "${STRAGGLERS_DONE:-70}"
want=$(count "$HA")
t0=$(date +%s.%N)
start c "$PC" "$HC" "$A"
deadline=$(( $(date +%s) + 600 ))
while [ "$(count "$HC")" != "$want" ]; do
  [ "$(date +%s)" -lt "$deadline" ] || { echo "node c did not reach $want blocks in 600 s (has $(count "$HC"))" >&2; exit 1; }
  sleep 0.1
done
t1=$(date +%s.%N)
python3 -c 'import json,sys
first,missed,want,t0,t1,rate=int(sys.argv[1]),int(sys.argv[2]),int(sys.argv[3]),float(sys.argv[4]),float(sys.argv[5]),int(sys.argv[6])
s=t1-t0
print(json.dumps({"blocksBefore": first, "blocksMissed": missed, "blocksHeld": want, "repairRate": rate,
  "secondsFromRestart": round(s,2), "blocksPerSecond": round(missed/s) if s > 0 else None}))' \
  "$first" "$missed" "$want" "$t0" "$t1" "$RATE"
