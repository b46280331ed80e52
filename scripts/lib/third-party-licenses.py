#!/usr/bin/env python3
"""Licences of everything a binary links: the normal (not dev, not build)
dependency closure of one workspace package on this platform, from
`cargo metadata`. Used by scripts/package.sh for the Debian packages'
/usr/share/doc/PACKAGE/THIRD-PARTY-LICENSES (deny.toml checks the same
licences against the allowed list in CI).

usage: third-party-licenses.py PACKAGE < metadata.json
"""
import json
import sys


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    root_name = sys.argv[1]
    meta = json.load(sys.stdin)
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    roots = [i for i in meta["workspace_members"] if packages[i]["name"] == root_name]
    if len(roots) != 1:
        print(f"error: no workspace package named {root_name}", file=sys.stderr)
        return 1
    seen, todo = set(), [roots[0]]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        for dep in nodes[pid]["deps"]:
            if any(k["kind"] is None for k in dep["dep_kinds"]):
                todo.append(dep["pkg"])
    workspace = set(meta["workspace_members"])
    rows = sorted(
        (packages[i]["name"], packages[i]["version"], packages[i].get("license") or "(see the crate's licence file)")
        for i in seen
        if i not in workspace
    )
    by_licence: dict[str, int] = {}
    for _, _, lic in rows:
        by_licence[lic] = by_licence.get(lic, 0) + 1
    print(f"{root_name} is GPL-3.0-or-later. It links {len(rows)} third-party crates (Rust")
    print("source, statically linked, from crates.io), under these licences:")
    print()
    for lic, n in sorted(by_licence.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {n:4}  {lic}")
    print()
    print("SQLCipher (in libsqlite3-sys, BSD-3-Clause) is compiled in as well; OpenSSL")
    print("(Apache-2.0) is linked dynamically from the system (libssl3).")
    print()
    print("Every crate:")
    for name, version, lic in rows:
        print(f"  {name} {version}: {lic}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
