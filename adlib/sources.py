"""Training a shard of source agents and writing their per-goal artefacts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from adlib import a2c
from adlib.config import EnvConfig, SourceConfig, to_dict
from adlib.histories import agent_streams, to_table, write_table
from adlib.io import atomic_dir, fingerprint, load_torch, save_torch, write_json
from adlib.logs import bar, get_logger, pick_device
from adlib.envs import darkroom as dr

log = get_logger("train_source_agents")


def shard_goals(n_goals: int, shard: int, n_shards: int) -> list[int]:
    """Goal ids trained by ``shard``: every ``n_shards``-th goal (interleaved, so shards balance)."""
    return list(range(shard, n_goals, n_shards))


def goal_dir(root: str | Path, goal_id: int) -> Path:
    return Path(root) / f"goal_{goal_id:03d}"


def steps_to_reach(env_steps: np.ndarray, success: np.ndarray, level: float) -> int | None:
    """First logged env step at which the windowed success rate reached ``level`` (None if never)."""
    hit = np.nonzero(success >= level)[0]
    return int(env_steps[hit[0]]) if len(hit) else None


def train_shard(env_cfg: EnvConfig, cfg: SourceConfig, shard: int, out_dir: str | Path,
                resume_dir: str | Path | None = None) -> list[dict]:
    """Train every (goal, seed) agent of ``shard`` as one batch and write, per goal:
    ``history.parquet``, ``agent.pt``, ``summary.json`` and a TensorBoard run ``tb/``.
    The whole shard folder is replaced atomically at the end.

    With ``resume_dir``, a checkpoint ``shard_<k>.pt`` is written there every
    ``cfg.checkpoint_every`` updates; a rerun after a kill continues from it (when it belongs
    to the same params) and produces the same outputs as an uninterrupted run.
    """
    n_goals = len(dr.all_goals(env_cfg))
    goals = shard_goals(n_goals, shard, len(cfg.shards))
    goal_ids = [g for g in goals for _ in range(cfg.seeds_per_goal)]
    seeds = [s for _ in goals for s in range(cfg.seeds_per_goal)]
    device = pick_device(cfg.device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    G = len(goal_ids)
    n_updates = max(1, cfg.env_steps // (cfg.nenvs * cfg.nsteps))
    log.info(f"shard {shard}/{len(cfg.shards)}: {len(goals)} goals x {cfg.seeds_per_goal} seeds = {G} agents, "
             f"{n_updates * cfg.nenvs * cfg.nsteps:,} env steps each, on {device}")

    ckpt_path = Path(resume_dir) / f"shard_{shard}.pt" if resume_dir is not None else None
    fp = fingerprint(to_dict(env_cfg), to_dict(cfg), goal_ids, seeds)
    resume = None
    if ckpt_path is not None and ckpt_path.exists():
        saved = load_torch(ckpt_path)
        if saved.get("fingerprint") == fp:
            resume = saved["state"]
            log.info(f"resuming shard {shard} from {ckpt_path} at update {resume['update']}/{n_updates}")
        else:
            log.info(f"ignoring {ckpt_path}: it belongs to other params")

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
            pbar.set_postfix(success=f"{entry.stats['charts/success_rate'].mean():.3f}", refresh=False)

        params, hist = a2c.train_agents(env_cfg, cfg, goal_ids, seeds, device, on_log=on_log, on_update=on_update,
                                        on_checkpoint=on_checkpoint if ckpt_path is not None else None,
                                        resume=resume)

    env_steps = np.array([e.env_steps for e in logs])
    summaries = []
    with atomic_dir(out_dir) as tmp:
        for gi, goal in enumerate(goals):
            agents = [i for i, g in enumerate(goal_ids) if g == goal]
            gdir = goal_dir(tmp, goal)
            gdir.mkdir(parents=True)
            cell = dr.all_goals(env_cfg)[goal].tolist()
            meta = {"goal_id": str(goal), "goal": json.dumps(cell), "size": str(env_cfg.size),
                    "env": json.dumps(to_dict(env_cfg)), "source": json.dumps(to_dict(cfg))}
            write_table(to_table(agent_streams(hist, agents), meta), gdir / "history.parquet")
            save_torch(gdir / "agent.pt", {
                "params": {k: v[agents].clone() for k, v in params.items()},
                "goal_id": goal, "goal": cell, "seeds": list(range(cfg.seeds_per_goal)),
                "env": to_dict(env_cfg), "source": to_dict(cfg),
            })
            success = np.stack([e.stats["charts/success_rate"][agents] for e in logs])   # [points, seeds]
            summary = {
                "goal_id": goal, "goal": cell, "seeds": cfg.seeds_per_goal, "streams": len(agents) * cfg.nenvs,
                "env_steps_per_agent": int(env_steps[-1]),
                "final_success_rate": float(success[-1].mean()),
                "final_episodic_length": float(np.mean([logs[-1].stats["charts/episodic_length"][a] for a in agents])),
                "steps_to_90pct_success": [steps_to_reach(env_steps, success[:, j], 0.9) for j in range(len(agents))],
            }
            write_json(gdir / "summary.json", summary)
            summaries.append(summary)
            with SummaryWriter(str(gdir / "tb")) as w:
                w.add_text("hparams", "\n".join(f"- {k}: {v}" for k, v in to_dict(cfg).items()), 0)
                for e in logs:
                    for tag, vals in e.stats.items():
                        for j, a in enumerate(agents):
                            suffix = "" if len(agents) == 1 else f"/seed_{j}"
                            w.add_scalar(tag + suffix, float(vals[a]), e.env_steps)
        write_json(Path(tmp) / "shard.json", {"shard": shard, "n_shards": len(cfg.shards), "goals": goals,
                                             "complete": True})
    if ckpt_path is not None:
        ckpt_path.unlink(missing_ok=True)
    rates = [s["final_success_rate"] for s in summaries]
    log.info(f"shard {shard}: final success mean {np.mean(rates):.3f}, min {np.min(rates):.3f} over {len(goals)} goals")
    return summaries
