#!/usr/bin/env python3
"""Rebuilds the tensor-frame test vectors from Protocol/frames.md alone.

Independent of the Swift code: Python's struct and zlib.crc32 build the header, payloads and
checksum (struct's 'e' format is IEEE binary16 with round-half-even; the other codecs are
written out below from the spec's rules, in double arithmetic rounded to binary32 where the
spec rounds), the zstd command-line tool (1.5.4, file input so the content size is declared,
--no-check) compresses the payload. Run from anywhere; writes next to this file and prints the
README table.
"""
import hashlib
import math
import os
import struct
import subprocess
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def payload(values):
    return b"".join(struct.pack("<f", v) for v in values)


def zstd(data, level):
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "payload"), os.path.join(tmp, "payload.zst")
        with open(src, "wb") as f:
            f.write(data)
        subprocess.run(["zstd", "-q", "-f", f"-{level}", "--no-check", src, "-o", dst], check=True)
        with open(dst, "rb") as f:
            return f.read()


def make_frame(codec, count, raw, level, parameter=0):
    body, flags = (raw, 0) if level is None else (zstd(raw, level), 1)
    header = b"TRBF" + bytes([1, codec]) + struct.pack("<HQQII", flags, count, len(body), zlib.crc32(raw), parameter)
    assert len(header) == 32
    return header + body


def frame(values, level):
    return make_frame(0, len(values), payload(values), level)


# ---- binary32 helpers: every value below is a binary32 held in a Python float (a double) ----

def f32(x):
    """Rounds a double to the nearest binary32 (ties to even); ±Inf past the largest finite."""
    try:
        return struct.unpack("<f", struct.pack("<f", x))[0]
    except OverflowError:
        return math.copysign(math.inf, x)


def bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def from_bits(b):
    return struct.unpack("<f", struct.pack("<I", b))[0]


def le_f32(x):
    return struct.pack("<f", x)


# ---- codec 1: fp16 ----

def half_bytes(x):
    """IEEE binary16, round half to even; |x| that would round past 65504 saturates to ±65504."""
    try:
        return struct.pack("<e", x)
    except OverflowError:
        return struct.pack("<e", math.copysign(65504.0, x))


def fp16_codec(values):
    raw = b"".join(half_bytes(v) for v in values)
    decoded = [struct.unpack("<e", raw[2 * i:2 * i + 2])[0] for i in range(len(values))]
    return raw, decoded


# ---- codec 2: bf16 ----

def bf16_bits(x):
    b = bits(x)
    upper, lower = b >> 16, b & 0xFFFF
    if lower > 0x8000 or (lower == 0x8000 and upper & 1):  # round to nearest, ties to even
        upper += 1
    if upper & 0x7FFF == 0x7F80:  # rounded to infinity: saturate to the largest finite bfloat16
        upper = (upper & 0x8000) | 0x7F7F
    return upper


def bf16_codec(values):
    words = [bf16_bits(v) for v in values]
    return b"".join(struct.pack("<H", w) for w in words), [from_bits(w << 16) for w in words]


# ---- codecs 3 and 4: blockwise int8 / int4, and top-k's int8 values ----

def block_scale(block, levels):
    """fl32(max|x| / levels), one binary32 step down if fl32(scale · levels) would overflow."""
    scale = f32(max((abs(x) for x in block), default=0.0) / levels)
    if math.isinf(f32(scale * levels)):
        scale = from_bits(bits(scale) - 1)
    return scale


def quantize(block, levels):
    scale = block_scale(block, levels)
    if scale == 0:
        return scale, [0] * len(block)
    # Python's round() is round-half-to-even; x / scale in double, rounded to binary32, is the
    # correctly rounded binary32 quotient.
    return scale, [max(-levels, min(levels, round(f32(x / scale)))) for x in block]


def int8_section(block):
    scale, qs = quantize(block, 127)
    raw = le_f32(scale) + bytes(q & 0xFF for q in qs)
    return raw, [f32(q * scale) for q in qs]


def int4_section(block):
    scale, qs = quantize(block, 7)
    padded = qs + [0] * (len(qs) % 2)
    raw = le_f32(scale) + bytes((padded[j] & 0xF) | (padded[j + 1] & 0xF) << 4 for j in range(0, len(padded), 2))
    return raw, [f32(q * scale) for q in qs]


def blocks_codec(section):
    def codec(values, block_size):
        raw, decoded = b"", []
        for start in range(0, len(values), block_size):
            r, d = section(values[start:start + block_size])
            raw += r
            decoded += d
        return raw, decoded
    return codec


# ---- codec 5: top-k ----

def topk_count(n, fraction):
    """k = max(1, ceil(fraction · n)), products within 1e-9 (relative) of an integer taken as it."""
    if n == 0:
        return 0
    exact = fraction * n
    nearest = round(exact)
    k = nearest if abs(exact - nearest) <= 1e-9 * nearest else math.ceil(exact)
    return min(n, max(1, int(k)))


def topk_select(values, fraction):
    """The k largest |x|, the lower index first among equal magnitudes; returned in index order."""
    k = topk_count(len(values), fraction)
    chosen = sorted(range(len(values)), key=lambda i: (-abs(values[i]), i))[:k]
    return sorted(chosen)


def varint(value):
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def topk_codec(values, fraction, value_codec):
    indices = topk_select(values, fraction)
    raw = struct.pack("<I", len(indices))
    previous = -1
    for index in indices:
        raw += varint(index - previous - 1)
        previous = index
    kept = [values[i] for i in indices]
    section, sent = fp16_codec(kept) if value_codec == 0 else int8_section(kept)
    decoded = [0.0] * len(values)
    for index, value in zip(indices, sent):
        decoded[index] = value
    return raw + section, decoded


# ---- codec 6: low-rank ----

def lowrank_run(values, value_codec):
    """One run: binary16 values (value codec 0), or blocks of 64 as int8-block (1) or int4-block (2).
    The vectors' factors are exact in the value codec, so a run decodes to its own values."""
    if value_codec == 0:
        raw, decoded = fp16_codec(values)
    else:
        raw, decoded = blocks_codec(int8_section if value_codec == 1 else int4_section)(values, 64)
    assert decoded == values, "low-rank vector values must be exact in the value codec"
    return raw


def exact_f32(x):
    assert math.isfinite(x) and f32(x) == x, f"{x} is not exact in binary32"
    return x


def lowrank_codec(segments, value_codec):
    """segments: (rows, cols, values) dense, row-major, or (rows, cols, ps, qs) with rank = len(ps).
    Returns the raw payload and the decoded tensor, M[i][j] = sum over k of ps[k][i] * qs[k][j].
    Every product and every partial sum (in any order) is checked to be exact in binary32, so
    the decoded tensor does not depend on how an implementation sums."""
    table, runs, decoded = struct.pack("<I", len(segments)), b"", []
    for segment in segments:
        rows, cols = segment[0], segment[1]
        if len(segment) == 3:
            values = segment[2]
            assert len(values) == rows * cols
            table += struct.pack("<III", rows, cols, 0)
            runs += lowrank_run(values, value_codec)
            decoded += values
            continue
        ps, qs = segment[2], segment[3]
        rank = len(ps)
        assert rank == len(qs) >= 1 and rank * (rows + cols) < rows * cols
        assert all(len(p) == rows for p in ps) and all(len(q) == cols for q in qs)
        assert all(v != 0 for run in ps + qs for v in run), "no zero factors: no -0 products"
        table += struct.pack("<III", rows, cols, rank)
        for run in ps + qs:
            runs += lowrank_run(run, value_codec)
        for i in range(rows):
            for j in range(cols):
                products = [exact_f32(ps[k][i] * qs[k][j]) for k in range(rank)]
                for mask in range(1, 1 << rank):  # every partial sum, whatever the order
                    exact_f32(sum(products[k] for k in range(rank) if mask >> k & 1))
                decoded.append(sum(products))
    return table + runs, decoded


# ---- inputs ----

SMALL = [1.0, -2.5, 0.0, 0.1, 65536.0]
WAVE = [f32(math.sin(i * 0.1) * (1 + i / 1000)) for i in range(1000)]  # as in the fp32 vectors

# fp16/bf16 edge cases: ties in both directions, rounding past the largest finite value,
# subnormal halves and their ties, negative zero, and bfloat16's own ties and overflow.
HALF_EDGE = [f32(x) for x in [
    1.0, -2.5, 0.1, -0.0, 0.0,
    1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11,            # fp16 ties: to even (down, up)
    65504.0, 65519.0, 65520.0, -1.0e6, 3.0e38,         # largest half, last below the cut, saturation
    2.0 ** -14, 2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -25, -1.0e-6,  # fp16 subnormals and their ties
    1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8,              # bfloat16 ties: to even (down, up)
    from_bits(0x7F7FFFFF), -from_bits(0x7F7F8000),     # bfloat16 rounding past its largest finite value
    from_bits(0x00000001), 1.0e-40,                    # binary32 subnormals
]]

# int8/int4 blocks of 16 or 17: exact ties at the block's own scale, an all-zero block, a short last block.
BLOCK_EDGE = ([127.0, 2.5, 3.5, -2.5, -3.5, 0.5, 1.5, -0.5, 63.5, -127.0, 0.25, 100.0, -100.0, 1.0, -1.0, 0.0]
              + [0.0] * 16
              + [f32(0.001 * (i - 3)) for i in range(8)])
INT4_EDGE = ([7.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, -7.0, 6.5, 4.5, -4.5, 0.0, 1.0, -1.0, 5.0, 0.75]
             + [0.0] * 17
             + [f32(0.3 * (i - 2)) for i in range(6)])

# Top-k: small noise with spikes, so the selection, a tie at the threshold (three of the four
# |x| = 7.5 fit; index 19999 loses to lower indices), index 0, and 1-, 2- and 3-byte varints all occur.
SPIKES = [f32(0.5 * math.sin(i * 0.37)) for i in range(20000)]
for index, value in [(0, 50.0), (3, 3.0), (5, -7.5), (6, 100.0), (200, 7.5), (17000, -7.5), (19999, 7.5)]:
    SPIKES[index] = value

VECTORS = [
    # name, codec id, parameter, values, (raw payload, decoded) builder
    ("fp16-edge", 1, 0, HALF_EDGE, fp16_codec),
    ("fp16-wave-1000", 1, 0, WAVE, fp16_codec),
    ("bf16-edge", 2, 0, HALF_EDGE, bf16_codec),
    ("bf16-wave-1000", 2, 0, WAVE, bf16_codec),
    ("int8-b16-edge", 3, 16, BLOCK_EDGE, lambda v: blocks_codec(int8_section)(v, 16)),
    ("int8-b96-wave-1000", 3, 96, WAVE, lambda v: blocks_codec(int8_section)(v, 96)),
    ("int4-b17-edge", 4, 17, INT4_EDGE, lambda v: blocks_codec(int4_section)(v, 17)),
    ("int4-b48-wave-1000", 4, 48, WAVE, lambda v: blocks_codec(int4_section)(v, 48)),
    ("topk-fp16-spikes-20000", 5, 0, SPIKES, lambda v: topk_codec(v, 0.00025, 0)),
    ("topk-int8-spikes-20000", 5, 1, SPIKES, lambda v: topk_codec(v, 0.00025, 1)),
    ("topk-fp16-wave-1000", 5, 0, WAVE, lambda v: topk_codec(v, 0.01, 0)),
    ("topk-int8-wave-1000", 5, 1, WAVE, lambda v: topk_codec(v, 0.01, 1)),
]

# Low-rank vectors are defined by their factors (an encoder chooses its own): the input is the
# exact product, so input = expected. fp16: small halves and quarters; int8: integers with a
# largest |value| of 127 in every 64-block (scale exactly 1), and one run of halves up to 63.5
# (scale exactly 0.5).
LOWRANK_FP16 = [
    (12, 10, [[i - 5.5 for i in range(12)], [(-1) ** i * (1 + 0.25 * i) for i in range(12)]],
             [[j - 4.5 for j in range(10)], [0.75 + 0.5 * (j % 3) for j in range(10)]]),
    (1, 7, [0.5, -1.25, 3.0, 0.0, 1024.0, -0.125, 7.75]),
    (5, 9, [[1.0, -2.0, 0.5, 3.0, -1.5]], [[2.0, -1.0, 0.25, 4.0, -3.0, 1.5, -0.5, 1.0, 2.5]]),
    (2, 2, [1.5, -2.0, 0.75, 4.0]),
]
LOWRANK_INT8 = [
    (12, 10, [[127 - 23 * i for i in range(12)], [(-1) ** i * (17 + 10 * i) for i in range(12)]],
             [[127 - 25 * j for j in range(10)], [(-1) ** j * (127 - 13 * j) for j in range(10)]]),
    (1, 80, [(-1) ** i * (127 - 2 * (i % 64)) for i in range(80)]),
    (70, 3, [[127 - 4 * (i % 64) for i in range(70)]], [[63.5, -20.5, 8.0]]),
    (5, 9, [[127, -64, 33, -100, 5]], [[-127, 90, 45, -3, 1, 77, -50, 120, 64]]),
    (2, 2, [-127, 0, 64, 3]),
]
# int4: integers with a largest |value| of 7 in every 64-block (scale exactly 1); the 65-value
# p run spans a block of 64 and one of 1 (a padding nibble), the 5-value q run has odd length.
LOWRANK_INT4 = [
    (65, 5, [[7 - (i % 15) if i % 15 != 7 else 1 for i in range(65)]], [[7, -3, 2, -7, 5]]),
    (1, 9, [-7, 6, -5, 4, -3, 2, -1, 7, 1]),
    (6, 8, [[7, -2, 3, -4, 5, -6], [-1, 2, -7, 4, 1, 3]], [[1, -7, 2, 3, -1, 4, 5, -2], [7, 1, -1, 2, 6, -3, 1, 2]]),
]
LOWRANK_VECTORS = [
    # name, value codec (the codec parameter), segments
    ("lowrank-fp16-mixed", 0, LOWRANK_FP16),
    ("lowrank-int8-mixed", 1, LOWRANK_INT8),
    ("lowrank-int4-mixed", 2, LOWRANK_INT4),
]

rows = []


def write(stem, extension, data, count):
    path = os.path.join(HERE, f"{stem}.{extension}")
    with open(path, "wb") as f:
        f.write(data)
    rows.append((f"{stem}.{extension}", count, len(data), hashlib.sha256(data).hexdigest()))


for name, values in [("fp32-small", SMALL), ("fp32-wave-1000", WAVE)]:
    for suffix, level in [("raw", None), ("zstd3", 3)]:
        stem = f"{name}-{suffix}"
        write(stem, "input.f32", payload(values), len(values))
        write(stem, "frame", frame(values, level), len(values))

for name, codec, parameter, values, build in VECTORS:
    raw, decoded = build(values)
    assert len(decoded) == len(values) and all(math.isfinite(x) for x in decoded)
    for suffix, level in [("raw", None), ("zstd3", 3)]:
        stem = f"{name}-{suffix}"
        write(stem, "input.f32", payload(values), len(values))
        write(stem, "expected.f32", payload(decoded), len(values))
        write(stem, "frame", make_frame(codec, len(values), raw, level, parameter), len(values))

for name, value_codec, segments in LOWRANK_VECTORS:
    raw, decoded = lowrank_codec(segments, value_codec)
    for suffix, level in [("raw", None), ("zstd3", 3)]:
        stem = f"{name}-{suffix}"
        write(stem, "input.f32", payload(decoded), len(decoded))
        write(stem, "expected.f32", payload(decoded), len(decoded))
        write(stem, "frame", make_frame(6, len(decoded), raw, level, value_codec), len(decoded))

for file, count, size, digest in rows:
    print(f"| `{file}` | {count} | {size} | `{digest}` |")
