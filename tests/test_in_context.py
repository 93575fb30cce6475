"""The central claim, end to end and cheaply: a transformer trained on learning histories of
training goals improves *in context* on goals it never saw, with frozen weights.

A 5x5 room (16 training goals, 8 held out), a tiny A2C shard plus AD^eps streams (noise
decaying over 10 episodes), a 2-layer model trained 600 steps (about 15 s on one core),
then 8 held-out goals x 4 seeds x 20 episodes from an empty context. Measured when the test
was written: success 0.30 in the first 5 episodes -> 0.66 in the last 5, random policy 0.20.
The margins asserted below are what a broken carry-over of the previous transition, a broken
causal mask or a broken dataset (shuffled windows, held-out goals leaking, rewards dropped)
cannot reach; docs/robustness.md lists the mutations this test was checked against.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from adlib.config import (DatasetConfig, DTConfig, DTRuntime, EnvConfig, ExplorerConfig, NoiseConfig, SourceConfig,
                          SourceRuntime, SplitConfig)
from adlib.dataset import build_dataset
from adlib.incontext import play
from adlib.model import load_model
from adlib.noise import Explorer
from adlib.rollout import random_policy, rollout
from adlib.sources import train_shard
from adlib.tasks import split_goals
from adlib.train import train

ENV = EnvConfig(grid_size=5, max_episode_steps=10)
EPISODES = 20


@pytest.fixture(scope="module")
def learned(tmp_path_factory) -> dict:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("icl")
    split = split_goals(ENV, SplitConfig(seed=0, n_train=16))
    train_shard(ENV, SourceConfig(hidden_size=8, nenvs=2, nsteps=10, env_steps=2000, lr=1e-2, seeds_per_goal=1, shards=(0,)), 0,
                root / "sources" / "shard_0", rt=SourceRuntime(workers=1))
    noise = NoiseConfig(streams_per_goal=20, transitions=150, schedule="episodes", decay_episodes=10, eps_start=1.0,
                        eps_end=0.0, seed=0)
    meta = build_dataset(ENV, DatasetConfig(history_len=2000, subsample=5, noise=noise), split, root / "sources", 1,
                         root / "dataset")
    dt = DTConfig(seq_len=64, embedding_dim=32, num_layers=2, num_heads=2, feed_forward_dim=64, lr=3e-3, min_lr=1e-4,
                  warmup_steps=20, batch_size=16, num_steps=600, seed=0)
    train(ENV, dt, split, root / "dataset", root / "model", rt=DTRuntime(device="cpu", eval_step=0, threads=1))
    model, _ = load_model(root / "model" / "model.pt")
    held_out = play(model, ENV, split["held_out"], seeds=4, episodes=EPISODES, greedy=False, seed=0)
    rand = rollout(random_policy, ENV, split["held_out"], seeds=4, episodes=EPISODES, greedy=False, seed=0)
    return {"split": split, "meta": meta, "held_out": held_out, "random": rand, "root": Path(root)}


def test_held_out_goals_were_never_trained_on(learned):
    assert not set(learned["meta"]["train_goals"]) & set(learned["split"]["held_out"])
    assert sorted(set(learned["held_out"].goal_ids.tolist())) == sorted(learned["split"]["held_out"])


def test_success_rises_in_context_on_held_out_goals(learned):
    s = learned["held_out"].success.mean(0)          # [episodes], over 8 goals x 4 seeds
    first, last = float(s[:5].mean()), float(s[-5:].mean())
    assert last >= first + 0.2, (first, last, s.round(2))


def test_in_context_learner_beats_a_random_policy(learned):
    last = float(learned["held_out"].success[:, -5:].mean())
    rand = float(learned["random"].success.mean())
    assert last >= rand + 0.25, (last, rand)


def test_the_improvement_comes_from_the_context(learned):
    """Same model, same goals, but the context is wiped at every episode: no improvement."""
    model, _ = load_model(learned["root"] / "model" / "model.pt")
    split = learned["split"]
    per_episode = [play(model, ENV, split["held_out"], seeds=4, episodes=1, greedy=False, seed=e).success.mean()
                   for e in range(EPISODES - 5, EPISODES)]
    with_context = float(learned["held_out"].success[:, -5:].mean())
    assert with_context >= float(np.mean(per_episode)) + 0.15, (with_context, per_episode)


# ---------------------------------------------------------------- the learner that searches

SEARCH_EPISODES = 6


@pytest.fixture(scope="module")
def searcher(tmp_path_factory) -> dict:
    return train_searcher(tmp_path_factory.mktemp("searcher"))


def train_searcher(root: Path, steps: int = 500, explorer_ties: str = "first", ties: str = "search",
                   streams: int = 16, temperature: float = 0.1) -> dict:
    """dt.target 'explorer' with the explorer's fixed tie order while searching and every
    shortest-path action once the goal is shown (dt.ties 'search', the searching learner's
    configuration; or a tour per run: ``explorer_ties`` 'permutations', ``ties`` 'search_own') on
    the same 5x5 room: a tiny model trained ``steps`` steps, then the held-out goals from an empty
    context at a low temperature, beside the systematic explorer (sampled ties) and a random walk."""
    torch.set_num_threads(1)
    split = split_goals(ENV, SplitConfig(seed=0, n_train=16))
    train_shard(ENV, SourceConfig(hidden_size=8, nenvs=2, nsteps=10, env_steps=1000, lr=1e-2, seeds_per_goal=1,
                                  shards=(0,)), 0, root / "sources" / "shard_0", rt=SourceRuntime(workers=1))
    data = DatasetConfig(history_len=1000, subsample=5, a2c_streams_per_goal=1, noise=NoiseConfig(streams_per_goal=0),
                         explorer=ExplorerConfig(streams_per_goal=streams, transitions=120, ties=explorer_ties, eps=0.1))
    build_dataset(ENV, data, split, root / "sources", 1, root / "dataset")
    dt = DTConfig(target="explorer", ties=ties, seq_len=64, embedding_dim=32, num_layers=2, num_heads=2,
                  feed_forward_dim=64, lr=3e-3, min_lr=1e-4, warmup_steps=20, batch_size=16, num_steps=steps, seed=0)
    train(ENV, dt, split, root / "dataset", root / "model", rt=DTRuntime(device="cpu", eval_step=0, threads=1))
    model, _ = load_model(root / "model" / "model.pt")
    held_out = split["held_out"]
    return {"learner": play(model, ENV, held_out, seeds=4, episodes=SEARCH_EPISODES, greedy=False,
                            temperature=temperature, seed=0, record=True),
            "explorer": rollout(Explorer(ENV), ENV, held_out, seeds=16, episodes=SEARCH_EPISODES, greedy=False, seed=0,
                                record=True),
            "random": rollout(random_policy, ENV, held_out, seeds=16, episodes=SEARCH_EPISODES, greedy=False, seed=0)}


def found_by(res, k: int) -> float:
    """Share of runs that reached the goal in one of their first ``k`` episodes."""
    return float(res.success[:, :k].any(1).mean())


def test_the_searching_learner_finds_held_out_goals_at_the_explorers_pace(searcher):
    learner, explorer, rand = (searcher[k] for k in ("learner", "explorer", "random"))
    # measured when written: found by episode 1 / 2 / 3 0.50 / 0.88 / 0.91, the explorer 0.49 / 0.84 / 0.98
    for k in (1, 2, 3):
        assert found_by(learner, k) >= found_by(explorer, k) - 0.15, (k, found_by(learner, k), found_by(explorer, k))
    assert found_by(learner, 2) >= found_by(rand, 2) + 0.2, (found_by(learner, 2), found_by(rand, 2))
    # and it goes back to what it found (measured when written: 0.91 over the last 2 episodes, every
    # run having found its goal; a random walk 0.22; the 9x9 learner exploits perfectly, docs/results.md)
    assert learner.success[:, -2:].mean() >= max(0.75, rand.success[:, -2:].mean() + 0.45), learner.success.mean(0)


@pytest.fixture(scope="module")
def tour_searcher(tmp_path_factory) -> dict:
    return train_searcher(tmp_path_factory.mktemp("tour_searcher"), steps=1200, explorer_ties="permutations",
                          ties="search_own", streams=24, temperature=0.2)


def test_the_tour_per_run_learner_keeps_one_tie_order_and_the_explorers_pace(tour_searcher):
    """Explorer streams in all 24 tie orders, labelled with each stream's own order while it
    searches (dt.ties 'search_own'): the learner infers an order from its own moves and keeps it
    (benchmarks.search_fidelity.one_order), which the random-tie explorer does not, and finds the
    held-out goals at the explorer's pace."""
    from benchmarks.search_fidelity import one_order

    learner, explorer, rand = (tour_searcher[k] for k in ("learner", "explorer", "random"))
    kept, kept_explorer = one_order(learner, ENV, 3)[-1], one_order(explorer, ENV, 3)[-1]
    # measured when written: 0.66 of the runs keep one order through episode 3, the explorer's 0.14
    # (the 9x9 learner of docs/results.md: 0.993)
    assert kept >= 0.5 and kept >= kept_explorer + 0.3, (kept, kept_explorer)
    # and the runs draw different tours, not one: first moves from the centre when written 8 / 10 / 9 / 5
    # (up / right / down / left over 32 runs); a learner pulled to one order would make one move
    first = np.bincount(learner.trace["action"][:, 0], minlength=5)[1:]
    assert (first >= 3).all(), first
    # found by episode 1 / 2 / 3 when written: 0.59 / 0.84 / 0.97, the explorer 0.49 / 0.84 / 0.98, a random
    # walk 0.22 / 0.38 / 0.50; the last 2 episodes 1.00 (a random walk 0.22)
    for k in (1, 2, 3):
        assert found_by(learner, k) >= found_by(explorer, k) - 0.15, (k, found_by(learner, k), found_by(explorer, k))
    assert found_by(learner, 2) >= found_by(rand, 2) + 0.2, (found_by(learner, 2), found_by(rand, 2))
    assert learner.success[:, -2:].mean() >= max(0.75, rand.success[:, -2:].mean() + 0.45), learner.success.mean(0)
