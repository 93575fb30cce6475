"""The train_source_agents stage, today's code against an older commit's, side by side in one run.

    python -m benchmarks.source_training [--base 7182a5d [8257f97 ...]] [--env-steps 800000] [--repeats 1] [--own-shards]

Each side runs every shard stage of params.yaml (``python -m stages.train_source_agents
--shard k``, one after another, as ``dvc repro`` runs them) in a fresh temporary folder: each
old side from a ``git worktree`` of one ``--base`` commit (its own params.yaml keys, this checkout's
values; with ``--own-shards`` each side keeps its own ``source.shards``: the old default against the
new), the new side from this checkout. Measured per side: wall seconds of the whole source phase, agent
env steps per second (agents x env steps per agent / wall), CPU seconds of every process of the
stage (user + system, workers included) over wall seconds (2.0 = both cores busy all along), and
the peak resident memory of the stage (the sum over its processes, sampled every 0.1 s), and
whether each goal's history columns equal this checkout's (the files' metadata names the shards). Sides
alternate when ``--repeats`` > 1 and medians are reported. ``--env-steps`` shortens the run
(same per-update cost; the old code must accept the value). ``--smoke`` runs a tiny room with
a few hundred steps (the test suite does, so the script cannot rot); it writes nothing.

    python -m benchmarks.source_training --keydoor [--env-steps 100000]

measures this checkout alone on all 6480 (key, door) pairs of Dark Key-to-Door (one agent per
pair, the README's Key-to-Door settings) and states the whole phase at ``source.env_steps`` per
agent from the measured rate (section "Source training: all Key-to-Door pairs").
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from adlib.config import EnvConfig
from adlib.envs import darkroom as dr
from benchmarks import machine, median, run_sampled, table, write_section

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BASE = "7182a5d"   # the last commit before source training was reworked


def measure(code: Path, params: dict, shards: list[int], work: Path) -> dict:
    """Run the shard stages of ``code`` on ``params`` in ``work``; wall, CPU and peak memory."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "CI": "true", "PYTHONPATH": str(code)}
    wall = cpu = peak = 0.0
    for k in shards:
        cmd = [sys.executable, "-m", "stages.train_source_agents", "--params", str(work / "params.yaml"),
               "--shard", str(k), "--out", str(work / "sources" / f"shard_{k}"), "--resume-dir", str(work / "resume"),
               "--tensorboard", str(work / "logs" / f"shard_{k}")]                 # as dvc.yaml runs it
        r = run_sampled(cmd, code, env)
        wall, cpu, peak = wall + r["wall"], cpu + r["cpu"], max(peak, r["sum_mib"])
    digests = {f.parent.name: columns_digest(f) for f in sorted((work / "sources").rglob("history.parquet"))}
    if not digests:
        raise RuntimeError(f"{work / 'sources'}: the shard stages wrote no history.parquet")
    return {"wall": wall, "cpu": cpu, "peak_mb": peak, "histories": digests}


def columns_digest(path: Path) -> str:
    """sha256 of a history file's columns (names and values), not of its bytes: the file's metadata
    records the source section, ``source.shards`` included, so the same histories trained in another
    shard layout differ in their bytes only there."""
    table = pq.read_table(path)
    h = hashlib.sha256()
    for name in table.column_names:
        h.update(name.encode())
        h.update(table[name].to_numpy().tobytes())
    return h.hexdigest()


def worktree(base: str, where: Path) -> Path:
    subprocess.run(["git", "worktree", "add", "--detach", "--force", str(where), base], cwd=ROOT, check=True,
                   capture_output=True)
    return where


def params_for(code: Path, env_steps: int | None, smoke: bool, own_shards: bool = False) -> dict:
    """``code``'s own params.yaml (every key it knows), with this checkout's values where both have a key
    (but ``source.shards``, with ``own_shards``: each side's default layout of shard stages)."""
    mine = yaml.safe_load((ROOT / "params.yaml").read_text())
    theirs = yaml.safe_load((code / "params.yaml").read_text())
    if own_shards:
        mine["source"]["shards"] = theirs["source"]["shards"]

    def lay(dst: dict, src: dict) -> dict:
        return {k: (lay(v, src[k]) if isinstance(v, dict) and isinstance(src.get(k), dict)
                    else src.get(k, v)) for k, v in dst.items()}

    p = lay(theirs, mine)
    if smoke:
        p["env"].update(grid_size=5, max_episode_steps=10)
        p["split"]["n_train"] = 16
        p["eval"]["train_goals"] = 2
        p["source"].update(hidden_size=16, env_steps=400, seeds_per_goal=1)
        p["dataset"].update(history_len=400)
        p["dt"]["seq_len"] = 16
        for kind in ("noise", "explorer"):
            p["dataset"][kind]["transitions"] = 16
    elif env_steps:
        p["source"]["env_steps"] = env_steps
        p["dataset"]["history_len"] = min(p["dataset"]["history_len"], env_steps)
    return p


KEYDOOR = {"kind": "keydoor", "max_episode_steps": 50, "terminate_on_goal": False, "n_tasks": 0}   # all 6480 pairs


def keydoor_full(env_steps: int, shards: int, smoke: bool) -> None:
    """Every (key, door) pair's agent trained for ``env_steps`` steps by this checkout, in ``shards`` shard
    stages; the section states the measured rate and the whole phase at ``source.env_steps`` steps per agent.
    A worker holds its agents' whole histories until it writes them (``adlib.histories.History``), so
    memory grows with agents per worker x steps per agent: more shards, fewer agents per worker."""
    full = params_for(ROOT, None, smoke)["source"]["env_steps"]   # params.yaml's steps per agent
    p = params_for(ROOT, None if smoke else env_steps, smoke)
    p["env"].update(KEYDOOR, **({"grid_size": 5, "max_episode_steps": 20, "n_tasks": 40} if smoke else {}))
    p["split"]["n_train"] = 36 if smoke else 5832
    p["source"]["seeds_per_goal"] = 1
    p["source"]["shards"] = list(range(shards))
    p["dataset"]["noise"].update(schedule="episodes", eps_start=0.5, decay_episodes=5)   # as the README's command
    with tempfile.TemporaryDirectory(prefix="adlib-srcbench-") as tmp:
        r = measure(ROOT, p, list(p["source"]["shards"]), Path(tmp))
    if smoke:
        return
    agents, steps = len(dr.tasks_in_use(EnvConfig(**p["env"]))), p["source"]["env_steps"]
    rate = agents * steps / r["wall"]
    body = "\n".join([
        f"All {agents} (key, door) pairs of Dark Key-to-Door (9x9, 50-step episodes, one A2C agent per pair), "
        f"{steps:,} env steps per agent, {shards} shard stages (`-S source.shards=[{','.join(map(str, range(shards)))}]`) "
        "one after another as `dvc repro` runs them, histories, agents and TensorBoard runs written; this checkout only.",
        "",
        table(["env steps per agent", "wall min", "M agent env steps/s", "CPU cores busy", "peak RSS MiB (all processes)",
               f"whole phase at {full:,} steps per agent (from the rate)"],
              [[f"{steps:,}", f"{r['wall'] / 60:.1f}", f"{rate / 1e6:.2f}", f"{r['cpu'] / r['wall']:.2f}",
                f"{r['peak_mb']:,.0f}", f"{agents * full / rate / 60:.0f} min"]]),
        "",
        "The per-update cost does not change as an agent learns (fixed 50-step episodes), so the whole phase "
        "scales with the steps per agent; the start-up and the writing of the agents are included once, so the "
        f"estimate errs long. Memory does not scale that way: a worker holds its agents' whole histories until "
        f"it writes them, so at {full:,} steps per agent the histories take {full // steps}x the memory they take "
        "here; more shards put fewer agents in each worker.",
        "",
        f"Machine: {machine()}. Command: `python -m benchmarks.source_training --keydoor --env-steps {steps} "
        f"--shards {shards}`.",
    ])
    print(body)
    write_section("Source training: all Key-to-Door pairs", body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", nargs="+", default=[DEFAULT_BASE], help="the old sides' commits")
    ap.add_argument("--env-steps", type=int, default=None, help="env steps per agent (default: params.yaml)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--smoke", action="store_true", help="a tiny run that checks the script works; writes nothing")
    ap.add_argument("--keydoor", action="store_true", help="this checkout alone on all 6480 Key-to-Door pairs")
    ap.add_argument("--shards", type=int, default=8, help="shard stages of the --keydoor run")
    ap.add_argument("--own-shards", action="store_true",
                    help="each side runs its own params.yaml's source.shards (old default against new)")
    args = ap.parse_args()
    if args.keydoor or args.smoke:
        keydoor_full(args.env_steps or 100_000, 2 if args.smoke else args.shards, args.smoke)
        if args.keydoor:
            return
    with tempfile.TemporaryDirectory(prefix="adlib-srcbench-") as tmp:
        tmp = Path(tmp)
        # the smoke run measures this checkout only (a CI clone may not hold the old commit)
        if "new" in args.base:
            raise SystemExit("--base: 'new' names this checkout's side; give a commit")
        sides: dict[str, Path] = {}
        try:
            for b in ([] if args.smoke else args.base):
                sides[b] = worktree(b, tmp / f"old_{b}")
            sides["new"] = ROOT
            runs: dict[str, list[dict]] = {s: [] for s in sides}
            for r in range(args.repeats):
                for side, code in sides.items():
                    p = params_for(code, args.env_steps, args.smoke, args.own_shards)
                    runs[side].append(measure(code, p, list(p["source"]["shards"]), tmp / f"{side}_{r}"))
                    runs[side][-1]["stages"] = len(p["source"]["shards"])
                    print(side, {k: v for k, v in runs[side][-1].items() if k != "histories"}, flush=True)
        finally:
            for side, code in sides.items():
                if side != "new":
                    subprocess.run(["git", "worktree", "remove", "--force", str(code)], cwd=ROOT,
                                   capture_output=True)
    if args.smoke:
        return
    p = params_for(ROOT, args.env_steps, args.smoke)
    src = p["source"]
    n_tasks = p["env"]["n_tasks"] or (p["env"]["grid_size"] ** 2 - 1)
    agents = n_tasks * src["seeds_per_goal"]
    steps = src["env_steps"]
    rows = []
    for side in sides:
        label = "this commit" if side == "new" else f"{side} (before)"
        wall = median([x["wall"] for x in runs[side]])
        cpu = median([x["cpu"] for x in runs[side]])
        mem = median([x["peak_mb"] for x in runs[side]])
        same = "–" if side == "new" else ("yes" if runs[side][0]["histories"] == runs["new"][0]["histories"] else "no")
        rows.append([label, str(runs[side][0]["stages"]), f"{wall:,.1f}", f"{agents * steps / wall / 1e6:.2f}", f"{cpu / wall:.2f}", f"{mem:,.0f}",
                     same])
    speedup = median([x["wall"] for x in runs[args.base[0]]]) / median([x["wall"] for x in runs["new"]])
    body = "\n".join([
        f"The whole source phase of the default pipeline: {agents} A2C agents ({n_tasks} goals x "
        f"{src['seeds_per_goal']} seeds) x {steps:,} env steps, every shard stage of `source.shards` "
        + ("(each side its own params.yaml's) " if args.own_shards else f"({len(src['shards'])}) ")
        + "run one after another as `dvc repro` runs them, histories, agents and TensorBoard runs written. "
        f"Old and new side by side in one run (median of {args.repeats}).",
        "",
        table(["code", "shard stages", "wall s", "M agent env steps/s", "CPU cores busy", "peak RSS MiB (all processes)",
               "history columns identical to this commit's (per goal)"], rows),
        "",
        f"Speed-up over {args.base[0]}: {speedup:.2f}x. CPU cores busy = CPU seconds of every process of the stage over wall "
        "seconds. Peak RSS is the stage process plus its workers, sampled every 0.1 s.",
        "",
        f"Machine: {machine()}. Command: `python -m benchmarks.source_training --base {' '.join(args.base)}"
        + (f" --env-steps {args.env_steps}" if args.env_steps else "")
        + (f" --repeats {args.repeats}" if args.repeats != 1 else "")
        + (" --own-shards" if args.own_shards else "") + "`.",
    ])
    print(body)
    if not args.smoke:
        write_section("Source training", body)


if __name__ == "__main__":
    main()
