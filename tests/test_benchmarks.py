"""Smoke runs of the hand-run benchmarks: ``python -m benchmarks.<name> --smoke`` runs the
script's own code at tiny sizes (benchmarks/smoke.py), so that a rename or a changed signature
in adlib breaks a test instead of the next hand run; none may write into docs/."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
SCRIPTS = ("ablate", "dt_step", "dt_throughput", "env_throughput", "envs", "eval_batching", "eval_kv_cache", "explorers",
           "firstfind", "learners", "levers", "pipeline", "planted_bugs", "rooms", "search_fidelity", "shared_load",
           "source_quality", "source_training", "source_update", "splits", "stage_memory", "stage_threads", "train_memory")
NOT_SCRIPTS = {"__init__": "shared helpers", "smoke": "the smoke runs' sizes"}


def docs_state() -> tuple[str, dict[str, str]]:
    """``git status`` of docs/ and the content hash of every file under it."""
    status = subprocess.run(["git", "status", "--porcelain", "--", "docs/"], cwd=REPO, capture_output=True,
                            text=True).stdout
    files = {str(p.relative_to(DOCS)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(DOCS.rglob("*")) if p.is_file()}
    return status, files


def smoke_env() -> dict[str, str]:
    """One thread, no progress bars, the repository importable."""
    return {**os.environ, "CI": "true", "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_every_script_has_a_smoke_run() -> None:
    found = {p.stem for p in (REPO / "benchmarks").glob("*.py")}
    assert found - set(NOT_SCRIPTS) == set(SCRIPTS)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
@pytest.mark.parametrize("name", SCRIPTS)
def test_smoke_run(name: str) -> None:
    before = docs_state()
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--smoke"], cwd=REPO, env=smoke_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"benchmarks.{name} --smoke failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    assert docs_state() == before, f"benchmarks.{name} --smoke changed docs/"


def test_pooled_searcher_rows_pool_curves_per_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two eval seeds of one split: the pooled row's worst gap is the lowest, over episodes
    1/2/3/5/10, of (mean of the two AD curves) - (mean of the two explorer curves), by hand. Only
    the split both runs hold is pooled (run "a" also has split 0, with other values)."""
    import json

    import pandas as pd

    from benchmarks import learners

    ad = {("a", 1): [0.2, 0.5, 0.7, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
          ("b", 1): [0.3, 0.4, 0.7, 0.9, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0],
          ("a", 0): [0.0] * 10}
    ex = {("a", 1): [0.3, 0.5, 0.7, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
          ("b", 1): [0.3, 0.6, 0.7, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
          ("a", 0): [1.0] * 10}
    for (name, split), curve in ad.items():
        d = tmp_path / name / f"split_{split}"
        d.mkdir(parents=True)
        pd.DataFrame({"episode": range(1, 11), "ad_sampled": curve, "systematic_explorer": ex[name, split]}).to_csv(
            d / "held_out.csv", index=False)
        sampled = {"runs": 115, "steps_over_shortest_last10": 1.0 if name == "a" else 1.2,
                   "shortest_path_share_last10": {"mean": 1.0}}
        (d / "eval_detail.json").write_text(json.dumps({"held_out": {"sampled": sampled}}))
        (d / "command.txt").write_text("dvc exp run\n")
    monkeypatch.setattr(learners, "SEARCHER_POOLED", {"pooled": ("a", "b")})
    [row] = learners.pooled_levers(tmp_path)
    # episode 1: (0.2 + 0.3) / 2 - 0.3 = -0.05; episode 2: 0.45 - 0.55 = -0.10; episode 5: 0.95 - 1.0 = -0.05
    assert row[1] == "1"
    assert row[2:7] == ["0.25", "0.45", "0.70", "0.95", "1.00"]
    assert row[7] == "-0.100"
    assert row[9] == "1.100"
    assert "2 × 115 runs" in row[0]


def test_random_search_runs_follow_the_random_walk_until_its_first_success() -> None:
    """adlib.evaluation.random_search_runs (the bound eval_dt draws, and benchmarks.explorers' learner in its
    place) against the random walk rolled out directly with the same seed: each run is the walk's outcome up
    to and including its first success and the optimum, 1, from then on (a 5x5 room: every goal is within
    reach of one episode)."""
    import numpy as np
    from helpers_dt import ENV

    from adlib.evaluation import random_search_runs
    from adlib.rollout import random_policy, rollout

    goals = [0, 7, 23]
    runs = random_search_runs(ENV, goals, 64, 6, seed=3)                                  # [3 * 64, 6]
    walk = rollout(random_policy, ENV, goals, 64, 6, greedy=False, seed=3).success      # [3 * 64, 6]
    assert runs.shape == walk.shape == (3 * 64, 6)
    for r, w in zip(runs, walk):
        hits = np.flatnonzero(w)
        if len(hits) == 0:
            assert not r.any()
        else:
            f = hits[0]
            assert not r[:f].any() and (r[f:] == 1).all()
    assert 0 < runs[:, 0].mean() < runs[:, -1].mean() <= 1   # some find the goal at once, more later


def test_stage_memory_expands_foreach_stages_in_order() -> None:
    """dvc.yaml's stages in file order, a foreach stage once per item with ${item} substituted
    and its folded command joined on one line; ``python`` is this interpreter."""
    from benchmarks.stage_memory import stage_commands

    dvc = {"stages": {"a": {"cmd": "python -m stages.a --out x"},
                      "b": {"foreach": "${source.shards}",
                            "do": {"cmd": "python -m stages.b --shard ${item}\n  --out d/shard_${item}"}},
                      "c": {"cmd": "python -m stages.c"}}}
    py = sys.executable
    assert stage_commands(dvc, {"source": {"shards": [0, 3]}}) == [
        ("a", f"{py} -m stages.a --out x"),
        ("b@0", f"{py} -m stages.b --shard 0 --out d/shard_0"),
        ("b@3", f"{py} -m stages.b --shard 3 --out d/shard_3"),
        ("c", f"{py} -m stages.c"),
    ]


def test_search_fidelity_counts_moves_the_explorer_would_make_by_hand() -> None:
    """One run in a 5x5 room from the centre (cell 12): up to (1,2) = cell 7, back down to the
    centre, then a no-op. Whole context: up is one of the 4 moves to an unseen neighbour; down
    returns to a seen cell (the explorer goes up, left or right); the no-op is never a move to an
    unseen cell: 1 of 3. With a memory of 1 transition the centre is forgotten at the second step
    (seen: only cell 7, acted on and arrived on), so down agrees: 2 of 3.

    Then a run that finds its goal (cell 2) on its second step, up from cell 7: that step still
    counts (no reward before it) and agrees (up, left and right lead to unseen cells); the step of
    the next episode, after the reward, is not a search step: episode 2 has none."""
    import dataclasses

    import numpy as np

    from adlib.config import EnvConfig
    from adlib.rollout import PlayResult
    from benchmarks.search_fidelity import agreement

    env = EnvConfig(grid_size=5)
    row = lambda *v: np.array([v])
    trace = {"t": row(0, 1, 2), "state": row(12, 7, 12), "action": row(1, 3, 0), "reward": row(0, 0, 0),
             "terminated": row(False, False, False), "truncated": row(False, False, False),
             "next_state": row(7, 12, 12), "episode": row(0, 0, 0)}
    res = PlayResult(goal_ids=np.array([0]), returns=np.zeros((1, 1)), success=np.zeros((1, 1), bool),
                     lengths=np.zeros((1, 1)), shortest=np.array([1]), trace=trace)
    steps, share = agreement(res, env, episodes=1, horizons=(1,))
    assert steps.tolist() == [3]
    assert share[None].tolist() == [1 / 3]
    assert share[1].tolist() == [2 / 3]

    trace = {"t": row(0, 1, 0), "state": row(12, 7, 12), "action": row(1, 1, 3), "reward": row(0, 1, 0),
             "terminated": row(False, True, False), "truncated": row(False, False, False),
             "next_state": row(7, 2, 17), "episode": row(0, 0, 1)}
    res = dataclasses.replace(res, trace=trace, returns=np.zeros((1, 2)), success=np.zeros((1, 2), bool),
                              lengths=np.zeros((1, 2)))
    steps, share = agreement(res, env, episodes=2, horizons=(1,))
    assert steps.tolist() == [2, 0]
    assert share[None][0] == 1.0 and np.isnan(share[None][1])


def test_one_tie_order_is_kept_by_a_tour_and_broken_by_a_contradiction_by_hand() -> None:
    """Two runs in a 5x5 room from the centre (cell 12), both up to (1,2) = cell 7 first (the
    explorer's 4 moves tie: orders with up first among them). Run 0 goes up again to (0,2): at cell
    7 the unseen (0,2), (1,1), (1,3) tie (up, left, right), and up is order 0's first: kept. Run 1
    goes left to (1,1): left before up contradicts its first move (up before left): no order keeps
    both. The no-op that ends each run is not an explorer move there: it counts for neither."""
    import numpy as np

    from adlib.config import EnvConfig
    from adlib.rollout import PlayResult
    from benchmarks.search_fidelity import one_order

    env = EnvConfig(grid_size=5)
    rows = lambda *runs: np.array(runs)
    trace = {"t": rows((0, 1, 2), (0, 1, 2)), "state": rows((12, 7, 2), (12, 7, 6)),
             "action": rows((1, 1, 0), (1, 4, 0)), "reward": rows((0, 0, 0), (0, 0, 0)),
             "terminated": np.zeros((2, 3), bool), "truncated": np.zeros((2, 3), bool),
             "next_state": rows((7, 2, 2), (7, 6, 6)), "episode": rows((0, 0, 0), (0, 0, 0))}
    res = PlayResult(goal_ids=np.array([0, 0]), returns=np.zeros((2, 1)), success=np.zeros((2, 1), bool),
                     lengths=np.zeros((2, 1)), shortest=np.array([1, 1]), trace=trace)
    assert one_order(res, env, episodes=1).tolist() == [0.5]
    # the same moves, the second and third numbered episode 2: episode 1 keeps both runs, episode 2 one
    trace["episode"] = rows((0, 1, 1), (0, 1, 1))
    assert one_order(res, env, episodes=2).tolist() == [1.0, 0.5]


def test_pipeline_stage_seconds_run_from_one_running_line_to_the_next_by_hand() -> None:
    """A made-up ``dvc repro`` log: setup until the first stage at 4 s; check_params 4 -> 6; the two
    source shards 6 -> 16 and 16 -> 30 summed (24); a skipped stage gets no time; train_dt 30 -> the
    command's end at 100 (70)."""
    from benchmarks.pipeline import stage_seconds

    log = [(0.5, "[setup] installing"), (4.0, "Running stage 'check_params':"), (5.0, "[check_params] OK"),
           (6.0, "Running stage 'train_source_agents@0':"), (16.0, "Running stage 'train_source_agents@1':"),
           (29.0, "Stage 'split_tasks' didn't change, skipping"), (30.0, "Running stage 'train_dt':")]
    assert stage_seconds(log, 100.0) == {"setup": 4.0, "check_params": 2.0, "train_source_agents": 24.0,
                                         "train_dt": 70.0}
    assert stage_seconds([(1.0, "nothing ran")], 12.0) == {"setup": 12.0}


def test_pipeline_compares_outputs_by_their_lock_hashes_by_hand() -> None:
    from benchmarks.pipeline import compare_outputs, lock_outputs

    lock = {"stages": {"a": {"outs": [{"path": "data/x", "md5": "1.dir"}, {"path": "logs/a", "md5": "2.dir"}]},
                       "b": {"outs": [{"path": "models/m.pt", "md5": "3"}]}, "c": {"cmd": "no outputs"}}}
    first = lock_outputs(lock)
    assert first == {"data/x": "1.dir", "logs/a": "2.dir", "models/m.pt": "3"}
    other = {"data/x": "1.dir", "logs/a": "9.dir", "metrics/new.json": "4"}
    assert compare_outputs(first, other) == (["data/x"], ["logs/a", "metrics/new.json", "models/m.pt"])


def test_pipeline_outputs_cell_sets_the_timestamped_logs_apart_by_hand() -> None:
    from benchmarks.pipeline import outputs_cell

    first = {"data/x": "1", "logs/a": "2", "models/m.pt": "3"}
    assert outputs_cell(first, {"data/x": "1", "logs/a": "9", "models/m.pt": "3"}) == "all equal (logs aside)"
    assert outputs_cell(first, dict(first)) == "all equal"
    assert outputs_cell(first, {"data/x": "1", "logs/a": "9", "models/m.pt": "4"}) == "differ: models/m.pt (logs aside)"
