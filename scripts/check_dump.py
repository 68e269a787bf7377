#!/usr/bin/env python3
"""Check that a `promtool tsdb dump` output holds exactly the samples of an
OpenMetrics input (as written by gen_openmetrics.py).

Usage: check_dump.py INPUT.om DUMP.txt

Compares the multiset of (labels, timestamp_ms, value bits) on both sides,
treating every NaN as equal to every NaN and keeping the sign of zero.
Prints a one-line summary; exits 1 on any difference.
"""

import math
import struct
import sys


def om_unescape(s):
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            n = s[i + 1]
            out.append({"\\": "\\", '"': '"', "n": "\n"}.get(n, "\\" + n))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def go_unquote_at(s, i):
    """Parse a Go strconv.Quote'd string starting at s[i] == '"'; return (str, next_i)."""
    assert s[i] == '"', (s, i)
    i += 1
    out = []
    simple = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "a": "\a", "b": "\b",
              "f": "\f", "v": "\v"}
    while True:
        c = s[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\":
            n = s[i + 1]
            if n in simple:
                out.append(simple[n])
                i += 2
            elif n == "x":
                out.append(chr(int(s[i + 2:i + 4], 16)))
                i += 4
            elif n == "u":
                out.append(chr(int(s[i + 2:i + 6], 16)))
                i += 6
            elif n == "U":
                out.append(chr(int(s[i + 2:i + 10], 16)))
                i += 10
            else:
                raise ValueError("bad escape in %r" % s)
        else:
            out.append(c)
            i += 1


def parse_labels_om(s, i):
    """OpenMetrics `{a="b",c="d"}` starting at s[i] == '{'."""
    labels = []
    assert s[i] == "{"
    i += 1
    while s[i] != "}":
        eq = s.index("=", i)
        name = s[i:eq]
        j = eq + 2  # skip ="
        k = j
        while s[k] != '"':
            k += 2 if s[k] == "\\" else 1
        labels.append((name, om_unescape(s[j:k])))
        i = k + 1
        if s[i] == ",":
            i += 1
    return labels, i + 1


def value_key(v):
    if math.isnan(v):
        return "NaN"
    return struct.pack("<d", v).hex()


def parse_float(tok):
    return float({"+Inf": "inf", "-Inf": "-inf", "Inf": "inf"}.get(tok, tok))


def read_om(path):
    samples = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            if "{" in line and line.index("{") < line.index(" "):
                b = line.index("{")
                name = line[:b]
                labels, i = parse_labels_om(line, b)
                rest = line[i:].split()
            else:
                name, *rest = line.split()
                labels = []
            value, ts = rest
            ls = tuple(sorted([("__name__", name)] + labels))
            samples.append((ls, int(float(ts) * 1000), value_key(parse_float(value))))
    return samples


def read_dump(path):
    samples = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            assert line.startswith("{"), line
            i, labels = 1, []
            while line[i] != "}":
                eq = line.index("=", i)
                name = line[i:eq]
                val, i = go_unquote_at(line, eq + 1)
                labels.append((name, val))
                if line[i] == ",":
                    i += 2  # ", "
            value, ts = line[i + 2:].split(" ")
            samples.append((tuple(sorted(labels)), int(ts), value_key(parse_float(value))))
    return samples


def main():
    om, dump = read_om(sys.argv[1]), read_dump(sys.argv[2])
    a, b = sorted(om), sorted(dump)
    series = len({s[0] for s in om})
    if a != b:
        sa, sb = set(a), set(b)
        print("MISMATCH: %d samples only in %s, %d only in %s" % (len(sa - sb), sys.argv[1], len(sb - sa), sys.argv[2]))
        for x in sorted(sa - sb)[:5]:
            print("  input only:", x)
        for x in sorted(sb - sa)[:5]:
            print("  dump only: ", x)
        sys.exit(1)
    print("OK: %s and %s agree: %d series, %d samples" % (sys.argv[1], sys.argv[2], series, len(a)))


if __name__ == "__main__":
    main()
