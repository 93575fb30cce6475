"""How good are a room's A2C sources: does each agent find its task at all, and how many env
steps does A2C need before every agent has found its task?

    python -m benchmarks.source_quality --name room13 --workspace /work/runs
    python -m benchmarks.source_quality --table

Reads the trained sources of ``workspace`` (``data/sources``, every task in use, as
train_source_agents wrote them, with that workspace's ``params.yaml``) and appends one JSON line
to ``results/source_quality.jsonl``; ``--table`` prints the markdown table of every line (docs/results.md,
"Every room of the family"). Per agent (one (task, seed)): the env step (of the agent's envs
together) at which its first successful episode ended (the goal reached; Key-to-Door: the door
opened), or never within its ``source.env_steps``, and its success rate over its last 5 000
env steps (``summary.json``).

``--smoke`` reads the sources of a tiny pipeline run (made in a temporary folder) and writes its
line there.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from adlib.config import load_params
from adlib.envs.rules import success_return
from adlib.histories import HISTORY_FILE, SUMMARY_FILE, episode_table, find_source_goals, read_columns
from benchmarks.smoke import parse, tiny_workspace

ROOT = Path(__file__).resolve().parents[1]
LINES = ROOT / "results" / "source_quality.jsonl"


def first_success_steps(cols: dict[str, np.ndarray], nenvs: int, success: int) -> np.ndarray:
    """Per seed of one goal's history (streams ``seed * nenvs .. + nenvs - 1``): the agent env
    steps (all its envs together) when its first episode of return >= ``success`` ended; -1 if
    none did. ``[seeds]``"""
    ep = episode_table(cols, success)
    done = cols["terminated"] | cols["truncated"]
    # episode_table's rows are the finished episodes in (stream, episode) order, as are the done rows
    end = (cols["step"][done].astype(np.int64) + 1) * nenvs
    seed = ep["stream"] // nenvs
    n_seeds = int(cols["stream"].max()) // nenvs + 1
    out = np.full(n_seeds, -1, np.int64)
    for s in range(n_seeds):
        hit = end[(seed == s) & ep["success"]]
        if len(hit):
            out[s] = hit.min()
    return out


def measure(workspace: Path) -> dict:
    p = load_params(workspace / "params.yaml")
    goals = find_source_goals(workspace / "data" / "sources", len(p.source.shards))
    first, final, to90 = [], [], []
    for gdir in goals.values():
        cols = read_columns(gdir / HISTORY_FILE, ["stream", "step", "reward", "terminated", "truncated"])
        first.append(first_success_steps(cols, p.source.nenvs, success_return(p.env)))
        summary = json.loads((gdir / SUMMARY_FILE).read_text())
        final.append(summary["final_success_rate"])
        to90 += [-1 if s is None else s for s in summary["steps_to_90pct_success"]]
    steps = np.concatenate(first)
    found = steps[steps >= 0]
    learnt = np.array(to90)
    return {"env": f"{p.env.kind} {p.env.grid_size}x{p.env.grid_size}, {p.env.max_episode_steps} steps",
            "tasks": len(goals), "agents": len(steps), "env_steps": p.source.env_steps,
            "found": float((steps >= 0).mean()), "never": int((steps < 0).sum()),
            "median_steps_to_find": float(np.median(found)) if len(found) else None,
            "p90_steps_to_find": float(np.percentile(found, 90)) if len(found) else None,
            "max_steps_to_find": int(found.max()) if len(found) else None,
            "final_success": float(np.mean(final)),
            "reached_90pct": float((learnt >= 0).mean()),
            "median_steps_to_90pct": float(np.median(learnt[learnt >= 0])) if (learnt >= 0).any() else None,
            "max_steps_to_90pct": int(learnt.max()) if (learnt >= 0).all() else None}


def fmt_steps(x: float | None) -> str:
    return "–" if x is None else f"{x / 1000:,.1f} k" if x < 10_000 else f"{x / 1000:,.0f} k"


def table(lines: Path = LINES) -> str:
    rows = [json.loads(s) for s in lines.read_text().splitlines() if s.strip()] if lines.exists() else []
    out = ["| run | env | tasks | agents | found their task | never found | env steps to find: median / 90 % / all "
           "| reached 90 % success (5 k-step windows) | env steps to 90 %: median / all | final success (last 5 k steps) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        beyond = f"> {r['env_steps'] / 1000:,.0f} k"
        all_ = fmt_steps(r["max_steps_to_find"]) if r["never"] == 0 else beyond
        all90 = fmt_steps(r.get("max_steps_to_90pct")) if r.get("max_steps_to_90pct") is not None else beyond
        out.append(f"| {r['name']} | {r['env']} | {r['tasks']} | {r['agents']} | {r['found']:.3f} | {r['never']} | "
                   f"{fmt_steps(r['median_steps_to_find'])} / {fmt_steps(r['p90_steps_to_find'])} / {all_} | "
                   f"{r['reached_90pct']:.3f} | {fmt_steps(r['median_steps_to_90pct'])} / {all90} | "
                   f"{r['final_success']:.2f} |")
    return "\n".join(out)


def append(name: str, workspace: Path, lines: Path) -> dict:
    row = {"name": name, **measure(workspace)}
    lines.parent.mkdir(parents=True, exist_ok=True)
    with open(lines, "a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name")
    ap.add_argument("--workspace", type=Path)
    ap.add_argument("--table", action="store_true")
    args = parse(ap)
    if args.smoke:
        with tiny_workspace("dataset") as root:
            print(append("tiny", root, root / "source_quality.jsonl"))
            print(table(root / "source_quality.jsonl"))
        return
    if args.table:
        print(table())
        return
    if not (args.name and args.workspace):
        ap.error("--name and --workspace are required (or --table)")
    print(append(args.name, args.workspace, LINES))


if __name__ == "__main__":
    main()
