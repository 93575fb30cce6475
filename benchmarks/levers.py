"""One lever at a time at full training length: AD on held-out goals, from the pipeline's own
source histories (no source retraining), sampled at temperatures 1.0 and 0.5.

    python -m benchmarks.levers run NAME '{"dataset": {...}, "dt": {...}}' [--split-seed K]
    python -m benchmarks.levers table

``run`` builds the variant's dataset from ``data/sources`` (cached under ``.cache/levers``),
trains ``params.yaml``'s dt section plus the overrides (full ``dt.num_steps``), plays the
held-out goals (3 seeds x 100 episodes, from an empty context) and appends one JSON line to
``docs/levers.jsonl``; ``table`` writes those lines as the section "Levers at full training"
of docs/results.md. Runs are independent: two can share the 2-core machine (``THREADS=1``).

``--smoke`` runs ``run`` (a lever on the dataset and one on the model) and ``table`` on a tiny
pipeline run in a temporary folder, where it writes its cache, lines and section.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path

import torch

from adlib.config import load_params
from adlib.dataset import build_dataset
from adlib.evaluation import summarize
from adlib.incontext import play
from adlib.model import load_model
from adlib.tasks import split_goals
from adlib.train import train
from benchmarks import commit, table, write_section
from benchmarks.ablate import replace
from benchmarks.smoke import parse, tiny_workspace

ROOT = Path(__file__).resolve().parents[1]
LINES = ROOT / "docs" / "levers.jsonl"
RESULTS = ROOT / "docs" / "results.md"
CACHE = Path(".cache/levers")
KEYS = ("success_first10", "success_11to20", "success_last10", "steps_over_shortest_last10")
SMOKE = {"subsample-1": {"dataset": {"subsample": 1, "noise": {"streams_per_goal": 2}}},
         "triplet": {"dt": {"layout": "triplet"}}}


def run(name: str, spec: dict, split_seed: int, seeds: int = 3, episodes: int = 100, lines: Path = LINES) -> dict:
    torch.set_num_threads(int(os.environ.get("THREADS", "1")))
    p = load_params("params.yaml")
    split = split_goals(p.env, dataclasses.replace(p.split, seed=split_seed))
    ds, dt = replace(p.dataset, spec.get("dataset", {})), replace(p.dt, spec.get("dt", {}))
    key = hashlib.sha256(json.dumps([dataclasses.asdict(ds), split_seed], sort_keys=True).encode()).hexdigest()[:10]
    ddir, rdir = CACHE / f"ds_{key}", CACHE / f"run_{name}"
    if not (ddir / "meta.json").exists():
        build_dataset(p.env, ds, split, "data/sources", len(p.source.shards), ddir)
    t0 = time.time()
    train(p.env, dt, split, ddir, rdir, rt=dataclasses.replace(p.runtime.dt, eval_step=0, device="cpu"))
    head = commit()
    out = {"name": name, "spec": spec, "code": head, "split_seed": split_seed, "train_s": round(time.time() - t0),
           "transitions": json.loads((ddir / "meta.json").read_text())["transitions"]}
    model, _ = load_model(rdir / "model.pt")
    for temp in (1.0, 0.5):
        s = summarize(play(model, p.env, split["held_out"], seeds, episodes, greedy=False, temperature=temp), seeds,
                      p.env)
        out[f"T{temp}"] = {k: s[k]["mean"] if isinstance(s[k], dict) else s[k] for k in KEYS}
    with lines.open("a") as f:
        f.write(json.dumps(out) + "\n")
    return out


def write_table(lines: Path = LINES, results: Path = RESULTS) -> str:
    rows = []
    for line in lines.read_text().splitlines():
        r = json.loads(line)
        for t in ("T1.0", "T0.5"):
            rows.append([r["name"], t[1:], *(f"{r[t][k]:.2f}" for k in KEYS), str(r["train_s"]),
                         f"{r['transitions']:,}", r.get("code", "")])
    body = ("Each lever at the default's full training length of the time (1500 steps x batch 32; 600 since issue "
            "25) on the pipeline's own "
            "source histories (1 A2C seed per goal, the default before 43b1b5b: every run here used the lever clone's 1-seed sources), split 0; 23 held-out goals x 3 seeds, 100 episodes from an "
            "empty context; sampled at temperature 1.0 and 0.5. Episodes 91-100 are the 'last 10'. "
            "Train s: wall time with other runs sharing the 2 cores (1 thread each). Each variant's "
            "overrides apply to the params.yaml of the commit named in the last column.\n\n"
            + table(["variant", "temperature", "first 10", "11-20", "last 10", "steps / shortest (last 10)",
                     "train s", "transitions", "params.yaml of"], rows)
            + "\n\nCommand: `python -m benchmarks.levers run NAME SPEC`; raw lines in `docs/levers.jsonl`.")
    write_section("Levers at full training", body, results)
    return body


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", choices=("run", "table"))
    ap.add_argument("name", nargs="?")
    ap.add_argument("spec", nargs="?", default="{}")
    ap.add_argument("--split-seed", type=int, default=0)
    a = parse(ap)
    if a.smoke:
        with tiny_workspace("sources") as root:
            for name, spec in SMOKE.items():
                print(run(name, spec, a.split_seed, 1, 20, root / "levers.jsonl"))
            print(write_table(root / "levers.jsonl", root / "results.md"))
    elif a.what is None:
        ap.error("choose run or table")
    else:
        print(run(a.name, json.loads(a.spec), a.split_seed) if a.what == "run" else write_table())


if __name__ == "__main__":
    main()
