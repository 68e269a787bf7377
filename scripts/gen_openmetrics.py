#!/usr/bin/env python3
"""Generate the deterministic OpenMetrics inputs for strata's golden blocks.

Usage: gen_openmetrics.py {varied|small} [--seed N] [--out FILE]
       gen_openmetrics.py replica --replica R [--seed N] [--out FILE]

The output is fed to `promtool tsdb create-blocks-from openmetrics` by
scripts/make-golden.sh. Everything is derived from a seeded PRNG and fixed
start times, so a given seed always yields byte-identical files (Python's
float repr is the shortest round-trip form, stable across versions).

OpenMetrics rules respected here (Prometheus 2.42 parser):
  * one `# TYPE` line per family, families never interleaved, `# EOF` last;
  * counter samples are named `<family>_total`;
  * label values escape only `\\`, `"` and newline; tabs and UTF-8 stay raw;
  * timestamps are seconds, fractional for millisecond precision. Prometheus
    computes `int64(float(ts) * 1000)` (truncation), so every timestamp
    written is checked to truncate back to the intended millisecond;
  * within a series, timestamps strictly increase.
"""

import argparse
import math
import random
import sys

STEP_MS = 15_000


def escape_label_value(v):
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def fmt_value(v):
    if math.isnan(v):
        return "NaN"
    if v == math.inf:
        return "+Inf"
    if v == -math.inf:
        return "-Inf"
    if isinstance(v, int):
        return str(v)
    if v == int(v) and abs(v) < 2**53:
        # Integral floats print without ".0"; -0.0 keeps its sign.
        return "-0" if math.copysign(1.0, v) < 0 and v == 0 else str(int(v))
    return repr(v)


def fmt_ts(ms):
    """Seconds with millisecond precision that Prometheus truncates back to ms."""
    sec, frac = divmod(ms, 1000)
    s = str(sec) if frac == 0 else "%d.%03d" % (sec, frac)
    if int(float(s) * 1000) == ms:
        return s
    # float(s)*1000 lands just below ms: use the next float up, printed exactly.
    f = math.nextafter(float(s), math.inf)
    while int(f * 1000) != ms:
        f = math.nextafter(f, math.inf)
    s = repr(f)
    assert int(float(s) * 1000) == ms, (ms, s)
    return s


class Writer:
    def __init__(self):
        self.lines = []
        self.families = set()
        self.series = 0
        self.samples = 0

    def family(self, name, mtype, help_text):
        assert name not in self.families, name
        self.families.add(name)
        self.lines.append("# HELP %s %s" % (name, help_text))
        self.lines.append("# TYPE %s %s" % (name, mtype))

    def series_samples(self, name, labels, points):
        """points: list of (ms, value), strictly increasing ms."""
        if not points:
            return
        if labels:
            lbl = "{" + ",".join('%s="%s"' % (k, escape_label_value(v)) for k, v in labels) + "}"
        else:
            lbl = ""
        last = None
        for ms, v in points:
            assert last is None or ms > last, (name, labels, ms, last)
            last = ms
            self.lines.append("%s%s %s %s" % (name, lbl, fmt_value(v), fmt_ts(ms)))
        self.series += 1
        self.samples += len(points)

    def text(self):
        return "\n".join(self.lines + ["# EOF"]) + "\n"


def grid(start_ms, end_ms, step=STEP_MS):
    return list(range(start_ms, end_ms, step))


# ---------------------------------------------------------------------------
# varied: ~300 series over 5h at 15s, cut by promtool into several 2h blocks.
# ---------------------------------------------------------------------------

# 2023-11-14T23:36:40Z. The 2h-aligned windows are [..., 1699999200000,
# 1700006400000, 1700013600000, 1700020800000, ...], so 5h from here touches
# four windows and promtool writes four blocks (first and last partial).
VARIED_START_MS = 1_700_005_000_000
VARIED_DURATION_MS = 5 * 3600 * 1000


def gen_varied(rnd):
    w = Writer()
    t0 = VARIED_START_MS
    t1 = t0 + VARIED_DURATION_MS
    full = grid(t0, t1)  # 1200 scrapes

    # 1. Counters with resets (to zero and to a smaller non-zero value) and
    #    missed scrapes. Integer and float increments.
    w.family("strata_requests", "counter", "Requests served, with counter resets.")
    # GET: integer counter scraped every 15s for 5h; POST: float counter, 1m.
    for code, method, rate, integral, every in [("200", "GET", 40, True, 1), ("500", "POST", 0.75, False, 4)]:
        pts, v = [], 0 if integral else 0.0
        for i, ts in enumerate(full):
            if i % every:
                continue
            if rnd.random() < 0.03:  # missed scrape
                continue
            if i == 300:  # reset to zero
                v = 0 if integral else 0.0
            elif i == 776:  # reset to a smaller non-zero value
                v = v // 7 if integral else v / 7.0
            else:
                v += rnd.randint(0, rate * 2) if integral else rnd.random() * rate * 2
            pts.append((ts, v))
        w.series_samples("strata_requests_total", [("code", code), ("method", method)], pts)

    # 2. Float gauge: random walk, full 5h, with a 20-minute outage (gap).
    w.family("strata_temperature_celsius", "gauge", "Float gauge random walk with a gap, every 30s.")
    pts, v = [], 21.5
    for i, ts in enumerate(full):
        v += rnd.gauss(0, 0.25)
        if i % 2 or 400 <= i < 480:
            continue
        pts.append((ts, round(v, 3)))
    w.series_samples("strata_temperature_celsius", [("sensor", "rack1")], pts)

    # 3. Integer gauge, full 5h: small integers that often repeat.
    w.family("strata_queue_depth", "gauge", "Integer gauge, scraped every minute.")
    pts, v = [], 10
    for ts in full[::4]:
        if rnd.random() < 0.2:
            v = max(0, v + rnd.randint(-3, 3))
        pts.append((ts, v))
    w.series_samples("strata_queue_depth", [("queue", "ingest")], pts)

    # 4. Values chosen to exercise the XOR float encoding. Each series starts
    #    late and/or ends early (different spans).
    w.family("strata_xor_values", "gauge", "Values exercising XOR encoding edge cases.")
    cases = []

    def span(a, b, every=1):
        return grid(t0 + a * STEP_MS, t0 + b * STEP_MS, every * STEP_MS)

    cases.append(("large", [(ts, rnd.uniform(1, 9) * 10.0 ** rnd.randint(280, 308)) for ts in span(10, 70)]))
    cases.append(("tiny", [(ts, rnd.uniform(1, 9) * 10.0 ** rnd.randint(-310, -290)) for ts in span(50, 110)]
                  + [(t0 + 111 * STEP_MS, 5e-324), (t0 + 112 * STEP_MS, 2.2250738585072014e-308)]))
    cases.append(("negative", [(ts, -rnd.expovariate(0.001)) for ts in span(440, 500)]))
    # long runs of one value (XOR writes a single 0 bit), across a block boundary
    cases.append(("repeated", [(ts, 42.0 if (i // 50) % 2 == 0 else 42.5) for i, ts in enumerate(span(0, 1200, 4))]))
    special_cycle = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1.0, math.nan, math.nan,
                     -1.0, math.inf, 3.14159, -math.inf, 1e308, -1e-308]
    cases.append(("special", [(ts, special_cycle[i % len(special_cycle)]) for i, ts in enumerate(span(600, 712))]))
    cases.append(("alternating", [(ts, (1e200 if i % 2 else -1e-200) * (1 + i)) for i, ts in enumerate(span(700, 760))]))
    cases.append(("big_int", [(ts, 2**53 + 2 * i) for i, ts in enumerate(span(200, 240))]
                  + [(ts, -(2**62) + 1024 * i) for i, ts in enumerate(span(240, 260))]))
    cases.append(("fraction", [(ts, rnd.randint(0, 1000) / 1024.0) for ts in span(1139, 1199)]))
    for case, pts in cases:
        w.series_samples("strata_xor_values", [("case", case)], pts)

    # 5. Irregular timestamps: delta-of-delta in every bit-width bucket of the
    #    Gorilla timestamp encoding (0, 14, 17, 20 and 64 bits), in both signs,
    #    plus large jumps (hours) inside one 2h block and across blocks.
    w.family("strata_jitter", "gauge", "Series with irregular timestamps.")
    # 5a. millisecond jitter around 15s for 1.5h: dod mostly within 14 bits.
    pts, ts = [], t0 + 3600_000 + 3
    while ts < t0 + 3600_000 + 5400_000:
        pts.append((ts, rnd.randint(0, 100)))
        ts += STEP_MS + rnd.randint(-700, 700)
    w.series_samples("strata_jitter", [("pattern", "ms_noise")], pts)
    # 5b. a scripted sequence of deltas cycling through the buckets.
    deltas = [15_000, 15_000, 15_000,  # dod 0
              15_001, 14_999, 15_000,  # dod +-1, +-2
              23_000, 15_000,  # dod +8000 / -8000 (14-bit)
              40_000, 15_000,  # +-25000 (17-bit)
              80_000, 15_000,  # +-65000 (17-bit edge), back
              415_000, 15_000,  # +-400000 (20-bit)
              3_615_000, 15_000,  # +-3.6e6 (64-bit): 1h jump within a block
              1, 2, 15_000, 15_000,  # tiny deltas, then a big positive dod
              15_000 + 524_288, 15_000 + 524_289, 15_000, 15_000,  # 20-bit edge, 64-bit edge
              23_192, 15_000, 80_536, 15_000]  # dod +8192 (14-bit edge), -8192 (17-bit), +-65536
    pts, ts, i = [], t0 + 15_007, 0
    while ts < t1:
        pts.append((ts, float(i % 17)))
        ts += deltas[i % len(deltas)]
        i += 1
    w.series_samples("strata_jitter", [("pattern", "dod_buckets")], pts)
    # 5c. sparse series with multi-hour jumps across blocks.
    jumps = [t0 + 1_000, t0 + 16_000, t0 + 31_000,
             t0 + 4 * 3600_000 + 123, t0 + 4 * 3600_000 + 15_123,
             t1 - 15_000 * 3 - 7, t1 - 15_000 * 2, t1 - 1]
    w.series_samples("strata_jitter", [("pattern", "jumps")], [(ts, float(k)) for k, ts in enumerate(jumps)])

    # 6. Label values with characters that need escaping or are non-ASCII.
    w.family("strata_label_escapes", "gauge", "Label values with quotes, backslashes, newlines, tabs, UTF-8.")
    values = [
        ('quote', 'say "hi"'),
        ('backslash', 'C:\\path\\to\\file'),
        ('newline', 'line1\nline2'),
        ('tab', 'col1\tcol2'),
        ('accent', 'café é'),
        ('cjk', '日本語のラベル'),
        ('emoji', 'rocket 🚀 party 🎉'),
        ('mixed', 'a"b\\c\nd\te 日本 é 🚀'),
        ('trailing_backslash', 'ends with \\'),
        ('only_quote', '"'),
    ]
    for k, (kind, val) in enumerate(values):
        pts = [(ts, float(k * 10 + j)) for j, ts in enumerate(grid(t0 + k * 60_000, t0 + k * 60_000 + 12 * STEP_MS))]
        w.series_samples("strata_label_escapes", [("kind", kind), ("value", val)], pts)

    # 7. A classic (non-native) histogram family: _bucket/_count/_sum series.
    w.family("strata_latency_seconds", "histogram", "Classic histogram, le buckets as labels.")
    bounds = ["0.05", "0.1", "0.5", "1", "+Inf"]
    hts = grid(t0 + 3600_000, t0 + 3600_000 + 40 * 60_000, 60_000)  # 40 points, 1m apart
    counts = [0] * len(bounds)
    total = 0.0
    rows = {b: [] for b in bounds}
    sums, cnts = [], []
    for ts in hts:
        for _ in range(rnd.randint(0, 20)):
            x = rnd.expovariate(4.0)
            total += x
            for j, b in enumerate(bounds):
                if b == "+Inf" or x <= float(b):
                    counts[j] += 1
        for j, b in enumerate(bounds):
            rows[b].append((ts, counts[j]))
        sums.append((ts, round(total, 6)))
        cnts.append((ts, counts[-1]))
    for b in bounds:
        w.series_samples("strata_latency_seconds_bucket", [("handler", "/api"), ("le", b)], rows[b])
    w.series_samples("strata_latency_seconds_count", [("handler", "/api")], cnts)
    w.series_samples("strata_latency_seconds_sum", [("handler", "/api")], sums)

    # 8. An untyped family with no labels other than the name.
    w.family("strata_untyped", "unknown", "Series with only a metric name.")
    w.series_samples("strata_untyped", [], [(ts, float(i)) for i, ts in enumerate(grid(t0, t1, 300_000))])

    # 9. Many series: a fleet of 270 hosts, each alive for a random window
    #    (starting late / ending early), scraped every 15s with missed scrapes.
    #    A few long-lived ones, scraped every minute for 1-2h, cross a block boundary.
    w.family("strata_fleet_up", "gauge", "Many short-lived series.")
    n_hosts = 270
    for h in range(n_hosts):
        start, length, every = rnd.randrange(0, 1200 - 10), rnd.randint(1, 5), 1
        if h % 45 == 0:
            start, length, every = rnd.randrange(0, 90), rnd.randint(60, 120), 4
        end = min(1200, start + length * every)
        pts = []
        for i in range(start, end, every):
            if rnd.random() < 0.1 and i != start:
                continue
            pts.append((t0 + i * STEP_MS, 1 if rnd.random() < 0.95 else 0))
        labels = [("dc", ["ams", "fra", "日本"][h % 3]), ("host", "h%03d" % h)]
        w.series_samples("strata_fleet_up", labels, pts)

    return w


# ---------------------------------------------------------------------------
# small: one 2h block, a handful of series, < 200 samples.
# ---------------------------------------------------------------------------

# 2023-11-14T22:40:00Z: well inside the window [1699999200000, 1700006400000).
SMALL_START_MS = 1_700_001_600_000


def gen_small(rnd):
    w = Writer()
    t0 = SMALL_START_MS
    ts30 = grid(t0, t0 + 30 * STEP_MS)  # 30 scrapes, 7.5 minutes

    w.family("small_requests", "counter", "Counter with one reset.")
    v, pts = 0, []
    for i, ts in enumerate(ts30):
        v = 0 if i == 20 else v + rnd.randint(1, 9)
        pts.append((ts, v))
    w.series_samples("small_requests_total", [("job", "api")], pts)

    w.family("small_temperature", "gauge", "Float gauge with a gap.")
    w.series_samples("small_temperature", [("room", "a")],
                     [(ts, round(20 + rnd.gauss(0, 1), 2)) for i, ts in enumerate(ts30) if not 10 <= i < 14])
    w.series_samples("small_temperature", [("room", "b")],
                     [(ts, round(18 + rnd.gauss(0, 1), 2)) for ts in ts30[5:25]])

    w.family("small_special", "gauge", "NaN, infinities and an escaped label value.")
    cycle = [1.5, math.nan, math.inf, -math.inf, -2.25]
    w.series_samples("small_special", [("note", 'quote " backslash \\ é')],
                     [(ts, cycle[i % len(cycle)]) for i, ts in enumerate(ts30[:20])])

    w.family("small_up", "gauge", "Integer gauge.")
    w.series_samples("small_up", [("instance", "localhost:9090"), ("job", "prometheus")],
                     [(ts, 1) for ts in ts30])
    return w


# ---------------------------------------------------------------------------
# replica: what HA replica R (0, 1 or 2) of one Prometheus pair/triple scraped,
# 44 series over 6h, for the deduplication tests (tests/cli/dedup.rs).
# ---------------------------------------------------------------------------

# 2023-11-14T22:00:00Z, a multiple of 2h: promtool writes three 2h blocks.
REPLICA_START_MS = 1_699_999_200_000
REPLICA_DURATION_MS = 6 * 3600 * 1000
REPLICA_SERIES = 44
# Each replica is down for a while, at a different time (start, end) in minutes from
# the start: replica 1's outage spans the 4h block boundary.
REPLICA_OUTAGES = [(65, 85), (230, 250), (300, 312)]


def gen_replica(replica, seed):
    """The underlying values are functions of time shared by every replica; what
    differs is when each replica scrapes: 1 s after the one before it, with +-1.5 s
    of jitter on every scrape, its own outage, its own missed scrapes."""
    w = Writer()
    t0, t1 = REPLICA_START_MS, REPLICA_START_MS + REPLICA_DURATION_MS
    out0, out1 = (t0 + m * 60_000 for m in REPLICA_OUTAGES[replica])
    jitter = random.Random(seed * 1000 + replica)
    shared = random.Random(seed)
    kinds = []
    for i in range(REPLICA_SERIES):
        step = [15_000, 15_000, 30_000, 10_000][i % 4]
        start, end = t0, t1
        if i in (5, 6, 21):  # late-starting series
            start = t0 + (150 + 7 * i) * 60_000
        if i in (7, 8, 30):  # early-ending series
            end = t0 + (220 + 3 * i) * 60_000
        only = 0 if i == 9 else 1 if i == 10 else None  # targets one replica alone scrapes
        resets = sorted(shared.randrange(t0, t1) for _ in range(i % 3))  # counter resets
        kinds.append((i, step, start, end, only, resets, shared.uniform(0.5, 20), shared.uniform(-50, 50)))

    def scrapes(step, start, end):
        # Scrape times of this replica: its offset, jitter, outage and 2% missed.
        pts, base = [], start + 1600 + 1000 * replica
        while base < end:
            ts = base + jitter.randint(-1500, 1500)
            if not out0 <= ts < out1 and jitter.random() >= 0.02 and (not pts or ts > pts[-1]):
                pts.append(ts)
            base += step
        return pts

    w.family("dedup_requests", "counter", "Counters shared by the replicas, with resets.")
    for i, step, start, end, only, resets, rate, _ in kinds:
        if i % 2 or only not in (None, replica):
            continue
        pts = []
        for ts in scrapes(step, start, end):
            since = max([start] + [r for r in resets if r <= ts])
            pts.append((ts, (ts - since) * rate // 1000))
        w.series_samples("dedup_requests_total", [("series", "c%02d" % i)], pts)

    w.family("dedup_level", "gauge", "Gauges shared by the replicas.")
    for i, step, start, end, only, _, rate, offset in kinds:
        if not i % 2 or only not in (None, replica):
            continue
        pts = [(ts, round(offset + 10 * math.sin(ts / (rate * 60_000)), 3)) for ts in scrapes(step, start, end)]
        w.series_samples("dedup_level", [("series", "g%02d" % i)], pts)
    return w


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fixture", choices=["varied", "small", "replica"])
    ap.add_argument("--replica", type=int, choices=[0, 1, 2], default=0)
    ap.add_argument("--seed", type=int, default=20231114)
    ap.add_argument("--out", default="-")
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    if args.fixture == "replica":
        w = gen_replica(args.replica, args.seed)
    else:
        w = {"varied": gen_varied, "small": gen_small}[args.fixture](rnd)
    text = w.text()
    if args.out == "-":
        sys.stdout.write(text)
    else:
        with open(args.out, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
    print("%s: %d families, %d series, %d samples" % (args.fixture, len(w.families), w.series, w.samples),
          file=sys.stderr)


if __name__ == "__main__":
    main()
