"""AD^eps noise-distillation histories (Zisman et al., ICML 2024), played by the rollout engine."""

from __future__ import annotations

import numpy as np
import torch

from adlib.config import EnvConfig, NoiseConfig
from adlib.envs import darkroom as dr
from adlib.rollout import rollout


class EpsOptimal:
    """A shortest-path policy that acts uniformly at random with probability eps, eps decaying
    linearly from ``eps_start`` to ``eps_end`` over the first ``decay_episodes`` episodes of
    each run. Episodes are counted from the in-episode timestep (a run's t falls to 0 at each
    reset), so it needs no help from the rollout."""

    def __init__(self, cfg: NoiseConfig):
        self.cfg = cfg
        self.episode: torch.Tensor | None = None

    def eps(self) -> torch.Tensor:
        frac = (self.episode.float() / self.cfg.decay_episodes).clamp(max=1.0)
        return self.cfg.eps_start + (self.cfg.eps_end - self.cfg.eps_start) * frac

    def __call__(self, obs: torch.Tensor, t: torch.Tensor, prev: dict[str, torch.Tensor],
                 state: dr.EnvState) -> torch.Tensor:
        if self.episode is None:
            self.episode = torch.zeros_like(t)
        else:
            self.episode = self.episode + (t == 0).long()
        good = dr.optimal_actions(state.pos, state.goal).float()                          # [N, 5]
        eps = self.eps().unsqueeze(-1)
        probs = eps / dr.N_ACTIONS + (1 - eps) * good / good.sum(-1, keepdim=True)
        return probs.log()                                                                # -inf where 0


def noise_histories(env_cfg: EnvConfig, cfg: NoiseConfig, goal_ids: list[int],
                    device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
    """``cfg.streams_per_goal`` AD^eps streams per goal, each exactly ``cfg.transitions`` env
    steps long (the last episode may be cut), as history columns. Streams are numbered
    goal-major (stream = i_goal * streams + j). Draws are keyed by (goal, stream, step): a
    goal's streams do not depend on the other goals."""
    n = cfg.transitions      # every episode takes >= 1 step: n episodes are never all done in n steps
    res = rollout(EpsOptimal(cfg), env_cfg, goal_ids, cfg.streams_per_goal, n, greedy=False,
                  seed=cfg.seed, device=device, record=True, keyed=True, max_steps=n)
    tr = res.trace                                                                      # each [streams, n]
    shape = tr["state"].shape
    cols = {"stream": np.broadcast_to(np.arange(shape[0], dtype=np.int32)[:, None], shape).ravel(),
            "step": np.broadcast_to(np.arange(shape[1], dtype=np.int32)[None, :], shape).ravel()}
    cols.update({k: tr[k].ravel() for k in ("t", "state", "action", "reward", "terminated", "truncated",
                                            "next_state")})
    return cols
