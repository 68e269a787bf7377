#!/usr/bin/env python3
"""Helper for scripts/make-native-histogram-block.sh: feeds native histograms
to a local Prometheus (2.42, --enable-feature=native-histograms
--web.enable-remote-write-receiver) and reads back what it stored. Standard
library only: the protobuf and snappy encodings are done by hand.

The data set is fixed (seeded PRNG, fixed timestamps): 200 steps, one a
minute, from START_MS (a 2h boundary) on. That is more than 3h, so the head
becomes compactable and Prometheus writes the first 2h, [START_MS,
START_MS+2h), as a block of its own.

Subcommands (URL is the Prometheus base URL, loopback only):
  send URL                           remote-write the data set, in time order
  sent --out FILE                    write the data set as JSON (prompb field values)
  snapshot URL                       POST /api/v1/admin/tsdb/snapshot?skip_head=false,
                                     print the snapshot's name (needs --web.enable-admin-api)
  expected URL --time-ms MS --range R --out FILE
                                     range-vector query every series, write the
                                     samples as Prometheus reports them
  check FILE --min-ms A --max-ms B   compare such a FILE with the data set's samples
                                     in [A, B)

Remote-write message: prometheus.WriteRequest from prompb/remote.proto and
prompb/types.proto at v2.42.0 (TimeSeries.histograms = 4; Histogram fields
count_int 1, count_float 2, sum 3, schema 4 (sint32), zero_threshold 5,
zero_count_int 6, zero_count_float 7, negative_spans 8, negative_deltas 9
(sint64), negative_counts 10 (double), positive_spans 11, positive_deltas 12,
positive_counts 13, reset_hint 14, timestamp 15; BucketSpan offset 1 (sint32),
length 2 (uint32)). The body is snappy block format made of literals only,
which every snappy decoder accepts.
"""

import argparse
import json
import math
import random
import struct
import sys
import urllib.error
import urllib.parse
import urllib.request

START_MS = 1_699_999_200_000  # 2023-11-14T22:00:00Z, a multiple of 2h
STEP_MS = 60_000
N_STEPS = 200  # 3h19m: steps 0..119 fall into the first 2h block
SEED = 4242

RESET_UNKNOWN, RESET_YES, RESET_NO, RESET_GAUGE = 0, 1, 2, 3
RESET_NAMES = {0: "UNKNOWN", 1: "YES", 2: "NO", 3: "GAUGE"}

# ---------------------------------------------------------------------------
# protobuf encoding
# ---------------------------------------------------------------------------


def varint(n):
    assert n >= 0
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def zigzag(n):
    return (n << 1) ^ (n >> 63) if n < 0 else n << 1


def key(field, wire):
    return varint(field << 3 | wire)


def f_varint(field, n):
    return key(field, 0) + varint(n)


def f_int64(field, n):
    return f_varint(field, n & 0xFFFFFFFFFFFFFFFF)


def f_sint(field, n):
    return f_varint(field, zigzag(n))


def f_double(field, x):
    return key(field, 1) + struct.pack("<d", x)


def f_bytes(field, b):
    return key(field, 2) + varint(len(b)) + b


def f_packed_sint(field, ns):
    return f_bytes(field, b"".join(varint(zigzag(n)) for n in ns)) if ns else b""


def f_packed_double(field, xs):
    return f_bytes(field, b"".join(struct.pack("<d", x) for x in xs)) if xs else b""


def enc_label(name, value):
    return f_bytes(1, name.encode()) + f_bytes(2, value.encode())


def enc_sample(ts, v):
    return f_double(1, v) + f_int64(2, ts)


def enc_span(offset, length):
    return f_sint(1, offset) + f_varint(2, length)


def enc_histogram(h):
    """h: dict as produced by Hist.snapshot()."""
    out = b""
    if h["float"]:
        out += f_double(2, h["count"])
    else:
        out += f_varint(1, h["count"])
    out += f_double(3, h["sum"])
    out += f_sint(4, h["schema"])
    out += f_double(5, h["zero_threshold"])
    if h["float"]:
        out += f_double(7, h["zero_count"])
    else:
        out += f_varint(6, h["zero_count"])
    for off, ln in h["negative_spans"]:
        out += f_bytes(8, enc_span(off, ln))
    if h["float"]:
        out += f_packed_double(10, h["negative_counts"])
    else:
        out += f_packed_sint(9, h["negative_deltas"])
    for off, ln in h["positive_spans"]:
        out += f_bytes(11, enc_span(off, ln))
    if h["float"]:
        out += f_packed_double(13, h["positive_counts"])
    else:
        out += f_packed_sint(12, h["positive_deltas"])
    if h["reset_hint"]:
        out += f_varint(14, h["reset_hint"])
    out += f_int64(15, h["timestamp"])
    return out


def enc_timeseries(labels, samples, histograms):
    out = b"".join(f_bytes(1, enc_label(k, v)) for k, v in sorted(labels.items()))
    out += b"".join(f_bytes(2, enc_sample(ts, v)) for ts, v in samples)
    out += b"".join(f_bytes(4, enc_histogram(h)) for h in histograms)
    return out


def snappy_literal_block(data):
    """Snappy block format using only literal elements (valid, uncompressed)."""
    out = bytearray(varint(len(data)))
    for i in range(0, len(data), 65536):
        chunk = data[i:i + 65536]
        n = len(chunk) - 1
        if n < 60:
            out.append(n << 2)
        elif n < 1 << 8:
            out += bytes([60 << 2, n])
        else:
            out += bytes([61 << 2]) + struct.pack("<H", n)
        out += chunk
    return bytes(out)


# ---------------------------------------------------------------------------
# the data set
# ---------------------------------------------------------------------------


def bucket_index(v, schema):
    """Index of the exponential bucket holding |v| (upper bound 2^(idx * 2^-schema))."""
    frac, exp = math.frexp(abs(v))  # |v| = frac * 2^exp, frac in [0.5, 1)
    if schema > 0:
        # idx = ceil(log2(|v|) * 2^schema), computed in float; exact boundaries don't
        # matter here since the data is defined by the indices we send.
        return math.ceil(math.log2(abs(v)) * (1 << schema))
    # For schema <= 0 use exact integer arithmetic on the exponent.
    if frac == 0.5:
        exp -= 1  # exact power of two: upper bound is inclusive
    return -((-exp) >> -schema) if schema < 0 else exp


class Hist:
    """A cumulative (or gauge) histogram; observations add weight to buckets."""

    def __init__(self, schema, zero_threshold, is_float=False):
        self.schema = schema
        self.zt = zero_threshold
        self.is_float = is_float
        self.reset()

    def reset(self):
        zero = 0.0 if self.is_float else 0
        self.pos, self.neg = {}, {}
        self.zero = zero
        self.count = zero
        self.sum = 0.0

    def observe(self, v, w=1):
        self.count += w
        self.sum += v * w
        if abs(v) <= self.zt:
            self.zero += w
            return
        side = self.pos if v > 0 else self.neg
        i = bucket_index(v, self.schema)
        side[i] = side.get(i, 0) + w

    def unobserve_bucket(self, side_name, idx, w=1):
        """For gauge histograms: take weight out of an existing bucket."""
        side = self.pos if side_name == "pos" else self.neg
        w = min(w, side.get(idx, 0))
        side[idx] -= w
        self.count -= w
        return w

    @staticmethod
    def spans(buckets, max_gap=2):
        """Spans and counts over the sorted bucket indexes; gaps up to max_gap are
        filled with empty buckets (as client_golang does)."""
        idxs = sorted(buckets)
        spans, counts = [], []
        prev_end = None
        for i in idxs:
            if prev_end is not None and i - prev_end <= max_gap:
                for _ in range(i - prev_end):
                    counts.append(0)
                spans[-1][1] += i - prev_end + 1
            else:
                spans.append([i if prev_end is None else i - prev_end, 1])
            counts.append(buckets[i])
            prev_end = i + 1
        return [tuple(s) for s in spans], counts

    def snapshot(self, ts, reset_hint=RESET_UNKNOWN):
        ps, pc = self.spans(self.pos)
        ns, nc = self.spans(self.neg)
        h = {
            "timestamp": ts,
            "float": self.is_float,
            "schema": self.schema,
            "zero_threshold": self.zt,
            "zero_count": self.zero,
            "count": self.count,
            "sum": self.sum,
            "reset_hint": reset_hint,
            "positive_spans": ps,
            "negative_spans": ns,
        }
        if self.is_float:
            h["positive_counts"], h["negative_counts"] = [float(c) for c in pc], [float(c) for c in nc]
        else:
            h["positive_deltas"], h["negative_deltas"] = deltas(pc), deltas(nc)
        return h


def deltas(counts):
    out, prev = [], 0
    for c in counts:
        out.append(c - prev)
        prev = c
    return out


def build_dataset():
    """Returns [(labels, [(ts, float)], [histogram dict])] over N_STEPS timestamps."""
    rnd = random.Random(SEED)
    tss = [START_MS + i * STEP_MS for i in range(N_STEPS)]
    series = []

    # A: schema 3 latency histogram, positive buckets + zero bucket; starts empty,
    #    new buckets appear over time; counter reset (hint UNKNOWN: TSDB detects it).
    h = Hist(3, 2.938735877055719e-39)  # client_golang's default zero threshold
    hs = []
    for i, ts in enumerate(tss):
        if i == 70:
            h.reset()
        if i > 0:
            for _ in range(rnd.randint(0, 6)):
                h.observe(0.0 if rnd.random() < 0.05 else rnd.lognormvariate(-3, 0.15 + i / 800))
        hs.append(h.snapshot(ts))
    series.append(({"__name__": "nh_request_duration_seconds", "job": "api", "instance": "a:8080"}, [], hs))

    # B: schema 0, positive and negative buckets, wide zero bucket; explicit
    #    counter reset with hint YES at step 50.
    h = Hist(0, 0.5)
    hs = []
    for i, ts in enumerate(tss):
        hint = RESET_UNKNOWN
        if i == 50:
            h.reset()
            hint = RESET_YES
        for _ in range(rnd.randint(1, 6)):
            h.observe(rnd.gauss(0, 40))
        hs.append(h.snapshot(ts, hint))
    series.append(({"__name__": "nh_temperature_change_celsius", "job": "sensor"}, [], hs))

    # C: gauge histogram (hint GAUGE), schema -2: bucket counts go up and down.
    h = Hist(-2, 0.001)
    hs = []
    for i, ts in enumerate(tss):
        for _ in range(rnd.randint(0, 5)):
            h.observe(rnd.choice([-1, 1]) * rnd.expovariate(0.01))
        if h.pos and rnd.random() < 0.6:
            idx = rnd.choice(sorted(h.pos))
            removed = h.unobserve_bucket("pos", idx, rnd.randint(1, 3))
            h.sum -= removed * 2.0 ** (idx * 4)  # keep sum plausible
        hs.append(h.snapshot(ts, RESET_GAUGE))
    series.append(({"__name__": "nh_queue_items", "job": "worker", "queue": "q1"}, [], hs))

    # D: float histogram (count_float, *_counts), schema 1, fractional weights.
    h = Hist(1, 0.5, is_float=True)
    hs = []
    for i, ts in enumerate(tss[5:100]):
        for _ in range(rnd.randint(1, 2)):
            h.observe(rnd.gauss(0, 6), w=rnd.choice([0.25, 0.5, 1.5]))
        if i % 7 == 0:
            h.observe(0.0, w=0.75)
        hs.append(h.snapshot(ts))
    series.append(({"__name__": "nh_weighted_float", "job": "batch"}, [], hs))

    # E: schema 8 (highest resolution), sparse observations far apart: many spans
    #    with large offsets, negative indexes (values < 1). Starts late.
    pool = [10.0 ** rnd.uniform(-6, 6) for _ in range(10)]
    h = Hist(8, 1e-9)
    hs = []
    for ts in tss[30:90]:
        for _ in range(rnd.randint(0, 2)):
            h.observe(rnd.choice(pool))
        hs.append(h.snapshot(ts))
    series.append(({"__name__": "nh_sparse_schema8", "job": "api"}, [], hs))

    # F: schema -4 (lowest resolution), values over 20 orders of magnitude, both signs.
    h = Hist(-4, 0.0)
    hs = []
    for ts in tss[::2]:
        for _ in range(rnd.randint(1, 3)):
            h.observe(rnd.choice([-1, 1]) * 10.0 ** rnd.uniform(-10, 10))
        hs.append(h.snapshot(ts))
    series.append(({"__name__": "nh_wide_schema_minus4", "job": "api"}, [], hs))

    # G: one series that switches from float samples to histograms half way.
    h = Hist(0, 1e-3)
    floats = [(ts, float(i)) for i, ts in enumerate(tss[:60])]
    hs = []
    for ts in tss[60:]:
        h.observe(rnd.expovariate(1.0))
        hs.append(h.snapshot(ts))
    series.append(({"__name__": "nh_float_then_histogram", "job": "mixed"}, floats, hs))

    # Plain float series in the same requests.
    v, fl = 0.0, []
    for ts in tss:
        v += rnd.randint(0, 10)
        fl.append((ts, v))
    series.append(({"__name__": "nh_requests_total", "job": "api", "instance": "a:8080"}, fl, []))
    specials = [1.5, -2.25, 0.0, math.inf, -math.inf, math.nan, 1e300, 5e-324]
    series.append(({"__name__": "nh_plain_gauge", "job": "api"},
                   [(ts, specials[i % len(specials)]) for i, ts in enumerate(tss)], []))
    return series


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------


def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        sys.exit("%s %s: HTTP %d: %s" % (method, url, e.code, e.read()[:1000].decode(errors="replace")))


def cmd_send(args):
    series = build_dataset()
    # Send in batches of 20 timestamps (all series per batch), like a remote-write
    # client flushing its queue: several appender commits in the head.
    tss = sorted({ts for _, fl, hs in series for ts in [s[0] for s in fl] + [h["timestamp"] for h in hs]})
    batches = [tss[i:i + 20] for i in range(0, len(tss), 20)]
    n_req = 0
    for b in batches:
        lo, hi = b[0], b[-1]
        msg = b""
        for labels, fl, hs in series:
            f = [(t, v) for t, v in fl if lo <= t <= hi]
            h = [x for x in hs if lo <= x["timestamp"] <= hi]
            if f or h:
                msg += f_bytes(1, enc_timeseries(labels, f, h))
        status, body = http("POST", args.url.rstrip("/") + "/api/v1/write", snappy_literal_block(msg), {
            "Content-Type": "application/x-protobuf",
            "Content-Encoding": "snappy",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
            "User-Agent": "strata-make-native-histogram-block",
        })
        if status // 100 != 2:
            sys.exit("remote write failed: %d %s" % (status, body[:500]))
        n_req += 1
    n_h = sum(len(hs) for _, _, hs in series)
    n_f = sum(len(fl) for _, fl, _ in series)
    print("sent %d requests: %d series, %d histogram samples, %d float samples, %d..%d ms"
          % (n_req, len(series), n_h, n_f, tss[0], tss[-1]), file=sys.stderr)


def cmd_sent(args):
    series = build_dataset()

    def jf(x):  # JSON has no NaN/Inf: write those (and every float) as Prometheus does
        return "NaN" if math.isnan(x) else "+Inf" if x == math.inf else "-Inf" if x == -math.inf else repr(x)

    out = []
    for labels, fl, hs in series:
        hs_out = []
        for h in hs:
            h = dict(h)
            h["reset_hint"] = RESET_NAMES[h["reset_hint"]]
            h["positive_spans"] = [list(s) for s in h["positive_spans"]]
            h["negative_spans"] = [list(s) for s in h["negative_spans"]]
            h["sum"] = jf(h["sum"])
            h["zero_threshold"] = jf(h["zero_threshold"])
            hs_out.append(h)
        out.append({"labels": dict(sorted(labels.items())),
                    "floats": [[t, jf(v)] for t, v in fl],
                    "histograms": hs_out})
    with open(args.out, "w") as f:
        json.dump({"comment": "Exactly what scripts/native_histograms.py remote-wrote (prompb field values; "
                              "floats as strings). Integer histograms carry bucket deltas, float histograms "
                              "absolute counts.",
                   "series": out}, f, indent=1)
        f.write("\n")


def cmd_snapshot(args):
    status, body = http("POST", args.url.rstrip("/") + "/api/v1/admin/tsdb/snapshot?skip_head=false")
    resp = json.loads(body)
    if resp.get("status") != "success":
        sys.exit("snapshot failed: %s" % body[:500])
    print(resp["data"]["name"])


def query(url, params):
    status, body = http("GET", url.rstrip("/") + "/api/v1/" + params[0] + "?" + urllib.parse.urlencode(params[1]))
    resp = json.loads(body)
    if resp.get("status") != "success":
        sys.exit("query failed: %s" % body[:500])
    return resp["data"]


def promql_selector(labels):
    return "{" + ",".join('%s=%s' % (k, json.dumps(v)) for k, v in sorted(labels.items())) + "}"


def write_samples_json(path, comment, series):
    """JSON with one sample per line: small diffs, easy to read."""
    with open(path, "w") as f:
        f.write('{"comment": %s,\n "series": [' % json.dumps(comment))
        for i, s in enumerate(series):
            f.write("%s\n  {\"labels\": %s,\n   \"samples\": [" % ("," if i else "", json.dumps(s["labels"])))
            for j, smp in enumerate(s["samples"]):
                f.write("%s\n    %s" % ("," if j else "", json.dumps(smp, separators=(",", ":"))))
            f.write("]}")
        f.write("]}\n")


def cmd_expected(args):
    # One query per series: Prometheus 2.42 returns wrong histograms when one
    # range-vector query holds a float-histogram series followed by an integer
    # one (every sample of the latter showed the former's last histogram).
    t = "%.3f" % (args.time_ms / 1000)
    lo = "%.3f" % ((args.time_ms - 3 * 3600_000) / 1000)
    names = query(args.url, ("series", {"match[]": '{__name__=~"nh_.+"}', "start": lo, "end": t}))
    out = []
    for labels in sorted(names, key=lambda m: sorted(m.items())):
        sel = promql_selector(labels) + "[%s]" % args.range
        data = query(args.url, ("query", {"query": sel, "time": t}))
        assert data["resultType"] == "matrix" and len(data["result"]) <= 1, data
        if not data["result"]:
            continue
        r = data["result"][0]
        samples = [[round(ts * 1000), v] for ts, v in r.get("values", [])]
        samples += [[round(ts * 1000), h] for ts, h in r.get("histograms", [])]
        samples.sort(key=lambda x: x[0])
        out.append({"labels": dict(sorted(r["metric"].items())), "samples": samples})
    comment = ("Prometheus 2.42 /api/v1/query of <series selector>[%s] at time=%d ms, one query per series: "
               "raw samples, [timestamp_ms, value]; a float value is a string, a histogram is "
               "{count, sum, buckets: [[boundary_rule, lower, upper, count], ...]} (empty buckets omitted; "
               "boundary_rule 0: (lower,upper], 1: [lower,upper), 2: (lower,upper), 3: [lower,upper])."
               % (args.range, args.time_ms))
    write_samples_json(args.out, comment, out)
    print("expected: %d series, %d samples" % (len(out), sum(len(s["samples"]) for s in out)), file=sys.stderr)


def upper_bound(idx, schema):
    return 2.0 ** (idx * 2.0 ** -schema)


def expected_buckets(h):
    """What Prometheus's JSON should list for a sent histogram: non-empty buckets as
    (rule, lower, upper, count) floats, negative, zero, positive."""
    out = []
    for side in ("negative", "positive"):
        if h["float"]:
            counts = h[side + "_counts"]
        else:
            counts, c = [], 0
            for d in h[side + "_deltas"]:
                c += d
                counts.append(c)
        k, idx = 0, None
        for off, ln in h[side + "_spans"]:
            idx = off if idx is None else idx + off
            for _ in range(ln):
                if counts[k]:
                    lo, hi = upper_bound(idx - 1, h["schema"]), upper_bound(idx, h["schema"])
                    out.append((1, -hi, -lo, counts[k]) if side == "negative" else (0, lo, hi, counts[k]))
                k += 1
                idx += 1
    if h["zero_count"]:
        out.append((3, -h["zero_threshold"], h["zero_threshold"], h["zero_count"]))
    return sorted(out, key=lambda b: b[1])


def close(a, b):
    return a == b or abs(a - b) <= 1e-12 * max(abs(a), abs(b))


def same_float(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


def cmd_check(args):
    """Compare an expected.json against the data set this script sends."""
    exp = json.load(open(args.expected))
    got = {json.dumps(s["labels"], sort_keys=True): s["samples"] for s in exp["series"]}
    errors, n = [], 0
    for labels, fl, hs in build_dataset():
        key_ = json.dumps(labels, sort_keys=True)
        want = [(t, ("f", v)) for t, v in fl if args.min_ms <= t < args.max_ms]
        want += [(h["timestamp"], ("h", h)) for h in hs if args.min_ms <= h["timestamp"] < args.max_ms]
        want.sort(key=lambda x: x[0])
        have = got.pop(key_, [])
        if len(want) != len(have):
            errors.append("%s: %d samples expected, %d reported" % (key_, len(want), len(have)))
            continue
        for (wt, (kind, wv)), (ht, hv) in zip(want, have):
            n += 1
            where = "%s @%d" % (key_, wt)
            if wt != ht:
                errors.append("%s: timestamp %d reported" % (where, ht))
            elif kind == "f":
                if not isinstance(hv, str) or not same_float(wv, parse_prom_float(hv)):
                    errors.append("%s: float %r, reported %r" % (where, wv, hv))
            else:
                if not isinstance(hv, dict):
                    errors.append("%s: histogram expected, reported %r" % (where, hv))
                    continue
                if float(hv["count"]) != wv["count"] or float(hv["sum"]) != wv["sum"]:
                    errors.append("%s: count/sum %r/%r, reported %s/%s" % (where, wv["count"], wv["sum"],
                                                                         hv["count"], hv["sum"]))
                wb = expected_buckets(wv)
                hb = sorted([(b[0], parse_prom_float(b[1]), parse_prom_float(b[2]), float(b[3]))
                             for b in hv.get("buckets", [])], key=lambda b: b[1])
                if len(wb) != len(hb) or not all(
                        w[0] == h[0] and close(w[1], h[1]) and close(w[2], h[2]) and w[3] == h[3]
                        for w, h in zip(wb, hb)):
                    errors.append("%s: buckets %r, reported %r" % (where, wb, hb))
    for k in got:
        errors.append("%s: reported but not sent" % k)
    for e in errors[:20]:
        print("MISMATCH", e[:400])
    if errors:
        sys.exit("%d mismatches" % len(errors))
    print("OK: %s agrees with the data sent: %d samples in [%d, %d)" % (args.expected, n, args.min_ms, args.max_ms))


def parse_prom_float(s):
    return float({"+Inf": "inf", "-Inf": "-inf"}.get(s, s))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("send")
    s.add_argument("url")
    s = sub.add_parser("sent")
    s.add_argument("--out", required=True)
    s = sub.add_parser("snapshot")
    s.add_argument("url")
    s = sub.add_parser("expected")
    s.add_argument("url")
    s.add_argument("--time-ms", type=int, required=True)
    s.add_argument("--range", default="2h")
    s.add_argument("--out", required=True)
    s = sub.add_parser("check")
    s.add_argument("expected")
    s.add_argument("--min-ms", type=int, required=True)
    s.add_argument("--max-ms", type=int, required=True)
    args = ap.parse_args()
    {"send": cmd_send, "sent": cmd_sent, "snapshot": cmd_snapshot, "expected": cmd_expected,
     "check": cmd_check}[args.cmd](args)


if __name__ == "__main__":
    main()
