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
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from adlib import rng
from adlib.config import EnvConfig, SourceConfig, SourceRuntime
from adlib.envs import darkroom as dr

# stream keys of the counter-based RNG
_INIT, _ACT, _START = 1, 2, 3


def agent_key(goal_id: int, agent_seed: int) -> int:
    """The identity of an agent in every random draw it makes."""
    return goal_id * 1_000_003 + agent_seed


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


def policy_value(params: dict[str, torch.Tensor], obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``[G, N, A]`` and values ``[G, N]`` for observations ``obs [G, N]``."""
    logits, values = policy_value_tables(params)
    return gather_states(logits, obs), gather_states(values, obs)


def policy_value_tables(params: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``[G, S, A]`` and values ``[G, S]`` of every state.

    Why tables: embedding -> linear has no nonlinearity in between, so the heads applied to
    the whole embedding table (81 rows) cost less than applied to a rollout (100 rows), and
    the rollout then only gathers rows. Same function as gather-then-linear, one bmm per
    update instead of one per env step. The product is taken as heads @ emb^T ([G, A+1, S]):
    on CPU that orientation of the tiny batched matmuls is ~1.7x faster forward + backward.
    """
    out = torch.baddbmm(params["b_heads"].unsqueeze(-1), params["w_heads"], params["emb"].transpose(1, 2))
    return out[:, :-1].transpose(1, 2), out[:, -1]                                    # [G, S, A], [G, S]


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
    """Per-agent losses ``[G]`` from ``logits [G, N, A]``, ``values/actions/returns [G, N]``."""
    logp_all = F.log_softmax(logits, -1)
    logp = logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    advantages = (returns - values).detach()
    actor = -(logp * advantages).mean(-1)
    critic = (returns - values).pow(2).mean(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1).mean(-1)
    loss = actor + cfg.value_coef * critic - cfg.entropy_coef * entropy
    return {"loss": loss, "actor": actor, "critic": critic, "entropy": entropy}


def clip_grad_per_agent(params: dict[str, torch.Tensor], max_norm: float) -> torch.Tensor:
    """Clip each agent's gradient to ``max_norm`` (in place); returns the norms ``[G]`` before clipping."""
    sq = sum(p.grad.pow(2).reshape(p.shape[0], -1).sum(1) for p in params.values())
    norms = sq.sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for p in params.values():
        p.grad.mul_(scale.view(-1, *([1] * (p.dim() - 1))))
    return norms


@dataclass
class History:
    """Every transition of every env stream of the G agents, in time order.

    Arrays are ``[T, G, E]`` with T = number of env steps per stream; row k is the k-th step
    of each stream. ``next_state`` is the cell reached before any auto-reset.
    """

    t: np.ndarray           # in-episode timestep of ``state`` (0 at reset)
    state: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    next_state: np.ndarray


HISTORY_FIELDS = ("t", "state", "action", "reward", "terminated", "truncated", "next_state")


def _state_dtype(n_states: int) -> type:
    return np.uint8 if n_states <= 256 else np.uint16


@dataclass
class AgentLog:
    """A log point: per-agent statistics over the episodes finished since the previous point."""

    update: int
    env_steps: int                    # per agent
    stats: dict[str, np.ndarray]      # each [G]


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
    G, E, T = len(goal_ids), cfg.nenvs, cfg.nsteps
    n_states = env_cfg.grid_size * env_cfg.grid_size
    n_updates = max(1, cfg.env_steps // (E * T))
    keys = torch.tensor([agent_key(g, s) for g, s in zip(goal_ids, agent_seeds)], dtype=torch.long)
    params = {k: v.to(device).requires_grad_() for k, v in init_params(cfg, n_states, keys).items()}
    opt = torch.optim.Adam(list(params.values()), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, foreach=True)

    goals = dr.all_goals(env_cfg)[torch.tensor(goal_ids)].to(device)                # [G, 2]
    keys = keys.to(device)
    env_ids = torch.arange(E, device=device)
    akey = keys.view(G, 1).expand(G, E)                                               # [G, E]
    flat_goal = goals.view(G, 1, 2).expand(G, E, 2).reshape(G * E, 2)

    def uniforms(kind: int, counter: torch.Tensor | int) -> torch.Tensor:
        return rng.uniform(cfg.seed, kind, akey, env_ids, counter)                   # [..., G, E]

    state, obs = dr.reset(env_cfg, flat_goal, uniforms(_START, -1).flatten() if env_cfg.random_start else None)
    obs = obs.view(G, E)

    sdt = _state_dtype(n_states)
    tdt = np.uint8 if env_cfg.max_episode_steps < 256 else np.uint16
    total = n_updates * T
    hist = History(t=np.empty((total, G, E), tdt), state=np.empty((total, G, E), sdt),
                   action=np.empty((total, G, E), np.uint8), reward=np.empty((total, G, E), np.uint8),
                   terminated=np.empty((total, G, E), bool), truncated=np.empty((total, G, E), bool),
                   next_state=np.empty((total, G, E), sdt))

    # rollout buffers [T, G, E]
    b_obs = torch.empty((T, G, E), dtype=torch.long, device=device)
    b_t = torch.empty_like(b_obs)
    b_act = torch.empty_like(b_obs)
    b_rew = torch.empty((T, G, E), device=device)
    b_term = torch.empty((T, G, E), dtype=torch.bool, device=device)
    b_trunc = torch.empty_like(b_term)
    b_final = torch.empty_like(b_obs)

    ep_ret = torch.zeros(G, E, device=device)
    win = {k: torch.zeros(G, device=device) for k in ("episodes", "return", "length", "success")}
    win_losses = {k: torch.zeros(G, device=device) for k in ("loss", "actor", "critic", "entropy", "grad_norm")}

    logs: list[AgentLog] = []
    start = 0
    if resume is not None:
        start = int(resume["update"])
        for k, v in params.items():
            v.data.copy_(resume["params"][k])
        opt.load_state_dict(resume["optimizer"])
        state = dr.EnvState(*(resume["env_state"][k].to(device) for k in ("pos", "goal", "t")))
        obs, ep_ret = resume["obs"].to(device), resume["ep_ret"].to(device)
        for f in HISTORY_FIELDS:
            getattr(hist, f)[: start * T] = resume["history"][f].numpy()
        for e in resume["logs"]:
            logs.append(AgentLog(int(e["update"]), int(e["env_steps"]), {k: v.numpy() for k, v in e["stats"].items()}))
            if on_log is not None:
                on_log(logs[-1])

    steps_t = torch.arange(T, device=device).view(T, 1, 1)
    for update in range(start, n_updates):
        with torch.no_grad():
            logits_tab, values_tab = policy_value_tables(params)                      # [G, S, A], [G, S]
            probs_tab = F.softmax(logits_tab, -1)
            u_act = uniforms(_ACT, update * T + steps_t)                               # [T, G, E]
            u_start = uniforms(_START, update * T + steps_t).view(T, G * E) if env_cfg.random_start else None
            for k in range(T):
                action = rng.categorical(gather_states(probs_tab, obs), u_act[k])      # [G, E]
                b_obs[k], b_t[k], b_act[k] = obs, state.t.view(G, E), action
                out = dr.step(env_cfg, state, action.flatten(), None if u_start is None else u_start[k])
                state = out.state
                obs = out.obs.view(G, E)
                b_rew[k] = out.reward.view(G, E)
                b_term[k] = out.terminated.view(G, E)
                b_trunc[k] = out.truncated.view(G, E)
                b_final[k] = out.final_obs.view(G, E)

            # episode statistics of the episodes that ended in this rollout
            for k in range(T):
                ep_ret += b_rew[k]
                done = b_term[k] | b_trunc[k]
                win["episodes"] += done.sum(1)
                win["return"] += (ep_ret * done).sum(1)
                win["length"] += (done * (b_t[k] + 1)).sum(1)
                win["success"] += (done & (ep_ret > 0)).sum(1)
                ep_ret *= ~done

            # the final observation's value matters only where an episode was truncated
            final_v = gather_states(values_tab, b_final.permute(1, 0, 2).reshape(G, T * E))
            final_v = final_v.view(G, T, E).permute(1, 0, 2)
            boot = gather_states(values_tab, obs)
            returns = nstep_returns(b_rew, b_term, b_trunc, final_v, boot, cfg.gamma)    # [T, G, E]

        s = slice(update * T, (update + 1) * T)
        hist.t[s] = b_t.cpu().numpy()
        hist.state[s] = b_obs.cpu().numpy()
        hist.action[s] = b_act.cpu().numpy()
        hist.reward[s] = b_rew.cpu().numpy()
        hist.terminated[s] = b_term.cpu().numpy()
        hist.truncated[s] = b_trunc.cpu().numpy()
        hist.next_state[s] = b_final.cpu().numpy()

        to_gn = lambda x: x.permute(1, 0, 2).reshape(G, T * E)                        # [T,G,E] -> [G, T*E]
        logits, values = policy_value(params, to_gn(b_obs))
        losses = a2c_losses(logits, values, to_gn(b_act), to_gn(returns), cfg)
        opt.zero_grad(set_to_none=False)
        losses["loss"].sum().backward()
        norms = clip_grad_per_agent(params, cfg.clip_grad_norm)
        opt.step()

        with torch.no_grad():
            for k in ("loss", "actor", "critic", "entropy"):
                win_losses[k] += losses[k].detach()
            win_losses["grad_norm"] += norms
        if on_update is not None:
            on_update((update + 1) * T * E)
        if (on_log or on_checkpoint) is not None and ((update + 1) % rt.log_every == 0 or update == n_updates - 1):
            n = win["episodes"].clamp(min=1)
            n_up = (update % rt.log_every) + 1
            stats = {
                "charts/episodic_return": win["return"] / n,
                "charts/episodic_length": win["length"] / n,
                "charts/success_rate": win["success"] / n,
                "charts/episodes": win["episodes"].clone(),
                "losses/loss": win_losses["loss"] / n_up,
                "losses/policy_loss": win_losses["actor"] / n_up,
                "losses/value_loss": win_losses["critic"] / n_up,
                "losses/entropy": win_losses["entropy"] / n_up,
                "losses/grad_norm": win_losses["grad_norm"] / n_up,
            }
            logs.append(AgentLog(update + 1, (update + 1) * T * E, {k: v.cpu().numpy() for k, v in stats.items()}))
            if on_log is not None:
                on_log(logs[-1])
            for v in (*win.values(), *win_losses.values()):
                v.zero_()
        if (on_checkpoint is not None and (update + 1) % rt.checkpoint_every == 0 and update + 1 < n_updates):
            # at a log boundary (checkpoint_every is a multiple of log_every): window sums are zero
            on_checkpoint({
                "update": update + 1,
                "params": {k: v.detach().cpu().clone() for k, v in params.items()},
                "optimizer": copy.deepcopy(opt.state_dict()),   # a snapshot, not the live state
                "env_state": {"pos": state.pos.cpu(), "goal": state.goal.cpu(), "t": state.t.cpu()},
                "obs": obs.cpu(), "ep_ret": ep_ret.cpu(),
                "history": {f: torch.from_numpy(getattr(hist, f)[: (update + 1) * T].copy()) for f in HISTORY_FIELDS},
                "logs": [{"update": e.update, "env_steps": e.env_steps,
                          "stats": {k: torch.from_numpy(v.copy()) for k, v in e.stats.items()}} for e in logs],
            })
    return {k: v.detach().cpu() for k, v in params.items()}, hist
