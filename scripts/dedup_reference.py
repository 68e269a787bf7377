#!/usr/bin/env python3
"""An independent reference for strata's HA deduplication (tests/cli/dedup.rs).

Standard library only, sharing nothing with strata's code: it reads the input
blocks' indexes and chunk records itself (only the chunk time ranges, encodings
and bytes, never decoding a chunk), takes the samples from a dump of each input
block, and computes what a deduplicating Thanos querier returns over each
vertical compaction's range, then compares that with a dump of the compacted
output.

  check --func penalty|one-to-one --dump promtool|STRATA_BINARY
        --inputs DIR --output DIR [--replica-label NAME] [--no-compare]

DIR holds blocks. --dump names the program that prints samples: `promtool`
(`promtool tsdb dump`, floats only in 2.42) or the path of a `strata` binary
(`strata dump`, which also prints native histograms). Exit 1, naming the first
difference, when the output is not what the querier returns (penalty: the same
samples; one-to-one: every timestamp of every replica once, each value one of
the replicas' values at that timestamp). It prints, for the reference and for
the output, replica switches per series and pairs of samples less than 5 s apart,
and how many output chunks are a source chunk's bytes.

The querier, as Thanos (v0.31 and later) runs it for one series over a range:
  * the stores drop the replica labels, so all replicas' chunks come as one
    series; the proxy keeps one of each set of byte-identical chunks and sorts
    the rest by min time, max time, encoding, then bytes in descending order
    (pkg/store/proxy_merge.go, storepb AggrChunk.Compare);
  * pkg/dedup NewOverlapSplit deals the chunks out, in that order, to the first
    stream whose last chunk ends before the chunk starts, or to a new stream;
  * one stream is returned as it is; more are chained pairwise by
    dedupSeriesIterator: dedup(dedup(s0, s1), s2). Each step seeks both sides
    to lastT + 1 + their penalty, takes the earlier (the first on a tie) and
    sets the other's penalty to 2 * (t - lastT), 5000 ms before any sample.
    The chained iterator's Seek steps through its own Next, as upstream's does.
Each vertical compaction covers one run of time-overlapping input blocks; the
reference runs the querier once per run.
"""

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

MIN_T = -(2**63)
INITIAL_PENALTY = 5000


# --- reading a block: index series, chunk metas, chunk records ---------------------

def uvarint(b, i):
    x, shift = 0, 0
    while True:
        c = b[i]
        i += 1
        x |= (c & 0x7F) << shift
        if c < 0x80:
            return x, i
        shift += 7


def varint(b, i):
    u, i = uvarint(b, i)
    return (u >> 1) ^ -(u & 1), i


def go_quote(s):
    out = ['"']
    for ch in s:
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\x%02x" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def labels_text(pairs):
    return "{" + ", ".join("%s=%s" % (n, go_quote(v)) for n, v in pairs) + "}"


def read_block(path):
    """{series text: [(min_t, max_t, encoding, data, n_samples)]} and the meta."""
    with open(os.path.join(path, "meta.json")) as f:
        meta = json.load(f)
    with open(os.path.join(path, "index"), "rb") as f:
        idx = f.read()
    assert idx[:4] == b"\xba\xaa\xd7\x00" and idx[4] == 2, "%s: not an index v2" % path
    toc = struct.unpack(">6Q", idx[-52:-4])
    symbols_off, postings_table_off = toc[0], toc[5]
    # Symbol table: len, count, then uvarint-prefixed strings; a ref is the position.
    n_sym = struct.unpack(">I", idx[symbols_off + 4:symbols_off + 8])[0]
    syms, i = [], symbols_off + 8
    for _ in range(n_sym):
        n, i = uvarint(idx, i)
        syms.append(idx[i:i + n].decode())
        i += n
    # Postings offset table: find the all-postings list ("", "").
    n_ent = struct.unpack(">I", idx[postings_table_off + 4:postings_table_off + 8])[0]
    i, all_off = postings_table_off + 8, None
    for _ in range(n_ent):
        _, i = uvarint(idx, i)
        ln, i = uvarint(idx, i)
        name = idx[i:i + ln]
        i += ln
        lv, i = uvarint(idx, i)
        value = idx[i:i + lv]
        i += lv
        off, i = uvarint(idx, i)
        if name == b"" and value == b"":
            all_off = off
    assert all_off is not None, "%s: no all-postings list" % path
    count = struct.unpack(">I", idx[all_off + 4:all_off + 8])[0]
    refs = struct.unpack(">%dI" % count, idx[all_off + 8:all_off + 8 + 4 * count])

    segments = {}

    def chunk(ref):
        seg, off = ref >> 32, ref & 0xFFFFFFFF
        if seg not in segments:
            with open(os.path.join(path, "chunks", "%06d" % (seg + 1)), "rb") as f:
                segments[seg] = f.read()
        b = segments[seg]
        n, j = uvarint(b, off)
        return b[j], bytes(b[j + 1:j + 1 + n])

    series = {}
    for ref in refs:
        i = ref * 16
        _, i = uvarint(idx, i)
        nl, i = uvarint(idx, i)
        pairs = []
        for _ in range(nl):
            a, i = uvarint(idx, i)
            b, i = uvarint(idx, i)
            pairs.append((syms[a], syms[b]))
        nc, i = uvarint(idx, i)
        chunks, prev_max, cref = [], None, 0
        for k in range(nc):
            if k == 0:
                mint, i = varint(idx, i)
                d, i = uvarint(idx, i)
                cref, i = uvarint(idx, i)
            else:
                d0, i = uvarint(idx, i)
                mint = prev_max + d0
                d, i = uvarint(idx, i)
                dr, i = varint(idx, i)
                cref += dr
            maxt = mint + d
            prev_max = maxt
            enc, data = chunk(cref)
            n_samples = struct.unpack(">H", data[:2])[0]
            chunks.append((mint, maxt, enc, data, n_samples))
        series[labels_text(pairs)] = chunks
    return series, meta


# --- samples, from a dump of each block ----------------------------------------------

def dump_block(tool, block_dir):
    """{series text: [(ts, value text)]} of one block."""
    if tool == "promtool":
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copytree(block_dir, os.path.join(tmp, os.path.basename(block_dir.rstrip("/"))))
            os.mkdir(os.path.join(tmp, "wal"))
            text = subprocess.run(["promtool", "tsdb", "dump", tmp], check=True, capture_output=True,
                                  text=True).stdout
    else:
        text = subprocess.run([tool, "dump", block_dir], check=True, capture_output=True, text=True).stdout
    return parse_dump(text)


def parse_dump(text):
    out = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        # "{labels} VALUE TS"; a histogram's value holds spaces, labels end at "} ".
        end = line.index("} ") + 1
        labels, rest = line[:end], line[end + 1:]
        value, ts = rest.rsplit(" ", 1)
        out.setdefault(labels, []).append((int(ts), value))
    return out


def blocks_in(d):
    return sorted(os.path.join(d, e) for e in os.listdir(d) if os.path.isfile(os.path.join(d, e, "meta.json")))


def load_inputs(inputs, tool, replica_label):
    """Every input block: its time range, replica, and per series its chunks, each
    with its samples (ts, value, replica)."""
    blocks = []
    for b in blocks_in(inputs):
        series, meta = read_block(b)
        replica = meta.get("thanos", {}).get("labels", {}).get(replica_label, b)
        samples = dump_block(tool, b)
        assert set(samples) <= set(series), "%s: dumped series not in the index" % b
        per_series = {}
        for name, chunks in series.items():
            ss = samples.get(name, [])
            k, with_samples = 0, []
            for mint, maxt, enc, data, n in chunks:
                mine = []
                while k < len(ss) and ss[k][0] <= maxt:
                    assert ss[k][0] >= mint, "%s %s: sample %d outside its chunks" % (b, name, ss[k][0])
                    mine.append((ss[k][0], ss[k][1], replica))
                    k += 1
                # promtool 2.42 prints floats only: a histogram chunk dumps nothing.
                assert len(mine) == n or (tool == "promtool" and not mine and enc != 1), \
                    "%s %s: chunk [%d, %d] holds %d samples, the dump %d" % (b, name, mint, maxt, n, len(mine))
                with_samples.append((mint, maxt, enc, data, mine))
            assert k == len(ss), "%s %s: samples after the last chunk" % (b, name)
            per_series[name] = with_samples
        blocks.append((meta["minTime"], meta["maxTime"], replica, per_series))
    return blocks


def overlap_runs(blocks):
    """Runs of time-overlapping blocks: one vertical compaction each."""
    runs = []
    for blk in sorted(blocks, key=lambda x: (x[0], x[1])):
        if runs and blk[0] < max(x[1] for x in runs[-1]):
            runs[-1].append(blk)
        else:
            runs.append([blk])
    return runs


# --- the querier ---------------------------------------------------------------------

class Stream:
    """One stream of the overlap split: its chunks' samples in order."""

    def __init__(self, samples):
        self.s, self.i = samples, -1

    def next(self):
        self.i += 1
        return self.i < len(self.s)

    def at(self):
        return self.s[self.i]

    def seek(self, t):
        while self.i < 0 or self.s[self.i][0] < t:
            if not self.next():
                return False
        return True


class Dedup:
    """dedupSeriesIterator over two iterators."""

    def __init__(self, a, b):
        self.a, self.b = a, b
        self.last_t, self.pen_a, self.pen_b, self.use_a = MIN_T, 0, 0, True
        self.a_ok, self.b_ok = a.next(), b.next()

    def at(self):
        return self.a.at() if self.use_a else self.b.at()

    def next(self):
        if self.a_ok:
            self.a_ok = self.a.seek(self.last_t + 1 + self.pen_a)
        if self.b_ok:
            self.b_ok = self.b.seek(self.last_t + 1 + self.pen_b)
        if not self.a_ok:
            self.use_a = False
            if self.b_ok:
                self.last_t, self.pen_b = self.b.at()[0], 0
            return self.b_ok
        if not self.b_ok:
            self.use_a = True
            self.last_t, self.pen_a = self.a.at()[0], 0
            return True
        ta, tb = self.a.at()[0], self.b.at()[0]
        self.use_a = ta <= tb
        t = ta if self.use_a else tb
        pen = INITIAL_PENALTY if self.last_t == MIN_T else 2 * (t - self.last_t)
        if self.use_a:
            self.pen_a, self.pen_b = 0, pen
        else:
            self.pen_a, self.pen_b = pen, 0
        self.last_t = t
        return True

    def seek(self, t):
        # Upstream steps through Next rather than seeking its inputs, not to miss gaps.
        while True:
            if self.at()[0] >= t:
                return True
            if not self.next():
                return False


def querier_streams(chunks):
    """The querier's streams of one series: pooled chunks, identical ones once, in
    the proxy's order, dealt out first-fit."""
    seen, pool = set(), []
    for c in chunks:
        if c[3] not in seen:  # upstream hashes the chunk bytes
            seen.add(c[3])
            pool.append(c)
    pool.sort(key=lambda c: c[3], reverse=True)  # bytes descending, then (stable) ...
    pool.sort(key=lambda c: (c[0], c[1], c[2]))  # ... min time, max time, encoding
    streams = []
    for c in pool:
        for s in streams:
            if s[-1][1] < c[0]:
                s.append(c)
                break
        else:
            streams.append([c])
    return [[smp for c in s for smp in c[4]] for s in streams]


def penalty(chunks):
    streams = querier_streams(chunks)
    if len(streams) == 1:
        return streams[0]
    it = Stream(streams[0])
    for s in streams[1:]:
        it = Dedup(it, Stream(s))
    out = []
    while it.next():
        out.append(it.at())
    return out


def union(chunks):
    """Every timestamp once, with every value any replica has there."""
    by_t = {}
    for c in chunks:
        for t, v, r in c[4]:
            by_t.setdefault(t, set()).add(v)
    return [(t, by_t[t]) for t in sorted(by_t)]


# --- comparing and measuring -----------------------------------------------------------

def stats(series_samples, replicas_at):
    """Replica switches per series and pairs of samples < 5 s apart."""
    switches, close = 0, 0
    for name, samples in series_samples.items():
        prev_r, prev_t = None, None
        for t, _ in samples:
            rs = replicas_at.get((name, t), set())
            if prev_r is not None and prev_r not in rs and rs:
                switches += 1
            if prev_r is None or prev_r not in rs:
                prev_r = min(rs) if rs else prev_r
            if prev_t is not None and t - prev_t < 5000:
                close += 1
            prev_t = t
    n = max(1, len(series_samples))
    return "%d series, %.2f replica switches per series, %d pairs of samples < 5 s apart" % (
        len(series_samples), switches / n, close)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("--func", choices=["penalty", "one-to-one"], required=True)
    c.add_argument("--dump", required=True)
    c.add_argument("--inputs", required=True)
    c.add_argument("--output", required=True)
    c.add_argument("--replica-label", default="replica")
    c.add_argument("--no-compare", action="store_true")
    args = ap.parse_args()

    blocks = load_inputs(args.inputs, args.dump, args.replica_label)
    replicas_at = {}
    for _, _, replica, per_series in blocks:
        for name, chunks in per_series.items():
            for c in chunks:
                for t, _, r in c[4]:
                    replicas_at.setdefault((name, t), set()).add(r)
    want = {}
    for run in overlap_runs(blocks):
        names = sorted(set(n for b in run for n in b[3]))
        for name in names:
            chunks = [c for b in run for c in b[3].get(name, [])]
            got = penalty(chunks) if args.func == "penalty" else union(chunks)
            want.setdefault(name, []).extend(got)
    want = {n: s for n, s in want.items() if s}

    out = {}
    for b in blocks_in(args.output):
        for name, samples in dump_block(args.dump, b).items():
            out.setdefault(name, []).extend(samples)
    for s in out.values():
        s.sort()

    # How many output chunks are a source chunk's bytes (copied rather than re-encoded).
    source_chunks = set(c[3] for _, _, _, ps in blocks for cs in ps.values() for c in cs)
    out_chunks = [c[3] for b in blocks_in(args.output) for cs in read_block(b)[0].values() for c in cs]
    print("chunks:  %d of %d output chunks are a source chunk's bytes" % (
        sum(1 for c in out_chunks if c in source_chunks), len(out_chunks)))
    if args.func == "penalty":
        print("querier: " + stats({n: [(t, v) for t, v, _ in s] for n, s in want.items()}, replicas_at))
    print("output:  " + stats(out, replicas_at))
    if args.no_compare:
        return 0
    n = 0
    for name in sorted(set(want) | set(out)):
        w, o = want.get(name, []), out.get(name, [])
        for k in range(max(len(w), len(o))):
            if k >= len(w) or k >= len(o):
                print("%s: %d samples, the reference %d; first extra %r" % (
                    name, len(o), len(w), (o[k] if k < len(o) else w[k])[:2]))
                return 1
            wt, ot = w[k][0], o[k][0]
            ok = wt == ot and (o[k][1] == w[k][1] if args.func == "penalty" else o[k][1] in w[k][1])
            if not ok:
                print("%s: sample %d is %s %s, the reference has %s %s" % (
                    name, k, ot, o[k][1], wt, w[k][1]))
                return 1
            n += 1
    print("equal: %d series, %d samples" % (len(want), n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
