"""Held-out success over episodes 11-20, taken apart: has AD found the goal yet (search), and
does it walk back to it once found (exploitation)?

    python -m benchmarks.firstfind run NAME MODEL [--split-seed K] [--seeds N]
    python -m benchmarks.firstfind table

``run`` plays the held-out goals of ``params.yaml``'s env and split (``--split-seed``
overrides the split seed; use the one the model was trained on) with the frozen MODEL (or,
with MODEL ``explorer``, the systematic explorer :class:`adlib.noise.Explorer`; with MODEL
``random``, uniformly random actions: a searcher whose episodes are independent random walks), from
an empty context (3 seeds x 30 episodes unless ``--seeds``, sampled at ``eval.temperature``), and appends one
JSON line to ``docs/firstfind.jsonl``. ``table`` writes those lines as the section "Search
and exploitation, apart" of docs/results.md. Episodes are numbered from 1.

``--smoke`` runs ``run`` (a model, the explorer, random actions) and ``table`` on a tiny pipeline
run in a temporary folder, where it writes its lines and section.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import torch

from adlib.config import load_params
from adlib.incontext import play
from adlib.model import load_model
from adlib.noise import Explorer
from adlib.rollout import random_policy, rollout
from adlib.tasks import split_goals
from benchmarks import commit, table, write_section
from benchmarks.smoke import parse, tiny_workspace

ROOT = Path(__file__).resolve().parents[1]
LINES = ROOT / "docs" / "firstfind.jsonl"
RESULTS = ROOT / "docs" / "results.md"


def decompose(success: np.ndarray, lo: int = 10, hi: int = 20) -> dict[str, float]:
    """``success`` [runs, episodes] (bool) -> search and exploitation numbers over episodes
    ``lo+1 .. hi`` (1-based)."""
    runs, E = success.shape
    found = np.cumsum(success, 1) > 0                                  # [runs, E] found by episode e
    first = np.where(found.any(1), found.argmax(1), E)                 # 0-based, E = never
    before = np.concatenate([np.zeros((runs, 1), bool), found[:, :-1]], 1)   # found in an earlier episode
    w, b = success[:, lo:hi], before[:, lo:hi]
    out = {"success_11to20": float(w.mean()),
           "found_by_10": float((first < lo).mean()),
           "found_share_11to20": float(b.mean()),
           "success_11to20_if_found": float(w[b].mean()) if b.any() else float("nan"),
           "success_11to20_if_not_found": float(w[~b].mean()) if (~b).any() else float("nan"),
           "first_success_median": float(np.median(first) + 1),
           "first_success_p90": float(np.percentile(first, 90) + 1),
           f"never_in_{E}": float((first == E).mean())}
    for k in (1, 2, 3):
        m = first + k < E
        out[f"success_first+{k}"] = float(success[np.flatnonzero(m), (first + k)[m]].mean())
    # what 11-20 would be if every episode after the first success were one
    out["success_11to20_if_exploited"] = float((b | w).mean())
    return out


def search_coverage(states: np.ndarray, cells: np.ndarray, t: np.ndarray, success: np.ndarray,
                    episodes: int = 5) -> list[float]:
    """Mean number of cells first stood on in episode k (k = 1..episodes), over the runs that
    have not succeeded before episode k. ``states``, ``cells``, ``t``: [runs, steps] the cell
    each step acted on and the cell it reached (pre-reset), and its in-episode timestep;
    ``success``: [runs, E]. The start cell counts as seen from the first step on."""
    runs = len(cells)
    ep = np.cumsum(t == 0, 1) - 1                                      # [runs, steps] 0-based episode
    found = np.cumsum(success, 1) > 0
    out = []
    for k in range(episodes):
        new = []
        for i in range(runs):
            if k > 0 and found[i, k - 1]:
                continue
            now = set(cells[i][ep[i] == k].tolist())
            before = {int(states[i, 0])} | set(cells[i][ep[i] < k].tolist())
            new.append(len(now - before))
        out.append(float(np.mean(new)) if new else float("nan"))
    return out


def run(name: str, model_path: str, split_seed: int | None, seeds: int = 3, episodes: int = 30,
        lines: Path = LINES) -> dict:
    """``model_path`` 'explorer' plays :class:`adlib.noise.Explorer` instead of a model, 'random'
    uniformly random actions; one line appended to ``lines``."""
    torch.set_num_threads(int(os.environ.get("THREADS", "1")))
    p = load_params("params.yaml")
    split_cfg = p.split if split_seed is None else dataclasses.replace(p.split, seed=split_seed)
    held_out = split_goals(p.env, split_cfg)["held_out"]
    scripted = model_path in ("explorer", "random")    # no model: the temperature does not apply
    if scripted:
        policy = Explorer(p.env) if model_path == "explorer" else random_policy
        res = rollout(policy, p.env, held_out, seeds, episodes, greedy=False, seed=p.eval.seed, record=True)
    else:
        model, _ = load_model(model_path)
        res = play(model, p.env, held_out, seeds, episodes, greedy=False, temperature=p.eval.temperature,
                   seed=p.eval.seed, record=True)
    success = res.success.astype(bool)
    out = {"name": name, "model": model_path, "split_seed": split_cfg.seed,
           "temperature": None if scripted else p.eval.temperature,
           "runs": len(res.success), "episodes": episodes, "code": commit(), **decompose(success),
           "new_cells_per_search_episode": search_coverage(res.trace["state"], res.positions, res.trace["t"],
                                                           success)}
    with lines.open("a") as f:
        f.write(json.dumps(out) + "\n")
    return out


COLS = (("success_11to20", "11-20"), ("found_by_10", "found by ep. 10"),
        ("success_11to20_if_found", "11-20, goal found before"), ("success_first+1", "episode after 1st success"),
        ("success_first+3", "3rd episode after"), ("first_success_median", "1st success, median ep."),
        ("first_success_p90", "90th pct."), ("success_11to20_if_exploited", "11-20 if exploited at once"),
        ("new_cells_per_search_episode", "new cells, search episodes 1-5"))


def cell(key: str, value, episodes: int) -> str:
    if isinstance(value, list):
        return " / ".join(f"{v:.0f}" for v in value)
    if key.startswith("first_success"):
        return f"never (> {episodes})" if value > episodes else f"{value:.0f}"
    return f"{value:.2f}"


def write_table(lines: Path = LINES, results: Path = RESULTS) -> str:
    rows = []
    for line in lines.read_text().splitlines():
        r = json.loads(line)
        rows.append([r["name"], str(r["split_seed"]), str(r["runs"]), *(cell(k, r[k], r["episodes"]) for k, _ in COLS), r["code"]])
    body = ("Held-out goals x seeds ('runs': 23 goals x 3 seeds unless stated) x 30 episodes from an empty context, sampled at eval.temperature; "
            "episodes numbered from 1. 'Found by ep. 10': share of runs with a success within the first 10 "
            "episodes. 'Goal found before': 11-20 success in the episodes that come after a first success. "
            "'11-20 if exploited at once': what 11-20 would be if every episode after the first success "
            "succeeded (the search alone sets it). 'New cells': cells first stood on in each of the first five "
            "episodes, over the runs still searching (the start cell counts as seen). The 'explorer' row is "
            "adlib.noise.Explorer itself (walks to the nearest unseen cell; no model), for comparison; the "
            "'random walk' rows play uniformly random actions (each episode an independent random walk), so their "
            "'11-20 if exploited at once' is what a random-walk search followed by perfect exploitation gives.\n\n"
            + table(["model", "split", "runs", *(c for _, c in COLS), "benchmark run at"], rows)
            + "\n\nCommand: `python -m benchmarks.firstfind run NAME MODEL`; raw lines in `docs/firstfind.jsonl`.")
    write_section("Search and exploitation, apart", body, results)
    return body


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", choices=("run", "table"))
    ap.add_argument("name", nargs="?")
    ap.add_argument("model", nargs="?")
    ap.add_argument("--split-seed", type=int, default=None)
    ap.add_argument("--seeds", type=int, default=3, help="eval seeds per held-out goal (default 3)")
    a = parse(ap)
    if a.smoke:
        with tiny_workspace("model") as root:
            for model in ("models/dt/model.pt", "explorer", "random"):
                print(run(model, model, None, 1, 20, root / "firstfind.jsonl"))
            print(write_table(root / "firstfind.jsonl", root / "results.md"))
    elif a.what is None:
        ap.error("choose run or table")
    else:
        print(run(a.name, a.model, a.split_seed, a.seeds) if a.what == "run" else write_table())


if __name__ == "__main__":
    main()
