#!/usr/bin/env bash
# Cold start of `umbra up` to "ready" on the private Tor network, for one or
# more builds of umbra (docs/OPERATING.md §10 has the last numbers):
#
#   ./scripts/measure-startup.sh RUNS DIR...
#
# DIR holds an `umbra` binary (e.g. $CARGO_TARGET_DIR/release and .../debug).
# Every run is a fresh data directory (no Arti state: bootstrap, consensus,
# onion service), all on one test network, the builds taking turns. Prints
# one line per run and the median per build.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:?usage: measure-startup.sh RUNS DIR...}
shift
(($# > 0)) || { echo "usage: measure-startup.sh RUNS DIR..." >&2; exit 2; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/umbra-target}"
testnet="${UMBRA_TESTNET_BIN:-$CARGO_TARGET_DIR/release/umbra-testnet}"
[[ -x $testnet ]] || cargo build --quiet --locked --release -p umbra-testnet
WORK="$(mktemp -d -t umbra-startup.XXXXXX)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
wait_for() {
    local file=$1 pattern=$2 limit=$3 waited=0
    until grep -q -- "$pattern" "$file" 2>/dev/null; do
        ((waited < limit * 100)) || { echo "error: no '$pattern' in $file after $limit s" >&2; tail "$file" >&2; exit 1; }
        sleep 0.01
        waited=$((waited + 1))
    done
}
"$testnet" --arti-config "$WORK/arti.toml" >"$WORK/testnet.out" 2>"$WORK/testnet.log" &
PIDS+=($!)
wait_for "$WORK/testnet.log" "Arti configuration written" 300
printf 'measure\n' >"$WORK/pw"
cat >"$WORK/config.toml" <<EOF
[network]
kind = "local"
local_network = "$WORK/arti.toml"
dangerously_trust_everyone = true
EOF
declare -A times
for ((i = 1; i <= runs; i++)); do
    for dir in "$@"; do
        d="$WORK/run-$i-$(basename "$dir")"
        mkdir -m 700 "$d"
        "$dir/umbra" init --name "measure$i" --data-dir "$d/data" --config "$WORK/config.toml" --passphrase-file "$WORK/pw" >/dev/null 2>"$d/init.log" || { echo "error: umbra init failed: $(cat "$d/init.log")" >&2; exit 1; }
        start=$(date +%s.%N)
        "$dir/umbra" up --json --data-dir "$d/data" --config "$WORK/config.toml" --passphrase-file "$WORK/pw" >"$d/up.out" 2>"$d/up.log" &
        pid=$!
        wait_for "$d/up.out" '"ready":true' 300
        t=$(echo "$(date +%s.%N) - $start" | bc)
        kill -TERM "$pid"
        wait "$pid" || true
        printf '%s run %d: %.2f s\n' "$dir" "$i" "$t"
        times[$dir]+="$t "
    done
done
for dir in "$@"; do
    echo "$dir: median $(tr ' ' '\n' <<<"${times[$dir]}" | grep . | sort -n | awk '{a[NR]=$1} END {printf "%.2f", (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}') s over $runs runs"
done
