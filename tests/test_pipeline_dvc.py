"""Smoke test of the DVC pipeline's first three stages on tiny params, in a throwaway git repo.

split_tasks -> train_source_agents@{0,1} -> build_history_dataset are reproduced with
`dvc repro build_history_dataset` (so stages added later downstream are never run), then
single edits check that DVC reruns exactly the stages that depend on what changed:

    a dataset param         -> build_history_dataset only
    an A2C param            -> both shards and the dataset
    adlib/dataset.py        -> build_history_dataset only
    the split seed          -> split_tasks and the dataset, no source agent
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dvc_helpers import ALL3, SHARDS, Repo, make_repo, merge, tiny_params

pytestmark = pytest.mark.slow


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    return make_repo(tmp_path / "repo", tiny_params())


def test_tiny_params_are_valid():
    from adlib.config import parse_params

    p = parse_params(tiny_params())
    assert p.env.size == 5 and p.split.n_train == 16 and list(p.source.shards) == [0, 1]


def test_check_cli(tmp_path: Path):
    ok = tmp_path / "params.yaml"
    ok.write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    p = subprocess.run([sys.executable, "-m", "adlib.check", str(ok)], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == f"{ok}: OK", p.stdout + p.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(merge(tiny_params(), {"source": {"lr": 0}}), sort_keys=False))
    p = subprocess.run([sys.executable, "-m", "adlib.check", str(bad)], capture_output=True, text=True)
    assert p.returncode == 1, p.stdout + p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr, p.stderr
    assert "source.lr" in p.stderr and str(bad) in p.stderr


def test_dvc_repro_first_three_stages(repo: Repo):
    # --- a full run --------------------------------------------------------------------------
    assert repo.repro("build_history_dataset") == ALL3
    split = repo.json("data/split.json")
    assert len(split["train"]) == 16 and len(split["test"]) == 8
    for shard in (0, 1):
        sdir = repo.root / f"data/sources/shard_{shard}"
        goals = sorted(sdir.glob("goal_*"))
        assert [int(g.name[5:]) for g in goals] == list(range(shard, 24, 2))
        for g in goals:
            for f in ("history.parquet", "agent.pt", "summary.json"):
                assert (g / f).is_file(), g / f
            assert list((g / "tb").glob("events.out.tfevents.*")), f"{g}/tb: no TensorBoard event file"
        assert repo.json(f"data/sources/shard_{shard}/shard.json")["complete"] is True
    meta = repo.json("data/dataset/meta.json")
    assert (repo.root / "data/dataset/histories.parquet").is_file()
    assert meta["train_goals"] == split["train"] and meta["held_out_goals"] == split["test"]
    assert meta["transitions"] == 16 * 20000   # 16 goals x history_len, no subsampling
    full = meta["transitions"]

    # --- nothing changed: nothing runs -------------------------------------------------------
    sources, dataset = repo.mtimes("data/sources"), repo.mtimes("data/dataset")
    assert repo.repro("build_history_dataset") == set()
    assert repo.mtimes("data/sources") == sources and repo.mtimes("data/dataset") == dataset

    # --- a dataset param: only the dataset is rebuilt ----------------------------------------
    repo.set_param("dataset.subsample", 2)
    assert repo.repro("build_history_dataset") == {"build_history_dataset"}
    assert repo.mtimes("data/sources") == sources, "source agents were retrained"
    meta = repo.json("data/dataset/meta.json")
    assert meta["subsample"] == 2 and 0 < meta["transitions"] < full

    # --- an A2C param: both shards retrain, then the dataset ---------------------------------
    agent = (repo.root / "data/sources/shard_0/goal_000/agent.pt").read_bytes()
    repo.set_param("source.lr", 3.0e-4)
    assert repo.repro("build_history_dataset") == {*SHARDS, "build_history_dataset"}
    now = repo.mtimes("data/sources")
    stale = [f for f in sources if now.get(f) == sources[f]]
    assert not stale, f"shard outputs not rewritten: {stale[:5]}"
    assert (repo.root / "data/sources/shard_0/goal_000/agent.pt").read_bytes() != agent
    assert repo.json("data/dataset/meta.json")["source"]["lr"] == 3.0e-4
    sources = now

    # --- a library module only the dataset stage uses ----------------------------------------
    with open(repo.root / "adlib/dataset.py", "a") as f:
        f.write("# an edit that changes no behaviour\n")
    assert repo.repro("build_history_dataset") == {"build_history_dataset"}
    assert repo.mtimes("data/sources") == sources, "source agents were retrained"

    # --- the split seed: split and dataset, no source agent ----------------------------------
    repo.set_param("split.seed", 1)
    assert repo.repro("build_history_dataset") == {"split_tasks", "build_history_dataset"}
    assert repo.mtimes("data/sources") == sources, "source agents were retrained"
    new_split = repo.json("data/split.json")
    assert new_split["seed"] == 1 and new_split["train"] != split["train"]
    assert repo.json("data/dataset/meta.json")["train_goals"] == new_split["train"]
