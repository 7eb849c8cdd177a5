"""Make an LLM-shaped bf16 safetensors file whose values come from real trained weights.

usage: make_llm_shaped.py REAL_BF16.safetensors OUT.safetensors [--blocks N] [--first-block K] [--seed S]

Each output tensor has the shape of one Llama-3-8B transformer block's linear layers (q, k, v, o:
4096x4096, 1024x4096 for k and v; gate, up: 14336x4096; down: 4096x14336), filled by sampling
with replacement from the bf16 values of the real file's 2-D weight matrices. The histogram is
therefore that of real weights (unlike Gaussian noise), which is what the codec's ratio and the
GPU decoder's speed depend on.
"""
import json
import struct
import sys

import numpy as np

SHAPES = [
    ("self_attn.q_proj.weight", (4096, 4096)),
    ("self_attn.k_proj.weight", (1024, 4096)),
    ("self_attn.v_proj.weight", (1024, 4096)),
    ("self_attn.o_proj.weight", (4096, 4096)),
    ("mlp.gate_proj.weight", (14336, 4096)),
    ("mlp.up_proj.weight", (14336, 4096)),
    ("mlp.down_proj.weight", (4096, 14336)),
]


def read_bf16_matrices(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    pool = []
    for name, t in header.items():
        if name != "__metadata__" and t["dtype"] == "BF16" and len(t["shape"]) == 2:
            s, e = t["data_offsets"]
            pool.append(np.frombuffer(data[s:e], dtype=np.uint16))
    return np.concatenate(pool)


def main(argv):
    src, dst = argv[0], argv[1]
    blocks = int(argv[argv.index("--blocks") + 1]) if "--blocks" in argv else 1
    seed = int(argv[argv.index("--seed") + 1]) if "--seed" in argv else 0
    first = int(argv[argv.index("--first-block") + 1]) if "--first-block" in argv else 0
    pool = read_bf16_matrices(src)
    rng = np.random.default_rng(seed)
    header, chunks, offset = {}, [], 0
    for b in range(first, first + blocks):
        for name, shape in SHAPES:
            count = shape[0] * shape[1]
            values = pool[rng.integers(0, len(pool), size=count)]
            raw = values.astype("<u2").tobytes()
            header[f"model.layers.{b}.{name}"] = {
                "dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
            chunks.append(raw)
            offset += len(raw)
    header["__metadata__"] = {"source": "values sampled from " + src.rsplit("/", 1)[-1]}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for c in chunks:
            f.write(c)


if __name__ == "__main__":
    main(sys.argv[1:])
