#!/usr/bin/env python3
"""Times PyTorch's attention on the shapes of `linseq bench attention` (bf16, on the GPU
machine): `scaled_dot_product_attention` with the flash backend for full causal attention,
and for the sliding window (which the flash backend cannot mask) both SDPA with an explicit
mask and `flex_attention` with a sliding-window block mask (tiles outside the window skipped,
as linseq does). FLOPs count 4·D per query-key pair the mask keeps, as linseq counts them.

    PYTHONPATH=tools python3 tools/peer_sdpa.py --json OUT.json
"""
import argparse

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from peer_common import report, row, time_s, write


def pairs(b, h, l, w):
    if w is None:
        return b * h * l * (l + 1) // 2
    return b * h * sum(min(i + 1, w) for i in range(l))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = []
    dev = "cuda"
    torch.manual_seed(0)
    # Full causal: B=8, L=4K, H=16, D=128.
    b, l, h, d = 8, 4096, 16, 128
    q, k, v = (torch.randn(b, h, l, d, device=dev, dtype=torch.bfloat16) for _ in range(3))
    flops = 4 * d * pairs(b, h, l, None)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        st = time_s(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
    r = row("attention", "torch.sdpa.flash.bf16", f"B={b} L={l} H={h}/{h} D={d} full", st, flops=flops)
    report(r)
    rows.append(r)
    # Sliding window 2048, GQA 8:1: B=8, L=16K, H=16, Hkv=2, D=128.
    b, l, h, hkv, d, w = 8, 16384, 16, 2, 128, 2048
    q = torch.randn(b, h, l, d, device=dev, dtype=torch.bfloat16)
    k, v = (torch.randn(b, hkv, l, d, device=dev, dtype=torch.bfloat16) for _ in range(2))
    flops = 4 * d * pairs(b, h, l, w)
    shape = f"B={b} L={l} H={h}/{hkv} D={d} W={w}"
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        def window(bb, hh, qi, kj):
            return (kj <= qi) & (qi - kj < w)

        mask = create_block_mask(window, None, None, l, l, device=dev)
        flex = torch.compile(flex_attention)
        st = time_s(lambda: flex(q, k, v, block_mask=mask, enable_gqa=True))
        r = row("attention", "torch.flex_attention.bf16", shape, st, flops=flops)
        report(r)
        rows.append(r)
    except Exception as e:  # noqa: BLE001 - report and go on to the masked SDPA
        print(f"flex_attention: {e}")
    qi = torch.arange(l, device=dev)[:, None]
    kj = torch.arange(l, device=dev)[None, :]
    dense = (kj <= qi) & (qi - kj < w)
    st = time_s(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=dense, enable_gqa=True), reps=5)
    r = row("attention", "torch.sdpa.masked.bf16", shape, st, flops=flops)
    report(r)
    rows.append(r)
    write(args.json, rows)


if __name__ == "__main__":
    main()
