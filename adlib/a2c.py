"""Batched A2C: one agent per (goal, seed), all agents trained as one tensor computation.

Network (SPEC.md §3): a state-embedding table shared by actor and critic, then one linear
layer each. Parameters of the G agents are stacked along a leading axis, so a rollout or an
update is a handful of batched ops. Agents stay mathematically independent: the loss is a
sum of per-agent losses (each depends only on its own slice), Adam is element-wise, the
gradient clip is computed per agent, and every random draw is keyed by the agent's own id
(:mod:`adlib.rng`), never by its position in the batch.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from adlib import rng
from adlib.config import EnvConfig, SourceConfig, SourceRuntime
from adlib.envs import darkroom as dr
from adlib.histories import History
from adlib.transitions import FIELDS, Transitions

# stream keys of the counter-based RNG
_INIT, _ACT, _START = 1, 2, 3

# The batch is padded to a multiple of this many agents. Why: fused Adam's CPU kernel rounds the
# last partial vector of a tensor differently from the rest (seen as 1e-9 differences that grow),
# so an agent's numbers would depend on its place in the batch. With every parameter's size a
# multiple of 16 floats (AVX-512 width, a cache line) there is no partial vector: each agent's
# results are the same whatever else is in its batch (tested), which keeps the bytes of a shard
# independent of runtime.source.workers.
ALIGN_AGENTS = 16


def init_params(cfg: SourceConfig, n_states: int, keys: torch.Tensor) -> dict[str, torch.Tensor]:
    """Stacked parameters of agents ``keys [G]`` (each initialised from its own seed)."""
    emb, heads = [], []
    bound = cfg.hidden_size ** -0.5                                                  # like nn.Linear
    for k in keys.tolist():
        g = torch.Generator().manual_seed(int(rng.hash_keys(cfg.seed, _INIT, k)) & (2**62 - 1))
        emb.append(torch.randn(n_states, cfg.hidden_size, generator=g))              # like nn.Embedding
        w = (torch.rand(dr.N_ACTIONS + 1, cfg.hidden_size, generator=g) * 2 - 1) * bound
        w[: dr.N_ACTIONS] *= 0.01  # near-uniform initial policy
        heads.append(w)
    G = len(keys)
    return {
        "emb": torch.stack(emb),                              # [G, S, H]
        "w_heads": torch.stack(heads),                        # [G, A + 1, H]: A actor rows, then the critic row
        "b_heads": torch.zeros(G, dr.N_ACTIONS + 1),          # [G, A + 1]
    }


def head_tables(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """The heads applied to every state: ``[G, A + 1, S]``, A rows of action logits, then the value.

    Why tables: embedding -> linear has no nonlinearity in between, so the heads applied to
    the whole embedding table (81 rows) cost less than applied to a rollout (100 rows), and
    the rollout then only gathers rows. Same function as gather-then-linear, one bmm per
    update instead of one per env step. Training keeps the embedding transposed (``emb_t``
    ``[G, H, S]``, see :func:`train_agents`): heads @ emb_t is the faster orientation of these
    tiny batched matmuls on a CPU, and its backward writes the embedding's gradient in place,
    where a transposed view made it copy the whole table every update (half the update's time).
    """
    emb_t = params["emb_t"] if "emb_t" in params else params["emb"].transpose(1, 2)
    return torch.baddbmm(params["b_heads"].unsqueeze(-1), params["w_heads"], emb_t)


def policy_value_tables(params: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``[G, S, A]`` and values ``[G, S]`` of every state."""
    out = head_tables(params)
    return out[:, :-1].transpose(1, 2), out[:, -1]                                    # [G, S, A], [G, S]


def policy_value(tables: torch.Tensor, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``[G, A, N]`` (actions on dim 1: the tables' layout) and values ``[G, N]`` at
    observations ``obs [G, N]`` from :func:`head_tables` ``[G, A + 1, S]``."""
    G, K, _ = tables.shape
    picked = tables.gather(2, obs.unsqueeze(1).expand(G, K, obs.shape[1]))              # [G, A + 1, N]
    return picked[:, :-1], picked[:, -1]


def gather_states(table: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    """Rows of a per-agent state table ``[G, S, ...]`` at ``obs [G, N]`` -> ``[G, N, ...]``."""
    if table.dim() == 2:
        return table.gather(1, obs)
    idx = obs.view(*obs.shape, *([1] * (table.dim() - 2))).expand(*obs.shape, *table.shape[2:])
    return table.gather(1, idx)  # gather, not fancy indexing: its backward is a cheap scatter_add


def nstep_returns(rewards: torch.Tensor, terminated: torch.Tensor, truncated: torch.Tensor,
                  final_values: torch.Tensor, bootstrap: torch.Tensor, gamma: float) -> torch.Tensor:
    """n-step bootstrapped returns over a rollout, no GAE (SPEC.md §3).

    rewards, terminated, truncated, final_values: ``[T, ...]``; bootstrap: ``[...]``, the
    value of the observation after the last step. A terminated step has no future; a
    truncated one bootstraps from the value of its pre-reset final observation, so the
    time limit is not mistaken for a terminal state.
    """
    returns = torch.empty_like(rewards)
    future = bootstrap
    for k in range(rewards.shape[0] - 1, -1, -1):
        nextvalue = torch.where(truncated[k], final_values[k], future)
        future = rewards[k] + gamma * (~terminated[k]).float() * nextvalue
        returns[k] = future
    return returns


def a2c_losses(logits: torch.Tensor, values: torch.Tensor, actions: torch.Tensor, returns: torch.Tensor,
               cfg: SourceConfig) -> dict[str, torch.Tensor]:
    """Per-agent losses ``[G]`` from ``logits [G, A, N]`` (actions on dim 1: a softmax over a
    middle dimension of 5 is ~4x faster on a CPU than over a last one), ``values/actions/returns [G, N]``."""
    logp_all = F.log_softmax(logits, 1)                                                 # [G, A, N]
    logp = logp_all.gather(1, actions.unsqueeze(1)).squeeze(1)                          # [G, N]
    advantages = (returns - values).detach()
    actor = -(logp * advantages).mean(-1)
    critic = (returns - values).pow(2).mean(-1)
    entropy = -(logp_all.exp() * logp_all).sum(1).mean(-1)
    loss = actor + cfg.value_coef * critic - cfg.entropy_coef * entropy
    return {"loss": loss, "actor": actor, "critic": critic, "entropy": entropy}


def clip_grad_per_agent(params: dict[str, torch.Tensor], max_norm: float) -> torch.Tensor:
    """Clip each agent's gradient to ``max_norm`` (in place); returns the norms ``[G]`` before clipping."""
    sq = sum(torch.linalg.vector_norm(p.grad.reshape(p.shape[0], -1), dim=1).square() for p in params.values())
    norms = sq.sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for p in params.values():
        p.grad.mul_(scale.view(-1, *([1] * (p.dim() - 1))))
    return norms


@dataclass
class AgentLog:
    """A log point: per-agent statistics ``[G]`` over the episodes finished since the previous
    point (keys: :data:`EPISODE_STATS` and :data:`LOSS_STATS`)."""

    update: int
    env_steps: int                    # per agent
    stats: dict[str, np.ndarray]      # each [G]


EPISODE_STATS = ("episodic_return", "episodic_length", "success_rate", "episodes")
LOSS_STATS = ("loss", "policy_loss", "value_loss", "entropy", "grad_norm")


def collect_rollout(env_cfg: EnvConfig, state: dr.EnvState, obs: torch.Tensor, probs_tab: torch.Tensor,
                    u_act: torch.Tensor, u_start: torch.Tensor | None) -> tuple[Transitions, dr.EnvState, torch.Tensor]:
    """``T`` steps of every env with the agents' current policies (``probs_tab [G, S, A]``);
    uniforms ``u_act [T, G, E]`` pick the actions, ``u_start [T, G*E]`` the random starts.
    Returns the rollout and the env state / observations ``[G, E]`` after it.

    Dark Room steps its envs as cell indices (:func:`adlib.envs.darkroom.step_cells`, the
    same rules in fewer tensor ops), Key-to-Door with :func:`adlib.envs.darkroom.step`."""
    T, (G, E) = u_act.shape[0], obs.shape
    cdf_tab = probs_tab.cumsum(-1)                                                     # [G, S, A]
    if env_cfg.kind == "darkroom":
        return _collect_cells(env_cfg, state, obs, cdf_tab, u_act, u_start)
    steps = []
    for k in range(T):
        action = rng.categorical_cdf(gather_states(cdf_tab, obs), u_act[k])           # [G, E]
        out = dr.step(env_cfg, state, action.flatten(), None if u_start is None else u_start[k])
        steps.append((state.t.view(G, E), obs, action, out.reward.view(G, E), out.terminated.view(G, E),
                      out.truncated.view(G, E), out.next_state.view(G, E)))                # FIELDS order
        state, obs = out.state, out.obs.view(G, E)
    return Transitions(*(torch.stack(x) for x in zip(*steps))), state, obs


def _collect_cells(env_cfg: EnvConfig, state: dr.EnvState, cell: torch.Tensor, cdf_tab: torch.Tensor,
                   u_act: torch.Tensor, u_start: torch.Tensor | None) -> tuple[Transitions, dr.EnvState, torch.Tensor]:
    """:func:`collect_rollout` of a Dark Room batch: cells ``[G, E]`` in, cells out."""
    T, (G, E) = u_act.shape[0], cell.shape
    moves = _move_table(env_cfg, cell.device)
    goal_cell = dr.obs_of(env_cfg, state.goal).view(G, E)
    t = state.t.view(G, E)
    steps = []
    for k in range(T):
        action = rng.categorical_cdf(gather_states(cdf_tab, cell), u_act[k])          # [G, E]
        out = dr.step_cells(env_cfg, moves, cell, t, goal_cell, action,
                            None if u_start is None else u_start[k].view(G, E))
        steps.append((t, cell, action, out.reward, out.terminated, out.truncated, out.next_cell))   # FIELDS order
        cell, t = out.cell, out.t
    state = dr.EnvState(pos=dr.cell_pos(env_cfg, cell.flatten()), goal=state.goal, t=t.flatten(),
                        progress=state.progress)
    return Transitions(*(torch.stack(x) for x in zip(*steps))), state, cell


@functools.lru_cache(maxsize=8)
def _move_table(env_cfg: EnvConfig, device: torch.device) -> torch.Tensor:
    """:func:`adlib.envs.darkroom.move_table` on ``device``, made once per run (read only)."""
    return dr.move_table(env_cfg).to(device)


def rollout_returns(ro: Transitions, values_tab: torch.Tensor, next_obs: torch.Tensor, gamma: float) -> torch.Tensor:
    """n-step returns ``[T, G, E]`` of a rollout, bootstrapped from the values of the cells
    reached (where an episode was truncated) and of ``next_obs`` (after the rollout)."""
    T, G, E = ro.state.shape
    final_v = gather_states(values_tab, ro.next_state.permute(1, 0, 2).reshape(G, T * E))
    final_v = final_v.view(G, T, E).permute(1, 0, 2)
    return nstep_returns(ro.reward, ro.terminated, ro.truncated, final_v, gather_states(values_tab, next_obs), gamma)


def update(params: dict[str, torch.Tensor], tables: torch.Tensor, opt: torch.optim.Optimizer, ro: Transitions,
           returns: torch.Tensor, cfg: SourceConfig) -> dict[str, torch.Tensor]:
    """One A2C step of every agent from the :func:`head_tables` ``tables`` the rollout was played
    with (their graph: the forward pass is not repeated): per-agent losses, per-agent gradient
    clipping, Adam. Returns the losses and the gradient norms before clipping, each ``[G]``."""
    T, G, E = ro.state.shape
    to_gn = lambda x: x.permute(1, 0, 2).reshape(G, T * E)                            # [T,G,E] -> [G, T*E]
    logits, values = policy_value(tables, to_gn(ro.state))
    losses = a2c_losses(logits, values, to_gn(ro.action), to_gn(returns), cfg)
    opt.zero_grad(set_to_none=True)
    losses["loss"].sum().backward()
    norms = clip_grad_per_agent(params, cfg.clip_grad_norm)
    opt.step()
    return {"loss": losses["loss"].detach(), "policy_loss": losses["actor"].detach(),
            "value_loss": losses["critic"].detach(), "entropy": losses["entropy"].detach(), "grad_norm": norms}


class EpisodeStats:
    """Per-agent sums over a log window: episodes finished, their returns, lengths and
    successes, and the update losses; :meth:`point` turns them into an :class:`AgentLog`."""

    def __init__(self, G: int, device: torch.device, success_return: int = 1, keep: int | None = None):
        self.sums = {k: torch.zeros(G, device=device) for k in (*EPISODE_STATS, *LOSS_STATS)}
        self.success_return = success_return   # an episode succeeds with this return (keydoor: 2)
        self.keep = G if keep is None else keep   # agents reported (the first ones: padding excluded)
        self.updates = 0

    def add_rollout(self, ro: Transitions, ep_ret: torch.Tensor) -> torch.Tensor:
        """Account the episodes that end in ``ro``; ``ep_ret [G, E]`` is the running return
        of each env's episode (carried across rollouts); returns it, updated."""
        # All T steps at once: an episode's return is a difference of the rollout's prefix sums
        # of rewards (plus the carried return, for the episode that began before it). Rewards
        # are whole numbers, so every sum is exact and equals the step-by-step one.
        s, T = self.sums, ro.state.shape[0]
        done = ro.terminated | ro.truncated                                             # [T, G, E]
        prefix = torch.cat([torch.zeros_like(ep_ret).unsqueeze(0), ro.reward.cumsum(0)])   # [T + 1, G, E]
        steps = torch.arange(1, T + 1, device=done.device).view(T, 1, 1)
        last = (done * steps).cummax(0).values                 # [T, G, E]: 1 + the last done step <= k, 0: none
        begin = torch.cat([torch.zeros_like(last[:1]), last[:-1]])                      # where k's episode began
        returns = prefix[1:] - prefix.gather(0, begin) + ep_ret * (begin == 0)           # [T, G, E]
        s["episodes"] += done.sum((0, 2))
        s["episodic_return"] += (returns * done).sum((0, 2))
        s["episodic_length"] += (done * (ro.t + 1)).sum((0, 2))
        s["success_rate"] += (done & (returns >= self.success_return)).sum((0, 2))
        return prefix[-1] - prefix.gather(0, last[-1:]).squeeze(0) + ep_ret * (last[-1] == 0)   # carried on

    def add_update(self, losses: dict[str, torch.Tensor]) -> None:
        for k in LOSS_STATS:
            self.sums[k] += losses[k]
        self.updates += 1

    def point(self, update: int, env_steps: int) -> AgentLog:
        """The window's means (per episode, per update) as a log point; resets the window."""
        n = self.sums["episodes"].clamp(min=1)
        stats = {k: self.sums[k] / n for k in EPISODE_STATS if k != "episodes"}
        stats["episodes"] = self.sums["episodes"].clone()
        stats.update({k: self.sums[k] / max(1, self.updates) for k in LOSS_STATS})
        for v in self.sums.values():
            v.zero_()
        self.updates = 0
        return AgentLog(update, env_steps, {k: v[:self.keep].cpu().numpy() for k, v in stats.items()})


def padded_batch(goal_ids: list[int], agent_seeds: list[int]) -> tuple[list[int], torch.Tensor]:
    """The goals and agent keys ``[G]`` of a batch padded to a multiple of :data:`ALIGN_AGENTS`
    (padding agents have keys of their own; their results are dropped)."""
    pad = -len(goal_ids) % ALIGN_AGENTS
    keys = [rng.agent_key(g, s) for g, s in zip(goal_ids, agent_seeds)] + [-1 - j for j in range(pad)]
    return [*goal_ids, *[goal_ids[0]] * pad], torch.tensor(keys, dtype=torch.long)


def trainable(init: dict[str, torch.Tensor], cfg: SourceConfig, device: torch.device
              ) -> tuple[dict[str, torch.Tensor], torch.optim.Optimizer]:
    """Parameters on ``device`` as trained (the embedding transposed: ``emb_t [G, H, S]``, what
    :func:`head_tables` reads) and their fused Adam (one pass over each parameter: the per-agent
    embedding tables are most of the work)."""
    init = dict(init)
    init["emb_t"] = init.pop("emb").transpose(1, 2).contiguous()
    params = {k: v.to(device).requires_grad_() for k, v in init.items()}
    return params, torch.optim.Adam(list(params.values()), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=True)


def train_agents(env_cfg: EnvConfig, cfg: SourceConfig, goal_ids: list[int], agent_seeds: list[int],
                 device: torch.device | str = "cpu", rt: SourceRuntime = SourceRuntime(),
                 on_log: Callable[[AgentLog], None] | None = None,
                 on_update: Callable[[int], None] | None = None,
                 on_checkpoint: Callable[[dict], None] | None = None,
                 resume: dict | None = None) -> tuple[dict[str, torch.Tensor], History]:
    """Train one A2C agent per (goal_ids[i], agent_seeds[i]) together; return params and histories.

    ``on_update(env_steps_done_per_agent)`` is called after every update (progress bars);
    ``on_log`` every ``rt.log_every`` updates with per-agent episode statistics;
    ``on_checkpoint(state)`` every ``rt.checkpoint_every`` updates with everything needed to
    continue (tensors only). Passing that state back as ``resume`` continues the run exactly:
    every random draw is keyed by the update index, so the result equals an uninterrupted run.
    """
    device = torch.device(device)
    n_agents = len(goal_ids)
    goal_ids, keys = padded_batch(goal_ids, agent_seeds)
    G, E, T = len(goal_ids), cfg.nenvs, cfg.nsteps
    n_updates = updates_of(cfg)
    params, opt = trainable(init_params(cfg, dr.n_states(env_cfg), keys), cfg, device)
    akey = keys.to(device).view(G, 1).expand(G, E)                                   # [G, E]
    env_ids = torch.arange(E, device=device)
    prefix = {kind: rng.chain(cfg.seed, kind, akey, env_ids) for kind in (_ACT, _START)}   # [G, E] each
    uniforms = lambda kind, counter: rng.uniform_after(prefix[kind], counter)        # rng.uniform(seed, kind, akey, env_ids, counter)
    goals = dr.tasks_in_use(env_cfg)[torch.tensor(goal_ids)].to(device)                 # [G, W]
    W = goals.shape[-1]
    state, obs = dr.reset(env_cfg, goals.view(G, 1, W).expand(G, E, W).reshape(G * E, W),
                          uniforms(_START, -1).flatten() if env_cfg.random_start else None)
    obs, ep_ret = obs.view(G, E), torch.zeros(G, E, device=device)
    hist = History.empty(n_updates * T, n_agents, E, env_cfg)
    stats, logs, start = EpisodeStats(G, device, dr.success_return(env_cfg), n_agents), [], 0
    if resume is not None:
        start, state, obs, ep_ret, logs = _restore(resume, params, opt, hist, T, device)
        for entry in logs if on_log is not None else ():
            on_log(entry)

    steps_t = torch.arange(T, device=device).view(T, 1, 1)
    for upd in range(start, n_updates):
        tables = head_tables(params)                                                   # [G, A + 1, S]
        with torch.no_grad():
            probs_tab = F.softmax(tables[:, :-1], 1).transpose(1, 2).contiguous()     # [G, S, A]
            u_start = uniforms(_START, upd * T + steps_t).view(T, G * E) if env_cfg.random_start else None
            ro, state, obs = collect_rollout(env_cfg, state, obs, probs_tab, uniforms(_ACT, upd * T + steps_t),
                                             u_start)
            ep_ret = stats.add_rollout(ro, ep_ret)
            returns = rollout_returns(ro, tables[:, -1], obs, cfg.gamma)
        hist.write(upd * T, ro, n_agents)
        stats.add_update(update(params, tables, opt, ro, returns, cfg))
        if on_update is not None:
            on_update((upd + 1) * T * E)
        if (upd + 1) % rt.log_every == 0 or upd == n_updates - 1:
            logs.append(stats.point(upd + 1, (upd + 1) * T * E))
            if on_log is not None:
                on_log(logs[-1])
        if on_checkpoint is not None and (upd + 1) % rt.checkpoint_every == 0 and upd + 1 < n_updates:
            # at a log boundary (checkpoint_every is a multiple of log_every): the window is empty
            on_checkpoint(_snapshot(upd + 1, params, opt, state, obs, ep_ret, hist, T, logs))
    out = {k: v[:n_agents].detach().cpu() for k, v in params.items()}
    out["emb"] = out.pop("emb_t").transpose(1, 2).contiguous()                        # [G, S, H] again
    return {k: out[k] for k in ("emb", "w_heads", "b_heads")}, hist


def updates_of(cfg: SourceConfig) -> int:
    """A2C updates per agent: ``env_steps`` is a whole number of rollouts (params validation)."""
    return max(1, cfg.env_steps // (cfg.nenvs * cfg.nsteps))


def _snapshot(upd: int, params: dict[str, torch.Tensor], opt: torch.optim.Optimizer, state: dr.EnvState,
              obs: torch.Tensor, ep_ret: torch.Tensor, hist: History, T: int, logs: list[AgentLog]) -> dict:
    """Everything :func:`train_agents` needs to continue after update ``upd`` (tensors and plain data).

    The history is a view of its first ``upd * T`` rows, not a copy: the loop never writes those
    rows again, so the view is as frozen as a copy, and a checkpoint late in a long run does not
    double the worker's memory (the history is most of it)."""
    return {
        "update": upd,
        "params": {k: v.detach().cpu().clone() for k, v in params.items()},
        "optimizer": copy.deepcopy(opt.state_dict()),   # a snapshot, not the live state
        "env_state": {k: getattr(state, k).cpu() for k in dr.EnvState._fields},
        "obs": obs.cpu(), "ep_ret": ep_ret.cpu(),
        "history": {f: torch.from_numpy(getattr(hist, f)[: upd * T]) for f in FIELDS},
        "logs": [{"update": e.update, "env_steps": e.env_steps,
                  "stats": {k: torch.from_numpy(v.copy()) for k, v in e.stats.items()}} for e in logs],
    }


def _restore(snap: dict, params: dict[str, torch.Tensor], opt: torch.optim.Optimizer, hist: History, T: int,
             device: torch.device) -> tuple[int, dr.EnvState, torch.Tensor, torch.Tensor, list[AgentLog]]:
    """Load a :func:`_snapshot` into ``params``, ``opt`` and ``hist``; the loop state to continue with."""
    upd = int(snap["update"])
    for k, v in params.items():
        v.data.copy_(snap["params"][k])
    opt.load_state_dict(snap["optimizer"])
    state = dr.EnvState(*(snap["env_state"][k].to(device) for k in dr.EnvState._fields))
    for f in FIELDS:
        getattr(hist, f)[: upd * T] = snap["history"][f].numpy()
    logs = [AgentLog(int(e["update"]), int(e["env_steps"]), {k: v.numpy() for k, v in e["stats"].items()})
            for e in snap["logs"]]
    return upd, state, snap["obs"].to(device), snap["ep_ret"].to(device), logs
