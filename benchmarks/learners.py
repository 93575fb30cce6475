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
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from adlib.evaluation import CURVE_LABELS, STD_SUFFIX, plot_curves
from benchmarks import table, write_section
from benchmarks.rooms import load as load_runs
from benchmarks.smoke import parse

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results.md"
LEARNERS = {"default_s600": "AD, default (A2C + goal-blind AD^eps data, exploit target, temperature 1, 600 steps)",
            "default_gb_T1": "AD, the same with 1500 steps (the default until issue 25)",
            "default": "AD, previous default (A2C + AD^eps data, exploit target, temperature 0.5)",
            "ad_source": "AD, A2C + AD^eps data, source target (the original's)",
            "explorer": "AD, explorer data, source target",
            "searcher_tour": "searcher: explorer data (+1 A2C stream), explorer target",
            "searcher": "searcher: explorer + A2C + AD^eps data, explorer target",
            "searcher_search": "searcher, context 128, 3000 steps, ties 'search' (the README's command)",
            "searcher_uniform_s12000": "searcher, random ties (`dt.ties: uniform`), 12000 steps, temperature 1",
            "searcher_ssf75_s4500": "searcher, random ties, 75 % of windows from a stream's start, 4500 steps",
            "searcher_perm_ssf75_s4500_T0.2": "searcher, a tour per run (all 24 tie orders), 4500 steps, "
                                              "temperature 0.2"}
# The searching learner's levers (issue 24), each a results/splits/<name> folder: original variant,
# then the paper variant (no termination, +1 per step on the goal)
SEARCHER_LEVERS = {"searcher": "context 256, 1500 steps, ties 'teacher'",
                   "searcher_s3000": "context 256, 3000 steps, ties 'teacher'",
                   "searcher_L128": "context 128, 3000 steps, ties 'teacher'",
                   "searcher_search": "context 128, 3000 steps, ties 'search'",
                   "searcher_sym": "context 128, 3000 steps, ties 'search', explorer streams in the 8 symmetric "
                                   "tie orders",
                   "searcher_uniform": "context 128, 3000 steps, random-tie explorer streams, ties 'uniform', "
                                       "temperature 1.0",
                   "searcher_uniform_T0.5": "the same model, temperature 0.5",
                   "searcher_uniform_T0.3": "the same model, temperature 0.3",
                   "searcher_uniform_s6000": "the same, 6000 training steps, temperature 1.0",
                   "searcher_uniform_s6000_T0.7": "the same model, temperature 0.7",
                   "searcher_uniform_s12000": "the same, 12000 training steps, temperature 1.0",
                   "searcher_uniform_s12000_evalseed1": "the same model, eval seed 1 (the explorer drawn again too)",
                   "searcher_uniform_s12000_evalseed2": "the same model, eval seed 2",
                   "searcher_ssf75": "random ties, 3000 steps, temperature 1.0, `dt.stream_start_frac: 0.75` "
                                     "(minutes: sources too)",
                   "searcher_ssf75_lr2": "the same, learning rate 2e-3",
                   "searcher_ssf75_s4500": "the same (learning rate 1e-3), 4500 steps",
                   "searcher_ssf75_s4500_T0.7": "the same models, temperature 0.7",
                   "searcher_ssf75_s4500_xeps10": "4500 steps, explorer streams with 10 % random actions "
                                                  "(`dataset.explorer.eps: 0.1`; minutes: sources too)",
                   "searcher_ssf75_s4500_xeps25": "the same, 25 % random actions",
                   "searcher_ssf75_s4500_heads8": "4500 steps, 8 attention heads of 8 dimensions (`dt.num_heads: 8`; "
                                                  "4 of 16 by default)",
                   "searcher_ssf75_s4500_heads8_skip": "the same, no loss on a mid-stream window's search positions "
                                                       "(`dt.midstream_search: skip`)",
                   "searcher_ssf75_s4500_d96": "4500 steps, width 96, 8 heads of 12, feed-forward 384 (64, 4 of 16, "
                                               "256 by default)",
                   "searcher_ssf75_s4500_table": "4500 steps, one embedding per state (`dt.state_embedding: table`, "
                                                 "the original's; row + column by default)",
                   "searcher_ssf75_s4500_x90": "4500 steps, 90 explorer streams per goal (30 by default; "
                                               "`dataset.explorer.streams_per_goal: 90`, the last -S wins)",
                   "searcher_ssf75_s6000_heads8": "6000 steps, 8 heads",
                   "searcher_perm": "context 128, 3000 steps, explorer streams in all 24 tie orders "
                                    "(`dataset.explorer.ties: permutations`, 24 per goal), ties 'search_own', "
                                    "temperature 1.0",
                   "searcher_perm_T0.2": "the same models, temperature 0.2",
                   "searcher_perm_ssf75_s4500_T0.2": "all 24 tie orders, 4500 steps, `dt.stream_start_frac: 0.75`, "
                                                     "temperature 0.2 (minutes: sources too)",
                   "searcher_perm_ssf75_s4500_T0.2_evalseed1": "the same models, eval seed 1 (the explorer drawn "
                                                               "again too)",
                   "searcher_perm_ssf75_s4500_T0.2_evalseed2": "the same models, eval seed 2",
                   "searcher_perm_ssf75_s4500_T0.2_evalseed3": "the same models, eval seed 3",
                   "searcher_perm_ssf75_s4500_T0.2_evalseed4": "the same models, eval seed 4"}
# Runs pooled per split in the levers table: one split's trained models played with several eval seeds
SEARCHER_POOLED = {"random ties, 12000 steps, temperature 1.0": ("searcher_uniform_s12000",
                                                                 "searcher_uniform_s12000_evalseed1",
                                                                 "searcher_uniform_s12000_evalseed2"),
                   "all 24 tie orders, 4500 steps, temperature 0.2": ("searcher_perm_ssf75_s4500_T0.2",
                                                                      "searcher_perm_ssf75_s4500_T0.2_evalseed1",
                                                                      "searcher_perm_ssf75_s4500_T0.2_evalseed2"),
                   "the same models": (
                       "searcher_perm_ssf75_s4500_T0.2", "searcher_perm_ssf75_s4500_T0.2_evalseed1",
                       "searcher_perm_ssf75_s4500_T0.2_evalseed2", "searcher_perm_ssf75_s4500_T0.2_evalseed3",
                       "searcher_perm_ssf75_s4500_T0.2_evalseed4")}
PAPER_LEVERS = {"searcher_paper": "context 256, 1500 steps, ties 'teacher'",
                "searcher_paper_L128": "context 128, 3000 steps, ties 'teacher'",
                "searcher_paper_search": "context 128, 3000 steps, ties 'search'",
                "searcher_paper_perm": "all 24 tie orders, ties 'search_own', 4500 steps, "
                                       "`dt.stream_start_frac: 0.75`, temperature 0.2"}
# The A2C-source default's levers against its bound (random search, then shortest paths)
DEFAULT_LEVERS = {"default": "exploit target, AD^eps eps 0.5 -> 0 over 5 episodes, temperature 0.5 (another machine)",
                  "default_repro": "the same, `dvc repro` on this machine",
                  "default_T1": "the same model, temperature 1.0",
                  "default_gb_T1": "AD^eps a random walk until its first reward (goal-blind), temperature 1.0 "
                                   "(the default until issue 25: 1500 optimiser steps)",
                  "default_T1.25": "the 1500-step model, temperature 1.25",
                  "default_noise30": "1500 steps, 30 goal-blind AD^eps streams per goal (10 by default)",
                  "default_evalseed1": "the 1500-step models, eval seed 1 (the bound drawn again too)",
                  "default_evalseed2": "the 1500-step models, eval seed 2 (the bound drawn again too)",
                  "default_s600": "the same with 600 optimiser steps (the default since issue 25)",
                  "default_s600_evalseed1": "the 600-step models, eval seed 1 (the bound drawn again too)",
                  "default_s600_evalseed2": "the 600-step models, eval seed 2 (the bound drawn again too)"}
# one split's trained models, 3 eval seeds
POOLED = {"1500 steps": ("default_gb_T1", "default_evalseed1", "default_evalseed2"),
          "600 steps, the default": ("default_s600", "default_s600_evalseed1", "default_s600_evalseed2")}
WINDOWS = ((0, 10), (10, 20), (20, 30), (30, 40), (40, 50))
SPLIT_SEED = re.compile(r" -S split\.seed=\d+")
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


def _per_split(values: list[float], fmt: str = "{:.3f}") -> str:
    return " / ".join("–" if v != v else fmt.format(v) for v in values)           # v != v: NaN, not measured


def by_split(base: Path, name: str) -> dict[int, tuple[pd.DataFrame, dict]]:
    """``split -> (held-out curves, report)`` of the run ``base / name`` (empty when it has none)."""
    ids = sorted(int(p.name.split("_")[1]) for p in (base / name).glob("split_*"))
    return dict(zip(ids, zip(*load_runs(base / name)[:2]))) if ids else {}


def pooled_levers(base: Path) -> list[list[str]]:
    """Rows of :data:`SEARCHER_POOLED`: per split, the mean of the runs' curves (equal run counts)
    against the mean of their explorer yardsticks, on the splits every run has."""
    rows = []
    for label, names in SEARCHER_POOLED.items():
        runs = {m: by_split(base, m) for m in names}
        ids = sorted(set.intersection(*(set(r) for r in runs.values())))
        if not ids:
            continue
        ys = np.stack([np.mean([runs[m][k][0]["ad_sampled"].to_numpy() for m in names], 0) for k in ids])
        ex = np.stack([np.mean([runs[m][k][0]["systematic_explorer"].to_numpy() for m in names], 0) for k in ids])
        s = [[runs[m][k][1]["held_out"]["sampled"] for m in names] for k in ids]
        worst = (ys - ex)[:, [e - 1 for e in EPISODES]].min(1)
        mean = lambda key, sub=None: [np.mean([x[key] if sub is None else x[key][sub] for x in xs]) for xs in s]
        rows.append([f"{label}: {len(names)} eval seeds pooled ({len(names)} × {s[0][0]['runs']} runs per split)",
                     _per_split(ids, "{}"),
                     *(f"{ys[:, e - 1].mean():.2f}" for e in EPISODES), _per_split(worst, "{:+.3f}"),
                     f"{ys[:, -10:].mean():.3f}", _per_split(mean("steps_over_shortest_last10")),
                     _per_split(mean("shortest_path_share_last10", "mean")), "", " + ".join(names)])
    return rows


def levers(base: Path) -> str:
    """The searcher's levers side by side: per split (splits 0 / 1 / 2 where present), from each
    run's report and curves, with the command of its first split."""
    rows, cmds = [], []
    for n, label in SEARCHER_LEVERS.items():
        ids = sorted(int(p.name.split("_")[1]) for p in (base / n).glob("split_*"))
        if not ids:
            continue
        curves, detail, wall, cmd = load_runs(base / n)
        s = [d["held_out"]["sampled"] for d in detail]
        ys = np.stack([c["ad_sampled"].to_numpy() for c in curves])
        ex = np.stack([c["systematic_explorer"].to_numpy() for c in curves])
        worst = (ys - ex)[:, [e - 1 for e in EPISODES]].min(1)                          # [splits]
        rows.append([label, _per_split(ids, "{}"),
                     *(f"{ys[:, e - 1].mean():.2f}" for e in EPISODES), _per_split(worst, "{:+.3f}"),
                     f"{ys[:, -10:].mean():.3f}",
                     _per_split([x["steps_over_shortest_last10"] for x in s]),
                     _per_split([x["shortest_path_share_last10"]["mean"] for x in s]),
                     _per_split([np.nan if w is None else w / 60 for w in wall], "{:.1f}"), n])
        cmds.append(f"    {SPLIT_SEED.sub('', cmd)}    # {n}")
    rows += pooled_levers(base)
    head = ["9×9, original variant", "splits", *(f"ep. {e}" for e in EPISODES),
            "AD − explorer, worst of ep. " + " / ".join(map(str, EPISODES)) + ", per split", "last 10",
            "steps / shortest, last 10, per split", "episodes exactly shortest, per split", "minutes per split", "run"]
    prow = []
    for n, label in PAPER_LEVERS.items():
        if not list((base / n).glob("split_*")):
            continue
        curves, _, _, cmd = load_runs(base / n)
        ys = np.stack([c["ad_sampled"].to_numpy() for c in curves])
        best = np.stack([c["optimum"].to_numpy() for c in curves])
        prow.append([label, str(len(curves)), _per_split(ys[:, 9], "{:.2f}"), f"{ys[:, 9].mean():.2f}",
                     _per_split(ys[:, 19:].min(1), "{:.2f}"), f"{ys[:, 19:].mean(0).min():.2f}",
                     f"{ys[:, -10:].mean():.2f} ({best[:, 0].mean():.2f})", n])
        cmds.append(f"    {SPLIT_SEED.sub('', cmd)}    # {n}")
    phead = ["9×9, paper variant (return)", "splits", "ep. 10 per split", "ep. 10 mean",
             "lowest from ep. 20, per split", "lowest mean from ep. 20", "last 10 (optimum)", "run"]
    return (table(head, rows) + "\n\n" + (table(phead, prow) + "\n\n" if prow else "")
            + "Held-out goals, sampled at temperature 0.1 unless the row says otherwise; success rate, or return in "
            "the paper variant; \"AD − explorer\" is each split's lowest difference to the systematic explorer "
            "(random ties, the same goals) at those episodes (the target: ≥ −0.05). Per "
            "split: each split's mean over its held-out goals and 5 runs per goal (the pooled rows: 5 per goal from each "
            "of the run's eval seeds, against the mean of their explorer curves); other cells: the mean over the "
            "splits. Minutes: the split's `dvc exp run` (results/splits/<name>/split_<K>/wall_s.txt; – not "
            "recorded), with cached sources. Made from results/splits/<name>/ by `python -m benchmarks.learners`; "
            "the runs' split 0 (the others add `-S split.seed=K`):\n\n" + "\n".join(cmds))


def default_levers(base: Path) -> str:
    """The default's margin over its bound per split: AD minus random search over each 10-episode
    window of the first 50, the episode after the first success, the last 10; then the runs of
    :data:`POOLED` (one split's models, several eval seeds) pooled per split."""
    rows, cmds, size = [], [], ""
    runs: dict[str, dict[int, tuple[pd.DataFrame, dict]]] = {}                     # name -> split -> (curves, report)

    def add(label: str, split: int, found: list[tuple[pd.DataFrame, dict]], name: str) -> None:
        # runs of one split with equal run counts: the pooled mean is the mean of their means
        s = [d["held_out"]["sampled"] for _, d in found]
        gap = [np.mean([c["ad_sampled"][a:b].mean() - c["random_search"][a:b].mean() for c, _ in found])
               for a, b in WINDOWS]
        rows.append([label, str(split), *(f"{g:+.3f}" for g in gap), str(sum(g >= 0 for g in gap)),
                     f"{np.mean([x['success_after_first'] for x in s]):.3f}",
                     f"{np.mean([x['success_last10']['mean'] for x in s]):.3f}", name])

    for n, label in DEFAULT_LEVERS.items():
        ids = sorted(int(p.name.split("_")[1]) for p in (base / n).glob("split_*"))
        if not ids:
            continue
        curves, detail, _, cmd = load_runs(base / n)
        runs[n] = dict(zip(ids, zip(curves, detail)))
        one = detail[0]["held_out"]["sampled"]
        size = size or f"{one['goals']} × {one['seeds']}"
        for k, run in runs[n].items():
            add(label, k, [run], n)
        cmds.append(f"    {cmd}    # {n}")
    for what, pooled in POOLED.items():
        for k in sorted(runs.get(pooled[0], {})):
            if all(k in runs.get(n, {}) for n in pooled):
                found = [runs[n][k] for n in pooled]
                one = found[0][1]["held_out"]["sampled"]
                add(f"{what}, pooled over eval seeds 0, 1, 2 ({len(found)} × {one['runs']} runs)", k, found,
                    " + ".join(pooled))
    head = ["A2C-source learner", "split", *(f"AD − bound, ep. {a + 1}–{b}" for a, b in WINDOWS), "windows ≥ 0",
            "episode after the 1st success", "last 10", "run"]
    return (table(head, rows) + f"\n\nHeld-out goals, {size} runs per split, 200 episodes. The bound is "
            "`random_search` (a random walk until the first success, then shortest paths; Monte Carlo over the "
            "same goals). Made from results/splits/<name>/ by `python -m benchmarks.learners`; the runs, each "
            "against the params.yaml of its time (`default`, \"Across splits: default\", and `default_repro` ran "
            "the previous default; `default_gb_T1`, \"Across splits: default_gb_T1\", is today's with 1500 optimiser steps, "
            "the default until issue 25; `default_s600`, \"Across splits: default_s600\", is today's; the "
            "`_evalseed1` and `2` runs play those trained models again with other eval seeds, so their spread is the "
            "measurement's own noise):\n\n"
            + "\n".join(cmds))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("learners", nargs="*", help="NAME=LABEL pairs (default: the four of docs/results.md)")
    args = parse(ap)
    names = dict(a.split("=", 1) for a in args.learners) if args.learners else LEARNERS
    if args.smoke:
        with tempfile.TemporaryDirectory() as tmp:
            print(collect(names, ROOT / "results" / "splits", Path(tmp) / "learners.png"))
        print(levers(ROOT / "results" / "splits"))
        print(default_levers(ROOT / "results" / "splits"))
        return
    body = collect(names, ROOT / "results" / "splits", ROOT / "docs" / "img" / "learners.png")
    write_section("Learners side by side", body, RESULTS)
    print(body)
    body = levers(ROOT / "results" / "splits")
    write_section("The searcher's levers", body, RESULTS)
    print(body)
    body = default_levers(ROOT / "results" / "splits")
    write_section("The default against its bound", body, RESULTS)
    print(body)


if __name__ == "__main__":
    main()
