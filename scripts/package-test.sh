#!/usr/bin/env bash
# The Debian packages as an operator and a user meet them (CI runs this):
#
#  1. builds revision 1 and 2 of both packages (scripts/package.sh);
#  2. installs revision 1 on this machine (dpkg -i; needs root) and checks the
#     files, the units (`systemd-analyze verify` and `security --offline`);
#  3. starts the Handshaker exactly as its installed unit would: ExecStart,
#     Environment, LoadCredential and StateDirectory read from the unit file,
#     as an unprivileged user with no new privileges (like DynamicUser=yes),
#     on a TCP port of 127.0.0.1 (the operator's configuration edit);
#  4. a user: `umbra init`, `umbra up` as the installed user unit runs it
#     (passphrase handed over as a credential), `umbra register`;
#  5. upgrades to revision 2 over all of it: SIGTERM drains the Handshaker,
#     the edited conffile is kept, both restart from the new binaries, the
#     registration and the store are still there; a store of the previous
#     schema (tests/fixtures/store-v6) opens with the upgraded `umbra`,
#     migrated, with its contents;
#  6. purges the packages and everything the test created.
#
# systemd is not PID 1 on the CI machine, so the units are not started by
# systemd: their command lines are (`systemd-run` needs a running systemd).
#
# Environment: CARGO_TARGET_DIR; UMBRA_PACKAGE_PROFILE (default here:
# "release", the profile CI builds anyway and scripts/package.sh's default);
# UMBRA_DEB_FAST (default here 1: quick compression).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/umbra-target}"
export UMBRA_PACKAGE_PROFILE="${UMBRA_PACKAGE_PROFILE:-release}"
# Quick compression: the test's packages are thrown away.
export UMBRA_DEB_FAST="${UMBRA_DEB_FAST:-1}"
started=$(date +%s)

fail() { echo "package-test: FAILED: $*" >&2; exit 1; }
say() { echo "package-test: [$(($(date +%s) - started)) s] $*"; }

[[ $(id -u) -eq 0 ]] || fail "needs root (it installs the packages with dpkg)"
for p in umbra umbra-handshaker umbra-desktop; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q installed; then
        fail "$p is already installed here; this test installs and purges it (remove it first)"
    fi
done
STATE=/var/lib/umbra-handshaker
[[ ! -e $STATE && ! -e /etc/umbra-handshaker ]] ||
    fail "$STATE or /etc/umbra-handshaker exists: refusing to touch a real Handshaker's data"

WORK="$(mktemp -d -t umbra-package-test.XXXXXX)"
chmod 755 "$WORK"
PIDS=()
installed=0
cleanup() {
    local status=$?
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if ((installed)); then
        dpkg --purge umbra-desktop umbra umbra-handshaker >/dev/null 2>&1 || true
        rm -rf "$STATE" /etc/umbra-handshaker
    fi
    if [[ $status -ne 0 ]]; then
        for f in "$WORK"/*.log; do
            [[ -f $f ]] || continue
            echo "---- $f (last 30 lines)" >&2
            tail -n 30 "$f" >&2
        done
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for FILE PATTERN SECONDS WHAT: bounded wait for a line in a log.
wait_for() {
    local file=$1 pattern=$2 limit=$3 what=$4 waited=0
    until grep -q -- "$pattern" "$file" 2>/dev/null; do
        ((waited < limit * 10)) || fail "$what did not happen within $limit s (log $file)"
        sleep 0.1
        waited=$((waited + 1))
    done
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ---------------------------------------------------------------- 1. build
say "building revision 1 and 2 (profile $UMBRA_PACKAGE_PROFILE)"
mapfile -t rev1 < <(UMBRA_PACKAGE_OUT="$WORK/deb" UMBRA_DEB_REVISION=1 ./scripts/package.sh)
mapfile -t rev2 < <(UMBRA_PACKAGE_OUT="$WORK/deb" UMBRA_DEB_REVISION=2 ./scripts/package.sh)
[[ ${#rev1[@]} -eq 3 && ${#rev2[@]} -eq 3 ]] || fail "expected three packages per revision"
for deb in "${rev1[@]}"; do
    say "$(basename "$deb"): $(du -k "$deb" | cut -f1) KiB"
done

# ---------------------------------------------------------------- 2. install
installed=1
DEBIAN_FRONTEND=noninteractive dpkg -i "${rev1[@]}" >"$WORK/dpkg-install.log" 2>&1 ||
    fail "dpkg -i of revision 1 failed: $(tail -n 5 "$WORK/dpkg-install.log")"
for f in /usr/bin/umbra /usr/bin/umbra-handshaker \
    /usr/share/man/man1/umbra.1.gz /usr/share/man/man1/umbra-up.1.gz \
    /usr/share/bash-completion/completions/umbra /usr/share/zsh/vendor-completions/_umbra \
    /usr/share/fish/vendor_completions.d/umbra.fish /usr/lib/systemd/user/umbra.service \
    /usr/share/doc/umbra/examples/config.toml /usr/share/doc/umbra/THIRD-PARTY-LICENSES \
    /usr/share/doc/umbra/copyright /usr/share/doc/umbra-handshaker/OPERATING.md \
    /etc/umbra-handshaker/handshaker.toml /usr/bin/umbra-desktop \
    /usr/share/applications/umbra-desktop.desktop \
    /usr/share/icons/hicolor/scalable/apps/umbra-desktop.svg \
    /usr/share/icons/hicolor/128x128/apps/umbra-desktop.png \
    /usr/share/doc/umbra-desktop/THIRD-PARTY-LICENSES; do
    [[ -s $f ]] || fail "$f is not installed"
done
USER_UNIT=/usr/lib/systemd/user/umbra.service
HS_UNIT=$(dpkg -L umbra-handshaker | grep '/systemd/system/umbra-handshaker.service$') ||
    fail "the Handshaker's unit is not installed"
[[ $(stat -c %a /etc/umbra-handshaker/handshaker.toml) == 600 ]] || fail "the Handshaker's configuration is not 0600"
desktop-file-validate /usr/share/applications/umbra-desktop.desktop >"$WORK/desktop-file.log" 2>&1 ||
    fail "the menu entry is not valid: $(cat "$WORK/desktop-file.log")"
[[ $(identify -format '%wx%h' /usr/share/icons/hicolor/128x128/apps/umbra-desktop.png) == 128x128 ]] ||
    fail "the 128 px icon is not 128x128"
zcat /usr/share/man/man1/umbra.1.gz | grep -q '^\.TH' || fail "umbra.1 is not a manual page"
bash -c 'source /usr/share/bash-completion/completions/umbra && complete -p umbra' >/dev/null ||
    fail "the bash completion does not load"
umbra config-example | diff -q - /usr/share/doc/umbra/examples/config.toml >/dev/null ||
    fail "the packaged example configuration differs from umbra config-example"
systemd-analyze verify --man=no "$HS_UNIT" >"$WORK/verify.log" 2>&1 || fail "systemd-analyze verify: $(cat "$WORK/verify.log")"
install -d -m 0700 "$WORK/xdg"
XDG_RUNTIME_DIR="$WORK/xdg" systemd-analyze --user verify --man=no "$USER_UNIT" >"$WORK/verify-user.log" 2>&1 ||
    fail "systemd-analyze --user verify: $(cat "$WORK/verify-user.log")"
score=$(systemd-analyze security --offline=yes "$HS_UNIT" 2>/dev/null | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
[[ -n $score ]] || fail "no systemd-analyze security score"
say "systemd-analyze security (offline) of the installed Handshaker unit: $score"
awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || fail "exposure $score is above 2.0"
say "installed: $(dpkg-query -W -f='${Package} ${Version}  ' umbra umbra-handshaker umbra-desktop)"

# ---------------------------------------------------------------- units as systemd runs them
# unit_value UNIT KEY: the values of KEY= in UNIT, one per line.
unit_value() { sed -n "s/^$2=//p" "$1"; }
# start_unit UNIT UID HOME LOG CREDS: runs the unit's ExecStart with its
# Environment= as user UID (no new privileges, no supplementary groups), after
# handing it its LoadCredential= files in CREDS (systemd's
# $CREDENTIALS_DIRECTORY); %h and %E expand for HOME. Sets $STARTED_PID.
start_unit() {
    local unit=$1 uid=$2 home=$3 log=$4 creds=$5 line name path
    mkdir -p "$creds"
    while read -r line; do
        [[ -n $line ]] || continue
        name=${line%%:*}
        path=${line#*:}
        path=${path//%E/$home/.config}
        path=${path//%h/$home}
        install -m 0400 -o "$uid" -g "$uid" "$path" "$creds/$name"
    done < <(unit_value "$unit" LoadCredential)
    chown "$uid:$uid" "$creds"
    chmod 0500 "$creds"
    local cmd
    cmd=$(unit_value "$unit" ExecStart)
    cmd=${cmd//'${CREDENTIALS_DIRECTORY}'/$creds}
    cmd=${cmd//'${STATE_DIRECTORY}'/$STATE}
    local -a argv env
    read -ra argv <<<"$cmd"
    read -ra env <<<"$(unit_value "$unit" Environment | tr '\n' ' ')"
    setpriv --reuid "$uid" --regid "$uid" --clear-groups --no-new-privs \
        env -i HOME="$home" PATH=/usr/bin:/bin "${env[@]}" "${argv[@]}" >"$log" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}
# stop PID WHAT: SIGTERM and wait (bounded); fails unless it exits 0.
stop() {
    local pid=$1 what=$2 waited=0 status=0
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do
        ((waited < 600)) || fail "$what did not stop within 60 s of SIGTERM"
        sleep 0.1
        waited=$((waited + 1))
    done
    wait "$pid" || status=$?
    [[ $status -eq 0 ]] || fail "$what exited with $status on SIGTERM"
}

# ---------------------------------------------------------------- 3. the Handshaker
HS_UID=61234   # in systemd's DynamicUser range
U_UID=61235
HS_PORT=$(free_port)
HS_URL="http://127.0.0.1:$HS_PORT"
# The operator's edit: a TCP listener for this test (an onion service on the
# real Tor network is the default), a cheap proof of work.
cat >>/etc/umbra-handshaker/handshaker.toml <<EOF

# package-test: TCP on 127.0.0.1 instead of the onion service.
[network]
onion_service = false
listen = ["127.0.0.1:$HS_PORT"]
EOF
# TOML has one [network] table: drop the package's original one (its keys stay defaults).
python3 - /etc/umbra-handshaker/handshaker.toml <<'EOF'
import re, sys
p = sys.argv[1]
s = open(p).read()
first = s.index("[network]\n")
last = s.rindex("[network]\n")
end = s.index("\n[", first + 1)
s = s[:first] + s[end + 1:last] + s[last:]
s = re.sub(r"(?m)^difficulty = \d+$", "difficulty = 8", s)
open(p, "w").write(s)
EOF
mkdir -m 0700 "$STATE"   # systemd's StateDirectory=, owned by the dynamic user
chown "$HS_UID:$HS_UID" "$STATE"
start_handshaker() {
    start_unit "$HS_UNIT" "$HS_UID" / "$WORK/handshaker-$1.log" "$WORK/creds-hs-$1"
    HS_PID=$STARTED_PID
    wait_for "$WORK/handshaker-$1.log" "listening on http://127.0.0.1:$HS_PORT" 60 "the Handshaker ($1)"
}
start_handshaker rev1
say "Handshaker up as uid $HS_UID (unit's command line) on $HS_URL"

# ---------------------------------------------------------------- 4. a user
HOME_U="$WORK/home"
install -d -m 0700 -o "$U_UID" -g "$U_UID" "$HOME_U" "$HOME_U/.config" "$HOME_U/.config/umbra"
as_user() { setpriv --reuid "$U_UID" --regid "$U_UID" --clear-groups --no-new-privs env -i HOME="$HOME_U" PATH=/usr/bin:/bin "$@"; }
printf 'package test passphrase\n' >"$HOME_U/.config/umbra/passphrase"
U_PORT=$(free_port)
cat >"$HOME_U/.config/umbra/config.toml" <<EOF
[network]
kind = "direct"
direct_listen = "127.0.0.1:$U_PORT"

[handshaker]
address = "$HS_URL"
EOF
chown -R "$U_UID:$U_UID" "$HOME_U/.config"
chmod 0600 "$HOME_U/.config/umbra/passphrase"
as_user umbra init --name pkgtest --passphrase-file "$HOME_U/.config/umbra/passphrase" >"$WORK/init.log" 2>&1 ||
    fail "umbra init: $(cat "$WORK/init.log")"
start_daemon() {
    start_unit "$USER_UNIT" "$U_UID" "$HOME_U" "$WORK/umbra-up-$1.log" "$WORK/creds-user-$1"
    UP_PID=$STARTED_PID
    wait_for "$WORK/umbra-up-$1.log" "Umbra is up as @pkgtest" 60 "umbra up ($1)"
}
start_daemon rev1
as_user umbra register >"$WORK/register.log" 2>&1 || fail "umbra register: $(cat "$WORK/register.log")"
grep -q '^Registered @pkgtest' "$WORK/register.log" || fail "unexpected register output: $(cat "$WORK/register.log")"
fpr=$(as_user umbra status --json --passphrase-file "$HOME_U/.config/umbra/passphrase" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["fingerprint"])')
say "registered @pkgtest ($fpr) through the packaged daemon"

# The store a user of the previous release has (schema v6), next to it.
OLD="$HOME_U/old-data"
install -d -m 0700 -o "$U_UID" -g "$U_UID" "$OLD"
for f in "$repo"/tests/fixtures/store-v6/*; do
    install -m 0600 -o "$U_UID" -g "$U_UID" "$f" "$OLD/"
done
install -m 0600 -o "$U_UID" -g "$U_UID" "$repo/tests/fixtures/store-v6.passphrase" "$HOME_U/old.pass"
before=$(cd "$OLD" && sha256sum -- * | sha256sum)

# ---------------------------------------------------------------- 5. upgrade
stop "$UP_PID" "umbra up"
stop "$HS_PID" "the Handshaker"
grep -q 'stopped' "$WORK/handshaker-rev1.log" || fail "the Handshaker did not log its drain and stop"
hs_db_before=$(stat -c %s "$STATE/handshaker.sqlite")
DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold "${rev2[@]}" >"$WORK/dpkg-upgrade.log" 2>&1 ||
    fail "dpkg -i of revision 2 failed: $(tail -n 5 "$WORK/dpkg-upgrade.log")"
for p in umbra umbra-handshaker umbra-desktop; do
    v=$(dpkg-query -W -f='${Version}' "$p")
    [[ $v == *-2 ]] || fail "$p is at $v after the upgrade, not revision 2"
done
grep -q "^listen = \[\"127.0.0.1:$HS_PORT\"\]" /etc/umbra-handshaker/handshaker.toml ||
    fail "the upgrade replaced the operator's configuration"
[[ -s $STATE/handshaker.sqlite && $(stat -c %s "$STATE/handshaker.sqlite") -ge $hs_db_before ]] ||
    fail "the Handshaker's database is gone or shrank"
say "upgraded to $(dpkg-query -W -f='${Version}' umbra); configuration and data kept"

start_handshaker rev2
start_daemon rev2
as_user umbra lookup @pkgtest >"$WORK/lookup.log" 2>&1 || fail "umbra lookup after the upgrade: $(cat "$WORK/lookup.log")"
grep -q '@pkgtest' "$WORK/lookup.log" || fail "the Handshaker forgot @pkgtest: $(cat "$WORK/lookup.log")"
fpr2=$(as_user umbra status --json --passphrase-file "$HOME_U/.config/umbra/passphrase" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["fingerprint"])')
[[ $fpr2 == "$fpr" ]] || fail "the identity changed across the upgrade"
say "after the upgrade: @pkgtest still registered, same identity"

# The packaged window, as the user, on a virtual display, against the packaged
# daemon of the user's default data directory: it must map (its X11 and Vulkan
# libraries, loaded at run time, come from the package's dependencies) and
# draw the connected main screen, not a blank or an error.
XVFB_LOG="$WORK/xvfb.log"
Xvfb -displayfd 1 -screen 0 1024x720x24 -nolisten tcp 3>&1 >"$WORK/xvfb.display" 2>"$XVFB_LOG" &
PIDS+=("$!")
wait_for "$WORK/xvfb.display" '[0-9]' 30 "Xvfb"
DISP=":$(head -n 1 "$WORK/xvfb.display")"
setpriv --reuid "$U_UID" --regid "$U_UID" --clear-groups --no-new-privs \
    env -i HOME="$HOME_U" PATH=/usr/bin:/bin DISPLAY="$DISP" UMBRA_DESKTOP_LOG=info \
    umbra-desktop --no-notifications >"$WORK/desktop.log" 2>&1 &
DESK_PID=$!
PIDS+=("$DESK_PID")
wait_for "$WORK/desktop.log" 'first frame after' 60 "the packaged window's first frame"
wait_for "$WORK/desktop.log" 'connected to the daemon' 60 "the packaged window's connection to the daemon"
waited=0
until DISPLAY=$DISP xdotool search --onlyvisible --name '^Umbra$' >/dev/null 2>&1; do
    kill -0 "$DESK_PID" 2>/dev/null || fail "umbra-desktop exited"
    ((waited < 300)) || fail "the packaged window did not map within 30 s"
    sleep 0.1
    waited=$((waited + 1))
done
colours=0
for _ in $(seq 1 100); do
    DISPLAY=$DISP import -window root "$WORK/desktop.png" 2>/dev/null || true
    colours=$(identify -format '%k' "$WORK/desktop.png" 2>/dev/null || echo 0)
    ((colours > 16)) && break
    sleep 0.1
done
((colours > 16)) || fail "the packaged window drew nothing ($colours colours)"
grep -qE ' ERROR |panicked' "$WORK/desktop.log" && fail "the packaged window logged an error: $(cat "$WORK/desktop.log")"
say "the packaged window mapped and drew ($colours colours), $(grep -o 'first frame after .*' "$WORK/desktop.log")"
kill -TERM "$DESK_PID"
wait "$DESK_PID" 2>/dev/null || true   # a window has no drain: SIGTERM ends it

[[ $(cd "$OLD" && sha256sum -- * | sha256sum) == "$before" ]] || fail "the upgrade touched a data directory"
as_user umbra status --json --data-dir "$OLD" --passphrase-file "$HOME_U/old.pass" >"$WORK/old-status.json" 2>"$WORK/old-status.log" ||
    fail "the previous schema's store does not open: $(cat "$WORK/old-status.log")"
python3 - "$WORK/old-status.json" <<'EOF' || fail "the previous schema's store lost something: $(cat "$WORK/old-status.json")"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["username"] == "@carol", s
assert s["contacts"] == 1, s
assert s["schema_version"] > 6, s
print(f"package-test: the schema v6 store opened as v{s['schema_version']}: {s['username']}, {s['contacts']} contact")
EOF

stop "$UP_PID" "umbra up (after the upgrade)"
stop "$HS_PID" "the Handshaker (after the upgrade)"
say "PASSED in $(($(date +%s) - started)) s"
