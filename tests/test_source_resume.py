"""train_source_agents checkpoints periodically and a killed run resumes to the same result."""

from __future__ import annotations

import dataclasses
import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from adlib.a2c import HISTORY_FIELDS, train_agents
from adlib.config import EnvConfig, Params, RuntimeConfig, SourceConfig, SourceRuntime, parse_params, to_dict
from helpers_dt import REPO, stage_env

torch.set_num_threads(1)

ENV = EnvConfig(grid_size=5, max_episode_steps=10)
SRC = SourceConfig(hidden_size=8, nenvs=4, nsteps=5, env_steps=6000, lr=1e-2, shards=(0,))
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


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_killed_stage_resumes_from_its_checkpoint_with_identical_histories(tmp_path):
    src = dataclasses.replace(SRC, env_steps=40_000)    # ~2000 updates, first checkpoint (100) early
    params = tmp_path / "params.yaml"
    raw = to_dict(Params(env=ENV, source=src, runtime=RuntimeConfig(source=RT)))
    raw["split"]["n_train"] = 16
    raw["dataset"].update(history_len=2000)
    parse_params(raw)
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    cmd = lambda out: [sys.executable, "-m", "stages.train_source_agents", "--params", str(params),
                       "--shard", "0", "--out", str(out), "--resume-dir", str(out.parent / ".resume")]
    ref = tmp_path / "A" / "shard_0"
    r = subprocess.run(cmd(ref), cwd=REPO, env=stage_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]

    out = tmp_path / "B" / "shard_0"
    ckpt = out.parent / ".resume" / "shard_0.pt"
    proc = subprocess.Popen(cmd(out), cwd=REPO, env=stage_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while not ckpt.exists():
            assert proc.poll() is None, "the stage finished before writing a checkpoint"
            assert time.time() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert not out.exists()                                  # nothing half-written
    r = subprocess.run(cmd(out), cwd=REPO, env=stage_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming shard 0" in r.stderr
    assert not ckpt.exists()                                 # removed once the shard is complete
    files = sorted(p.relative_to(ref) for p in ref.rglob("*.parquet"))
    assert files and files == sorted(p.relative_to(out) for p in out.rglob("*.parquet"))
    assert all(digest(ref / f) == digest(out / f) for f in files)
