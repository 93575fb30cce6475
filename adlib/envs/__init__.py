"""Dark Room: a batched tensor core and a gymnasium wrapper (registered as ``adlib/DarkRoom-v0``)."""

from adlib.envs.darkroom import (
    ACTION_DELTAS,
    N_ACTIONS,
    EnvState,
    StepOut,
    all_goals,
    obs_of,
    optimal_actions,
    reset,
    shortest_path,
    start_pos,
    step,
)

ENV_ID = "adlib/DarkRoom-v0"

__all__ = ["ACTION_DELTAS", "N_ACTIONS", "ENV_ID", "EnvState", "StepOut", "all_goals", "obs_of",
           "optimal_actions", "reset", "shortest_path", "start_pos", "step", "register"]


def register() -> None:
    """Register :data:`ENV_ID` with gymnasium (idempotent). The entry point is a string, so the
    wrapper module (and gymnasium's rendering code) is imported only when the env is made:
    the pipeline stages, which import the core, do not depend on the wrapper."""
    import gymnasium as gym

    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="adlib.envs.gym_env:DarkRoomEnv", max_episode_steps=20)


register()
