"""Shared by the peer scripts in tools/: CUDA-event timing and rows in linseq's bench JSON format.

Each peer script times another implementation on the shapes of a `linseq bench` and writes
{"adapter": ..., "rows": [...]} with the same row fields (case, variant, shape, stats{median, min,
max, clock}, bytes, gb_per_s, ...) so that tools/merge_bench.py can put them side by side.
"""
import json

import torch


def time_s(fn, reps=30, warmup=5, min_s=0.2):
    """Median, min and max seconds of fn() by CUDA events, after warm-up (GPU clocks ramp up)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    total = 0.0
    while len(times) < reps or total < min_s:
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        t = a.elapsed_time(b) / 1e3
        times.append(t)
        total += t
        if len(times) >= 1000:
            break
    times.sort()
    return times[len(times) // 2], times[0], times[-1]


def row(case, variant, shape, stats, bytes_=0.0, flops=0.0, agrees=None):
    med, lo, hi = stats
    return {
        "case": case,
        "variant": variant,
        "shape": shape,
        "stats": {"median": med, "min": lo, "max": hi, "clock": "cuda-events"},
        "bytes": bytes_,
        "flops": flops,
        "gb_per_s": bytes_ / med / 1e9 if med > 0 else 0.0,
        "tflop_per_s": flops / med / 1e12 if med > 0 else 0.0,
        "pct_of_copy": 0.0,
        "agrees": agrees,
    }


def report(r):
    s = r["stats"]
    print(f"{r['variant']:44} {r['shape']:34} median {s['median'] * 1e3:9.3f} ms  "
          f"min {s['min'] * 1e3:9.3f}  max {s['max'] * 1e3:9.3f}", flush=True)


def write(path, rows):
    if path:
        with open(path, "w") as f:
            json.dump({"adapter": torch.cuda.get_device_name(), "rows": rows}, f, indent=1)
        print(f"wrote {path} ({len(rows)} rows)", flush=True)
