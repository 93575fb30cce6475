"""Gymnasium wrapper around the batched core (batch of one), for the standard API."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch

from adlib.config import EnvConfig
from adlib.envs import ENV_ID, register
from adlib.envs import darkroom as dr
from adlib.envs.render import draw_frame



class DarkRoomEnv(gym.Env):
    """Dark Room with one goal. The step limit comes from gymnasium's ``TimeLimit``
    (``max_episode_steps`` at registration); ``info["step"]`` is the in-episode step count.

    The goal is fixed by ``goal=(row, col)``, by ``reset(options={"goal": (row, col)})``,
    or else drawn uniformly from all goals with the env's ``np_random``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(self, grid_size: int = 9, terminate_on_goal: bool = True, random_start: bool = False,
                 reward_mode: str = "reach", goal: tuple[int, int] | None = None,
                 render_mode: str | None = None, cell_px: int = 24):
        # the core's own step limit is disabled (huge); TimeLimit truncates instead
        self.cfg = EnvConfig(grid_size=grid_size, max_episode_steps=10_000, terminate_on_goal=terminate_on_goal,
                             random_start=random_start, reward_mode=reward_mode)
        self.observation_space = gym.spaces.Discrete(grid_size * grid_size)
        self.action_space = gym.spaces.Discrete(dr.N_ACTIONS)
        self.render_mode = render_mode
        self.cell_px = cell_px
        self._fixed_goal = goal
        self._state: dr.EnvState | None = None

    def _u(self) -> torch.Tensor | None:
        return torch.tensor([self.np_random.random()], dtype=torch.float32) if self.cfg.random_start else None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        goal = (options or {}).get("goal", self._fixed_goal)
        if goal is None:
            goals = dr.all_goals(self.cfg)
            goal = tuple(goals[self.np_random.integers(len(goals))].tolist())
        self._state, obs = dr.reset(self.cfg, torch.tensor([goal], dtype=torch.long), self._u())
        return int(obs[0]), {"step": 0, "goal": tuple(goal)}

    def step(self, action):
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r}: must be an integer in [0, {dr.N_ACTIONS})")
        prev_t = int(self._state.t[0])
        out = dr.step(self.cfg, self._state, torch.tensor([int(action)]), self._u())
        terminated = bool(out.terminated[0])
        # keep the pre-reset position: gymnasium's caller resets explicitly
        row, col = divmod(int(out.final_obs[0]), self.cfg.grid_size)
        self._state = dr.EnvState(pos=torch.tensor([[row, col]]), goal=self._state.goal,
                                  t=torch.tensor([prev_t + 1]))
        return int(out.final_obs[0]), float(out.reward[0]), terminated, False, {"step": prev_t + 1}

    def render(self):
        if self.render_mode != "rgb_array" or self._state is None:
            return None
        pos = tuple(self._state.pos[0].tolist())
        return draw_frame(self.cfg.grid_size, pos, tuple(self._state.goal[0].tolist()), self.cell_px)


def make(cfg: EnvConfig, **kwargs: Any) -> gym.Env:
    """``gym.make`` of :data:`ENV_ID` with the settings of ``cfg``."""
    register()
    return gym.make(ENV_ID, max_episode_steps=cfg.max_episode_steps, grid_size=cfg.grid_size,
                    terminate_on_goal=cfg.terminate_on_goal, random_start=cfg.random_start,
                    reward_mode=cfg.reward_mode, **kwargs)


__all__ = ["DarkRoomEnv", "ENV_ID", "make", "register"]
