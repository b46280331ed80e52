#!/usr/bin/env bash
# Runs the whole test suite N times (default 5), building once, and prints
# every test that failed at least once with its failure count.
#
#   ./scripts/flaky.sh 5            # five runs of ./scripts/test.sh
#   ./scripts/flaky.sh 3 -- --test-threads=1
#
# Exit status: 0 when every run was green. Logs stay in a directory under
# $CARGO_TARGET_DIR/flaky/ (printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/umbra-target}"
runs="${1:-5}"
shift || true
case "$runs" in ''|*[!0-9]*) echo "usage: $0 [N] [cargo test arguments]" >&2; exit 2 ;; esac
dir="$CARGO_TARGET_DIR/flaky/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$dir"

echo "flaky: building the test binaries once"
build_start=$(date +%s)
cargo test --workspace --locked --no-run "$@" 2>&1 | tail -n 3
echo "flaky: build $(( $(date +%s) - build_start )) s"

green=0
for i in $(seq 1 "$runs"); do
  start=$(date +%s)
  rc=0
  UMBRA_TEST_LOG="$dir/run-$i.log" ./scripts/test.sh "$@" > "$dir/run-$i.out" 2>&1 || rc=$?
  awk -f scripts/lib/test-summary.awk "$dir/run-$i.log" > "$dir/run-$i.summary"
  secs=$(( $(date +%s) - start ))
  if [ "$rc" -eq 0 ]; then green=$((green + 1)); verdict=green; else verdict="RED (exit $rc)"; fi
  echo "flaky: run $i/$runs: $verdict in ${secs} s — $(head -n 1 "$dir/run-$i.summary")"
done

echo
echo "flaky: $green of $runs runs green"
fails=$(cat "$dir"/run-*.summary | grep -E '^(FAILED|CRASHED) ' | sort | uniq -c | sort -rn || true)
if [ -n "$fails" ]; then
  echo "flaky: tests that failed at least once (count, test):"
  echo "$fails"
else
  echo "flaky: no test failed"
fi
echo "flaky: logs in $dir"
[ "$green" -eq "$runs" ]
