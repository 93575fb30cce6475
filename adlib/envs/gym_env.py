"""Gymnasium wrapper around the batched core (batch of one), for the standard API."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch

from adlib.config import EnvConfig, ParamError, env_config
from adlib.envs import ENV_ID, register
from adlib.envs import darkroom as dr
from adlib.envs.render import draw_frame


class DarkRoomEnv(gym.Env):
    """Dark Room (``kind="darkroom"``) or Dark Key-to-Door (``kind="keydoor"``) with one task.
    The observation is the cell index (keydoor: plus ``grid_size**2`` while the key is held;
    ``info["has_key"]`` says it too). The step limit comes from gymnasium's ``TimeLimit``
    (``max_episode_steps`` at registration); ``info["step"]`` is the in-episode step count.

    Every argument is checked with params.yaml's rules and messages (``env.grid_size`` 3..31,
    odd with a fixed start, ``reward_mode`` 'reach' or 'stand', ...): a bad one raises
    :class:`~adlib.config.ParamError` (a ``ValueError``) naming it.

    The goal (the task; keydoor: ``((key row, key col), (door row, door col))``) is, in order of
    precedence:
    - ``reset(options={"goal": ...})``: that goal, from this episode on;
    - ``goal=...`` at construction: always that goal;
    - otherwise drawn uniformly from all goals with the env's ``np_random``, by
      ``goal_sampling``: ``"seed"`` (the default) draws at the first reset and at every
      ``reset(seed=...)``, and keeps the goal across the resets in between: one task over
      many episodes, which is what in-context RL plays; ``"reset"`` draws a new goal at every
      reset (a new task per episode).
    A goal must be two integers inside the grid and not the fixed start cell; a key and a
    door must be two different cells inside the grid.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}
    GOAL_SAMPLING = ("seed", "reset")

    def __init__(self, grid_size: int = 9, terminate_on_goal: bool = True, random_start: bool = False,
                 reward_mode: str = "reach", goal: Any = None, goal_sampling: str = "seed",
                 render_mode: str | None = None, cell_px: int = 24, kind: str = "darkroom"):
        # the core's own step limit is disabled (huge); TimeLimit truncates instead
        self.cfg = env_config(kind=kind, grid_size=grid_size, max_episode_steps=10_000,
                              terminate_on_goal=terminate_on_goal, random_start=random_start, reward_mode=reward_mode)
        if goal_sampling not in self.GOAL_SAMPLING:
            raise ParamError(f"goal_sampling = {goal_sampling!r}: must be one of {', '.join(map(repr, self.GOAL_SAMPLING))}")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ParamError(f"render_mode = {render_mode!r}: must be None or 'rgb_array'")
        if isinstance(cell_px, bool) or not isinstance(cell_px, int) or not 4 <= cell_px <= 256:
            raise ParamError(f"cell_px = {cell_px!r}: must be an integer (>= 4 and <= 256)")
        self.observation_space = gym.spaces.Discrete(dr.n_states(self.cfg))
        self.action_space = gym.spaces.Discrete(dr.N_ACTIONS)
        self.render_mode = render_mode
        self.cell_px = cell_px
        self.goal_sampling = goal_sampling
        self._fixed_goal = None if goal is None else dr.check_goal(self.cfg, goal, "goal")
        self._goal: tuple[int, ...] | None = None
        self._state: dr.EnvState | None = None

    def _u(self) -> torch.Tensor | None:
        return torch.tensor([self.np_random.random()], dtype=torch.float32) if self.cfg.random_start else None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options and "goal" in options:
            self._goal = dr.check_goal(self.cfg, options["goal"], 'options["goal"]')
        elif self._fixed_goal is not None:
            self._goal = self._fixed_goal
        elif self._goal is None or seed is not None or self.goal_sampling == "reset":
            goals = dr.tasks_in_use(self.cfg)
            self._goal = tuple(goals[self.np_random.integers(len(goals))].tolist())
        self._state, obs = dr.reset(self.cfg, torch.tensor([self._goal], dtype=torch.long), self._u())
        return int(obs[0]), self._info()

    def _info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"step": int(self._state.t[0]), "goal": self._goal}
        if self.cfg.kind == "keydoor":
            info["has_key"] = bool(self._state.progress[0] >= 1)
            info["door_open"] = bool(self._state.progress[0] >= 2)
        return info

    def step(self, action):
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r}: must be an integer in [0, {dr.N_ACTIONS})")
        # the core's rules without its auto-reset: gymnasium's caller resets explicitly
        tr = dr.transition(self.cfg, self._state, torch.tensor([int(action)]))
        self._state = dr.EnvState(pos=tr.pos, goal=self._state.goal, t=self._state.t + 1, progress=tr.progress)
        obs = dr.obs_of(self.cfg, tr.pos, tr.progress)
        return int(obs[0]), float(tr.reward[0]), bool(tr.terminated[0]), False, self._info()

    def render(self):
        if self.render_mode != "rgb_array" or self._state is None:
            return None
        pos = tuple(self._state.pos[0].tolist())
        return draw_frame(self.cfg.grid_size, pos, tuple(self._state.goal[0].tolist()), self.cell_px,
                          progress=int(self._state.progress[0]))


def make(cfg: EnvConfig, **kwargs: Any) -> gym.Env:
    """``gym.make`` of :data:`ENV_ID` with the settings of ``cfg`` (any kind)."""
    register()
    return gym.make(ENV_ID, max_episode_steps=cfg.max_episode_steps, kind=cfg.kind, grid_size=cfg.grid_size,
                    terminate_on_goal=cfg.terminate_on_goal, random_start=cfg.random_start,
                    reward_mode=cfg.reward_mode, **kwargs)


__all__ = ["DarkRoomEnv", "ENV_ID", "make", "register"]
