#!/usr/bin/env python3
"""Builds testdata/corrupt/: copies of the promtool-made block in testdata/small, each
damaged in one place, for `strata verify` tests. Each case is a data directory holding
one block. Run from the repository root: python3 scripts/make_corrupt.py"""
import os
import shutil
import struct
import sys

SRC = "testdata/small"
DST = "testdata/corrupt"

blocks = [d for d in os.listdir(SRC) if len(d) == 26 and os.path.isdir(os.path.join(SRC, d))]
if len(blocks) != 1:
    sys.exit(f"{SRC}: expected exactly one block, found {blocks}")
ULID = blocks[0]

index = open(os.path.join(SRC, ULID, "index"), "rb").read()
toc = struct.unpack(">6Q", index[-52:-4])
SYMBOLS, SERIES, LABEL_INDICES, LABEL_INDICES_TABLE, POSTINGS, POSTINGS_TABLE = toc
TOC_AT = len(index) - 52


def align(x, n):
    return (x + n - 1) // n * n


def flip(rel, at, mask=0x20):
    def f(path):
        b = bytearray(open(path, "rb").read())
        b[at] ^= mask
        open(path, "wb").write(b)
    return rel, f


def truncate(rel, keep):
    def f(path):
        b = open(path, "rb").read()
        open(path, "wb").write(b[: keep(len(b))])
    return rel, f


def replace(rel, old, new):
    def f(path):
        s = open(path, "rb").read()
        assert old in s, (rel, old)
        open(path, "wb").write(s.replace(old, new, 1))
    return rel, f


# name -> (file, action, what verify must say)
CASES = {
    "chunk-flipped-byte": flip("chunks/000001", 8 + 6),
    "index-symbols-flipped-byte": flip("index", SYMBOLS + 10),
    "index-series-flipped-byte": flip("index", align(SERIES, 16) + 3),
    "index-label-index-flipped-byte": flip("index", align(LABEL_INDICES, 4) + 13),
    "index-postings-flipped-byte": flip("index", align(POSTINGS, 4) + 9),
    "index-label-offset-table-flipped-byte": flip("index", LABEL_INDICES_TABLE + 9),
    "index-postings-table-flipped-byte": flip("index", POSTINGS_TABLE + 9),
    "index-toc-flipped-byte": flip("index", TOC_AT + 7, 0x01),
    "meta-flipped-byte": replace("meta.json", b'"numSamples": 126', b'"numSamples": 127'),
    "meta-broken-json": replace("meta.json", b'"minTime"', b'"minTime\x01'),
    "index-truncated": truncate("index", lambda n: n // 2),
    "chunks-truncated": truncate("chunks/000001", lambda n: n - 10),
    "meta-truncated": truncate("meta.json", lambda n: n // 3),
    "tombstones-flipped-byte": flip("tombstones", 4, 0x03),
}

if os.path.exists(DST):
    shutil.rmtree(DST)
for name, (rel, action) in CASES.items():
    d = os.path.join(DST, name)
    shutil.copytree(os.path.join(SRC, ULID), os.path.join(d, ULID))
    action(os.path.join(d, ULID, rel))
    print(f"{name}: {rel}")
