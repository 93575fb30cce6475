"""Whole train_dt and eval_dt stages on an idle machine: spinning against sleeping OpenMP threads.

    python -m benchmarks.stage_threads [--steps 150] [--episodes 100] [--repeats 3]

``benchmarks.shared_load`` times bare optimiser steps; a stage also samples windows, computes
their labels, evaluates in context during training (``runtime.dt.eval_step``: many small ops, the
kind of work where waking sleeping threads could cost) and writes checkpoints. This script runs
the real stages (``python -m stages.train_dt`` then ``python -m stages.eval_dt``) on the
workspace's split, dataset and sources (``dvc repro`` or ``dvc pull`` first), with params.yaml's
values except ``dt.num_steps`` (``--steps``; ``runtime.dt.eval_step`` set to it, so each run
includes one in-training evaluation) and ``eval.episodes`` (``--episodes``), under

- ``spin``: ``OMP_WAIT_POLICY=ACTIVE`` (libgomp's threads spin between parallel regions);
- ``passive``: ``OMP_WAIT_POLICY=PASSIVE`` (they sleep at once);
- ``short spin``: ``GOMP_SPINCOUNT=10000`` (a short spin, then sleep).

The two alternate (order swapped every repeat), each a fresh process writing into a temporary
folder; reported: median wall seconds of each stage and passive / spin. ``--smoke`` runs the tiny
workspace of benchmarks/smoke.py once per policy and writes nothing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks import env_without_thread_settings, machine, median, table, write_section
from benchmarks.smoke import build, parse

ROOT = Path(__file__).resolve().parents[1]
POLICIES = {"spin (OMP_WAIT_POLICY=ACTIVE)": {"OMP_WAIT_POLICY": "ACTIVE"},
            "passive (OMP_WAIT_POLICY=PASSIVE)": {"OMP_WAIT_POLICY": "PASSIVE"},
            "short spin (GOMP_SPINCOUNT=10000)": {"GOMP_SPINCOUNT": "10000"}}


def stage_cmds(ws: Path, out: Path, params: Path) -> dict[str, list[str]]:
    """The two stages' commands on workspace ``ws``, writing under ``out``."""
    py = [sys.executable, "-m"]
    return {
        "train_dt": py + ["stages.train_dt", "--params", str(params), "--split", str(ws / "data/split.json"),
                          "--data", str(ws / "data/dataset"), "--out", str(out / "dt"),
                          "--resume-dir", str(out / "resume")],
        "eval_dt": py + ["stages.eval_dt", "--params", str(params), "--split", str(ws / "data/split.json"),
                         "--model", str(out / "dt/model.pt"), "--sources", str(ws / "data/sources"),
                         "--metrics", str(out / "eval.json"), "--detail", str(out / "detail.json"),
                         "--curves", str(out / "curves")],
    }


def run_once(ws: Path, params: Path, policy: dict[str, str], tmp: Path) -> dict[str, float]:
    """Wall seconds of each stage, run one after the other with the variables ``policy``."""
    out = Path(tempfile.mkdtemp(dir=tmp))
    env = env_without_thread_settings()
    env.update(policy, CI="true", PYTHONPATH=str(ROOT))
    walls = {}
    for stage, cmd in stage_cmds(ws, out, params).items():
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        walls[stage] = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{stage} failed:\n{proc.stderr[-3000:]}")
    return walls


def shortened(ws: Path, steps: int, episodes: int, tmp: Path) -> Path:
    """``ws``'s params.yaml with ``steps`` optimiser steps (one in-training evaluation) and ``episodes``."""
    p = yaml.safe_load((ws / "params.yaml").read_text())
    p["dt"]["num_steps"] = steps
    p["dt"]["warmup_steps"] = min(p["dt"]["warmup_steps"], steps)
    p["runtime"]["dt"].update(eval_step=steps, checkpoint_every=steps)
    p["eval"]["episodes"] = episodes
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return path


def report(walls: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> str:
    med = {pol: {s: median([w[s] for w in ws]) for s in ws[0]} for pol, ws in walls.items()}
    spin = med[next(iter(POLICIES))]
    rows = [[name, *(f"{med[name][s]:.1f} ({med[name][s] / spin[s]:.2f}x)" for s in spin)] for name in POLICIES]
    per_run = "; ".join(f"{name.split(' ')[0]}: " + ", ".join(f"{w['train_dt']:.1f}/{w['eval_dt']:.1f}" for w in ws)
                        for name, ws in walls.items())
    return "\n".join([
        f"The whole train_dt stage ({args.steps} optimiser steps of the default model, one in-training "
        f"evaluation) and eval_dt ({args.episodes} episodes) on the idle machine, wall seconds, median of "
        f"{args.repeats} runs, policies in rotating order (in brackets: against spin):",
        "",
        table(["threads", *(f"{s} s" for s in spin)], rows),
        "",
        f"Each run, train_dt / eval_dt seconds: {per_run}.",
        "",
        f"Machine: {machine()}. Command: `python -m benchmarks.stage_threads --steps {args.steps} "
        f"--episodes {args.episodes} --repeats {args.repeats}`.",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    args = parse(ap, steps=3, episodes=20, repeats=1)
    with tempfile.TemporaryDirectory(prefix="adlib-threads-") as tmp:
        tmp = Path(tmp)
        ws = ROOT
        if args.smoke:
            ws = tmp / "ws"
            ws.mkdir()
            build(ws, upto="dataset")
        params = shortened(ws, args.steps, args.episodes, tmp)
        walls: dict[str, list[dict[str, float]]] = {k: [] for k in POLICIES}
        for r in range(args.repeats):
            order = list(POLICIES)[r % len(POLICIES):] + list(POLICIES)[:r % len(POLICIES)]
            for name in order:
                walls[name].append(run_once(ws, params, POLICIES[name], tmp))
                print(name, {k: round(v, 1) for k, v in walls[name][-1].items()}, flush=True)
    body = report(walls, args)
    print(body)
    if not args.smoke:
        write_section("train_dt and eval_dt on an idle machine: spinning or sleeping threads", body)


if __name__ == "__main__":
    main()
