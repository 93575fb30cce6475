"""Tiny sizes for the benchmarks' ``--smoke`` runs (``tests/test_benchmarks.py``): each script
runs its own code path in a few seconds on one CPU thread and writes nothing into the repository.

A script that reads the pipeline's workspace (``params.yaml``, ``data/``, ``models/``, ``metrics/``)
gets a tiny one in a temporary folder (:func:`tiny_workspace`): a 5x5 room, one A2C shard of a few
updates, a small dataset, a 1-layer transformer trained for a few steps and its eval_dt report,
made by the same library calls as the DVC stages.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

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
    RenderConfig,
    RuntimeConfig,
    SourceConfig,
    SourceRuntime,
    SplitConfig,
    parse_params,
    to_dict,
)

PARAMS = Params(
    env=EnvConfig(grid_size=5, max_episode_steps=10), split=SplitConfig(n_train=16),
    source=SourceConfig(hidden_size=8, nenvs=2, nsteps=10, env_steps=400, lr=1e-2, seeds_per_goal=1, shards=(0,)),
    dataset=DatasetConfig(history_len=400, subsample=2, noise=NoiseConfig(streams_per_goal=1, transitions=40)),
    dt=DTConfig(seq_len=16, embedding_dim=16, num_layers=1, num_heads=2, feed_forward_dim=32, batch_size=4,
                num_steps=3, warmup_steps=1),
    eval=EvalConfig(episodes=20, seeds=2, train_goals=2),
    runtime=RuntimeConfig(source=SourceRuntime(workers=1),
                          dt=DTRuntime(device="cpu", amp=False, threads=1, eval_step=0),
                          eval=EvalRuntime(device="cpu", threads=1)))
# whole-pipeline smoke runs (every stage through DVC): PARAMS with short, small videos (render_videos
# would take most of the run)
PIPELINE_PARAMS = dataclasses.replace(PARAMS, render=RenderConfig(source_goals=1, ad_goals=1, ad_episodes=2,
                                                                  cell_px=4))
# what a workspace holds, in pipeline order: each step needs the ones before it
STEPS = ("params", "split", "sources", "dataset", "model", "eval")


def parse(ap: argparse.ArgumentParser, **tiny: Any) -> argparse.Namespace:
    """``ap``'s arguments plus ``--smoke``, which sets the arguments named in ``tiny``."""
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes, a few seconds, writes nothing into the repository (tests/test_benchmarks.py)")
    args = ap.parse_args()
    if args.smoke:
        vars(args).update(tiny)
    return args


def build(root: Path, upto: str = "eval") -> None:
    """The pipeline's workspace under ``root``, through step ``upto`` of :data:`STEPS`, at
    :data:`PARAMS`' sizes, laid out as the DVC stages write it."""
    # imported here: the scripts that only take tiny arguments need none of it
    from adlib.dataset import build_dataset
    from adlib.evaluation import evaluate_checkpoint
    from adlib.sources import train_shard
    from adlib.tasks import split_goals, write_split
    from adlib.train import train

    p = PARAMS
    raw = to_dict(p)
    parse_params(raw)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    data, model, metrics = root / "data", root / "models" / "dt", root / "metrics"
    split = split_goals(p.env, p.split)
    shards = len(p.source.shards)
    steps = (lambda: write_split(split, data / "split.json"),
             lambda: train_shard(p.env, p.source, 0, data / "sources" / "shard_0", rt=p.runtime.source),
             lambda: build_dataset(p.env, p.dataset, split, data / "sources", shards, data / "dataset"),
             lambda: train(p.env, p.dt, split, data / "dataset", model, rt=p.runtime.dt),
             lambda: evaluate_checkpoint(model / "model.pt", p.env, p.dt, p.eval, split, data / "sources", shards,
                                         metrics / "eval.json", metrics / "eval_detail.json", metrics / "curves",
                                         rt=p.runtime.eval))
    for step in steps[:STEPS.index(upto)]:
        step()


@contextmanager
def tiny_workspace(upto: str = "eval") -> Iterator[Path]:
    """A tiny workspace (:func:`build`) in a temporary folder, the current directory while open."""
    cwd = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="adlib_smoke_") as tmp:
        root = Path(tmp)
        build(root, upto)
        os.chdir(root)
        try:
            yield root
        finally:
            os.chdir(cwd)
