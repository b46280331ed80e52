#!/usr/bin/env bash
# Writes the libFuzzer dictionaries of fuzz/dict/ from the sources they
# describe (docs/FUZZING.md). Run from anywhere; commit the result.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=fuzz/dict
quote() { sed 's/["\\]/\\&/g; s/.*/"&"/'; }

{
    echo "# control_line: command names and keys of src/control/proto.rs"
    sed -n '/^pub enum Request {/,/^}/p' src/control/proto.rs |
        grep -oE '^    [A-Z][A-Za-z]+' | sed -E 's/^ +//; s/([a-z])([A-Z])/\1_\2/g' | tr 'A-Z' 'a-z' |
        sed 's/.*/"&"/' | quote
    grep -oE '^ +pub [a-z_]+:' src/control/proto.rs | sed -E 's/^ +pub //; s/:$//' | sort -u |
        sed 's/.*/"&"/' | quote
} >"$out/control_line.dict"

{
    echo "# config: sections and keys of config/umbra.example.toml"
    grep -oE '^\[[a-z_]+\]|^#? *[a-z_]+ =' config/umbra.example.toml |
        sed -E 's/^# *//; s/ =$//' | sort -u | quote
    printf '%s\n' tor local direct lite full disabled true false | quote
} >"$out/config.dict"

{
    echo "# handshaker_bodies: JSON keys of proto/src/handshaker_api/wire.rs and pow.rs"
    grep -ohE '^ +pub [a-z_]+:' proto/src/handshaker_api/wire.rs proto/src/handshaker_api/pow.rs |
        sed -E 's/^ +pub //; s/:$//' | sort -u | sed 's/.*/"&"/' | quote
    printf '%s\n' '-----BEGIN PGP SIGNATURE-----' '-----END PGP SIGNATURE-----' \
        '-----BEGIN PGP PUBLIC KEY BLOCK-----' '-----END PGP PUBLIC KEY BLOCK-----' | quote
} >"$out/handshaker_bodies.dict"

{
    echo "# envelope_open: OpenPGP armor lines"
    printf '%s\n' '-----BEGIN PGP MESSAGE-----' '-----END PGP MESSAGE-----' | quote
} >"$out/envelope_open.dict"

{
    echo "# store_header: keys and fixed values of src/store/kdf.rs"
    sed -n '/^struct HeaderFile {/,/^}/p' src/store/kdf.rs | grep -oE '^ +[a-z_]+:' |
        sed -E 's/^ +//; s/:$//' | sed 's/.*/"&"/' | quote
    printf '%s\n' umbra-store argon2id sqlcipher4-raw-key m_cost_kib t_cost p_cost | sed 's/.*/"&"/' | quote
} >"$out/store_header.dict"

{
    echo "# hkp_query: parameters of /pks/lookup and /v1/search"
    printf '%s\n' op= search= options=mr prefix= limit= get index vindex 0x %40 %3C %3E '&' | quote
} >"$out/hkp_query.dict"
