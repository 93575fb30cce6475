"""In-context evaluation metrics: scripted policies with known returns, the reference curves
of SPEC.md §6, the CSV/PNG/JSON outputs of evaluate_checkpoint, and reproducible play."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_dt import DATA, ENV, SPLIT, SRC, tiny_dt, tiny_pipeline, tiny_rt

from adlib.config import EnvConfig, EvalConfig, SourceRuntime, to_dict
from adlib.envs import darkroom as dr
from adlib.evaluation import (
    evaluate_checkpoint,
    explorer_curve,
    headline,
    RANDOM_RUNS_PER_GOAL,
    optimum_return,
    random_return,
    random_search_curve,
    report_points,
    source_curve,
    summarize,
    write_curves_csv,
)
from adlib.dataset import build_dataset
from adlib.histories import find_source_goals
from adlib.incontext import play, play_many
from adlib.model import load_model
from adlib.rollout import Runs, oracle_policy, random_policy, rollout, rollout_many
from adlib.sources import train_shard
from adlib.tasks import split_goals, spread
from adlib.train import train

torch.set_num_threads(1)

ROOM9 = EnvConfig(grid_size=9, max_episode_steps=20)                                          # original
PAPER9 = EnvConfig(grid_size=9, max_episode_steps=20, terminate_on_goal=False, reward_mode="stand")
ALL9 = list(range(80))


# ---------------------------------------------------------------- scripted policies

def test_oracle_on_original_room_always_succeeds_on_shortest_paths():
    E = 4
    res = rollout(oracle_policy, ROOM9, ALL9, seeds=1, episodes=E, greedy=True)
    assert res.returns.shape == (80, E)
    assert res.success.all()
    assert (res.returns == 1.0).all()
    d = dr.shortest_path(ROOM9, torch.tensor(dr.start_pos(ROOM9)), dr.tasks_in_use(ROOM9)).numpy()
    np.testing.assert_array_equal(res.shortest, d)
    np.testing.assert_array_equal(res.lengths, np.repeat(d[:, None], E, 1))   # terminated on arrival
    m = summarize(res, 1, ROOM9)
    assert m["goals"] == 80 and m["episodes"] == E
    for key in ("success@1", "success_first10", "success_last10", "return_last10"):
        assert m[key] == {"mean": 1.0, "std": 0.0, "goal_std": 0.0}, key
    assert m["steps_over_shortest_last10"] == 1.0
    assert optimum_return(ROOM9, ALL9) == 1.0


def test_oracle_on_paper_variant_returns_21_minus_distance():
    res = rollout(oracle_policy, PAPER9, ALL9, seeds=2, episodes=3, greedy=True)
    d = np.repeat(dr.shortest_path(PAPER9, torch.tensor(dr.start_pos(PAPER9)), dr.tasks_in_use(PAPER9)).numpy(), 2)
    np.testing.assert_array_equal(res.returns, np.repeat((21 - d)[:, None], 3, 1))
    assert (res.lengths == 20).all()                       # no termination: always 20 steps
    assert res.returns.mean() == pytest.approx(16.5)
    assert optimum_return(PAPER9, ALL9) == pytest.approx(16.5)
    m = summarize(res, 2, PAPER9)
    assert m["return@1"]["mean"] == pytest.approx(16.5) and m["return_last10"]["std"] == 0.0
    assert "success@1" not in m and "steps_over_shortest_last10" not in m   # not meaningful here


def test_suboptimal_path_lengths_show_in_steps_over_shortest():
    """A policy that wastes one no-op before walking the shortest path: ratio (d + 1) / d."""
    def lazy(obs, t, prev, state):
        logits = oracle_policy(obs, t, prev, state)
        stall = torch.zeros_like(logits).fill_(-1e9)
        stall[:, 0] = 0.0
        return torch.where((state.t == 0).unsqueeze(-1), stall, logits)

    goals = [0, 40, 79]   # corners (d = 8) and a neighbour of the centre (goal 40 = cell (4, 5), d = 1)
    res = rollout(lazy, ROOM9, goals, seeds=1, episodes=2, greedy=True)
    d = res.shortest.astype(float)
    assert d.tolist() == [8, 1, 8]
    m = summarize(res, 1, ROOM9)
    assert m["steps_over_shortest_last10"] == pytest.approx(round(float(np.mean((d + 1) / d)), 4))


def exact_random_success(env: EnvConfig, goal: tuple[int, int]) -> float:
    """P(a uniform random walk from the centre reaches ``goal`` within the step limit), by
    dynamic programming over cells: an independent check of the Monte Carlo baseline."""
    n, (sr, sc) = env.grid_size, dr.start_pos(env)
    p = np.zeros((n, n))
    p[sr, sc] = 1.0
    hit = 0.0
    for _ in range(env.max_episode_steps):
        q = np.zeros_like(p)
        for dr_, dc in ((0, 0), (-1, 0), (0, 1), (1, 0), (0, -1)):
            for r in range(n):
                for c in range(n):
                    q[min(max(r + dr_, 0), n - 1), min(max(c + dc, 0), n - 1)] += p[r, c] / 5
        hit += q[goal]
        q[goal] = 0.0            # the episode ends there
        p = q
    return hit


def test_random_baseline_equals_the_exact_random_walk_success():
    env = ENV   # 5x5, 10 steps, terminate on goal
    goals = list(range(24))
    exact = np.mean([exact_random_success(env, tuple(g)) for g in dr.tasks_in_use(env)[goals].tolist()])
    assert random_return(env, goals) == pytest.approx(exact, abs=0.01)
    res = rollout(random_policy, env, goals, seeds=16, episodes=10, greedy=False, seed=1)
    assert (res.returns == res.success).all()   # 'reach' + termination: return is success
    far = rollout(oracle_policy, env, goals, seeds=1, episodes=2, greedy=True)
    assert res.success.mean() < far.success.mean()


def test_random_return_paper_variant_matches_spec():
    assert random_return(PAPER9, ALL9) == pytest.approx(0.235, abs=0.012)


def test_explorer_curve_matches_spec():
    np.testing.assert_allclose(explorer_curve(PAPER9, 6), [2.625, 6.75, 10.875, 15.0, 16.5, 16.5])
    np.testing.assert_allclose(explorer_curve(ROOM9, 6), [0.25, 0.5, 0.75, 1.0, 1.0, 1.0])  # finds any goal in 4


def test_random_search_curve_is_a_random_walk_until_the_first_success_then_the_optimum():
    """Reference by a loop over runs: each run's episodes are the random walk's own returns up
    to and including its first success, the goal's optimum after it."""
    goals, E = [3, 40, 79], 12
    for env in (ROOM9, PAPER9):
        curve = random_search_curve(env, goals, E, seed=4)
        res = rollout(random_policy, env, goals, RANDOM_RUNS_PER_GOAL, E, greedy=False, seed=4)
        want = np.empty_like(res.returns)
        for i, g in enumerate(np.repeat(goals, RANDOM_RUNS_PER_GOAL)):
            hit = np.flatnonzero(res.success[i])
            first = hit[0] if len(hit) else E
            want[i, :first + 1] = res.returns[i, :first + 1]
            want[i, first + 1:] = optimum_return(env, [int(g)])
        np.testing.assert_allclose(curve, want.mean(0), atol=1e-6)
    # it starts at the random walk's level, ends near the optimum for a goal next to the start,
    # and is far below the ideal explorer for the far corners
    near = random_search_curve(ROOM9, [31], 30)                      # (3, 4): one step from the centre
    assert near[0] == pytest.approx(random_return(ROOM9, [31]), abs=0.08) and near[-1] == 1.0
    corners = random_search_curve(ROOM9, [0, 8, 71, 79], 10)
    assert corners[-1] < 0.5 < explorer_curve(ROOM9, 10)[-1]
    assert np.isnan(random_search_curve(dataclasses.replace(ROOM9, random_start=True), [31], 5)).all()


def test_report_points():
    assert report_points(1) == [1]
    assert report_points(4) == [1, 2, 3, 4]
    assert report_points(10) == [1, 2, 3, 5, 10]
    assert report_points(40) == [1, 2, 3, 5, 10, 40]
    assert report_points(200) == [1, 2, 3, 5, 10, 50, 100, 200]
    assert report_points(250) == [1, 2, 3, 5, 10, 50, 100, 200, 250]
    assert report_points(1000) == [1, 2, 3, 5, 10, 50, 100, 200, 300, 500, 1000]


def test_write_curves_csv_round_trip(tmp_path):
    a = np.array([0.0, 0.5, 1.0 / 3.0, 2.0])
    b = np.array([16.5, 16.5, 1e-6, np.nan])
    path = tmp_path / "sub" / "curves.csv"
    write_curves_csv(path, {"ad_greedy": a, "random": b})
    lines = path.read_text().splitlines()
    assert lines[0] == "episode,ad_greedy,random"
    assert len(lines) == 1 + len(a)
    back = np.genfromtxt(path, delimiter=",", names=True)
    np.testing.assert_array_equal(back["episode"], [1, 2, 3, 4])
    np.testing.assert_allclose(back["ad_greedy"], a, atol=5e-6)
    np.testing.assert_allclose(back["random"], b, atol=5e-6)   # nan survives as nan
    assert [p.name for p in path.parent.iterdir()] == ["curves.csv"]   # no temp file left


# ---------------------------------------------------------------- a tiny trained model

@pytest.fixture(scope="module")
def model_run(tmp_path_factory) -> dict:
    pipe = tiny_pipeline(tmp_path_factory.mktemp("pipe"))
    out = tmp_path_factory.mktemp("model")
    train(ENV, tiny_dt(num_steps=8), pipe["split"], pipe["data_dir"], out, rt=tiny_rt())
    return {**pipe, "model_path": out / "model.pt"}


def test_play_is_reproducible_with_same_seed(model_run):
    model, _ = load_model(model_run["model_path"])
    goals = model_run["split"]["held_out"][:3]
    kw = dict(env_cfg=ENV, goal_ids=goals, seeds=2, episodes=5, greedy=False, record=True)
    a = play(model, seed=7, **kw)
    b = play(model, seed=7, **kw)
    c = play(model, seed=8, **kw)
    np.testing.assert_array_equal(a.returns, b.returns)
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.lengths, b.lengths)
    assert not np.array_equal(a.positions, c.positions)
    np.testing.assert_array_equal(a.goal_ids, np.repeat(goals, 2))
    # the KV cache does not change what is played (greedy, across window re-prefills: 50 steps > seq_len 16)
    g1 = play(model, ENV, goals, 1, 5, greedy=True, record=True, use_cache=True)
    g2 = play(model, ENV, goals, 1, 5, greedy=True, record=True, use_cache=False)
    np.testing.assert_array_equal(g1.positions, g2.positions)


def live_steps(res, episodes: int, steps: int) -> dict[str, np.ndarray]:
    """A recorded result's trace over its first ``steps`` lockstep steps, -1 where a run had finished."""
    live = res.episode_of_step[:, :steps] < episodes
    return {k: np.where(live, v[:, :steps], -1) for k, v in res.trace.items()}


@pytest.mark.parametrize("env,keyed", [(ROOM9, False), (dataclasses.replace(PAPER9, random_start=True), False),
                                       (dataclasses.replace(ROOM9, random_start=True), True)])
def test_runs_batched_together_play_as_they_do_alone(env, keyed):
    """rollout_many: each kind of runs (greedy / sampled, its own temperature and seed) gives what
    its own rollout gives, random starts included; a kind's trace runs on to the batch's last step."""
    kinds = [Runs([3, 40, 77], 1, greedy=True), Runs([3, 40], 4, greedy=False, temperature=0.5, seed=2),
             Runs([12, 60, 61], 2, greedy=False, temperature=2.0, seed=7)]
    def policy(obs, t, prev, state):   # leans to the shortest path, plus a pattern of its own per cell and step
        toward = dr.optimal_actions(state.pos, dr.target(state)).float() * 2
        return toward + torch.stack([obs % 5, t % 3, (obs // 9) % 4, 0 * obs, obs % 2], -1).float() / 4

    together = rollout_many(policy, env, kinds, 4, record=True, keyed=keyed)
    n_steps = together[0].trace["action"].shape[1]
    for r, got in zip(kinds, together):
        alone = rollout(policy, env, r.goal_ids, r.seeds, 4, r.greedy, r.temperature, r.seed, record=True, keyed=keyed)
        np.testing.assert_array_equal(got.goal_ids, alone.goal_ids)
        np.testing.assert_array_equal(got.returns, alone.returns)
        np.testing.assert_array_equal(got.lengths, alone.lengths)
        np.testing.assert_array_equal(got.shortest, alone.shortest)
        steps = alone.trace["action"].shape[1]
        assert steps <= n_steps and got.trace["action"].shape[1] == n_steps
        for k, v in live_steps(alone, 4, steps).items():
            np.testing.assert_array_equal(live_steps(got, 4, steps)[k], v, err_msg=k)
    if env.terminate_on_goal:   # the kinds end at different steps alone
        assert len({rollout(policy, env, r.goal_ids, r.seeds, 4, r.greedy, r.temperature, r.seed, record=True,
                            keyed=keyed).trace["action"].shape[1] for r in kinds}) > 1
    assert rollout_many(policy, env, [], 4) == []


def test_the_model_plays_batched_kinds_as_it_plays_them_alone(model_run):
    """play_many (eval_dt's one batch of greedy and sampled, held-out and training goals): each
    kind's episodes and live steps equal its own play's."""
    model, _ = load_model(model_run["model_path"])
    split = model_run["split"]
    kinds = [Runs(split["held_out"], 1, greedy=True), Runs(split["held_out"], 3, greedy=False, seed=1),
             Runs(split["train"][:3], 2, greedy=False, temperature=0.5, seed=4)]
    for r, got in zip(kinds, play_many(model, ENV, kinds, 5, record=True)):
        alone = play(model, ENV, r.goal_ids, r.seeds, 5, r.greedy, r.temperature, r.seed, record=True)
        np.testing.assert_array_equal(got.returns, alone.returns)
        np.testing.assert_array_equal(got.lengths, alone.lengths)
        steps = alone.trace["action"].shape[1]
        for k, v in live_steps(alone, 5, steps).items():
            np.testing.assert_array_equal(live_steps(got, 5, steps)[k], v, err_msg=k)


def test_retiring_finished_runs_changes_no_run(model_run):
    """Runs that finished their episodes leave the model's batch (ContextPlayer.retire): every
    run's episodes and steps equal those of a play that keeps them all (sampled: the draws of
    the runs still playing are unchanged), and finished runs did leave early."""
    model, _ = load_model(model_run["model_path"])
    goals = model_run["split"]["held_out"]
    batches: list[int] = []                     # the model's batch at every one-transition step
    decode = model.decode
    model.decode = lambda f, cache, first: batches.append(len(f["state"])) or decode(f, cache, first)
    for greedy in (False, True):
        kw = dict(env_cfg=ENV, goal_ids=goals, seeds=4, episodes=6, greedy=greedy, seed=3, record=True)
        batches.clear()
        a = play(model, retire=True, **kw)
        assert min(batches) < len(goals) * 4 == batches[0]           # finished runs left the batch
        n_a = len(batches)
        b = play(model, retire=False, **kw)
        assert set(batches[n_a:]) == {len(goals) * 4}                 # ... and stay in it without retire
        np.testing.assert_array_equal(a.returns, b.returns)
        np.testing.assert_array_equal(a.lengths, b.lengths)
        live = b.episode_of_step < 6
        for k in a.trace:
            np.testing.assert_array_equal(a.trace[k][live], b.trace[k][live])
        done_at = a.lengths.sum(1)                                        # [N] steps each run played
        assert (done_at < done_at.max() - 2).mean() >= 1 / 8              # enough runs finished early to retire


def test_evaluate_checkpoint_end_to_end(model_run, tmp_path):
    E = 12
    ev = EvalConfig(episodes=E, seeds=2, train_goals=3, temperature=1.0, seed=0)
    split = model_run["split"]
    metrics_path, detail_path = tmp_path / "metrics" / "eval.json", tmp_path / "metrics" / "eval_detail.json"
    curves, tb = tmp_path / "curves", tmp_path / "tb"
    m = evaluate_checkpoint(model_run["model_path"], ENV, tiny_dt(num_steps=8), ev, split, model_run["sources"], 1, metrics_path,
                            detail_path, curves, tb)

    assert json.loads(detail_path.read_text()) == m
    assert json.loads(metrics_path.read_text()) == headline(m, "success")
    assert m["variant"].startswith("original")
    assert set(m) == {"variant", "model", "held_out", "train_goals"}
    assert m["model"]["sha256"] == hashlib.sha256(Path(model_run["model_path"]).read_bytes()).hexdigest()
    assert m["model"]["dt"] == to_dict(tiny_dt(num_steps=8)) and m["model"]["train_goals"] == len(split["train"])
    held, trg = split["held_out"], spread(split["train"], 3)
    for group, goals in (("held_out", held), ("train_goals", trg)):
        g = m[group]
        assert g["greedy"]["goals"] == len(goals) and g["greedy"]["seeds"] == 1
        assert g["sampled"]["goals"] == len(goals) and g["sampled"]["seeds"] == 2
        assert g["sampled"]["runs"] == 2 * len(goals)
        assert {f"return@{p}" for p in report_points(E)} <= set(g["greedy"])
        assert {"success_first10", "success_last10", "steps_over_shortest_last10"} <= set(g["greedy"])
        assert g["baselines"]["optimum"] == 1.0
        # each group's metrics are exactly the play of that group's goals (held-out goals only in 'held_out')
        model, _ = load_model(model_run["model_path"])
        res = play(model, ENV, goals, 1, E, greedy=True, seed=0)
        assert g["greedy"] == summarize(res, 1, ENV)
        csv = np.genfromtxt(curves / f"{group}.csv", delimiter=",", names=True)
        assert list(csv.dtype.names) == ["episode", "ad_greedy", "ad_sampled", "ad_sampled_std", "a2c_source",
                                         "random", "optimum", "explorer", "systematic_explorer", "random_search"]
        assert len(csv) == E
        np.testing.assert_allclose(csv["ad_greedy"], res.returns.mean(0), atol=5e-6)
        sampled = play(model, ENV, goals, 2, E, greedy=False, seed=0).returns          # [goals x 2 seeds, E]
        per_seed = np.stack([sampled[0::2].mean(0), sampled[1::2].mean(0)])           # runs are goal-major
        np.testing.assert_allclose(csv["ad_sampled"], per_seed.mean(0), atol=5e-6)
        np.testing.assert_allclose(csv["ad_sampled_std"], per_seed.std(0), atol=5e-6)
        np.testing.assert_allclose(csv["a2c_source"], source_curve(find_source_goals(model_run["sources"], 1), goals, E), atol=5e-6)
        np.testing.assert_allclose(csv["explorer"], explorer_curve(ENV, E), atol=5e-6)
        np.testing.assert_allclose(csv["random_search"], random_search_curve(ENV, goals, E, seed=0), atol=5e-6)
        assert g["baselines"]["random_search_first10"] == round(float(csv["random_search"][:10].mean()), 4)
        png = curves / f"{group}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert m["held_out"]["greedy"]["goals"] == 8 and m["train_goals"]["greedy"]["goals"] == 3
    assert any(p.name.startswith("events.out.tfevents") for p in tb.iterdir())

    with pytest.raises(ValueError, match="another env"):
        evaluate_checkpoint(model_run["model_path"], dataclasses.replace(ENV, max_episode_steps=11), tiny_dt(num_steps=8), ev, split,
                            model_run["sources"], 1, tmp_path / "m2.json", tmp_path / "d2.json", tmp_path / "c2")


def test_evaluate_checkpoint_with_random_start_writes_strict_json(tmp_path):
    """With random starts the random-search baseline is undefined (NaN): its keys are left out
    of the reports instead of writing NaN, which is not JSON."""
    env = dataclasses.replace(ENV, random_start=True)
    split = split_goals(env, SPLIT)
    train_shard(env, SRC, 0, tmp_path / "sources" / "shard_0", rt=SourceRuntime(workers=1))
    build_dataset(env, DATA, split, tmp_path / "sources", 1, tmp_path / "dataset")
    train(env, tiny_dt(), split, tmp_path / "dataset", tmp_path / "model", rt=tiny_rt())
    ev = EvalConfig(episodes=20, seeds=1, train_goals=2, temperature=1.0, seed=0)
    metrics, detail = tmp_path / "eval.json", tmp_path / "eval_detail.json"
    evaluate_checkpoint(tmp_path / "model" / "model.pt", env, tiny_dt(), ev, split, tmp_path / "sources", 1, metrics, detail,
                        tmp_path / "curves")

    def strict(text: str) -> dict:
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in a JSON report"))

    d, m = strict(detail.read_text()), strict(metrics.read_text())
    assert not {k for g in ("held_out", "train_goals") for k in d[g]["baselines"] if k.startswith("random_search")}
    assert "random" in m["held_out"]["baselines"] and "random_search_11to20" not in m["held_out"]["baselines"]
    csv = np.genfromtxt(tmp_path / "curves" / "held_out.csv", delimiter=",", names=True)
    assert np.isnan(csv["random_search"]).all() and np.isfinite(csv["ad_sampled"]).all()


# ---------------------------------------------------------------- what the in-context policy is given

def test_rollout_gives_the_policy_the_previous_transition_before_the_reset():
    """The carry-over the model relies on: at every step the policy receives the previous
    step's action, reward and the cell it reached (pre-reset, so a terminal reward arrives
    with the goal cell, not the start cell); at the first step, 'none' for all three."""
    env = EnvConfig(grid_size=5, max_episode_steps=6)        # short episodes, frequent goals
    seen, outcomes = [], []

    def spy(obs, t, prev, state):
        seen.append({k: v.clone() for k, v in prev.items()} | {"obs": obs.clone()})
        return torch.zeros(obs.shape[0], dr.N_ACTIONS)

    res = rollout(spy, env, [6, 7, 8, 11], seeds=2, episodes=15, greedy=False, seed=3, record=True,
                  on_action=lambda a, r: outcomes.append((a.clone(), r.clone())))
    n_states = env.grid_size ** 2
    assert (seen[0]["prev_action"] == dr.N_ACTIONS).all() and (seen[0]["prev_reward"] == 2).all()
    assert (seen[0]["prev_next_state"] == n_states).all()
    reached = torch.as_tensor(res.positions)                  # [N, steps], the cell reached (pre-reset)
    differs = 0
    for k in range(1, len(seen)):
        a, r = outcomes[k - 1]
        assert torch.equal(seen[k]["prev_action"], a), k
        assert torch.equal(seen[k]["prev_reward"], r.long()), k
        assert torch.equal(seen[k]["prev_next_state"], reached[:, k - 1]), k
        differs += int((seen[k]["prev_next_state"] != seen[k]["obs"]).sum())
    assert differs > 0 and res.success.any()   # resets happened, so pre- and post-reset cells were told apart


def test_play_context_holds_the_env_outputs(model_run):
    """The frozen model's context (ContextPlayer) is exactly what the env returned."""
    from adlib.incontext import ContextPlayer

    model, _ = load_model(model_run["model_path"])
    goals, E = model_run["split"]["held_out"][:3], 4
    player = ContextPlayer(model, len(goals), E * ENV.max_episode_steps, torch.device("cpu"))
    outcomes = []

    def record(a, r):
        outcomes.append((a.clone(), r.clone()))
        player.record_outcome(a, r)

    res = rollout(lambda obs, t, prev, state: player.act_logits(obs, t, prev), ENV, goals, 1, E, greedy=False,
                  record=True, on_action=record)
    n = player.step
    assert n == len(outcomes) and n > E
    acts = torch.stack([a for a, _ in outcomes], 1)
    rews = torch.stack([r for _, r in outcomes], 1).long()
    np.testing.assert_array_equal(player.hist["action"][:, :n], acts)
    np.testing.assert_array_equal(player.hist["reward"][:, :n], rews)
    np.testing.assert_array_equal(player.hist["prev_action"][:, 1:n], acts[:, :-1])
    np.testing.assert_array_equal(player.hist["prev_reward"][:, 1:n], rews[:, :-1])
    np.testing.assert_array_equal(player.hist["prev_next_state"][:, 1:n], res.positions[:, :n - 1])
    assert (player.hist["prev_reward"][:, 0] == 2).all()      # 'none', not 0: nothing happened yet


def test_summary_spreads_are_over_seeds_and_over_goals():
    """Runs are goal-major (run = goal * seeds + seed): seed s scores s on goal 0 and 10 s on
    goal 1, so the per-seed means are 0, 5.5, 11 (a wrong grouping gives other numbers)."""
    from adlib.rollout import PlayResult

    seeds, E = 3, 12
    per_run = np.array([0, 1, 2, 0, 10, 20], float)           # goal 0 seeds 0..2, goal 1 seeds 0..2
    returns = np.repeat(per_run[:, None], E, 1) / 20.0         # success rates in [0, 1]
    res = PlayResult(goal_ids=np.array([5, 5, 5, 9, 9, 9]), returns=returns, success=returns > 0,
                     lengths=np.full((6, E), 4), shortest=np.full(6, 4))
    s = summarize(res, seeds, ROOM9)["return_last10"]
    per_seed = np.array([0.0, 5.5, 11.0]) / 20.0
    per_goal = np.array([1.0, 10.0]) / 20.0                    # goal 0: mean of 0, 1, 2; goal 1: of 0, 10, 20
    assert s == {"mean": round(float(per_seed.mean()), 4), "std": round(float(per_seed.std()), 4),
                 "goal_std": round(float(per_goal.std()), 4)}


def test_source_curve_equals_episode_returns_read_row_by_row(model_run):
    """The A2C baseline: every stream's episodes from its first one, averaged per episode
    index over streams and goals, recomputed here with a plain loop over the rows."""
    from adlib.histories import read_columns

    found = find_source_goals(model_run["sources"], 1)
    goals, E = model_run["split"]["held_out"][:4], 30
    curves = []
    for g in goals:
        c = read_columns(found[g] / "history.parquet", ["stream", "reward", "terminated", "truncated"])
        for s in np.unique(c["stream"]):
            rows = np.flatnonzero(c["stream"] == s)
            eps, ret = [], 0.0
            for i in rows:
                ret += float(c["reward"][i])
                if c["terminated"][i] or c["truncated"][i]:
                    eps.append(ret)
                    ret = 0.0
            eps = (eps + [np.nan] * E)[:E]
            curves.append(eps)
    np.testing.assert_allclose(source_curve(found, goals, E), np.nanmean(np.array(curves), 0), rtol=1e-12)
