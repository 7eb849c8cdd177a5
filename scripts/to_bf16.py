"""Cast every f32 tensor of a safetensors file to bf16 with round-to-nearest-even.

usage: to_bf16.py IN OUT [--only PREFIX ...] [--keep-f32 PREFIX ...] [--f16]
  --only      keep only tensors whose name starts with one of these prefixes
  --keep-f32  leave these tensors in f32 (so one file can hold several dtypes)
  --f16       cast to IEEE fp16 instead (numpy's cast, also round-to-nearest-even)
numpy has no bf16 type, so the rounding is done on the u32 bit patterns.
"""
import sys
import numpy as np
from safetensors.numpy import load_file, save_file


def f32_to_bf16_bits(a):
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    # a NaN must stay a NaN: keep its top bits and force a quiet mantissa bit
    out = np.where(nan, (u >> 16) | 0x40, rounded)
    return out.astype(np.uint16)


def main(argv):
    src, dst = argv[0], argv[1]
    only, keep = [], []
    cur = None
    f16 = "--f16" in argv
    for a in argv[2:]:
        if a == "--f16":
            continue
        if a == "--only":
            cur = only
        elif a == "--keep-f32":
            cur = keep
        else:
            cur.append(a)
    tensors = load_file(src)
    out = {}
    for name, t in tensors.items():
        if only and not any(name.startswith(p) for p in only):
            continue
        if t.dtype == np.float32 and f16 and not any(name.startswith(p) for p in keep):
            out[name] = t.astype(np.float16)
        elif t.dtype == np.float32 and not any(name.startswith(p) for p in keep):
            # safetensors.numpy cannot write bf16, so the bits travel as u16 and the
            # header's dtype is patched below
            out[name] = f32_to_bf16_bits(t)
        else:
            out[name] = t
    cast = "f16" if f16 else "bf16"
    save_file(out, dst, metadata={"source": src.rsplit("/", 1)[-1], "cast": f"{cast} round-to-nearest-even"})
    if not f16:
        patch_u16_to_bf16(dst)


def patch_u16_to_bf16(path):
    import json, struct
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    for k, v in header.items():
        if k != "__metadata__" and v["dtype"] == "U16":
            v["dtype"] = "BF16"
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        f.write(data)


if __name__ == "__main__":
    main(sys.argv[1:])
