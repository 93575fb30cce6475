"""The AD transformer: token layouts, the terminal-reward carry-over of the transition layout,
KV-cache decoding against full recomputation, and the cache's overflow guard."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers_dt import ENV, tiny_model_cfg, tiny_pipeline

from adlib.dataset import HistoryDataset
from adlib.envs import darkroom as dr
from adlib.histories import read_table
from adlib.incontext import ContextPlayer, keep_on_refill
from adlib.model import ADTransformer, KVCache

torch.set_num_threads(1)

N_STATES = ENV.grid_size ** 2
LAYOUTS = ("transition", "triplet")
EMBEDDINGS = ("coords", "table")


def make_model(layout: str = "transition", state_embedding: str = "coords", seq_len: int = 8, seed: int = 0,
               **kw) -> ADTransformer:
    torch.manual_seed(seed)
    model = ADTransformer(tiny_model_cfg(layout, state_embedding, seq_len, **kw)).eval()
    # spread the embeddings well beyond the 0.02 init so that every input visibly moves the logits
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "emb" in name:
                p.normal_(0.0, 1.0)
            elif name.endswith("qkv.weight"):
                p.normal_(0.0, 0.3)   # sharp attention: context matters
    return model


def random_seq(B: int, L: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A consistent history: prev_* of transition i are the fields of transition i - 1
    ('none' at i = 0), episodes of random lengths with t counting from 0."""
    g = torch.Generator().manual_seed(seed)
    state = torch.randint(0, N_STATES, (B, L), generator=g)
    action = torch.randint(0, dr.N_ACTIONS, (B, L), generator=g)
    reward = torch.randint(0, 2, (B, L), generator=g)
    next_state = torch.randint(0, N_STATES, (B, L), generator=g)
    t = torch.zeros(B, L, dtype=torch.long)
    for i in range(1, L):
        t[:, i] = torch.where(torch.rand(B, generator=g) < 0.25, 0, (t[:, i - 1] + 1).clamp(max=ENV.max_episode_steps))
    f = {"state": state, "t": t, "action": action, "reward": reward}
    f["prev_action"] = torch.cat([torch.full((B, 1), dr.N_ACTIONS), action[:, :-1]], 1)
    f["prev_reward"] = torch.cat([torch.full((B, 1), 2), reward[:, :-1]], 1)
    f["prev_next_state"] = torch.cat([torch.full((B, 1), N_STATES), next_state[:, :-1]], 1)
    return f


def col(f: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
    return {k: v[:, i:i + 1] for k, v in f.items()}


# ---------------------------------------------------------------- (a) layouts and shapes

@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("emb", EMBEDDINGS)
def test_forward_shapes_and_loss(layout, emb):
    model = make_model(layout, emb)
    B, L = 3, 8
    f = random_seq(B, L)
    logits, loss = model(f)
    assert logits.shape == (B, L, dr.N_ACTIONS) and loss is None
    logits2, loss = model(f, targets=f["action"])
    assert torch.equal(logits, logits2)
    assert loss.shape == () and torch.isfinite(loss)
    want = torch.nn.functional.cross_entropy(logits.reshape(-1, dr.N_ACTIONS), f["action"].reshape(-1))
    torch.testing.assert_close(loss, want)
    tokens = model.embed(f)
    assert tokens.shape == (B, L * model.cfg.tokens_per_transition, model.cfg.embedding_dim)
    assert model.cfg.block_size == L * model.cfg.tokens_per_transition


@pytest.mark.parametrize("emb", EMBEDDINGS)
def test_triplet_tokens_are_state_action_reward_in_order(emb):
    model = make_model("triplet", emb)
    B, L = 2, 5
    f = random_seq(B, L)
    x = model.embed(f)
    assert x.shape == (B, 3 * L, model.cfg.embedding_dim)
    te = model.type_emb.weight
    torch.testing.assert_close(x[:, 0::3], model.state_emb(f["state"]) + model.time_emb(f["t"]) + te[0])
    torch.testing.assert_close(x[:, 1::3], model.action_emb(f["action"]) + te[1])
    torch.testing.assert_close(x[:, 2::3], model.reward_emb(f["reward"]) + te[2])
    # behaviourally: changing one field of transition 2 moves exactly one token
    for key, tok in (("state", 0), ("action", 1), ("reward", 2)):
        g = {k: v.clone() for k, v in f.items()}
        hi = {"state": N_STATES, "action": dr.N_ACTIONS, "reward": 2}[key]
        g[key][:, 2] = (g[key][:, 2] + 1) % hi
        changed = (model.embed(g) != x).any(-1).any(0).nonzero().flatten().tolist()
        assert changed == [3 * 2 + tok], key


@pytest.mark.parametrize("layout", LAYOUTS)
def test_logits_are_causal(layout):
    """Nothing of a later transition (nor this transition's own action/reward) reaches a logit."""
    model = make_model(layout)
    f = random_seq(2, 8)
    logits, _ = model(f)
    g = {k: v.clone() for k, v in f.items()}
    g["state"][:, 5:] = (g["state"][:, 5:] + 3) % N_STATES
    g["action"][:, 4:] = (g["action"][:, 4:] + 1) % dr.N_ACTIONS   # action 4 is the target at 4
    g["reward"][:, 4:] = 1 - g["reward"][:, 4:]
    logits2, _ = model(g)
    torch.testing.assert_close(logits2[:, :5], logits[:, :5], rtol=0, atol=1e-6)
    assert (logits2[:, 5:] - logits[:, 5:]).abs().max() > 1e-3


def test_state_embeddings_differ_in_parameters():
    coords = make_model("transition", "coords")
    table = make_model("transition", "table")
    assert coords.state_emb.row.weight.shape == (ENV.grid_size + 1, 16)
    assert table.state_emb.table.weight.shape == (N_STATES + 1, 16)
    # coords: cells of one row share the row vector
    s = torch.tensor([[0, 1, 5]])
    e = coords.state_emb(s)
    torch.testing.assert_close(e[0, 0] - e[0, 1], coords.state_emb.col.weight[0] - coords.state_emb.col.weight[1])
    none = coords.state_emb(torch.tensor([[N_STATES]]))
    torch.testing.assert_close(none[0, 0], coords.state_emb.row.weight[ENV.grid_size] + coords.state_emb.col.weight[ENV.grid_size])


# ---------------------------------------------------------------- (b) terminal-reward carry-over

@pytest.mark.parametrize("emb", EMBEDDINGS)
def test_first_token_of_episode_carries_previous_reward_and_reached_cell(emb):
    model = make_model("transition", emb)
    f = random_seq(1, 8, seed=3)
    j = 4
    f["t"][0, j] = 0                     # an episode starts at j ...
    f["t"][0, j + 1:] = torch.arange(1, 8 - j)
    f["prev_reward"][0, j] = 0
    logits, _ = model(f)
    for key, new in (("prev_reward", 1), ("prev_next_state", (int(f["prev_next_state"][0, j]) + 7) % N_STATES)):
        g = {k: v.clone() for k, v in f.items()}
        g[key][0, j] = new               # ... and the previous one ended with this outcome
        logits2, _ = model(g)
        torch.testing.assert_close(logits2[:, :j], logits[:, :j], rtol=0, atol=1e-6)
        assert (logits2[0, j] - logits[0, j]).abs().max() > 1e-3, key
        assert (logits2[0, j + 1:] - logits[0, j + 1:]).abs().max() > 1e-4, key  # and it stays in context


def test_dataset_windows_carry_terminal_reward_into_next_episode(tmp_path_factory):
    pipe = tiny_pipeline(tmp_path_factory.mktemp("pipe"))
    ds = HistoryDataset(pipe["data_dir"])
    term = read_table(pipe["data_dir"] / "histories.parquet", columns=["terminated"]).column("terminated").to_numpy()
    stream = ds.cols["stream"]
    ends = np.flatnonzero(term[:-1] & (stream[:-1] == stream[1:]))   # terminated, and the stream goes on
    assert len(ends) > 100
    rows = ends + 1
    L = 4
    rows = rows[rows + L <= len(stream)]
    w = ds.windows(rows, L)
    goal_cells = dr.tasks_in_use(ENV)[torch.from_numpy(ds.cols["goal"][rows].astype(np.int64))]
    goal_idx = (goal_cells[:, 0] * ENV.grid_size + goal_cells[:, 1]).numpy()
    assert (w["t"][:, 0] == 0).all()                       # a new episode ...
    assert (w["prev_reward"][:, 0] == 1).all()              # ... carries the last reward
    np.testing.assert_array_equal(w["prev_next_state"][:, 0], goal_idx)   # and the reached goal cell
    np.testing.assert_array_equal(w["prev_action"][:, 0], ds.cols["action"][rows - 1])
    assert (w["state"][:, 0] == (ENV.grid_size // 2) * ENV.grid_size + ENV.grid_size // 2).all()   # back at the start
    # inside a window too: the token after a terminated transition sees reward 1 and the goal
    starts = rows - 2
    starts = starts[(starts >= 0) & (stream[np.maximum(starts, 0)] == stream[rows])]
    w2 = ds.windows(starts, L)
    assert (w2["prev_reward"][:, 2] == 1).all() and (w2["t"][:, 2] == 0).all()
    assert (w2["reward"][:, 1] == 1).all()
    np.testing.assert_array_equal(w2["prev_next_state"][:, 2], w2["next_state"][:, 1])


# ---------------------------------------------------------------- (c) KV cache vs full recomputation

def drive(player: ContextPlayer, f: dict[str, torch.Tensor], steps: int) -> tuple[list[torch.Tensor], list[int]]:
    """Feed transition i of ``f`` to the player, step by step; collect logits and window starts."""
    out, starts = [], []
    for i in range(steps):
        prev = {k: f[k][:, i] for k in ("prev_action", "prev_reward", "prev_next_state")}
        out.append(player.act_logits(f["state"][:, i], f["t"][:, i], prev))
        starts.append(player.start)
        player.record_outcome(f["action"][:, i], f["reward"][:, i].float())
    return out, starts


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("emb", EMBEDDINGS)
def test_context_player_cache_equals_full_recomputation(layout, emb):
    seq_len, steps, B = 8, 29, 3
    model = make_model(layout, emb, seq_len=seq_len)
    f = random_seq(B, steps, seed=1)
    cached = ContextPlayer(model, B, steps, torch.device("cpu"), use_cache=True)
    full = ContextPlayer(model, B, steps, torch.device("cpu"), use_cache=False)
    got, starts = drive(cached, f, steps)
    want, starts_full = drive(full, f, steps)
    assert starts == starts_full
    assert starts[seq_len - 1] == 0 and starts[seq_len] > 0   # overflow at step seq_len: re-prefill
    # periodic re-prefill: keep the last 3/4 of the window, then decode until it is full again
    keep = keep_on_refill(seq_len)
    assert keep == 6
    want_starts, s = [], 0
    for i in range(steps):
        if i - s + 1 > seq_len:
            s = i + 1 - keep
        want_starts.append(s)
    assert starts == want_starts
    # a re-prefill every seq_len - keep + 1 steps: 7 in 29 steps (at 8, 11, ..., 26)
    assert len(set(starts)) == 1 + -(-(steps - seq_len) // (seq_len - keep + 1)) == 8
    for i, (a, b) in enumerate(zip(got, want)):
        assert a.shape == (B, dr.N_ACTIONS)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5, msg=f"step {i}")
    # and each logit is the full forward pass over exactly the window [start, i]
    for i in (0, seq_len - 1, seq_len, steps - 1):
        window = {k: v[:, starts[i]:i + 1] for k, v in f.items()}
        logits, _ = model(window)
        torch.testing.assert_close(got[i], logits[:, -1], rtol=0, atol=1e-5, msg=f"step {i}")
    assert max(i + 1 - s for i, s in enumerate(starts)) == seq_len   # the window never exceeds seq_len


def test_context_player_ignores_unrecorded_action_memory():
    """The newest transition's action/reward are unknown when it acts; whatever its buffer holds
    (``torch.empty`` memory) must not reach an embedding (triplet embeds whole windows)."""
    model = make_model("triplet", seq_len=4)
    B, steps = 2, 9
    f = random_seq(B, steps, seed=2)
    ref, _ = drive(ContextPlayer(model, B, steps, torch.device("cpu"), use_cache=False), f, steps)
    for use_cache in (True, False):
        player = ContextPlayer(model, B, steps, torch.device("cpu"), use_cache=use_cache)
        player.hist["action"].fill_(10**9)   # what uninitialised memory may hold
        player.hist["reward"].fill_(-7)
        got, _ = drive(player, f, steps)
        for a, b in zip(got, ref):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_decode_step_by_step_equals_forward(layout):
    seq_len, B = 12, 3
    model = make_model(layout, seq_len=seq_len)
    f = random_seq(B, seq_len, seed=4)
    logits, _ = model(f)
    cache = KVCache(model.cfg, B, "cpu")
    with torch.no_grad():
        for i in range(seq_len):
            out = model.decode(col(f, i), cache, first=(i == 0))
            torch.testing.assert_close(out, logits[:, i], rtol=0, atol=1e-5, msg=f"step {i}")
    assert cache.pos == model.cfg.block_size - (2 if layout == "triplet" else 0)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_prefill_then_decode_equals_forward(layout):
    """A multi-token chunk through the cache (the masked path) then single-token decodes."""
    seq_len, B, k = 10, 2, 6
    model = make_model(layout, seq_len=seq_len)
    f = random_seq(B, seq_len, seed=5)
    logits, _ = model(f)
    cache = KVCache(model.cfg, B, "cpu")
    with torch.no_grad():
        x = model.embed({key: v[:, :k] for key, v in f.items()})
        if layout == "triplet":
            x = x[:, :-2]
        h = model.trunk(x, cache)
        torch.testing.assert_close(model.head(h[:, -1]), logits[:, k - 1], rtol=0, atol=1e-5)
        for i in range(k, seq_len):
            torch.testing.assert_close(model.decode(col(f, i), cache, first=False), logits[:, i], rtol=0, atol=1e-5)


# ---------------------------------------------------------------- (d) KV cache overflow

@pytest.mark.parametrize("layout", LAYOUTS)
def test_kv_cache_overflow_raises(layout):
    model = make_model(layout, seq_len=4)
    cache = KVCache(model.cfg, 1, "cpu")
    assert cache.capacity == model.cfg.block_size
    hd = model.cfg.embedding_dim // model.cfg.num_heads
    kv = torch.zeros(1, model.cfg.num_heads, cache.capacity, hd)
    cache.write(0, kv, kv)
    cache.advance(cache.capacity)
    with pytest.raises(RuntimeError, match="KV cache overflow"):
        cache.write(0, kv[:, :, :1], kv[:, :, :1])
    # through the model: decoding one transition more than the window holds
    f = random_seq(1, 5, seed=6)
    cache = KVCache(model.cfg, 1, "cpu")
    with torch.no_grad():
        for i in range(4):
            model.decode(col(f, i), cache, first=(i == 0))
        with pytest.raises(RuntimeError, match="KV cache overflow"):
            model.decode(col(f, 4), cache, first=False)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("use_cache", (True, False))
def test_retired_runs_leave_the_batch_and_the_others_play_on_unchanged(layout, use_cache):
    """ContextPlayer.retire drops finished runs (cache and history rows) once they are an eighth
    of the batch; the kept runs' logits equal those of a player that kept everyone, across
    window re-prefills, and the retired runs get zero logits."""
    seq_len, steps, B = 8, 30, 8
    model = make_model(layout, seq_len=seq_len)
    f = random_seq(B, steps, seed=6)
    ref, _ = drive(ContextPlayer(model, B, steps, torch.device("cpu"), use_cache), f, steps)
    player = ContextPlayer(model, B, steps, torch.device("cpu"), use_cache)
    live = torch.ones(B, dtype=torch.bool)
    got, kept = [], []
    for i in range(steps):
        if i == 5:
            live[[1, 6]] = False
        if i == 12:
            live[3] = False
        player.retire(live)
        kept.append(player.rows.tolist())
        prev = {k: f[k][:, i] for k in ("prev_action", "prev_reward", "prev_next_state")}
        got.append(player.act_logits(f["state"][:, i], f["t"][:, i], prev))
        player.record_outcome(f["action"][:, i], f["reward"][:, i].float())
    assert kept[4] == list(range(8)) and kept[5] == [0, 2, 3, 4, 5, 7] and kept[-1] == [0, 2, 4, 5, 7]
    assert player.hist["state"].shape[0] == 5 and (not use_cache or player.cache.k.shape[1] == 5)
    for i, (a, b) in enumerate(zip(got, ref)):
        rows = torch.tensor(kept[i])
        torch.testing.assert_close(a[rows], b[rows], rtol=0, atol=1e-5, msg=f"step {i}")
        out = torch.ones(B, dtype=torch.bool)
        out[rows] = False
        assert (a[out] == 0).all(), i


def test_retire_waits_until_an_eighth_of_the_batch_is_done():
    model = make_model("transition", seq_len=8)
    player = ContextPlayer(model, 16, 4, torch.device("cpu"))
    live = torch.ones(16, dtype=torch.bool)
    live[3] = False                      # 1 of 16: below an eighth, stays
    player.retire(live)
    assert len(player.rows) == 16
    live[9] = False                      # 2 of 16: an eighth, both leave
    player.retire(live)
    assert player.rows.tolist() == [r for r in range(16) if r not in (3, 9)]
