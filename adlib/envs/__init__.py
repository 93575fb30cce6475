"""The Dark Room family: a batched tensor core (:mod:`adlib.envs.darkroom`), its torch-free
rules (:mod:`adlib.envs.rules`) and a gymnasium wrapper, registered as ``adlib/DarkRoom-v0``
(9x9, 20 steps), ``adlib/DarkRoomHard-v0`` (17x17, 20 steps, terminate on goal) and
``adlib/DarkKeyToDoor-v0`` (9x9, 50 steps, key and door) when this package is imported.

The core's names (``adlib.envs.step``, ``adlib.envs.reset``, ...) load torch on first use only:
importing the package, or its rules (as the params' validation does), does not.
"""

import importlib
from typing import Any

ENV_ID = "adlib/DarkRoom-v0"
HARD_ID = "adlib/DarkRoomHard-v0"
KEYDOOR_ID = "adlib/DarkKeyToDoor-v0"
# id -> (step limit, constructor settings)
REGISTERED = {
    ENV_ID: (20, {}),
    HARD_ID: (20, {"grid_size": 17, "terminate_on_goal": True}),
    KEYDOOR_ID: (50, {"kind": "keydoor", "terminate_on_goal": False}),
}
CORE = ("ACTION_DELTAS", "N_ACTIONS", "EnvState", "StepOut", "all_cells", "tasks_in_use", "n_states", "obs_of",
        "optimal_actions", "reset", "shortest_path", "start_pos", "step", "target")

__all__ = ["ENV_ID", "HARD_ID", "KEYDOOR_ID", "REGISTERED", "register", *CORE]


def __getattr__(name: str) -> Any:
    if name in CORE:
        return getattr(importlib.import_module("adlib.envs.darkroom"), name)
    raise AttributeError(f"module 'adlib.envs' has no attribute {name!r}")


def register() -> None:
    """Register the ids of :data:`REGISTERED` with gymnasium (idempotent). The entry point is a
    string, so the wrapper module (and torch) is imported only when an env is made."""
    import gymnasium as gym

    for env_id, (steps, kwargs) in REGISTERED.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="adlib.envs.gym_env:DarkRoomEnv", max_episode_steps=steps,
                         kwargs=kwargs)


register()
