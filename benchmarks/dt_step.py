"""One train_dt optimiser step of the default model along other paths than the default's.

    python -m benchmarks.dt_step [--steps 3 --repeats 4 --threads 2] [--compile]

Why the default trains 600 steps instead of 1500 (issue 25): is there a faster path through the
same step? Each variant takes ``--steps`` optimiser steps exactly as ``benchmarks.dt_throughput``
does (forward with the loss, backward, gradient clip, AdamW) on random valid windows of the
default's size (params.yaml's ``dt``: batch x seq_len transitions, transition layout); variants
are interleaved (their order rotates between repeats); the first unit of each is a warm-up and
not timed. Variants: the default (torch's CPU flash attention), the math attention backend,
bf16 autocast on the CPU, other models (half the heads, of twice the size, or one layer fewer), and
with ``--compile`` ``torch.compile`` (its compile time reported apart). Writes the section
"train_dt: one step along other paths".
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from pathlib import Path
from typing import Callable

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from adlib.config import DTConfig, load_params
from benchmarks import machine, median, sharing, table, timed, write_section
from benchmarks.dt_throughput import random_batch, trainer
from benchmarks.smoke import parse

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="also torch.compile (about 30 s of compiling)")
    args = parse(ap, steps=1, repeats=1, threads=1)
    torch.set_num_threads(args.threads)
    p = load_params(ROOT / "params.yaml")
    dt, env_cfg = p.dt, p.env
    if args.smoke:
        dt = dataclasses.replace(dt, batch_size=2, seq_len=16, embedding_dim=16, feed_forward_dim=32)
    batch = random_batch(env_cfg, dt.batch_size, dt.seq_len, torch.Generator().manual_seed(0))
    math = lambda: sdpa_kernel(SDPBackend.MATH)
    bf16 = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    half_heads = max(1, dt.num_heads // 2)
    # the default's model along other paths, then other models (they change what is learnt)
    variants: dict[str, tuple[DTConfig, Callable, bool]] = {   # name -> (model, context, compile)
        f"the default ({dt.num_heads} heads of {dt.embedding_dim // dt.num_heads}, {dt.num_layers} layers; "
        "CPU flash attention)": (dt, contextlib.nullcontext, False),
        "math attention backend": (dt, math, False),
        "bf16 autocast": (dt, bf16, False),
    }
    if args.compile:
        variants["torch.compile"] = (dt, contextlib.nullcontext, True)
    others = {f"{half_heads} heads of {dt.embedding_dim // half_heads} (another model)":
              (dataclasses.replace(dt, num_heads=half_heads), contextlib.nullcontext, False),
              f"{dt.num_layers - 1} layers (a smaller model)":
              (dataclasses.replace(dt, num_layers=max(1, dt.num_layers - 1)), contextlib.nullcontext, False)}
    same_model = list(variants)
    variants.update(others)
    runs, warm = {}, {}
    for name, (cfg, ctx, comp) in variants.items():
        runs[name], _ = trainer(cfg, env_cfg, [batch], args.steps, ctx, comp)
        warm[name] = timed(runs[name], 1)[0]   # the first unit: warm-up (and compilation)
    secs: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            secs[name] += [t / args.steps for t in timed(runs[name], 1)]
    base = median(secs[names[0]])
    speed = {name: base / median(s) for name, s in secs.items()}
    same = max(same_model[1:], key=speed.get)
    rows = [[name, f"{median(s) * 1000:.0f}", f"{min(s) * 1000:.0f} - {max(s) * 1000:.0f}", f"{speed[name]:.2f}x",
             f"{warm[name]:.1f}"] for name, s in secs.items()]
    body = "\n".join([
        f"One train_dt optimiser step of params.yaml's model (d {dt.embedding_dim}, {dt.num_layers} layers, "
        f"{dt.num_heads} heads, ff {dt.feed_forward_dim}, batch {dt.batch_size} x {dt.seq_len} transitions, random "
        f"valid inputs) along other paths; median of {args.repeats} interleaved repeats of {args.steps} steps, "
        "after one untimed warm-up unit.",
        "",
        table(["variant", "ms / step (median)", "range", "speed vs the default", "warm-up s (compile)"], rows),
        "",
        f"The fastest other path for the same model: {same} at {speed[same]:.2f}x; the other models "
        f"({', '.join(f'{speed[n]:.2f}x' for n in others)}) change what is learnt. Issue 25's 6-minute pipeline "
        "needed train_dt about 2.5x shorter (\"The README's main command, commits side by side\"), which no path "
        "here gives, so the default "
        "trains 600 steps instead (docs/results.md, \"The default's training length (issue 25)\").",
        "",
        f"Machine: {machine()}, {sharing()}. Command: `python -m benchmarks.dt_step"
        f"{' --compile' if args.compile else ''}`.",
    ])
    print(body)
    if not args.smoke:
        write_section("train_dt: one step along other paths", body)


if __name__ == "__main__":
    main()
