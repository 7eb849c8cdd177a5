"""Compress the same files with vramzip's peers that install from PyPI (ZipNN, zstd) and print
their ratios and speeds as JSON: ZipNN on one thread ("zipnn") and on its default thread count
("zipnn-all"), best of three rounds, as `vramzip bench` times itself. Run by scripts/peers.sh inside its own virtual environment.

usage: peers.py [--zipnn-only] FILE.safetensors...
"""
import json
import struct
import sys
import time

import zstandard
from zipnn import ZipNN


def dominant_dtype(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    sizes = {}
    for k, v in header.items():
        if k != "__metadata__":
            s, e = v["data_offsets"]
            sizes[v["dtype"]] = sizes.get(v["dtype"], 0) + e - s
    return max(sizes, key=sizes.get)


ROUNDS = 3


def timed(f, *a):
    t0 = time.perf_counter()
    r = f(*a)
    return r, time.perf_counter() - t0


def main(args):
    zipnn_only = "--zipnn-only" in args
    paths = [a for a in args if a != "--zipnn-only"]
    out = []
    for p in paths:
        data = open(p, "rb").read()
        row = {"file": p, "bytes": len(data)}
        dtype = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}.get(dominant_dtype(p), "bfloat16")
        # one thread, and ZipNN's default (all logical CPUs, at most 16); best of ROUNDS each.
        # ZipNN 0.5.4 round-trips only given a bytearray and a fresh instance to decompress with
        for threads in [1, 0]:
            t_c = t_d = float("inf")
            for _ in range(ROUNDS):
                z = ZipNN(input_format="byte", bytearray_dtype=dtype, threads=threads)
                packed, t = timed(z.compress, bytearray(data))
                t_c = min(t_c, t)
                z = ZipNN(input_format="byte", bytearray_dtype=dtype, threads=threads)
                back, t = timed(z.decompress, packed)
                t_d = min(t_d, t)
                assert bytes(back) == data, "ZipNN round trip failed"
            name = "zipnn" if threads == 1 else "zipnn-all"
            row[name] = {"version": "0.5.4", "dtype": dtype, "threads": z.threads, "ratio": len(packed) / len(data),
                         "compress_mb_s": len(data) / t_c / 1e6, "decompress_mb_s": len(data) / t_d / 1e6}
        levels = [] if zipnn_only else [3, 19] if len(data) < 100_000_000 else [3]
        for level in levels:
            packed, t_c = timed(zstandard.ZstdCompressor(level=level).compress, data)
            back, t_d = timed(zstandard.ZstdDecompressor().decompress, packed)
            assert back == data
            row[f"zstd-{level}"] = {"ratio": len(packed) / len(data), "compress_mb_s": len(data) / t_c / 1e6,
                                    "decompress_mb_s": len(data) / t_d / 1e6}
        out.append(row)
        print(f"{p}: zipnn {row['zipnn']['ratio']:.4f}", file=sys.stderr)
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
