#!/usr/bin/env python3
"""Times flash-linear-attention's gated delta rule on the shapes of `linseq bench delta-rule`:
`chunk_gated_delta_rule` (chunked WY form, Triton) and `fused_recurrent_gated_delta_rule` (the
token loop), with q/k L2-normalised in the kernel, β = sigmoid, log-gates from logsigmoid, f32
initial state and final state out, in bf16 (fla's usual) and f32; and Kimi Delta Attention's
`chunk_kda` / `fused_recurrent_kda` (a log-gate per key channel) on fla's shape.

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:tools python3 tools/peer_fla_gdn.py --json OUT.json
"""
import argparse

import torch
import torch.nn.functional as F
from fla.ops.gated_delta_rule import chunk_gated_delta_rule, fused_recurrent_gated_delta_rule

try:
    from fla.ops.kda import chunk_kda, fused_recurrent_kda
except ImportError:  # an fla without KDA
    chunk_kda = fused_recurrent_kda = None

from peer_common import report, row, time_s, write

# (batch, L, key heads, value heads, dk, dv): labels match linseq's DeltaCase labels.
SHAPES = [(8, 4096, 16, 16, 128, 128), (1, 16384, 16, 32, 128, 128), (1, 4096, 16, 16, 128, 128), (1, 16384, 16, 16, 128, 128)]
KDA_SHAPES = [(8, 4096, 16, 128)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", help="write rows here")
    ap.add_argument("--dtypes", default="bf16,f32")
    args = ap.parse_args()
    rows = []
    torch.manual_seed(0)
    wanted = {"bf16": torch.bfloat16, "f32": torch.float32}
    for tag in args.dtypes.split(","):
        dtype = wanted[tag]
        for (b, l, hk, hv, dk, dv) in SHAPES:
            dev = "cuda"
            shape = f"B={b} L={l} H={hk}/{hv} dk={dk} dv={dv}"
            # fla takes q and k with the value heads' count: repeat the key heads (GQA-style).
            q = torch.randn(b, l, hk, dk, device=dev, dtype=dtype).repeat_interleave(hv // hk, dim=2)
            k = torch.randn(b, l, hk, dk, device=dev, dtype=dtype).repeat_interleave(hv // hk, dim=2)
            v = torch.randn(b, l, hv, dv, device=dev, dtype=dtype)
            g = F.logsigmoid(torch.randn(b, l, hv, device=dev, dtype=torch.float32))
            beta = torch.rand(b, l, hv, device=dev, dtype=dtype)
            s0 = torch.zeros(b, hv, dk, dv, device=dev, dtype=torch.float32)
            io = (2 * b * l * hk * dk + 2 * b * l * hv * dv) * q.element_size()
            for name, fn in [
                (f"fla.chunk_gated_delta_rule.{tag}", chunk_gated_delta_rule),
                (f"fla.fused_recurrent_gated_delta_rule.{tag}", fused_recurrent_gated_delta_rule),
            ]:
                try:
                    call = lambda: fn(q, k, v, g=g, beta=beta, initial_state=s0, output_final_state=True,
                                      use_qk_l2norm_in_kernel=True)
                    r = row("delta-rule-peer", name, shape, time_s(call), bytes_=io)
                except Exception as e:
                    print(f"{name:48} {shape:36} failed: {e}", flush=True)
                    continue
                report(r)
                rows.append(r)
                write(args.json, rows)
        if chunk_kda is None:
            print("fla has no fla.ops.kda: KDA not timed", flush=True)
            continue
        for (b, l, h, d) in KDA_SHAPES:
            dev = "cuda"
            shape = f"B={b} L={l} H={h}/{h} dk={d} dv={d}"
            q, k, v = (torch.randn(b, l, h, d, device=dev, dtype=dtype) for _ in range(3))
            g = F.logsigmoid(torch.randn(b, l, h, d, device=dev, dtype=torch.float32))
            beta = torch.rand(b, l, h, device=dev, dtype=dtype)
            s0 = torch.zeros(b, h, d, d, device=dev, dtype=torch.float32)
            io = 4 * b * l * h * d * q.element_size()
            for name, fn in [(f"fla.chunk_kda.{tag}", chunk_kda), (f"fla.fused_recurrent_kda.{tag}", fused_recurrent_kda)]:
                try:
                    call = lambda: fn(q, k, v, g=g, beta=beta, initial_state=s0, output_final_state=True,
                                      use_qk_l2norm_in_kernel=True)
                    r = row("delta-rule-peer", name, shape, time_s(call), bytes_=io)
                except Exception as e:
                    print(f"{name:48} {shape:36} failed: {e}", flush=True)
                    continue
                report(r)
                rows.append(r)
                write(args.json, rows)


if __name__ == "__main__":
    main()
