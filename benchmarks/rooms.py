"""The searching learner in every room of the family, beside the systematic explorer: one table
and one figure from the runs of ``benchmarks.splits`` (results/splits/<name>/split_<K>/).

    python -m benchmarks.rooms

For each room of :data:`ROOMS` that has runs: the held-out curve's mean ± std over the splits at
chosen episodes, over episodes 11-20 and the last 10, the steps per success over the shortest path
(last 10), and the systematic explorer (``adlib.noise.Explorer``, which plays with no model) on the
same held-out tasks; the wall time of each split's ``dvc exp run`` (``wall_s.txt``, written by
``benchmarks.splits``). Then the A2C sources' quality of each room (results/source_quality.jsonl,
``benchmarks.source_quality``). Writes the section "Every room of the family" of docs/results.md
and docs/img/rooms.png (one panel per room: AD's mean with its band over the splits, the
explorer's curve beside it).

``--smoke`` writes the table and figure of the rooms that have runs into a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks import table, write_section
from benchmarks.smoke import parse
from benchmarks.source_quality import LINES as QUALITY, table as quality_table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results.md"
SPLITS = ROOT / "results" / "splits"
EPISODES = (1, 2, 3, 5, 10, 20, 30)
# results/splits/<name> -> (room, what a success is)
ROOMS = {"searcher": ("Dark Room 9×9 (80 goals)", "success"),
         "searcher13": ("13×13 (168 goals)", "success"),
         "searcher17": ("Dark Room Hard 17×17 (all 288 goals)", "success"),
         "searcher17_long": ("Dark Room Hard 17×17, 3000 training steps", "success"),
         "searcher_keydoor": ("Dark Key-to-Door 9×9, 50 steps (1200 pairs)", "return (2 = door opened)")}


def load(base: Path) -> tuple[list[pd.DataFrame], list[dict], list[float | None], str]:
    """Every split's held-out curves, report and wall seconds under ``base``; the command of split 0."""
    splits = sorted(base.glob("split_*"), key=lambda p: int(p.name.split("_")[1]))
    wall = [float((s / "wall_s.txt").read_text()) if (s / "wall_s.txt").exists() else None for s in splits]
    return ([pd.read_csv(s / "held_out.csv") for s in splits],
            [json.loads((s / "eval_detail.json").read_text()) for s in splits], wall,
            (splits[0] / "command.txt").read_text().strip())


def ms(a: np.ndarray, digits: int = 2) -> str:
    return f"{a.mean():.{digits}f} ± {a.std():.{digits}f}"


def room_rows(room: str, score: str, curves: list[pd.DataFrame], detail: list[dict], wall: list[float | None]
              ) -> list[list[str]]:
    ad = np.stack([c["ad_sampled"].to_numpy() for c in curves])                  # [splits, E]
    ex = np.stack([c["systematic_explorer"].to_numpy() for c in curves])
    E = ad.shape[1]
    pts = [e for e in EPISODES if e <= E]
    sampled = [d["held_out"]["sampled"] for d in detail]
    path = np.array([s.get("steps_over_shortest_last10", np.nan) for s in sampled], float)
    tasks = f"{detail[0]['model']['train_goals']} / {sampled[0]['goals']}"
    mins = [w / 60 for w in wall if w is not None]
    time = (f"{mins[0]:.0f}" + (f"; {np.mean(mins[1:]):.0f}" if len(mins) > 1 else "")) if mins else "–"
    def cells(y: np.ndarray) -> list[str]:
        return [*(ms(y[:, e - 1]) for e in pts), ms(y[:, 10:20].mean(1), 3) if E >= 20 else "–",
                ms(y[:, -10:].mean(1), 3)]
    extra = ""
    if score.startswith("return"):   # Key-to-Door: the share of episodes that opened the door, last 10
        doors = np.array([s["success_last10"]["mean"] for s in sampled])
        extra = f" (doors opened, last 10: {ms(doors)})"
    return [[room, tasks, str(len(curves)), "AD, searcher" + extra, *cells(ad), ms(path, 3), time],
            ["", "", "", "systematic explorer, same tasks", *cells(ex), "1.000", ""]]


def plot(img: Path, panels: dict[str, tuple[str, list[pd.DataFrame]]], episodes: int = 50) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), dpi=110, squeeze=False)
    for ax, (room, (score, curves)) in zip(axes[0], panels.items()):
        ad = np.stack([c["ad_sampled"].to_numpy()[:episodes] for c in curves])
        ex = np.mean([c["systematic_explorer"].to_numpy()[:episodes] for c in curves], 0)
        x = np.arange(1, ad.shape[1] + 1)
        m, s = ad.mean(0), ad.std(0)
        ax.plot(x, m, lw=1.8, label="AD (searcher), mean of the splits")
        ax.fill_between(x, m - s, m + s, alpha=0.25, lw=0, label="± std over splits")
        ax.plot(x, ex, ls="-.", color="tab:olive", lw=1.6, label="systematic explorer (same tasks)")
        ax.set_title(f"{room}, {len(curves)} split{'s' if len(curves) > 1 else ''}", fontsize=9)
        ax.set_xlabel("episode (held-out tasks)")
        ax.set_ylabel(score, fontsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    img.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(img, format="png")
    plt.close(fig)


def collect(base: Path, img: Path, quality: Path) -> str:
    runs = {n: load(base / n) for n in ROOMS if list((base / n).glob("split_*"))}
    if not runs:
        raise SystemExit(f"{base}: none of {sorted(ROOMS)} has split_<K> folders; run benchmarks.splits first")
    rows, panels, cmds = [], {}, []
    for n, (curves, detail, wall, command) in runs.items():
        room, score = ROOMS[n]
        rows += room_rows(room, score, curves, detail, wall)
        panels[room] = (score, curves)
        cmds.append(f"    {command}    # {n}")
    head = ["room", "tasks train / held out", "splits", "held-out, sampled", *(f"ep. {e}" for e in EPISODES),
            "11–20", "last 10", "steps / shortest (last 10)", "minutes per split (first; others)"]
    plot(img, panels)
    return (table(head, rows)
            + "\n\nEach cell: mean ± std over the splits of each split's mean over its held-out tasks and 5 eval "
            "seeds (success rate; Key-to-Door: return per episode, 2 = key and door). The first split's minutes "
            "include training the room's A2C sources, which the next splits take from DVC's cache. Made from "
            "results/splits/<name>/ by `python -m benchmarks.rooms`; each room's split 0 ran (the other splits add "
            "`-S split.seed=K`):\n\n" + "\n".join(cmds)
            + f"\n\n![every room, AD beside the explorer](img/{img.name})\n\n"
            "**The A2C sources of each room** (`python -m benchmarks.source_quality`; 800 k env steps per agent, "
            "3 agents (seeds) per task at 9×9, 1 in the larger rooms): does each agent ever reach its task, "
            "when, and does it learn it (a 5 k-step window at 90 % success).\n\n" + quality_table(quality))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    args = parse(ap)
    if args.smoke:
        with tempfile.TemporaryDirectory() as tmp:
            print(collect(SPLITS, Path(tmp) / "rooms.png", QUALITY))
        return
    body = collect(SPLITS, ROOT / "docs" / "img" / "rooms.png", QUALITY)
    write_section("Every room of the family", body, RESULTS)
    print(body)


if __name__ == "__main__":
    main()
