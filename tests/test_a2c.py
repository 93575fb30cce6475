"""Batched A2C (adlib.a2c): returns against a reference loop, per-agent clipping, agent independence, learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adlib import a2c, rng
from adlib.config import EnvConfig, SourceConfig, SourceRuntime

torch.set_num_threads(1)

ENV = EnvConfig(grid_size=5, max_episode_steps=20)
HIST_FIELDS = ("t", "state", "action", "reward", "terminated", "truncated", "next_state")


def reference_nstep_returns(rewards, terminated, truncated, final_values, bootstrap, gamma):
    """One stream at a time, one step at a time, in plain Python floats."""
    T, N = rewards.shape
    out = np.zeros((T, N))
    for n in range(N):
        future = float(bootstrap[n])
        for k in reversed(range(T)):
            if terminated[k, n]:
                future = float(rewards[k, n])
            elif truncated[k, n]:
                future = float(rewards[k, n]) + gamma * float(final_values[k, n])
            else:
                future = float(rewards[k, n]) + gamma * future
            out[k, n] = future
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nstep_returns_equal_reference_loop(seed):
    g = torch.Generator().manual_seed(seed)
    T, G, E = 12, 3, 7
    rewards = (torch.rand(T, G, E, generator=g) < 0.3).float() * torch.rand(T, G, E, generator=g)
    done = torch.rand(T, G, E, generator=g)
    terminated = done < 0.15
    truncated = (done > 0.85)  # never together with terminated, as the core guarantees
    final_values = torch.randn(T, G, E, generator=g)
    bootstrap = torch.randn(G, E, generator=g)
    gamma = 0.9
    got = a2c.nstep_returns(rewards, terminated, truncated, final_values, bootstrap, gamma)
    ref = reference_nstep_returns(rewards.reshape(T, -1).numpy(), terminated.reshape(T, -1).numpy(),
                                  truncated.reshape(T, -1).numpy(), final_values.reshape(T, -1).numpy(),
                                  bootstrap.reshape(-1).numpy(), gamma)
    assert terminated.any() and truncated.any()
    np.testing.assert_allclose(got.reshape(T, -1).numpy(), ref, rtol=1e-5, atol=1e-6)


def test_nstep_returns_truncation_bootstraps_from_final_value():
    # one stream, 3 steps: step 1 is truncated; its return must use final_values[1], not step 2's return
    rewards = torch.tensor([[1.0], [0.0], [2.0]])
    terminated = torch.zeros(3, 1, dtype=torch.bool)
    truncated = torch.tensor([[False], [True], [False]])
    final_values = torch.tensor([[100.0], [10.0], [100.0]])
    bootstrap = torch.tensor([5.0])
    got = a2c.nstep_returns(rewards, terminated, truncated, final_values, bootstrap, 0.5)
    assert got[:, 0].tolist() == pytest.approx([1.0 + 0.5 * 5.0, 5.0, 2.0 + 0.5 * 5.0])


def test_categorical_never_samples_zero_probability_action():
    probs = torch.tensor([[0.0, 1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0, 2.0], [0.0, 0.5, 0.5, 0.0, 0.0]])
    for u in (0.0, 2.0 ** -24, 0.5, 1 - 2.0 ** -24):  # the extremes the 24-bit uniforms can take
        idx = rng.categorical(probs, torch.full((3,), u))
        assert (probs.gather(1, idx.unsqueeze(1)) > 0).all(), (u, idx.tolist())


def test_categorical_matches_probabilities():
    probs = torch.tensor([0.1, 0.0, 0.2, 0.3, 0.4])
    u = rng.uniform(0, 7, torch.arange(200_000))
    counts = torch.bincount(rng.categorical(probs.expand(len(u), 5), u), minlength=5).float() / len(u)
    np.testing.assert_allclose(counts.numpy(), probs.numpy(), atol=5e-3)


def test_clip_grad_per_agent_clips_each_agent_independently():
    g = torch.Generator().manual_seed(0)
    params = {"a": torch.zeros(3, 4, 2, requires_grad=True), "b": torch.zeros(3, 5, requires_grad=True)}
    grads = {"a": torch.randn(3, 4, 2, generator=g), "b": torch.randn(3, 5, generator=g)}
    scale = torch.tensor([10.0, 0.01, 1.0])  # agent 0 far above the limit, agent 1 far below
    for k, p in params.items():
        p.grad = grads[k] * scale.view(-1, *([1] * (p.dim() - 1)))
    before = {k: p.grad.clone() for k, p in params.items()}
    max_norm = 0.5
    norms = a2c.clip_grad_per_agent(params, max_norm)
    per_agent = lambda d: torch.sqrt(sum(v.reshape(3, -1).pow(2).sum(1) for v in d.values()))
    np.testing.assert_allclose(norms.numpy(), per_agent(before).numpy(), rtol=1e-6)
    after = per_agent({k: p.grad for k, p in params.items()})
    expected = torch.clamp(per_agent(before), max=max_norm)
    np.testing.assert_allclose(after.numpy(), expected.numpy(), rtol=1e-4)
    for k, p in params.items():
        # agent 1 (under the limit) untouched; every agent keeps its direction
        assert torch.equal(p.grad[1], before[k][1])
        for i in range(3):
            cos = torch.nn.functional.cosine_similarity(p.grad[i].flatten(), before[k][i].flatten(), dim=0)
            assert float(cos) == pytest.approx(1.0, abs=1e-6)


def test_train_agents_batch_equals_each_agent_alone():
    cfg = SourceConfig(hidden_size=16, nenvs=4, nsteps=5, env_steps=1000, lr=1e-2, seed=3)
    env = EnvConfig(grid_size=5, max_episode_steps=10, random_start=True)  # start uniforms are keyed per agent too
    goal_a, goal_b = 3, 17
    p_ab, h_ab = a2c.train_agents(env, cfg, [goal_a, goal_b], [0, 1])
    p_a, h_a = a2c.train_agents(env, cfg, [goal_a], [0])
    p_b, h_b = a2c.train_agents(env, cfg, [goal_b], [1])
    for k in p_ab:
        torch.testing.assert_close(p_ab[k][0], p_a[k][0], atol=1e-6, rtol=0)
        torch.testing.assert_close(p_ab[k][1], p_b[k][0], atol=1e-6, rtol=0)
        assert not torch.allclose(p_a[k], p_b[k])  # the two agents really differ
    for f in HIST_FIELDS:
        np.testing.assert_array_equal(getattr(h_ab, f)[:, :1], getattr(h_a, f), err_msg=f)
        np.testing.assert_array_equal(getattr(h_ab, f)[:, 1:], getattr(h_b, f), err_msg=f)


def test_train_agents_history_shape_and_consistency():
    cfg = SourceConfig(hidden_size=8, nenvs=3, nsteps=5, env_steps=600, lr=1e-2)
    params, h = a2c.train_agents(ENV, cfg, [0, 5], [0, 0])
    T = (600 // 15) * 5
    assert h.state.shape == (T, 2, 3)
    assert params["emb"].shape == (2, 25, 8)
    # within an episode, the next row's state is this row's next_state, and t counts up
    cont = ~(h.terminated[:-1] | h.truncated[:-1])
    assert np.array_equal(h.state[1:][cont], h.next_state[:-1][cont])
    assert np.array_equal(h.t[1:][cont], h.t[:-1][cont] + 1)
    assert np.all(h.t[1:][~cont] == 0) and np.all(h.state[1:][~cont] == 12)  # reset to the centre


def test_a2c_learns_on_small_room():
    cfg = SourceConfig(hidden_size=32, nenvs=10, nsteps=10, env_steps=10_000, lr=1e-2, seed=0)
    logs: list[a2c.AgentLog] = []
    corners = [0, 4, 19, 23]  # (0,0), (0,4), (4,0), (4,4): 4 steps from the centre
    a2c.train_agents(ENV, cfg, corners, [0] * 4, rt=SourceRuntime(log_every=5), on_log=logs.append)
    first = logs[0].stats["success_rate"]
    last = logs[-1].stats["success_rate"]
    assert first.mean() < 0.5
    assert (last > 0.8).all(), last
    assert (logs[-1].stats["episodic_length"] < 8).all()  # near the 4-step optimum


def test_a2c_losses_equal_a_hand_computation():
    """Two agents, two samples each, numbers worked out in plain Python: pins every term's
    sign and weight (a flipped entropy bonus or a squared-advantage critic would change it)."""
    cfg = SourceConfig(value_coef=0.5, entropy_coef=0.1)
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0, 0.0]],
                           [[1.0, 1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 3.0]]])      # [G=2, N=2, A=5]
    values = torch.tensor([[0.5, 0.0], [1.0, -1.0]])
    returns = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    actions = torch.tensor([[2, 0], [1, 4]])
    out = a2c.a2c_losses(logits.transpose(1, 2), values, actions, returns, cfg)          # takes [G, A, N]

    import math

    def logsoftmax(row):
        z = math.log(sum(math.exp(x) for x in row))
        return [x - z for x in row]

    want = {"actor": [], "critic": [], "entropy": [], "loss": []}
    for g in range(2):
        actor = critic = entropy = 0.0
        for n in range(2):
            lp = logsoftmax(logits[g, n].tolist())
            adv = float(returns[g, n] - values[g, n])
            actor += -lp[int(actions[g, n])] * adv / 2
            critic += adv * adv / 2
            entropy += -sum(math.exp(x) * x for x in lp) / 2
        want["actor"].append(actor)
        want["critic"].append(critic)
        want["entropy"].append(entropy)
        want["loss"].append(actor + 0.5 * critic - 0.1 * entropy)
    for k, v in want.items():
        torch.testing.assert_close(out[k], torch.tensor(v), rtol=1e-5, atol=1e-6, msg=k)
    # and the gradient of the entropy bonus raises the entropy of a peaked policy
    peaked = torch.tensor([[[4.0, 0.0, 0.0, 0.0, 0.0]]], requires_grad=True)
    only_entropy = SourceConfig(value_coef=0.0, entropy_coef=1.0)
    a2c.a2c_losses(peaked.transpose(1, 2), torch.zeros(1, 1), torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1),
                   only_entropy)["loss"].sum().backward()
    assert peaked.grad[0, 0, 0] > 0   # descending the loss lowers the dominant logit: more entropy


def test_seeds_per_goal_trains_several_distinct_agents_per_goal(tmp_path):
    """source.seeds_per_goal > 1: every goal gets that many agents, with their own randomness."""
    import dataclasses

    from adlib.histories import AGENT_FILE, HISTORY_FILE, goal_dir, read_columns
    from adlib.io import load_torch
    from adlib.sources import train_shard

    cfg = SourceConfig(hidden_size=8, nenvs=2, nsteps=5, env_steps=500, lr=1e-2, seeds_per_goal=3, shards=(0,))
    train_shard(ENV, cfg, 0, tmp_path / "shard_0", rt=SourceRuntime(workers=1))
    g = goal_dir(tmp_path / "shard_0", 7)
    agent = load_torch(g / AGENT_FILE)
    assert agent["params"]["emb"].shape[0] == 3 and agent["seeds"] == [0, 1, 2]
    assert not torch.equal(agent["params"]["emb"][0], agent["params"]["emb"][1])
    cols = read_columns(g / HISTORY_FILE, ["stream", "action"])
    streams = np.unique(cols["stream"])
    assert len(streams) == 3 * cfg.nenvs
    per_stream = [cols["action"][cols["stream"] == s] for s in streams]
    assert not np.array_equal(per_stream[0], per_stream[cfg.nenvs])   # seed 0's first env vs seed 1's
    one = dataclasses.replace(cfg, seeds_per_goal=1)
    train_shard(ENV, one, 0, tmp_path / "one", rt=SourceRuntime(workers=1))
    first = read_columns(goal_dir(tmp_path / "one", 7) / HISTORY_FILE, ["stream", "action"])
    # seed 0 of the 3-seed run is the 1-seed run's agent: agents are keyed by (goal, seed)
    np.testing.assert_array_equal(first["action"], cols["action"][cols["stream"] < cfg.nenvs])


def splitmix64(x: int) -> int:
    """SplitMix64's finaliser on Python ints (the published constants), a slow reference."""
    m = (1 << 64) - 1
    x = (x + 0x9E3779B97F4A7C15) & m
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m
    return x ^ (x >> 31)


def reference_uniform(seed: int, *keys: int) -> float:
    h = seed
    for k in keys:
        h = splitmix64(h ^ (k & ((1 << 64) - 1)))
    return (splitmix64(h) >> 40) / (1 << 24)


def test_uniform_and_its_chained_prefix_equal_a_python_splitmix_reference():
    keys, envs, counter = torch.tensor([[5], [1_000_008]]), torch.arange(3), torch.arange(2).view(2, 1, 1)
    want = torch.tensor([[[reference_uniform(11, 2, int(keys[a, 0]), e, c) for e in range(3)] for a in range(2)]
                         for c in range(2)])                                              # [2, 2, 3]
    prefix = rng.chain(11, 2, keys, envs)                                                 # [2, 3]
    assert torch.equal(rng.uniform(11, 2, keys, envs, counter).double(), want)
    assert torch.equal(rng.uniform_after(prefix, counter).double(), want)
    assert torch.equal(rng.uniform_after(rng.chain(rng.chain(11, 2), keys), envs, counter).double(), want)


def test_a_cdf_table_gathered_equals_the_cdf_of_the_gathered_rows():
    """What the A2C rollout relies on: cumulative sums of a policy table, then rows picked, are the
    cumulative sums of the picked rows, to the bit (so its draws equal rng.categorical's)."""
    g = torch.Generator().manual_seed(1)
    probs_tab = torch.softmax(torch.randn(6, 81, 5, generator=g) * 3, -1)                 # [G, S, A]
    obs = torch.randint(0, 81, (6, 40), generator=g)
    rows = a2c.gather_states(probs_tab, obs)                                               # [G, N, A]
    assert torch.equal(a2c.gather_states(probs_tab.cumsum(-1), obs), rows.cumsum(-1))
    u = torch.rand(6, 40, generator=g)
    assert torch.equal(rng.categorical_cdf(a2c.gather_states(probs_tab.cumsum(-1), obs), u), rng.categorical(rows, u))


@pytest.mark.parametrize("env", [ENV, EnvConfig(grid_size=5, max_episode_steps=6, random_start=True,
                                                  reward_mode="stand", terminate_on_goal=False),
                                 EnvConfig(kind="keydoor", grid_size=4, max_episode_steps=12, terminate_on_goal=False)],
                         ids=["default", "random_start_stand", "keydoor"])
def test_collect_rollout_equals_a_reference_loop_of_env_steps(env):
    """The rollout (Dark Room's cell-index path; Key-to-Door's dr.step path) against the reference:
    sample from each row's own probabilities, step with adlib.envs.darkroom.step, one step at a time."""
    from adlib.envs import darkroom as dr
    G, E, T = 3, 4, 25
    goals = dr.tasks_in_use(env)[torch.tensor([0, 7, 20])]
    g = torch.Generator().manual_seed(2)
    probs_tab = torch.softmax(torch.randn(G, dr.n_states(env), dr.N_ACTIONS, generator=g) * 2, -1)
    u_act = torch.rand(T, G, E, generator=g)
    u_start = torch.rand(T, G * E, generator=g) if env.random_start else None
    state0, obs0 = dr.reset(env, goals.repeat_interleave(E, 0), torch.rand(G * E, generator=g) if env.random_start else None)
    ro, state, obs = a2c.collect_rollout(env, state0, obs0.view(G, E), probs_tab, u_act, u_start)
    st, ob = state0, obs0.view(G, E)
    for k in range(T):
        p = probs_tab[torch.arange(G).view(G, 1), ob]                                    # [G, E, A]
        action = rng.categorical(p, u_act[k])
        out = dr.step(env, st, action.flatten(), None if u_start is None else u_start[k])
        want = (st.t.view(G, E), ob, action, out.reward.view(G, E), out.terminated.view(G, E),
                out.truncated.view(G, E), out.next_state.view(G, E))
        for f, w in zip(HIST_FIELDS, want):
            assert torch.equal(getattr(ro, f)[k], w), (f, k)
        st, ob = out.state, out.obs.view(G, E)
    assert torch.equal(obs, ob)
    for f in dr.EnvState._fields:
        assert torch.equal(getattr(state, f), getattr(st, f)), f


def test_episode_stats_equal_a_step_by_step_reference():
    """EpisodeStats.add_rollout (all steps at once) against the running sums taken one step at a
    time, over two rollouts (episodes carried across them), with rewards of 0, 1 and 2."""
    T, G, E = 12, 3, 4
    g = torch.Generator().manual_seed(5)
    rollouts = []
    for _ in range(2):
        done = torch.rand(T, G, E, generator=g) < 0.3
        term = done & (torch.rand(T, G, E, generator=g) < 0.5)
        rollouts.append(a2c.Transitions(t=torch.randint(0, 9, (T, G, E), generator=g), state=torch.zeros(T, G, E),
                                        action=torch.zeros(T, G, E), reward=torch.randint(0, 3, (T, G, E), generator=g).float(),
                                        terminated=term, truncated=done & ~term, next_state=torch.zeros(T, G, E)))
    stats = a2c.EpisodeStats(G, torch.device("cpu"), success_return=2)
    ep_ret = torch.zeros(G, E)
    want = {k: [0.0] * G for k in ("episodes", "episodic_return", "episodic_length", "success_rate")}
    running = [[0.0] * E for _ in range(G)]
    for ro in rollouts:
        ep_ret = stats.add_rollout(ro, ep_ret)
        for k in range(T):
            for a in range(G):
                for e in range(E):
                    running[a][e] += float(ro.reward[k, a, e])
                    if ro.terminated[k, a, e] or ro.truncated[k, a, e]:
                        want["episodes"][a] += 1
                        want["episodic_return"][a] += running[a][e]
                        want["episodic_length"][a] += int(ro.t[k, a, e]) + 1
                        want["success_rate"][a] += running[a][e] >= 2
                        running[a][e] = 0.0
        assert ep_ret.tolist() == running
    for k, v in want.items():
        assert stats.sums[k].tolist() == v, k
    assert min(want["episodes"]) > 3 and 0 < sum(want["success_rate"]) < sum(want["episodes"])
