"""Ablations of AD on held-out goals, reusing the pipeline's source histories (no source retraining).

    python -m benchmarks.ablate [--steps 600] [--episodes 100] [--only name,name]

Each variant builds its dataset from ``data/sources`` (cached under ``.cache/ablate``),
trains a model with ``params.yaml``'s dt section plus the variant's overrides, and plays the
held-out goals (sampled actions, ``--seeds`` runs per goal). Results go to the
``## Ablations`` section of ``docs/results.md``.

``--smoke`` checks every variant's overrides and runs three (the base, a model lever, a dataset
lever) at tiny sizes on a tiny pipeline run in a temporary folder, where it writes its cache and
section (the tiny histories are too short for seq_len 128 or subsample 50).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import time
from pathlib import Path

from adlib.config import DatasetConfig, DTConfig, Params, load_params
from adlib.dataset import build_dataset
from adlib.incontext import play
from adlib.model import load_model
from adlib.tasks import read_split
from adlib.train import train
from benchmarks import table, write_section
from benchmarks.smoke import parse, tiny_workspace

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results.md"
CACHE = Path(".cache/ablate")

# name -> (dataset overrides, dt overrides); "base" is params.yaml as is
VARIANTS: dict[str, tuple[dict, dict]] = {
    "base (params.yaml)": ({}, {}),
    "layout triplet": ({}, {"layout": "triplet"}),
    "state embedding table": ({}, {"state_embedding": "table"}),
    "subsample 1 (no subsampling)": ({"subsample": 1}, {}),
    "subsample 50": ({"subsample": 50}, {}),
    "3 A2C streams per goal": ({"a2c_streams_per_goal": 3}, {}),
    "+ AD^eps 20 streams/goal": ({"noise": {"streams_per_goal": 20}}, {}),
    "seq_len 128": ({}, {"seq_len": 128}),
    "d 32, 2 layers": ({}, {"embedding_dim": 32, "num_layers": 2, "feed_forward_dim": 128}),
    "d 128, 4 layers": ({}, {"embedding_dim": 128, "num_layers": 4, "feed_forward_dim": 512}),
    "no stream-start windows": ({}, {"stream_start_frac": 0.0}),
    "history_len 800k (SPEC)": ({"history_len": 800_000}, {}),
}


def replace(cfg, overrides: dict):
    """``dataclasses.replace`` that also descends into nested configs."""
    kw = {}
    for k, v in overrides.items():
        cur = getattr(cfg, k)
        kw[k] = replace(cur, v) if dataclasses.is_dataclass(cur) else v
    return dataclasses.replace(cfg, **kw)


def variant(p: Params, name: str, steps: int) -> tuple[DatasetConfig, DTConfig]:
    """The dataset and dt configs of variant ``name``: ``p``'s with its overrides, ``steps`` steps."""
    ds_over, dt_over = VARIANTS[name]
    return replace(p.dataset, ds_over), replace(p.dt, {**dt_over, "num_steps": steps,
                                                       "warmup_steps": min(p.dt.warmup_steps, steps // 10)})


def run(args: argparse.Namespace, results: Path) -> None:
    """Train and play the variants ``args`` name, in the workspace that is the current folder;
    write their section into ``results``."""
    p = load_params("params.yaml")
    split = read_split("data/split.json", p.env)
    names = [n for n in VARIANTS if not args.only or any(o.strip() in n for o in args.only.split(","))]
    configs = {n: variant(p, n, args.steps) for n in VARIANTS}   # every override checked before any training
    short = [n for n in names if configs[n][0].history_len > p.source.env_steps]
    if short:
        need = max(configs[n][0].history_len for n in short)
        raise SystemExit(f"{short}: dataset.history_len {need:,} is longer than the sources' source.env_steps = "
                         f"{p.source.env_steps:,}; train them that long first (dvc exp run -S source.env_steps={need}) "
                         f"or leave the variant out (--only)")
    rows, raw = [], {}
    for name in names:
        ds_cfg, dt_cfg = configs[name]
        rt = dataclasses.replace(p.runtime.dt, eval_step=0, device="cpu")
        key = hashlib.sha256(json.dumps(dataclasses.asdict(ds_cfg), sort_keys=True).encode()).hexdigest()[:10]
        ds_dir = CACHE / f"ds_{key}"
        if not (ds_dir / "meta.json").exists():
            build_dataset(p.env, ds_cfg, split, "data/sources", len(p.source.shards), ds_dir)
        run_dir = CACHE / f"run_{hashlib.sha256((name + str(args.steps)).encode()).hexdigest()[:10]}"
        t0 = time.time()
        train(p.env, dt_cfg, split, ds_dir, run_dir, rt=rt)
        wall = time.time() - t0
        model, _ = load_model(run_dir / "model.pt")
        res = play(model, p.env, split["held_out"], args.seeds, args.episodes, greedy=False, seed=0)
        s = res.success.mean(0)
        pts = {e: float(s[e - 1]) for e in (1, 10, 50, 100) if e <= args.episodes}
        first, last = float(s[:10].mean()), float(s[-10:].mean())
        raw[name] = {"success_at": pts, "first10": first, "last10": last, "train_s": wall,
                     "params": model.num_params(), "transitions": json.loads((ds_dir / "meta.json").read_text())["transitions"]}
        rows.append([name, *(f"{pts.get(e, float('nan')):.2f}" for e in (1, 10, 50, 100)),
                     f"{first:.2f}", f"{last:.2f}", f"{last / max(first, 1e-9):.1f}x",
                     f"{wall:.0f}", f"{model.num_params():,}", f"{raw[name]['transitions']:,}"])
        print(" | ".join(rows[-1]), flush=True)
    body = (f"Held-out success (sampled actions) of AD trained {args.steps} steps x batch {p.dt.batch_size} "
            f"on the pipeline's own source histories; {len(split['held_out'])} held-out goals x {args.seeds} seeds, "
            f"{args.episodes} episodes from an empty context. Success at episode k is the mean over runs of "
            f"episode k alone (noisy); first/last 10 are means over 10 episodes. Train s = wall time of "
            f"train_dt on this 2-core CPU (other jobs may have shared it).\n\n"
            + table(["variant", "@1", "@10", "@50", "@100", "first 10", "last 10", "last/first", "train s",
                     "params", "transitions"], rows)
            + f"\n\nCommand: `python -m benchmarks.ablate --steps {args.steps} --episodes {args.episodes} "
              f"--seeds {args.seeds}`.")
    if not results.exists():
        results.write_text("# Results\n")
    write_section("Ablations", body, results)
    (CACHE / "ablate.json").write_text(json.dumps(raw, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated variant names (substring match)")
    args = parse(ap, steps=3, episodes=10, seeds=1, only="base,triplet,AD^eps")
    if args.smoke:
        with tiny_workspace("sources") as root:
            run(args, root / "results.md")
    else:
        run(args, RESULTS)


if __name__ == "__main__":
    main()
