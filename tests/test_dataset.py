"""The data path: source shards -> Parquet histories -> the AD dataset and its window loader."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from adlib.config import DatasetConfig, EnvConfig, ExplorerConfig, NoiseConfig, SourceConfig, SourceRuntime, SplitConfig
from adlib.dataset import DATA_FILE, KIND_A2C, KIND_EXPLORER, KIND_NOISE, HistoryDataset, build_dataset
from adlib.histories import (
    COLUMNS,
    SCHEMA,
    DataError,
    cut_and_subsample,
    episode_index,
    episode_table,
    find_source_goals,
    goal_dir,
    read_table,
    to_table,
    write_table,
)
from adlib.envs import darkroom as dr
from adlib.noise import EpsOptimal, Explorer, explorer_histories, noise_histories
from adlib.sources import train_shard
from adlib.tasks import split_goals

torch.set_num_threads(1)

ENV = EnvConfig(grid_size=5, max_episode_steps=10)
SRC = SourceConfig(hidden_size=8, nenvs=2, nsteps=10, env_steps=2000, lr=1e-2, seeds_per_goal=1, shards=(0, 1))
NOISE = NoiseConfig(streams_per_goal=2, transitions=200, schedule="episodes", decay_episodes=20, eps_start=1.0,
                    eps_end=0.0, seed=0)
DATA = DatasetConfig(history_len=1000, subsample=1, noise=NOISE)
PER_STREAM = DATA.history_len // SRC.nenvs


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> dict:
    """split -> two source shards -> dataset, all in a temporary folder, once for the module."""
    root = tmp_path_factory.mktemp("pipeline")
    split = split_goals(ENV, SplitConfig(seed=0, n_train=16))
    sources = root / "sources"
    for shard in SRC.shards:
        train_shard(ENV, SRC, shard, sources / f"shard_{shard}", rt=SourceRuntime(workers=1))
    meta = build_dataset(ENV, DATA, split, sources, 2, root / "dataset")
    return {"root": root, "split": split, "sources": sources, "data_dir": root / "dataset", "meta": meta}


def copy_sources(pipeline: dict, dst: Path) -> Path:
    shutil.copytree(pipeline["sources"], dst)
    return dst


# ---------------------------------------------------------------- Parquet files

def test_to_table_write_read_round_trip(tmp_path):
    gen = np.random.default_rng(0)
    n = 50
    cols = {"stream": np.repeat([0, 1], 25), "step": np.tile(np.arange(25), 2), "t": gen.integers(0, 20, n),
            "state": gen.integers(0, 81, n), "action": gen.integers(0, 5, n), "reward": gen.integers(0, 2, n),
            "terminated": gen.random(n) < 0.1, "truncated": gen.random(n) < 0.1, "next_state": gen.integers(0, 81, n)}
    path = tmp_path / "h.parquet"
    write_table(to_table(cols, metadata={"k": "v"}), path)
    table = read_table(path)
    for c in COLUMNS:
        np.testing.assert_array_equal(table.column(c).to_numpy(), cols[c], err_msg=c)
    assert table.schema.metadata[b"k"] == b"v"


def test_dataset_parquet_has_compact_types_and_zstd(pipeline):
    path = pipeline["data_dir"] / DATA_FILE
    schema = pq.read_schema(path)
    assert schema.names == [*COLUMNS, "goal", "kind", "variant"]
    for f in SCHEMA:
        assert schema.field(f.name).type == f.type, f.name
    assert schema.field("t").type == pa.uint16() and schema.field("action").type == pa.uint8()
    assert schema.field("goal").type == pa.uint16() and schema.field("kind").type == pa.uint8()
    assert schema.field("variant").type == pa.int8()
    md = pq.ParquetFile(path).metadata
    assert all(md.row_group(0).column(i).compression == "ZSTD" for i in range(md.num_columns))


def test_source_history_files_have_env_metadata_and_all_streams(pipeline):
    found = find_source_goals(pipeline["sources"], 2)
    assert sorted(found) == list(range(len(pipeline["split"]["cells"])))  # both shards: every goal
    table = read_table(found[3] / "history.parquet")
    assert b"env" in table.schema.metadata
    assert sorted(set(table.column("stream").to_numpy().tolist())) == list(range(SRC.nenvs))
    n_steps = (SRC.env_steps // (SRC.nenvs * SRC.nsteps)) * SRC.nsteps
    assert table.num_rows == SRC.nenvs * n_steps


def test_corrupt_parquet_raises_data_error_naming_file(pipeline, tmp_path):
    data_dir = tmp_path / "dataset"
    shutil.copytree(pipeline["data_dir"], data_dir)
    path = data_dir / DATA_FILE
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])  # truncated, as by an interrupted copy
    with pytest.raises(DataError, match=str(path)):
        HistoryDataset(data_dir)
    path.write_bytes(b"not a parquet file at all")
    with pytest.raises(DataError, match=str(path)):
        read_table(path)


def test_missing_history_file_raises_data_error_naming_file(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path / "nope.parquet")):
        read_table(tmp_path / "nope.parquet")


def test_foreign_parquet_raises_data_error(tmp_path):
    path = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1, 2, 3]}), path)
    with pytest.raises(DataError, match="missing columns"):
        read_table(path)


# ---------------------------------------------------------------- build_dataset

def test_held_out_goals_never_in_dataset(pipeline):
    split = pipeline["split"]
    table = read_table(pipeline["data_dir"] / DATA_FILE, columns=[*COLUMNS, "goal", "kind"])
    goals = set(np.unique(table.column("goal").to_numpy()).tolist())
    assert goals == set(split["train"])
    assert not goals & set(split["held_out"])
    assert pipeline["meta"]["held_out_goals"] == sorted(split["held_out"])


def test_history_dataset_rejects_injected_held_out_goal(pipeline, tmp_path):
    data_dir = tmp_path / "dataset"
    shutil.copytree(pipeline["data_dir"], data_dir)
    path = data_dir / DATA_FILE
    table = pq.read_table(path)
    goal = table.column("goal").to_numpy().copy()
    leak = pipeline["split"]["held_out"][0]
    goal[len(goal) // 2] = leak
    table = table.set_column(table.schema.get_field_index("goal"), "goal", pa.array(goal, pa.uint16()))
    pq.write_table(table, path, compression="zstd")
    HistoryDataset(pipeline["data_dir"])  # the original loads
    with pytest.raises(DataError, match=rf"held-out goals \[{leak}\]"):
        HistoryDataset(data_dir)


def test_missing_shard_names_missing_goals(pipeline, tmp_path):
    sources = copy_sources(pipeline, tmp_path / "sources")
    shutil.rmtree(sources / "shard_1")  # a partial `dvc pull`
    train = pipeline["split"]["train"]
    missing = [g for g in train if g % 2 == 1]
    with pytest.raises(DataError) as e:
        build_dataset(ENV, DATA, pipeline["split"], sources, 2, tmp_path / "out")
    assert str(missing) in str(e.value)
    assert not (tmp_path / "out" / DATA_FILE).exists()


def test_missing_goal_folder_names_that_goal(pipeline, tmp_path):
    sources = copy_sources(pipeline, tmp_path / "sources")
    goal = pipeline["split"]["train"][3]
    shutil.rmtree(goal_dir(sources / f"shard_{goal % 2}", goal))
    with pytest.raises(DataError, match=rf"training goals \[{goal}\] are missing"):
        build_dataset(ENV, DATA, pipeline["split"], sources, 2, tmp_path / "out")


def test_empty_sources_folder_raises(pipeline, tmp_path):
    (tmp_path / "sources").mkdir()
    with pytest.raises(DataError, match="0 goal folders found"):
        build_dataset(ENV, DATA, pipeline["split"], tmp_path / "sources", 2, tmp_path / "out")


def test_env_mismatch_with_sources_raises(pipeline, tmp_path):
    other = dataclasses.replace(ENV, max_episode_steps=11)
    with pytest.raises(DataError, match="rerun train_source_agents"):
        build_dataset(other, DATA, pipeline["split"], pipeline["sources"], 2, tmp_path / "out")


def test_history_len_longer_than_sources_raises(pipeline, tmp_path):
    too_long = dataclasses.replace(DATA, history_len=SRC.env_steps * 2)
    with pytest.raises(DataError, match="fewer than"):
        build_dataset(ENV, too_long, pipeline["split"], pipeline["sources"], 2, tmp_path / "out")


def test_a2c_streams_are_cut_at_history_len(pipeline):
    ds = HistoryDataset(pipeline["data_dir"])
    a2c = ds.cols["kind"][ds.starts] == KIND_A2C
    assert a2c.sum() == len(pipeline["split"]["train"]) * SRC.nenvs == pipeline["meta"]["a2c_streams"]
    assert (ds.lengths[a2c] == PER_STREAM).all()
    table = read_table(pipeline["data_dir"] / DATA_FILE)
    step = table.column("step").to_numpy()
    kind = pq.read_table(pipeline["data_dir"] / DATA_FILE, columns=["kind"]).column("kind").to_numpy()
    assert step[kind == KIND_A2C].max() == PER_STREAM - 1


def test_a2c_rows_match_source_history(pipeline):
    """The dataset's first stream of a goal is the first PER_STREAM rows of that goal's env 0."""
    ds = HistoryDataset(pipeline["data_dir"])
    goal = pipeline["split"]["train"][0]
    src = read_table(find_source_goals(pipeline["sources"], 2)[goal] / "history.parquet")
    s0 = src.column("stream").to_numpy() == 0
    first = ds.starts[0]
    assert ds.cols["goal"][first] == goal
    for c in ("t", "state", "action", "reward", "next_state"):
        np.testing.assert_array_equal(ds.cols[c][first:first + PER_STREAM],
                                      src.column(c).to_numpy()[s0][:PER_STREAM], err_msg=c)


def test_subsample_keeps_every_kth_episode_in_dataset(pipeline, tmp_path):
    k = 3
    cfg = dataclasses.replace(DATA, subsample=k, noise=dataclasses.replace(NOISE, streams_per_goal=0))
    build_dataset(ENV, cfg, pipeline["split"], pipeline["sources"], 2, tmp_path / "sub")
    table = read_table(tmp_path / "sub" / DATA_FILE, columns=[*COLUMNS, "goal"])
    goal = pipeline["split"]["train"][0]
    src = read_table(find_source_goals(pipeline["sources"], 2)[goal] / "history.parquet")
    scols = {c: src.column(c).to_numpy() for c in COLUMNS}
    ep = episode_index(scols["terminated"], scols["truncated"], scols["stream"])
    want = (scols["stream"] == 0) & (scols["step"] < PER_STREAM) & (ep % k == 0)
    got = (table.column("goal").to_numpy() == goal) & (table.column("stream").to_numpy() == 0)
    np.testing.assert_array_equal(table.column("step").to_numpy()[got], scols["step"][want])


# ---------------------------------------------------------------- cut / subsample on a hand-made stream

def hand_made() -> dict[str, np.ndarray]:
    # stream 7: episodes of lengths 3, 2, 4, 1 (the last unfinished), then stream 9: episodes 2, 2
    done7 = [0, 0, 1, 0, 1, 0, 0, 0, 1, 0]
    done9 = [0, 1, 0, 1]
    n = len(done7) + len(done9)
    term = np.array(done7 + done9, bool)
    trunc = np.zeros(n, bool)
    trunc[2], term[2] = True, False  # a truncation ends an episode just as a termination does
    return {"stream": np.array([7] * len(done7) + [9] * len(done9), np.int32),
            "step": np.concatenate([np.arange(len(done7)), np.arange(len(done9))]).astype(np.int32),
            "terminated": term, "truncated": trunc, "state": np.arange(n)}


def test_episode_index_per_stream():
    c = hand_made()
    assert episode_index(c["terminated"], c["truncated"], c["stream"]).tolist() == \
        [0, 0, 0, 1, 1, 2, 2, 2, 2, 3] + [0, 0, 1, 1]


def test_cut_keeps_first_steps_of_each_stream():
    out = cut_and_subsample(hand_made(), steps_per_stream=4, every=1)
    assert out["stream"].tolist() == [7, 7, 7, 7, 9, 9, 9, 9]
    assert out["step"].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]


def test_subsample_keeps_every_kth_episode():
    out = cut_and_subsample(hand_made(), steps_per_stream=100, every=2)
    # stream 7 keeps episodes 0 and 2, stream 9 keeps episode 0
    assert out["state"].tolist() == [0, 1, 2, 5, 6, 7, 8] + [10, 11]
    out = cut_and_subsample(hand_made(), steps_per_stream=6, every=2)  # cut first, then subsample
    assert out["state"].tolist() == [0, 1, 2, 5] + [10, 11]


# ---------------------------------------------------------------- AD^eps noise histories

def test_noise_streams_have_exact_transition_count():
    """Every stream is exactly ``transitions`` steps long whatever its goal's distance (a
    count of episodes would make near goals' streams shorter than a training window)."""
    cfg = dataclasses.replace(NOISE, streams_per_goal=3, transitions=25)
    goals = [0, 5, 13, 17]                                 # 13: next to the start (2, 2); 0: a corner
    cols = noise_histories(ENV, cfg, goals)
    n_streams = len(goals) * cfg.streams_per_goal
    assert sorted(set(cols["stream"].tolist())) == list(range(n_streams))
    assert np.bincount(cols["stream"], minlength=n_streams).tolist() == [25] * n_streams
    for s in range(n_streams):
        assert cols["step"][cols["stream"] == s].tolist() == list(range(25))
    assert (cols["terminated"] | cols["truncated"]).sum() > n_streams      # several episodes per stream


@pytest.mark.parametrize("random_start", [False, True])
def test_noise_streams_of_a_goal_do_not_depend_on_the_other_goals(random_start):
    """Keyed draws: goal 5's streams are the same alone and beside other goals (a batch-wide
    generator would hand it other random numbers when the goal list changes)."""
    env = dataclasses.replace(ENV, random_start=random_start)
    cfg = dataclasses.replace(NOISE, streams_per_goal=2, transitions=150, decay_episodes=10)
    alone = noise_histories(env, cfg, [5])
    beside = noise_histories(env, cfg, [0, 5, 17])
    rows = (beside["stream"] >= 2) & (beside["stream"] < 4)                 # goal 5 is the second goal
    for k in ("state", "action", "reward", "next_state", "t"):
        assert np.array_equal(alone[k], beside[k][rows]), k
    again = noise_histories(env, dataclasses.replace(cfg, seed=cfg.seed + 1), [5])
    assert not np.array_equal(alone["action"], again["action"][: len(alone["action"])])   # the seed matters


def test_noise_success_rises_as_eps_decays():
    cfg = dataclasses.replace(NOISE, streams_per_goal=4, transitions=400, decay_episodes=30)
    cols = noise_histories(ENV, cfg, [0, 4, 19, 23])
    table = episode_table(cols)                              # finished episodes only
    for s in range(int(cols["stream"].max()) + 1):
        mine = table["stream"] == s
        success, length = table["success"][mine], table["length"][mine]
        assert len(success) > 45                             # 30 noisy episodes, then short walks
        assert success[-10:].all()                           # eps_end = 0: the shortest path always arrives
        assert length[-10:].max() <= 4                       # corners are 4 steps away
    early = np.mean([table["success"][table["stream"] == s][:5].mean() for s in range(16)])
    assert early < 0.6                                       # eps_start = 1: mostly random walks


def test_noise_first_reward_schedule_searches_at_eps_start_then_exploits_at_once():
    """schedule 'first_reward', decay 0: every episode after a stream's first success is a
    shortest path (eps_end = 0), while the episodes before it are as noisy as eps_start says."""
    cfg = dataclasses.replace(NOISE, streams_per_goal=8, transitions=400, eps_start=0.7, decay_episodes=0,
                              schedule="first_reward")
    goals = [0, 4, 19, 23]                                   # the four corners (goal ids skip the centre)
    table = episode_table(noise_histories(ENV, cfg, goals))
    before = []
    for s in range(len(goals) * 8):
        mine = table["stream"] == s
        success, length = table["success"][mine], table["length"][mine]
        first = int(np.argmax(success))
        assert success.any() and success[first + 1:].all(), s
        assert (length[first + 1:] == 4).all(), s            # shortest path from the centre
        before.append(length[:first + 1].mean())
    assert np.mean(before) > 6                              # eps 0.7 walks: far longer than 4 steps


def _eps_sequence(cfg: NoiseConfig, t: list[int], prev_reward: list[int]) -> list[float]:
    """eps of one run of EpsOptimal fed a made-up sequence of in-episode timesteps and previous
    rewards (2 = 'none', the first step of a run)."""
    env = EnvConfig(grid_size=5, max_episode_steps=4, terminate_on_goal=False)
    state, obs = dr.reset(env, dr.tasks_in_use(env)[:1], None)
    pol, out = EpsOptimal(cfg), []
    for tt, r in zip(t, prev_reward):
        pol(obs, torch.tensor([tt]), {"prev_reward": torch.tensor([r])}, state)
        out.append(round(float(pol.eps()[0]), 6))
    return out


def test_noise_eps_schedules_step_by_step():
    """Four 4-step episodes, the first reward paid mid-episode 2 (on its 2nd step; no termination):
    'episodes' falls from the run's start (the old formula, eps_start + (end - start) * min(e / D, 1));
    'first_reward' holds eps_start until the step after that reward, then counts the episodes after
    the paying one; decay 0 drops to eps_end at once."""
    t = [0, 1, 2, 3] * 4
    r = [2, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    base = NoiseConfig(eps_start=0.8, eps_end=0.2, decay_episodes=2, schedule="episodes")
    per_episode = lambda e: [e] * 4
    assert _eps_sequence(base, t, r) == per_episode(0.8) + per_episode(0.5) + per_episode(0.2) + per_episode(0.2)
    fr = dataclasses.replace(base, schedule="first_reward")
    assert _eps_sequence(fr, t, r) == [0.8] * 4 + [0.8] * 4 + per_episode(0.5) + per_episode(0.2)
    assert _eps_sequence(dataclasses.replace(fr, decay_episodes=0), t, r) == [0.8] * 6 + [0.2] * 10
    # a reward on an episode's last step (seen as the next episode's first prev_reward): that next
    # episode is the first one after the paying episode
    r_last = [2, 0, 0, 0, 1] + [0] * 11
    assert _eps_sequence(fr, t, r_last) == [0.8] * 4 + per_episode(0.5) + per_episode(0.2) + per_episode(0.2)


def test_explorer_finds_every_goal_of_a_9x9_room_then_walks_shortest_paths():
    """The systematic explorer: first success within 6 episodes on all 80 goals (a random walk
    takes hundreds on far goals); from then on every episode is a shortest path."""
    room = EnvConfig()
    cols = explorer_histories(room, ExplorerConfig(streams_per_goal=1, transitions=300), list(range(80)))
    table = episode_table(cols)
    d = dr.shortest_path(room, torch.tensor(dr.start_pos(room)), dr.tasks_in_use(room)).numpy()
    for s in range(80):
        mine = table["stream"] == s
        success, length = table["success"][mine], table["length"][mine]
        first = int(np.argmax(success))
        assert success[first] and first <= 5, (s, first)
        assert success[first:].all() and (length[first + 1:] == d[s]).all(), s


def test_explorer_never_reads_the_goal_from_the_env_state():
    """Same logits whatever goal the env state carries: it learns the goal from rewards only."""
    room = EnvConfig()
    obs = torch.tensor([40, 40])
    prev = {"prev_action": torch.tensor([5, 5]), "prev_reward": torch.tensor([2, 2]),
            "prev_next_state": torch.tensor([81, 81])}
    a = Explorer(room)(obs, torch.zeros(2, dtype=torch.long), prev,
                       dr.EnvState(torch.tensor([[4, 4], [4, 4]]), torch.tensor([[0, 0], [8, 8]]), torch.zeros(2),
                                   torch.zeros(2, dtype=torch.long)))
    assert torch.equal(a[0], a[1]) and torch.isfinite(a[0]).sum() == 4      # any of the 4 neighbours


def test_explorer_streams_in_dataset_have_their_own_kind(tmp_path, pipeline):
    cfg = dataclasses.replace(DATA, explorer=ExplorerConfig(streams_per_goal=2, transitions=100))
    meta = build_dataset(ENV, cfg, pipeline["split"], pipeline["sources"], 2, tmp_path / "ds")
    ds = HistoryDataset(tmp_path / "ds")
    kinds = ds.cols["kind"][ds.starts]
    n_train = len(pipeline["split"]["train"])
    assert (kinds == KIND_EXPLORER).sum() == 2 * n_train == meta["explorer_streams"]
    assert (kinds == KIND_NOISE).sum() == NOISE.streams_per_goal * n_train == meta["noise_streams"]
    assert (ds.lengths[kinds == KIND_EXPLORER] == 100).all()


def test_noise_streams_in_dataset_cover_train_goals(pipeline):
    ds = HistoryDataset(pipeline["data_dir"])
    noise = ds.cols["kind"][ds.starts] == KIND_NOISE
    assert noise.sum() == len(pipeline["split"]["train"]) * NOISE.streams_per_goal == pipeline["meta"]["noise_streams"]
    per_goal = np.bincount(ds.cols["goal"][ds.starts][noise])
    assert set(np.flatnonzero(per_goal).tolist()) == set(pipeline["split"]["train"])
    assert set(per_goal[per_goal > 0].tolist()) == {NOISE.streams_per_goal}


# ---------------------------------------------------------------- HistoryDataset windows

def test_windows_are_consecutive_rows_of_one_stream(pipeline):
    ds = HistoryDataset(pipeline["data_dir"])
    L = 32
    rows = ds.sample_starts(np.random.default_rng(0), 256, L)
    idx = rows[:, None] + np.arange(L)
    assert (ds.cols["stream"][idx] == ds.cols["stream"][rows][:, None]).all()
    w = ds.windows(rows, L)
    for k in ds.FIELDS:
        assert w[k].shape == (256, L)
        np.testing.assert_array_equal(w[k], ds.cols[k][idx], err_msg=k)
    np.testing.assert_array_equal(w["goal"], ds.cols["goal"][rows])
    assert (w["t"][:, 1:] != 0).any()


def test_windows_prev_fields_equal_previous_row(pipeline):
    ds = HistoryDataset(pipeline["data_dir"])
    L = 16
    rows = ds.sample_starts(np.random.default_rng(1), 64, L)
    rows = rows[rows > 0]
    w = ds.windows(rows, L)
    for f in ("action", "reward", "next_state"):
        np.testing.assert_array_equal(w[f"prev_{f}"][:, 1:], w[f][:, :-1], err_msg=f)
    not_first = ds.cols["stream"][rows - 1] == ds.cols["stream"][rows]
    np.testing.assert_array_equal(w["prev_action"][not_first, 0], ds.cols["action"][rows - 1][not_first])
    # within an episode the previous transition's next_state is this row's state
    np.testing.assert_array_equal(w["prev_next_state"][:, 1:][w["t"][:, 1:] > 0], w["state"][:, 1:][w["t"][:, 1:] > 0])


def test_windows_prev_fields_are_none_at_stream_start(pipeline):
    ds = HistoryDataset(pipeline["data_dir"])
    L = 8
    w = ds.windows(ds.starts, L)
    n_states = ENV.grid_size ** 2
    assert (w["prev_action"][:, 0] == 5).all()
    assert (w["prev_reward"][:, 0] == 2).all()
    assert (w["prev_next_state"][:, 0] == n_states).all()
    assert (w["prev_action"][:, 1:] < 5).all() and (w["prev_next_state"][:, 1:] < n_states).all()


def test_sample_starts_cover_every_stream_and_never_cross_a_boundary(pipeline):
    ds = HistoryDataset(pipeline["data_dir"])
    L = 40
    rows = ds.sample_starts(np.random.default_rng(2), 20_000, L)
    stream_of = np.searchsorted(ds.starts, rows, side="right") - 1
    assert (rows + L <= ds.starts[stream_of] + ds.lengths[stream_of]).all()
    long_enough = np.flatnonzero(ds.lengths >= L)
    assert set(stream_of.tolist()) == set(long_enough.tolist())


def test_window_longer_than_every_stream_raises(pipeline):
    ds = HistoryDataset(pipeline["data_dir"])
    with pytest.raises(DataError, match="dt.seq_len"):
        ds.window_starts(int(ds.lengths.max()) + 1)


def test_history_dataset_rejects_other_env(pipeline):
    with pytest.raises(DataError, match="rerun build_history_dataset"):
        HistoryDataset(pipeline["data_dir"], env_cfg=dataclasses.replace(ENV, grid_size=7))


def test_a2c_streams_per_goal_keeps_each_goals_first_streams(pipeline, tmp_path):
    cfg = dataclasses.replace(DATA, a2c_streams_per_goal=1)
    meta = build_dataset(ENV, cfg, pipeline["split"], pipeline["sources"], 2, tmp_path / "one")
    assert meta["a2c_streams"] == len(pipeline["split"]["train"]) != pipeline["meta"]["a2c_streams"]
    ds = HistoryDataset(tmp_path / "one")
    goal = pipeline["split"]["train"][0]
    src = read_table(find_source_goals(pipeline["sources"], 2)[goal] / "history.parquet")
    first = src.column("stream").to_numpy() == src.column("stream").to_numpy().min()
    rows = (ds.cols["goal"] == goal) & (ds.cols["kind"] == KIND_A2C)
    np.testing.assert_array_equal(ds.cols["action"][rows], src.column("action").to_numpy()[first][:PER_STREAM])
