"""The lockstep rollout engine: any policy plays every goal x seed at once, episode after
episode, on the batched Dark Room core. Used by the in-context player (:mod:`adlib.incontext`),
the baselines of eval_dt, the AD^eps histories and the videos; A2C's training loop, which
draws its randomness per agent, is the only other loop over env steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from adlib import rng, tokens
from adlib.config import EnvConfig
from adlib.envs import darkroom as dr
from adlib.transitions import FIELDS


@dataclass
class PlayResult:
    """Per-episode outcomes ``[N, episodes]`` of N runs (goal-major: run = goal * seeds + seed)."""

    goal_ids: np.ndarray   # [N]
    returns: np.ndarray
    success: np.ndarray    # the task completed: goal reached (keydoor: door opened)
    lengths: np.ndarray
    shortest: np.ndarray   # [N] fewest steps to complete the task from the start (fixed start only)
    trace: dict[str, np.ndarray] | None = None   # when recorded: TRACE_FIELDS, each [N, steps]

    @property
    def positions(self) -> np.ndarray | None:
        """``[N, steps]`` the cell each step reached (pre-reset), when recorded."""
        return None if self.trace is None else self.trace["next_state"]

    @property
    def episode_of_step(self) -> np.ndarray | None:
        return None if self.trace is None else self.trace["episode"]


# stream keys of the counter-based draws of a keyed rollout
_ACT, _START = 1, 2

# what a recorded rollout keeps of every step (the columns of a learning history, plus the
# episode number of the step within its run)
TRACE_FIELDS = (*FIELDS, "episode")   # adlib.transitions.FIELDS and the episode index


# a policy maps (obs [N], in-episode t [N], previous-transition fields, env state) -> logits [N, A]
Policy = Callable[[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dr.EnvState], torch.Tensor]


def oracle_policy(obs: torch.Tensor, t: torch.Tensor, prev: dict[str, torch.Tensor], state: dr.EnvState) -> torch.Tensor:
    """Knows the task: logits favouring the shortest-path actions (a reference for metrics)."""
    return torch.where(dr.optimal_actions(state.pos, dr.target(state)), 0.0, -1e9)


def random_policy(obs: torch.Tensor, t: torch.Tensor, prev: dict[str, torch.Tensor], state: dr.EnvState) -> torch.Tensor:
    """Uniform over actions."""
    return torch.zeros(obs.shape[0], dr.N_ACTIONS, device=obs.device)


class Draws:
    """A rollout's randomness: random starts and sampled actions of N runs. Seeded by ``seed``
    from one ``torch.Generator``, or with ``run_keys`` (:func:`adlib.rng.run_keys`) a counter-based
    hash of (seed, run, step) per draw, so that a run's draws do not depend on its batch."""

    def __init__(self, n: int, seed: int, device: torch.device, run_keys: torch.Tensor | None, random_start: bool):
        self.n, self.seed, self.device, self.keys, self.random_start = n, seed, device, run_keys, random_start
        self.gen = torch.Generator(device=device).manual_seed(seed)

    def start(self, k: int) -> torch.Tensor | None:
        """Uniforms ``[N]`` of the random starts of the auto-resets at env step ``k`` (-1: the first reset)."""
        if not self.random_start:
            return None
        if self.keys is not None:
            return rng.uniform(self.seed, _START, self.keys, k)
        return torch.rand(self.n, generator=self.gen, device=self.device)

    def action(self, probs: torch.Tensor, k: int) -> torch.Tensor:
        """Actions ``[N]`` sampled from ``probs [N, A]`` at env step ``k``."""
        if self.keys is not None:
            return rng.categorical(probs, rng.uniform(self.seed, _ACT, self.keys, k))
        return torch.multinomial(probs, 1, generator=self.gen).squeeze(-1)


class Episodes:
    """Per-episode returns and lengths ``[N, episodes]`` of N lockstep runs; steps of a run past
    its last episode are not counted."""

    def __init__(self, n: int, episodes: int, device: torch.device):
        self.episodes = episodes
        self.returns = torch.zeros(n, episodes, device=device)
        self.lengths = torch.zeros(n, episodes, dtype=torch.long, device=device)
        self.index = torch.zeros(n, dtype=torch.long, device=device)              # [N] current episode
        self.ret = torch.zeros(n, device=device)                                     # its return so far
        self.rows = torch.arange(n, device=device)

    def all_done(self) -> bool:
        return bool((self.index >= self.episodes).all())

    def add(self, out: dr.StepOut, t: torch.Tensor) -> None:
        """Account one step (``t`` [N]: its in-episode timestep)."""
        self.ret += out.reward
        done = out.terminated | out.truncated
        live = done & (self.index < self.episodes)
        e = self.index.clamp(max=self.episodes - 1)
        self.returns[self.rows[live], e[live]] = self.ret[live]
        self.lengths[self.rows[live], e[live]] = t[live] + 1
        self.index += done.long()
        self.ret = torch.where(done, torch.zeros_like(self.ret), self.ret)


@dataclass(frozen=True)
class Runs:
    """Runs of one kind in a lockstep batch (:func:`rollout_many`): every goal x seed (goal-major),
    greedy or sampled at ``temperature``, drawing from their own generator seeded by ``seed``."""

    goal_ids: list[int]
    seeds: int
    greedy: bool
    temperature: float = 1.0
    seed: int = 0


@torch.no_grad()
def rollout(policy: Policy, env_cfg: EnvConfig, goal_ids: list[int], seeds: int, episodes: int,
            greedy: bool, temperature: float = 1.0, seed: int = 0, device: torch.device | str = "cpu",
            record: bool = False, on_action: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
            keyed: bool = False, max_steps: int | None = None,
            on_live: Callable[[torch.Tensor], None] | None = None) -> PlayResult:
    """Every goal x seed plays ``episodes`` episodes in one lockstep batch (runs goal-major:
    run = goal * seeds + seed); the only loop over env steps outside A2C's training.

    ``on_action(action, reward)`` is called after every env step (a context player records
    the outcome there); ``on_live(live)`` before every step's policy, with ``live [N]`` True for
    the runs that have not finished their episodes (a context player retires the others). With
    ``record``, every step of every run is kept (``trace``; runs that finished early keep stepping
    in lockstep: their steps have ``episode >= episodes`` and, under a context player, are not the
    model's actions).
    Sampling uses its own seeded generator: runs are reproducible. With ``keyed``, every draw
    of run (goal g, seed j) is instead a counter-based hash of (``seed``, g, j, step)
    (:class:`Draws`): a run's randomness then does not depend on which other goals share the
    batch (data generation, where a goal's streams must not change when the goal list does).
    ``max_steps`` stops every run after that many env steps (episodes not finished by then
    keep return 0 and length 0).
    """
    return rollout_many(policy, env_cfg, [Runs(goal_ids, seeds, greedy, temperature, seed)], episodes, device,
                        record, on_action, keyed, max_steps, on_live)[0]


@torch.no_grad()
def rollout_many(policy: Policy, env_cfg: EnvConfig, runs: list[Runs], episodes: int,
                 device: torch.device | str = "cpu", record: bool = False,
                 on_action: Callable[[torch.Tensor, torch.Tensor], None] | None = None, keyed: bool = False,
                 max_steps: int | None = None, on_live: Callable[[torch.Tensor], None] | None = None
                 ) -> list[PlayResult]:
    """:func:`rollout` of several kinds of runs in one lockstep batch (the policy sees them all,
    ``runs[0]``'s first): one :class:`PlayResult` per kind, each what its own :func:`rollout`
    gives (its draws come from its own generator; its trace, when recorded, runs to the batch's
    last step)."""
    if not runs:
        return []
    device = torch.device(device)
    parts = [torch.tensor(r.goal_ids, dtype=torch.long).repeat_interleave(r.seeds) for r in runs]
    ids = torch.cat(parts)
    N = len(ids)
    bounds = np.cumsum([0] + [len(p) for p in parts]).tolist()
    goals = dr.tasks_in_use(env_cfg)[ids].to(device)
    draws = [Draws(len(p), r.seed, device, rng.run_keys(p, r.seeds).to(device) if keyed else None, env_cfg.random_start)
             for p, r in zip(parts, runs)]
    joined = lambda parts: parts[0] if len(parts) == 1 else torch.cat(parts)   # one kind: no copy

    def starts(k: int) -> torch.Tensor | None:                             # uniforms [N] of the random starts
        return joined([d.start(k) for d in draws]) if env_cfg.random_start else None

    def choose(logits: torch.Tensor, k: int) -> torch.Tensor:             # [N, A] -> actions [N]
        return joined([logits[a:b].argmax(-1) if r.greedy else d.action(torch.softmax(logits[a:b] / r.temperature, -1), k)
                       for r, d, a, b in zip(runs, draws, bounds, bounds[1:]) if b > a])

    state, obs = dr.reset(env_cfg, goals, starts(-1))
    prev = {"prev_action": torch.full((N,), tokens.none_action(dr.N_ACTIONS), device=device),
            "prev_reward": torch.full((N,), tokens.none_reward(), device=device),
            "prev_next_state": torch.full((N,), tokens.none_state(dr.n_states(env_cfg)), device=device)}
    ep = Episodes(N, episodes, device)
    trace: list[tuple[torch.Tensor, ...]] = []
    steps = episodes * env_cfg.max_episode_steps
    for k in range(steps if max_steps is None else min(steps, max_steps)):
        if ep.all_done():
            break
        if on_live is not None:
            on_live(ep.index < episodes)
        action = choose(policy(obs, state.t, prev, state).float(), k)
        out = dr.step(env_cfg, state, action, starts(k))
        if on_action is not None:
            on_action(action, out.reward)
        if record:
            trace.append((state.t, obs, action, out.reward, out.terminated, out.truncated, out.next_state,   # FIELDS order
                          ep.index.clone()))
        ep.add(out, state.t)
        prev = {"prev_action": action, "prev_reward": out.reward.long(), "prev_next_state": out.next_state}
        state, obs = out.state, out.obs
    start = torch.tensor(dr.start_pos(env_cfg), device=device)
    ret = ep.returns.cpu().numpy()
    lengths = ep.lengths.cpu().numpy()
    shortest = dr.shortest_path(env_cfg, start.expand(N, 2), goals).cpu().numpy()
    traced = {k: torch.stack(v, 1).cpu().numpy() for k, v in zip(TRACE_FIELDS, zip(*trace))} if record else None
    return [PlayResult(goal_ids=ids[a:b].numpy(), returns=ret[a:b], success=ret[a:b] >= dr.success_return(env_cfg),
                       lengths=lengths[a:b], shortest=shortest[a:b],
                       trace={k: v[a:b] for k, v in traced.items()} if traced is not None else None)
            for a, b in zip(bounds, bounds[1:])]
