"""The frozen model in context: it plays many goals at once with a KV cache.

Window semantics: the model was trained on windows of ``seq_len`` transitions, so at play
time its context holds at most ``seq_len`` transitions. When the next transition would not
fit, the oldest are dropped and the cache is rebuilt from the last ``keep`` transitions
(periodic re-prefill, ``keep = 3/4 seq_len``). This is exact: every logit equals a full
forward pass over the same window (tested), unlike a rolling cache whose old keys were
computed with context that has since been evicted. The cost is one prefill of ``keep``
tokens every ``seq_len - keep + 1`` steps.

Runs that have played all their episodes leave the batch (:meth:`ContextPlayer.retire`): in
eval_dt's sampled play the median run is done after a quarter of the slowest one's steps, and
the model's work scales with the batch. They keep stepping in the lockstep env with zero logits
(action 0 when greedy, uniform when sampled): those steps are past their last episode, never
counted, and not the model's actions.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from adlib import tokens
from adlib.config import EnvConfig
from adlib.logs import bar
from adlib.model import ADTransformer, KVCache
from adlib.rollout import PlayResult, Runs, rollout_many

# Share of the window kept when it is full and the cache is rebuilt: a larger share keeps more
# context per re-prefill, a smaller one re-prefills less often (every seq_len - keep + 1 steps).
REFILL_KEEP = 0.75

# Finished runs leave the batch once they are this share of it: each removal copies the cache.
RETIRE_SHARE = 1 / 8


def keep_on_refill(seq_len: int) -> int:
    """Transitions kept when the context window is full and the cache is rebuilt."""
    return max(1, int(REFILL_KEEP * seq_len))


class ContextPlayer:
    """Holds the transitions of N lockstep envs and produces action logits with a KV cache.

    :meth:`act_logits` and :meth:`record_outcome` take (and return) all N runs; only the runs in
    ``rows`` (all at first, fewer once finished runs are retired) are in the cache, the history
    ``hist`` and the model's batch."""

    def __init__(self, model: ADTransformer, n: int, max_steps: int, device: torch.device, use_cache: bool = True):
        self.model, self.cfg, self.n = model, model.cfg, n
        self.cache = KVCache(self.cfg, n, device) if use_cache else None
        self.hist = {k: torch.empty((n, max_steps), dtype=torch.long, device=device) for k in tokens.FIELDS}
        self.rows = torch.arange(n, device=device)   # [n_kept] the runs in the batch, in run order
        self.step = 0   # transitions seen so far
        self.start = 0  # first transition in the context window

    def retire(self, live: torch.Tensor) -> None:
        """Drop the runs whose play is over (``live [N]`` False) from the batch, once they are
        :data:`RETIRE_SHARE` of it. A run's logits do not depend on the other runs in the batch
        (up to float rounding: attention kernels split their work by batch size)."""
        keep = live[self.rows]                                                   # [n_kept]
        n_kept = len(self.rows)
        out = n_kept - int(keep.sum())
        if out == 0 or out < RETIRE_SHARE * n_kept or out == n_kept:
            return
        idx = keep.nonzero().squeeze(1)
        self.rows = self.rows[idx]
        self.hist = {k: v[idx] for k, v in self.hist.items()}
        if self.cache is not None:
            self.cache.select(idx)

    def _kept(self, x: torch.Tensor) -> torch.Tensor:
        return x if len(self.rows) == self.n else x[self.rows]

    def window(self) -> dict[str, torch.Tensor]:
        return {k: v[:, self.start:self.step + 1] for k, v in self.hist.items()}

    def prefill_logits(self) -> torch.Tensor:
        """Logits of the last transition from a fresh pass over the current window."""
        f = self.window()
        if self.cache is None:
            logits, _ = self.model(f)
            return logits[:, -1]
        return self.model.prefill(f, self.cache)

    @torch.no_grad()
    def act_logits(self, obs: torch.Tensor, t: torch.Tensor, prev: dict[str, torch.Tensor]) -> torch.Tensor:
        """Add transition ``self.step`` (its state and the previous transition's outcome, each
        ``[N]``) -> logits ``[N, A]`` (zero for retired runs)."""
        logits = self._logits(self._kept(obs), self._kept(t), {k: self._kept(v) for k, v in prev.items()})
        if len(self.rows) == self.n:
            return logits
        return logits.new_zeros(self.n, logits.shape[-1]).index_copy_(0, self.rows, logits)

    def _logits(self, obs: torch.Tensor, t: torch.Tensor, prev: dict[str, torch.Tensor]) -> torch.Tensor:
        i = self.step
        self.hist["state"][:, i], self.hist["t"][:, i] = obs, t
        for k, v in prev.items():
            self.hist[k][:, i] = v
        # this transition's action and reward are not known yet ('none' until record_outcome);
        # the triplet layout embeds the whole window, so they must be valid indices
        self.hist["action"][:, i] = tokens.none_action(self.cfg.n_actions)
        self.hist["reward"][:, i] = tokens.none_reward()
        if i - self.start + 1 > self.cfg.seq_len:
            self.start = i + 1 - keep_on_refill(self.cfg.seq_len)
            return self.prefill_logits()
        if self.cache is None:
            return self.prefill_logits()
        f = {k: v[:, i:i + 1] for k, v in self.hist.items()}
        return self.model.decode(f, self.cache, first=(i == self.start))

    def record_outcome(self, action: torch.Tensor, reward: torch.Tensor) -> None:
        """The action taken and the reward received ``[N]`` at transition ``self.step``."""
        self.hist["action"][:, self.step] = self._kept(action)
        self.hist["reward"][:, self.step] = self._kept(reward).long()
        self.step += 1


def play(model: ADTransformer, env_cfg: EnvConfig, goal_ids: list[int], seeds: int, episodes: int,
         greedy: bool, temperature: float = 1.0, seed: int = 0, device: torch.device | str = "cpu",
         use_cache: bool = True, record: bool = False, progress: str | None = None, retire: bool = True) -> PlayResult:
    """The frozen model plays from an empty context (see :func:`rollout`). ``progress`` names a
    progress bar of the lockstep env steps (none by default); ``retire=False`` keeps finished
    runs in the model's batch (a reference for tests and benchmarks)."""
    return play_many(model, env_cfg, [Runs(goal_ids, seeds, greedy, temperature, seed)], episodes, device, use_cache,
                     record, progress, retire)[0]


def play_many(model: ADTransformer, env_cfg: EnvConfig, runs: list[Runs], episodes: int,
              device: torch.device | str = "cpu", use_cache: bool = True, record: bool = False,
              progress: str | None = None, retire: bool = True) -> list[PlayResult]:
    """:func:`play` of several kinds of runs (greedy and sampled, several goal lists) in one
    batch of the model (:func:`rollout_many`): one :class:`PlayResult` per kind, each what its
    own :func:`play` gives, up to float rounding (the model's kernels split their work by batch
    size), for the cost of one lockstep loop instead of one per kind."""
    model.eval()
    n = sum(len(r.goal_ids) * r.seeds for r in runs)
    player = ContextPlayer(model, n, episodes * env_cfg.max_episode_steps, torch.device(device), use_cache)
    with bar(episodes * env_cfg.max_episode_steps, progress, unit="step") if progress else nullcontext() as pbar:
        def policy(obs: torch.Tensor, t: torch.Tensor, prev: dict[str, torch.Tensor], state) -> torch.Tensor:
            if pbar is not None:
                pbar.update()
            return player.act_logits(obs, t, prev)

        res = rollout_many(policy, env_cfg, runs, episodes, device, record, on_action=player.record_outcome,
                           on_live=player.retire if retire else None)
        if pbar is not None:   # episodes that end on the goal finish before the step cap
            pbar.total = pbar.n
            pbar.refresh()
    return res
