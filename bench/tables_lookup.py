#!/usr/bin/env python3
"""Benchmark: a 1,000,000-key ``hash:`` (or ``lmdb:``) table: build time, µs per lookup, RSS.

Follows postmap(1) (the table is built from a source file by ``postier postmap``'s own
code, ``postier.tables.compiled.build``) and access(5) (lookups as check_client_access
makes them: one key, and a whole access search order). Not a timed test: it prints
figures. The memory figures are the process's own (``/proc/self/status``: VmRSS, and
its split into RssAnon, private memory, and RssFile, pages of mapped files that every
process mapping the table shares) before the table is opened, after ``Tables().table``
opens it as an smtpd worker does at start, and after the lookups.

Usage: ``.venv/bin/python bench/tables_lookup.py [--keys 1000000] [--lookups 200000]
[--type hash|lmdb] [--dir DIR]``.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time


def rss() -> dict[str, int]:
    """VmRSS, RssAnon, RssFile of this process in KiB."""
    out: dict[str, int] = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile"):
                out[name] = int(value.split()[0])
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=200_000)
    parser.add_argument("--type", choices=("hash", "lmdb"), default="hash")
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()

    from postier.tables import Tables, access_keys
    from postier.tables.compiled import build, db_path
    from postier.tables.search import Subject

    workdir = args.dir or tempfile.mkdtemp(prefix="postier-bench-tables-")
    name = os.path.join(workdir, "client_access")
    keys = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(args.keys)]
    started = time.perf_counter()
    build(args.type, name, ((k, "REJECT listed") for k in keys))
    built = time.perf_counter() - started
    size = os.path.getsize(db_path(args.type, name))

    rng = random.Random(7)
    probes = [rng.choice(keys) for _ in range(args.lookups)]
    misses = [f"192.0.{i >> 8 & 255}.{i & 255}" for i in range(args.lookups)]
    del keys

    before = rss()
    table = Tables().table(f"{args.type}:{name}")
    opened = rss()
    t0 = time.perf_counter()
    for k in probes:
        table.lookup(k)
    hit_us = (time.perf_counter() - t0) / len(probes) * 1e6
    t0 = time.perf_counter()
    for k in misses:
        table.lookup(k)
    miss_us = (time.perf_counter() - t0) / len(misses) * 1e6
    searches = misses[:20_000]
    t0 = time.perf_counter()
    for k in searches:  # check_client_access on an unlisted client: 4 keys
        for key in access_keys(Subject.CLIENT_ADDRESS, k):
            table.lookup(key.text)
    search_us = (time.perf_counter() - t0) / len(searches) * 1e6
    after = rss()

    print(f"table: {args.type}:{name} ({args.keys} keys), file {size / 2**20:.1f} MiB, "
          f"built in {built:.1f} s")
    print(f"lookup, key present: {hit_us:.2f} us; key absent: {miss_us:.2f} us; "
          f"check_client_access search of an unlisted client (4 keys): {search_us:.2f} us")
    for label, now in (("after open", opened), ("after lookups", after)):
        print(f"RSS {label}: +{now['VmRSS'] - before['VmRSS']} KiB "
              f"(private RssAnon +{now['RssAnon'] - before['RssAnon']} KiB, shared file "
              f"pages RssFile +{now['RssFile'] - before['RssFile']} KiB)")
    if args.dir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
