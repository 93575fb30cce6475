"""train_source_agents checkpoints periodically and a killed run resumes to the same result."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from adlib.a2c import train_agents
from adlib.transitions import FIELDS
from adlib.config import EnvConfig, SourceConfig, SourceRuntime, to_dict

torch.set_num_threads(1)

ENV = EnvConfig(grid_size=5, max_episode_steps=10)
SRC = SourceConfig(hidden_size=8, nenvs=4, nsteps=5, env_steps=6000, lr=1e-2, seeds_per_goal=1, shards=(0,))
RT = SourceRuntime(log_every=10, checkpoint_every=100, workers=1)


def test_resume_from_checkpoint_equals_uninterrupted_training():
    ckpts: list[dict] = []
    p1, h1 = train_agents(ENV, SRC, [0, 3, 7], [0, 0, 1], rt=RT, on_checkpoint=ckpts.append)
    assert [c["update"] for c in ckpts] == [100, 200]
    logs = []
    p2, h2 = train_agents(ENV, SRC, [0, 3, 7], [0, 0, 1], rt=RT, on_log=logs.append, resume=ckpts[0])
    assert all(torch.equal(p1[k], p2[k]) for k in p1)
    assert all(np.array_equal(getattr(h1, f), getattr(h2, f)) for f in FIELDS)
    assert [e.update for e in logs] == list(range(10, 301, 10))      # logs before the checkpoint replayed


def test_checkpoint_is_a_snapshot_not_live_state():
    ckpts: list[dict] = []
    train_agents(ENV, SRC, [5], [0], rt=RT, on_checkpoint=ckpts.append)
    steps = [c["optimizer"]["state"][0]["step"].item() for c in ckpts]
    assert steps == [100, 200]


def test_shard_ignores_a_resume_checkpoint_written_with_other_params(tmp_path):
    """A checkpoint of another learning rate must not be continued with this one."""
    import logging

    from adlib.histories import HISTORY_FILE, goal_dir
    from adlib.io import fingerprint, save_torch
    from adlib.sources import RESUME_FORMAT, train_shard

    other = dataclasses.replace(SRC, lr=3e-3)
    ckpts: list[dict] = []
    train_agents(ENV, other, list(range(24)), [0] * 24, rt=RT, on_checkpoint=ckpts.append)
    resume = tmp_path / "resume"
    # exactly what train_shard would have saved for `other`
    fp = fingerprint(RESUME_FORMAT, to_dict(ENV), to_dict(other), RT.log_every, list(range(24)), [0] * 24)
    save_torch(resume / "shard_0.pt", {"fingerprint": fp, "state": ckpts[0]})
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda rec: records.append(rec.getMessage())
    logging.getLogger("train_source_agents").addHandler(handler)
    try:
        train_shard(ENV, other, 0, tmp_path / "same", resume_dir=resume, rt=RT)    # sanity: this one resumes
        save_torch(resume / "shard_0.pt", {"fingerprint": fp, "state": ckpts[0]})
        train_shard(ENV, SRC, 0, tmp_path / "resumed", resume_dir=resume, rt=RT)   # this one must not
    finally:
        logging.getLogger("train_source_agents").removeHandler(handler)
    assert any("resuming from" in r and "at update 100/300" in r for r in records), records
    assert any("belongs to other params" in r for r in records), records
    train_shard(ENV, SRC, 0, tmp_path / "fresh", rt=RT)
    for g in (0, 11, 23):
        a, b = (goal_dir(tmp_path / d, g) / HISTORY_FILE for d in ("resumed", "fresh"))
        assert a.read_bytes() == b.read_bytes()


def _digests(folder) -> dict[str, str]:
    import hashlib
    from pathlib import Path

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def test_shard_bytes_do_not_depend_on_the_worker_processes(tmp_path):
    """runtime.source.workers deals the goals to processes; the shard folder is the same bytes."""
    from adlib.sources import train_shard

    src = dataclasses.replace(SRC, env_steps=1000, seeds_per_goal=2, shards=(0, 1))
    train_shard(ENV, src, 1, tmp_path / "one" / "shard_1", rt=RT)
    train_shard(ENV, src, 1, tmp_path / "two" / "shard_1", rt=dataclasses.replace(RT, workers=2))
    one, two = _digests(tmp_path / "one" / "shard_1"), _digests(tmp_path / "two" / "shard_1")
    assert len(one) == 12 * 3 + 1 and one == two          # 12 goals x (history, agent, summary) + shard.json


def test_killed_multi_worker_shard_stops_its_workers_and_resumes_exactly(tmp_path):
    """SIGKILL of the stage process (its workers get no signal): the workers notice and exit,
    and a rerun continues every part from its checkpoint to the bytes of an uninterrupted run."""
    import subprocess
    import sys
    import time

    import psutil
    import yaml
    from helpers_dt import DATA, REPO, SPLIT, stage_env

    from adlib.config import Params, RuntimeConfig, parse_params

    src = dataclasses.replace(SRC, env_steps=40_000, shards=(0,))
    rt = SourceRuntime(log_every=10, checkpoint_every=50, workers=2)
    raw = to_dict(Params(env=ENV, split=SPLIT, source=src, dataset=DATA, runtime=RuntimeConfig(source=rt)))
    parse_params(raw)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    resume = tmp_path / "resume"
    cmd = [sys.executable, "-m", "stages.train_source_agents", "--params", str(params), "--shard", "0",
           "--resume-dir", str(resume)]
    parts = [resume / f"shard_0.part_{j}of2.pt" for j in (0, 1)]
    proc = subprocess.Popen([*cmd, "--out", str(tmp_path / "killed")], cwd=REPO, env=stage_env(),
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not all(p.exists() for p in parts) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    workers = psutil.Process(proc.pid).children(recursive=True)
    proc.kill()
    stderr = proc.communicate()[1]
    assert all(p.exists() for p in parts) and "final success" not in stderr, stderr[-2000:]
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert len(workers) >= 2 and not alive, alive
    r = subprocess.run([*cmd, "--out", str(tmp_path / "resumed")], cwd=REPO, env=stage_env(), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count("resuming from") == 2, r.stderr[-3000:]
    assert not any(p.exists() for p in parts)                  # removed once the shard is written
    r = subprocess.run([*cmd, "--out", str(tmp_path / "fresh"), "--resume-dir", str(tmp_path / "none")], cwd=REPO,
                       env=stage_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _digests(tmp_path / "resumed") == _digests(tmp_path / "fresh")


def test_checkpoint_history_is_a_view_of_rows_never_written_again():
    """A checkpoint late in a long run must not copy the history (most of a worker's memory):
    it holds a view of the rows before its update, which the loop never writes again, and a
    saved checkpoint holds those rows' bytes only."""
    ckpts: list[dict] = []
    at_checkpoint: list[dict[str, np.ndarray]] = []

    def keep(c: dict) -> None:
        ckpts.append(c)
        at_checkpoint.append({f: c["history"][f].numpy().copy() for f in FIELDS})   # the rows as they were

    _, hist = train_agents(ENV, SRC, [2, 4], [0, 1], rt=RT, on_checkpoint=keep)
    assert [c["update"] for c in ckpts] == [100, 200]
    T = SRC.nsteps
    for c, then in zip(ckpts, at_checkpoint):
        rows = c["update"] * T
        for f in FIELDS:
            saved = c["history"][f]
            assert saved.shape[0] == rows
            assert np.shares_memory(saved.numpy(), getattr(hist, f))            # a view, not a copy
            assert saved.untyped_storage().nbytes() == then[f].nbytes           # torch.save writes these bytes only
            assert np.array_equal(getattr(hist, f)[:rows], then[f])             # rows never written again


def test_shard_workers_write_a_tensorboard_run_per_goal_that_counts_its_episodes(tmp_path):
    """Each worker writes its goals' TensorBoard runs into a temporary folder that replaces the log
    folder at the end.
    The logged episode counts, summed over the log points, equal the episodes that end in the
    goal's history file (read back from Parquet: an independent count)."""
    import pandas as pd
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from adlib.histories import HISTORY_FILE, goal_dir
    from adlib.sources import train_shard

    src = dataclasses.replace(SRC, seeds_per_goal=2, env_steps=2000)
    logs = tmp_path / "logs" / "shard_0"
    (logs / "goal_999").mkdir(parents=True)                                 # a previous run's leftover
    train_shard(ENV, src, 0, tmp_path / "sources" / "shard_0", log_dir=logs, rt=dataclasses.replace(RT, workers=2))
    assert sorted(p.name for p in logs.iterdir()) == [f"goal_{g:03d}" for g in range(24)]
    assert [p.name for p in (tmp_path / "logs").iterdir()] == ["shard_0"]        # no temporary folder left
    for goal in (0, 13):
        acc = EventAccumulator(str(goal_dir(logs, goal)))
        acc.Reload()
        hist = pd.read_parquet(goal_dir(tmp_path / "sources" / "shard_0", goal) / HISTORY_FILE)
        for seed in range(2):
            logged = sum(e.value for e in acc.Scalars(f"charts/episodes/seed_{seed}"))
            mine = hist[hist["stream"] // src.nenvs == seed]
            assert logged == (mine["terminated"] | mine["truncated"]).sum() > 0
