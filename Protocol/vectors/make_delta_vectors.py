#!/usr/bin/env python3
"""Rebuilds the parameter-delta test vectors from Protocol/frames.md ("Parameter deltas") alone.

Independent of the Swift code and of any library: Python's struct and zlib.crc32 build the
frames and the delta-chain container, the factor runs follow the low-rank codec's rules
(fp16 through struct's 'e' format, int8 blocks of 64 written out below), and every arithmetic
step of the reproducible decode and of the reconstruction is one binary32 operation, computed
in double and rounded to binary32 (which rounds a single +, - or x of binary32 values
correctly). The values come from an integer generator (SplitMix64), so no libm result is
involved. Frames are uncompressed, so no zstd is needed. Exact rationals (fractions) serve only
to count how many values two other decoding orders would change, for the README. Run from
anywhere; writes next to this file and prints the README table.
"""
import hashlib
import os
import struct
import zlib
from fractions import Fraction

HERE = os.path.dirname(os.path.abspath(__file__))
MASK = (1 << 64) - 1


# ---- binary32 and the tensor frame (frames.md, "Layout") ----

def f32(x):
    """Rounds a double to the nearest binary32, ties to even (the vectors never overflow)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def payload(values):
    return b"".join(struct.pack("<f", v) for v in values)


def make_frame(codec, count, raw, parameter=0):
    header = b"TRBF" + bytes([1, codec]) + struct.pack("<HQQII", 0, count, len(raw), zlib.crc32(raw), parameter)
    assert len(header) == 32
    return header + raw


# ---- deterministic values: SplitMix64, integers scaled by powers of two (exact in binary32) ----

def splitmix(seed):
    state = seed
    while True:
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        yield z ^ (z >> 31)


def wide_values(seed, count, exponents):
    """count values m · 2^(e − 23), m a nonzero integer in [−2^23, 2^23), e from `exponents`."""
    rng, out = splitmix(seed), []
    for _ in range(count):
        r = next(rng)
        m = (r >> 40) - (1 << 23) or 1
        out.append(m * 2.0 ** (exponents[(r & 0xFF) % len(exponents)] - 23))
    assert all(f32(v) == v for v in out)
    return out


def half_values(seed, count):
    """count values n · 2^(e − 10), n a nonzero integer in [−1023, 1023], e in −8…2: exact in binary16."""
    rng, out = splitmix(seed), []
    for _ in range(count):
        r = next(rng)
        n = (r >> 53) % 2047 - 1023 or 1
        out.append(n * 2.0 ** (-8 + (r & 0xFF) % 11 - 10))
    return out


# ---- low-rank runs (frames.md, "low-rank (id 6)") ----

def fp16_run(values):
    raw = b"".join(struct.pack("<e", v) for v in values)
    decoded = [struct.unpack("<e", raw[2 * i:2 * i + 2])[0] for i in range(len(values))]
    assert decoded == values, "fp16 run values must be exact in binary16"
    return raw, decoded


def int8_block(block):
    """One int8-block block: s = fl(max|x| / 127); q = round-half-even(fl(x / s)), clamped; value fl(q · s)."""
    scale = f32(max(abs(x) for x in block) / 127)
    assert scale > 0 and f32(scale * 127) != float("inf")
    qs = [max(-127, min(127, round(f32(x / scale)))) for x in block]
    return struct.pack("<f", scale) + bytes(q & 0xFF for q in qs), [f32(q * scale) for q in qs]


def int8_run(values):
    raw, decoded = b"", []
    for start in range(0, len(values), 64):  # every run starts a new block of 64
        r, d = int8_block(values[start:start + 64])
        raw += r
        decoded += d
    return raw, decoded


RUNS = {0: fp16_run, 1: int8_run}


def lowrank_frame(segments, value_codec):
    """segments: (rows, cols, values) dense, or (rows, cols, ps, qs) with rank len(ps).
    Returns the frame and, per segment, the decoded dense values or decoded factors."""
    run = RUNS[value_codec]
    table, runs, decoded = struct.pack("<I", len(segments)), b"", []
    for segment in segments:
        rows, cols = segment[0], segment[1]
        if len(segment) == 3:
            assert len(segment[2]) == rows * cols
            table += struct.pack("<III", rows, cols, 0)
            raw, values = run(segment[2])
            runs += raw
            decoded.append((rows, cols, values))
            continue
        ps, qs = segment[2], segment[3]
        rank = len(ps)
        assert rank == len(qs) >= 1 and rank * (rows + cols) < rows * cols
        table += struct.pack("<III", rows, cols, rank)
        dp, dq = [], []
        for p in ps:
            assert len(p) == rows
            raw, values = run(p)
            runs += raw
            dp.append(values)
        for q in qs:
            assert len(q) == cols
            raw, values = run(q)
            runs += raw
            dq.append(values)
        decoded.append((rows, cols, dp, dq))
    raw = table + runs
    count = sum(s[0] * s[1] for s in segments)
    assert len(raw) <= 4 * count
    return make_frame(6, count, raw, value_codec), decoded


# ---- the decodes: the reproducible one (normative for deltas) and two others to compare ----

def round_exact(x):
    """A Fraction rounded once to the nearest binary32, ties to even (normal range and below)."""
    if x == 0:
        return 0.0
    sign, a = (-1 if x < 0 else 1), abs(x)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1
    quantum = Fraction(2) ** (max(e, -126) - 23)
    q, r = divmod(a.numerator * quantum.denominator, a.denominator * quantum.numerator)
    half = a.denominator * quantum.numerator
    if 2 * r > half or (2 * r == half and q & 1):
        q += 1
    return sign * float(q * quantum)


def product(dp, dq, i, j, order):
    """M[i][j] of one factor segment. 'reproducible': k = 1…r in order, each product and each sum
    rounded to binary32. 'reversed': the same, k = r…1. 'fused': each step one fused
    multiply-add, acc = fl(acc + p·q) with p·q exact."""
    ks = list(range(len(dp)))
    if order == "reversed":
        ks.reverse()
    acc = f32(dp[ks[0]][i] * dq[ks[0]][j])
    for k in ks[1:]:
        exact = Fraction(acc) + Fraction(dp[k][i]) * Fraction(dq[k][j])
        if order == "fused" and exact != 0:
            acc = round_exact(exact)
        else:  # (an exact zero sum gets IEEE's signed zero, as a fused operation gives it too)
            acc = f32(acc + f32(dp[k][i] * dq[k][j]))
    return acc


def decode(decoded, order="reproducible"):
    out = []
    for segment in decoded:
        if len(segment) == 3:
            out += segment[2]
            continue
        rows, cols, dp, dq = segment
        out += [product(dp, dq, i, j, order) for i in range(rows) for j in range(cols)]
    return out


def apply(values, delta):
    """The reconstruction rule: values[i] + d[i], one binary32 rounding each."""
    assert len(values) == len(delta)
    return [f32(v + d) for v, d in zip(values, delta)]


def bits(values):
    return [struct.pack("<f", v) for v in values]


def differing(a, b):
    return sum(x != y for x, y in zip(bits(a), bits(b)))


# ---- the vectors ----

def factor_segment(rows, cols, rank, seed, value_codec, zero_row=None):
    """A rows × cols segment of `rank` factor pairs; p_k[zero_row] = 0 for every k (a zero row of
    M whose signs come from the q's)."""
    make = half_values if value_codec == 0 else (lambda s, n: wide_values(s, n, [-3, -2, -1, 0]))
    ps = [make(seed + k, rows) for k in range(rank)]
    qs = [make(seed + 100 + k, cols) for k in range(rank)]
    if zero_row is not None:
        for p in ps:
            p[zero_row] = 0.0
    return (rows, cols, ps, qs)


def dense_segment(cols, seed, value_codec):
    values = half_values(seed, cols) if value_codec == 0 else wide_values(seed, cols, [-3, -2, -1, 0])
    return (1, cols, values)


def single_delta_segments(value_codec):
    # A 16 × 12 matrix at rank 4 (row 3 all zero), a dense vector of 12, a 70 × 4 matrix at rank 2
    # (its 70-value p runs are int8 blocks of 64 and 6).
    return [
        factor_segment(16, 12, 4, 1000, value_codec, zero_row=3),
        dense_segment(12, 2000, value_codec),
        factor_segment(70, 4, 2, 3000, value_codec),
    ]


def single_delta_base(count, seed, zero_sign):
    """Row 3 of the first segment is a zero row of the delta (its element 7 is −0, the others +0):
    the base has zeros there, −0 where zero_sign[j] is '-', +0 where '+', its own value where '.'."""
    base = wide_values(seed, count, [-2, -1, 0])
    for j, sign in enumerate(zero_sign):
        if sign != ".":
            base[3 * 12 + j] = -0.0 if sign == "-" else 0.0
    return base


rows = []
notes = []


def write(name, data, count):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)
    rows.append((name, count, len(data), hashlib.sha256(data).hexdigest()))


for name, value_codec, seed, zero_sign in [("delta-lowrank-fp16", 0, 7, "-+-+.-+-+-+-"),
                                           ("delta-lowrank-int8", 1, 8, "+-+-.+-++-+-")]:
    frame, decoded = lowrank_frame(single_delta_segments(value_codec), value_codec)
    delta = decode(decoded)
    count = len(delta)
    base = single_delta_base(count, seed, zero_sign)
    expected = apply(base, delta)
    assert [str(d) for d in delta[36:48]] == ["0.0"] * 7 + ["-0.0"] + ["0.0"] * 4
    for order in ["reversed", "fused"]:
        other = decode(decoded, order)
        notes.append((name, order, differing(delta, other), differing(expected, apply(base, other))))
    write(f"{name}.base.f32", payload(base), count)
    write(f"{name}.frame", frame, count)
    write(f"{name}.delta.f32", payload(delta), count)
    write(f"{name}.expected.f32", payload(expected), count)

# A chain 5 → 8 of one shard (a 12 × 10 weight, a bias of 10, an 8 × 10 weight) in lowrank:2:int8,
# as a coordinator with that download codec would send it.
chain_from, chain_to = 5, 8
values = wide_values(50, 210, [-2, -1, 0])
base = list(values)
frames, others = [], {"reversed": list(values), "fused": list(values)}
for step in range(chain_to - chain_from):
    seed = 5000 + 1000 * step
    frame, decoded = lowrank_frame([
        factor_segment(12, 10, 2, seed, 1),
        dense_segment(10, seed + 500, 1),
        factor_segment(8, 10, 2, seed + 700, 1),
    ], 1)
    values = apply(values, decode(decoded))
    for order in others:
        others[order] = apply(others[order], decode(decoded, order))
    frames.append(frame)
chain = b"TRDC" + bytes([1, 0, 0, 0]) + struct.pack("<QQ", chain_from, chain_to)
for frame in frames:
    chain += struct.pack("<Q", len(frame)) + frame
full = make_frame(0, len(values), payload(values))
assert len(chain) < len(full), "a coordinator serves a chain only when it is smaller than the full body"
name = f"delta-chain-{chain_from}-{chain_to}"
for order, other in others.items():
    notes.append((name, order, None, differing(values, other)))
write(f"{name}.base.f32", payload(base), len(base))
write(f"{name}.chain", chain, len(base))
write(f"{name}.expected.f32", payload(values), len(values))
write(f"{name}.expected.frame", full, len(values))

for file, count, size, digest in rows:
    print(f"| `{file}` | {count} | {size} | `{digest}` |")
print()
for name, order, in_delta, in_result in notes:
    print(f"{name}: {order} changes {'' if in_delta is None else f'{in_delta} delta values and '}{in_result} result values")
print(f"chain frame sizes: {[len(f) for f in frames]}, chain {len(chain)} bytes, full body {len(full)} bytes")
