"""Dark Key-to-Door and the larger rooms: rules of the batched core, the task set, the
gymnasium envs, parity between them, bad settings, and a tiny run of every stage."""

from __future__ import annotations

import dataclasses
import json
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from adlib.config import DTConfig, EnvConfig, ParamError, env_config, parse_params, read_yaml
from adlib.envs import HARD_ID, KEYDOOR_ID
from adlib.envs import darkroom as dr
from adlib.envs import gym_env
from adlib.model import ADTransformer, ModelConfig
from adlib.rollout import oracle_policy, random_policy, rollout

ROOT = Path(__file__).resolve().parents[1]
KD = EnvConfig(kind="keydoor", grid_size=5, max_episode_steps=30, terminate_on_goal=False)
KEY, DOOR = (0, 0), (4, 4)


def kd_state(pos, progress=0, t=0, key=KEY, door=DOOR) -> dr.EnvState:
    return dr.EnvState(pos=torch.tensor([pos]), goal=torch.tensor([[*key, *door]]), t=torch.tensor([t]),
                       progress=torch.tensor([progress]))


def walk(cfg: EnvConfig, state: dr.EnvState, actions: list[int]) -> list[dr.StepOut]:
    outs = []
    for a in actions:
        out = dr.step(cfg, state, torch.tensor([a]))
        outs.append(out)
        state = out.state
    return outs


# ---------------------------------------------------------------- rules

def test_key_pays_once_and_sets_the_observed_flag():
    outs = walk(KD, kd_state((1, 0)), [1, 0, 3, 1])        # up onto the key, stay, leave, come back
    assert [float(o.reward) for o in outs] == [1.0, 0.0, 0.0, 0.0]
    n2 = KD.grid_size ** 2
    assert int(outs[0].next_state) == 0 + n2                  # cell 0, holding the key
    assert int(outs[2].next_state) == 5 + n2                  # cell (1, 0), still holding it
    assert [int(o.state.progress) for o in outs] == [1, 1, 1, 1]


def test_door_pays_only_with_the_key_and_only_once():
    no_key = walk(KD, kd_state((4, 3)), [2, 0])                # onto the door without the key
    assert [float(o.reward) for o in no_key] == [0.0, 0.0] and int(no_key[-1].state.progress) == 0
    with_key = walk(KD, kd_state((4, 3), progress=1), [2, 0, 4, 2])
    assert [float(o.reward) for o in with_key] == [1.0, 0.0, 0.0, 0.0]
    assert int(with_key[0].state.progress) == 2
    assert not any(bool(o.terminated) for o in with_key)      # the paper's variant runs to the step limit


def test_terminate_on_goal_ends_the_episode_at_the_open_door_and_resets_the_key():
    cfg = EnvConfig(kind="keydoor", grid_size=5, max_episode_steps=30, terminate_on_goal=True)
    out = dr.step(cfg, kd_state((4, 3), progress=1, t=7), torch.tensor([2]))
    assert bool(out.terminated) and not bool(out.truncated) and float(out.reward) == 1.0
    assert int(out.state.t) == 0 and int(out.state.progress) == 0          # auto-reset: no key any more
    assert tuple(out.state.pos[0].tolist()) == dr.start_pos(cfg)
    assert int(out.obs) == 12                                           # the centre, no key flag


def test_truncation_resets_the_key():
    out = dr.step(KD, kd_state((2, 2), progress=1, t=29), torch.tensor([0]))
    assert bool(out.truncated) and int(out.state.progress) == 0
    assert int(out.next_state) == 12 + 25 and int(out.obs) == 12        # pre-reset flag kept in next_state


def test_random_start_never_starts_on_the_key():
    cfg = EnvConfig(kind="keydoor", grid_size=3, max_episode_steps=20, random_start=True)
    goal = torch.tensor([[1, 1, 0, 0]]).expand(2000, 4)
    state, obs = dr.reset(cfg, goal, torch.rand(2000))
    assert not (state.pos == goal[:, :2]).all(-1).any()
    assert len(set(obs.tolist())) == 8                                  # every other cell


def test_oracle_completes_every_task_in_the_fewest_steps():
    cfg = EnvConfig(kind="keydoor", grid_size=5, max_episode_steps=30, terminate_on_goal=True, n_tasks=60)
    res = rollout(oracle_policy, cfg, list(range(60)), seeds=1, episodes=2, greedy=True)
    assert (res.returns == 2).all() and res.success.all()
    assert (res.lengths == res.shortest[:, None]).all()
    tasks = dr.tasks_in_use(cfg)
    start = torch.tensor(dr.start_pos(cfg))
    expect = (tasks[:, :2] - start).abs().sum(-1).clamp(min=1) + (tasks[:, :2] - tasks[:, 2:]).abs().sum(-1)
    assert (tasks[:, :2] == start).all(-1).any()                        # a key on the start cell: a no-op picks it up
    assert res.shortest.tolist() == expect.tolist()


def test_random_policy_rarely_opens_the_door():
    cfg = env_config(kind="keydoor", grid_size=9, max_episode_steps=50, terminate_on_goal=False)
    res = rollout(random_policy, cfg, list(range(0, 6480, 97)), seeds=8, episodes=4, greedy=False)
    assert 0 < res.success.mean() < res.returns.mean() < 0.5


# ---------------------------------------------------------------- the task set

def test_task_set_counts_and_key_never_equals_door():
    tasks = dr.tasks_in_use(env_config(kind="keydoor", grid_size=9, max_episode_steps=50))
    assert tasks.shape == (6480, 4)
    assert not (tasks[:, :2] == tasks[:, 2:]).all(-1).any()
    assert len({tuple(t) for t in tasks.tolist()}) == 6480
    assert dr.tasks_in_use(env_config(grid_size=17)).shape == (288, 2)
    assert dr.tasks_in_use(env_config(grid_size=13)).shape == (168, 2)


def test_n_tasks_keeps_a_fixed_subset_in_order():
    full = dr.tasks_in_use(env_config(kind="keydoor", grid_size=9, max_episode_steps=50))
    sub = dr.tasks_in_use(env_config(kind="keydoor", grid_size=9, max_episode_steps=50, n_tasks=300))
    again = dr.tasks_in_use(env_config(kind="keydoor", grid_size=9, max_episode_steps=50, n_tasks=300,
                                    terminate_on_goal=True))
    assert sub.shape == (300, 4) and torch.equal(sub, again)
    rows = [full.tolist().index(t) for t in sub.tolist()]
    assert rows == sorted(rows)                                         # a subset, in the full order
    assert torch.equal(dr.tasks_in_use(env_config(n_tasks=0)), dr.tasks_in_use(env_config()))


# ---------------------------------------------------------------- gymnasium

def test_registered_envs_pass_check_env_and_keep_their_settings():
    gym_env.register()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(gym_env.DarkRoomEnv(kind="keydoor", grid_size=5, terminate_on_goal=False), skip_render_check=True)
        check_env(gym_env.DarkRoomEnv(kind="keydoor", grid_size=5, random_start=True), skip_render_check=True)
    hard = gym.make(HARD_ID)
    assert hard.observation_space.n == 17 * 17 and hard.spec.max_episode_steps == 20
    assert hard.unwrapped.cfg.terminate_on_goal
    kd = gym.make(KEYDOOR_ID)
    assert kd.observation_space.n == 2 * 81 and kd.spec.max_episode_steps == 50
    obs, info = kd.reset(seed=3)
    assert info["has_key"] is False and len(info["goal"]) == 4
    truncs = [kd.step(0)[3] for _ in range(50)]
    assert truncs == [False] * 49 + [True]


def test_gym_keydoor_matches_the_core_step_for_step():
    rng = np.random.default_rng(0)
    cfg = EnvConfig(kind="keydoor", grid_size=5, max_episode_steps=10_000, terminate_on_goal=True)
    for task in ((KEY, DOOR), ((2, 3), (2, 1)), ((1, 1), (0, 4))):
        env = gym_env.DarkRoomEnv(kind="keydoor", grid_size=5, goal=task)
        obs, info = env.reset(seed=1)
        state, core_obs = dr.reset(cfg, torch.tensor([[*task[0], *task[1]]]))
        assert obs == int(core_obs)
        for _ in range(300):
            a = int(rng.integers(5))
            obs, r, term, trunc, info = env.step(a)
            out = dr.step(cfg, state, torch.tensor([a]))
            assert (obs, r, term) == (int(out.next_state), float(out.reward), bool(out.terminated))
            assert info["has_key"] == (obs >= 25)
            state = out.state
            if term:
                obs, info = env.reset()
                assert obs == int(out.obs) and not info["has_key"]


def test_dark_room_hard_matches_the_core_and_ends_on_the_goal():
    rng = np.random.default_rng(1)
    env = gym.make(HARD_ID, goal=(8, 13))
    cfg = dataclasses.replace(env.unwrapped.cfg, max_episode_steps=env.spec.max_episode_steps)   # TimeLimit's
    assert (cfg.grid_size, cfg.max_episode_steps, cfg.terminate_on_goal) == (17, 20, True)
    obs, _ = env.reset(seed=0)
    state, core_obs = dr.reset(cfg, torch.tensor([[8, 13]]))
    assert obs == int(core_obs) == 8 * 17 + 8
    ends = 0
    for _ in range(400):
        a = int(rng.choice(5, p=[0.05, 0.05, 0.8, 0.05, 0.05]))        # mostly right: reaches (8, 13) often
        obs, r, term, trunc, _ = env.step(a)
        out = dr.step(cfg, state, torch.tensor([a]))
        assert (obs, r, term) == (int(out.next_state), float(out.reward), bool(out.terminated))
        state = out.state
        if term or trunc:
            assert trunc == bool(out.truncated)                         # TimeLimit at 20 = the core's limit
            ends += term
            env.reset()
    assert ends > 0


def test_gym_keydoor_refuses_bad_tasks_by_name():
    with pytest.raises(ParamError, match=r"goal = .*key and the door are the same cell"):
        gym_env.DarkRoomEnv(kind="keydoor", grid_size=5, goal=((1, 1), (1, 1)))
    with pytest.raises(ParamError, match=r"goal = .*the door cell \(5, 0\) is outside the 5x5 grid"):
        gym_env.DarkRoomEnv(kind="keydoor", grid_size=5, goal=((1, 1), (5, 0)))
    env = gym_env.DarkRoomEnv(kind="keydoor", grid_size=5)
    with pytest.raises(ParamError, match=r'options\["goal"\] = .*pair of integers'):
        env.reset(options={"goal": (1, 1)})


def test_keydoor_frames_show_key_door_and_the_held_key():
    env = gym_env.DarkRoomEnv(kind="keydoor", grid_size=5, goal=((1, 2), (4, 4)), render_mode="rgb_array", cell_px=12)
    env.reset(seed=0)
    before = env.render()
    env.step(1)                                       # centre (2, 2) -> (1, 2): the key
    held = env.render()
    assert not np.array_equal(before, held)
    key_cell = held[12:24, 24:36]
    assert (key_cell == (52, 152, 219)).all(-1).any()                # the key dot on the agent
    assert (before[48:60, 48:60] == (211, 84, 0)).all(-1).any()      # the closed door


# ---------------------------------------------------------------- params

def _params(**env) -> dict:
    raw = read_yaml(ROOT / "params.yaml")
    raw["env"].update(env)
    return raw


@pytest.mark.parametrize("env,message", [
    ({"kind": "keydoor", "max_episode_steps": 50, "reward_mode": "stand"}, r"env.reward_mode = 'stand': must be 'reach'"),
    ({"grid_size": 13, "max_episode_steps": 10}, r"env.max_episode_steps = 10: too short, must be >= 12"),
    ({"kind": "keydoor", "max_episode_steps": 20}, r"env.max_episode_steps = 20: too short, must be >= 24"),
    ({"grid_size": 9, "n_tasks": 81}, r"env.n_tasks = 81: out of range, must be <= 80"),
    ({"kind": "keydoor", "max_episode_steps": 50, "n_tasks": 40}, r"split.n_train = 57: out of range, must be <= 39"),
    ({"kind": "tworooms"}, r"env.kind = 'tworooms': must be one of 'darkroom', 'keydoor'"),
])
def test_bad_env_settings_fail_naming_the_key(env, message):
    with pytest.raises(ParamError, match=message):
        parse_params(_params(**env))


def test_first_reward_noise_schedule_is_refused_for_keydoor():
    raw = _params(kind="keydoor", max_episode_steps=50)
    raw["dataset"]["noise"]["schedule"] = "first_reward"
    with pytest.raises(ParamError, match="dataset.noise.schedule = 'first_reward': must be 'episodes' when env.kind"):
        parse_params(raw)
    raw["dataset"]["noise"]["schedule"] = "episodes"
    parse_params(raw)


def test_synthetic_sources_open_the_door():
    """AD^eps at eps 0 walks to the key, then to the door: every episode pays 2 (it heads for the
    current target, not the task's first cell). The systematic explorer finds key and door by
    searching, then opens the door in every later episode."""
    from adlib.config import ExplorerConfig, NoiseConfig
    from adlib.histories import episode_table
    from adlib.noise import explorer_histories, noise_histories

    env = EnvConfig(kind="keydoor", grid_size=5, max_episode_steps=30, terminate_on_goal=False)
    goals = list(range(0, len(dr.tasks_in_use(env)), 37))
    noise = noise_histories(env, NoiseConfig(streams_per_goal=2, transitions=150, eps_start=0.0, eps_end=0.0,
                                             decay_episodes=0), goals)
    ep = episode_table(noise, success_return=2)
    assert len(ep["return"]) == len(goals) * 2 * 5 and (ep["return"] == 2).all()
    explorer = explorer_histories(env, ExplorerConfig(streams_per_goal=2, transitions=300), goals)
    ep = episode_table(explorer, success_return=2)
    late = ep["episode"] >= 4          # 25 cells with and 25 without the key: found within 4 episodes of 30 steps
    assert late.any() and (ep["return"][late] == 2).all()


def test_readme_ready_made_configurations_are_valid_params():
    """Every `dvc exp run -S ...` command of the README's environment table passes validation."""
    import re
    import shlex

    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- envs:start -->", 1)[1].split("<!-- envs:end -->", 1)[0]
    commands = [c for c in re.findall(r"`(dvc exp run[^`]*)`", block)]
    assert len(commands) >= 4
    for cmd in commands:
        raw = read_yaml(ROOT / "params.yaml")
        words = shlex.split(cmd)
        for w, v in zip(words, words[1:]):
            if w == "-S":
                key, value = v.split("=", 1)
                *path, last = key.split(".")
                d = raw
                for k in path:
                    d = d[k]
                import yaml
                d[last] = yaml.safe_load(value)
        parse_params(raw)


# ---------------------------------------------------------------- the model

def test_coords_embedding_tells_the_key_flag_apart():
    small = dict(embedding_dim=16, num_layers=1, num_heads=2, feed_forward_dim=32, seq_len=8)
    cfg = ModelConfig.from_dt(DTConfig(**small), grid_size=5, n_actions=5, max_timestep=30, key_flag=True)
    model = ADTransformer(cfg)
    emb = model.state_emb
    s = torch.tensor([7, 7 + 25, 50])                                  # a cell without / with the key, none
    out = emb(s)
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[1], out[2])
    assert torch.allclose(out[1] - out[0], emb.flag.weight[1] - emb.flag.weight[0])
    table = ADTransformer(ModelConfig.from_dt(DTConfig(**small, state_embedding="table"), grid_size=5, n_actions=5,
                                              max_timestep=30, key_flag=True))
    assert table.state_emb.table.num_embeddings == 2 * 25 + 1


# ---------------------------------------------------------------- every stage, tiny

@pytest.mark.slow
def test_tiny_keydoor_pipeline_runs_every_stage(tmp_path):
    sys.path.insert(0, str(ROOT / "tests"))
    from dvc_helpers import TINY_DOWNSTREAM, make_repo, tiny_params

    over = {"env": {"kind": "keydoor", "grid_size": 3, "max_episode_steps": 12, "n_tasks": 12,
                    "terminate_on_goal": False},
            "split": {"seed": 0, "n_train": 8},
            "dataset": {"noise": {"streams_per_goal": 2, "transitions": 64}}}
    r = make_repo(tmp_path / "kd", tiny_params(TINY_DOWNSTREAM, over))
    r.repro()
    root = tmp_path / "kd"
    split = json.loads((root / "data/split.json").read_text())
    assert split["kind"] == "keydoor" and split["n_goals"] == 12 and len(split["held_out"]) == 4
    meta = json.loads((root / "data/dataset/meta.json").read_text())
    assert meta["n_states"] == 18 and not set(meta["train_goals"]) & set(split["held_out"])
    metrics = json.loads((root / "metrics/eval.json").read_text())
    assert metrics["held_out"]["baselines"]["optimum"] == 2.0
    detail = json.loads((root / "metrics/eval_detail.json").read_text())
    assert "success_last10" in detail["held_out"]["sampled"]                 # door opened
    assert (root / "videos/ad_contact_sheet.png").stat().st_size > 0
