"""eval_dt's four plays one after another, or all their runs in one lockstep batch?

    python -m benchmarks.eval_batching [--episodes 40 --repeats 3 --threads 1 2]

eval_dt plays four batches in turn (:func:`adlib.evaluation.evaluate_checkpoint`): held-out
goals greedy (23 runs) and sampled (23 x 5 seeds), training goals greedy (8) and sampled
(8 x 5): 186 runs. Merging them into one lockstep batch would save per-step overhead only if
a step's cost did not grow with the batch. This times both on a freshly initialised model of
the default size (the weights do not matter for speed), paper variant (every episode is 20
steps, so both sides play the same number of steps), ``--episodes`` episodes; the merged side
is 31 goals x 6 seeds = 186 runs, all sampled (``play`` takes one ``greedy`` flag; a greedy
and a sampled step cost the same forward pass). In the original variant a lockstep batch
also waits for its slowest run, which this paper-variant timing leaves out. Repeats
interleave (order alternating); reported are medians.
"""

from __future__ import annotations

import argparse
import os

import torch

from adlib.config import DTConfig, EnvConfig, SplitConfig
from adlib.incontext import play
from adlib.tasks import split_goals, spread
from adlib.train import build_model
from benchmarks import machine, median, table, timed, write_section
from benchmarks.smoke import parse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=40, help="episodes per run (20 steps each)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch CPU thread counts to time, in turn")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parse(ap, episodes=2, repeats=1, threads=[1], no_write=True)
    env = EnvConfig(terminate_on_goal=False, reward_mode="stand")
    split = split_goals(env, SplitConfig())
    held, train = split["held_out"], spread(split["train"], 8)
    torch.manual_seed(0)
    model = build_model(DTConfig(), env).eval()
    four = [(held, 1, True), (held, 5, False), (train, 1, True), (train, 5, False)]

    def sequential() -> None:
        for goals, seeds, greedy in four:
            play(model, env, goals, seeds, args.episodes, greedy=greedy, temperature=0.5)

    def merged() -> None:
        play(model, env, held + train, 6, args.episodes, greedy=False, temperature=0.5)

    variants = {"four batches in turn (eval_dt)": sequential, "one batch of all 186 runs": merged}
    names = list(variants)
    steps = args.episodes * env.max_episode_steps
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        sequential(), merged()   # warm-up
        secs: dict[str, list[float]] = {k: [] for k in variants}
        for r in range(args.repeats):
            for name in (names if r % 2 == 0 else names[::-1]):
                secs[name] += timed(variants[name], 1)
        med = {k: median(v) for k, v in secs.items()}
        rows += [[str(threads), k, f"{med[k]:.2f}", f"{min(secs[k]):.2f} - {max(secs[k]):.2f}",
                  f"{186 * steps / med[k]:,.0f}", f"{med[names[0]] / med[k]:.2f}x"] for k in variants]
    body = "\n".join([
        f"eval_dt's four in-context plays (held-out and training goals, greedy and sampled: 186 runs) one after "
        f"another, as eval_dt plays them, against one lockstep batch of 186 runs (all sampled); freshly initialised "
        f"model of the default size, paper variant, {args.episodes} episodes = {steps} lockstep steps per run, median "
        f"of {args.repeats} interleaved repeats per thread count, CPU.",
        "",
        table(["threads", "variant", "wall s (median)", "range", "env steps/s", "speed-up"], rows),
        "",
        "One batch instead of four: " + ", ".join(f"**{r[5]}** with {r[0]} thread(s)" for r in rows[1::2])
        + ". A step's cost grows with the batch, so merging pays only where the small plays leave threads idle. "
        "eval_dt keeps its four plays: one batch would need a greedy flag per run in `play`.",
        "",
        f"Machine: {machine()}, process niceness {os.nice(0)}. Command: `python -m benchmarks.eval_batching"
        + (f" --episodes {args.episodes}" if args.episodes != 40 else "")
        + (f" --repeats {args.repeats}" if args.repeats != 3 else "")
        + (f" --threads {' '.join(map(str, args.threads))}" if args.threads != [1, 2] else "") + "`.",
    ])
    print(body)
    if not args.no_write:
        write_section("In-context evaluation: one batch or four", body)


if __name__ == "__main__":
    main()
