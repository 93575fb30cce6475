"""train_source_agents checkpoints periodically and a killed run resumes to the same result."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from adlib.a2c import HISTORY_FIELDS, train_agents
from adlib.config import EnvConfig, SourceConfig, SourceRuntime, to_dict

torch.set_num_threads(1)

ENV = EnvConfig(grid_size=5, max_episode_steps=10)
SRC = SourceConfig(hidden_size=8, nenvs=4, nsteps=5, env_steps=6000, lr=1e-2, seeds_per_goal=1, shards=(0,))
RT = SourceRuntime(log_every=10, checkpoint_every=100)


def test_resume_from_checkpoint_equals_uninterrupted_training():
    ckpts: list[dict] = []
    p1, h1 = train_agents(ENV, SRC, [0, 3, 7], [0, 0, 1], rt=RT, on_checkpoint=ckpts.append)
    assert [c["update"] for c in ckpts] == [100, 200]
    logs = []
    p2, h2 = train_agents(ENV, SRC, [0, 3, 7], [0, 0, 1], rt=RT, on_log=logs.append, resume=ckpts[0])
    assert all(torch.equal(p1[k], p2[k]) for k in p1)
    assert all(np.array_equal(getattr(h1, f), getattr(h2, f)) for f in HISTORY_FIELDS)
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
    from adlib.sources import train_shard

    other = dataclasses.replace(SRC, lr=3e-3)
    ckpts: list[dict] = []
    train_agents(ENV, other, list(range(24)), [0] * 24, rt=RT, on_checkpoint=ckpts.append)
    resume = tmp_path / "resume"
    # exactly what train_shard would have saved for `other`
    fp = fingerprint(to_dict(ENV), to_dict(other), RT.log_every, list(range(24)), [0] * 24)
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
