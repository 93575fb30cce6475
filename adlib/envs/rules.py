"""The rules of the Dark Room family that need no tensors: where an episode starts, how many
tasks a room has and uses, the observation space, what return means success, and how far the
hardest task is. Imported by the batched core (:mod:`adlib.envs.darkroom`) and by the params'
validation (:mod:`adlib.config`), which must stay fast: nothing here imports torch or gymnasium.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adlib.config import EnvConfig

# the seed of the fixed task subset that ``env.n_tasks`` keeps (the same for every split)
TASK_POOL_SEED = 0


def start_pos(cfg: EnvConfig) -> tuple[int, int]:
    """The fixed start cell: the centre."""
    return cfg.grid_size // 2, cfg.grid_size // 2


def task_width(cfg: EnvConfig) -> int:
    """Integers per task: 2 (goal cell) or 4 (key cell, door cell)."""
    return 4 if cfg.kind == "keydoor" else 2


def n_states(cfg: EnvConfig) -> int:
    """Size of the observation space: the cells, twice over for keydoor (without / with the key)."""
    return cfg.grid_size ** 2 * (2 if cfg.kind == "keydoor" else 1)


def n_all_tasks(cfg: EnvConfig) -> int:
    """Tasks of the room before ``env.n_tasks`` picks some: goals (every cell but the start)
    or (key, door) pairs with key != door."""
    cells = cfg.grid_size * cfg.grid_size
    return cells * (cells - 1) if cfg.kind == "keydoor" else cells - 1


def n_tasks_in_use(cfg: EnvConfig) -> int:
    """Tasks the pipeline uses (:func:`adlib.envs.darkroom.tasks_in_use`); ``env.n_tasks`` beyond
    the room is refused by the validation."""
    return cfg.n_tasks or n_all_tasks(cfg)


def success_return(cfg: EnvConfig) -> int:
    """The episode return that means the task was completed: the goal reached (1), or for
    keydoor the key and the door (2)."""
    return 2 if cfg.kind == "keydoor" else 1


def farthest_task_steps(cfg: EnvConfig) -> int:
    """The fewest steps the hardest task of the room needs from the worst start: every task
    fits an episode iff this is <= ``max_episode_steps``."""
    span = 2 * (cfg.grid_size - 1)                      # corner to corner
    first = span if cfg.random_start else 2 * (cfg.grid_size // 2)
    return first + (span if cfg.kind == "keydoor" else 0)
