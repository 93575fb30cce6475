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


@torch.no_grad()
def rollout(policy: Policy, env_cfg: EnvConfig, goal_ids: list[int], seeds: int, episodes: int,
            greedy: bool, temperature: float = 1.0, seed: int = 0, device: torch.device | str = "cpu",
            record: bool = False, on_action: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
            keyed: bool = False, max_steps: int | None = None) -> PlayResult:
    """Every goal x seed plays ``episodes`` episodes in one lockstep batch (runs goal-major:
    run = goal * seeds + seed); the only loop over env steps outside A2C's training.

    ``on_action(action, reward)`` is called after every env step (a context player records
    the outcome there). With ``record``, every step of every run is kept (``trace``; runs that
    finished early keep stepping in lockstep: their steps have ``episode >= episodes``).
    Sampling uses its own seeded generator: runs are reproducible. With ``keyed``, every draw
    of run (goal g, seed j) is instead a counter-based hash of (``seed``, g, j, step)
    (:mod:`adlib.rng`): a run's randomness then does not depend on which other goals share the
    batch (data generation, where a goal's streams must not change when the goal list does).
    ``max_steps`` stops every run after that many env steps (episodes not finished by then
    keep return 0 and length 0).
    """
    device = torch.device(device)
    ids = torch.tensor(goal_ids, dtype=torch.long).repeat_interleave(seeds)
    N = len(ids)
    goals = dr.tasks_in_use(env_cfg)[ids].to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    k = -1                                                                          # env step (-1: the first reset)
    if keyed:
        run_key = (ids * 100_003 + torch.arange(N) % seeds).to(device)             # [N] identity of each run
        u = (lambda: rng.uniform(seed, _START, run_key, k)) if env_cfg.random_start else (lambda: None)
    else:
        u = (lambda: torch.rand(N, generator=gen, device=device)) if env_cfg.random_start else (lambda: None)
    state, obs = dr.reset(env_cfg, goals, u())
    prev = {"prev_action": torch.full((N,), tokens.none_action(dr.N_ACTIONS), device=device),
            "prev_reward": torch.full((N,), tokens.none_reward(), device=device),
            "prev_next_state": torch.full((N,), tokens.none_state(dr.n_states(env_cfg)), device=device)}
    returns = torch.zeros(N, episodes, device=device)
    lengths = torch.zeros(N, episodes, dtype=torch.long, device=device)
    episode = torch.zeros(N, dtype=torch.long, device=device)
    ep_ret = torch.zeros(N, device=device)
    rows = torch.arange(N, device=device)
    trace: list[tuple[torch.Tensor, ...]] = []
    steps = episodes * env_cfg.max_episode_steps
    for k in range(steps if max_steps is None else min(steps, max_steps)):
        if bool((episode >= episodes).all()):
            break
        logits = policy(obs, state.t, prev, state).float()
        if greedy:
            action = logits.argmax(-1)
        else:
            probs = torch.softmax(logits / temperature, -1)
            if keyed:
                action = rng.categorical(probs, rng.uniform(seed, _ACT, run_key, k))
            else:
                action = torch.multinomial(probs, 1, generator=gen).squeeze(-1)
        out = dr.step(env_cfg, state, action, u())
        if on_action is not None:
            on_action(action, out.reward)
        if record:
            trace.append((state.t, obs, action, out.reward, out.terminated, out.truncated, out.next_state,   # FIELDS order
                          episode.clone()))
        ep_ret += out.reward
        done = out.terminated | out.truncated
        live = done & (episode < episodes)
        e = episode.clamp(max=episodes - 1)
        returns[rows[live], e[live]] = ep_ret[live]
        lengths[rows[live], e[live]] = state.t[live] + 1
        episode += done.long()
        ep_ret = torch.where(done, torch.zeros_like(ep_ret), ep_ret)
        prev = {"prev_action": action, "prev_reward": out.reward.long(), "prev_next_state": out.next_state}
        state, obs = out.state, out.obs
    start = torch.tensor(dr.start_pos(env_cfg), device=device)
    shortest = dr.shortest_path(env_cfg, start.expand(N, 2), goals)
    ret = returns.cpu().numpy()
    return PlayResult(goal_ids=ids.numpy(), returns=ret, success=ret >= dr.success_return(env_cfg),
                      lengths=lengths.cpu().numpy(),
                      shortest=shortest.cpu().numpy(),
                      trace={k: torch.stack(v, 1).cpu().numpy() for k, v in zip(TRACE_FIELDS, zip(*trace))}
                      if record else None)


