#!/usr/bin/env bash
# The offline demo (the README's first command runs it): a private Tor
# network on 127.0.0.1, a Handshaker onion service and two users, alice and
# bob, each running `umbra up` with an embedded Arti onion service. They
# register, find each other, exchange a PGP-wrapped connection request and
# chat directly between their onion addresses, using the real `umbra` CLI.
# Everything lives in a temporary directory that is removed at the end.
#
#   ./scripts/demo.sh            the networked demo (needs `tor`, see install-deps.sh)
#   ./scripts/demo.sh --crypto   only the cryptographic flow, in one process (`umbra demo`)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/umbra-target}"
# The optimized binaries (what setup.sh builds and people run); a file of
# tens of MiB moves several times faster than with a debug build.
cargo build --quiet --locked --release --workspace --bins
BIN="$CARGO_TARGET_DIR/release"

if [[ "${1:-}" == "--crypto" ]]; then
    exec "$BIN/umbra" demo
fi
command -v tor >/dev/null || { echo "error: tor is not installed (run ./scripts/install-deps.sh)" >&2; exit 1; }

WORK="$(mktemp -d -t umbra-demo.XXXXXX)"
PIDS=()
cleanup() {
    local status=$?
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
    if [[ $status -ne 0 ]]; then echo "demo failed (exit $status)" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -t 1 && -z "${NO_COLOR:-}" ]]; then
    BOLD=$'\033[1m' CYAN=$'\033[36m' PLAIN=$'\033[0m'
else
    BOLD='' CYAN='' PLAIN=''
fi
step() { printf '\n%s== %s%s\n' "$BOLD" "$*" "$PLAIN"; }
say() { printf '   %s\n' "$*"; }
# wait_for FILE PATTERN SECONDS WHAT: bounded wait for a line in a log.
wait_for() {
    local file=$1 pattern=$2 limit=$3 what=$4 waited=0
    until grep -q -- "$pattern" "$file" 2>/dev/null; do
        if (( waited >= limit * 10 )); then
            echo "error: $what did not happen within $limit s; log $file:" >&2
            tail -n 20 "$file" >&2 || true
            exit 1
        fi
        sleep 0.1; waited=$((waited + 1))
    done
}

step "1. A private Tor network on 127.0.0.1 (3 authorities, 8 relays; no internet)"
"$BIN/umbra-testnet" --arti-config "$WORK/arti-network.toml" >"$WORK/testnet.out" 2>"$WORK/testnet.log" &
PIDS+=($!)
wait_for "$WORK/testnet.log" "Arti configuration written" 180 "the test network"
say "$(grep '^ready after' "$WORK/testnet.log")"

step "2. A Handshaker (directory + mailbox), itself an onion service"
"$BIN/umbra-handshaker" --data-dir "$WORK/handshaker" --arti-network-config "$WORK/arti-network.toml" \
    --pow-difficulty 12 >"$WORK/handshaker.out" 2>"$WORK/handshaker.log" &
PIDS+=($!)
wait_for "$WORK/handshaker.out" "^onion service: " 120 "the Handshaker's onion service"
HS="$(sed -n 's/^onion service: //p' "$WORK/handshaker.out" | head -n1)"
say "Handshaker at ${HS:0:12}….onion"

# umbra_as USER ARGS...: the CLI as that user.
umbra_as() {
    local u=$1; shift
    "$BIN/umbra" "$@" --data-dir "$WORK/$u/data" --config "$WORK/$u/config.toml" \
        --passphrase-file "$WORK/$u/pw"
}
show() {
    local u=$1; shift
    printf '   %s%s$%s umbra' "$CYAN" "$u" "$PLAIN"
    for a in "$@"; do
        if [[ $a == *" "* ]]; then printf ' "%s"' "$a"; else printf ' %s' "$a"; fi
    done
    printf '\n'
    umbra_as "$u" "$@" 2>&1 | sed 's/^/     /'
}

step "3. Two users create their identities (OpenPGP keys, encrypted store)"
for u in alice bob; do
    mkdir -p "$WORK/$u"
    chmod 700 "$WORK/$u"
    printf 'demo passphrase of %s\n' "$u" >"$WORK/$u/pw"
    cat >"$WORK/$u/config.toml" <<EOF
[network]
kind = "local"
local_network = "$WORK/arti-network.toml"
dangerously_trust_everyone = true

[handshaker]
address = "$HS"
EOF
    show "$u" init --name "$u"
done

step "4. Both start their daemons: Arti joins the network, each publishes an onion service"
for u in alice bob; do
    # Started directly (not through a shell function) so that $! is the daemon itself.
    "$BIN/umbra" up --json --data-dir "$WORK/$u/data" --config "$WORK/$u/config.toml" \
        --passphrase-file "$WORK/$u/pw" >"$WORK/$u/up.out" 2>"$WORK/$u/up.log" &
    PIDS+=($!)
done
for u in alice bob; do
    wait_for "$WORK/$u/up.out" '"ready":true' 180 "$u's daemon"
    show "$u" status
done

step "5. Both register their username and key at the Handshaker (with proof of work)"
show alice register
show bob register

step "6. bob searches the directory and looks alice up (compare the fingerprint out of band!)"
show bob search ali
show bob lookup @alice

step "7. bob sends a connection request: signed and encrypted to alice, via the Handshaker mailbox"
show bob request @alice --note "hi alice, bob from the meetup"

step "8. alice sees the request with bob's verified fingerprint, and accepts"
show alice requests
show alice accept @bob
say "(the Accept goes directly to bob's onion service; both derive the same session keys)"

# wait_message USER PEER TEXT: bounded wait until USER's history with PEER shows TEXT.
wait_message() {
    local u=$1 peer=$2 text=$3 tries=0
    until umbra_as "$u" history "$peer" 2>/dev/null | grep -qF -- "$text"; do
        (( tries++ < 600 )) || { echo "error: $u never received \"$text\"" >&2; exit 1; }
        sleep 0.1
    done
}

# Bounded wait until bob's daemon received the Accept (the session exists).
tries=0
until umbra_as bob contacts --json 2>/dev/null | grep -q '"session": true'; do
    (( tries++ < 600 )) || { echo "error: bob never received the Accept" >&2; exit 1; }
    sleep 0.1
done
show bob contacts

step "9. A conversation, directly between the two onion services (AES-256-GCM frames)"
show bob send @alice "Hello Alice! This travels only between our onion services."
wait_message alice @bob "This travels only"
show alice send @bob "Hi Bob. The Handshaker never saw this message, nor where we are."
wait_message bob @alice "never saw this message"
show bob send @alice "Exactly once, in order, even if one of us goes offline."
wait_message alice @bob "Exactly once"
show alice history @bob
show alice contacts

step "10. alice checks bob's fingerprint (read to her in person) and marks it verified"
BOB_FPR="$(umbra_as bob status --json | sed -n 's/.*"fingerprint": *"\([0-9A-F]*\)".*/\1/p' | head -n1)"
show alice verify @bob --fingerprint "$BOB_FPR"

step "11. bob sends alice a voice message: a file, in AES-256-GCM chunks, resumable"
say "alice verified bob, so her policy accepts his files up to 16 MiB without asking"
{ head -c 1500000 /dev/urandom; printf 'UMBRA-DEMO-VOICE-NOTE %.0s' $(seq 1 2000); head -c 1500000 /dev/urandom; } >"$WORK/voice-note.ogg"
show bob send-file @alice "$WORK/voice-note.ogg" --as voice
show alice files
say "it stays encrypted in alice's data dir until she saves it:"
FILE_ID="$(umbra_as alice files --json | sed -n 's/.*"id": *"\([0-9a-f]*\)".*/\1/p' | head -n1)"
mkdir -p "$WORK/alice-downloads"
show alice save-file "${FILE_ID:0:8}" "$WORK/alice-downloads"
say "sha256 sent:     $(sha256sum <"$WORK/voice-note.ogg" | cut -c1-64)"
say "sha256 received: $(sha256sum <"$WORK/alice-downloads/voice-note.ogg" | cut -c1-64)"
cmp -s "$WORK/voice-note.ogg" "$WORK/alice-downloads/voice-note.ogg" || { echo "error: the file differs" >&2; exit 1; }

step "12. The data directories hold no readable message, name, fingerprint or file content"
if grep -rlaF -e "This travels only" -e "never saw this message" -e "@alice" -e "@bob" -e "UMBRA-DEMO-VOICE-NOTE" "$WORK/alice/data" "$WORK/bob/data"; then
    echo "error: plaintext found in a data directory" >&2; exit 1
fi
say "grep found nothing in $(find "$WORK/alice/data" "$WORK/bob/data" -type f | wc -l) files"

step "13. Done: stopping the daemons, the Handshaker and the Tor network"
