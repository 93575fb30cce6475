"""Training a shard of source agents and writing their per-goal artefacts."""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from adlib import a2c
from adlib.config import EnvConfig, SourceConfig, SourceRuntime, to_dict
from adlib.device import pick_device
from adlib.envs import darkroom as dr
from adlib.histories import (
    AGENT_FILE,
    History,
    HISTORY_FILE,
    SHARD_FILE,
    SUMMARY_FILE,
    agent_streams,
    episode_table,
    goal_dir,
    remove_stale_shards,
    shard_goals,
    to_table,
    write_table,
)
from adlib.io import atomic_dir, fingerprint, load_resume, save_torch, write_json
from adlib.logs import bar, get_logger

log = get_logger("train_source_agents")

# The summary's windows are counted in env steps per agent, not in log points, so that
# summary.json (part of the data later stages depend on) does not change with runtime.source.log_every.
SUMMARY_WINDOW = 5_000

# The layout of the A2C state a resume checkpoint holds: a checkpoint of another layout is ignored.
RESUME_FORMAT = "a2c-v2"


def agent_summary(hist: History, agent: int, window: int = SUMMARY_WINDOW, success_return: int = 1) -> dict:
    """Success and episode length of one agent over the last ``window`` env steps (all its envs
    together), and the first env step at which a window's success rate reached 0.9."""
    cols = agent_streams(hist, [agent])
    E = hist.state.shape[2]
    ep = episode_table(cols, success_return)
    done = cols["terminated"] | cols["truncated"]
    end = cols["step"][done].astype(np.int64) * E          # agent env steps when each episode ended
    win = end // window
    n_win = int(win.max(initial=-1)) + 1
    hits = np.bincount(win, weights=ep["success"], minlength=n_win)
    count = np.bincount(win, minlength=n_win)
    rate = hits / np.maximum(count, 1)
    reached = np.flatnonzero((count > 0) & (rate >= 0.9))
    last = win == n_win - 1
    return {"final_success_rate": float(ep["success"][last].mean()) if last.any() else 0.0,
            "final_episodic_length": float(ep["length"][last].mean()) if last.any() else 0.0,
            "steps_to_90pct_success": int((reached[0] + 1) * window) if len(reached) else None}


def n_workers(rt: SourceRuntime, n_goals: int) -> int:
    """Worker processes for a shard of ``n_goals`` goals: ``rt.workers`` (0: one per CPU core this
    process may use), never more than the goals."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(n_goals, rt.workers or cores))


@dataclass(frozen=True)
class Part:
    """One worker's share of a shard: its goals (every seed of each), where it writes and resumes."""

    shard: int
    index: int
    of: int
    goals: list[int]
    out_dir: Path                  # the shard's temporary folder: goal folders are written into it
    ckpt_path: Path | None
    log_dir: Path | None = None    # the shard's temporary TensorBoard folder: the part writes its goals' runs there


def train_shard(env_cfg: EnvConfig, cfg: SourceConfig, shard: int, out_dir: str | Path,
                resume_dir: str | Path | None = None, log_dir: str | Path | None = None,
                rt: SourceRuntime = SourceRuntime()) -> list[dict]:
    """Train every (goal, seed) agent of ``shard`` and write, per goal: ``history.parquet``,
    ``agent.pt`` and ``summary.json`` (layout: :mod:`adlib.histories`). The whole shard folder is
    replaced atomically at the end. No output depends on ``rt``.

    The goals are dealt to :func:`n_workers` processes (interleaved, so near and far goals mix),
    each training its agents as one batch and writing their goal folders: agents never interact
    and every random draw is keyed by the agent, so the bytes do not depend on how the goals are
    dealt (tested). With ``log_dir``, a TensorBoard run per goal goes there (``log_dir/goal_XXX``;
    each worker writes its goals' runs into a temporary folder that replaces ``log_dir`` once every
    part is done, as the shard folder does): logs are kept out of the data that later stages
    depend on. With ``resume_dir``, each worker writes a checkpoint there every
    ``rt.checkpoint_every`` updates; a rerun after a kill
    continues from them (when they belong to the same params and the same dealing) and
    produces the same outputs as an uninterrupted run.
    """
    n_goals = len(dr.tasks_in_use(env_cfg))
    goals = shard_goals(n_goals, shard, len(cfg.shards))
    W = n_workers(rt, len(goals))
    G = len(goals) * cfg.seeds_per_goal
    n_updates = a2c.updates_of(cfg)
    log.info(f"shard {shard}/{len(cfg.shards)}: {len(goals)} goals x {cfg.seeds_per_goal} seeds = {G} agents, "
             f"{n_updates * cfg.nenvs * cfg.nsteps:,} env steps each, {W} worker process(es) on "
             f"{pick_device(rt.device, 'runtime.source.device')}")
    results: list[list[dict]] = []
    logs_dir = atomic_dir(log_dir, lazy=True) if log_dir is not None else contextlib.nullcontext(None)
    with atomic_dir(out_dir, lazy=True) as tmp, logs_dir as logs_tmp, \
            bar(G * n_updates * cfg.nenvs * cfg.nsteps, f"A2C shard {shard}", unit="step") as pbar:
        parts = [Part(shard, j, W, goals[j::W], Path(tmp), resume_path(resume_dir, shard, j, W), logs_tmp)
                 for j in range(W)]
        if W == 1:
            results.append(train_part(env_cfg, cfg, parts[0], rt, _Progress(pbar)))
        else:
            results = run_parts(env_cfg, cfg, parts, rt, pbar)
        Path(tmp).mkdir(parents=True, exist_ok=True)
        write_json(Path(tmp) / SHARD_FILE, {"shard": shard, "n_shards": len(cfg.shards), "goals": goals,
                                            "complete": True})
    remove_stale_shards([Path(out_dir).parent] + ([Path(log_dir).parent] if log_dir is not None else []),
                        len(cfg.shards))
    for part in parts:
        if part.ckpt_path is not None:
            part.ckpt_path.unlink(missing_ok=True)
    summaries = sorted((s for part_summaries in results for s in part_summaries), key=lambda s: s["goal_id"])
    rates = [s["final_success_rate"] for s in summaries]
    log.info(f"shard {shard}: final success mean {np.mean(rates):.3f}, min {np.min(rates):.3f} over {len(goals)} goals")
    return summaries


def resume_path(resume_dir: str | Path | None, shard: int, part: int, of: int) -> Path | None:
    """The resume checkpoint of one worker's part of a shard (``shard_<k>.pt`` for a single worker)."""
    if resume_dir is None:
        return None
    return Path(resume_dir) / (f"shard_{shard}.pt" if of == 1 else f"shard_{shard}.part_{part}of{of}.pt")


class _Progress:
    """Where a part reports env steps done: the progress bar in the parent process, or a shared
    counter that the parent turns into the bar."""

    def __init__(self, pbar=None, counter=None):
        self.pbar, self.counter = pbar, counter

    def add(self, steps: int) -> None:
        if self.pbar is not None:
            self.pbar.update(steps)
        else:
            with self.counter.get_lock():
                self.counter.value += steps

    def success(self, rate: float) -> None:
        if self.pbar is not None:
            self.pbar.set_postfix(success=f"{rate:.3f}", refresh=False)


def train_part(env_cfg: EnvConfig, cfg: SourceConfig, part: Part, rt: SourceRuntime, progress: _Progress
               ) -> list[dict]:
    """Train the agents of ``part`` as one batch and write its goal folders (and TensorBoard runs,
    with ``part.log_dir``); their summaries."""
    if rt.threads > 0:
        torch.set_num_threads(rt.threads)
    device = pick_device(rt.device, "runtime.source.device")
    goal_ids = [g for g in part.goals for _ in range(cfg.seeds_per_goal)]
    seeds = [s for _ in part.goals for s in range(cfg.seeds_per_goal)]
    n_updates = a2c.updates_of(cfg)
    # what the checkpointed state depends on: the params, log_every (the logs it holds), the agents
    fp = fingerprint(RESUME_FORMAT, to_dict(env_cfg), to_dict(cfg), rt.log_every, goal_ids, seeds)
    saved, note = load_resume(part.ckpt_path, fp)
    resume = saved["state"] if saved is not None else None
    if note:
        where = f"shard {part.shard}" + (f" part {part.index + 1}/{part.of}" if part.of > 1 else "")
        log.info(f"{where}: {note}"
                 + (f" at update {resume['update']}/{n_updates}" if resume else ""))

    def on_checkpoint(state: dict) -> None:
        save_torch(part.ckpt_path, {"fingerprint": fp, "state": state})

    logs: list[a2c.AgentLog] = []
    done = [0]
    parent = os.getppid()

    def on_update(steps: int) -> None:
        progress.add(len(goal_ids) * steps - done[0])
        done[0] = len(goal_ids) * steps
        if progress.counter is not None and os.getppid() != parent:   # the stage was killed: stop too
            os._exit(1)

    def on_log(entry: a2c.AgentLog) -> None:
        logs.append(entry)
        progress.success(float(entry.stats["success_rate"].mean()))

    params, hist = a2c.train_agents(env_cfg, cfg, goal_ids, seeds, device, rt=rt, on_log=on_log,
                                    on_update=on_update,
                                    on_checkpoint=on_checkpoint if part.ckpt_path is not None else None,
                                    resume=resume)
    summaries = [write_goal(part.out_dir, goal, [i for i, g in enumerate(goal_ids) if g == goal], params, hist,
                            env_cfg, cfg) for goal in part.goals]
    if part.log_dir is not None:          # in the worker: the parts write their runs in parallel
        write_tensorboard(part.log_dir, part.goals, logs, cfg)
    return summaries


_COUNTER = None


def _init_worker(counter) -> None:
    global _COUNTER
    _COUNTER = counter


def _worker(env_cfg: EnvConfig, cfg: SourceConfig, part: Part, rt: SourceRuntime) -> list[dict]:
    return train_part(env_cfg, cfg, part, rt, _Progress(counter=_COUNTER))


def run_parts(env_cfg: EnvConfig, cfg: SourceConfig, parts: list[Part], rt: SourceRuntime, pbar
              ) -> list[list[dict]]:
    """Run every part in its own process (spawned: a fresh interpreter, nothing forked from this
    one) and drive the progress bar from their shared step counter. The first error of a part
    is raised here and the other parts are stopped (so are all of them if this process exits)."""
    ctx = mp.get_context("spawn")
    counter = ctx.Value("q", 0)
    with ctx.Pool(len(parts), initializer=_init_worker, initargs=(counter,)) as pool:   # exit: terminate
        pending = [pool.apply_async(_worker, (env_cfg, cfg, part, rt)) for part in parts]
        while waiting := [r for r in pending if not r.ready()]:
            waiting[0].wait(0.5)
            pbar.update(counter.value - pbar.n)
            for r in pending:
                if r.ready() and not r.successful():
                    r.get()                                  # raises the part's error
        pbar.update(counter.value - pbar.n)
        return [r.get() for r in pending]


def write_goal(shard_dir: str | Path, goal: int, agents: list[int], params: dict[str, torch.Tensor],
               hist: History, env_cfg: EnvConfig, cfg: SourceConfig) -> dict:
    """Write one goal's folder (``history.parquet``, ``agent.pt``, ``summary.json``) from the
    shard's agents ``agents`` (rows of ``params`` / ``hist``); returns the summary."""
    gdir = goal_dir(shard_dir, goal)
    gdir.mkdir(parents=True)
    cell = dr.tasks_in_use(env_cfg)[goal].tolist()
    env_rec, src_rec = to_dict(env_cfg), to_dict(cfg)
    meta = {"goal_id": str(goal), "goal": json.dumps(cell), "grid_size": str(env_cfg.grid_size),
            "env": json.dumps(env_rec), "source": json.dumps(src_rec)}
    write_table(to_table(agent_streams(hist, agents), meta), gdir / HISTORY_FILE)
    save_torch(gdir / AGENT_FILE, {"params": {k: v[agents].clone() for k, v in params.items()},
                                   "goal_id": goal, "goal": cell, "seeds": list(range(cfg.seeds_per_goal)),
                                   "env": env_rec, "source": src_rec})
    per_agent = [agent_summary(hist, a, success_return=dr.success_return(env_cfg)) for a in agents]
    summary = {
        "goal_id": goal, "goal": cell, "seeds": cfg.seeds_per_goal, "streams": len(agents) * cfg.nenvs,
        "env_steps_per_agent": a2c.updates_of(cfg) * cfg.nenvs * cfg.nsteps,
        "window_env_steps": SUMMARY_WINDOW,
        "final_success_rate": float(np.mean([a["final_success_rate"] for a in per_agent])),
        "final_episodic_length": float(np.mean([a["final_episodic_length"] for a in per_agent])),
        "steps_to_90pct_success": [a["steps_to_90pct_success"] for a in per_agent],
    }
    write_json(gdir / SUMMARY_FILE, summary)
    return summary


def tb_tag(key: str) -> str:
    """TensorBoard tag of a log statistic, in CleanRL's namespaces (charts/..., losses/...)."""
    return ("charts/" if key in a2c.EPISODE_STATS else "losses/") + key


def write_tensorboard(log_dir: str | Path, goals: list[int], logs: list[a2c.AgentLog], cfg: SourceConfig) -> None:
    """One TensorBoard run per goal under ``log_dir`` (``goal_XXX``; a ``seed_<j>`` suffix per
    tag when a goal has several agents) from the logs of the batch that trained ``goals`` (every
    seed of each, goal-major)."""
    from torch.utils.tensorboard import SummaryWriter   # here: a stage with several workers never writes in its parent (0.6 s)

    for i, goal in enumerate(goals):
        agents = list(range(i * cfg.seeds_per_goal, (i + 1) * cfg.seeds_per_goal))
        # a queue for every event: the default of 10 makes each add_scalar wait on the writer thread (2x slower)
        with SummaryWriter(str(goal_dir(log_dir, goal)), max_queue=1_000_000, flush_secs=3600) as w:
            w.add_text("hparams", "\n".join(f"- {k}: {v}" for k, v in to_dict(cfg).items()), 0)
            for e in logs:
                for key, vals in e.stats.items():
                    for j, a in enumerate(agents):
                        suffix = "" if len(agents) == 1 else f"/seed_{j}"
                        w.add_scalar(tb_tag(key) + suffix, float(vals[a]), e.env_steps)
