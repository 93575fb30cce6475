"""Dark Room: a batched tensor core and a gymnasium wrapper (registered as ``adlib/DarkRoom-v0``)."""

from adlib.envs.darkroom import (ACTION_DELTAS, N_ACTIONS, EnvState, StepOut, all_goals, goal_to_index,
                                 obs_of, optimal_actions, reset, shortest_path, start_pos, step)

__all__ = ["ACTION_DELTAS", "N_ACTIONS", "EnvState", "StepOut", "all_goals", "goal_to_index", "obs_of",
           "optimal_actions", "reset", "shortest_path", "start_pos", "step", "register"]


def register() -> None:
    """Register ``adlib/DarkRoom-v0`` with gymnasium (idempotent)."""
    from adlib.envs.gym_env import register as _register

    _register()


register()
