"""Synthetic learning histories played by the rollout engine: AD^eps noise distillation
(Zisman et al., ICML 2024) and a systematic explorer."""

from __future__ import annotations

import itertools

import numpy as np
import torch

from adlib.config import EnvConfig, ExplorerConfig, NoiseConfig
from adlib.envs import darkroom as dr
from adlib.rollout import Policy, rollout
from adlib.transitions import FIELDS


def toward_nearest(pos: torch.Tensor, cells: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
    """``[N, 5]`` the actions that step from ``pos`` [N, 2] towards the nearest of the cells
    [C, 2] that ``wanted`` [N, C] marks (ties: towards any of them; no action if none is wanted)."""
    pos, cells = pos.to(torch.int16), cells.to(torch.int16)                            # small: fast and exact
    d_row = cells[None, :, 0] - pos[:, None, 0]                                         # [N, C]
    d_col = cells[None, :, 1] - pos[:, None, 1]
    dist = torch.where(wanted, d_row.abs() + d_col.abs(), torch.iinfo(torch.int16).max)  # Manhattan
    nearest = wanted & (dist == dist.min(-1, keepdim=True).values)                      # [N, C]
    # the moves of dr.optimal_actions, for any of the nearest cells: no-op only when on one
    return torch.stack([(nearest & (dist == 0)).any(-1), (nearest & (d_row < 0)).any(-1),
                        (nearest & (d_col > 0)).any(-1), (nearest & (d_row > 0)).any(-1),
                        (nearest & (d_col < 0)).any(-1)], -1)


# How a deterministic teacher breaks ties between equally good actions: the first of its order.
# The first 8 orders are the symmetries of the square room (rotations of up, right, down, left,
# and their mirror images; the no-op last): with the start at the centre the explorer's rule is
# symmetric, so the tour walked with order k < 8 is order 0's tour turned or mirrored. The other
# 16 complete every order of the four moves (lexicographic; the no-op last): 24 tours in all.
SYMMETRIC_ORDERS = ((1, 2, 3, 4, 0), (2, 3, 4, 1, 0), (3, 4, 1, 2, 0), (4, 1, 2, 3, 0),
                    (1, 4, 3, 2, 0), (4, 3, 2, 1, 0), (3, 2, 1, 4, 0), (2, 1, 4, 3, 0))
TIE_ORDERS = SYMMETRIC_ORDERS + tuple(p + (0,) for p in itertools.permutations((1, 2, 3, 4))
                                      if p + (0,) not in SYMMETRIC_ORDERS)


def first_action(mask: torch.Tensor, variant: torch.Tensor | int = 0) -> torch.Tensor:
    """``[..., A]`` the first action of each set ``mask [..., A]`` in ``TIE_ORDERS[variant]``
    (``variant``: an int, or long ``[...]`` broadcastable to the sets), one-hot; an empty set stays empty."""
    orders = torch.tensor(TIE_ORDERS, device=mask.device)
    order = orders[torch.as_tensor(variant, device=mask.device)].expand(*mask.shape)     # [..., A]
    ranked = mask.gather(-1, order)                                                     # [..., A] in tie order
    first = order.gather(-1, ranked.float().argmax(-1, keepdim=True)).squeeze(-1)       # [...]
    return torch.nn.functional.one_hot(first, mask.shape[-1]).bool() & mask.any(-1, keepdim=True)


class OrderedTies:
    """A policy whose ties are broken by a fixed order per run (``variant [N]``, indices of
    :data:`TIE_ORDERS`): deterministic where ``policy`` is uniform over its best actions."""

    def __init__(self, policy: Policy, variant: torch.Tensor):
        self.policy, self.variant = policy, variant

    def __call__(self, obs: torch.Tensor, t: torch.Tensor, prev: dict[str, torch.Tensor],
                 state: dr.EnvState) -> torch.Tensor:
        logits = self.policy(obs, t, prev, state)
        best = first_action(logits == logits.max(-1, keepdim=True).values, self.variant.to(obs.device))
        return torch.where(best, 0.0, -torch.inf)


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


class KeyDoorExplorer:
    """The systematic explorer of Dark Key-to-Door, from what the agent observes (its cell,
    whether it holds the key) and the rewards: without the key it walks to the nearest cell it
    has not yet arrived on without the key (the start first, by a no-op: a key there is picked up
    so), with the key to the nearest cell not yet arrived on with it; a reward without the key
    marks the key's cell, one with the key the door's; once known, it walks there by the
    shortest path, and stays put once the door is open."""

    def __init__(self, env_cfg: EnvConfig):
        self.n = env_cfg.grid_size
        self.cells = dr.all_cells(env_cfg)                                              # [C, 2]
        self.state: dict[str, torch.Tensor] | None = None

    def __call__(self, obs: torch.Tensor, t: torch.Tensor, prev: dict[str, torch.Tensor],
                 state: dr.EnvState) -> torch.Tensor:
        N, C = obs.shape[0], len(self.cells)
        dev = obs.device
        cells = self.cells.to(dev)
        rows = torch.arange(N, device=dev)
        if self.state is None:
            self.state = dict(seen=torch.zeros(N, 2, C, dtype=torch.bool, device=dev),
                              key=torch.full((N,), -1, device=dev), door=torch.full((N,), -1, device=dev),
                              holding=torch.zeros(N, dtype=torch.bool, device=dev),
                              opened=torch.zeros(N, dtype=torch.bool, device=dev))
        m = self.state
        last, real = prev["prev_next_state"], prev["prev_next_state"] < 2 * C            # pre-reset arrival
        cell, held = last % C, m["holding"].long()                                      # held before the step
        m["seen"][rows[real], held[real], cell[real]] = True
        paid = real & (prev["prev_reward"] == 1)
        m["key"] = torch.where(paid & ~m["holding"], cell, m["key"])
        m["door"] = torch.where(paid & m["holding"], cell, m["door"])
        m["opened"] = (m["opened"] | (paid & m["holding"])) & (t > 0)                   # this episode
        m["holding"] = obs >= C
        pos = torch.stack([(obs % C) // self.n, (obs % C) % self.n], -1)               # [N, 2] from obs only
        unseen = ~m["seen"][rows, m["holding"].long()]                                  # [N, C]
        unseen[rows, m["key"].clamp(min=0)] &= ~(m["holding"] & (m["key"] >= 0))        # the door is not the key
        explore = toward_nearest(pos, cells, unseen)
        aim = torch.where(m["holding"], m["door"], m["key"])
        go = dr.optimal_actions(pos, cells[aim.clamp(min=0)])
        good = torch.where((aim >= 0)[:, None], go, explore)
        good = torch.where(m["opened"][:, None], dr.optimal_actions(pos, pos), good)   # no-op: stay put
        return torch.where(good, 0.0, -torch.inf)


def explorer_of(env_cfg: EnvConfig) -> Policy:
    """A fresh systematic explorer of the room's kind (its memory starts empty)."""
    return KeyDoorExplorer(env_cfg) if env_cfg.kind == "keydoor" else Explorer(env_cfg)


def stream_variants(ties: str, n_goals: int, streams_per_goal: int) -> np.ndarray:
    """``[n_goals * streams_per_goal]`` the tie order (:data:`TIE_ORDERS`) of each explorer stream
    (goal-major): 0 for 'first'; stream j of every goal takes order j % 4 for 'rotations' (the tour
    turned: its first move tells which), j % 8 for 'symmetric' (turned or mirrored), j % 24 for
    'permutations' (every order of the four moves); -1 for 'random' (sampled ties, no order)."""
    if ties == "random":
        return np.full(n_goals * streams_per_goal, -1, np.int8)
    n_orders = {"first": 1, "rotations": 4, "symmetric": len(SYMMETRIC_ORDERS), "permutations": len(TIE_ORDERS)}[ties]
    return np.tile(np.arange(streams_per_goal) % n_orders, n_goals).astype(np.int8)


class EpsMix:
    """``policy`` with probability ``1 - eps``, a uniform random action with probability ``eps``."""

    def __init__(self, policy: Policy, eps: float):
        self.policy, self.eps = policy, eps

    def __call__(self, obs: torch.Tensor, t: torch.Tensor, prev: dict[str, torch.Tensor],
                 state: dr.EnvState) -> torch.Tensor:
        probs = torch.softmax(self.policy(obs, t, prev, state).float(), -1)
        return (self.eps / dr.N_ACTIONS + (1 - self.eps) * probs).log()


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
    cols.update({k: tr[k].ravel() for k in FIELDS})
    return cols


def noise_histories(env_cfg: EnvConfig, cfg: NoiseConfig, goal_ids: list[int],
                    device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
    """AD^eps streams (:class:`EpsOptimal`) of ``goal_ids`` (see :func:`synthetic_histories`)."""
    return synthetic_histories(EpsOptimal(cfg), env_cfg, goal_ids, cfg.streams_per_goal, cfg.transitions, cfg.seed,
                               device)


def explorer_histories(env_cfg: EnvConfig, cfg: ExplorerConfig, goal_ids: list[int],
                       device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
    """Systematic-explorer streams (:func:`explorer_of`; ties as ``cfg.ties``, a uniform random
    action with probability ``cfg.eps``) of ``goal_ids`` (see :func:`synthetic_histories`), with a
    ``variant`` column: each stream's tie order (:func:`stream_variants`; -1 for sampled ties)."""
    variants = stream_variants(cfg.ties, len(goal_ids), cfg.streams_per_goal)
    policy = explorer_of(env_cfg)
    if cfg.ties != "random":
        policy = OrderedTies(policy, torch.from_numpy(variants).long())
    if cfg.eps > 0:
        policy = EpsMix(policy, cfg.eps)
    cols = synthetic_histories(policy, env_cfg, goal_ids, cfg.streams_per_goal, cfg.transitions, cfg.seed, device)
    cols["variant"] = variants[cols["stream"]]
    return cols
