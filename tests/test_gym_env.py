"""The gymnasium wrapper (adlib/DarkRoom-v0): API compliance, TimeLimit, rendering, parity with the core."""

from __future__ import annotations

import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from adlib.config import EnvConfig
from adlib.envs import darkroom as dr
from adlib.envs import gym_env

SIZE = 5


def test_check_env_passes_on_unwrapped_env():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checker warning is a failure here
        check_env(gym_env.DarkRoomEnv(grid_size=SIZE), skip_render_check=True)
        check_env(gym_env.DarkRoomEnv(grid_size=SIZE, terminate_on_goal=False, reward_mode="stand", random_start=True),
                  skip_render_check=True)


def test_registered_id_truncates_at_20_steps_with_step_info():
    gym_env.register()
    env = gym.make(gym_env.ENV_ID, grid_size=SIZE, goal=(0, 0))
    obs, info = env.reset(seed=0)
    assert info["step"] == 0
    for k in range(1, 21):
        obs, reward, terminated, truncated, info = env.step(0)  # no-op at the centre: never reaches (0, 0)
        assert info["step"] == k
        assert not terminated
        assert truncated == (k == 20)
    env.close()


def test_make_uses_cfg_max_episode_steps():
    env = gym_env.make(EnvConfig(grid_size=SIZE, max_episode_steps=3), goal=(0, 0))
    env.reset(seed=0)
    truncs = [env.step(0)[3] for _ in range(3)]
    assert truncs == [False, False, True]


def test_render_rgb_array_is_uint8_frame():
    env = gym_env.DarkRoomEnv(grid_size=SIZE, render_mode="rgb_array", cell_px=8, goal=(0, 0))
    env.reset(seed=0)
    frame = env.render()
    assert isinstance(frame, np.ndarray)
    assert frame.shape == (SIZE * 8, SIZE * 8, 3)
    assert frame.dtype == np.uint8
    env.step(1)
    assert not np.array_equal(env.render(), frame)  # the agent moved


def test_reset_options_goal_and_seeded_goal_draw():
    env = gym_env.DarkRoomEnv(grid_size=SIZE)
    _, info = env.reset(options={"goal": (4, 1)})
    assert info["goal"] == (4, 1)
    goals = {env.reset(seed=s)[1]["goal"] for s in range(30)}
    assert len(goals) > 1 and (2, 2) not in goals
    assert env.reset(seed=7)[1]["goal"] == env.reset(seed=7)[1]["goal"]


def test_step_before_reset_and_invalid_action_raise():
    env = gym_env.DarkRoomEnv(grid_size=SIZE)
    with pytest.raises(RuntimeError):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError):
        env.step(5)


VARIANTS = {
    "original": dict(terminate_on_goal=True, reward_mode="reach"),
    "paper": dict(terminate_on_goal=False, reward_mode="stand"),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_gym_env_matches_batched_core_on_random_actions(variant):
    """Same actions, same goals: identical obs/reward/terminated/truncated trajectories.

    Conventions compared: the core auto-resets (its ``next_state`` is the gym obs at an
    episode end, its ``obs`` the gym obs after the caller's reset); gymnasium's TimeLimit may
    report terminated and truncated together on the last step, the core never does, so the
    core's ``truncated`` equals gym's ``truncated and not terminated``.
    """
    kw = VARIANTS[variant]
    max_steps, n_steps = 8, 400
    cfg = EnvConfig(grid_size=SIZE, max_episode_steps=max_steps, **kw)
    gen = np.random.default_rng(0)
    goal_ids = [0, 4, 7, 11, 12, 19, 23]  # corners, a neighbour of the centre, others
    goals = dr.tasks_in_use(cfg)[goal_ids]
    envs = [gym_env.make(cfg, goal=tuple(g.tolist())) for g in goals]
    actions = gen.integers(0, dr.N_ACTIONS, size=(n_steps, len(goals)))
    state, obs = dr.reset(cfg, goals)
    gym_obs = [env.reset(seed=i)[0] for i, env in enumerate(envs)]
    assert obs.tolist() == gym_obs
    n_term = n_trunc = n_reward = 0
    for k in range(n_steps):
        out = dr.step(cfg, state, torch.as_tensor(actions[k]))
        for i, env in enumerate(envs):
            o, r, te, tr, info = env.step(int(actions[k, i]))
            assert o == int(out.next_state[i]), (k, i)
            assert r == float(out.reward[i]), (k, i)
            assert te == bool(out.terminated[i]), (k, i)
            assert (tr and not te) == bool(out.truncated[i]), (k, i)
            if te or tr:
                o, _ = env.reset()
                assert info["step"] <= max_steps
            assert o == int(out.obs[i]), (k, i)
        n_term += int(out.terminated.sum())
        n_trunc += int(out.truncated.sum())
        n_reward += int(out.reward.sum())
        state = out.state
    assert n_trunc > 0 and n_reward > 0
    if kw["terminate_on_goal"]:
        assert n_term > 0


# ---------------------------------------------------------------- arguments checked like params.yaml

BAD_ENV_ARGS = [
    ({"goal": (2.5, 3)}, "goal"),                 # was stored as (2, 3) and rewarded there
    ({"goal": (2, 2)}, "start cell"),             # the centre of a 5x5 room: won without moving
    ({"goal": (5, 0)}, "outside"),
    ({"goal": (0, 5)}, "outside"),                # one column past the edge (a mutant kept it)
    ({"goal": (-1, 0)}, "outside"),
    ({"goal": (0, -1)}, "outside"),
    ({"goal": (1, 2, 3)}, "goal"),
    ({"goal": "a1"}, "goal"),
    ({"grid_size": 0}, "env.grid_size"),
    ({"grid_size": -3}, "env.grid_size"),
    ({"grid_size": 40}, "env.grid_size"),
    ({"grid_size": 1}, "env.grid_size"),
    ({"grid_size": 6}, "env.grid_size"),          # even: no centre to start from
    ({"grid_size": 5.5}, "env.grid_size"),
    ({"reward_mode": "bogus"}, "env.reward_mode"),
    ({"terminate_on_goal": "no"}, "env.terminate_on_goal"),
    ({"random_start": 1}, "env.random_start"),
    ({"goal_sampling": "episode"}, "goal_sampling"),
    ({"render_mode": "human"}, "render_mode"),
    ({"cell_px": 2}, "cell_px"),
]


@pytest.mark.parametrize("kwargs,named", BAD_ENV_ARGS, ids=[str(k) for k, _ in BAD_ENV_ARGS])
def test_bad_constructor_argument_raises_param_error_naming_it(kwargs, named):
    from adlib.config import ParamError

    with pytest.raises(ParamError, match=re.escape(named)) as e:
        gym_env.DarkRoomEnv(**{"grid_size": SIZE, **kwargs})
    assert "\n" not in str(e.value)


def test_goal_at_a_random_start_cell_is_allowed():
    """With random starts the start never equals the goal, so any cell can be the goal."""
    env = gym_env.DarkRoomEnv(grid_size=SIZE, random_start=True, goal=(2, 2))
    assert env.reset(seed=0)[1]["goal"] == (2, 2)


@pytest.mark.parametrize("goal", [(2.5, 3), (9, 9), (2, 2), None], ids=str)
def test_bad_goal_option_at_reset_raises(goal):
    from adlib.config import ParamError

    env = gym_env.DarkRoomEnv(grid_size=SIZE)
    with pytest.raises(ParamError, match=re.escape('options["goal"]')):
        env.reset(seed=0, options={"goal": goal})


def test_goal_sampling_seed_keeps_one_task_across_episodes():
    env = gym_env.DarkRoomEnv(grid_size=SIZE)                      # goal_sampling="seed", the default
    first = env.reset(seed=3)[1]["goal"]
    assert [env.reset()[1]["goal"] for _ in range(20)] == [first] * 20
    reseeded = {env.reset(seed=s)[1]["goal"] for s in range(20)}
    assert len(reseeded) > 3                                     # a seed draws a new task
    env.reset(options={"goal": (0, 1)})
    assert env.reset()[1]["goal"] == (0, 1)                      # an explicit goal is kept too


def test_goal_sampling_reset_draws_a_new_task_every_episode():
    env = gym_env.DarkRoomEnv(grid_size=SIZE, goal_sampling="reset")
    env.reset(seed=3)
    assert len({env.reset()[1]["goal"] for _ in range(30)}) > 5
