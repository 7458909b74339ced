#!/usr/bin/env python3
"""Fails when a locked dependency of a published crate needs a newer Rust than the
crate's `rust-version` says (a dependency update raised it): the declared MSRV must
stay true. Prints what each crate's dependency tree needs."""
import json
import subprocess
import sys


def version(v):
    return tuple(int(x) for x in v.split("."))


meta = json.loads(subprocess.run(
    ["cargo", "metadata", "--format-version", "1", "--all-features", "--locked"],
    check=True, capture_output=True, text=True).stdout)
packages = {p["id"]: p for p in meta["packages"]}
nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
members = set(meta["workspace_members"])


def needed_by(root):
    """Every package a build of `root` compiles (normal and build dependencies)."""
    seen, stack = set(), [root]
    while stack:
        current = stack.pop()
        for dep in nodes[current]["deps"]:
            if all(k["kind"] == "dev" for k in dep["dep_kinds"]) or dep["pkg"] in seen:
                continue
            seen.add(dep["pkg"])
            stack.append(dep["pkg"])
    return seen


failed = False
for member in sorted(members, key=lambda i: packages[i]["name"]):
    crate = packages[member]
    if crate.get("publish") == []:
        continue
    declared = crate.get("rust_version") or "0"
    deps = [packages[i] for i in needed_by(member)]
    outside = [p for p in deps if p["id"] not in members] or deps
    newest = max(outside, key=lambda p: version(p.get("rust_version") or "0"))
    need = newest.get("rust_version") or "0"
    print(f"{crate['name']}: rust-version {declared}; its dependencies need {need} ({newest['name']})")
    for p in deps:
        if p.get("rust_version") and version(p["rust_version"]) > version(declared):
            print(f"  {p['name']} {p['version']} needs Rust {p['rust_version']}", file=sys.stderr)
            failed = True
if failed:
    sys.exit("a dependency needs a newer Rust than rust-version declares: raise it")
