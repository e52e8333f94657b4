#!/usr/bin/env python3
"""Rebuilds the tensor-frame test vectors from Protocol/frames.md alone.

Independent of the Swift code: Python's struct and zlib.crc32 build the header and checksum,
the zstd command-line tool (1.5.4, file input so the content size is declared, --no-check)
compresses the payload. Run from anywhere; writes next to this file and prints the README table.
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


def frame(values, level):
    raw = payload(values)
    body, flags = (raw, 0) if level is None else (zstd(raw, level), 1)
    header = b"TRBF" + bytes([1, 0]) + struct.pack("<HQQII", flags, len(values), len(body), zlib.crc32(raw), 0)
    assert len(header) == 32
    return header + body


SMALL = [1.0, -2.5, 0.0, 0.1, 65536.0]
WAVE = [math.sin(i * 0.1) * (1 + i / 1000) for i in range(1000)]  # rounded to float32 by struct

rows = []
for name, values in [("fp32-small", SMALL), ("fp32-wave-1000", WAVE)]:
    for suffix, level in [("raw", None), ("zstd3", 3)]:
        stem = f"{name}-{suffix}"
        for extension, data in [("input.f32", payload(values)), ("frame", frame(values, level))]:
            path = os.path.join(HERE, f"{stem}.{extension}")
            with open(path, "wb") as f:
                f.write(data)
            rows.append((f"{stem}.{extension}", len(values), len(data), hashlib.sha256(data).hexdigest()))

for file, count, size, digest in rows:
    print(f"| `{file}` | {count} | {size} | `{digest}` |")
