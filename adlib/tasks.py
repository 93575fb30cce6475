"""The deterministic train / held-out split of the tasks ("goals") in use (:func:`adlib.envs.darkroom.tasks_in_use`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from adlib.config import EnvConfig, SplitConfig
from adlib.envs import darkroom as dr
from adlib.io import DataError, read_json, write_json


def split_goals(env_cfg: EnvConfig, cfg: SplitConfig) -> dict:
    """A seeded permutation of all goals: the first ``n_train`` train, the rest are held out."""
    goals = dr.tasks_in_use(env_cfg).tolist()
    perm = np.random.default_rng(cfg.seed).permutation(len(goals))
    train = sorted(int(i) for i in perm[: cfg.n_train])
    held_out = sorted(int(i) for i in perm[cfg.n_train:])
    return {
        "kind": env_cfg.kind,
        "grid_size": env_cfg.grid_size,
        "seed": cfg.seed,
        "n_goals": len(goals),
        "train": train,
        "held_out": held_out,
        "cells": {str(i): goals[i] for i in range(len(goals))},  # goal id -> [row, col] (keydoor: key, door)
    }


def write_split(split: dict, path: str | Path) -> None:
    write_json(path, split)


def read_split(path: str | Path, env_cfg: EnvConfig | None = None) -> dict:
    """Read a split file and check it is consistent with itself (and with ``env_cfg``)."""
    split = read_json(path)
    try:
        train, held_out = set(split["train"]), set(split["held_out"])
        n_goals = int(split["n_goals"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{path}: not a goal-split file (needs n_goals, train, held_out)") from None
    if train & held_out:
        raise DataError(f"{path}: goals {sorted(train & held_out)} are both training and held-out")
    if not train or not held_out or train | held_out != set(range(n_goals)):
        raise DataError(f"{path}: train and held-out goals must partition 0..{n_goals - 1}")
    if env_cfg is not None and (split.get("grid_size"), split.get("kind", "darkroom")) != (env_cfg.grid_size,
                                                                                            env_cfg.kind):
        raise DataError(f"{path}: split is for a {split.get('grid_size')}x{split.get('grid_size')} "
                        f"{split.get('kind', 'darkroom')} but env.grid_size = {env_cfg.grid_size}, env.kind = "
                        f"{env_cfg.kind!r}; rerun split_tasks")
    if env_cfg is not None and n_goals != len(dr.tasks_in_use(env_cfg)):
        raise DataError(f"{path}: split has {n_goals} tasks but the env has {len(dr.tasks_in_use(env_cfg))} in use "
                        f"(env.n_tasks = {env_cfg.n_tasks}); rerun split_tasks")
    return split


def spread(goals: list[int], k: int) -> list[int]:
    """``k`` goals evenly spaced through ``goals`` (not the first k: ids are row-major, so the
    first few are all in the top row, far from the start)."""
    if k <= 0:
        return []
    idx = [round(i * (len(goals) - 1) / max(1, k - 1)) for i in range(k)] if k > 1 else [len(goals) // 2]
    return [goals[i] for i in sorted(set(idx))]
