"""Numbers checked against independent references (hand computations, closed forms, a slow
loop), not against the code under test: the headline metrics, the sampling temperature, what
reaches the model's logits, n-step returns at a time limit, the windows a stream offers, and
which goals the in-training evaluation plays."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers_dt import ENV, tiny_dt, tiny_model_cfg, tiny_pipeline

from adlib import a2c, tokens
from adlib.config import DTRuntime
from adlib.dataset import HistoryDataset
from adlib.envs import darkroom as dr
from adlib.evaluation import headline, summarize
from adlib.incontext import ContextPlayer, play
from adlib.model import ADTransformer
from adlib.rollout import PlayResult, rollout
from adlib.train import TrainLog
from adlib.transitions import Transitions

torch.set_num_threads(1)


# ---------------------------------------------------------------- headline metrics

def crafted(success: np.ndarray, lengths: np.ndarray, shortest: list[int]) -> PlayResult:
    return PlayResult(goal_ids=np.zeros(len(success), int), returns=success.astype(float), success=success,
                      lengths=lengths, shortest=np.array(shortest))


def test_summary_of_crafted_runs_equals_a_hand_computation():
    """Two runs (one goal, two seeds), 20 episodes. Run 0: every episode a success in 4 steps (its
    shortest). Run 1: a success only in episode 11 and in the even episodes of the last 10, each
    in 8 steps (its shortest is 4); failures take the whole 20 steps."""
    E = 20
    success = np.ones((2, E), bool)
    success[1] = False
    success[1, 10] = True                                   # episode 11 (1-based)
    success[1, 10::2] = True                                # episodes 11, 13, ..., 19
    lengths = np.where(success, np.array([[4], [8]]), 20)
    s = summarize(crafted(success, lengths, [4, 4]), seeds=2, env_cfg=ENV)
    # run 1 over episodes 11-20: successes in 11, 13, 15, 17, 19 -> 5 of 10
    assert s["success_11to20"]["mean"] == pytest.approx((1.0 + 0.5) / 2)
    assert s["success_first10"]["mean"] == pytest.approx((1.0 + 0.0) / 2)
    assert s["success_last10"]["mean"] == pytest.approx((1.0 + 0.5) / 2)
    assert s["success@1"]["mean"] == s["success@10"]["mean"] == pytest.approx(0.5)    # run 1 fails both
    assert s["success@20"]["mean"] == pytest.approx(0.5)                                # episode 20 is odd
    # std over the two seeds of the last-10 success: |1.0 - 0.5| / 2
    assert s["success_last10"]["std"] == pytest.approx(0.25)
    # path length over successful last-10 episodes only: run 0's ten at 4/4, run 1's five at 8/4
    assert s["steps_over_shortest_last10"] == pytest.approx((10 * 1.0 + 5 * 2.0) / 15, abs=1e-4)   # 4 decimals
    # share of last-10 episodes exactly on a shortest path: run 0 all, run 1 none
    assert s["shortest_path_share_last10"]["mean"] == pytest.approx(0.5)
    # run 0 finds the goal in episode 1 and succeeds in episode 2; run 1 first in episode 11, fails 12
    assert s["found_by10"] == pytest.approx(0.5)
    assert s["success_after_first"] == pytest.approx(0.5)


def test_exploitation_counts_only_runs_with_an_episode_after_their_first_success():
    """Four runs, 12 episodes: never; first success in the last episode (no next one, left out);
    first in episode 3, then 4 fails; first in episode 11, then 12 succeeds -> 1 of 2 runs."""
    success = np.zeros((4, 12), bool)
    success[1, 11] = True
    success[2, [2, 5]] = True
    success[3, [10, 11]] = True
    s = summarize(crafted(success, np.where(success, 4, 20), [4] * 4), seeds=4, env_cfg=ENV)
    assert s["success_after_first"] == pytest.approx(0.5)
    assert s["found_by10"] == pytest.approx(0.25)             # only run 2 found it within 10
    none = summarize(crafted(np.zeros((2, 12), bool), np.full((2, 12), 20), [4, 4]), seeds=2, env_cfg=ENV)
    assert none["success_after_first"] is None and none["found_by10"] == 0.0


def test_headline_picks_the_means_it_names():
    stat = lambda m: {"mean": m, "std": 0.5, "goal_std": 0.25}
    sampled = {"success_first10": stat(0.1), "success_11to20": stat(0.2), "success@50": stat(0.3),
               "success_last10": stat(0.4), "steps_over_shortest_last10": 1.25, "shortest_path_share_last10": stat(0.9),
               "return_last10": stat(7.0)}
    detail = {"variant": "x", "held_out": {"sampled": sampled, "greedy": {"success_last10": stat(0.6)},
                                           "baselines": {"a2c_source_last10": 0.7, "random": 0.16,
                                                         "random_search_11to20": 0.75, "optimum": 1.0}},
              "train_goals": {"sampled": {"success_last10": stat(0.8)}, "greedy": {"success_last10": stat(0.9)}}}
    assert headline(detail, "success") == {
        "held_out": {"sampled": {"success_first10": 0.1, "success_11to20": 0.2, "success@50": 0.3,
                                 "success_last10": 0.4, "steps_over_shortest_last10": 1.25,
                                 "shortest_path_share_last10": 0.9},
                     "greedy": {"success_last10": 0.6},
                     "baselines": {"a2c_source_last10": 0.7, "random": 0.16, "random_search_11to20": 0.75}},
        "train_goals": {"sampled": {"success_last10": 0.8}, "greedy": {"success_last10": 0.9}}}


# ---------------------------------------------------------------- sampling temperature

@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_rollout_samples_at_the_temperature(temperature):
    """Constant logits (0, ln 3) on no-op / up: P(up) = 3^(1/T) / (1 + 3^(1/T))."""
    logits = torch.tensor([0.0, math.log(3.0), -1e9, -1e9, -1e9])
    policy = lambda obs, t, prev, state: logits.expand(obs.shape[0], 5)
    res = rollout(policy, ENV, list(range(len(dr.tasks_in_use(ENV)))), 400, 1, greedy=False, temperature=temperature,
                  seed=0, record=True, max_steps=1)
    up = float((res.trace["action"][:, 0] == 1).mean())
    want = 3 ** (1 / temperature) / (1 + 3 ** (1 / temperature))
    assert abs(up - want) < 0.02, (up, want)


def test_play_passes_the_temperature_to_the_sampler():
    """A near-zero temperature samples the argmax (= greedy play); temperature 1 does not."""
    torch.manual_seed(0)
    model = ADTransformer(tiny_model_cfg(seq_len=32)).eval()
    goals = list(range(8))
    runs = [play(model, ENV, goals, 4, 3, greedy=True, seed=0, record=True),
            play(model, ENV, goals, 4, 3, greedy=False, temperature=1e-6, seed=1, record=True),
            play(model, ENV, goals, 4, 3, greedy=False, temperature=1.0, seed=1, record=True)]
    # the model's actions: steps before a run's last episode ended (finished runs leave the batch)
    greedy, cold, warm = [np.where(r.episode_of_step < 3, r.trace["action"], -1) for r in runs]
    assert np.array_equal(greedy, cold) and not np.array_equal(greedy, warm)


# ---------------------------------------------------------------- what reaches the logits

def window(L: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n_states = ENV.grid_size ** 2
    r = lambda hi: torch.randint(0, hi, (2, L), generator=g)
    return {"state": r(n_states), "t": r(ENV.max_episode_steps), "action": r(5), "reward": r(2),
            "prev_action": r(5), "prev_reward": r(2), "prev_next_state": r(n_states)}


FIELDS_OF_LAYOUT = [("transition", f) for f in ("prev_action", "prev_reward", "prev_next_state", "state", "t")] + \
    [("triplet", f) for f in ("prev_action", "prev_reward", "state", "t")]   # triplet: no next-state token


@pytest.mark.parametrize("layout,field", FIELDS_OF_LAYOUT)
def test_each_field_of_a_transition_reaches_the_logits_of_later_positions_only(layout, field):
    torch.manual_seed(0)
    model = ADTransformer(tiny_model_cfg(layout=layout, seq_len=12)).eval()
    f = window(12, 0)
    g = {k: v.clone() for k, v in f.items()}
    i = 6
    g[field][:, i] = (f[field][:, i] + 1) % (3 if "reward" in field else 5)   # another valid value
    if layout == "triplet" and field.startswith("prev"):   # the triplet layout reads the previous token's own a, r
        own = {"prev_action": "action", "prev_reward": "reward"}[field]
        g[own][:, i - 1] = (f[own][:, i - 1] + 1) % (3 if own == "reward" else 5)
        g[field] = f[field]
        i -= 1
    with torch.no_grad():
        a, _ = model(f)
        b, _ = model(g)
    changed = (a - b).abs().amax(-1).amax(0) > 1e-6                        # [L]
    first = i if not (layout == "triplet" and field.startswith("prev")) else i + 1
    assert not changed[:first].any() and changed[first], (field, changed.tolist())


def test_the_player_carries_the_action_taken_into_the_next_token():
    torch.manual_seed(0)
    model = ADTransformer(tiny_model_cfg(seq_len=16)).eval()
    outs = []
    for action in (1, 3):
        player = ContextPlayer(model, 1, 4, torch.device("cpu"))
        none = {"prev_action": torch.tensor([tokens.none_action(5)]), "prev_reward": torch.tensor([tokens.none_reward()]),
                "prev_next_state": torch.tensor([tokens.none_state(dr.n_states(ENV))])}
        player.act_logits(torch.tensor([12]), torch.tensor([0]), none)
        player.record_outcome(torch.tensor([action]), torch.tensor([0.0]))
        prev = {"prev_action": torch.tensor([action]), "prev_reward": torch.tensor([0]),
                "prev_next_state": torch.tensor([7 if action == 1 else 17])}
        outs.append(player.act_logits(torch.tensor([7 if action == 1 else 17]), torch.tensor([1]), prev))
        assert int(player.hist["prev_action"][0, 1]) == action and int(player.hist["action"][0, 0]) == action
    assert not torch.allclose(outs[0], outs[1])


# ---------------------------------------------------------------- n-step returns at a time limit

def test_a_truncated_step_bootstraps_from_the_cell_it_reached():
    """T = 3 steps of one env: step 0 reaches cell 4 and is truncated (time limit), step 1 pays 1,
    step 2 is plain; values v(s) = s / 10, gamma 0.5; the env is at cell 9 after the rollout.
    Hand computation: R2 = 0 + 0.5 v(9) = 0.45; R1 = 1 + 0.5 R2 = 1.225; R0 = 0 + 0.5 v(4) = 0.2
    (v of the cell reached, 4, not of the cell acted on, 3)."""
    one = lambda xs, dt=torch.long: torch.tensor(xs, dtype=dt).view(3, 1, 1)
    ro = Transitions(state=one([3, 12, 13]), t=one([19, 0, 1]), action=one([2, 1, 2]),
                     reward=one([0.0, 1.0, 0.0], torch.float), terminated=one([0, 0, 0], torch.bool),
                     truncated=one([1, 0, 0], torch.bool), next_state=one([4, 13, 14]))
    values = (torch.arange(81, dtype=torch.float) / 10).view(1, 81)
    returns = a2c.rollout_returns(ro, values, torch.tensor([[9]]), gamma=0.5)
    assert returns.flatten().tolist() == pytest.approx([0.2, 1.225, 0.45])


# ---------------------------------------------------------------- windows

def test_every_window_a_stream_holds_is_sampled_its_last_one_too(tmp_path):
    pipe = tiny_pipeline(tmp_path)
    data = HistoryDataset(pipe["data_dir"], ENV)
    L = int(data.lengths.min())                               # the shortest stream holds exactly one window
    stream = data.cols["stream"]
    want = set()                                              # a slow reference: every start, stream by stream
    for s in np.unique(stream):
        rows = np.flatnonzero(stream == s)
        want |= set(range(rows[0], rows[-1] - L + 2))
    got = set(data.sample_starts(np.random.default_rng(0), 400_000, L).tolist())
    assert got == want


# ---------------------------------------------------------------- in-training evaluation

def test_in_training_evaluation_plays_held_out_goals_and_training_goals_apart():
    split = {"train": [0, 2, 4, 6, 8, 10], "held_out": [1, 3, 5]}
    log = TrainLog(None, 0, tiny_dt(), ENV, split, DTRuntime(eval_train_goals=3), torch.device("cpu"))
    assert log.held_out == [1, 3, 5]
    assert len(log.train) == 3 and set(log.train) <= set(split["train"])
