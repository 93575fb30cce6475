"""Where one A2C update's time goes, and how it grows with the agents in a batch.

    python -m benchmarks.source_update [--agents 64 128 256 512] [--updates 100] [--repeats 3]

The loop body of :func:`adlib.a2c.train_agents`, phase by phase (the same library calls in the
same order), on one CPU thread, for a batch of G agents of params.yaml's room and source
settings: the heads' tables and the policy's softmax, the rollout (its uniforms, T env steps with
sampling), the episode statistics and n-step returns, the history write, the loss and its
backward pass, the per-agent gradient clip, the fused Adam step. Each phase's milliseconds per
update are the median over ``--repeats`` runs of ``--updates`` updates (after a warm-up), batch
sizes interleaved. Beside them, the whole ``train_agents`` (no timers in it) in ms per update.

A least-squares line through ``train_agents``' ms per update against G splits the cost into a
part that does not grow with the batch (``a``: the hundreds of small tensor ops of an update,
each a few microseconds of dispatch whatever its size) and a part per agent (``b``). A shard
worker of the default pipeline trains 120 agents (80 goals x 3 seeds over 1 shard stage x 2
workers, padded to 128); with one worker per core, the source phase cannot exceed
``cores x E x T / b`` agent env steps per second at any batch size: the per-agent work (the
heads' batched matmuls and their backward, Adam over each agent's whole embedding table) bounds it.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch
import torch.nn.functional as F

from adlib import a2c, rng
from adlib.config import load_params
from adlib.envs import darkroom as dr
from adlib.histories import History, shard_goals
from adlib.sources import n_workers
from benchmarks import machine, median, table, write_section
from benchmarks.smoke import parse

PHASES = ("tables", "rollout", "stats + returns", "history", "loss + backward", "clip", "adam")


def batch_of(env_cfg, G: int) -> tuple[list[int], list[int]]:
    """``G`` agents: the room's tasks in order, then again with the next seed (goal ids, seeds)."""
    n = len(dr.tasks_in_use(env_cfg))
    return [g % n for g in range(G)], [g // n for g in range(G)]


def phase_times(env_cfg, cfg, G: int, updates: int, warmup: int) -> dict[str, float]:
    """Milliseconds per update of each phase of ``train_agents``' loop, ``G`` agents (a multiple of 16)."""
    goal_ids, keys = a2c.padded_batch(*batch_of(env_cfg, G))
    E, T = cfg.nenvs, cfg.nsteps
    params, opt = a2c.trainable(a2c.init_params(cfg, dr.n_states(env_cfg), keys), cfg, torch.device("cpu"))
    akey = keys.view(G, 1).expand(G, E)
    goals = dr.tasks_in_use(env_cfg)[torch.tensor(goal_ids)]
    W = goals.shape[-1]
    state, obs = dr.reset(env_cfg, goals.view(G, 1, W).expand(G, E, W).reshape(G * E, W), None)
    obs, ep_ret = obs.view(G, E), torch.zeros(G, E)
    hist = History.empty((updates + warmup) * T, G, E, env_cfg)
    stats = a2c.EpisodeStats(G, torch.device("cpu"), dr.success_return(env_cfg))
    steps_t = torch.arange(T).view(T, 1, 1)
    act_prefix = rng.chain(cfg.seed, a2c._ACT, akey, torch.arange(E))          # as train_agents draws
    spent = dict.fromkeys(PHASES, 0.0)
    for upd in range(updates + warmup):
        marks = [time.perf_counter()]
        tables = a2c.head_tables(params)
        with torch.no_grad():
            probs_tab = F.softmax(tables[:, :-1], 1).transpose(1, 2).contiguous()
        marks.append(time.perf_counter())
        with torch.no_grad():
            u_act = rng.uniform_after(act_prefix, upd * T + steps_t)
            ro, state, obs = a2c.collect_rollout(env_cfg, state, obs, probs_tab, u_act, None)
        marks.append(time.perf_counter())
        with torch.no_grad():
            ep_ret = stats.add_rollout(ro, ep_ret)
            returns = a2c.rollout_returns(ro, tables[:, -1], obs, cfg.gamma)
        marks.append(time.perf_counter())
        hist.write(upd * T, ro, G)
        marks.append(time.perf_counter())
        to_gn = lambda x: x.permute(1, 0, 2).reshape(G, T * E)
        logits, values = a2c.policy_value(tables, to_gn(ro.state))
        losses = a2c.a2c_losses(logits, values, to_gn(ro.action), to_gn(returns), cfg)
        opt.zero_grad(set_to_none=True)
        losses["loss"].sum().backward()
        marks.append(time.perf_counter())
        a2c.clip_grad_per_agent(params, cfg.clip_grad_norm)
        marks.append(time.perf_counter())
        opt.step()
        marks.append(time.perf_counter())
        if upd >= warmup:
            for name, t0, t1 in zip(PHASES, marks, marks[1:]):
                spent[name] += t1 - t0
    return {k: 1e3 * v / updates for k, v in spent.items()}


def whole_ms(env_cfg, cfg, G: int, updates: int) -> float:
    """``train_agents`` of ``G`` agents for ``updates`` updates, in ms per update (after a warm call)."""
    run = dataclasses.replace(cfg, env_steps=updates * cfg.nenvs * cfg.nsteps)
    t0 = time.perf_counter()
    a2c.train_agents(env_cfg, run, *batch_of(env_cfg, G))
    return 1e3 * (time.perf_counter() - t0) / updates


def measure(env_cfg, cfg, agents: list[int], updates: int, repeats: int) -> dict[int, dict[str, float]]:
    """Per batch size: the median ms per update of each phase and of the whole ``train_agents``."""
    a2c.train_agents(env_cfg, dataclasses.replace(cfg, env_steps=cfg.nenvs * cfg.nsteps), [0], [0])   # warm-up
    runs: dict[int, list[dict[str, float]]] = {G: [] for G in agents}
    for _ in range(repeats):
        for G in agents:
            r = phase_times(env_cfg, cfg, G, updates, warmup=5)
            r["train_agents"] = whole_ms(env_cfg, cfg, G, updates)
            runs[G].append(r)
            print(G, {k: round(v, 2) for k, v in r.items()}, flush=True)
    return {G: {k: median([r[k] for r in rs]) for k in rs[0]} for G, rs in runs.items()}


def default_worker_batch(env_cfg, cfg, rt) -> tuple[int, int, int]:
    """The workers of the default pipeline's first shard stage (as adlib.sources deals its goals), the
    agents the first of them trains, and the batch they are padded to."""
    goals = shard_goals(len(dr.tasks_in_use(env_cfg)), 0, len(cfg.shards))
    W = n_workers(rt, len(goals))
    per_worker = len(goals[0::W]) * cfg.seeds_per_goal
    return W, per_worker, -(-per_worker // a2c.ALIGN_AGENTS) * a2c.ALIGN_AGENTS


def report(res: dict[int, dict[str, float]], env_cfg, cfg, rt, args: argparse.Namespace) -> str:
    steps = cfg.nenvs * cfg.nsteps
    rows = [[str(G), *(f"{r[k]:.2f}" for k in PHASES), f"{sum(r[k] for k in PHASES):.2f}",
             f"{r['train_agents']:.2f}", f"{G * steps / r['train_agents'] / 1e3:.2f}"] for G, r in res.items()]
    Gs = np.array(list(res), dtype=float)
    b, a = np.polyfit(Gs, [r["train_agents"] for r in res.values()], 1)
    cores, per_worker, default = default_worker_batch(env_cfg, cfg, rt)    # one worker per core by default
    fit_default = cores * default * steps / (a + b * default) / 1e3
    need = 3e3 / cores                      # agent env steps per ms per worker for 3 M/s in all
    three_m = (f"At the fit, 3 M agent env steps/s on these cores needs {a * need / (steps - b * need):.0f} "
               f"agents per worker, {cores * a * need / (steps - b * need):.0f} in one shard stage; the default "
               "trains 240 in all." if steps > b * need else "No batch size reaches 3 M agent env steps/s.")
    return "\n".join([
        f"One A2C update of a batch of G agents ({cfg.nenvs} envs x {cfg.nsteps} steps each, hidden "
        f"{cfg.hidden_size}, the default room), phase by phase, in ms per update on one CPU thread: median of "
        f"{args.repeats} runs of {args.updates} updates, batch sizes interleaved. `train_agents` is the whole "
        "loop without timers; the last column is one worker's agent env steps per second.",
        "",
        table(["G", *PHASES, "sum", "train_agents", "M steps/s per worker"], rows),
        "",
        f"Least squares over G: **{a:.2f} ms + {b * 1e3:.1f} us x G** per update. A worker of the default "
        f"pipeline ({len(cfg.shards)} shard stage(s), {cores} workers each) trains {per_worker} agents (padded to "
        f"{default}): {cores} such workers at once would make "
        f"{fit_default:.2f} M agent env steps/s at the fit. The per-agent part alone caps a source phase "
        f"with one worker per core at {cores} x {steps} / b = **{cores * steps / b / 1e3:.2f} M agent env "
        "steps/s**, whatever the batch size. " + three_m,
        "",
        f"Machine: {machine()}. Command: `python -m benchmarks.source_update --agents "
        f"{' '.join(map(str, args.agents))} --updates {args.updates} --repeats {args.repeats}`.",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, nargs="+", default=[64, 128, 256, 512],
                    help="batch sizes (multiples of 16: train_agents pads to them)")
    ap.add_argument("--updates", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    args = parse(ap, agents=[16, 32], updates=3, repeats=1)
    torch.set_num_threads(1)
    p = load_params("params.yaml")
    cfg = p.source
    if args.smoke:
        cfg = dataclasses.replace(cfg, hidden_size=16)
    body = report(measure(p.env, cfg, args.agents, args.updates, args.repeats), p.env, cfg, p.runtime.source, args)
    print(body)
    if not args.smoke:
        write_section("Source training: one update, phase by phase", body)


if __name__ == "__main__":
    main()
