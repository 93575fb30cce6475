"""In-context evaluation: the frozen model plays many goals at once with a KV cache.

Window semantics: the model was trained on windows of ``seq_len`` transitions, so at play
time its context holds at most ``seq_len`` transitions. When the next transition would not
fit, the oldest are dropped and the cache is rebuilt from the last ``keep`` transitions
(periodic re-prefill, ``keep = 3/4 seq_len``). This is exact: every logit equals a full
forward pass over the same window (tested), unlike a rolling cache whose old keys were
computed with context that has since been evicted. The cost is one prefill of ``keep``
tokens every ``seq_len - keep + 1`` steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from adlib.config import EnvConfig
from adlib.envs import darkroom as dr
from adlib.model import ADTransformer, KVCache


def keep_on_refill(seq_len: int) -> int:
    """Transitions kept when the context window is full and the cache is rebuilt."""
    return max(1, (3 * seq_len) // 4)


class ContextPlayer:
    """Holds the transitions of N lockstep envs and produces action logits with a KV cache."""

    def __init__(self, model: ADTransformer, n: int, max_steps: int, device: torch.device, use_cache: bool = True):
        self.model, self.cfg = model, model.cfg
        self.use_cache = use_cache
        self.cache = KVCache(self.cfg, n, device) if use_cache else None
        self.hist = {k: torch.empty((n, max_steps), dtype=torch.long, device=device)
                     for k in ("state", "t", "action", "reward", "prev_action", "prev_reward", "prev_next_state")}
        self.step = 0   # transitions seen so far
        self.start = 0  # first transition in the context window

    def window(self) -> dict[str, torch.Tensor]:
        return {k: v[:, self.start:self.step + 1] for k, v in self.hist.items()}

    def prefill_logits(self) -> torch.Tensor:
        """Logits of the last transition from a fresh pass over the current window."""
        f = self.window()
        if self.cache is None:
            logits, _ = self.model(f)
            return logits[:, -1]
        self.cache.reset()
        x = self.model.embed(f)
        if self.cfg.layout == "triplet":
            x = x[:, :-2]   # the newest transition has only its state token yet
        h = self.model.trunk(x, self.cache)
        return self.model.head(h[:, -1])

    @torch.no_grad()
    def act_logits(self, obs: torch.Tensor, t: torch.Tensor, prev: dict[str, torch.Tensor]) -> torch.Tensor:
        """Add transition ``self.step`` (its state and the previous transition's outcome) -> logits ``[N, A]``."""
        i = self.step
        self.hist["state"][:, i], self.hist["t"][:, i] = obs, t
        for k, v in prev.items():
            self.hist[k][:, i] = v
        # this transition's action and reward are not known yet ('none' until record_outcome);
        # the triplet layout embeds the whole window, so they must be valid indices
        self.hist["action"][:, i], self.hist["reward"][:, i] = self.cfg.n_actions, 2
        if i - self.start + 1 > self.cfg.seq_len:
            self.start = i + 1 - keep_on_refill(self.cfg.seq_len)
            return self.prefill_logits()
        if self.cache is None:
            return self.prefill_logits()
        f = {k: v[:, i:i + 1] for k, v in self.hist.items()}
        return self.model.decode(f, self.cache, first=(i == self.start))

    def record_outcome(self, action: torch.Tensor, reward: torch.Tensor) -> None:
        self.hist["action"][:, self.step] = action
        self.hist["reward"][:, self.step] = reward.long()
        self.step += 1


@dataclass
class PlayResult:
    """Per-episode outcomes ``[N, episodes]`` of N runs (goal-major: run = goal * seeds + seed)."""

    goal_ids: np.ndarray   # [N]
    returns: np.ndarray
    success: np.ndarray
    lengths: np.ndarray
    shortest: np.ndarray   # [N] shortest path from the start (fixed start only)
    positions: np.ndarray | None = None   # [N, steps] cell index per step, when recorded
    episode_of_step: np.ndarray | None = None


# a policy maps (obs [N], in-episode t [N], previous-transition fields, env state) -> logits [N, A]
Policy = Callable[[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dr.EnvState], torch.Tensor]


def oracle_policy(obs: torch.Tensor, t: torch.Tensor, prev: dict[str, torch.Tensor], state: dr.EnvState) -> torch.Tensor:
    """Knows the goal: logits favouring the shortest-path actions (a reference for metrics)."""
    return torch.where(dr.optimal_actions(state.pos, state.goal), 0.0, -1e9)


def random_policy(obs: torch.Tensor, t: torch.Tensor, prev: dict[str, torch.Tensor], state: dr.EnvState) -> torch.Tensor:
    """Uniform over actions."""
    return torch.zeros(obs.shape[0], dr.N_ACTIONS, device=obs.device)


@torch.no_grad()
def rollout(policy: Policy, env_cfg: EnvConfig, goal_ids: list[int], seeds: int, episodes: int,
            greedy: bool, temperature: float = 1.0, seed: int = 0, device: torch.device | str = "cpu",
            record: bool = False, on_action: Callable[[torch.Tensor, torch.Tensor], None] | None = None) -> PlayResult:
    """Every goal x seed plays ``episodes`` episodes in one lockstep batch.

    ``on_action(action, reward)`` is called after every env step (a context player records
    the outcome there). Sampling uses its own seeded generator: runs are reproducible.
    """
    device = torch.device(device)
    ids = torch.tensor(goal_ids, dtype=torch.long).repeat_interleave(seeds)
    N = len(ids)
    goals = dr.all_goals(env_cfg)[ids].to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    u = (lambda: torch.rand(N, generator=gen, device=device)) if env_cfg.random_start else (lambda: None)
    state, obs = dr.reset(env_cfg, goals, u())
    n_states = env_cfg.grid_size ** 2
    prev = {"prev_action": torch.full((N,), dr.N_ACTIONS, device=device),
            "prev_reward": torch.full((N,), 2, device=device),
            "prev_next_state": torch.full((N,), n_states, device=device)}
    returns = torch.zeros(N, episodes, device=device)
    lengths = torch.zeros(N, episodes, dtype=torch.long, device=device)
    episode = torch.zeros(N, dtype=torch.long, device=device)
    ep_ret = torch.zeros(N, device=device)
    rows = torch.arange(N, device=device)
    positions, ep_of_step = [], []
    for _ in range(episodes * env_cfg.max_episode_steps):
        if bool((episode >= episodes).all()):
            break
        logits = policy(obs, state.t, prev, state).float()
        if greedy:
            action = logits.argmax(-1)
        else:
            probs = torch.softmax(logits / temperature, -1)
            action = torch.multinomial(probs, 1, generator=gen).squeeze(-1)
        out = dr.step(env_cfg, state, action, u())
        if on_action is not None:
            on_action(action, out.reward)
        if record:
            positions.append(out.final_obs.cpu())
            ep_of_step.append(episode.cpu().clone())
        ep_ret += out.reward
        done = out.terminated | out.truncated
        live = done & (episode < episodes)
        e = episode.clamp(max=episodes - 1)
        returns[rows[live], e[live]] = ep_ret[live]
        lengths[rows[live], e[live]] = state.t[live] + 1
        episode += done.long()
        ep_ret = torch.where(done, torch.zeros_like(ep_ret), ep_ret)
        prev = {"prev_action": action, "prev_reward": out.reward.long(), "prev_next_state": out.final_obs}
        state, obs = out.state, out.obs
    start = torch.tensor(dr.start_pos(env_cfg), device=device)
    shortest = dr.shortest_path(env_cfg, start.expand_as(goals), goals)
    ret = returns.cpu().numpy()
    return PlayResult(goal_ids=ids.numpy(), returns=ret, success=ret > 0, lengths=lengths.cpu().numpy(),
                      shortest=shortest.cpu().numpy(),
                      positions=torch.stack(positions, 1).numpy() if record else None,
                      episode_of_step=torch.stack(ep_of_step, 1).numpy() if record else None)


def play(model: ADTransformer, env_cfg: EnvConfig, goal_ids: list[int], seeds: int, episodes: int,
         greedy: bool, temperature: float = 1.0, seed: int = 0, device: torch.device | str = "cpu",
         use_cache: bool = True, record: bool = False) -> PlayResult:
    """The frozen model plays from an empty context (see :func:`rollout`)."""
    model.eval()
    n = len(goal_ids) * seeds
    player = ContextPlayer(model, n, episodes * env_cfg.max_episode_steps, torch.device(device), use_cache)
    return rollout(lambda obs, t, prev, state: player.act_logits(obs, t, prev), env_cfg, goal_ids, seeds,
                   episodes, greedy, temperature, seed, device, record, on_action=player.record_outcome)
