"""Wall time of the batched A2C source agents vs training the same agents one goal at a time.

    python -m benchmarks.source_training [--goals 80 --env-steps 800000 --seq-goals 3]

Batched: every goal's agent in one ``adlib.a2c.train_agents`` call (what a DVC shard does,
here with all goals in one batch). Sequential: ``--seq-goals`` goals trained alone, one call
each, with ``--seq-env-steps`` steps (default: the same as ``--env-steps``); their mean time
is scaled linearly to all goals (and to ``--env-steps`` if fewer steps were run; the cost
per update is constant, so time is linear in steps). Other settings come from params.yaml.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from adlib import a2c
from adlib.config import load_params
from adlib.device import pick_device
from adlib.envs import darkroom as dr
from benchmarks import machine, table, write_section


def run(env_cfg, cfg, goal_ids: list[int], device, seeds: list[int] | None = None) -> tuple[float, np.ndarray]:
    """(wall seconds, per-agent success rate of the last log window) of one train_agents call."""
    logs: list[a2c.AgentLog] = []
    t0 = time.perf_counter()
    seeds = seeds if seeds is not None else [0] * len(goal_ids)
    a2c.train_agents(env_cfg, cfg, goal_ids, seeds, device, on_log=logs.append)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, logs[-1].stats["success_rate"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--goals", type=int, default=None, help="goals in the batch (default: all)")
    ap.add_argument("--env-steps", type=int, default=800_000, help="env steps per agent")
    ap.add_argument("--seq-goals", type=int, default=3, help="goals trained alone for the sequential estimate")
    ap.add_argument("--seq-env-steps", type=int, default=None, help="env steps per sequential agent (default: --env-steps)")
    ap.add_argument("--device", default=None, help="cpu / cuda / auto (default: runtime.source.device)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (0 = torch default); the ops are tiny, more threads mostly add contention")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    p = load_params(args.params)
    env_cfg = p.env
    n_all = len(dr.all_goals(env_cfg))
    n_goals = args.goals or n_all
    goal_ids = [g % n_all for g in range(n_goals)]  # more than all goals: extra seeds of the same goals
    seeds = [g // n_all for g in range(n_goals)]
    seq_steps = args.seq_env_steps or args.env_steps
    device = pick_device(args.device or p.runtime.source.device)
    cfg = dataclasses.replace(p.source, env_steps=args.env_steps)
    seq_cfg = dataclasses.replace(p.source, env_steps=seq_steps)
    step_chunk = cfg.nenvs * cfg.nsteps
    steps = max(1, args.env_steps // step_chunk) * step_chunk  # what train_agents really runs
    seq_real = max(1, seq_steps // step_chunk) * step_chunk

    run(env_cfg, dataclasses.replace(p.source, env_steps=20 * step_chunk), goal_ids[:2], device)  # warm-up
    print(f"batched: {n_goals} goals x {steps:,} env steps on {device} ...", flush=True)
    t_batch, succ_batch = run(env_cfg, cfg, goal_ids, device, seeds)
    print(f"  {t_batch:.1f} s, final success {succ_batch.mean():.3f}", flush=True)
    # spread the sequential goals over the room (near and far goals differ in episode count)
    seq_goals = [goal_ids[int(i)] for i in np.linspace(0, n_goals - 1, min(args.seq_goals, n_goals))]
    t_seq, succ_seq = [], []
    for g in seq_goals:
        print(f"sequential: goal {g} x {seq_real:,} env steps ...", flush=True)
        t, s = run(env_cfg, seq_cfg, [g], device)
        t_seq.append(t)
        succ_seq.append(float(s[0]))
        print(f"  {t:.1f} s, final success {s[0]:.3f}", flush=True)
    per_goal = float(np.mean(t_seq)) * steps / seq_real
    same = float(succ_batch[[goal_ids.index(g) for g in seq_goals]].mean())  # the measured goals, in the batch
    t_seq_all = per_goal * n_goals

    rows = [
        [f"batched: {n_goals} agents in one `train_agents` call", f"{t_batch:,.1f}",
         f"{n_goals * steps / t_batch:,.0f}", f"{succ_batch.mean():.3f} ({same:.3f})", f"{t_seq_all / t_batch:,.1f}x"],
        [f"sequential: one agent per call, {len(seq_goals)} goals measured "
         f"({seq_real:,} steps each), scaled to {n_goals} goals x {steps:,} steps",
         f"{t_seq_all:,.1f} (est.; {per_goal:,.1f} per goal)", f"{steps / per_goal:,.0f}",
         f"{np.mean(succ_seq):.3f}", "1x"],
    ]
    body = "\n".join([
        f"Batched A2C source training, {n_goals} goals x {steps:,} env steps per agent "
        f"(hidden {cfg.hidden_size}, {cfg.nenvs} envs x {cfg.nsteps} steps per update, {env_cfg.size}x{env_cfg.size} room), "
        f"on {device}.",
        "",
        table(["run", "wall s", "agent env steps/s", "final success", "speed-up"], rows),
        "",
        "Final success: mean success rate of the last log window over the run's agents; in brackets, over the "
        "goals that were also trained alone (the agents are independent of their batch, so with equal steps "
        "the two numbers match).",
        "",
        f"Machine: {machine()}. Command: `python -m benchmarks.source_training --goals {n_goals} "
        f"--env-steps {args.env_steps} --seq-goals {args.seq_goals}"
        + (f" --seq-env-steps {args.seq_env_steps}" if args.seq_env_steps else "")
        + (f" --threads {args.threads}" if args.threads != 1 else "") + "`.",
    ])
    print(body)
    if not args.no_write:
        write_section("Source training", body)


if __name__ == "__main__":
    main()
