"""The figures of a scripts/gpu-report.sh run, in short: one line per `vramzip bench --json` output
(and one per products run), the products' side-by-side tables of the gemv bench, and the MiniLM
example's timing lines. Whatever of the run is there: a run cut short is summarized as far as it got.

usage: gpu-summary.py OUTDIR
"""
import glob
import json
import os
import sys

out = sys.argv[1]
for f in sorted(glob.glob(os.path.join(out, "bench-*.json"))):
    name = os.path.basename(f)
    try:
        d = json.load(open(f))
    except Exception as e:
        print(f"{name} unreadable: {e}")
        continue
    g = (d.get("gpu") or [{}])[0]
    cpu = d["cpu"][-1]
    print(f"{name:30} ratio {d['file_ratio']:.4f} cpu dec {cpu['decode_mb_s']:.0f} MB/s ({cpu['threads']} threads) | "
          f"gpu dec {g.get('decode_gb_s', 0):.1f} GB/s, copy {g.get('copy_gb_s', 0):.1f}, shader copy {g.get('shader_copy_gb_s', 0):.1f}, "
          f"dec/copy {g.get('decode_over_copy', 0):.3f}, dec/shader {g.get('decode_over_shader_copy', 0):.3f}, "
          f"load {g.get('load_compressed_s', 0) * 1e3:.1f}/{g.get('load_raw_s', 0) * 1e3:.1f} ms, exact {d['bit_exact']}/{g.get('bit_exact')}")
    for p in d.get("products") or []:
        print(f"{'':30} products batch {p['batch']}, {p['layers']} matrices: huffman {p['huffman_over_uncompressed']:.3f}x, "
              f"fixed {p.get('fixed_over_uncompressed') or 0:.3f}x the uncompressed time; resident {p['huffman_over_original']:.4f} / "
              f"{p.get('fixed_over_original') or 0:.4f} of the original; load {p.get('load')}; auto {p.get('auto')}")
for f in sorted(glob.glob(os.path.join(out, "gemv-*.txt"))):
    lines = open(f, errors="replace").read().splitlines()
    at = next((i for i, l in enumerate(lines) if "side by side" in l), None)
    print(f"{os.path.basename(f)}:")
    print("\n".join(lines[at:at + 10]) if at is not None else "  (no side-by-side table: cut short or failed; see the file)")
for f in sorted(glob.glob(os.path.join(out, "minilm-example-*.txt"))):
    keep = [l for l in open(f, errors="replace").read().splitlines()
            if any(k in l for k in ("VRAM", "same bits", "ms per", "measured faster", "rror"))]
    print(f"{os.path.basename(f)}:")
    print("\n".join(keep[:12]))
