"""The Dark Room family: a batched tensor core and a gymnasium wrapper, registered as
``adlib/DarkRoom-v0`` (9x9, 20 steps), ``adlib/DarkRoomHard-v0`` (17x17, 20 steps, terminate on
goal) and ``adlib/DarkKeyToDoor-v0`` (9x9, 50 steps, key and door)."""

from adlib.envs.darkroom import (
    ACTION_DELTAS,
    N_ACTIONS,
    EnvState,
    StepOut,
    all_cells,
    all_goals,
    n_states,
    obs_of,
    optimal_actions,
    reset,
    shortest_path,
    start_pos,
    step,
    target,
)

ENV_ID = "adlib/DarkRoom-v0"
HARD_ID = "adlib/DarkRoomHard-v0"
KEYDOOR_ID = "adlib/DarkKeyToDoor-v0"
# id -> (step limit, constructor settings)
REGISTERED = {
    ENV_ID: (20, {}),
    HARD_ID: (20, {"grid_size": 17, "terminate_on_goal": True}),
    KEYDOOR_ID: (50, {"kind": "keydoor", "terminate_on_goal": False}),
}

__all__ = ["ACTION_DELTAS", "N_ACTIONS", "ENV_ID", "HARD_ID", "KEYDOOR_ID", "REGISTERED", "EnvState", "StepOut",
           "all_cells", "all_goals", "n_states", "obs_of", "optimal_actions", "reset", "shortest_path", "start_pos",
           "step", "target", "register"]


def register() -> None:
    """Register the ids of :data:`REGISTERED` with gymnasium (idempotent). The entry point is a string, so the
    wrapper module (and gymnasium's rendering code) is imported only when the env is made:
    the pipeline stages, which import the core, do not depend on the wrapper."""
    import gymnasium as gym

    for env_id, (steps, kwargs) in REGISTERED.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="adlib.envs.gym_env:DarkRoomEnv", max_episode_steps=steps,
                         kwargs=kwargs)


register()
