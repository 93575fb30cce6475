"""dt.target's labels (adlib.targets): hand-computed windows on a 3x3 room, and parity with the
step-by-step explorers (the slow reference) on whole streams of every room kind."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from adlib import tokens
from adlib.config import EnvConfig
from adlib.envs import darkroom as dr
from adlib.noise import SYMMETRIC_ORDERS, TIE_ORDERS, EpsMix, OrderedTies, explorer_of, stream_variants
from adlib.rollout import rollout
from adlib.targets import action_mask, midstream_search_mask, target_probs

NOOP, UP, RIGHT, DOWN, LEFT = range(5)
ROOM3 = EnvConfig(grid_size=3, max_episode_steps=4)          # start (1, 1) = cell 4
NONE_A, NONE_R = tokens.none_action(5), tokens.none_reward()


def window(env: EnvConfig, steps: list[tuple[int, int, int, int, int]], goal: int = 0,
           first_prev: tuple[int, int, int] | None = None) -> dict[str, torch.Tensor]:
    """One window ``[1, L]`` from (t, state, action, reward, next_state) rows, as the dataset
    builds it: prev_* from the row before (``first_prev`` or 'none' at the first row)."""
    none_s = tokens.none_state(dr.n_states(env))
    t, s, a, r, ns = (torch.tensor([[row[i] for row in steps]]) for i in range(5))
    pa, pr, pn = first_prev if first_prev is not None else (NONE_A, NONE_R, none_s)
    shift = lambda x, v: torch.cat([torch.tensor([[v]]), x[:, :-1]], 1)
    return {"t": t, "state": s, "action": a, "reward": r, "next_state": ns, "prev_action": shift(a, pa),
            "prev_reward": shift(r, pr), "prev_next_state": shift(ns, pn), "goal": torch.tensor([goal])}


def actions(mask: torch.Tensor) -> list[set[int]]:
    return [set(torch.nonzero(m).flatten().tolist()) for m in mask[0]]


def goal_id(env: EnvConfig, *task: int) -> int:
    return [tuple(g) for g in dr.tasks_in_use(env).tolist()].index(task)


def test_explorer_labels_by_hand_on_a_3x3_room():
    # centre (4) -> up to 1 -> left to 0 -> down to 3: nothing paid; the goal is cell 8 (2, 2)
    w = window(ROOM3, [(0, 4, UP, 0, 1), (1, 1, LEFT, 0, 0), (2, 0, DOWN, 0, 3), (3, 3, RIGHT, 0, 4)],
               goal=goal_id(ROOM3, 2, 2))
    assert actions(action_mask("explorer", w, ROOM3)) == [
        {UP, RIGHT, DOWN, LEFT},   # empty context at the centre: the four neighbours are the nearest unseen
        {LEFT, RIGHT},             # at (0, 1): (0, 0) and (0, 2) are one step away (a tie)
        {DOWN},                    # at (0, 0): (1, 0) is the only unseen cell one step away
        {DOWN},                    # at (1, 0): (2, 0) one step (the centre, (0, *) seen)
    ]


def test_explorer_and_exploit_go_to_the_rewarded_cell_after_a_terminal_reward():
    # episode 1 reaches the goal (0, 2) = cell 2 from the centre: right, up (reward, terminates);
    # episode 2 starts at the centre with that reward and cell in its first token
    w = window(ROOM3, [(0, 4, RIGHT, 0, 5), (1, 5, UP, 1, 2), (0, 4, DOWN, 0, 7), (1, 7, NOOP, 0, 7)])
    assert actions(action_mask("explorer", w, ROOM3))[2:] == [{UP, RIGHT}, {UP, RIGHT}]
    # exploit: the source's own action until the reward shows the goal, then the shortest path
    assert actions(action_mask("exploit", w, ROOM3)) == [{RIGHT}, {UP}, {UP, RIGHT}, {UP, RIGHT}]
    assert actions(action_mask("source", w, ROOM3)) == [{RIGHT}, {UP}, {DOWN}, {NOOP}]


def test_a_window_that_starts_after_the_reward_uses_only_what_it_shows():
    # the same stream from its third transition, the reward carried in the first token's prev_*
    w = window(ROOM3, [(0, 4, DOWN, 0, 7), (1, 7, NOOP, 0, 7)], first_prev=(UP, 1, 2))
    assert actions(action_mask("explorer", w, ROOM3)) == [{UP, RIGHT}, {UP, RIGHT}]
    # ... and from its fourth: no reward in view, so the explorer searches; the window shows
    # only cell 7 (arrived on and acted on), not the centre it came from
    w = window(ROOM3, [(1, 7, NOOP, 0, 7)], first_prev=(DOWN, 0, 7))
    assert actions(action_mask("explorer", w, ROOM3)) == [{UP, RIGHT, LEFT}]


def test_midstream_search_marks_mid_stream_positions_before_the_window_shows_the_goal():
    # a stream's first window: never marked, reward or not
    w = window(ROOM3, [(0, 4, RIGHT, 0, 5), (1, 5, UP, 1, 2), (0, 4, DOWN, 0, 7)])
    assert midstream_search_mask(w, ROOM3).tolist() == [[False, False, False]]
    # the same stream from its second transition: marked until the token after the reward
    w = window(ROOM3, [(1, 5, UP, 1, 2), (0, 4, DOWN, 0, 7), (1, 7, NOOP, 0, 7)], first_prev=(RIGHT, 0, 5))
    assert midstream_search_mask(w, ROOM3).tolist() == [[True, False, False]]
    # from its third: the reward is in the first token's prev_*, nothing marked
    w = window(ROOM3, [(0, 4, DOWN, 0, 7), (1, 7, NOOP, 0, 7)], first_prev=(UP, 1, 2))
    assert midstream_search_mask(w, ROOM3).tolist() == [[False, False]]
    # from its fourth: no reward in view, the window searches from its own memory: marked
    w = window(ROOM3, [(1, 7, NOOP, 0, 7)], first_prev=(DOWN, 0, 7))
    assert midstream_search_mask(w, ROOM3).tolist() == [[True]]


def test_midstream_search_marks_keydoor_positions_until_the_flag_s_task_is_shown():
    kd = EnvConfig(kind="keydoor", grid_size=3, max_episode_steps=8, terminate_on_goal=False)
    C = 9   # key at (0, 1) = cell 1, door at (2, 1) = cell 7
    # mid-stream, holding the key (picked up in the first token's prev_*, ambiguous there: key or door?);
    # the door is unknown until the step onto it pays
    w = window(kd, [(1, 1 + C, DOWN, 0, 4 + C), (2, 4 + C, DOWN, 1, 7 + C), (3, 7 + C, NOOP, 0, 7 + C)],
               first_prev=(UP, 1, 1 + C))
    assert midstream_search_mask(w, kd).tolist() == [[True, True, False]]
    # mid-stream without the key: marked until the key pays, then the door search is marked; back
    # without the key in the next episode, the key is known: not marked
    w = window(kd, [(0, 4, UP, 1, 1 + C), (1, 1 + C, DOWN, 0, 4 + C), (0, 4, NOOP, 0, 4)], first_prev=(NOOP, 0, 5))
    assert midstream_search_mask(w, kd).tolist() == [[True, True, False]]


def test_optimal_labels_know_the_true_goal_and_stay_on_it():
    env = replace(ROOM3, terminate_on_goal=False, reward_mode="stand")
    w = window(env, [(0, 4, DOWN, 0, 7), (1, 7, RIGHT, 1, 8), (2, 8, NOOP, 1, 8)], goal=goal_id(env, 2, 2))
    assert actions(action_mask("optimal", w, env)) == [{RIGHT, DOWN}, {RIGHT}, {NOOP}]
    # the explorer stays too once standing on the goal paid; before the reward it searches
    assert actions(action_mask("explorer", w, env)) == [{UP, RIGHT, DOWN, LEFT}, {RIGHT, LEFT}, {NOOP}]


def test_keydoor_labels_key_then_door():
    kd = EnvConfig(kind="keydoor", grid_size=3, max_episode_steps=8, terminate_on_goal=False)
    C = 9
    # key at (0, 1) = cell 1, door at (2, 1) = cell 7; up picks the key (reward, flag on), then down, down
    w = window(kd, [(0, 4, UP, 1, 1 + C), (1, 1 + C, DOWN, 0, 4 + C), (2, 4 + C, DOWN, 1, 7 + C),
                    (3, 7 + C, NOOP, 0, 7 + C)], goal=goal_id(kd, 0, 1, 2, 1))
    ex = actions(action_mask("explorer", w, kd))
    # no-key search from the centre: the start itself is unseen until arrived on (a no-op reaches it)
    assert ex[0] == {NOOP}
    # with the key, the door search: (0, 1) was arrived on *without* the key, but it is the key's cell,
    # never the door; nearest unseen with the key: (0, 0), (0, 2) and the centre (1, 1)
    assert ex[1] == {DOWN, LEFT, RIGHT}
    assert ex[3] == {NOOP}                           # the door opened this episode: stay put
    opt = actions(action_mask("optimal", w, kd))
    assert opt[:3] == [{UP}, {DOWN}, {DOWN}]         # to the key without it, to the door with it


def test_target_probabilities_are_uniform_over_the_set():
    mask = torch.tensor([[[False, True, True, False, False], [True, False, False, False, False]]])
    assert torch.equal(target_probs(mask), torch.tensor([[[0, 0.5, 0.5, 0, 0], [1.0, 0, 0, 0, 0]]]))


def _stream_windows(env: EnvConfig, res) -> dict[str, torch.Tensor]:
    tr = {k: torch.from_numpy(v).long() for k, v in res.trace.items()}
    N = tr["state"].shape[0]
    shift = lambda x, v: torch.cat([torch.full((N, 1), v), x[:, :-1]], 1)
    return {"t": tr["t"], "state": tr["state"], "action": tr["action"], "reward": tr["reward"],
            "next_state": tr["next_state"], "prev_action": shift(tr["action"], NONE_A),
            "prev_reward": shift(tr["reward"], NONE_R),
            "prev_next_state": shift(tr["next_state"], tokens.none_state(dr.n_states(env))),
            "goal": torch.from_numpy(res.goal_ids).long()}


@pytest.mark.parametrize("env", [
    EnvConfig(grid_size=5, max_episode_steps=10),
    EnvConfig(grid_size=7, max_episode_steps=12, terminate_on_goal=False, reward_mode="stand"),
    EnvConfig(kind="keydoor", grid_size=5, max_episode_steps=20, terminate_on_goal=False),
    EnvConfig(kind="keydoor", grid_size=5, max_episode_steps=20, terminate_on_goal=True),
], ids=["darkroom", "paper", "keydoor", "keydoor-terminate"])
def test_explorer_labels_equal_the_explorer_step_by_step(env):
    """On whole streams (noisy ones too: the explorer must recover from random actions) the
    window labels equal the action set the step-by-step explorer chose from at every step."""
    chosen = []
    explorer = explorer_of(env)

    def record(obs, t, prev, state):
        logits = explorer(obs, t, prev, state)
        chosen.append(torch.isfinite(logits))
        return logits

    n_tasks = len(dr.tasks_in_use(env))
    goals = list(range(0, n_tasks, max(1, n_tasks // 40)))
    res = rollout(EpsMix(record, 0.2), env, goals, 2, 6, greedy=False, seed=3, record=True)
    live = torch.from_numpy(res.trace["episode"] < 6)
    labels = action_mask("explorer", _stream_windows(env, res), env)
    ref = torch.stack(chosen, 1)
    assert live.sum() > 500
    assert torch.equal(labels[live], ref[live])


@pytest.mark.parametrize("ties, n_orders", [("symmetric", 8), ("permutations", 24)])
def test_teacher_ties_follow_each_streams_tie_order(ties, n_orders):
    """Streams of the explorer with the 8 symmetric tie orders, or all 24 orders: the labels with
    ties 'teacher' are the one action each stream's (noise-free) explorer chose, at every step."""
    env = EnvConfig(grid_size=7, max_episode_steps=12)
    n_goals = len(dr.tasks_in_use(env))
    variants = stream_variants(ties, n_goals, n_orders)
    chosen = []
    teacher = OrderedTies(explorer_of(env), torch.from_numpy(variants).long())

    def record(obs, t, prev, state):
        logits = teacher(obs, t, prev, state)
        chosen.append(torch.isfinite(logits))
        return logits

    res = rollout(EpsMix(record, 0.1), env, list(range(n_goals)), n_orders, 5, greedy=False, seed=0, record=True)
    f = _stream_windows(env, res)
    f["variant"] = torch.from_numpy(variants).long()
    labels = action_mask("explorer", f, env, ties="teacher")
    live = torch.from_numpy(res.trace["episode"] < 5)
    ref = torch.stack(chosen, 1)
    assert torch.equal(labels[live], ref[live]) and bool((ref.sum(-1) == 1).all())
    # the orders walk different first episodes from the centre: the 8 symmetric ones (the tour turned
    # and mirrored) 8, the 24 more than those 8 (some orders differ only at ties that come later)
    first_moves = {tuple(res.trace["action"][i, :6].tolist()) for i in range(n_orders)}
    assert len(first_moves) == 8 if ties == "symmetric" else len(first_moves) > 8


def test_search_ties_keep_the_teachers_order_only_until_the_goal_is_shown():
    """ties 'search' by hand (order 0: up, right, down, left): the teacher's first action while
    nothing has paid, every shortest-path action once a reward showed the goal (0, 2) = cell 2."""
    w = window(ROOM3, [(0, 4, RIGHT, 0, 5), (1, 5, UP, 1, 2), (0, 4, DOWN, 0, 7), (1, 7, NOOP, 0, 7)])
    assert actions(action_mask("explorer", w, ROOM3, ties="uniform")) == [
        {UP, RIGHT, DOWN, LEFT}, {UP, DOWN}, {UP, RIGHT}, {UP, RIGHT}]
    assert actions(action_mask("explorer", w, ROOM3, ties="teacher")) == [{UP}, {UP}, {UP}, {UP}]
    assert actions(action_mask("explorer", w, ROOM3, ties="search")) == [{UP}, {UP}, {UP, RIGHT}, {UP, RIGHT}]
    # the exploit target: the source's own action before the reward (one action: no tie), then the same sets
    assert actions(action_mask("exploit", w, ROOM3, ties="search")) == [{RIGHT}, {UP}, {UP, RIGHT}, {UP, RIGHT}]


def test_search_own_ties_teach_each_streams_own_order_and_nothing_where_it_has_none():
    """ties 'search_own' by hand on the window of the test above: a stream with an order of its own
    (here right, left, up, down: not one of the 8 symmetries) gets that order's first action while
    nothing has paid; a stream without one (variant -1: A2C, AD^eps, random ties) gets every tied
    action there, as with 'uniform'; once the reward shows the goal (0, 2), both get the whole set."""
    w = window(ROOM3, [(0, 4, RIGHT, 0, 5), (1, 5, UP, 1, 2), (0, 4, DOWN, 0, 7), (1, 7, NOOP, 0, 7)])
    order = TIE_ORDERS.index((RIGHT, LEFT, UP, DOWN, NOOP))
    assert order >= len(SYMMETRIC_ORDERS)
    w["variant"] = torch.tensor([order])
    assert actions(action_mask("explorer", w, ROOM3, ties="search_own")) == [{RIGHT}, {UP}, {UP, RIGHT}, {UP, RIGHT}]
    assert actions(action_mask("explorer", w, ROOM3, ties="search")) == [{RIGHT}, {UP}, {UP, RIGHT}, {UP, RIGHT}]
    w["variant"] = torch.tensor([-1])
    assert actions(action_mask("explorer", w, ROOM3, ties="search_own")) == [
        {UP, RIGHT, DOWN, LEFT}, {UP, DOWN}, {UP, RIGHT}, {UP, RIGHT}]
    # 'search' falls back to order 0 (up, right, down, left) there
    assert actions(action_mask("explorer", w, ROOM3, ties="search")) == [{UP}, {UP}, {UP, RIGHT}, {UP, RIGHT}]
    del w["variant"]   # a window without the column: no stream has an order
    assert actions(action_mask("explorer", w, ROOM3, ties="search_own")) == [
        {UP, RIGHT, DOWN, LEFT}, {UP, DOWN}, {UP, RIGHT}, {UP, RIGHT}]


def test_the_24_tie_orders_are_every_order_of_the_four_moves_and_streams_take_them_in_turn():
    moves = {UP, RIGHT, DOWN, LEFT}
    assert len(set(TIE_ORDERS)) == 24 and all(set(o[:4]) == moves and o[4] == NOOP for o in TIE_ORDERS)
    assert TIE_ORDERS[:8] == SYMMETRIC_ORDERS
    # 2 goals x 26 streams: stream j of each goal takes order j % 24 (goal-major)
    want = list(range(24)) + [0, 1]
    assert stream_variants("permutations", 2, 26).tolist() == want + want
    assert stream_variants("symmetric", 1, 10).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1]


def test_the_symmetric_tours_are_the_first_tour_turned_and_mirrored():
    """Order k's run is order 0's run under order k's symmetry of the room, when its goal is the
    image of order 0's goal (searched, found, then walked to: every step mapped)."""
    env = EnvConfig(grid_size=9, max_episode_steps=20)
    n, c = env.grid_size, env.grid_size - 1
    maps = [lambda r, k: (r, k), lambda r, k: (k, c - r), lambda r, k: (c - r, c - k), lambda r, k: (c - k, r),
            lambda r, k: (r, c - k), lambda r, k: (k, r), lambda r, k: (c - r, k), lambda r, k: (c - k, c - r)]
    assert len(maps) == len(SYMMETRIC_ORDERS) and TIE_ORDERS[:8] == SYMMETRIC_ORDERS
    runs = []
    for v, m in enumerate(maps):
        goal = goal_id(env, *m(1, 7))
        res = rollout(OrderedTies(explorer_of(env), torch.tensor([v])), env, [goal], 1, 6, greedy=True, record=True)
        runs.append([divmod(int(x), n) for x in res.trace["next_state"][0]])
    assert len(runs[0]) > 40 and len({tuple(r[:8]) for r in runs}) == 8
    for v, m in enumerate(maps):
        assert runs[v] == [m(r, k) for r, k in runs[0]], v
