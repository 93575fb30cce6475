"""Training throughput of the AD transformer: 'transition' (1 token per transition) vs
'triplet' (the original's s, a, r tokens) at the same model size.

    python -m benchmarks.dt_throughput [--d 64 --layers 4 --heads 4 --ff 256 --batch 32 --seq-len 256]
                                       [--steps 3 --repeats 5 --threads 1] [--data data/dataset]

One timed unit is ``--steps`` optimiser steps exactly as ``adlib.train.train`` takes them
(forward with the loss, backward, gradient clipping, AdamW step) on batches of ``--batch``
windows of ``--seq-len`` transitions. Inputs are uniformly random valid indices (speed does
not depend on the values) or, with ``--data``, real ``HistoryDataset`` windows. The two
layouts are measured interleaved (their order alternates between repeats) so that load from
other processes hits both alike; transitions/s = steps x batch x seq_len / seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from pathlib import Path
from typing import Callable, ContextManager

import numpy as np
import torch

from adlib.config import DTConfig, EnvConfig
from adlib.dataset import HistoryDataset
from adlib.envs import darkroom as dr
from adlib.io import read_json
from adlib.train import build_model, make_optimizer, to_tensors
from benchmarks import machine, median, sharing, table, timed, write_section
from benchmarks.smoke import parse, tiny_workspace

LAYOUTS = ("transition", "triplet")


def random_batch(env_cfg: EnvConfig, batch: int, seq_len: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """A batch of windows of random but valid indices (every field the model reads)."""
    n_states, A, T = env_cfg.grid_size ** 2, dr.N_ACTIONS, env_cfg.max_episode_steps
    r = lambda hi: torch.randint(0, hi, (batch, seq_len), generator=gen)
    return {"state": r(n_states), "t": r(T), "action": r(A), "reward": r(2), "next_state": r(n_states),
            "prev_action": r(A + 1), "prev_reward": r(3), "prev_next_state": r(n_states + 1)}


def data_batches(data_dir: str, env_cfg: EnvConfig, n: int, batch: int, seq_len: int) -> list[dict[str, torch.Tensor]]:
    data = HistoryDataset(data_dir, env_cfg)
    gen = np.random.default_rng(0)
    out = []
    for _ in range(n):
        b = data.windows(data.sample_starts(gen, batch, seq_len, 0.25), seq_len)
        b.pop("goal")
        out.append(to_tensors(b, torch.device("cpu")))
    return out


def trainer(dt: DTConfig, env_cfg: EnvConfig, batches: list[dict[str, torch.Tensor]], steps: int,
            ctx: Callable[[], ContextManager] = contextlib.nullcontext, compile_model: bool = False):
    """A closure taking ``steps`` optimiser steps of a fresh model of ``dt`` (its forward inside
    ``ctx()``; with ``compile_model``, through ``torch.compile``), and the model's parameter count."""
    torch.manual_seed(0)
    model = build_model(dt, env_cfg)
    model.train()
    opt = make_optimizer(model, dt)
    net = torch.compile(model) if compile_model else model
    k = 0

    def run() -> None:
        nonlocal k
        for _ in range(steps):
            b = batches[k % len(batches)]
            k += 1
            with ctx():
                _, loss = net(b, targets=b["action"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), dt.clip_grad_norm)
            opt.step()

    return run, model.num_params()


def report(args: argparse.Namespace) -> str:
    """Time both layouts as ``args`` say; the section's markdown."""
    if args.threads:
        torch.set_num_threads(args.threads)
    # a dataset's own environment (its grid size sets the state indices), else the original's
    env_cfg = EnvConfig(**read_json(Path(args.data) / "meta.json")["env"]) if args.data else EnvConfig()
    base = DTConfig(embedding_dim=args.d, num_layers=args.layers, num_heads=args.heads,
                    feed_forward_dim=args.ff, seq_len=args.seq_len, batch_size=args.batch)
    if args.data:
        batches = data_batches(args.data, env_cfg, 4, args.batch, args.seq_len)
        inputs = f"real `HistoryDataset` windows of `{args.data}`"
    else:
        gen = torch.Generator().manual_seed(0)
        batches = [random_batch(env_cfg, args.batch, args.seq_len, gen) for _ in range(4)]
        inputs = "random valid inputs"

    runners, params = {}, {}
    for layout in LAYOUTS:
        dt = dataclasses.replace(base, layout=layout)
        runners[layout], params[layout] = trainer(dt, env_cfg, batches, args.steps)
        runners[layout]()  # warm-up
    secs: dict[str, list[float]] = {k: [] for k in LAYOUTS}
    for r in range(args.repeats):
        for layout in (LAYOUTS if r % 2 == 0 else LAYOUTS[::-1]):
            secs[layout] += timed(runners[layout], 1)
    per = args.steps * args.batch * args.seq_len
    rates = {k: [per / s for s in v] for k, v in secs.items()}
    med = {k: median(v) for k, v in rates.items()}
    ratio_per_repeat = sorted(a / b for a, b in zip(rates["transition"], rates["triplet"]))
    ratio = med["transition"] / med["triplet"]

    rows = [[f"`{k}` ({(3 if k == 'triplet' else 1) * args.seq_len} tokens/window)", f"{params[k]:,}",
             f"{med[k]:,.0f}", f"{min(rates[k]):,.0f} - {max(rates[k]):,.0f}",
             f"{1000 * median(secs[k]) / args.steps:,.0f}", f"{med[k] / med['triplet']:.2f}x"] for k in LAYOUTS]
    return "\n".join([
        f"AD transformer training throughput on CPU: optimiser steps (forward + loss, backward, grad clip, AdamW) "
        f"on batches of {args.batch} windows x {args.seq_len} transitions, {inputs}; model d {args.d}, "
        f"{args.layers} layers, {args.heads} heads, ff {args.ff}. Median of {args.repeats} interleaved repeats "
        f"of {args.steps} steps each (layout order alternating).",
        "",
        table(["layout", "parameters", "transitions/s (median)", "range", "ms / step (median)", "vs triplet"], rows),
        "",
        f"Ratio transition / triplet: **{ratio:.2f}x** (target >= 3x; per-repeat ratios "
        f"{ratio_per_repeat[0]:.2f} - {ratio_per_repeat[-1]:.2f}).",
        "",
        f"Machine: {machine()}, {sharing()}. "
        f"Command: `python -m benchmarks.dt_throughput"
        + (f" --data {args.data}" if args.data else "")
        + (f" --d {args.d} --layers {args.layers} --heads {args.heads} --ff {args.ff}"
           if (args.d, args.layers, args.heads, args.ff) != (64, 4, 4, 256) else "")
        + (f" --steps {args.steps}" if args.steps != 3 else "")
        + (f" --repeats {args.repeats}" if args.repeats != 5 else "")
        + (f" --threads {args.threads}" if args.threads != 1 else "") + "`.",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d", type=int, default=64, help="embedding_dim")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ff", type=int, default=256, help="feed_forward_dim")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=256, help="context in transitions")
    ap.add_argument("--steps", type=int, default=3, help="optimiser steps per timed repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--data", default=None, help="dataset folder: real HistoryDataset windows instead of random inputs")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parse(ap, d=16, layers=1, heads=2, ff=32, batch=4, seq_len=16, steps=1, repeats=2, no_write=True)
    body = report(args)
    print(body)
    if args.smoke:   # the other kind of input too: the windows of a tiny dataset
        with tiny_workspace("dataset"):
            print(report(argparse.Namespace(**{**vars(args), "data": "data/dataset"})))
    if not args.no_write:
        write_section("Transformer training throughput", body)


if __name__ == "__main__":
    main()
