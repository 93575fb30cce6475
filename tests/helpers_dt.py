"""Shared tiny fixtures of the AD-transformer tests: a real (tiny) history dataset, tiny
transformer configs and params.yaml files for the stages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from adlib.config import (
    DatasetConfig,
    DTConfig,
    DTRuntime,
    EnvConfig,
    EvalConfig,
    EvalRuntime,
    NoiseConfig,
    Params,
    RuntimeConfig,
    SourceConfig,
    SourceRuntime,
    SplitConfig,
    parse_params,
    to_dict,
)
from adlib.dataset import HistoryDataset, build_dataset
from adlib.envs import darkroom as dr
from adlib.model import ModelConfig
from adlib.sources import train_shard
from adlib.tasks import split_goals, write_split

REPO = Path(__file__).resolve().parents[1]
ENV = EnvConfig(grid_size=5, max_episode_steps=10)
SPLIT = SplitConfig(seed=0, n_train=16)
SRC = SourceConfig(hidden_size=8, nenvs=2, nsteps=10, env_steps=2000, lr=1e-2, seeds_per_goal=1, shards=(0,))
DATA = DatasetConfig(history_len=2000, subsample=25, noise=NoiseConfig(streams_per_goal=0))   # A2C only

_built: dict[str, dict] = {}


def tiny_pipeline(root: Path) -> dict:
    """split -> one A2C shard of all 24 goals of a 5x5 room -> dataset, built once per process
    (a few seconds) under ``root``; later calls return the same folders."""
    if "p" not in _built:
        root = Path(root)
        split = split_goals(ENV, SPLIT)
        write_split(split, root / "split.json")
        train_shard(ENV, SRC, 0, root / "sources" / "shard_0", rt=SourceRuntime(workers=1))
        meta = build_dataset(ENV, DATA, split, root / "sources", len(SRC.shards), root / "dataset")
        _built["p"] = {"root": root, "split": split, "split_path": root / "split.json", "sources": root / "sources",
                       "data_dir": root / "dataset", "meta": meta}
    return _built["p"]


def tiny_dt(**kw) -> DTConfig:
    """A transformer small enough to train a few steps in well under a second on one CPU core."""
    base = dict(layout="transition", state_embedding="coords", seq_len=16, embedding_dim=16, num_layers=1,
                num_heads=2, feed_forward_dim=32, lr=3e-3, min_lr=1e-4, warmup_steps=2, batch_size=4,
                num_steps=6, seed=0, stream_start_frac=0.25)
    base.update(kw)
    return DTConfig(**base)


def tiny_rt(**kw) -> DTRuntime:
    """How the tiny transformer trains: CPU, one thread, no in-training evaluation."""
    return DTRuntime(**{**dict(device="cpu", amp=False, threads=1, eval_step=0, eval_episodes=3,
                               checkpoint_every=1000), **kw})


def tiny_model_cfg(layout: str = "transition", state_embedding: str = "coords", seq_len: int = 8,
                   d: int = 16, n_layers: int = 2, n_heads: int = 2) -> ModelConfig:
    dt = tiny_dt(layout=layout, state_embedding=state_embedding, seq_len=seq_len, embedding_dim=d, num_layers=n_layers,
                 num_heads=n_heads, feed_forward_dim=2 * d)
    return ModelConfig.from_dt(dt, ENV.grid_size, dr.N_ACTIONS, ENV.max_episode_steps)


def write_params(path: Path, dt: DTConfig, eval_cfg: EvalConfig | None = None, rt: DTRuntime | None = None) -> Path:
    """A complete, valid params.yaml of the tiny pipeline with ``dt`` (checked by parse_params)."""
    p = Params(env=ENV, split=SPLIT, source=SRC, dataset=DATA, dt=dt,
               eval=eval_cfg or EvalConfig(episodes=4, seeds=2, train_goals=2),
               runtime=RuntimeConfig(source=SourceRuntime(log_every=50, workers=1), dt=rt or tiny_rt(),
                                     eval=EvalRuntime(device="cpu")))
    raw = to_dict(p)
    parse_params(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def stage_env() -> dict:
    """Environment of a stage subprocess: one thread, no progress bars, the repo importable."""
    return {**os.environ, "CI": "true", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def train_cmd(params: Path, pipe: dict, out: Path, resume: Path) -> list[str]:
    return ["-m", "stages.train_dt", "--params", str(params), "--split", str(pipe["split_path"]),
            "--data", str(pipe["data_dir"]), "--out", str(out), "--resume-dir", str(resume)]


def run_stage(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, env=stage_env(), capture_output=True, text=True,
                          timeout=timeout)


def windows_batch(pipe: dict, batch: int, seq_len: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Real training windows of the tiny dataset, as int64 arrays."""
    ds = HistoryDataset(pipe["data_dir"], ENV, held_out=pipe["split"]["held_out"])
    rows = ds.sample_starts(np.random.default_rng(seed), batch, seq_len, 0.25)
    w = ds.windows(rows, seq_len)
    return {k: np.ascontiguousarray(v).astype(np.int64) for k, v in w.items() if k != "goal"}
