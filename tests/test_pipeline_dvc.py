"""`dvc repro` reruns exactly what an edit touched, never restores stale outputs, and never
deletes outputs over a bad params.yaml: real DVC runs of the tiny pipeline (tests/conftest.py
reproduces it once; every test works on its own copy).

    the room size            -> everything from split_tasks (DVC's run cache ignores keys
                                named `size`: the key is env.grid_size)
    a code edit              -> the stages that import the module; DVC stops early where an
                                output comes out byte-identical
    a params edit            -> the stages that read the key, then what their outputs feed
    a runtime key            -> check_params only (its output never changes: nothing else)
    `dvc repro -f`           -> byte-identical outputs (logs aside)
    a bad params.yaml        -> check_params fails first; no output is removed (a bad runtime
                                key too, when a stage is due because an output changed)
    source.shards [0,1]->[0] -> just works; the stale shard folder is removed
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dvc_helpers import TINY_DOWNSTREAM, Repo, pipeline, ran_stages, stage_reads, tiny_params

from adlib.config import param_keys

pytestmark = pytest.mark.slow

STAGES = pipeline(tiny_params(TINY_DOWNSTREAM))   # dvc.yaml's stages, foreach expanded
ALL = set(STAGES)
SHARDS = {n for n in ALL if n.startswith("train_source_agents@")}
UPSTREAM = {"check_params", "split_tasks", *SHARDS, "build_history_dataset"}


def test_tiny_params_are_valid():
    from adlib.config import parse_params

    p = parse_params(tiny_params(TINY_DOWNSTREAM))
    assert p.env.grid_size == 5 and p.split.n_train == 16 and list(p.source.shards) == [0, 1]


def test_check_cli(tmp_path: Path):
    ok = tmp_path / "params.yaml"
    ok.write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    p = subprocess.run([sys.executable, "-m", "adlib.check", str(ok)], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == f"{ok}: OK", p.stdout + p.stderr
    raw = tiny_params()
    raw["source"]["lr"] = 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw, sort_keys=False))
    p = subprocess.run([sys.executable, "-m", "adlib.check", str(bad)], capture_output=True, text=True)
    assert p.returncode == 1, p.stdout + p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr, p.stderr
    assert "source.lr" in p.stderr and str(bad) in p.stderr


# ---------------------------------------------------------------- 1. the room size

def test_room_size_change_reruns_from_split_tasks(repo: Repo):
    before = repo.hashes("data")
    repo.set_param("env.grid_size", 7)
    out = repo.dvc("repro", "build_history_dataset")
    assert "is cached - skipping run" not in out, out
    assert ran_stages(out) == UPSTREAM, out
    split = repo.json("data/split.json")
    assert split["grid_size"] == 7 and split["n_goals"] == 48
    assert repo.json("data/dataset/meta.json")["grid_size"] == 7
    assert "up to date" in repo.dvc("status", "build_history_dataset")

    # back to 5: now the run cache may (and does) restore the 5x5 outputs, byte for byte; only
    # check_params really runs (it is kept out of the run cache, see dvc.yaml)
    repo.set_param("env.grid_size", 5)
    out = repo.dvc("repro", "build_history_dataset")
    assert ran_stages(out) == {"check_params"}, out
    assert repo.hashes("data") == before


# ---------------------------------------------------------------- 2. code edits

def test_code_edit_flags_exactly_the_stages_that_import_it(repo: Repo):
    for module in ("adlib/tasks.py", "adlib/noise.py", "adlib/model.py", "adlib/video.py", "adlib/a2c.py"):
        path = repo.root / module
        original = path.read_text()
        path.write_text(original + "# an edit that changes no behaviour\n")
        status = json.loads(repo.dvc_stdout("status", "--json"))
        readers = {n for n, st in STAGES.items() if module in st["deps"]}
        assert "check_params" in readers and len(readers) >= 2, module
        assert set(status) == readers, (module, sorted(status))
        path.write_text(original)
    assert "up to date" in repo.dvc("status")


def test_dvc_stops_early_where_an_edit_leaves_an_output_unchanged(repo: Repo):
    """dataset.py is imported by build_history_dataset and train_dt only: both rerun, write the
    same bytes, and eval_dt / render_videos (which read their outputs) do not rerun."""
    with open(repo.root / "adlib/dataset.py", "a") as f:
        f.write("# an edit that changes no behaviour\n")
    dataset, model = repo.hashes("data/dataset"), repo.hashes("models/dt")
    out = repo.dvc("repro")
    assert repo.hashes("data/dataset") == dataset and repo.hashes("models/dt") == model
    assert ran_stages(out) == {"check_params", "build_history_dataset", "train_dt"}, out
    assert "up to date" in repo.dvc("status")


# ---------------------------------------------------------------- 3. params edits

def test_params_edits_rerun_their_readers_then_what_they_feed(repo: Repo):
    sources = repo.mtimes("data/sources")
    # a dataset param: the dataset, not the source agents
    repo.set_param("dataset.subsample", 2)
    assert repo.repro("build_history_dataset", expect=UPSTREAM) == {"check_params", "build_history_dataset"}
    assert repo.mtimes("data/sources") == sources, "source agents were retrained"
    assert repo.json("data/dataset/meta.json")["subsample"] == 2

    # the split seed: split and dataset, no source agent (they train every goal)
    repo.set_param("split.seed", 1)
    assert repo.repro("build_history_dataset", expect=UPSTREAM) == {"check_params", "split_tasks",
                                                                     "build_history_dataset"}
    assert repo.mtimes("data/sources") == sources, "source agents were retrained"
    assert repo.json("data/dataset/meta.json")["train_goals"] == repo.json("data/split.json")["train"]

    # an A2C param: both shards, then the dataset
    repo.set_param("source.lr", 3.0e-4)
    assert repo.repro("build_history_dataset", expect=UPSTREAM) == UPSTREAM - {"split_tasks"}
    assert repo.json("data/dataset/meta.json")["source"]["lr"] == 3.0e-4
    now = repo.mtimes("data/sources")
    assert not [f for f in sources if now.get(f) == sources[f]], "shard outputs not rewritten"


# ---------------------------------------------------------------- 4. identical results, identical bytes

def runtime_edit(raw: dict) -> dict:
    """Every runtime key changed, except torch's thread counts (they change float rounding)."""
    raw = copy.deepcopy(raw)
    rt = raw["runtime"]
    rt["source"].update(device="auto", log_every=5, checkpoint_every=20)
    rt["dt"].update(device="auto", amp=not rt["dt"]["amp"], eval_step=10, eval_episodes=2, checkpoint_every=3)
    rt["eval"].update(device="auto")
    return raw


def status_stages(root: Path) -> set[str]:
    """The stages `dvc status` flags."""
    from dvc.repo import Repo as DvcRepo

    with DvcRepo(str(root)) as dvc:
        return {name.split(":")[-1] for name in dvc.status()}   # "<path>/dvc.yaml:<stage>" -> stage


def test_forced_rerun_with_other_runtime_keys_writes_identical_outputs(repo: Repo):
    lock = yaml.safe_load((repo.root / "dvc.lock").read_text())["stages"]
    metrics = repo.hashes("metrics")
    (repo.root / "params.yaml").write_text(yaml.safe_dump(runtime_edit(repo.params), sort_keys=False))
    assert status_stages(repo.root) == {"check_params"}
    out = repo.dvc("repro", "-f")
    assert ran_stages(out) == ALL
    after = yaml.safe_load((repo.root / "dvc.lock").read_text())["stages"]
    logs_changed = 0
    for name, st in lock.items():
        for old, new in zip(st["outs"], after[name]["outs"]):
            if old["path"].startswith("logs/"):
                logs_changed += old["md5"] != new["md5"]
            else:
                assert old["md5"] == new["md5"], f"{name}: {old['path']} changed on a forced rerun"
    assert logs_changed >= 3   # event files carry host, pid and time: the reason they live in logs/
    assert repo.hashes("metrics") == metrics


def mutate(value):
    """Another valid-looking value of the same type (DVC does not validate: any change will do)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 0.125 if value < 0.5 else value / 2
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return value[:-1] if len(value) > 1 and all(isinstance(v, int) for v in value) else [*value[:-1], value[-1] / 2]
    raise TypeError(value)


def test_runtime_keys_flag_only_check_params_and_result_keys_flag_their_readers(repo: Repo):
    path = repo.root / "params.yaml"
    original = path.read_text()
    raw = yaml.safe_load(original)

    def status_after(key: str) -> set[str]:
        new = copy.deepcopy(raw)
        *parents, leaf = key.split(".")
        d = new
        for k in parents:
            d = d[k]
        d[leaf] = mutate(d[leaf])
        path.write_text(yaml.safe_dump(new, sort_keys=False))
        return status_stages(repo.root)

    try:
        keys = param_keys()
        for key in [k for k in keys if k.startswith("runtime.")]:
            assert status_after(key) == {"check_params"}, f"runtime key {key} flags other stages"
        for key in [k for k in keys if not k.startswith("runtime.")]:
            readers = {n for n in ALL if key in stage_reads(n)}
            if key == "source.shards":   # [0, 1] -> [0]: the stage train_source_agents@1 is gone
                readers -= {"train_source_agents@1"}
            assert status_after(key) == readers, key
    finally:
        path.write_text(original)


# ---------------------------------------------------------------- 5. a bad params.yaml

BAD_EDITS = [
    ("dt.num_heads", 3),             # does not divide embedding_dim: a cross-check
    ("env.grid_size", 40),           # out of range
    ("dt.num_layer", 2),             # a typo: unknown key (DVC tracks the whole dt section)
    ("eval.episodes", 0),
]


@pytest.mark.parametrize("key,value", BAD_EDITS, ids=[k for k, _ in BAD_EDITS])
def test_bad_params_stop_repro_before_any_output_is_removed(repo: Repo, key, value):
    before = {d: repo.hashes(d) for d in ("data", "models", "metrics", "videos")}
    lock = (repo.root / "dvc.lock").read_bytes()
    repo.set_param(key, value, new=True)
    p = repo.run_raw(sys.executable, "-m", "dvc", "repro")
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert ran_stages(out) == {"check_params"}, out
    assert f"error: params.yaml: {key}" in out, out
    after = {d: repo.hashes(d) for d in before}
    for d in before:   # everything there, byte for byte, except check_params' own (constant) stamp
        assert {k: v for k, v in after[d].items() if k != "params.ok"} == \
               {k: v for k, v in before[d].items() if k != "params.ok"}, d
    assert (repo.root / "dvc.lock").read_bytes() == lock


# ---------------------------------------------------------------- 6. the shard count

def test_bad_runtime_key_stops_repro_before_a_due_stage_removes_its_outputs(repo: Repo):
    """A stage is due for a reason other than params or code, and DVC cannot restore it from its
    cache: eval_dt, whose metrics are not cached, after one of them was deleted. A runtime key
    is bad: check_params must fail first. Were runtime untracked, DVC would skip check_params,
    remove eval_dt's other outputs (the full report, the curves) and only then run the stage,
    which fails on the bad key."""
    (repo.root / "metrics" / "eval.json").unlink()                  # eval_dt is now due
    kept = repo.hashes("metrics")
    assert "eval_detail.json" in kept and any(k.startswith("curves/") for k in kept)
    raw = repo.params
    raw["runtime"]["eval"]["threads"] = -1
    (repo.root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    p = repo.run_raw(sys.executable, "-m", "dvc", "repro")
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert ran_stages(out) == {"check_params"}, out
    assert "error: params.yaml: runtime.eval.threads" in out, out
    assert repo.hashes("metrics") == kept


def test_shard_count_change_just_works(repo: Repo):
    split = repo.json("data/split.json")
    repo.set_param("source.shards", [0])
    out = repo.dvc("repro")
    ran = ran_stages(out)
    assert {"train_source_agents@0", "build_history_dataset"} <= ran and "train_source_agents@1" not in ran
    assert not (repo.root / "data/sources/shard_1").exists(), "the stale shard folder is left behind"
    assert not (repo.root / "logs/sources/shard_1").exists()
    goals = sorted(int(p.name[5:]) for p in (repo.root / "data/sources/shard_0").glob("goal_*"))
    assert goals == list(range(24))
    assert repo.json("data/dataset/meta.json")["train_goals"] == split["train"]
    assert "up to date" in repo.dvc("status")
