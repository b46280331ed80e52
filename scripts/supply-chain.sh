#!/usr/bin/env bash
# Supply-chain check (CI runs it): every crate the binaries link against the
# RustSec advisory database, their licences, duplicate versions and sources,
# by the rules and recorded exceptions in deny.toml. Offline: the advisory
# database is a snapshot, by default ../shared/advisory-db (relative to the
# repository root), or UMBRA_ADVISORY_DB=DIR. cargo-deny is pinned and
# installed if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_DENY_VERSION=0.20.2
db="${UMBRA_ADVISORY_DB:-../shared/advisory-db}"
if [[ ! -d $db/crates ]]; then
    echo "error: no RustSec advisory database at $db (set UMBRA_ADVISORY_DB=DIR)" >&2
    exit 1
fi
if ! cargo deny --version 2>/dev/null | grep -qF "$CARGO_DENY_VERSION"; then
    echo "supply-chain: installing cargo-deny $CARGO_DENY_VERSION" >&2
    cargo install --locked --version "$CARGO_DENY_VERSION" cargo-deny
fi

tmp="$(mktemp -d -t umbra-supply-chain.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
# cargo-deny reads each database as a git clone in db-path, in a directory
# named after its URL (this name is the default RustSec URL's, for the pinned
# cargo-deny), and takes the database's date from HEAD: give it a throwaway
# clone of the snapshot, dated like the snapshot.
clone="$tmp/db/advisory-db-3157b0e258782691"
mkdir -p "$tmp/db"
cp -r "$db" "$clone"
chmod -R u+w "$clone"
date=$(grep -o '(20[0-9][0-9]-[0-9][0-9]-[0-9][0-9])' "$db/SNAPSHOT.md" 2>/dev/null | head -n1 | tr -d '()')
date="${date:-$(date -u +%F)}T00:00:00Z"
git -C "$clone" init -q
git -C "$clone" add -A
GIT_AUTHOR_DATE=$date GIT_COMMITTER_DATE=$date \
    git -C "$clone" -c user.name=snapshot -c user.email=snapshot@invalid commit -qm "RustSec snapshot"
sed "s|^# db-path and the offline mode come from scripts/supply-chain.sh.\$|db-path = \"$tmp/db\"|" deny.toml >"$tmp/deny.toml"
grep -q '^db-path' "$tmp/deny.toml" || { echo "error: deny.toml lost its db-path marker line" >&2; exit 1; }
echo "supply-chain: RustSec snapshot of ${date%T*} ($(find "$db/crates" -name '*.md' | wc -l) advisories)"
cargo deny --offline --locked --config "$tmp/deny.toml" check --show-stats
