"""Collect the environment-family runs (README "Other environments") into docs/.

Each configuration is run with its ready-made `dvc exp run` command in a clone (timed with
`time`); this script then reads that workspace's params and evaluation report and appends one
line to docs/envs.jsonl, copies the held-out curve PNG to docs/img/envs/<name>.png and prints
the markdown table of every line collected so far (docs/results.md, "Beyond one 9x9 room").

    python -m benchmarks.envs --name room13 --workspace /tmp/r13 --minutes 31.5
    python -m benchmarks.envs --table

``--smoke`` collects the report of a tiny pipeline run (made in a temporary folder, as eval_dt
writes it) into a temporary docs/envs.jsonl, and prints its table and that of docs/envs.jsonl.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from adlib.config import load_params
from benchmarks import commit as head_commit
from benchmarks.smoke import parse, tiny_workspace

ROOT = Path(__file__).resolve().parents[1]
LINES = ROOT / "docs" / "envs.jsonl"
IMG = ROOT / "docs" / "img" / "envs"


def _mean(d: dict, key: str) -> float | None:
    v = d.get(key)
    return None if v is None else (v["mean"] if isinstance(v, dict) else v)


def collect(name: str, workspace: Path, minutes: float | None, commit: str | None = None, lines: Path = LINES,
            img: Path = IMG) -> dict:
    p = load_params(workspace / "params.yaml")
    detail = json.loads((workspace / "metrics" / "eval_detail.json").read_text())
    split = json.loads((workspace / "data" / "split.json").read_text())
    held, train = detail["held_out"], detail.get("train_goals", {})
    sampled, greedy, base = held["sampled"], held["greedy"], held["baselines"]
    score = "success" if "success_last10" in sampled else "return"
    commit = commit or head_commit(workspace)
    line = {
        "name": name, "commit": commit, "kind": p.env.kind, "grid_size": p.env.grid_size,
        "max_episode_steps": p.env.max_episode_steps, "terminate_on_goal": p.env.terminate_on_goal,
        "tasks": split["n_goals"], "train": len(split["train"]), "held_out": len(split["held_out"]),
        "state_embedding": p.dt.state_embedding, "episodes": sampled["episodes"], "seeds": sampled["seeds"],
        "score": score,
        "first10": _mean(sampled, f"{score}_first10"), "11to20": _mean(sampled, f"{score}_11to20"),
        "at50": _mean(sampled, f"{score}@50"), "last10": _mean(sampled, f"{score}_last10"),
        "last10_std_seeds": sampled[f"{score}_last10"]["std"], "last10_std_goals": sampled[f"{score}_last10"]["goal_std"],
        "return_last10": _mean(sampled, "return_last10"), "greedy_return_last10": _mean(greedy, "return_last10"),
        "steps_over_shortest_last10": sampled.get("steps_over_shortest_last10"),
        "a2c_source_first10": base["a2c_source_first10"], "a2c_source_last10": base["a2c_source_last10"],
        "random": base["random"], "optimum": base["optimum"],
        "train_goals_return_last10": _mean(train.get("sampled", {}), "return_last10"),
        "pipeline_minutes": minutes,
    }
    img.mkdir(parents=True, exist_ok=True)
    shutil.copy2(workspace / "metrics" / "curves" / "held_out.png", img / f"{name}.png")
    with lines.open("a") as f:
        f.write(json.dumps(line) + "\n")
    return line


def fmt(v) -> str:
    return "–" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))


def table(lines: Path = LINES) -> str:
    rows = [json.loads(x) for x in lines.read_text().splitlines() if x.strip()]
    head = ("| run | env | tasks train / held out | state emb. | score | first 10 | 11–20 | @50 | last 10 (± seeds, ± goals) "
            "| return last 10 (greedy) | training tasks, return last 10 | A2C source first / last 10 | random | optimum "
            "| steps / shortest | pipeline |")
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        minutes = "–" if r["pipeline_minutes"] is None else f"{r['pipeline_minutes']:.1f} min"
        env = f"{r['kind']} {r['grid_size']}×{r['grid_size']}, {r['max_episode_steps']} steps" + (
            ", terminate" if r["terminate_on_goal"] else "")
        out.append(
            f"| {r['name']} ({r['commit']}) | {env} | {r['train']} / {r['held_out']} | {r['state_embedding']} | {r['score']} "
            f"| {fmt(r['first10'])} | {fmt(r['11to20'])} | {fmt(r['at50'])} "
            f"| {fmt(r['last10'])} ± {fmt(r['last10_std_seeds'])}, ± {fmt(r['last10_std_goals'])} "
            f"| {fmt(r['return_last10'])} ({fmt(r['greedy_return_last10'])}) | {fmt(r['train_goals_return_last10'])} "
            f"| {fmt(r['a2c_source_first10'])} / {fmt(r['a2c_source_last10'])} | {fmt(r['random'])} | {fmt(r['optimum'])} "
            f"| {fmt(r['steps_over_shortest_last10'])} | {minutes} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name")
    ap.add_argument("--workspace", type=Path)
    ap.add_argument("--minutes", type=float, default=None, help="wall time of the run's dvc exp run")
    ap.add_argument("--commit", default=None, help="the code's commit (default: the workspace's HEAD)")
    ap.add_argument("--table", action="store_true")
    args = parse(ap)
    if args.smoke:
        with tiny_workspace("eval") as root:
            print(json.dumps(collect("smoke", root, 0.1, "smoke", root / "envs.jsonl", root / "img"), indent=1))
            print(table(root / "envs.jsonl"))
        print(table())
        return
    if args.name:
        print(json.dumps(collect(args.name, args.workspace, args.minutes, args.commit), indent=1))
    if args.table:
        print(table())


if __name__ == "__main__":
    main()
