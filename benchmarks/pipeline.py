"""The README's main command from a fresh clone, commits side by side in one run.

    python -m benchmarks.pipeline --commits e32fb6b HEAD

For each commit, one after another: ``git clone`` of this repository into a temporary folder,
``git checkout`` of the commit, then ``bash scripts/repro.sh``: setup.sh makes the clone's own
.venv from requirements.lock (uv's and pip's download caches of this machine are warm, as on a
user's machine after the first clone), then ``dvc repro`` with the clone's empty DVC cache, so
every stage runs, A2C sources included. Per commit: wall seconds, CPU seconds (user + system of
every process), peak resident memory of the largest process and of the whole process tree
(sampled every 0.1 s), and the seconds per stage, from the moment DVC prints ``Running stage``
(setup = everything before the first stage; a stage ends where the next begins, the last at the
command's end). The outputs of every commit's run are compared, by their dvc.lock hashes, with the
commit's own committed dvc.lock and with the first commit's run.
Writes the section "The README's main command, commits side by side".

``--smoke`` clones HEAD only and runs ``dvc repro`` of tiny params (benchmarks.smoke) with this
interpreter's environment instead of repro.sh's setup; it writes nothing into the repository.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from adlib.config import to_dict
from benchmarks import machine, run_sampled, table, write_section
from benchmarks.smoke import PIPELINE_PARAMS

ROOT = Path(__file__).resolve().parents[1]
STAGE_START = "Running stage '"
COLUMNS = ("setup", "check_params", "split_tasks", "train_source_agents", "build_history_dataset", "train_dt", "eval_dt",
           "render_videos")


def stage_seconds(lines: list[tuple[float, str]], wall: float) -> dict[str, float]:
    """Seconds per stage from a ``dvc repro`` log's ``(seconds since start, line)`` pairs: a stage
    runs from its ``Running stage 'name':`` line to the next one (the last to ``wall``); ``setup`` is
    everything before the first. A ``foreach`` stage's items (``name@item``) are summed under
    ``name``."""
    starts = [(t, line.split(STAGE_START, 1)[1].split("'", 1)[0]) for t, line in lines if STAGE_START in line]
    out: dict[str, float] = {"setup": starts[0][0] if starts else wall}
    for (t, name), end in zip(starts, [t for t, _ in starts[1:]] + [wall]):
        base = name.split("@", 1)[0]
        out[base] = out.get(base, 0.0) + end - t
    return out


def lock_outputs(lock: dict) -> dict[str, str]:
    """Every output path of a parsed dvc.lock and its hash (``md5``; a directory's ends in ``.dir``)."""
    return {o["path"]: o.get("md5", "") for st in lock.get("stages", {}).values() for o in st.get("outs", [])}


def compare_outputs(first: dict[str, str], other: dict[str, str]) -> tuple[list[str], list[str]]:
    """(paths with the same hash in both, paths that differ or exist in one only), sorted."""
    same = sorted(p for p in first if other.get(p) == first[p])
    return same, sorted((set(first) | set(other)) - set(same))


def outputs_cell(first: dict[str, str], other: dict[str, str]) -> str:
    """What of ``other`` equals ``first``: the paths that differ, the TensorBoard logs apart (their
    event files carry timestamps, so they differ between any two runs)."""
    _, differ = compare_outputs(first, other)
    logs = [d for d in differ if d.startswith("logs/")]
    rest = [d for d in differ if not d.startswith("logs/")]
    return ("all equal" if not rest else "differ: " + ", ".join(rest)) + (" (logs aside)" if logs else "")


def run_commit(rev: str, tmp: Path, smoke: bool) -> dict:
    """Clone this repository at ``rev`` into ``tmp`` and run the main command there, measured."""
    work = tmp / "clone"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(work)], check=True)
    subprocess.run(["git", "-c", "advice.detachedHead=false", "checkout", "-q", rev], cwd=work, check=True)
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=work, capture_output=True, text=True,
                         check=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(CI="true", DVC_NO_ANALYTICS="1")   # CI: no progress bars in the log
    if smoke:   # tiny params, this interpreter's environment (no setup)
        (work / "params.yaml").write_text(yaml.safe_dump(to_dict(PIPELINE_PARAMS), sort_keys=False))
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        env["PYTHONPATH"] = str(work)
        cmd = ["dvc", "repro"]
    else:
        cmd = ["bash", "scripts/repro.sh"]
    committed = lock_outputs(yaml.safe_load((work / "dvc.lock").read_text()))
    lines: list[tuple[float, str]] = []
    r = run_sampled(cmd, work, env, lines)
    outs = lock_outputs(yaml.safe_load((work / "dvc.lock").read_text()))
    # tracked files the run changed: a committed dvc.lock whose metrics were not committed with it
    changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=work, capture_output=True,
                             text=True, check=True).stdout.split("\n")
    return {"commit": sha, **r, "stages": stage_seconds(lines, r["wall"]), "outs": outs, "committed": committed,
            "git_changed": sorted(line[3:] for line in changed if line.strip())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commits", nargs="+", default=["HEAD"], help="commits to run, in this order")
    ap.add_argument("--smoke", action="store_true", help="tiny params, HEAD only; writes nothing")
    args = ap.parse_args()
    revs = ["HEAD"] if args.smoke else args.commits
    runs = []
    for rev in revs:
        with tempfile.TemporaryDirectory(prefix="adlib-pipeline-") as tmp:
            r = run_commit(rev, Path(tmp), args.smoke)
        runs.append(r)
        print(r["commit"], {k: round(v, 1) for k, v in r.items() if isinstance(v, float)},
              {k: round(v, 1) for k, v in r["stages"].items()}, flush=True)
    missing = [c for c in COLUMNS if c not in runs[0]["stages"]]
    if missing:
        raise SystemExit(f"no time for the stages {missing}: {runs[0]['stages']}")
    rows = []
    for r in runs:
        rows.append([r["commit"], f"**{r['wall'] / 60:.2f}**", *(f"{r['stages'].get(c, 0.0) / 60:.2f}" for c in COLUMNS),
                     f"{r['cpu'] / r['wall'] * 100:.0f} %", f"{r['one_mib']:,.0f} / {r['sum_mib']:,.0f}",
                     outputs_cell(r["committed"], r["outs"]) + "; committed files "
                     + (f"changed by the run: {', '.join(r['git_changed'])}" if r["git_changed"] else "unchanged"),
                     "–" if r is runs[0] else outputs_cell(runs[0]["outs"], r["outs"])])
    body = "\n".join([
        "`bash scripts/repro.sh` (the README's main command) from a fresh `git clone` of each commit, one after "
        "another on this machine: setup of the clone's .venv from the lock, then every stage with an empty DVC "
        "cache. Minutes; a stage from DVC's `Running stage` line to the next (the source shard stages summed); "
        "CPU = user + system of every process over wall; peak RSS of the largest process / of all processes "
        "at once (sampled every 0.1 s); outputs compared by their dvc.lock hashes with the commit's own committed "
        "dvc.lock (and whether the run changed a committed file: `git status`) and with the first row's run. "
        "pip's and uv's download caches on this machine are warm (as for a user's second clone); the wheels "
        "come from the machine's local package mirror.",
        "",
        table(["commit", "wall min", *(f"{c} min" for c in COLUMNS), "CPU", "peak RSS MiB",
               "outputs vs its dvc.lock", f"outputs vs {runs[0]['commit']}'s run"], rows),
        "",
        f"Machine: {machine()}. Command: `python -m benchmarks.pipeline --commits {' '.join(revs)}`.",
    ])
    print(body)
    if not args.smoke:
        write_section("The README's main command, commits side by side", body)


if __name__ == "__main__":
    main()
