#!/usr/bin/env python3
"""Times flash-linear-attention's chunked kernels on the shapes of `linseq bench ssd`.

- `chunk_simple_gla` computes what SSD computes: y_t = sum_{j<=t} (C_t . B_j) exp(cs_t - cs_j) dt_j x_j
  with cs the cumulative sum of dt*A. So q = C, k = B, v = dt*x, g = dt*A, scale = 1 (Mamba-2's
  shared B/C groups are expanded to every head, which is what fla needs).
- `chunk_gla` (a decay per key channel) and `chunk_delta_rule` (the delta rule in chunked WY
  form) are timed on the same shapes as further peers of the chunked family (linseq has no
  kernels for them yet).

Run on the GPU machine (PyTorch and Triton installed there), with fla's pure-Python wheels
carried in .whl/:

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:tools python3 tools/peer_fla.py --json OUT.json
"""
import argparse

import torch
from fla.ops.delta_rule import chunk_delta_rule
from fla.ops.gla import chunk_gla
from fla.ops.simple_gla import chunk_simple_gla

from peer_common import report, row, time_s, write

# (batch, L, heads, head_dim P = V, state N = K, groups G of linseq's layout): fla's reference
# shape and Mamba-2-130M's layer. The labels match linseq's SsdCase labels.
SHAPES = [(8, 4096, 16, 128, 128, 16), (8, 4096, 24, 64, 128, 1), (8, 16384, 24, 64, 128, 1)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", help="write rows here")
    ap.add_argument("--ops", default="simple_gla,gla,delta_rule")
    ap.add_argument("--dtypes", default="bf16,f32", help="comma-separated: bf16, f32")
    args = ap.parse_args()
    ops = args.ops.split(",")
    rows = []
    torch.manual_seed(0)
    wanted = {"bf16": torch.bfloat16, "f32": torch.float32}
    for dtype in [wanted[d] for d in args.dtypes.split(",")]:
        tag = str(dtype).split(".")[-1]
        for (b, l, h, p, n, g) in SHAPES:
            dev = "cuda"
            shape = f"B={b} L={l} H={h} P={p} N={n} G={g}"
            q = torch.randn(b, l, h, n, device=dev, dtype=dtype)
            k = torch.randn(b, l, h, n, device=dev, dtype=dtype) / n**0.5
            v = torch.randn(b, l, h, p, device=dev, dtype=dtype)
            elt = q.element_size()
            io = (2 * b * l * h * n + 2 * b * l * h * p) * elt  # q, k, v, o
            for op in ops:
                name = f"fla.chunk_{op}.{tag}"
                try:
                    # Gates and betas are made outside the timed call: the kernel alone is timed.
                    if op == "simple_gla":
                        gg = -torch.rand(b, l, h, device=dev) * 0.5
                        fn = lambda: chunk_simple_gla(q, k, v, g=gg, scale=1.0, output_final_state=True)
                    elif op == "gla":
                        gk = torch.nn.functional.logsigmoid(torch.randn(b, l, h, n, device=dev, dtype=dtype))
                        fn = lambda: chunk_gla(q, k, v, g=gk, scale=1.0, output_final_state=True)
                    else:
                        kn = torch.nn.functional.normalize(k.float(), dim=-1).to(dtype)
                        beta = torch.rand(b, l, h, device=dev, dtype=dtype)
                        fn = lambda: chunk_delta_rule(q, kn, v, beta=beta, scale=1.0, output_final_state=True)
                    r = row("ssd-peer", name, shape, time_s(fn), bytes_=io)
                except Exception as e:  # an unsupported dtype, say: report and go on
                    print(f"{name:44} {shape:34} failed: {e}", flush=True)
                    continue
                report(r)
                rows.append(r)
                write(args.json, rows)  # after every row: a timeout keeps what was measured


if __name__ == "__main__":
    main()
