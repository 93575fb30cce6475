"""Dark Room as pure batched functions over a state of tensors (gymnax style).

Conventions of the original environment (SPEC.md §2): state index = row * grid_size + col,
rows counted from the top; actions 0 no-op, 1 up (row - 1), 2 right (col + 1),
3 down (row + 1), 4 left (col - 1); a move into a wall leaves the agent in place.

The goal is part of the state, so one batch can hold every env of every goal.
Settings come from :class:`adlib.config.EnvConfig` and are static (not in the state).
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import torch

from adlib.config import EnvConfig, ParamError

N_ACTIONS = 5
# [5, 2] (d_row, d_col) per action
ACTION_DELTAS = torch.tensor([[0, 0], [-1, 0], [0, 1], [1, 0], [0, -1]], dtype=torch.long)


class EnvState(NamedTuple):
    """Batched env state. ``t`` counts steps taken in the current episode."""

    pos: torch.Tensor   # [B, 2] long, (row, col)
    goal: torch.Tensor  # [B, 2] long
    t: torch.Tensor     # [B] long


class StepOut(NamedTuple):
    """What one batched step returns. ``obs`` is after the auto-reset, ``final_obs`` before it."""

    state: EnvState
    obs: torch.Tensor        # [B] long, observation to act on next (post-reset where done)
    reward: torch.Tensor     # [B] float32
    terminated: torch.Tensor  # [B] bool, goal reached with terminate_on_goal
    truncated: torch.Tensor   # [B] bool, step limit hit (and not terminated)
    final_obs: torch.Tensor   # [B] long, the cell actually reached by this step (pre-reset)


def start_pos(cfg: EnvConfig) -> tuple[int, int]:
    """The fixed start cell: the centre."""
    return cfg.grid_size // 2, cfg.grid_size // 2


def all_goals(cfg: EnvConfig) -> torch.Tensor:
    """Every cell but the start cell, in row-major order: [grid_size**2 - 1, 2] long."""
    rows, cols = torch.meshgrid(torch.arange(cfg.grid_size), torch.arange(cfg.grid_size), indexing="ij")
    cells = torch.stack([rows.flatten(), cols.flatten()], -1)
    sr, sc = start_pos(cfg)
    keep = ~((cells[:, 0] == sr) & (cells[:, 1] == sc))
    return cells[keep]


def check_goal(cfg: EnvConfig, goal: Any, key: str = "goal") -> tuple[int, int]:
    """``goal`` as a (row, col) pair of ints, or :class:`~adlib.config.ParamError` naming
    ``key``: two integers inside the grid, and not the fixed start cell (a goal there would be
    "reached" without moving, and under 'reach' never pay)."""
    try:
        row, col = goal
        ok = all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in (row, col))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ParamError(f"{key} = {goal!r}: must be a (row, col) pair of integers")
    row, col = int(row), int(col)
    if not (0 <= row < cfg.grid_size and 0 <= col < cfg.grid_size):
        raise ParamError(f"{key} = {goal!r}: outside the {cfg.grid_size}x{cfg.grid_size} grid "
                         f"(rows and columns 0 .. {cfg.grid_size - 1})")
    if not cfg.random_start and (row, col) == start_pos(cfg):
        raise ParamError(f"{key} = {goal!r}: is the start cell; a goal must be another cell")
    return row, col


def obs_of(cfg: EnvConfig, pos: torch.Tensor) -> torch.Tensor:
    """State index of positions ``[..., 2]``."""
    return pos[..., 0] * cfg.grid_size + pos[..., 1]


def _start_positions(cfg: EnvConfig, goal: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
    """Start cells for a batch: the centre, or uniform over cells other than the goal."""
    if not cfg.random_start:
        sr, sc = start_pos(cfg)
        return torch.tensor([sr, sc], device=goal.device).expand_as(goal).clone()
    if u is None:
        raise ValueError("random_start needs uniforms u [B] in [0, 1)")
    n = cfg.grid_size * cfg.grid_size
    idx = (u * (n - 1)).long().clamp_max(n - 2)
    idx = idx + (idx >= obs_of(cfg, goal)).long()  # skip the goal cell
    return torch.stack([idx // cfg.grid_size, idx % cfg.grid_size], -1)


def reset(cfg: EnvConfig, goal: torch.Tensor, u: torch.Tensor | None = None) -> tuple[EnvState, torch.Tensor]:
    """Fresh episodes for goals ``[B, 2]``; ``u [B]`` uniforms are needed only with random_start."""
    pos = _start_positions(cfg, goal, u)
    state = EnvState(pos=pos, goal=goal, t=torch.zeros(goal.shape[0], dtype=torch.long, device=goal.device))
    return state, obs_of(cfg, pos)


def step(cfg: EnvConfig, state: EnvState, action: torch.Tensor, u: torch.Tensor | None = None) -> StepOut:
    """One step of every env in the batch, with auto-reset.

    Auto-reset convention (the only place it is written): an env whose episode ends on
    this step (terminated or truncated) comes back already reset in ``state``/``obs``;
    the reward and the reached cell of the ending step are in ``reward`` and ``final_obs``.
    """
    deltas = ACTION_DELTAS.to(action.device)[action]                     # [B, 2]
    new_pos = (state.pos + deltas).clamp(0, cfg.grid_size - 1)                # walls stop moves
    at_goal = (new_pos == state.goal).all(-1)                            # [B]
    if cfg.reward_mode == "stand":
        reward = at_goal
    else:  # "reach": only the step that arrives on the goal
        reward = at_goal & ~(state.pos == state.goal).all(-1)
    t = state.t + 1
    terminated = at_goal & cfg.terminate_on_goal
    truncated = (t >= cfg.max_episode_steps) & ~terminated
    done = terminated | truncated
    final_obs = obs_of(cfg, new_pos)
    restart = _start_positions(cfg, state.goal, u)
    pos = torch.where(done.unsqueeze(-1), restart, new_pos)
    t = torch.where(done, torch.zeros_like(t), t)
    new_state = EnvState(pos=pos, goal=state.goal, t=t)
    return StepOut(new_state, obs_of(cfg, pos), reward.float(), terminated, truncated, final_obs)


def shortest_path(cfg: EnvConfig, pos: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    """Manhattan distance (= fewest steps) from ``pos`` to ``goal``, both ``[..., 2]``."""
    return (pos - goal).abs().sum(-1)


def optimal_actions(pos: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    """Boolean mask ``[..., 5]`` of actions on a shortest path (no-op only when on the goal)."""
    dr = goal[..., 0] - pos[..., 0]
    dc = goal[..., 1] - pos[..., 1]
    on_goal = (dr == 0) & (dc == 0)
    return torch.stack([on_goal, dr < 0, dc > 0, dr > 0, dc < 0], -1)
