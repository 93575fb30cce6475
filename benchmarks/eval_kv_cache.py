"""In-context evaluation speed: the KV cache vs recomputing the whole context window at every step.

    python -m benchmarks.eval_kv_cache [--episodes 25 --repeats 3 --threads 1 --seq-len 256]

Every held-out goal of the 9x9 room (the 23 of ``data/split.json``, or of the default split)
plays ``--episodes`` sampled-action episodes at once with ``adlib.incontext.play`` on a freshly
initialised model of the default size (the weights do not matter for speed). With
``use_cache=True`` each step appends one transition to the KV cache (and the cache is rebuilt
from the last 3/4 of the window whenever the 256-transition window is full); with
``use_cache=False`` every step runs a full forward pass over the window. Enough episodes are
played that the window fills and is re-prefilled several times, so the steady state is in the
timing. Env steps = envs x lockstep steps. The variants run interleaved (their order rotates
between repeats); reported are medians.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from adlib.config import DTConfig, EnvConfig, SplitConfig
from adlib.incontext import keep_on_refill, play
from adlib.tasks import split_goals
from adlib.train import build_model
from benchmarks import machine, median, sharing, table, timed, write_section
from benchmarks.smoke import parse

# name -> (layout, use_cache)
VARIANTS = {
    "transition, KV cache": ("transition", True),
    "transition, full recompute": ("transition", False),
    "triplet, KV cache": ("triplet", True),
}


def held_out_goals(env_cfg: EnvConfig) -> list[int]:
    path = Path("data/split.json")
    if path.exists():
        split = json.loads(path.read_text())
        if split.get("grid_size") == env_cfg.grid_size:
            return list(split["held_out"])
    return list(split_goals(env_cfg, SplitConfig())["held_out"])


def measure(env_cfg: EnvConfig, goals: list[int], seq_len: int, episodes: int,
            repeats: int) -> tuple[dict[str, list[int]], dict[str, list[float]]]:
    """Lockstep steps and wall seconds of every variant, ``repeats`` times, interleaved (order rotating)."""
    models = {}
    for layout in ("transition", "triplet"):
        torch.manual_seed(0)
        models[layout] = build_model(DTConfig(layout=layout, seq_len=seq_len), env_cfg).eval()
    steps: dict[str, list[int]] = {k: [] for k in VARIANTS}

    def runner(name: str, n_episodes: int):
        layout, use_cache = VARIANTS[name]

        def run() -> None:
            res = play(models[layout], env_cfg, goals, seeds=1, episodes=n_episodes, greedy=False,
                       seed=len(steps[name]), device="cpu", use_cache=use_cache)
            # the lockstep loop runs until the slowest env has finished its episodes
            steps[name].append(int(res.lengths.sum(1).max()))
        return run

    for name in VARIANTS:   # warm-up, short
        runner(name, 2)()
    for v in steps.values():
        v.clear()
    secs: dict[str, list[float]] = {k: [] for k in VARIANTS}
    names = list(VARIANTS)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            secs[name] += timed(runner(name, episodes), 1)
    return steps, secs


def report(steps: dict[str, list[int]], secs: dict[str, list[float]], n_goals: int, args: argparse.Namespace) -> str:
    """The docs/benchmarks.md section: table, ratios, machine and command."""
    rates = {k: [n_goals * n / s for n, s in zip(steps[k], secs[k])] for k in VARIANTS}
    med = {k: median(v) for k, v in rates.items()}
    base = med["transition, full recompute"]
    cache_ratio = med["transition, KV cache"] / base
    per_repeat = sorted(a / b for a, b in zip(rates["transition, KV cache"], rates["transition, full recompute"]))
    layout_ratio = med["transition, KV cache"] / med["triplet, KV cache"]
    min_steps = min(min(v) for v in steps.values())
    keep = keep_on_refill(args.seq_len)
    refills = max(0, (min_steps - args.seq_len - 1) // (args.seq_len - keep + 1) + 1) if min_steps > args.seq_len else 0
    rows = [[f"`{k.split(',')[0]}`, {k.split(', ')[1]}", f"{med[k]:,.0f}", f"{min(rates[k]):,.0f} - {max(rates[k]):,.0f}",
             f"{median(secs[k]):.2f}", f"{median(steps[k]):.0f}", f"{med[k] / base:.1f}x"] for k in VARIANTS]
    flags = {"episodes": 25, "seq_len": 256, "repeats": 3, "threads": 1}
    command = "python -m benchmarks.eval_kv_cache" + "".join(
        f" --{k.replace('_', '-')} {getattr(args, k)}" for k, default in flags.items() if getattr(args, k) != default)
    return "\n".join([
        f"In-context evaluation (`adlib.incontext.play`, sampled actions) of a freshly initialised model of the "
        f"default size (d 64, 4 layers, 4 heads, ff 256), context window {args.seq_len} transitions, all {n_goals} "
        f"held-out goals of the 9x9 room at once, {args.episodes} episodes each (>= {min_steps} lockstep steps, "
        f"so the window fills and the cache is rebuilt from the last {keep} transitions at least {refills} times). "
        f"Env steps/s = {n_goals} envs x lockstep steps / wall seconds; median of {args.repeats} interleaved repeats "
        f"(order rotating), CPU.",
        "",
        table(["variant", "env steps/s (median)", "range", "wall s (median)", "lockstep steps", "vs full recompute"], rows),
        "",
        f"KV cache / full recompute (transition layout): **{cache_ratio:.1f}x** (target >= 10x; per-repeat "
        f"{per_repeat[0]:.1f} - {per_repeat[-1]:.1f}x). Transition / triplet layout, both with the cache: "
        f"**{layout_ratio:.2f}x**.",
        "",
        f"Machine: {machine()}, {sharing()}. Command: `{command}`.",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=25, help="episodes per goal (20 steps at most each)")
    ap.add_argument("--seq-len", type=int, default=256, help="context window in transitions")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parse(ap, episodes=2, seq_len=16, repeats=1, no_write=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    env_cfg = EnvConfig()
    goals = held_out_goals(env_cfg)
    steps, secs = measure(env_cfg, goals, args.seq_len, args.episodes, args.repeats)
    body = report(steps, secs, len(goals), args)
    print(body)
    if not args.no_write:
        write_section("In-context evaluation: KV cache", body)


if __name__ == "__main__":
    main()
