#!/usr/bin/env python3
"""Times transformers' MambaForCausalLM and Mamba2ForCausalLM (random weights of the real
configurations) on the GPU machine: prefill forward at batch 1 and decode tokens/s at batch 1
and 64 through `generate`. The peer of `linseq bench model`.

Without mamba_ssm and causal_conv1d installed, transformers runs its pure-PyTorch paths
(`slow_forward` for Mamba, `torch_forward` for Mamba-2), which is what this measures; the
output says which path ran.

    PYTHONPATH=tools python3 tools/peer_transformers.py --json OUT.json
"""
import argparse
import time

import torch
import transformers
from transformers import (Mamba2Config, Mamba2ForCausalLM, MambaConfig, MambaForCausalLM, MistralConfig,
                          MistralForCausalLM, RecurrentGemmaConfig, RecurrentGemmaForCausalLM)

from peer_common import report, row, time_s, write

CONFIGS = {
    "mamba-130m": lambda: MambaForCausalLM(MambaConfig(
        hidden_size=768, num_hidden_layers=24, state_size=16, vocab_size=50280, expand=2, conv_kernel=4,
        residual_in_fp32=True)),
    "mamba2-130m": lambda: Mamba2ForCausalLM(Mamba2Config(
        hidden_size=768, num_hidden_layers=24, state_size=128, head_dim=64, num_heads=24, n_groups=1,
        expand=2, conv_kernel=4, vocab_size=50288, chunk_size=256, residual_in_fp32=True)),
    "mamba-1.4b": lambda: MambaForCausalLM(MambaConfig(
        hidden_size=2048, num_hidden_layers=48, state_size=16, vocab_size=50280, expand=2, conv_kernel=4,
        residual_in_fp32=True)),
    # The configurations of linseq's `recurrentgemma-2b` and `mistral-7b-8l` presets.
    "recurrentgemma-2b": lambda: RecurrentGemmaForCausalLM(RecurrentGemmaConfig(
        hidden_size=2560, intermediate_size=15360, num_attention_heads=10, num_key_value_heads=1, head_dim=256,
        lru_width=2560, conv1d_width=4, attention_window_size=2048, block_types=["recurrent", "recurrent", "attention"],
        num_hidden_layers=26, vocab_size=256000, logits_soft_cap=30.0, partial_rotary_factor=0.5)),
    "mistral-7b-8l": lambda: MistralForCausalLM(MistralConfig(
        hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
        num_hidden_layers=8, vocab_size=32000, sliding_window=4096, max_position_embeddings=32768)),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--models", default="mamba-130m,mamba2-130m,mamba-1.4b")
    ap.add_argument("--prefill", default="1024,4096")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    rows = []
    print(f"transformers {transformers.__version__}, torch {torch.__version__}", flush=True)
    for name in args.models.split(","):
        torch.manual_seed(0)
        model = CONFIGS[name]().to("cuda", dtype).eval()
        params = sum(p.numel() for p in model.parameters())
        vocab = model.config.vocab_size
        with torch.no_grad():
            for l in [int(x) for x in args.prefill.split(",")]:
                if isinstance(model, MambaForCausalLM) and l > 1024:
                    # The pure-PyTorch Mamba path loops over tokens in Python: seconds per 1K.
                    print(f"{name} prefill L={l}: skipped (token loop in Python)", flush=True)
                    continue
                ids = torch.randint(0, vocab, (1, l), device="cuda")
                try:
                    stats = time_s(lambda: model(ids, use_cache=False), reps=3, warmup=1, min_s=0.0)
                except torch.OutOfMemoryError as e:
                    print(f"{name} prefill L={l}: out of memory ({e})", flush=True)
                    torch.cuda.empty_cache()
                    continue
                r = row("model-prefill-peer", f"transformers.{name}.{args.dtype}", f"B=1 L={l}", stats)
                r["tokens_per_s"] = l / stats[0]
                report(r)
                rows.append(r)
            for batch in (1, 64):
                ids = torch.randint(0, vocab, (batch, 16), device="cuda")
                gen = dict(do_sample=False, min_new_tokens=args.new_tokens, max_new_tokens=args.new_tokens,
                           pad_token_id=0)
                model.generate(ids, **dict(gen, min_new_tokens=2, max_new_tokens=2))  # warm-up
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                model.generate(ids, **dict(gen, min_new_tokens=1, max_new_tokens=1))
                torch.cuda.synchronize()
                t1 = time.perf_counter()
                model.generate(ids, **gen)
                torch.cuda.synchronize()
                t2 = time.perf_counter()
                step = ((t2 - t1) - (t1 - t0)) / (args.new_tokens - 1)
                r = row("model-decode-peer", f"transformers.{name}.{args.dtype}", f"S={batch}", (step, step, step))
                r["stats"]["clock"] = "wall"
                r["tokens_per_s"] = batch / step
                r["parameters"] = params
                print(f"{name} decode batch {batch}: {step * 1e3:.2f} ms/step, {batch / step:.0f} tokens/s", flush=True)
                rows.append(r)
        print(f"{name}: {params / 1e6:.0f}M parameters, peak memory "
              f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB", flush=True)
        del model
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    write(args.json, rows)


if __name__ == "__main__":
    main()
