#!/usr/bin/env python3
"""Times flash-linear-attention's `chunk_simple_gla` on the shapes of `linseq bench ssd`.

SSD and simple GLA compute the same thing: y_t = sum_{j<=t} (C_t . B_j) exp(cs_t - cs_j) dt_j x_j
with cs the cumulative sum of dt*A. So q = C, k = B, v = dt*x, g = dt*A, scale = 1 (Mamba-2's
shared B/C groups are expanded to every head, which is what fla needs).

Run on the GPU machine (PyTorch and Triton installed there), with fla's pure-Python wheels
carried in .whl/ (see tools/gpu-machine-bench.sh):

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site python3 tools/peer_fla.py --json OUT.json

Prints one row per (dtype, shape) and writes the same fields as linseq's bench JSON rows.
"""
import argparse
import json

import torch
from fla.ops.simple_gla import chunk_simple_gla

# (batch, L, heads, head_dim P = V, state N = K): fla's reference shape and Mamba-2-130M's layer.
SHAPES = [(8, 4096, 16, 128, 128), (8, 4096, 24, 64, 128), (8, 16384, 24, 64, 128)]


def time_ms(fn, reps=50):
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2], times[0], times[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", help="write rows here")
    args = ap.parse_args()
    rows = []
    torch.manual_seed(0)
    for dtype in (torch.bfloat16, torch.float32):
        for (b, l, h, p, n) in SHAPES:
            dev = "cuda"
            q = torch.randn(b, l, h, n, device=dev, dtype=dtype)
            k = torch.randn(b, l, h, n, device=dev, dtype=dtype) / n**0.5
            v = torch.randn(b, l, h, p, device=dev, dtype=dtype)
            g = -torch.rand(b, l, h, device=dev, dtype=torch.float32) * 0.5
            shape = f"B={b} L={l} H={h} P={p} N={n}"
            name = f"fla.chunk_simple_gla.{str(dtype).split('.')[-1]}"
            try:
                med, lo, hi = time_ms(lambda: chunk_simple_gla(q, k, v, g=g, scale=1.0, output_final_state=True))
            except Exception as e:  # an unsupported dtype, say: report and go on
                print(f"{name:34} {shape:32} failed: {e}")
                continue
            print(f"{name:34} {shape:32} median {med:8.3f} ms  min {lo:8.3f}  max {hi:8.3f}")
            rows.append({"case": "ssd-peer", "variant": name, "shape": shape,
                         "stats": {"median": med / 1e3, "min": lo / 1e3, "max": hi / 1e3,
                                   "clock": "cuda-events"}})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"adapter": torch.cuda.get_device_name(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
