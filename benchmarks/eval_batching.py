"""eval_dt's in-context plays: four batches in turn, finished runs retired, or one batch?

    python -m benchmarks.eval_batching [--episodes 200 --repeats 3]

eval_dt plays AD from an empty context on the held-out goals and a few training goals, greedy
(one run per goal) and sampled (``eval.seeds`` runs per goal): four kinds of runs. This times,
on the pipeline's trained model (``--model``, with params.yaml and ``--split``), the three ways
eval_dt has played them:

- four plays in turn, every run kept in the model's batch until the last one is done (eval_dt
  until 7715a5b);
- four plays in turn, runs retired from the batch once they finished their episodes
  (:meth:`adlib.incontext.ContextPlayer.retire`);
- one batch of all four kinds, runs retired (:func:`adlib.evaluation.play_groups`, eval_dt now).

It checks that the three give every run the same returns (each kind draws from its own
generator; only the model's float rounding could differ with the batch). Repeats interleave
(order rotating); reported are medians.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

import numpy as np
import torch

from adlib.config import load_params
from adlib.evaluation import play_groups, runs_per_goal
from adlib.incontext import play
from adlib.model import load_trained_model
from adlib.tasks import read_split, spread
from benchmarks import machine, median, table, timed, write_section
from benchmarks.smoke import parse, tiny_workspace


def run(model_path: str, split_path: str, episodes: int | None, repeats: int) -> str:
    p = load_params("params.yaml")
    ev = p.eval if episodes is None else dataclasses.replace(p.eval, episodes=episodes)
    split = read_split(split_path, p.env)
    model, _ = load_trained_model(model_path, p.env, p.dt, split)
    groups = {"held_out": list(split["held_out"]), "train_goals": spread(list(split["train"]), ev.train_goals)}
    kinds = [(g, mode) for g, goals in groups.items() if goals for mode in ("greedy", "sampled")]
    n_runs = sum(len(groups[g]) * runs_per_goal(m, ev) for g, m in kinds)
    results: dict[str, dict] = {}

    def in_turn(retire: bool):
        def f() -> None:
            results[f"turn{retire}"] = {
                (g, m): play(model, p.env, groups[g], runs_per_goal(m, ev), ev.episodes, greedy=m == "greedy",
                             temperature=ev.temperature, seed=ev.seed, retire=retire) for g, m in kinds}
        return f

    def batched() -> None:
        played = play_groups(model, p.env, ev, groups, torch.device("cpu"))
        results["one"] = {(g, m): played[g][m] for g, m in kinds}

    play_groups(model, p.env, dataclasses.replace(ev, episodes=min(ev.episodes, 5)), groups, torch.device("cpu"))  # warm-up
    n = {2: "two", 4: "four"}.get(len(kinds), str(len(kinds)))
    variants = {f"{n} plays in turn, finished runs kept (eval_dt until 7715a5b)": in_turn(False),
                f"{n} plays in turn, finished runs retired": in_turn(True),
                f"one batch of all {n} kinds, retired (eval_dt now)": batched}
    names = list(variants)
    secs: dict[str, list[float]] = {k: [] for k in names}
    for r in range(repeats):
        for name in names[r % 3:] + names[:r % 3]:
            secs[name] += timed(variants[name], 1)
    same = all(np.array_equal(results["turnFalse"][k].returns, res[k].returns)
               and np.array_equal(results["turnFalse"][k].lengths, res[k].lengths)
               for res in results.values() for k in kinds)
    fin = results["one"][(kinds[0][0], "sampled")].lengths.sum(1)   # [runs] lockstep steps each run played
    med = {k: median(v) for k, v in secs.items()}
    rows = [[k, f"{med[k]:.1f}", f"{min(secs[k]):.1f} - {max(secs[k]):.1f}", f"{med[names[0]] / med[k]:.2f}x"]
            for k in names]
    return "\n".join([
        f"eval_dt's in-context plays on the pipeline's trained model (`{model_path}`, params.yaml: "
        f"{len(groups['held_out'])} held-out and {len(groups['train_goals'])} training goals, greedy x 1 and sampled x "
        f"{ev.seeds} runs per goal: {n_runs} runs, {ev.episodes} episodes each), median of {repeats} interleaved "
        f"repeats, CPU, {torch.get_num_threads()} thread(s).",
        "",
        table(["variant", "wall s (median)", "range", "speed-up"], rows),
        "",
        f"Every run's returns and episode lengths identical in the three: **{'yes' if same else 'NO'}**. "
        f"In the sampled play of the {kinds[0][0].replace('_', '-')} goals the median run finishes its episodes "
        f"after {np.median(fin) / fin.max():.0%} of the slowest run's lockstep steps; retired runs leave the model's batch, and one batch of all {n} kinds pays a step's "
        f"fixed cost (a few ms of small kernels and Python) once instead of {n} times.",
        "",
        f"Machine: {machine()}, process niceness {os.nice(0)}. Command: `python -m benchmarks.eval_batching"
        + (f" --episodes {episodes}" if episodes is not None else "")
        + (f" --repeats {repeats}" if repeats != 3 else "") + "`.",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/dt/model.pt")
    ap.add_argument("--split", default="data/split.json")
    ap.add_argument("--episodes", type=int, default=None, help="episodes per run (default: eval.episodes)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parse(ap, episodes=3, repeats=1, no_write=True)
    if args.smoke:
        with tiny_workspace("model"):
            print(run(args.model, args.split, args.episodes, args.repeats))
        return
    body = run(args.model, args.split, args.episodes, args.repeats)
    print(body)
    if not args.no_write:
        write_section("In-context evaluation: one batch or four", body)


if __name__ == "__main__":
    main()
