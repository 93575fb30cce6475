"""dvc.yaml and the committed dvc.lock, checked without running DVC (fast; every CI run).

What makes `dvc repro` trustworthy, pinned statically here (the DVC runs that show the
behaviour are in tests/test_pipeline_dvc.py):

- every stage depends on every module it imports (its import closure), and on nothing else
  of the code: an edit reruns exactly the stages that import it;
- every stage tracks exactly the params its outputs depend on; only check_params tracks
  `runtime`;
- check_params tracks every params section and every module, so it runs before any stage
  that an edit reruns;
- the committed dvc.lock is what a `dvc repro` of the committed code and params wrote, and
  the committed metrics and curves are the ones it produced;
- plots name their x and y; nothing is left out of `dvc push`; resume scratch is ignored.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
import yaml
from dvc_helpers import (
    NOT_DEPS,
    REPO,
    RESULT_SECTIONS,
    STAGE_READS,
    import_closure,
    pipeline,
    stage_module,
    stage_name,
    stage_reads,
)

from adlib.config import EnvConfig, SplitConfig, param_keys, read_yaml
from adlib.tasks import split_goals

PARAMS = read_yaml(REPO / "params.yaml")
STAGES = pipeline(PARAMS)
CODE = ("adlib/", "stages/")


def code_deps(st: dict) -> set[str]:
    return {d for d in st["deps"] if d.startswith(CODE)}


def expected_code_deps(name: str) -> set[str]:
    closure = import_closure(stage_module(STAGES[name]["cmd"]))
    if stage_name(name) == "check_params":   # it runs whenever any stage would: all their code, and config.py
        for st in STAGES.values():
            closure |= import_closure(stage_module(st["cmd"]))
        return closure - {"adlib/logs.py"}
    return closure - set(NOT_DEPS)


# ---------------------------------------------------------------- deps

@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_depends_on_exactly_its_import_closure(name):
    want, have = expected_code_deps(name), code_deps(STAGES[name])
    assert have == want, (f"dvc.yaml stage {name}: deps miss {sorted(want - have)} and list "
                          f"{sorted(have - want)} that it does not import")


def test_import_closure_follows_function_level_and_package_imports():
    """The closure is not just the top-level imports: stages import the library inside main()."""
    closure = import_closure("stages.eval_dt")
    assert {"stages/__init__.py", "adlib/__init__.py", "adlib/envs/__init__.py", "adlib/evaluation.py",
            "adlib/model.py", "adlib/incontext.py", "adlib/rollout.py"} <= closure
    assert "adlib/a2c.py" not in closure   # evaluation needs no A2C code


def test_every_stage_runs_after_check_params_and_reads_only_pipeline_data():
    outs = {o: n for n, st in STAGES.items() for o in st["outs"]}
    for name, st in STAGES.items():
        data = [d for d in st["deps"] if not d.startswith(CODE)]
        if name == "check_params":   # params.yaml as a file: a key DVC's run cache ignores still reruns it
            assert data == ["params.yaml"], data
            continue
        assert "data/params.ok" in data, name
        for d in data:   # an output, or the folder of several (data/sources holds every shard)
            assert d in outs or any(o.startswith(d + "/") for o in outs), f"{name}: dep {d} is no stage's output"


# ---------------------------------------------------------------- params

@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_tracks_exactly_the_params_it_reads(name):
    assert sorted(STAGES[name]["params"]) == sorted(STAGE_READS[stage_name(name)])


def test_runtime_is_tracked_by_check_params_only_and_every_result_key_by_some_stage():
    tracked = {k for n, st in STAGES.items() if n != "check_params" for k in st["params"]}
    assert not [k for k in tracked if k.split(".")[0] == "runtime"]
    assert set(PARAMS) == {*RESULT_SECTIONS, "runtime"}
    result = {k for k in param_keys() if not k.startswith("runtime.")}
    read = set().union(*(stage_reads(n) for n in STAGES if n != "check_params"))
    assert result == read, f"result keys no stage reads: {sorted(result - read)}"
    assert stage_reads("check_params") == set(param_keys())


def test_split_depends_on_the_task_set_only():
    """Why split_tasks tracks env.kind, env.grid_size, env.n_tasks and no other env key."""
    base = split_goals(EnvConfig(grid_size=7), SplitConfig(seed=3, n_train=30))
    for other in (EnvConfig(grid_size=7, max_episode_steps=6, terminate_on_goal=False, reward_mode="stand"),
                  EnvConfig(grid_size=7, random_start=True)):
        assert split_goals(other, SplitConfig(seed=3, n_train=30)) == base
    assert split_goals(EnvConfig(grid_size=5), SplitConfig(seed=3, n_train=20)) != base
    assert split_goals(EnvConfig(grid_size=7, n_tasks=40), SplitConfig(seed=3, n_train=30)) != base
    keydoor = split_goals(EnvConfig(kind="keydoor", grid_size=7, max_episode_steps=20), SplitConfig(seed=3, n_train=30))
    assert keydoor["n_goals"] == 49 * 48 and keydoor != base


# ---------------------------------------------------------------- the committed dvc.lock

def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def git_tracked(rel: str) -> bool:
    r = subprocess.run(["git", "ls-files", "--error-unmatch", rel], cwd=REPO, capture_output=True)
    return r.returncode == 0


LOCK = read_yaml(REPO / "dvc.lock")["stages"]


def test_lock_has_exactly_the_pipeline_stages():
    assert set(LOCK) == set(STAGES), (f"dvc.lock lacks {sorted(set(STAGES) - set(LOCK))}, has stale "
                                      f"{sorted(set(LOCK) - set(STAGES))}: commit the dvc.lock of a real `dvc repro`")


@pytest.mark.parametrize("name", sorted(STAGES))
def test_lock_matches_committed_code_and_params(name):
    """A commit that changes a stage's code or params without rerunning it fails here."""
    lock, st = LOCK[name], STAGES[name]
    assert " ".join(lock["cmd"].split()) == st["cmd"]
    deps = {d["path"]: d for d in lock["deps"]}
    assert set(deps) == set(st["deps"]), name
    stale = [p for p in code_deps(st) | {"params.yaml"} & set(deps) if md5(REPO / p) != deps[p]["md5"]]
    assert not stale, f"dvc.lock {name}: {stale} changed since the last `dvc repro` of this stage"
    locked = lock.get("params", {}).get("params.yaml", {})
    assert set(locked) == set(st["params"])
    for key, value in locked.items():
        now = PARAMS
        for k in key.split("."):
            now = now[k]
        assert now == value, f"dvc.lock {name}: params.yaml {key} is {now!r}, the last run had {value!r}"


def test_lock_is_one_consistent_run():
    """Every data dependency carries the hash its producer wrote: one `dvc repro`, not patches."""
    produced = {o["path"]: o["md5"] for st in LOCK.values() for o in st.get("outs", [])}
    checked = 0
    for name, st in LOCK.items():
        for d in st["deps"]:
            if d["path"] in produced:   # (data/sources, the folder of all shards, has no single producer)
                assert d["md5"] == produced[d["path"]], f"{name}: {d['path']} is not what its stage produced"
                checked += 1
    assert checked >= 10


def git_kept_outputs(lock: dict) -> list[tuple[str, str]]:
    """(path, locked md5) of every stage output kept in git (``cache: false``), from ``lock``'s stages."""
    return [(path, next(o for o in lock[name]["outs"] if o["path"] == path)["md5"])
            for name, st in STAGES.items() for path, opts in st["outs"].items() if opts.get("cache") is False]


def test_committed_metrics_and_curves_are_the_locked_ones():
    """`dvc metrics diff` against HEAD compares with numbers the committed code produced."""
    checked = []
    for path, locked in git_kept_outputs(LOCK):
        assert git_tracked(path), f"{path} (cache: false) is not committed"
        assert md5(REPO / path) == locked, f"{path} is not the output of the locked run"
        checked.append(path)
    assert "metrics/eval.json" in checked and len(checked) >= 4


def test_committed_metrics_match_the_committed_lock_in_git():
    """The same check on what HEAD holds, not the working tree: a dvc.lock committed without the
    metrics its run wrote (they sit modified in the working tree) fails here."""
    def show(rel: str) -> bytes:
        return subprocess.run(["git", "show", f"HEAD:{rel}"], cwd=REPO, capture_output=True, check=True).stdout

    checked = []
    for path, locked in git_kept_outputs(yaml.safe_load(show("dvc.lock"))["stages"]):
        assert hashlib.md5(show(path)).hexdigest() == locked, f"HEAD's {path} is not HEAD's locked output"
        checked.append(path)
    assert "metrics/eval.json" in checked and len(checked) >= 4


# ---------------------------------------------------------------- what users look at

def test_headline_metrics_are_a_few_numbers():
    declared = [p for st in STAGES.values() for p, o in st["outs"].items()]
    raw = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    metrics = [next(iter(m)) if isinstance(m, dict) else m for st in raw.values() for m in st.get("metrics", [])]
    assert metrics == ["metrics/eval.json"] and "metrics/eval_detail.json" in declared

    def numbers(d) -> int:
        return sum(numbers(v) for v in d.values()) if isinstance(d, dict) else int(isinstance(d, (int, float)))

    n = numbers(json.loads((REPO / "metrics/eval.json").read_text()))
    assert 8 <= n <= 15, n
    assert numbers(json.loads((REPO / "metrics/eval_detail.json").read_text())) > 50


def test_declared_plots_show_ad_with_baselines_against_episode():
    plots = yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
    csv_plots = [next(iter(p.values())) for p in plots if isinstance(p, dict)]
    images = [p for p in plots if isinstance(p, str)]
    assert {Path(p).stem for p in images} == {"held_out", "train_goals"}
    files = set()
    for p in csv_plots:
        assert p["x"] == "episode"
        for path, ys in p["y"].items():
            files.add(path)
            assert {"ad_sampled", "a2c_source", "random", "optimum", "random_search", "systematic_explorer"} <= set(ys), ys
            header = (REPO / path).read_text().splitlines()[0].split(",")
            assert header[0] == "episode" and set(ys) <= set(header), (path, header)
    assert files == {"metrics/curves/held_out.csv", "metrics/curves/train_goals.csv"}


def test_every_output_is_pushed():
    """`push: false` made a plain `dvc pull` on a fresh clone fail (videos)."""
    assert not [(n, p) for n, st in STAGES.items() for p, o in st["outs"].items() if o.get("push") is False]


def test_resume_scratch_is_ignored_by_git_and_by_dvc():
    import stages.train_dt
    import stages.train_source_agents

    for scratch in (stages.train_source_agents.RESUME_DIR, stages.train_dt.RESUME_DIR):
        r = subprocess.run(["git", "check-ignore", "-q", f"{scratch}/shard_0.pt"], cwd=REPO)
        assert r.returncode == 0, f"{scratch} is not ignored by git"
        for st in STAGES.values():   # DVC hashes only what dvc.yaml names
            assert not [p for p in [*st["deps"], *st["outs"]] if p.startswith(scratch.split("/")[0])]
