#!/usr/bin/env python3
"""Times mamba_ssm's CUDA selective scan (forward) on the shapes of `linseq bench selective-scan`.

mamba_ssm ships as an sdist whose full build compiles 10 CUDA files for about ten GPU
architectures (far beyond a device session). This script builds only what the forward f32 scan
needs, for the local GPU's architecture: selective_scan.cpp (the binding) and
selective_scan_fwd_fp32.cu from the sdist, plus a stub file for the backward and f16/bf16
instantiations that the binding references (they raise if called). The kernels are the sdist's,
unchanged.

Run on the GPU machine (PyTorch, nvcc and ninja there), with the sdist carried in .whl/:

    PYTHONPATH=tools python3 tools/peer_mamba_ssm.py --sdist .whl/mamba_ssm-2.3.2.post1.tar.gz --json OUT.json

mamba_ssm's layout is channel-major: u, delta, z (B, D, L); B, C (B, G, N, L).
"""
import argparse
import os
import tarfile
import time

import torch
from torch.utils.cpp_extension import load

from peer_common import report, row, time_s, write

STUB = r"""
#include <ATen/ATen.h>
#include "selective_scan.h"
#include "selective_scan_common.h"
// Not built for this peer: the backward pass and the f16/bf16 forward.
template<typename input_t, typename weight_t>
void selective_scan_bwd_cuda(SSMParamsBwd &params, cudaStream_t stream) { TORCH_CHECK(false, "not built"); }
template void selective_scan_bwd_cuda<float, float>(SSMParamsBwd &, cudaStream_t);
template void selective_scan_bwd_cuda<float, complex_t>(SSMParamsBwd &, cudaStream_t);
template void selective_scan_bwd_cuda<at::Half, float>(SSMParamsBwd &, cudaStream_t);
template void selective_scan_bwd_cuda<at::Half, complex_t>(SSMParamsBwd &, cudaStream_t);
template void selective_scan_bwd_cuda<at::BFloat16, float>(SSMParamsBwd &, cudaStream_t);
template void selective_scan_bwd_cuda<at::BFloat16, complex_t>(SSMParamsBwd &, cudaStream_t);
template<typename input_t, typename weight_t>
void selective_scan_fwd_cuda(SSMParamsBase &params, cudaStream_t stream) { TORCH_CHECK(false, "not built"); }
template void selective_scan_fwd_cuda<at::Half, float>(SSMParamsBase &, cudaStream_t);
template void selective_scan_fwd_cuda<at::Half, complex_t>(SSMParamsBase &, cudaStream_t);
template void selective_scan_fwd_cuda<at::BFloat16, float>(SSMParamsBase &, cudaStream_t);
template void selective_scan_fwd_cuda<at::BFloat16, complex_t>(SSMParamsBase &, cudaStream_t);
"""

SHAPES = [(8, d, l) for d in (1536, 2048, 5120) for l in (2048, 4096, 8192, 16384, 32768, 65536)]
N = 16


def build(sdist):
    root = "/tmp/mamba_ssm_src"
    with tarfile.open(sdist) as t:
        t.extractall(root)
    src = [os.path.join(root, d) for d in os.listdir(root)][0]
    cs = os.path.join(src, "csrc", "selective_scan")
    stub = os.path.join(cs, "linseq_stub.cu")
    with open(stub, "w") as f:
        f.write(STUB)
    major, minor = torch.cuda.get_device_capability()
    arch = f"{major}{minor}"
    flags = ["-O3", "-std=c++17", "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
             "-U__CUDA_NO_BFLOAT16_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
             "-U__CUDA_NO_BFLOAT162_OPERATORS__", "-U__CUDA_NO_BFLOAT162_CONVERSIONS__",
             "--expt-relaxed-constexpr", "--expt-extended-lambda", "--use_fast_math",
             "-gencode", f"arch=compute_{arch},code=sm_{arch}", "--threads", "4"]
    t0 = time.time()
    mod = load(name="selective_scan_fwd_only",
               sources=[os.path.join(cs, "selective_scan.cpp"), os.path.join(cs, "selective_scan_fwd_fp32.cu"), stub],
               extra_cflags=["-O3", "-std=c++17"], extra_cuda_cflags=flags, extra_include_paths=[cs],
               build_directory=None, verbose=False)
    print(f"built mamba_ssm's forward scan for sm_{arch} in {time.time() - t0:.0f} s", flush=True)
    return mod


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sdist", required=True)
    ap.add_argument("--json")
    ap.add_argument("--max-len", type=int, default=65536)
    ap.add_argument("--build-only", action="store_true", help="compile (cached by torch) and exit")
    args = ap.parse_args()
    os.environ.setdefault("MAX_JOBS", "16")
    mod = build(args.sdist)
    if args.build_only:
        return
    rows = []
    torch.manual_seed(0)
    dev = "cuda"
    for (b, d, l) in SHAPES:
        if l > args.max_len:
            continue
        shape = f"B={b} d={d} L={l} N={N}"
        try:
            u = torch.rand(b, d, l, device=dev) * 2 - 1
            delta = torch.rand(b, d, l, device=dev) * 4 - 3
            z = torch.rand(b, d, l, device=dev) * 4 - 2
            A = -(torch.rand(d, N, device=dev) * 1.9 + 0.1)
            B = torch.rand(b, 1, N, l, device=dev) * 2 - 1
            C = torch.rand(b, 1, N, l, device=dev) * 2 - 1
            D = torch.rand(d, device=dev) * 2 - 1
            bias = torch.rand(d, device=dev) * 1.5 - 1
        except torch.OutOfMemoryError as e:
            print(f"{shape}: out of memory ({e})")
            continue
        # Same byte count as linseq's rows: u, delta, z, y, B, C, final state, parameters.
        bytes_ = (4 * d * b * l + 2 * N * b * l + b * d * N + d * (N + 2)) * 4
        flops = 7 * d * b * l * N
        fn = lambda: mod.fwd(u, delta, A, B, C, D, z, bias, True)
        r = row("scan-peer", "mamba_ssm.selective_scan_fwd.f32", shape, time_s(fn, reps=10), bytes_, flops)
        report(r)
        rows.append(r)
        del u, delta, z, B, C
        torch.cuda.empty_cache()
    write(args.json, rows)


if __name__ == "__main__":
    main()
