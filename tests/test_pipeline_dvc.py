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

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARDS = ("train_source_agents@0", "train_source_agents@1")
ALL3 = {"split_tasks", *SHARDS, "build_history_dataset"}

# Every key of the sections the three stages read, laid over the real params.yaml; its other
# sections (dt, eval, ...) come as they are: validated, but no stage run here reads them.
TINY = {
    "env": {"size": 5, "max_episode_steps": 20, "terminate_on_goal": True, "random_start": False,
            "reward_mode": "reach"},
    "split": {"seed": 0, "n_train": 16},
    "source": {"hidden_size": 128, "nenvs": 4, "nsteps": 5, "env_steps": 20000, "seeds_per_goal": 1,
               "lr": 1.0e-4, "betas": [0.9, 0.999], "eps": 1.0e-6, "clip_grad_norm": 0.5, "value_coef": 0.99,
               "entropy_coef": 0.01, "gamma": 0.99, "seed": 0, "shards": [0, 1], "log_every": 10,
               "device": "cpu"},
    "dataset": {"history_len": 20000, "subsample": 1,
                "noise": {"streams_per_goal": 0, "episodes": 120, "decay_episodes": 80, "eps_start": 1.0,
                          "eps_end": 0.0, "seed": 0}},
}

pytestmark = pytest.mark.slow


def _key_paths(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        out.add(prefix + k)
        if isinstance(v, dict):
            out |= _key_paths(v, prefix + k + ".")
    return out


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def tiny_params() -> dict:
    """The real params.yaml with TINY laid over it: every key of the real file, same structure
    (a key added there later comes through with its real value)."""
    real = yaml.safe_load((REPO / "params.yaml").read_text())
    stale = _key_paths(TINY) - _key_paths(real)
    assert not stale, f"tests/test_pipeline_dvc.py: TINY has keys params.yaml lacks: {sorted(stale)}"
    return _merge(real, TINY)


class Repo:
    """A throwaway git + DVC repo holding a copy of the pipeline code."""

    def __init__(self, root: Path):
        self.root = root
        bindir = str(Path(sys.executable).parent)
        self.env = {**os.environ,
                    "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
                    "PYTHONPATH": str(root),    # `python -m stages.x` imports the copied stages/ and adlib/
                    "DVC_NO_ANALYTICS": "1", "CI": "true",
                    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",   # 2 cores, shared with another worker
                    "GIT_AUTHOR_NAME": "adlib test", "GIT_AUTHOR_EMAIL": "test@localhost",
                    "GIT_COMMITTER_NAME": "adlib test", "GIT_COMMITTER_EMAIL": "test@localhost"}
        self.env.pop("VIRTUAL_ENV", None)

    def run(self, *cmd: str, timeout: int = 600) -> str:
        p = subprocess.run(cmd, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout)
        out = p.stdout + p.stderr
        assert p.returncode == 0, f"`{' '.join(cmd)}` exited {p.returncode}:\n{out[-6000:]}"
        return out

    def git(self, *args: str) -> str:
        return self.run("git", "-c", "commit.gpgsign=false", *args)

    def dvc(self, *args: str) -> str:
        return self.run(sys.executable, "-m", "dvc", *args)

    def repro(self) -> set[str]:
        """`dvc repro build_history_dataset`; the set of stages that ran."""
        out = self.dvc("repro", "build_history_dataset")
        ran = set(re.findall(r"Running stage '([^']+)'", out))
        skipped = set(re.findall(r"Stage '([^']+)' didn't change, skipping", out))
        assert ran | skipped == ALL3, f"unexpected stages in dvc repro output:\n{out}"
        status = self.dvc("status", "--with-deps", "build_history_dataset")
        assert "up to date" in status, f"dvc status after repro:\n{status}"
        return ran

    @property
    def params(self) -> dict:
        return yaml.safe_load((self.root / "params.yaml").read_text())

    def set_param(self, key: str, value) -> None:
        p = self.params
        *parents, last = key.split(".")
        d = p
        for k in parents:
            d = d[k]
        assert last in d, key
        d[last] = value
        (self.root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))

    def mtimes(self, sub: str) -> dict[str, int]:
        """Modification times of the stage outputs under ``sub``."""
        base = self.root / sub
        return {str(f.relative_to(base)): f.stat().st_mtime_ns for f in sorted(base.rglob("*"))
                if f.is_file() and f.name != ".gitignore"}   # .gitignore: DVC's own, not a stage output

    def json(self, rel: str):
        return json.loads((self.root / rel).read_text())


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path / "repo"
    root.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for d in ("stages", "adlib"):
        shutil.copytree(REPO / d, root / d, ignore=ignore)
    for f in ("dvc.yaml", "pyproject.toml"):
        shutil.copy2(REPO / f, root / f)
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    r = Repo(root)
    r.git("init", "-q")
    r.git("config", "user.name", "adlib test")
    r.git("config", "user.email", "test@localhost")
    r.dvc("init", "-q")
    r.dvc("config", "core.analytics", "false")
    r.git("add", "-A")
    r.git("commit", "-q", "-m", "tiny pipeline")
    return r


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
    bad.write_text(yaml.safe_dump(_merge(tiny_params(), {"source": {"lr": 0}}), sort_keys=False))
    p = subprocess.run([sys.executable, "-m", "adlib.check", str(bad)], capture_output=True, text=True)
    assert p.returncode == 1, p.stdout + p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr, p.stderr
    assert "source.lr" in p.stderr and str(bad) in p.stderr


def test_dvc_repro_first_three_stages(repo: Repo):
    # --- a full run --------------------------------------------------------------------------
    assert repo.repro() == ALL3
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
    assert repo.repro() == set()
    assert repo.mtimes("data/sources") == sources and repo.mtimes("data/dataset") == dataset

    # --- a dataset param: only the dataset is rebuilt ----------------------------------------
    repo.set_param("dataset.subsample", 2)
    assert repo.repro() == {"build_history_dataset"}
    assert repo.mtimes("data/sources") == sources, "source agents were retrained"
    meta = repo.json("data/dataset/meta.json")
    assert meta["subsample"] == 2 and 0 < meta["transitions"] < full

    # --- an A2C param: both shards retrain, then the dataset ---------------------------------
    agent = (repo.root / "data/sources/shard_0/goal_000/agent.pt").read_bytes()
    repo.set_param("source.lr", 3.0e-4)
    assert repo.repro() == {*SHARDS, "build_history_dataset"}
    now = repo.mtimes("data/sources")
    stale = [f for f in sources if now.get(f) == sources[f]]
    assert not stale, f"shard outputs not rewritten: {stale[:5]}"
    assert (repo.root / "data/sources/shard_0/goal_000/agent.pt").read_bytes() != agent
    assert repo.json("data/dataset/meta.json")["source"]["lr"] == 3.0e-4
    sources = now

    # --- a library module only the dataset stage uses ----------------------------------------
    with open(repo.root / "adlib/dataset.py", "a") as f:
        f.write("# an edit that changes no behaviour\n")
    assert repo.repro() == {"build_history_dataset"}
    assert repo.mtimes("data/sources") == sources, "source agents were retrained"

    # --- the split seed: split and dataset, no source agent ----------------------------------
    repo.set_param("split.seed", 1)
    assert repo.repro() == {"split_tasks", "build_history_dataset"}
    assert repo.mtimes("data/sources") == sources, "source agents were retrained"
    new_split = repo.json("data/split.json")
    assert new_split["seed"] == 1 and new_split["train"] != split["train"]
    assert repo.json("data/dataset/meta.json")["train_goals"] == new_split["train"]
