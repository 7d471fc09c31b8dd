#!/usr/bin/env python3
"""Times PyTorch on the shapes of `linseq bench s4` (f32, on the GPU machine), written the way
state-spaces/s4's models/s4/s4.py computes them without its CUDA extension or KeOps:
the naive Vandermonde kernel (S4D: exp(dtA·l) materialised per l), the naive Cauchy kernel
(S4: every (state, bin) term materialised) with the rank-1 Woodbury correction, 2/(1 + ω) and
irfft, and FFTConv's torch.fft convolution (rfft at n = 2L, product, irfft, D skip). The
layer rows are kernel generation + convolution, as in linseq's s4-layer rows.

    PYTHONPATH=tools python3 tools/peer_s4.py --json OUT.json [--max-len 1048576]
"""
import argparse
import math

import torch

from peer_common import report, row, time_s, write

DEV = "cuda"


def s4d_params(h, n):
    """S4D-Lin: A = -1/2 - i·π·n, B = 1, random C, Δ log-spaced over [0.001, 0.1]."""
    a = (-0.5 - 1j * math.pi * torch.arange(n, device=DEV)).to(torch.cfloat).expand(h, n)
    b = torch.ones(h, n, dtype=torch.cfloat, device=DEV)
    c = torch.randn(h, n, dtype=torch.cfloat, device=DEV)
    dt = torch.exp(torch.linspace(math.log(1e-3), math.log(1e-1), h, device=DEV))
    return dt, a, b, c


def vandermonde_kernel(dt, a, b, c, l):
    dta = dt[:, None] * a
    v = c * b * (torch.exp(dta) - 1.0) / a
    x = torch.exp(dta.unsqueeze(-1) * torch.arange(l, device=DEV))  # (H N L)
    return 2 * torch.einsum("hn,hnl->hl", v, x).real


def dplr_params(h, n):
    """A LegS-like DPLR state: Λ with Re = -1/2, spread imaginary parts, a rank-1 P."""
    lam = (-0.5 - 1j * math.pi * torch.arange(n, device=DEV)).to(torch.cfloat).expand(h, n)
    p = (torch.randn(1, h, n, dtype=torch.cfloat, device=DEV) * 0.5)
    b = torch.randn(h, n, dtype=torch.cfloat, device=DEV)
    c = torch.randn(1, h, n, dtype=torch.cfloat, device=DEV)
    dt = torch.exp(torch.linspace(math.log(1e-3), math.log(1e-1), h, device=DEV))
    return dt, lam, p, b, c


def cauchy_naive(v, z, w):
    v = torch.cat([v, v.conj()], dim=-1)
    w = torch.cat([w, w.conj()], dim=-1)
    return torch.sum(v.unsqueeze(-1) / (z - w.unsqueeze(-1)), dim=-2)


def dplr_kernel(dt, lam, p, b, c, l):
    omega = torch.tensor(complex(math.cos(-2 * math.pi / l), math.sin(-2 * math.pi / l)), device=DEV)
    omega = omega ** torch.arange(0, l // 2 + 1, device=DEV)
    z = 2 * (1 - omega) / (1 + omega)
    q = p.conj()
    bb = torch.cat([b.unsqueeze(0), p], dim=0)  # (2 H N)
    cc = torch.cat([c, q], dim=0)  # (2 H N)
    v = bb.unsqueeze(1) * cc.unsqueeze(0) * dt[:, None]  # (2 2 H N)
    r = cauchy_naive(v, z, lam * dt[:, None])  # (2 2 H L/2+1)
    k_f = r[:-1, :-1] - r[:-1, -1:] * r[-1:, :-1] / (1 + r[-1:, -1:])
    k_f = k_f * 2 / (1 + omega)
    return torch.fft.irfft(k_f, n=l)[0, 0]


def fft_conv(u, k, d):
    l = u.shape[-1]
    y = torch.fft.irfft(torch.fft.rfft(u, n=2 * l) * torch.fft.rfft(k, n=2 * l), n=2 * l)[..., :l]
    return y + u * d[:, None]


def attempt(rows, case, variant, shape, fn, bytes_=0.0):
    try:
        st = time_s(fn, reps=10, min_s=0.1)
    except torch.cuda.OutOfMemoryError:
        print(f"{variant} {shape}: out of memory")
        torch.cuda.empty_cache()
        return
    r = row(case, variant, shape, st, bytes_=bytes_)
    report(r)
    rows.append(r)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--max-len", type=int, default=1 << 20)
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = []
    with torch.no_grad():
        # Kernel generation against N and L (linseq's s4-kernel rows).
        for dplr, d_state, h in [(False, 64, 256), (False, 256, 256), (True, 64, 256), (True, 256, 16)]:
            for l in [1024, 16384, 65536]:
                shape = f"H={h} N={d_state} L={l}"
                if dplr:
                    prm = dplr_params(h, d_state // 2)
                    attempt(rows, "s4-kernel", "torch.cauchy_naive", shape, lambda: dplr_kernel(*prm, l))
                else:
                    prm = s4d_params(h, d_state // 2)
                    attempt(rows, "s4-kernel", "torch.vandermonde_naive", shape, lambda: vandermonde_kernel(*prm, l))
        # FFTConv's convolution, B = 1, H = 1024 (linseq's s4-conv rows).
        h = 1024
        for l in [16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 16384, 65536]:
            u = torch.randn(1, h, l, device=DEV)
            k = torch.randn(h, l, device=DEV)
            d = torch.randn(h, device=DEV)
            attempt(rows, "s4-conv", "torch.fft_conv", f"B=1 H={h} L={l}", lambda: fft_conv(u, k, d),
                    bytes_=(3 * l * h + h) * 4)
        # The layer: kernel generation + convolution, H = 128, d_state 64, L = 1K doubling.
        h, n = 128, 32
        l = 1024
        while l <= args.max_len:
            u = torch.randn(1, h, l, device=DEV)
            d = torch.randn(h, device=DEV)
            shape = f"B=1 H={h} N=64 L={l}"
            prm = s4d_params(h, n)
            attempt(rows, "s4-layer", "torch.layer.diag", shape,
                    lambda: fft_conv(u, vandermonde_kernel(*prm, l), d), bytes_=2 * l * h * 4)
            prm2 = dplr_params(h, n)
            attempt(rows, "s4-layer", "torch.layer.dplr", shape,
                    lambda: fft_conv(u, dplr_kernel(*prm2, l), d), bytes_=2 * l * h * 4)
            l *= 2
    write(args.json, rows)


if __name__ == "__main__":
    main()
