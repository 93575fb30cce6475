"""Synthetic learning histories played by the rollout engine: AD^eps noise distillation
(Zisman et al., ICML 2024) and a systematic explorer."""

from __future__ import annotations

import numpy as np
import torch

from adlib.config import EnvConfig, ExplorerConfig, NoiseConfig
from adlib.envs import darkroom as dr
from adlib.rollout import Policy, rollout


def toward_nearest(pos: torch.Tensor, cells: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
    """``[N, 5]`` the actions that step from ``pos`` [N, 2] towards the nearest of the cells
    [C, 2] that ``wanted`` [N, C] marks (ties: towards any of them)."""
    dist = dr.manhattan(pos[:, None, :], cells[None])                                   # [N, C]
    dist = torch.where(wanted, dist, torch.iinfo(dist.dtype).max)
    nearest = dist == dist.min(-1, keepdim=True).values                                 # [N, C]
    return (dr.optimal_actions(pos[:, None, :], cells[None]) & nearest[..., None]).any(1)


class EpsOptimal:
    """A shortest-path policy (to the goal; keydoor: the key, then the door) that acts uniformly
    at random with probability eps. eps falls linearly from ``eps_start`` to ``eps_end`` over
    ``decay_episodes`` episodes, counted by ``cfg.schedule``: from the start of each run
    ('episodes'), or from the run's first reward ('first_reward': ``eps_start`` until then, so
    the stream searches at one noise level and sharpens only once its context shows the goal).
    Episodes are counted from the in-episode timestep (a run's t falls to 0 at each reset), so
    it needs no help from the rollout."""

    def __init__(self, cfg: NoiseConfig):
        self.cfg = cfg
        self.episode: torch.Tensor | None = None   # [N] episode of each run (0-based)
        self.start: torch.Tensor | None = None     # [N] episode the decay starts from (inf: not yet)

    def eps(self) -> torch.Tensor:
        since = self.episode - self.start                                               # -inf until it starts
        D = self.cfg.decay_episodes
        frac = (since >= 0).float() if D == 0 else (since / D).clamp(0.0, 1.0)
        return self.cfg.eps_start + (self.cfg.eps_end - self.cfg.eps_start) * frac

    def __call__(self, obs: torch.Tensor, t: torch.Tensor, prev: dict[str, torch.Tensor],
                 state: dr.EnvState) -> torch.Tensor:
        if self.episode is None:
            self.episode = torch.zeros_like(t)
            self.start = torch.full_like(t, 0.0 if self.cfg.schedule == "episodes" else torch.inf, dtype=torch.float)
        else:
            self.episode = self.episode + (t == 0).long()
        if self.cfg.schedule == "first_reward":
            # the decay starts in the episode that paid first (the one before, if the reward ended
            # it); prev_reward is 'none' (2) on a run's first step
            first = (prev["prev_reward"] == 1) & self.start.isinf()
            self.start = torch.where(first, (self.episode - (t == 0).long()).float(), self.start)
        good = dr.optimal_actions(state.pos, dr.target(state)).float()                   # [N, 5]
        eps = self.eps().unsqueeze(-1)
        probs = eps / dr.N_ACTIONS + (1 - eps) * good / good.sum(-1, keepdim=True)
        return probs.log()                                                                # -inf where 0


class Explorer:
    """Knows the room, not the goal: walks towards the nearest cell it has not stood on yet in
    this run (episodes share what it saw; ties are sampled), and once a reward has shown the
    goal cell, walks the shortest path to it. In the original variant it finds any goal of a
    9x9 room within a few episodes; the learning it shows is explained by its context only."""

    def __init__(self, env_cfg: EnvConfig):
        self.cells = dr.all_cells(env_cfg)                                              # [C, 2]
        self.seen: torch.Tensor | None = None                                           # [N, C]
        self.goal: torch.Tensor | None = None                                           # [N] cell, -1 unknown

    def __call__(self, obs: torch.Tensor, t: torch.Tensor, prev: dict[str, torch.Tensor],
                 state: dr.EnvState) -> torch.Tensor:
        N, C = obs.shape[0], len(self.cells)
        cells = self.cells.to(obs.device)
        if self.seen is None:
            self.seen = torch.zeros(N, C, dtype=torch.bool, device=obs.device)
            self.goal = torch.full((N,), -1, dtype=torch.long, device=obs.device)
        rows = torch.arange(N, device=obs.device)
        last = prev["prev_next_state"]                                                  # pre-reset cell
        real = last < C                                                                 # not 'none'
        self.seen[rows[real], last[real]] = True
        self.seen[rows, obs] = True
        self.goal = torch.where((prev["prev_reward"] == 1) & (self.goal < 0), last, self.goal)
        explore = toward_nearest(state.pos, cells, ~self.seen)
        known = self.goal >= 0
        exploit = dr.optimal_actions(state.pos, cells[self.goal.clamp(min=0)])
        good = torch.where(known[:, None], exploit, explore)                            # [N, 5]
        return torch.where(good, 0.0, -torch.inf)


def synthetic_histories(policy: Policy, env_cfg: EnvConfig, goal_ids: list[int], streams_per_goal: int,
                        transitions: int, seed: int, device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
    """``streams_per_goal`` streams per goal of ``policy``, each exactly ``transitions`` env
    steps long (the last episode may be cut), as history columns. Streams are numbered
    goal-major (stream = i_goal * streams + j). Draws are keyed by (goal, stream, step): a
    goal's streams do not depend on the other goals."""
    n = transitions          # every episode takes >= 1 step: n episodes are never all done in n steps
    res = rollout(policy, env_cfg, goal_ids, streams_per_goal, n, greedy=False, seed=seed, device=device,
                  record=True, keyed=True, max_steps=n)
    tr = res.trace                                                                      # each [streams, n]
    shape = tr["state"].shape
    cols = {"stream": np.broadcast_to(np.arange(shape[0], dtype=np.int32)[:, None], shape).ravel(),
            "step": np.broadcast_to(np.arange(shape[1], dtype=np.int32)[None, :], shape).ravel()}
    cols.update({k: tr[k].ravel() for k in ("t", "state", "action", "reward", "terminated", "truncated",
                                            "next_state")})
    return cols


def noise_histories(env_cfg: EnvConfig, cfg: NoiseConfig, goal_ids: list[int],
                    device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
    """AD^eps streams (:class:`EpsOptimal`) of ``goal_ids`` (see :func:`synthetic_histories`)."""
    return synthetic_histories(EpsOptimal(cfg), env_cfg, goal_ids, cfg.streams_per_goal, cfg.transitions, cfg.seed,
                               device)


def explorer_histories(env_cfg: EnvConfig, cfg: ExplorerConfig, goal_ids: list[int],
                       device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
    """Systematic-explorer streams (:class:`Explorer`) of ``goal_ids`` (see :func:`synthetic_histories`)."""
    return synthetic_histories(Explorer(env_cfg), env_cfg, goal_ids, cfg.streams_per_goal, cfg.transitions,
                               cfg.seed, device)
