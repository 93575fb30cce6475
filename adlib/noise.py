"""AD^eps noise-distillation histories (Zisman et al., ICML 2024), generated with the batched env."""

from __future__ import annotations

import numpy as np
import torch

from adlib import rng
from adlib.config import EnvConfig, NoiseConfig
from adlib.envs import darkroom as dr


def noise_histories(env_cfg: EnvConfig, cfg: NoiseConfig, goal_ids: list[int],
                    device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
    """AD^eps histories (Zisman et al., 2024): a shortest-path policy acting uniformly at
    random with probability eps, eps decaying linearly over the first ``decay_episodes``.

    ``cfg.streams_per_goal`` streams per goal, each exactly ``cfg.episodes`` episodes long.
    Streams are numbered goal-major (stream = i_goal * streams_per_goal + j).
    """
    device = torch.device(device)
    S = cfg.streams_per_goal
    n = len(goal_ids) * S
    goals = dr.all_goals(env_cfg)[torch.tensor(goal_ids).repeat_interleave(S)].to(device)   # [n, 2]
    ids = torch.arange(n, device=device)
    key = torch.tensor(goal_ids, device=device).repeat_interleave(S) * 100_003 + ids % S     # per-stream identity
    u_start = (lambda c: rng.uniform(cfg.seed, 3, key, c)) if env_cfg.random_start else (lambda c: None)
    state, obs = dr.reset(env_cfg, goals, u_start(-1))
    episode = torch.zeros(n, dtype=torch.long, device=device)
    rows: list[dict[str, torch.Tensor]] = []
    max_steps = cfg.episodes * env_cfg.max_episode_steps
    for k in range(max_steps):
        active = episode < cfg.episodes
        if not bool(active.any()):
            break
        frac = (episode.float() / cfg.decay_episodes).clamp(max=1.0)
        eps = cfg.eps_start + (cfg.eps_end - cfg.eps_start) * frac
        u_eps, u_rand, u_opt = (rng.uniform(cfg.seed, c, key, k) for c in (10, 11, 12))
        good = dr.optimal_actions(state.pos, state.goal).float()                        # [n, 5]
        greedy = rng.categorical(good, u_opt)
        random_a = (u_rand * dr.N_ACTIONS).long().clamp_max(dr.N_ACTIONS - 1)
        action = torch.where(u_eps < eps, random_a, greedy)
        out = dr.step(env_cfg, state, action, u_start(k))
        rows.append({"active": active, "t": state.t, "state": obs, "action": action, "reward": out.reward,
                     "terminated": out.terminated, "truncated": out.truncated, "next_state": out.final_obs})
        episode = episode + (out.terminated | out.truncated).long()
        state, obs = out.state, out.obs
    stacked = {k: torch.stack([r[k] for r in rows], 1).cpu().numpy() for k in rows[0]}    # [n, steps]
    active = stacked.pop("active")
    steps = np.cumsum(active, 1) - 1
    stream = np.broadcast_to(np.arange(n, dtype=np.int32)[:, None], active.shape)
    cols = {"stream": stream[active], "step": steps[active].astype(np.int32)}
    cols.update({k: v[active] for k, v in stacked.items()})
    return cols
