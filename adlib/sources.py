"""Training a shard of source agents and writing their per-goal artefacts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

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
    shard_goals,
    stale_shards,
    to_table,
    write_table,
)
from adlib.io import atomic_dir, fingerprint, load_resume, save_torch, write_json
from adlib.logs import bar, get_logger

log = get_logger("train_source_agents")

# The summary's windows are counted in env steps per agent, not in log points, so that
# summary.json (part of the data later stages depend on) does not change with runtime.source.log_every.
SUMMARY_WINDOW = 5_000


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


def train_shard(env_cfg: EnvConfig, cfg: SourceConfig, shard: int, out_dir: str | Path,
                resume_dir: str | Path | None = None, log_dir: str | Path | None = None,
                rt: SourceRuntime = SourceRuntime()) -> list[dict]:
    """Train every (goal, seed) agent of ``shard`` as one batch and write, per goal:
    ``history.parquet``, ``agent.pt`` and ``summary.json`` (layout: :mod:`adlib.histories`).
    The whole shard folder is replaced atomically at the end. No output depends on ``rt``.

    With ``log_dir``, a TensorBoard run per goal goes there (``log_dir/goal_XXX``): logs are
    kept out of the data that later stages depend on. With ``resume_dir``, a checkpoint
    ``shard_<k>.pt`` is written there every ``rt.checkpoint_every`` updates; a rerun after
    a kill continues from it (when it belongs to the same params) and produces the same
    outputs as an uninterrupted run.
    """
    n_goals = len(dr.all_goals(env_cfg))
    goals = shard_goals(n_goals, shard, len(cfg.shards))
    goal_ids = [g for g in goals for _ in range(cfg.seeds_per_goal)]
    seeds = [s for _ in goals for s in range(cfg.seeds_per_goal)]
    device = pick_device(rt.device, "runtime.source.device")
    if rt.threads > 0:
        torch.set_num_threads(rt.threads)
    G = len(goal_ids)
    n_updates = a2c.updates_of(cfg)
    log.info(f"shard {shard}/{len(cfg.shards)}: {len(goals)} goals x {cfg.seeds_per_goal} seeds = {G} agents, "
             f"{n_updates * cfg.nenvs * cfg.nsteps:,} env steps each, on {device}")

    ckpt_path = Path(resume_dir) / f"shard_{shard}.pt" if resume_dir is not None else None
    # what the checkpointed state depends on: the params, and log_every (the logs it holds)
    fp = fingerprint(to_dict(env_cfg), to_dict(cfg), rt.log_every, goal_ids, seeds)
    saved, note = load_resume(ckpt_path, fp)
    resume = saved["state"] if saved is not None else None
    if note:
        log.info(f"shard {shard}: {note}" + (f" at update {resume['update']}/{n_updates}" if resume else ""))

    def on_checkpoint(state: dict) -> None:
        save_torch(ckpt_path, {"fingerprint": fp, "state": state})

    logs: list[a2c.AgentLog] = []
    with bar(G * n_updates * cfg.nenvs * cfg.nsteps, f"A2C shard {shard}", unit="step") as pbar:
        done = [0]

        def on_update(steps: int) -> None:
            pbar.update(G * steps - done[0])
            done[0] = G * steps

        def on_log(entry: a2c.AgentLog) -> None:
            logs.append(entry)
            pbar.set_postfix(success=f"{entry.stats['success_rate'].mean():.3f}", refresh=False)

        params, hist = a2c.train_agents(env_cfg, cfg, goal_ids, seeds, device, rt=rt, on_log=on_log, on_update=on_update,
                                        on_checkpoint=on_checkpoint if ckpt_path is not None else None,
                                        resume=resume)

    with atomic_dir(out_dir) as tmp:
        summaries = [write_goal(tmp, goal, [i for i, g in enumerate(goal_ids) if g == goal], params, hist,
                                env_cfg, cfg) for goal in goals]
        write_json(Path(tmp) / SHARD_FILE, {"shard": shard, "n_shards": len(cfg.shards), "goals": goals,
                                            "complete": True})
    if log_dir is not None:
        write_tensorboard(log_dir, goals, goal_ids, logs, cfg)
    remove_stale_shards(out_dir, log_dir, len(cfg.shards))
    if ckpt_path is not None:
        ckpt_path.unlink(missing_ok=True)
    rates = [s["final_success_rate"] for s in summaries]
    log.info(f"shard {shard}: final success mean {np.mean(rates):.3f}, min {np.min(rates):.3f} over {len(goals)} goals")
    return summaries


def write_goal(shard_dir: str | Path, goal: int, agents: list[int], params: dict[str, torch.Tensor],
               hist: History, env_cfg: EnvConfig, cfg: SourceConfig) -> dict:
    """Write one goal's folder (``history.parquet``, ``agent.pt``, ``summary.json``) from the
    shard's agents ``agents`` (rows of ``params`` / ``hist``); returns the summary."""
    gdir = goal_dir(shard_dir, goal)
    gdir.mkdir(parents=True)
    cell = dr.all_goals(env_cfg)[goal].tolist()
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


def remove_stale_shards(out_dir: str | Path, log_dir: str | Path | None, n_shards: int) -> None:
    """Remove outputs of shard stages that no longer exist (``source.shards`` shrank): no stage
    owns them and no reader looks at them; they stay in DVC's cache if ever needed again."""
    parents = [Path(out_dir).parent] + ([Path(log_dir).parent] if log_dir is not None else [])
    for stale in (p for parent in parents for p in stale_shards(parent, n_shards)):
        log.info(f"removing {stale}: left over from a larger source.shards")
        shutil.rmtree(stale, ignore_errors=True)


def tb_tag(key: str) -> str:
    """TensorBoard tag of a log statistic, in CleanRL's namespaces (charts/..., losses/...)."""
    return ("charts/" if key in a2c.EPISODE_STATS else "losses/") + key


def write_tensorboard(log_dir: str | Path, goals: list[int], goal_ids: list[int], logs: list[a2c.AgentLog],
                      cfg: SourceConfig) -> None:
    """One TensorBoard run per goal under ``log_dir`` (``goal_XXX``; a ``seed_<j>`` suffix per
    tag when a goal has several agents). The folder is replaced, never appended to."""
    shutil.rmtree(log_dir, ignore_errors=True)
    for goal in goals:
        agents = [i for i, g in enumerate(goal_ids) if g == goal]
        with SummaryWriter(str(goal_dir(log_dir, goal))) as w:
            w.add_text("hparams", "\n".join(f"- {k}: {v}" for k, v in to_dict(cfg).items()), 0)
            for e in logs:
                for key, vals in e.stats.items():
                    for j, a in enumerate(agents):
                        suffix = "" if len(agents) == 1 else f"/seed_{j}"
                        w.add_scalar(tb_tag(key) + suffix, float(vals[a]), e.env_steps)
