"""train_dt's step time on a shared machine: idle, and with other CPU-bound processes running.

    python -m benchmarks.shared_load [--loads 0 2 4 8] [--steps 6] [--repeats 3]

Other processes load the cores (``--loads``: that many busy loops, each wanting a whole core) while
a fresh process takes ``--steps`` optimiser steps of the default transformer (params.yaml's dt
section, random windows: speed does not depend on the values), under each thread setting:

- ``spin``: ``runtime.dt.threads: 0`` and nothing else (libgomp's threads spin-wait
  between parallel regions, then sleep);
- ``passive``: the same threads with ``OMP_WAIT_POLICY=PASSIVE`` (they sleep at once);
- ``short spin``: the same threads with ``GOMP_SPINCOUNT=10000`` (a short spin, then sleep), what
  every stage sets before torch loads unless either variable is set (``stages.prefer_sleeping_threads``);
- ``1 thread``: ``runtime.dt.threads: 1``.

Reported: median seconds per step and the slowdown against the same setting idle. A fair share
of 2 cores among our 2 threads and L busy loops is 2 / (L + 2) of them, so a workload that
degrades in proportion to the load is about (L + 2) / 2 times slower; far beyond that, threads
are waiting for each other. ``--smoke`` runs a tiny model, one load level, once.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import env_without_thread_settings, machine, median, table, write_section

ROOT = Path(__file__).resolve().parents[1]
POLICIES = {"spin (libgomp's default)": ({}, 0), "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, 0),
            "short spin (the stages' default)": ({"GOMP_SPINCOUNT": "10000"}, 0), "1 thread": ({}, 1)}
BUSY = "while True: pass"


def worker(threads: int, steps: int, smoke: bool) -> None:
    """Print the seconds per step of ``steps`` training steps (run in a fresh process)."""
    import torch

    from adlib.config import load_params
    from benchmarks.dt_throughput import random_batch, trainer

    if threads:
        torch.set_num_threads(threads)
    p = load_params(ROOT / "params.yaml")
    dt = p.dt
    if smoke:
        import dataclasses

        dt = dataclasses.replace(dt, embedding_dim=16, num_layers=1, num_heads=2, feed_forward_dim=32, seq_len=16,
                                 batch_size=4)
    batches = [random_batch(p.env, dt.batch_size, dt.seq_len, torch.Generator().manual_seed(i)) for i in range(2)]
    run, _ = trainer(dt, p.env, batches, 1)
    run()                                   # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        run()
    print(json.dumps({"s_per_step": (time.perf_counter() - t0) / steps}))


def measure(policy: str, load: int, steps: int, smoke: bool) -> float:
    env_extra, threads = POLICIES[policy]
    env = env_without_thread_settings()
    env.update(env_extra, PYTHONPATH=str(ROOT))
    busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(load)]
    try:
        out = subprocess.run([sys.executable, "-m", "benchmarks.shared_load", "--worker", "--threads", str(threads),
                              "--steps", str(steps)] + (["--smoke"] if smoke else []),
                             cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    finally:
        for b in busy:
            b.kill()
            b.wait()
    return json.loads(out.strip().splitlines()[-1])["s_per_step"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--loads", type=int, nargs="+", default=[0, 2, 4, 8])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="tiny model, one load level (1), once; writes nothing")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.threads, args.steps, args.smoke)
    if args.smoke:
        args.loads, args.steps, args.repeats = [1], 1, 1
    times: dict[tuple[str, int], list[float]] = {}
    for r in range(args.repeats):          # interleaved: slow drifts of the machine hit every cell alike
        for load in args.loads:
            for policy in POLICIES:
                times.setdefault((policy, load), []).append(measure(policy, load, args.steps, args.smoke))
                print(policy, load, f"{times[policy, load][-1]:.3f} s/step", flush=True)
    rows = []
    for policy in POLICIES:
        idle = median(times[policy, args.loads[0]])
        rows.append([policy] + [f"{median(times[policy, L]):.2f} ({median(times[policy, L]) / idle:.1f}x)"
                                for L in args.loads])
    fair = ["fair share, 2 cores: (L + 2) / 2"] + [f"({(L + 2) / 2:.1f}x)" for L in args.loads]
    body = "\n".join([
        "train_dt's seconds per optimiser step (default model, batch 32 x 256) with L other CPU-bound processes "
        f"running (median of {args.repeats}; in brackets, the slowdown against the same setting idle):",
        "",
        table(["threads"] + [f"L = {L}" for L in args.loads], rows + [fair]),
        "",
        "Every stage runs with `GOMP_SPINCOUNT=10000` unless it or `OMP_WAIT_POLICY` is set "
        "(`stages.prefer_sleeping_threads`): under load it keeps train_dt near its fair share, where "
        "long-spinning threads wait for each other; idle, whole stages run as fast as with spinning threads "
        "(\"train_dt and eval_dt on an idle machine\").",
        "",
        f"Machine: {machine()}. Command: `python -m benchmarks.shared_load --loads {' '.join(map(str, args.loads))} "
        f"--steps {args.steps} --repeats {args.repeats}`.",
    ])
    print(body)
    if not args.smoke:
        write_section("train_dt on a shared machine", body)


if __name__ == "__main__":
    main()
