#!/usr/bin/env python3
"""Transcribes the data of Thanos's downsampling tests into thanos_cases.json.

  python3 transcribe_thanos_tests.py PATH/TO/pkg/compact/downsample/downsample_test.go > thanos_cases.json

Only inputs and expected outputs are taken (sample literals, resolutions, which cases
must fail); the Go test code is not. Values are JSON numbers, or the strings "NaN",
"StaleNaN", "+Inf", "-Inf". Checked against thanos-io/thanos@e103a81.
"""
import json
import math
import re
import struct
import sys

SRC = open(sys.argv[1]).read()
KEYS = {"AggrCount": "count", "AggrSum": "sum", "AggrMin": "min", "AggrMax": "max", "AggrCounter": "counter"}
STALE_BITS = 0x7FF0000000000002


def value(text):
    text = text.strip()
    if text == "math.Float64frombits(value.StaleNaN)":
        return "StaleNaN"
    if text in ("math.Float64frombits(value.NormalNaN)", "math.NaN()"):
        return "NaN"
    m = re.fullmatch(r"math\.Float64frombits\((\d+)\)", text)
    if m:
        bits = int(m.group(1))
        if bits == STALE_BITS:
            return "StaleNaN"
        f = struct.unpack("<d", struct.pack("<Q", bits))[0]
        return "NaN" if math.isnan(f) else f
    f = float(text)
    return int(f) if f == int(f) and abs(f) < 2**53 and "e" not in text and "." not in text else f


def tokens(text):
    """Sample literals become ("S", t, v); braces, commas, keys and names stay."""
    text = re.sub(r"//[^\n]*", "", text)
    pos = 0
    sample = re.compile(r"\s*\{t:\s*([^,]+?),\s*v:\s*([^}]+?)\}")
    tok = re.compile(r"\s*(\{|\}|,|Aggr\w+:|[A-Za-z_][\w.]*(?:\[\]\w+)*|\d+)")
    out = []
    while pos < len(text):
        m = sample.match(text, pos)
        if m:
            out.append(("S", int(m.group(1)), value(m.group(2))))
            pos = m.end()
            continue
        m = tok.match(text, pos)
        if not m:
            if text[pos].isspace():
                pos += 1
                continue
            raise ValueError("cannot tokenize at %r" % text[pos:pos + 40])
        out.append(m.group(1))
        pos = m.end()
    return out


def parse(toks, i=0):
    """Parses one value starting at toks[i]; returns (value, next index)."""
    t = toks[i]
    if isinstance(t, tuple):
        return [t[1], t[2]], i + 1
    # Skip a type name such as []sample or map[AggrType][]sample before a brace.
    while t != "{" and not isinstance(t, tuple):
        i += 1
        t = toks[i]
    assert t == "{"
    i += 1
    if isinstance(toks[i], str) and toks[i].endswith(":"):
        d = {}
        while toks[i] != "}":
            key = KEYS[toks[i][:-1]]
            v, i = parse(toks, i + 1)
            d[key] = v
            if toks[i] == ",":
                i += 1
        return d, i + 1
    lst = []
    while toks[i] != "}":
        v, i = parse(toks, i)
        lst.append(v)
        if toks[i] == ",":
            i += 1
    return lst, i + 1


def braced(text, start):
    """The text from the first '{' at or after start through its matching '}'."""
    i = text.index("{", start)
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j + 1]
    raise ValueError("unbalanced")


def literal(text):
    v, _ = parse(tokens(text))
    return v


def var(name):
    m = re.search(r"\b%s = " % name, SRC)
    return literal(braced(SRC, m.end()))


def field(case, name):
    m = re.search(r"\b%s:\s*" % name, case)
    if not m:
        return None
    rest = case[m.end():]
    ident = re.match(r"([A-Za-z_]\w*)\s*,", rest)
    if ident and ident.group(1) not in ("nil",):
        if ident.group(1).startswith("ResLevel"):
            return {"ResLevel1": 300000, "ResLevel2": 3600000}[ident.group(1)]
        if re.fullmatch(r"\d+", ident.group(1)):
            return int(ident.group(1))
        return var(ident.group(1))
    num = re.match(r"([\d* ]+),", rest)
    if num:
        return eval(num.group(1))
    return literal(braced(case, m.end()))


def downsample_cases():
    body = SRC[SRC.index("func TestDownsample(t *testing.T)"):]
    body = body[:body.index("t.Run(tcase.name")]
    cases = []
    for m in re.finditer(r'name:\s*"([^"]+)"', body):
        name = m.group(1)
        # The case literal: from the brace opening it to the matching one.
        start = body.rfind("{\n", 0, m.start())
        case = braced(body, start)
        c = {"name": name}
        if "inRaw:" in case:
            c["in_raw"] = field(case, "inRaw")
        if "inAggr:" in case:
            c["in_aggr"] = field(case, "inAggr") if "downsample500resolutionChunk" not in case else None
        c["resolution"] = field(case, "resolution")
        if "expectedDownsamplingErr" in case:
            c["error"] = True
        elif "expected:" in case:
            c["expected"] = field(case, "expected") if "downsample500resolutionChunk" not in case else None
        cases.append(c)
    # Built by closures in the Go file: transcribe what they build.
    for c in cases:
        if c["name"].startswith("downsampling already downsampled"):
            src = body[body.index("downsample500resolutionChunk :="):]
            chunk = literal(braced(src, 0))
            c["in_aggr"] = chunk
            c["expected"] = chunk
        if c["name"].startswith("downsampling four, 120 sample chunks"):
            c["in_aggr"] = [{"counter": [[120 * k + i, 120 * k + i] for i in range(120)]} for k in range(4)]
            c["expected"] = [{"counter": [[0, 0]] + [[1 + i, 1 + i] for i in range(0, 480, 2)] + [[479, 479]]}]
    return cases


def boundary_reset():
    body = SRC[SRC.index("func TestDownsampleCounterBoundaryReset"):]
    body = body[:body.index("doTest := func")]
    out = {}
    for go, key in [("raw", "raw"), ("rawCounterSamples", "raw_counter_samples"), ("rawCounterIterate", "raw_counter_iterate"),
                    ("aggrCounterSamples", "aggr_counter_samples"), ("aggrCounterIterate", "aggr_counter_iterate")]:
        m = re.search(r"\n\s*%s:\s*" % go, body)
        out[key] = literal(braced(body, m.end()))
    for go, key in [("rawAggrResolution", "raw_resolution"), ("expectedRawAggrChunks", "raw_chunks"), ("aggrChunks", "aggr_chunks")]:
        out[key] = int(re.search(r"\b%s:\s*(\d+)" % go, body).group(1))
    out["aggr_resolution"] = 2 * out["raw_resolution"]
    return out


def expand_iterator():
    body = SRC[SRC.index("func TestExpandChunkIterator"):]
    lits = re.findall(r"\[\]sample\{", body[:body.index("var (")])
    first = body.index("newSampleIterator([]sample")
    inp = literal(braced(body, first + len("newSampleIterator(")))
    exp_at = body.index("testutil.Equals(t, []sample")
    exp = literal(braced(body, exp_at))
    return {"input": inp, "expected": exp}


def counter_resets():
    body = SRC[SRC.index("func TestApplyCounterResetsIterator(t"):]
    body = body[:body.index("t.Run(tcase.name")]
    cases = []
    for m in re.finditer(r'name:\s*"([^"]+)"', body):
        start = body.rfind("{\n", 0, m.start())
        case = braced(body, start)
        if "realisticChkDataWithStaleMarker[0]," in case:
            a, b = var("realisticChkDataWithStaleMarker")
            chunks = [a] * 3 + [b] * 9
        elif "realisticChkDataWithCounterResetRes5m[0][AggrCounter]" in case:
            chunks = [var("realisticChkDataWithCounterResetRes5m")[0]["counter"]]
        else:
            chunks = field(case, "chunks")
        cases.append({"name": m.group(1), "chunks": chunks, "expected": field(case, "expected")})
    return cases


def aggr_and_xor(fn):
    body = SRC[SRC.index("func %s(" % fn):]
    body = body[:body.index("\nfunc ", 10)]
    aggr = literal(braced(body, body.index("aggr := map[AggrType][]sample")))
    out = {"aggr": aggr}
    m = re.search(r"app\.Append\((\d+), ([\d.]+)\)", body)
    out["raw"] = [[int(m.group(1)), float(m.group(2))]] if m else []
    if "expected := " in body:
        out["expected"] = literal(braced(body, body.index("expected := ")))
    return out


def read_resulting_data():
    body = SRC[SRC.index("func TestDownsampleAndReadResultingData"):]
    return literal(braced(body, body.index("data := []sample")))


json.dump({
    "source": "thanos-io/thanos@e103a81 pkg/compact/downsample/downsample_test.go",
    "downsample": downsample_cases(),
    "counter_boundary_reset": boundary_reset(),
    "expand_chunk_iterator": expand_iterator(),
    "apply_counter_resets": counter_resets(),
    "aggr_and_empty_xor": aggr_and_xor("TestDownsampleAggrAndEmptyXORChunks"),
    "aggr_and_non_empty_xor": aggr_and_xor("TestDownsampleAggrAndNonEmptyXORChunks"),
    "read_resulting_data": read_resulting_data(),
}, sys.stdout, separators=(",", ":"))
print()
