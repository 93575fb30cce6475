"""The last ways a `dvc repro` could lose outputs or record a wrong result (real DVC runs of the
tiny pipeline; tests/conftest.py reproduces it once, every test works on its own copy):

    runtime.*.device: cuda without a GPU -> check_params refuses it; no output removed
    dt.seq_len beyond the dataset's streams -> check_params refuses it; models/dt kept
    a key named `size` / `nfiles`         -> check_params still runs (DVC's run cache ignores
                                             such keys) and refuses it
    source.shards [0,1]->[0]->[0,1]->[0]  -> no stale shard folder, even when the shard stage
                                             is restored from the run cache
"""

from __future__ import annotations

import sys

import pytest
import torch
import yaml
from dvc_helpers import Repo, ran_stages

pytestmark = pytest.mark.slow

RESULTS = ("data", "models", "metrics", "videos")


def edit(repo: Repo, key: str, value) -> None:
    """Set ``key`` in the repo's params.yaml (creating it if new)."""
    repo.set_param(key, value, new=True)


def refused(repo: Repo, message: str) -> None:
    """`dvc repro` fails at check_params with ``message``; every output stays byte for byte."""
    before = {d: repo.hashes(d) for d in RESULTS}
    lock = (repo.root / "dvc.lock").read_bytes()
    p = repo.run_raw(sys.executable, "-m", "dvc", "repro")
    out = p.stdout + p.stderr
    assert p.returncode != 0 and message in out, out[-3000:]
    assert ran_stages(out) <= {"check_params"}, out[-3000:]
    for d in RESULTS:   # check_params' own constant stamp aside
        assert {k: v for k, v in repo.hashes(d).items() if k != "params.ok"} == \
               {k: v for k, v in before[d].items() if k != "params.ok"}, d
    assert (repo.root / "dvc.lock").read_bytes() == lock


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("key", ["runtime.eval.device", "runtime.dt.device", "runtime.source.device"])
def test_a_cuda_device_without_a_gpu_is_refused_before_any_stage(repo: Repo, key):
    (repo.root / "metrics" / "eval.json").unlink()       # eval_dt is due: DVC would remove its outputs
    edit(repo, key, "cuda")
    refused(repo, f"error: {key} = 'cuda': torch sees no CUDA GPU")


def test_a_context_longer_than_the_datasets_streams_is_refused_before_train_dt(repo: Repo):
    edit(repo, "dataset.subsample", 2)                  # streams shorter than the static A2C bound
    repo.run(sys.executable, "-m", "dvc", "repro", "train_dt")
    shortest = repo.json("data/dataset/meta.json")["shortest_stream"]
    p = repo.params
    assert shortest < p["dataset"]["history_len"] // p["source"]["nenvs"]   # only the look-ahead can see it
    edit(repo, "dt.seq_len", shortest + 1)
    refused(repo, f"error: dt.seq_len = {shortest + 1}: longer than the shortest stream of data/dataset")


def test_a_context_longer_than_any_a2c_stream_is_refused_even_before_the_dataset_exists(repo: Repo):
    p = repo.params
    edit(repo, "dt.seq_len", p["dataset"]["history_len"] // p["source"]["nenvs"] + 1)
    edit(repo, "dataset.subsample", 2)                   # the dataset would be rebuilt: no look-ahead
    refused(repo, "longer than every A2C stream")


@pytest.mark.parametrize("key", ["env.size", "dt.size", "split.nfiles", "runtime.dt.size"])
def test_keys_the_run_cache_ignores_still_stop_repro(repo: Repo, key):
    """DVC's run cache drops keys named size / nfiles from its hash: check_params would be restored
    from it instead of run, and the key would pass (with `dt.size`, dvc.lock even recorded it)."""
    edit(repo, key, 7)
    refused(repo, f"error: params.yaml: {key}: keys named 'size' or 'nfiles' are not allowed")


def test_no_stale_shard_survives_a_run_cache_restore(repo: Repo):
    """[0, 1] -> [0] -> [0, 1] -> [0]: the last switch restores the one-shard stage from the run
    cache (its code, which removed stale shards, does not run); check_params removes them."""
    for shards in ([0], [0, 1], [0]):
        edit(repo, "source.shards", shards)
        out = repo.dvc("repro")
    assert "train_source_agents@0" not in ran_stages(out), "expected a run-cache restore"
    assert not (repo.root / "data/sources/shard_1").exists() and not (repo.root / "logs/sources/shard_1").exists()
    # the stages that read data/sources recorded it without the stale shard (a clone is up to date after a pull)
    files = [f for f in (repo.root / "data/sources").rglob("*") if f.is_file()]
    assert sorted(f.name for f in files if f.name.startswith(".")) == [".gitignore"]   # DVC's own
    assert len(files) == 24 * 3 + 1 + 1                  # 24 goals x (history, agent, summary) + shard.json
    lock = yaml.safe_load((repo.root / "dvc.lock").read_text())["stages"]
    for stage in ("build_history_dataset", "eval_dt", "render_videos"):
        (dep,) = [d for d in lock[stage]["deps"] if d["path"] == "data/sources"]
        assert dep["nfiles"] == len(files), stage
    assert "up to date" in repo.dvc("status")
