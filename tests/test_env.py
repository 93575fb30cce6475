"""The batched Dark Room core (adlib.envs.darkroom): moves, rewards, the done/auto-reset contract."""

from __future__ import annotations

import pytest
import torch

from adlib.config import EnvConfig
from adlib.envs import darkroom as dr

SIZE = 5
CENTRE = (2, 2)


def cfg(**kw) -> EnvConfig:
    return EnvConfig(**{"grid_size": SIZE, "max_episode_steps": 20, **kw})


def state_at(pos: list[tuple[int, int]], goal: list[tuple[int, ...]], t: list[int] | None = None,
             progress: list[int] | None = None) -> dr.EnvState:
    B = len(pos)
    return dr.EnvState(pos=torch.tensor(pos, dtype=torch.long), goal=torch.tensor(goal, dtype=torch.long),
                       t=torch.tensor(t if t is not None else [0] * B, dtype=torch.long),
                       progress=torch.tensor(progress if progress is not None else [0] * B, dtype=torch.long))


def step_one(c: EnvConfig, pos, goal, action: int, t: int = 0, u: float | None = None) -> dr.StepOut:
    uu = None if u is None else torch.tensor([u])
    return dr.step(c, state_at([pos], [goal], [t]), torch.tensor([action]), uu)


FAR_GOAL = (0, 0)


@pytest.mark.parametrize("action,expected", [(0, (2, 2)), (1, (1, 2)), (2, (2, 3)), (3, (3, 2)), (4, (2, 1))],
                         ids=["noop", "up_is_row_minus_1", "right_is_col_plus_1", "down_is_row_plus_1",
                              "left_is_col_minus_1"])
def test_step_moves_by_spec_convention(action, expected):
    out = step_one(cfg(), CENTRE, FAR_GOAL, action)
    assert tuple(out.state.pos[0].tolist()) == expected
    assert int(out.obs[0]) == expected[0] * SIZE + expected[1]  # state = row * size + col
    assert int(out.next_state[0]) == expected[0] * SIZE + expected[1]


@pytest.mark.parametrize("pos,action", [((0, 3), 1), ((1, 4), 2), ((4, 1), 3), ((3, 0), 4), ((0, 0), 1), ((0, 0), 4),
                                        ((4, 4), 2), ((4, 4), 3)])
def test_step_into_wall_stays_in_place(pos, action):
    out = step_one(cfg(), pos, (2, 3), action)
    assert tuple(out.state.pos[0].tolist()) == pos
    assert int(out.obs[0]) == pos[0] * SIZE + pos[1]


def test_obs_of_is_row_major_index():
    pos = torch.tensor([[r, c] for r in range(SIZE) for c in range(SIZE)])
    assert dr.obs_of(cfg(), pos).tolist() == list(range(SIZE * SIZE))


def test_reach_reward_only_on_arrival_without_termination():
    c = cfg(reward_mode="reach", terminate_on_goal=False)
    goal = (2, 3)
    arrive = step_one(c, CENTRE, goal, 2)
    assert arrive.reward.tolist() == [1.0] and not arrive.terminated[0]
    stay = step_one(c, goal, goal, 0, t=1)
    assert stay.reward.tolist() == [0.0]
    bump = step_one(c, (0, 0), (0, 1), 1)  # wall bump next to the goal: not on it
    assert bump.reward.tolist() == [0.0]
    assert step_one(c, (2, 4), (2, 4), 2).reward.tolist() == [0.0]  # on goal, wall keeps it there: no new arrival


def test_stand_reward_on_every_step_on_goal():
    c = cfg(reward_mode="stand", terminate_on_goal=False)
    goal = (2, 3)
    state = state_at([CENTRE], [goal])
    rewards = []
    for a in [2, 0, 0, 1, 3, 0]:  # arrive, stay, stay, leave, return, stay
        out = dr.step(c, state, torch.tensor([a]))
        rewards.append(float(out.reward[0]))
        assert not out.terminated[0]
        state = out.state
    assert rewards == [1.0, 1.0, 1.0, 0.0, 1.0, 1.0]


def test_reach_with_termination_terminates_with_reward():
    out = step_one(cfg(terminate_on_goal=True), CENTRE, (1, 2), 1)
    assert out.reward.tolist() == [1.0]
    assert out.terminated.tolist() == [True] and out.truncated.tolist() == [False]


def test_no_termination_when_terminate_on_goal_false():
    out = step_one(cfg(terminate_on_goal=False), CENTRE, (1, 2), 1)
    assert out.reward.tolist() == [1.0]
    assert out.terminated.tolist() == [False]


def test_truncated_exactly_at_max_episode_steps():
    c = cfg(max_episode_steps=7)
    state, _ = dr.reset(c, torch.tensor([list(FAR_GOAL)]))
    flags = []
    for _ in range(15):
        out = dr.step(c, state, torch.tensor([0]))
        flags.append((bool(out.terminated[0]), bool(out.truncated[0])))
        state = out.state
    truncated_at = [k + 1 for k, (_, tr) in enumerate(flags) if tr]  # 1-based step counts
    assert truncated_at == [7, 14]
    assert not any(te for te, _ in flags)


def test_terminated_on_last_step_is_not_truncated():
    c = cfg(max_episode_steps=3)
    out = step_one(c, CENTRE, (1, 2), 1, t=2)  # third step reaches the goal
    assert out.terminated.tolist() == [True]
    assert out.truncated.tolist() == [False]


def test_terminated_and_truncated_never_together_random_walk():
    c = cfg(max_episode_steps=4, terminate_on_goal=True)
    g = torch.Generator().manual_seed(0)
    goals = dr.tasks_in_use(c)
    B = len(goals)
    state, _ = dr.reset(c, goals)
    seen_term = seen_trunc = 0
    for _ in range(200):
        out = dr.step(c, state, torch.randint(0, dr.N_ACTIONS, (B,), generator=g))
        assert not bool((out.terminated & out.truncated).any())
        seen_term += int(out.terminated.sum())
        seen_trunc += int(out.truncated.sum())
        state = out.state
    assert seen_term > 0 and seen_trunc > 0


def test_auto_reset_obs_is_start_cell_and_t_zero():
    c = cfg(max_episode_steps=20)
    out = step_one(c, CENTRE, (1, 2), 1, t=5)  # terminates
    assert int(out.obs[0]) == CENTRE[0] * SIZE + CENTRE[1]
    assert tuple(out.state.pos[0].tolist()) == CENTRE
    assert out.state.t.tolist() == [0]
    out = step_one(c, (0, 4), FAR_GOAL, 2, t=19)  # truncates
    assert out.truncated.tolist() == [True]
    assert int(out.obs[0]) == CENTRE[0] * SIZE + CENTRE[1]
    assert out.state.t.tolist() == [0]


def test_t_counts_steps_within_episode():
    c = cfg()
    state, _ = dr.reset(c, torch.tensor([list(FAR_GOAL)]))
    for k in range(1, 6):
        state = dr.step(c, state, torch.tensor([0])).state
        assert state.t.tolist() == [k]


def test_next_state_is_pre_reset_cell_with_goal_reward():
    c = cfg(terminate_on_goal=True)
    goal = (3, 2)
    out = step_one(c, CENTRE, goal, 3)
    assert out.terminated.tolist() == [True]
    assert int(out.next_state[0]) == goal[0] * SIZE + goal[1]
    assert int(out.obs[0]) == CENTRE[0] * SIZE + CENTRE[1]
    assert out.reward.tolist() == [1.0]


def test_next_state_on_truncation_is_reached_cell():
    c = cfg(max_episode_steps=1)
    out = step_one(c, CENTRE, FAR_GOAL, 4)
    assert out.truncated.tolist() == [True]
    assert int(out.next_state[0]) == 2 * SIZE + 1
    assert int(out.obs[0]) == 2 * SIZE + 2


def test_random_start_never_on_goal_and_covers_other_cells():
    c = cfg(random_start=True)
    n = SIZE * SIZE
    u = torch.linspace(0, 1 - 1e-7, 4000)
    for goal in [(0, 0), (2, 2), (4, 4), (1, 3)]:
        goals = torch.tensor([goal]).expand(len(u), 2)
        _, obs = dr.reset(c, goals, u)
        g = goal[0] * SIZE + goal[1]
        assert not bool((obs == g).any())
        assert set(obs.tolist()) == set(range(n)) - {g}


def test_random_start_auto_reset_never_on_goal():
    c = cfg(random_start=True, terminate_on_goal=True)
    goal = (1, 2)
    u = torch.linspace(0, 1 - 1e-7, 500)
    B = len(u)
    st = state_at([CENTRE] * B, [goal] * B)
    out = dr.step(c, st, torch.full((B,), 1), u)
    assert bool(out.terminated.all())
    assert not bool((out.obs == goal[0] * SIZE + goal[1]).any())


def test_random_start_requires_uniforms():
    with pytest.raises(ValueError):
        dr.reset(cfg(random_start=True), torch.tensor([[0, 0]]))


def test_all_goals_excludes_centre_and_has_size_squared_minus_one():
    for size in (3, 5, 9):
        c = EnvConfig(grid_size=size)
        goals = dr.tasks_in_use(c)
        assert goals.shape == (size * size - 1, 2)
        cells = {tuple(g) for g in goals.tolist()}
        assert len(cells) == size * size - 1
        assert (size // 2, size // 2) not in cells
        assert dr.obs_of(c, goals).tolist() == sorted(dr.obs_of(c, goals).tolist())  # row-major order


def test_optimal_actions_reduce_distance():
    c = cfg()
    cells = torch.tensor([[r, col] for r in range(SIZE) for col in range(SIZE)])
    for goal in dr.tasks_in_use(c).tolist():
        g = torch.tensor(goal).expand_as(cells)
        mask = dr.optimal_actions(cells, g)                                     # [n, 5]
        d0 = dr.shortest_path(c, cells, g)
        for a in range(dr.N_ACTIONS):
            nxt = (cells + dr.ACTION_DELTAS[a]).clamp(0, SIZE - 1)
            d1 = dr.shortest_path(c, nxt, g)
            off = d0 > 0
            # an action is marked optimal exactly when it brings the agent one step closer
            assert torch.equal(mask[off, a], d1[off] == d0[off] - 1)
        on = d0 == 0
        assert mask[on].tolist() == [[True, False, False, False, False]] * int(on.sum())


def test_mixed_goal_batch_equals_each_env_alone():
    for kw in ({"terminate_on_goal": True, "reward_mode": "reach"},
               {"terminate_on_goal": False, "reward_mode": "stand"},
               {"terminate_on_goal": True, "reward_mode": "reach", "random_start": True}):
        c = cfg(max_episode_steps=6, **kw)
        goals = dr.tasks_in_use(c)
        B = len(goals)
        gen = torch.Generator().manual_seed(1)
        actions = torch.randint(0, dr.N_ACTIONS, (40, B), generator=gen)
        us = torch.rand(41, B, generator=gen)
        rs = c.random_start
        state, obs = dr.reset(c, goals, us[0] if rs else None)
        batch = [obs]
        for k in range(40):
            out = dr.step(c, state, actions[k], us[k + 1] if rs else None)
            batch.append(torch.stack([out.obs, out.reward, out.terminated, out.truncated, out.next_state], 0))
            state = out.state
        for i in range(B):
            s1, o1 = dr.reset(c, goals[i:i + 1], us[0, i:i + 1] if rs else None)
            assert torch.equal(o1, batch[0][i:i + 1])
            for k in range(40):
                out = dr.step(c, s1, actions[k, i:i + 1], us[k + 1, i:i + 1] if rs else None)
                alone = torch.stack([out.obs, out.reward, out.terminated, out.truncated, out.next_state], 0)
                assert torch.equal(alone[:, 0], batch[k + 1][:, i].to(alone.dtype)), (i, k)
                s1 = out.state


def test_move_table_by_hand_on_a_3x3_room():
    # cells 0 1 2 / 3 4 5 / 6 7 8; actions: no-op, up, right, down, left
    moves = dr.move_table(EnvConfig(grid_size=3, max_episode_steps=4))
    assert moves[0].tolist() == [0, 0, 1, 3, 0]      # top-left corner: up and left hit walls
    assert moves[4].tolist() == [4, 1, 5, 7, 3]      # the centre moves everywhere
    assert moves[8].tolist() == [8, 5, 8, 8, 7]      # bottom-right corner


@pytest.mark.parametrize("kw", [{}, {"reward_mode": "stand"}, {"terminate_on_goal": False},
                                {"reward_mode": "stand", "terminate_on_goal": False},
                                {"random_start": True}, {"grid_size": 9, "max_episode_steps": 7}],
                         ids=["reach", "stand", "no_termination", "stand_no_termination", "random_start", "9x9"])
def test_step_cells_equals_step_along_random_walks(kw):
    """The cell-index fast path against the reference step, in lockstep over random walks of a
    mixed-goal batch (every goal, 3 envs each) long enough for many resets of every kind."""
    c = cfg(**{"max_episode_steps": 6, **kw})
    goals = dr.all_tasks(c).repeat_interleave(3, 0)                                   # [B, 2]
    B = len(goals)
    g = torch.Generator().manual_seed(0)
    u0 = torch.rand(B, generator=g) if c.random_start else None
    state, obs = dr.reset(c, goals, u0)
    moves, goal_cell = dr.move_table(c), dr.obs_of(c, goals)
    cell, t = obs.clone(), state.t.clone()
    seen = torch.zeros(3, dtype=torch.long)
    for _ in range(80):
        action = torch.randint(0, dr.N_ACTIONS, (B,), generator=g)
        u = torch.rand(B, generator=g) if c.random_start else None
        ref = dr.step(c, state, action, u)
        fast = dr.step_cells(c, moves, cell, t, goal_cell, action, u)
        assert torch.equal(fast.cell, ref.obs) and torch.equal(fast.t, ref.state.t)
        assert torch.equal(fast.next_cell, ref.next_state)
        assert torch.equal(fast.reward, ref.reward) and fast.reward.dtype == ref.reward.dtype
        assert torch.equal(fast.terminated, ref.terminated) and torch.equal(fast.truncated, ref.truncated)
        seen += torch.stack([ref.reward.bool().sum(), ref.terminated.sum(), ref.truncated.sum()])
        state, cell, t = ref.state, fast.cell, fast.t
    assert (seen[0] > 0) and (seen[2] > 0) and ((seen[1] > 0) == c.terminate_on_goal)   # the walks hit every case


def test_step_cells_refuses_key_to_door():
    c = cfg(kind="keydoor")
    with pytest.raises(ValueError, match="Dark Room"):
        dr.step_cells(c, dr.move_table(c), torch.tensor([0]), torch.tensor([0]), torch.tensor([1]), torch.tensor([0]))
