"""Every room of the family runs every stage at a tiny size with the searching learner: a room
that is not 9x9, a subset of its goals in use (as Dark Room Hard's commands may), explorer streams
and the explorer target. (Key-to-Door: tests/test_keydoor.py.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_tiny_larger_room_with_the_searcher_runs_every_stage(tmp_path):
    sys.path.insert(0, str(ROOT / "tests"))
    from dvc_helpers import TINY_DOWNSTREAM, make_repo, tiny_params

    over = {"env": {"grid_size": 7, "max_episode_steps": 12, "n_tasks": 20},
            "split": {"seed": 1, "n_train": 15},
            "dataset": {"explorer": {"streams_per_goal": 2, "transitions": 64, "ties": "first"}},
            "dt": {"target": "explorer", "ties": "teacher", "seq_len": 32},
            "eval": {"temperature": 0.1}}
    r = make_repo(tmp_path / "room7", tiny_params(TINY_DOWNSTREAM, over))
    r.repro()
    root = tmp_path / "room7"
    split = json.loads((root / "data/split.json").read_text())
    # 7x7 has 48 goals (every cell but the centre); 20 in use: 15 train, 5 held out
    assert split["n_goals"] == 20 and len(split["train"]) == 15 and len(split["held_out"]) == 5
    meta = json.loads((root / "data/dataset/meta.json").read_text())
    assert sorted(meta["train_goals"]) == sorted(split["train"])
    # 1 A2C seed x 4 envs + 2 explorer streams per training goal
    assert meta["streams"] == 15 * (4 + 2) and meta["explorer_streams"] == 15 * 2
    curves = pd.read_csv(root / "metrics/curves/held_out.csv")
    assert {"ad_sampled", "systematic_explorer", "random_search"} <= set(curves.columns)
    assert len(curves) == 5                                      # eval.episodes of TINY_DOWNSTREAM
    detail = json.loads((root / "metrics/eval_detail.json").read_text())
    assert detail["held_out"]["sampled"]["goals"] == 5
    assert (root / "videos/ad_contact_sheet.png").stat().st_size > 0
