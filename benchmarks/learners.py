"""The learners side by side on held-out goals: one table and one plot from the runs of
``benchmarks.splits`` (results/splits/<name>/split_<K>/), mean ± std over the splits.

    python -m benchmarks.learners [NAME=LABEL ...]

Each NAME is a folder of results/splits made by ``python -m benchmarks.splits --name NAME``
(default: the learners of docs/results.md's first table, those that exist). The baselines come
from the same runs' curves (the last run's columns that hold them): ``random_search`` (a random
walk until the first success, then shortest paths) and ``systematic_explorer`` (the explorer a
searching learner distils, on the same goals). Writes the section "Learners side by side" of
docs/results.md and docs/img/learners.png.

``--smoke`` tabulates the folders that exist into a temporary folder and writes nothing here.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from adlib.evaluation import CURVE_LABELS, STD_SUFFIX, plot_curves
from benchmarks import table, write_section
from benchmarks.smoke import parse

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results.md"
LEARNERS = {"default": "AD, default (A2C + AD^eps data, exploit target)",
            "ad_source": "AD, A2C + AD^eps data, source target (the original's)",
            "explorer": "AD, explorer data, source target",
            "searcher_tour": "searcher: explorer data (+1 A2C stream), explorer target",
            "searcher": "searcher: explorer + A2C + AD^eps data, explorer target",
            "searcher_L128": "searcher, context 128, 3000 training steps (the README's command)"}
EPISODES = (1, 2, 3, 5, 10)


def load(base: Path) -> tuple[list[pd.DataFrame], list[dict]]:
    """Every split's held-out curves and report under ``base``."""
    splits = sorted(base.glob("split_*"))
    return ([pd.read_csv(s / "held_out.csv") for s in splits],
            [json.loads((s / "eval_detail.json").read_text()) for s in splits])


def ms(values: list[float]) -> str:
    a = np.asarray(values, float)
    return f"{a.mean():.3f} ± {a.std():.3f}"


def row(label: str, curves: list[pd.DataFrame], col: str, detail: list[dict] | None) -> list[str]:
    ys = np.stack([c[col].to_numpy() for c in curves])                       # [splits, E]
    cells = [ms(ys[:, e - 1]) for e in EPISODES]
    cells += [ms(ys[:, 10:20].mean(1)), ms(ys[:, -10:].mean(1))]
    after = [d["held_out"]["sampled"].get("success_after_first") for d in detail or []]
    cells.append(ms(after) if after and None not in after else "")
    return [label, str(len(curves)), *cells]


def collect(names: dict[str, str], base: Path, img: Path) -> str:
    runs = {n: load(base / n) for n in names if list((base / n).glob("split_*"))}
    if not runs:
        raise SystemExit(f"{base}: none of {sorted(names)} has split_<K> folders; run benchmarks.splits first")
    rows, plot = [], {}
    for n, (curves, detail) in runs.items():
        rows.append(row(names[n], curves, "ad_sampled", detail))
        ys = np.stack([c["ad_sampled"].to_numpy() for c in curves])
        plot[names[n]], plot[names[n] + STD_SUFFIX] = ys.mean(0), ys.std(0)
    last = next(reversed(runs.values()))[0]                                   # baselines: the newest run
    for col in ("random_search", "systematic_explorer", "random"):
        if all(col in c for c in last):
            rows.append(row(f"baseline: {CURVE_LABELS[col]}", last, col, None))
            plot[CURVE_LABELS[col]] = np.mean([c[col].to_numpy() for c in last], 0)
    head = ["held-out success (sampled)", "splits", *(f"ep. {e}" for e in EPISODES), "11-20", "last 10",
            "episode after the 1st success"]
    plot_curves(img, plot, f"held-out goals, mean of {len(last)} splits (single episodes)", "success rate",
                band_over="splits", x_log=True, smooth=False)
    cmds = "\n".join(f"    python -m benchmarks.splits --name {n} ..." for n in runs)
    return (table(head, rows) + "\n\nEach row: mean ± std over the splits of each split's mean over its held-out "
            "goals and eval seeds. Made from results/splits/<name>/ by `python -m benchmarks.learners`; the runs:\n\n"
            + cmds + f"\n\n(their exact commands: results/splits/<name>/split_<K>/command.txt)\n\n![learners](img/{img.name})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("learners", nargs="*", help="NAME=LABEL pairs (default: the four of docs/results.md)")
    args = parse(ap)
    names = dict(a.split("=", 1) for a in args.learners) if args.learners else LEARNERS
    if args.smoke:
        with tempfile.TemporaryDirectory() as tmp:
            print(collect(names, ROOT / "results" / "splits", Path(tmp) / "learners.png"))
        return
    body = collect(names, ROOT / "results" / "splits", ROOT / "docs" / "img" / "learners.png")
    write_section("Learners side by side", body, RESULTS)
    print(body)


if __name__ == "__main__":
    main()
