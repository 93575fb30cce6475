"""AD's held-out numbers on several task splits (mean ± std across splits), by DVC experiments.

    python -m benchmarks.splits --name default_s600 --seeds 0 1 2
    python -m benchmarks.splits --name paper_s600 --seeds 0 1 2 \\
        -S env.terminate_on_goal=false -S env.reward_mode=stand -S eval.episodes=1000

For each seed: ``dvc exp run -S split.seed=K [-S ...]`` in this workspace (the source agents
do not depend on the split: DVC restores them from its cache), then a copy of that run's
eval report (``metrics/eval_detail.json``, ``metrics/curves/held_out.{csv,png}``) goes to
``results/splits/<name>/split_<K>/``. Then the workspace is put back (params.yaml, dvc.lock and
metrics/ from git, outputs by ``dvc checkout``), and the section "Across splits: <name>" of
docs/results.md and ``docs/img/splits_<name>.png`` are written. ``--collect-only`` skips the
runs and tabulates what results/splits/<name>/ holds. Each split's number is its mean over the
held-out goals and eval seeds; "goal spread" is the std over goals of each goal's mean, averaged
over splits.

``--smoke`` runs no experiment: it keeps two copies of the eval report of a tiny pipeline run
(made in a temporary folder) as ``run_split`` keeps a run's, tabulates them (whole and cut to
fewer episodes), and tabulates results/splits/explorer; every file it writes goes to that folder.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from adlib.config import parse_params, read_yaml
from adlib.evaluation import (AD_PAPER, CURVE_LABELS, SEARCHER_LABEL, STD_SUFFIX, plot_curves,
                              random_search_curve)
from adlib.tasks import split_goals
from benchmarks import table, write_section
from benchmarks.smoke import parse, tiny_workspace

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results.md"
POINTS = (1, 5, 10, 20, 50, 100, 200, 300, 500, 1000)


def split_command(seed: int, sets: list[str]) -> list[str]:
    return ["dvc", "exp", "run", "-S", f"split.seed={seed}", *[a for s in sets for a in ("-S", s)]]


def keep_report(cmd: list[str], dest: Path, workspace: Path = ROOT) -> None:
    """Copy the eval report in ``workspace`` (made by ``cmd``) to ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(workspace / "metrics" / "eval_detail.json", dest / "eval_detail.json")
    shutil.copy(workspace / "metrics" / "curves" / "held_out.csv", dest / "held_out.csv")
    if (workspace / "metrics" / "curves" / "held_out.png").exists():   # eval_dt's own plot of the run
        shutil.copy(workspace / "metrics" / "curves" / "held_out.png", dest / "held_out.png")
    (dest / "command.txt").write_text(" ".join(cmd) + "\n")


def run_split(seed: int, sets: list[str], dest: Path) -> None:
    cmd = split_command(seed, sets)
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True)
    keep_report(cmd, dest)
    (dest / "wall_s.txt").write_text(f"{time.perf_counter() - start:.0f}\n")   # benchmarks.rooms reads it


def restore_workspace() -> None:
    """After the splits: params.yaml, dvc.lock and metrics/ back from git, the outputs from DVC's
    cache. Outputs of the committed dvc.lock that this cache lacks (a fresh clone that never ran
    or pulled the committed pipeline: TensorBoard logs differ by machine) are reported, not
    raised, so that the splits just run are still tabulated; any other checkout error raises."""
    subprocess.run(["git", "checkout", "--", "params.yaml", "dvc.lock", "metrics"], cwd=ROOT, check=True)
    done = subprocess.run(["dvc", "checkout"], cwd=ROOT, capture_output=True, text=True)   # --quiet hides the error
    if done.returncode == 0:
        return
    if "cache up to date" not in done.stderr and "missing" not in done.stderr:
        raise RuntimeError(f"dvc checkout failed:\n{done.stderr.strip()[-3000:]}")
    print("warning: dvc checkout could not restore every committed output (not in this cache; "
          f"dvc pull or dvc repro brings them back):\n{done.stderr.strip()[-1500:]}", flush=True)


def fmt(values: list[float], digits: int) -> str:
    a = np.array(values, float)
    return f"{a.mean():.{digits}f} ± {a.std():.{digits}f}"


def from_curve(curve: pd.Series, key: str) -> float | None:
    """A headline number of :func:`adlib.evaluation.summarize` recomputed from the per-episode
    mean curve (equal to it: every seed averages the same goals), or None if not derivable."""
    y, E = curve.to_numpy(), len(curve)
    stem = key.rsplit("_", 1)[-1] if "_" in key else ""
    if "@" in key:
        p = int(key.split("@")[1])
        return float(y[p - 1]) if p <= E else None
    ranges = {"first10": (0, 10), "11to20": (10, 20), "last10": (E - 10, E)}
    return float(y[slice(*ranges[stem])].mean()) if stem in ranges else None


def random_search_of(command: str, episodes: int, workspace: Path = ROOT) -> np.ndarray:
    """The random-search baseline (:func:`adlib.evaluation.random_search_curve`) of the run that
    ``command`` (its ``dvc exp run -S key=value ...`` line, as ``run_split`` writes it) made:
    ``workspace``'s params.yaml with the command's overrides, validated. For reports made
    before eval_dt wrote that curve itself; it is the same computation, provided the keys the
    command does not set have the same values here as in the run's params.yaml."""
    raw = read_yaml(workspace / "params.yaml")
    words = shlex.split(command)
    for key, value in (w.split("=", 1) for i, w in enumerate(words) if i and words[i - 1] == "-S" and "=" in w):
        *parents, leaf = key.split(".")
        section = raw
        for k in parents:
            section = section[k]
        section[leaf] = yaml.safe_load(value)
    p = parse_params(raw)
    held_out = split_goals(p.env, p.split)["held_out"]
    return random_search_curve(p.env, held_out, episodes, seed=p.eval.seed)


def load_runs(base: Path, episodes: int | None, workspace: Path) -> tuple[list[int], dict, dict]:
    """(splits, eval reports, held-out curves) of ``base/split_<K>/``; with ``episodes``, cut
    (see :func:`collect`)."""
    splits = sorted(int(p.name.split("_")[1]) for p in base.glob("split_*"))
    if not splits:
        raise SystemExit(f"{base}: no split_<K> folders; run without --collect-only first")
    detail = {k: json.loads((base / f"split_{k}" / "eval_detail.json").read_text()) for k in splits}
    curves = {k: pd.read_csv(base / f"split_{k}" / "held_out.csv") for k in splits}
    for k in splits:
        if "random_search" not in curves[k]:
            command = (base / f"split_{k}" / "command.txt").read_text().strip()
            curves[k]["random_search"] = random_search_of(command, len(curves[k]), workspace)
    if episodes is not None:
        for k in splits:
            if detail[k]["held_out"]["sampled"]["episodes"] != episodes:
                cut = curves[k].iloc[:episodes]
                for group, mode, col in (("held_out", "sampled", "ad_sampled"), ("held_out", "greedy", "ad_greedy")):
                    d = detail[k][group][mode]
                    for key in list(d):
                        v = from_curve(cut[col], key) if key.startswith(("return", "success")) else None
                        d[key] = v if v is None or not isinstance(d[key], dict) else {"mean": v, "std": float("nan"),
                                                                                        "goal_std": float("nan")}
                b = detail[k]["held_out"]["baselines"]
                b["a2c_source_first10"] = from_curve(cut["a2c_source"], "return_first10")
                b["a2c_source_last10"] = from_curve(cut["a2c_source"], "return_last10")
                detail[k].pop("train_goals", None)
                curves[k] = cut
    return splits, detail, curves


def split_rows(splits: list[int], detail: dict, curves: dict, original: bool, digits: int) -> list[list[str]]:
    """The headline rows: AD's numbers, the baselines and AD minus random search, per split."""
    score = "success" if original else "return"
    keys = [k for k in (f"{score}_first10", f"{score}_11to20", f"{score}@50", f"{score}@100", f"{score}_last10",
                        "found_by10", "success_after_first", "steps_over_shortest_last10",
                        "shortest_path_share_last10")
            if all(detail[s]["held_out"]["sampled"].get(k) is not None for s in splits)]
    rows = []
    for k in keys:
        per = [detail[s]["held_out"]["sampled"][k] for s in splits]
        vals = [v["mean"] if isinstance(v, dict) else v for v in per]
        spreads = [v["goal_std"] for v in per if isinstance(v, dict) and np.isfinite(v["goal_std"])]
        goal = f"{np.mean(spreads):.{digits}f}" + (f" ({len(spreads)} splits)" if len(spreads) < len(per) else "") \
            if spreads else ""
        rows.append([f"AD sampled: {k}", *(f"{v:.{digits}f}" for v in vals), fmt(vals, digits), goal])
    for group, mode, key in (("held_out", "greedy", f"{score}_last10"), ("train_goals", "sampled", f"{score}_last10")):
        if any(group not in detail[s] for s in splits):
            continue
        vals = [detail[s][group][mode][key]["mean"] for s in splits]
        rows.append([f"{'AD greedy' if mode == 'greedy' else 'training goals, AD sampled'}: {key}",
                     *(f"{v:.{digits}f}" for v in vals), fmt(vals, digits), ""])
    for key in ("a2c_source_first10", "a2c_source_last10", "random", "optimum"):
        vals = [detail[s]["held_out"]["baselines"][key] for s in splits]
        rows.append([f"baseline: {key}", *(f"{v:.{digits}f}" for v in vals), fmt(vals, digits), ""])
    for stem in ("first10", "11to20"):   # from the curves: the same for a cut curve
        vals = [from_curve(curves[s]["random_search"], f"x_{stem}") for s in splits]
        rows.append([f"baseline: random search, then shortest paths: {stem}", *(f"{v:.{digits}f}" for v in vals),
                     fmt(vals, digits), ""])
    if original:   # AD against the random-search bound, window by window (the default's target)
        for lo in range(0, min(50, len(curves[splits[0]])), 10):
            vals = [float(curves[s]["ad_sampled"][lo:lo + 10].mean() - curves[s]["random_search"][lo:lo + 10].mean())
                    for s in splits]
            rows.append([f"AD minus random search, episodes {lo + 1}-{lo + 10}", *(f"{v:+.{digits}f}" for v in vals),
                         fmt(vals, digits), ""])
    return rows



def episode_rows(splits: list[int], curves: dict, paper: bool, digits: int) -> tuple[list[int], list[list[str]]]:
    """(episodes, rows) of the per-episode table: AD and the baselines at :data:`POINTS` (the AD
    paper's points with ``paper``, its Dark Room variant; the idealised explorer where it has a curve)."""
    E = len(curves[splits[0]])
    pts = [p for p in POINTS if p <= E]
    ad = np.stack([curves[s]["ad_sampled"].to_numpy() for s in splits])           # [splits, E]
    prow = [["AD sampled (mean ± std over splits)", *(fmt(ad[:, p - 1], digits) for p in pts)],
            ["AD greedy", *(fmt([curves[s]["ad_greedy"][p - 1] for s in splits], digits) for p in pts)],
            ["A2C source (its own first episodes)",
             *(fmt([curves[s]["a2c_source"][p - 1] for s in splits], digits) for p in pts)],
            ["random search, then shortest paths",
             *(fmt([curves[s]["random_search"][p - 1] for s in splits], digits) for p in pts)]]
    if np.isfinite(curves[splits[0]]["explorer"]).any():          # no formula for Key-to-Door
        prow.append(["perfect explorer (SPEC.md §6)", *(f"{curves[splits[0]]['explorer'][p - 1]:.{digits}f}"
                                                         for p in pts)])
    if all("systematic_explorer" in curves[s] for s in splits):     # eval_dt's reports since c8f446e
        prow.append([SEARCHER_LABEL, *(fmt([curves[s]["systematic_explorer"][p - 1] for s in splits], digits)
                                       for p in pts)])
    if paper:
        ref = dict(AD_PAPER)
        prow.append(["AD paper (Fig. 4)", *(f"{ref[p]}" if p in ref else "" for p in pts)])
    return pts, prow


def collect(name: str, base: Path, episodes: int | None = None, workspace: Path = ROOT
            ) -> tuple[str, dict[int, pd.DataFrame]]:
    """The section's markdown from ``base/split_<K>/`` (and its plot, ``docs/img/splits_<name>.png``
    of ``workspace``, whose params.yaml :func:`random_search_of` reads); with ``episodes``, every
    split's curve is cut to that many episodes and the headline numbers of longer runs are
    recomputed from their cut curves (their spread over goals is then left out)."""
    splits, detail, curves = load_runs(base, episodes, workspace)
    original = detail[splits[0]]["variant"].startswith("original")
    paper = detail[splits[0]]["variant"].startswith("paper")       # Dark Room's, as in the AD paper's Fig. 4
    digits = 3 if original else 2
    head = ["held-out goals", *(f"split {s}" for s in splits), "mean ± std over splits", "goal spread"]
    body = table(head, split_rows(splits, detail, curves, original, digits))
    pts, prow = episode_rows(splits, curves, paper, digits)
    body += ("\n\nPer episode (each split's value is the mean over its held-out goals and eval seeds; "
             "single episodes, not smoothed):\n\n" + table(["episode", *map(str, pts)], prow))
    cmds = sorted({(base / f"split_{s}" / "command.txt").read_text().strip() for s in splits})
    body += "\n\nMade by `python -m benchmarks.splits --name " + name + "`, which ran:\n\n" + \
        "\n".join(f"    {c}" for c in cmds)
    E = len(curves[splits[0]])
    ad = np.stack([curves[s]["ad_sampled"].to_numpy() for s in splits])           # [splits, E]
    plot = {f"AD sampled, mean of {len(splits)} splits": ad.mean(0), f"AD sampled, mean of {len(splits)} splits"
            + STD_SUFFIX: ad.std(0)}
    for s in splits:
        plot[f"AD sampled, split {s}"] = ad[splits.index(s)]
    for b in ("random", "optimum", "explorer", "random_search", "systematic_explorer"):
        if all(b in curves[s] and np.isfinite(curves[s][b]).any() for s in splits):   # the explorer: all goals, one curve
            plot[CURVE_LABELS.get(b, b) + (" (mean of the splits' goals)" if b != "explorer" else "")] = \
                np.mean([curves[s][b].to_numpy() for s in splits], 0)
    ref = {"AD paper (Fig. 4)": ([x for x, _ in AD_PAPER if x <= E], [y for x, y in AD_PAPER if x <= E])} \
        if paper else None
    img = workspace / "docs" / "img" / f"splits_{name}.png"
    plot_curves(img, plot, f"AD on held-out goals, {len(splits)} splits, {detail[splits[0]]['variant']}",
                "success rate" if original else "return per episode", ref, band_over="splits", x_log=E > 300)
    body += f"\n\n![held-out curves across splits](img/{img.name})"
    return body, curves


def smoke(sets: list[str]) -> None:
    """``--smoke``: :func:`keep_report` and :func:`collect` on a tiny run's report (kept twice,
    once without its random-search curve, as reports made before eval_dt wrote it), and
    :func:`collect` on results/splits/explorer, writing into a temporary folder only."""
    with tiny_workspace("eval") as root:
        base = root / "results" / "splits" / "smoke"
        for seed in (0, 1):
            keep_report(split_command(seed, sets), base / f"split_{seed}", root)
        old = base / "split_1" / "held_out.csv"
        pd.read_csv(old).drop(columns="random_search").to_csv(old, index=False)
        for episodes in (None, 15):
            print(collect("smoke", base, episodes, root)[0])
        print(collect("explorer", ROOT / "results" / "splits" / "explorer", None, root)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", help="label of this configuration (folder and section name; required)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("-S", "--set", action="append", default=[], help="extra `dvc exp run -S` override")
    ap.add_argument("--collect-only", action="store_true")
    ap.add_argument("--episodes", type=int, default=None, help="cut every split's curve to this many episodes")
    args = parse(ap)
    if args.smoke:
        smoke(args.set)
        return
    if not args.name:
        ap.error("the following arguments are required: --name")
    base = ROOT / "results" / "splits" / args.name
    if not args.collect_only:
        try:
            for seed in args.seeds:
                run_split(seed, args.set, base / f"split_{seed}")
        finally:
            restore_workspace()
    body, _ = collect(args.name, base, args.episodes)
    write_section(f"Across splits: {args.name}", body, RESULTS)
    print(body)


if __name__ == "__main__":
    main()
