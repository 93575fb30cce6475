"""The Dark Room family as pure batched functions over a state of tensors (gymnax style).

Conventions of the original environment (SPEC.md §2): cell index = row * grid_size + col,
rows counted from the top; actions 0 no-op, 1 up (row - 1), 2 right (col + 1),
3 down (row + 1), 4 left (col - 1); a move into a wall leaves the agent in place.

Two kinds (``env.kind``):

- ``darkroom``: a task ("goal") is one invisible goal cell, ``goal [B, 2]``; any room size
  (Dark Room Hard is 17x17, 20 steps, terminate on goal). The observation is the cell.
- ``keydoor`` (Dark Key-to-Door, Laskin et al. 2023, §5): a task is an invisible key cell and
  an invisible door cell, ``goal [B, 4] = (key row, key col, door row, door col)``, key !=
  door. +1 on the step that first reaches the key in an episode (the agent then holds it),
  +1 on the step that reaches the door while holding the key (once: the door is then open);
  nothing else pays. With ``terminate_on_goal`` the open door ends the episode; by default
  (the paper names no termination) the episode runs to its step limit. The agent observes
  its cell and whether it holds the key: ``obs = cell + grid_size**2 * has_key`` (a
  memoryless source policy could not act optimally without the flag).

The task is part of the state, so one batch can hold every env of every task.
Settings come from :class:`adlib.config.EnvConfig` and are static (not in the state).
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import numpy as np
import torch

from adlib.config import EnvConfig, ParamError
from adlib.envs.rules import (  # noqa: F401  (the core's rules, re-exported)
    TASK_POOL_SEED,
    farthest_task_steps,
    n_all_tasks,
    n_states,
    n_tasks_in_use,
    start_pos,
    success_return,
    task_width,
)

N_ACTIONS = 5
# [5, 2] (d_row, d_col) per action
ACTION_DELTAS = torch.tensor([[0, 0], [-1, 0], [0, 1], [1, 0], [0, -1]], dtype=torch.long)


class EnvState(NamedTuple):
    """Batched env state. ``t`` counts steps taken in the current episode."""

    pos: torch.Tensor    # [B, 2] long, (row, col)
    goal: torch.Tensor   # [B, 2] long goal cell (darkroom) or [B, 4] key cell, door cell (keydoor)
    t: torch.Tensor      # [B] long
    progress: torch.Tensor  # [B] long, keydoor progress: 0 no key, 1 key held, 2 door open (0 in darkroom)


class StepOut(NamedTuple):
    """What one batched step returns. ``obs`` is after the auto-reset, ``next_state`` before it."""

    state: EnvState
    obs: torch.Tensor        # [B] long, observation to act on next (post-reset where done)
    reward: torch.Tensor     # [B] float32
    terminated: torch.Tensor  # [B] bool, goal reached with terminate_on_goal
    truncated: torch.Tensor   # [B] bool, step limit hit (and not terminated)
    next_state: torch.Tensor  # [B] long, the observation actually reached by this step (pre-reset)


def all_cells(cfg: EnvConfig) -> torch.Tensor:
    """Every cell of the room in row-major order: [grid_size**2, 2] long."""
    rows, cols = torch.meshgrid(torch.arange(cfg.grid_size), torch.arange(cfg.grid_size), indexing="ij")
    return torch.stack([rows.flatten(), cols.flatten()], -1)


def all_tasks(cfg: EnvConfig) -> torch.Tensor:
    """Every task of the room: darkroom, every cell but the start cell ``[grid_size**2 - 1, 2]``;
    keydoor, every (key, door) pair of cells with key != door ``[n**2 (n**2 - 1), 4]``, key-major."""
    cells = all_cells(cfg)
    if cfg.kind == "keydoor":
        n = len(cells)
        key, door = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        keep = key != door
        return torch.cat([cells[key[keep]], cells[door[keep]]], -1)
    sr, sc = start_pos(cfg)
    return cells[~((cells[:, 0] == sr) & (cells[:, 1] == sc))]


def tasks_in_use(cfg: EnvConfig) -> torch.Tensor:
    """The tasks the pipeline uses (goal id = row): every task (:func:`all_tasks`), or with
    ``env.n_tasks > 0`` a fixed pseudo-random subset of that many, in the same order (the
    subset depends on the room only, never on the split: the split draws from it)."""
    tasks = all_tasks(cfg)
    if cfg.n_tasks == 0 or cfg.n_tasks >= len(tasks):
        return tasks
    keep = np.sort(np.random.default_rng(TASK_POOL_SEED).permutation(len(tasks))[:cfg.n_tasks])
    return tasks[torch.from_numpy(keep)]


def check_goal(cfg: EnvConfig, goal: Any, key: str = "goal") -> tuple[int, ...]:
    """A task as a flat tuple of ints, or :class:`~adlib.config.ParamError` naming ``key``.

    darkroom: a (row, col) pair inside the grid, not the fixed start cell (a goal there would
    be "reached" without moving, and under 'reach' never pay). keydoor: a (key, door) pair of
    such cells, ``((row, col), (row, col))`` or flat ``(kr, kc, dr, dc)``, key != door (one
    step would pay both rewards; the AD paper's 81**2 count includes these 81 degenerate tasks).
    """
    keydoor = cfg.kind == "keydoor"
    what = "a ((row, col), (row, col)) (key, door) pair" if keydoor else "a (row, col) pair"
    try:
        flat = [v for part in goal for v in part] if keydoor and len(goal) == 2 else list(goal)
        ok = len(flat) == task_width(cfg) and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in flat)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ParamError(f"{key} = {goal!r}: must be {what} of integers")
    flat = [int(v) for v in flat]
    names = ("key", "door") if keydoor else ("goal",)
    for i, name in enumerate(names):
        row, col = flat[2 * i:2 * i + 2]
        if not (0 <= row < cfg.grid_size and 0 <= col < cfg.grid_size):
            raise ParamError(f"{key} = {goal!r}: the {name} cell ({row}, {col}) is outside the "
                             f"{cfg.grid_size}x{cfg.grid_size} grid (rows and columns 0 .. {cfg.grid_size - 1})")
    if keydoor and flat[:2] == flat[2:]:
        raise ParamError(f"{key} = {goal!r}: the key and the door are the same cell; they must differ")
    if not keydoor and not cfg.random_start and tuple(flat) == start_pos(cfg):
        raise ParamError(f"{key} = {goal!r}: is the start cell; a goal must be another cell")
    return tuple(flat)


def obs_of(cfg: EnvConfig, pos: torch.Tensor, progress: torch.Tensor | None = None) -> torch.Tensor:
    """Observation of positions ``[..., 2]``: the cell index, plus ``grid_size**2`` where a
    keydoor agent holds the key (``progress [...] >= 1``)."""
    cell = pos[..., 0] * cfg.grid_size + pos[..., 1]
    if progress is None or cfg.kind != "keydoor":
        return cell
    return cell + cfg.grid_size ** 2 * (progress >= 1).long()


def target(state: EnvState) -> torch.Tensor:
    """The cell ``[B, 2]`` a task-knowing agent heads for now: the goal; for keydoor the key
    until it is held, then the door."""
    if state.goal.shape[-1] == 2:
        return state.goal
    return torch.where((state.progress == 0).unsqueeze(-1), state.goal[..., :2], state.goal[..., 2:])


def _start_positions(cfg: EnvConfig, goal: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
    """Start cells for a batch: the centre, or uniform over cells other than the goal."""
    if not cfg.random_start:
        sr, sc = start_pos(cfg)
        return torch.tensor([sr, sc], device=goal.device).expand(goal.shape[0], 2).clone()
    if u is None:
        raise ValueError("random_start needs uniforms u [B] in [0, 1)")
    return cell_pos(cfg, random_start_cells(cfg, obs_of(cfg, goal[..., :2]), u))


def random_start_cells(cfg: EnvConfig, avoid: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Start cells uniform over the cells other than ``avoid`` (the goal; keydoor: the key cell),
    from uniforms ``u`` of the same shape."""
    n = cfg.grid_size * cfg.grid_size
    idx = (u * (n - 1)).long().clamp_max(n - 2)
    return idx + (idx >= avoid).long()


def cell_pos(cfg: EnvConfig, cell: torch.Tensor) -> torch.Tensor:
    """(row, col) positions ``[..., 2]`` of cell indices ``[...]``: the inverse of :func:`obs_of`'s cell."""
    return torch.stack([cell // cfg.grid_size, cell % cfg.grid_size], -1)


def reset(cfg: EnvConfig, goal: torch.Tensor, u: torch.Tensor | None = None) -> tuple[EnvState, torch.Tensor]:
    """Fresh episodes for tasks ``goal [B, W]``; ``u [B]`` uniforms are needed only with random_start."""
    pos = _start_positions(cfg, goal, u)
    zero = torch.zeros(goal.shape[0], dtype=torch.long, device=goal.device)
    state = EnvState(pos=pos, goal=goal, t=zero, progress=zero.clone())
    return state, obs_of(cfg, pos, state.progress)


class Transition(NamedTuple):
    """One step of every env before any reset (what :func:`step` auto-resets)."""

    pos: torch.Tensor         # [B, 2] cell reached
    progress: torch.Tensor       # [B] keydoor progress after the step
    reward: torch.Tensor      # [B] bool
    terminated: torch.Tensor  # [B] bool
    truncated: torch.Tensor   # [B] bool


def transition(cfg: EnvConfig, state: EnvState, action: torch.Tensor) -> Transition:
    """The rules of one step, without the reset: moves, rewards, termination, truncation."""
    deltas = ACTION_DELTAS.to(action.device)[action]                     # [B, 2]
    new_pos = (state.pos + deltas).clamp(0, cfg.grid_size - 1)                # walls stop moves
    t = state.t + 1
    if cfg.kind == "keydoor":
        at_key = (new_pos == state.goal[:, :2]).all(-1) & (state.progress == 0)
        at_door = (new_pos == state.goal[:, 2:]).all(-1) & (state.progress == 1)   # key != door: not both
        reward = at_key | at_door
        progress = state.progress + reward.long()
        terminated = at_door & cfg.terminate_on_goal
    else:
        at_goal = (new_pos == state.goal).all(-1)                            # [B]
        if cfg.reward_mode == "stand":
            reward = at_goal
        else:  # "reach": only the step that arrives on the goal
            reward = at_goal & ~(state.pos == state.goal).all(-1)
        progress = state.progress
        terminated = at_goal & cfg.terminate_on_goal
    truncated = (t >= cfg.max_episode_steps) & ~terminated
    return Transition(new_pos, progress, reward, terminated, truncated)


def step(cfg: EnvConfig, state: EnvState, action: torch.Tensor, u: torch.Tensor | None = None) -> StepOut:
    """One step of every env in the batch, with auto-reset.

    Auto-reset convention (the only place it is written): an env whose episode ends on
    this step (terminated or truncated) comes back already reset in ``state``/``obs``;
    the reward and the reached cell of the ending step are in ``reward`` and ``next_state``.
    """
    tr = transition(cfg, state, action)
    done = tr.terminated | tr.truncated
    next_state = obs_of(cfg, tr.pos, tr.progress)
    restart = _start_positions(cfg, state.goal, u)
    pos = torch.where(done.unsqueeze(-1), restart, tr.pos)
    t = torch.where(done, torch.zeros_like(state.t), state.t + 1)
    progress = torch.where(done, torch.zeros_like(tr.progress), tr.progress)
    new_state = EnvState(pos=pos, goal=state.goal, t=t, progress=progress)
    return StepOut(new_state, obs_of(cfg, pos, progress), tr.reward.float(), tr.terminated, tr.truncated, next_state)


class CellStep(NamedTuple):
    """What :func:`step_cells` returns, every field ``[...]`` like its ``cell``."""

    cell: torch.Tensor        # long, the cell to act in next (post-reset where done): the observation
    t: torch.Tensor           # long, steps taken in the current episode (0 where reset)
    reward: torch.Tensor      # float32
    terminated: torch.Tensor  # bool
    truncated: torch.Tensor   # bool
    next_cell: torch.Tensor   # long, the cell this step reached (pre-reset)


def move_table(cfg: EnvConfig) -> torch.Tensor:
    """``[grid_size**2, A]``: the cell each action leads to from each cell (walls stop moves)."""
    cells = all_cells(cfg)
    new = (cells.unsqueeze(1) + ACTION_DELTAS).clamp(0, cfg.grid_size - 1)             # [S, A, 2]
    return new[..., 0] * cfg.grid_size + new[..., 1]


def step_cells(cfg: EnvConfig, moves: torch.Tensor, cell: torch.Tensor, t: torch.Tensor, goal_cell: torch.Tensor,
               action: torch.Tensor, u: torch.Tensor | None = None) -> CellStep:
    """:func:`step` of a Dark Room batch held as cell indices (its observations), with auto-reset:
    the same rules in a third of the tensor ops (a source agent's rollout is most of them).

    ``moves`` is :func:`move_table`; ``cell``, ``t``, ``goal_cell`` (the goal's cell index),
    ``action`` and ``u`` (uniforms for random starts) share one shape. Dark Room only: a
    Key-to-Door state is more than its cell."""
    if cfg.kind != "darkroom":
        raise ValueError(f"step_cells is Dark Room's; env.kind is {cfg.kind!r}")
    nxt = moves.view(-1)[cell * N_ACTIONS + action]
    at_goal = nxt == goal_cell
    reward = at_goal if cfg.reward_mode == "stand" else at_goal & (cell != goal_cell)
    terminated = at_goal if cfg.terminate_on_goal else torch.zeros_like(at_goal)
    t1 = t + 1
    truncated = (t1 >= cfg.max_episode_steps) & ~terminated
    done = terminated | truncated
    if cfg.random_start:
        if u is None:
            raise ValueError("random_start needs uniforms u in [0, 1)")
        restart = random_start_cells(cfg, goal_cell, u)
    else:
        sr, sc = start_pos(cfg)
        restart = sr * cfg.grid_size + sc
    return CellStep(torch.where(done, restart, nxt), torch.where(done, 0, t1), reward.float(), terminated,
                    truncated, nxt)


def manhattan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Fewest steps between cells ``a`` and ``b`` (both ``[..., 2]``): the Manhattan distance."""
    return (a - b).abs().sum(-1)


def shortest_path(cfg: EnvConfig, pos: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    """Fewest steps from ``pos [..., 2]`` to complete task ``goal [..., W]``: to the goal cell;
    keydoor, to the key (at least one step: a step picks it up, a no-op where the agent starts
    on it), then to the door."""
    if cfg.kind == "keydoor":
        return manhattan(pos, goal[..., :2]).clamp(min=1) + manhattan(goal[..., :2], goal[..., 2:])
    return manhattan(pos, goal)


def optimal_actions(pos: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    """Boolean mask ``[..., 5]`` of actions on a shortest path (no-op only when on the goal)."""
    dr = goal[..., 0] - pos[..., 0]
    dc = goal[..., 1] - pos[..., 1]
    on_goal = (dr == 0) & (dc == 0)
    return torch.stack([on_goal, dr < 0, dc > 0, dr > 0, dc < 0], -1)
