"""Env steps per second: the batched Dark Room core vs gymnasium's SyncVectorEnv of our gym env.

    python -m benchmarks.env_throughput [--goals 80 --envs-per-goal 10 --gym-envs 16 --repeats 5]

Both sides draw uniform random actions on the CPU and include that in the timing. The
core steps one ``[goals * envs_per_goal]`` batch holding every goal; the vector env steps
``--gym-envs`` copies of ``adlib/DarkRoom-v0`` (TimeLimit inside, gymnasium's autoreset). A third
row steps the core's batch as cell indices (``step_cells``, what the A2C sources' rollout uses).
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch

from adlib.config import EnvConfig
from adlib.envs import darkroom as dr
from adlib.envs import gym_env
from benchmarks import machine, median, table, timed, write_section
from benchmarks.smoke import parse


def core_runner(cfg: EnvConfig, n_goals: int, per_goal: int, steps: int, seed: int):
    """A closure stepping the batched core ``steps`` times over every env of ``n_goals`` goals."""
    goals = dr.tasks_in_use(cfg)[torch.arange(n_goals) % len(dr.tasks_in_use(cfg))].repeat_interleave(per_goal, 0)
    gen = torch.Generator().manual_seed(seed)
    state, _ = dr.reset(cfg, goals)
    B = len(goals)

    def run() -> None:
        nonlocal state
        for _ in range(steps):
            action = torch.randint(0, dr.N_ACTIONS, (B,), generator=gen)
            state = dr.step(cfg, state, action).state

    return run, B


def cells_runner(cfg: EnvConfig, n_goals: int, per_goal: int, steps: int, seed: int):
    """The same batch stepped as cell indices (``adlib.envs.darkroom.step_cells``: the A2C rollout's path)."""
    goals = dr.tasks_in_use(cfg)[torch.arange(n_goals) % len(dr.tasks_in_use(cfg))].repeat_interleave(per_goal, 0)
    gen = torch.Generator().manual_seed(seed)
    state, cell = dr.reset(cfg, goals)
    t, goal_cell, moves = state.t, dr.obs_of(cfg, goals), dr.move_table(cfg)
    B = len(goals)

    def run() -> None:
        nonlocal cell, t
        for _ in range(steps):
            action = torch.randint(0, dr.N_ACTIONS, (B,), generator=gen)
            out = dr.step_cells(cfg, moves, cell, t, goal_cell, action)
            cell, t = out.cell, out.t

    return run, B


def gym_runner(cfg: EnvConfig, n_envs: int, steps: int, seed: int):
    """A closure stepping a SyncVectorEnv of ``n_envs`` gym envs ``steps`` times."""
    goals = dr.tasks_in_use(cfg).tolist()
    envs = gym.vector.SyncVectorEnv([(lambda g=tuple(goals[i % len(goals)]): gym_env.make(cfg, goal=g))
                                     for i in range(n_envs)])
    envs.reset(seed=seed)
    rng = np.random.default_rng(seed)

    def run() -> None:
        for _ in range(steps):
            envs.step(rng.integers(0, dr.N_ACTIONS, size=n_envs))

    return run, n_envs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--goals", type=int, default=80)
    ap.add_argument("--envs-per-goal", type=int, default=10)
    ap.add_argument("--core-steps", type=int, default=500, help="batched steps per repeat")
    ap.add_argument("--gym-envs", type=int, default=16)
    ap.add_argument("--gym-steps", type=int, default=300, help="vector steps per repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parse(ap, goals=4, envs_per_goal=2, core_steps=10, gym_envs=2, gym_steps=10, repeats=2, no_write=True)
    torch.set_num_threads(args.threads)
    cfg = EnvConfig()  # the original Dark Room: 9x9, 20 steps, terminate on goal

    core, B = core_runner(cfg, args.goals, args.envs_per_goal, args.core_steps, seed=0)
    cells, _ = cells_runner(cfg, args.goals, args.envs_per_goal, args.core_steps, seed=0)
    vec, N = gym_runner(cfg, args.gym_envs, args.gym_steps, seed=0)
    core(), cells(), vec()  # warm-up
    core_rates = [B * args.core_steps / s for s in timed(core, args.repeats)]
    cell_rates = [B * args.core_steps / s for s in timed(cells, args.repeats)]
    gym_rates = [N * args.gym_steps / s for s in timed(vec, args.repeats)]
    c, k, g = median(core_rates), median(cell_rates), median(gym_rates)

    rows = [
        [f"batched core (`adlib.envs.darkroom.step`), {args.goals} goals x {args.envs_per_goal} envs = {B} envs",
         f"{c:,.0f}", f"{min(core_rates):,.0f} - {max(core_rates):,.0f}", f"{c / g:,.0f}x"],
        [f"the same batch as cell indices (`adlib.envs.darkroom.step_cells`, the A2C rollout's path)",
         f"{k:,.0f}", f"{min(cell_rates):,.0f} - {max(cell_rates):,.0f}", f"{k / g:,.0f}x"],
        [f"`gymnasium.vector.SyncVectorEnv` of {N} `adlib/DarkRoom-v0`",
         f"{g:,.0f}", f"{min(gym_rates):,.0f} - {max(gym_rates):,.0f}", "1x"],
    ]
    body = "\n".join([
        "Env steps per second with uniform random actions, 9x9 original Dark Room, CPU, "
        f"median of {args.repeats} repeats ({args.core_steps} batched steps / {args.gym_steps} vector steps each).",
        "",
        table(["env", "steps/s (median)", "range", "vs gym"], rows),
        "",
        f"Ratio batched / gym: **{c / g:,.0f}x** (target >= 100x).",
        "",
        f"Machine: {machine()}. Command: `python -m benchmarks.env_throughput`.",
    ])
    print(body)
    if not args.no_write:
        write_section("Env throughput", body)


if __name__ == "__main__":
    main()
