"""Peak memory and wall time of every stage of the pipeline on params.yaml, each stage one after
another as ``dvc repro`` runs them.

    python -m benchmarks.stage_memory

Every stage command of dvc.yaml (``foreach`` expanded over ``source.shards``) runs as written,
``python`` being this interpreter, in a fresh temporary folder that links this checkout's
``adlib/`` and ``stages/`` and holds a copy of params.yaml: nothing of the workspace is read or
written, and no DVC cache is used (every stage, sources included, really runs). Per stage, sampled
every 0.1 s over the stage's whole process tree (a source shard stage is the stage process and
its workers): the peak of the **sum** of the processes' resident memory, and the largest single
process (what GNU time's "Maximum resident set size" reports). Shared library pages (torch) count
once per process in the sum, so the sum errs high. Writes the section "Peak memory of every
stage". ``--smoke`` runs the stages at tiny sizes and writes nothing.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from pathlib import Path

import yaml

from adlib.config import to_dict
from benchmarks import commit, machine, run_sampled, table, write_section
from benchmarks.smoke import PIPELINE_PARAMS

ROOT = Path(__file__).resolve().parents[1]


def stage_commands(dvc_yaml: dict, params: dict) -> list[tuple[str, str]]:
    """(stage name, command) of every stage, in dvc.yaml's order, ``foreach`` stages expanded
    (their name ``stage@item``, ``${item}`` substituted); ``python`` becomes this interpreter."""
    out = []
    for name, st in dvc_yaml["stages"].items():
        if "foreach" in st:
            key = st["foreach"].strip("${} ").split(".")
            items = params
            for k in key:
                items = items[k]
            out += [(f"{name}@{i}", st["do"]["cmd"].replace("${item}", str(i))) for i in items]
        else:
            out.append((name, st["cmd"]))
    return [(n, " ".join(c.split()).replace("python ", f"{shlex.quote(sys.executable)} ", 1)) for n, c in out]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (benchmarks.smoke); writes nothing")
    args = ap.parse_args()
    if args.smoke:   # the smoke run's sizes, and short videos
        params = to_dict(PIPELINE_PARAMS)
    else:
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
    stages = stage_commands(yaml.safe_load((ROOT / "dvc.yaml").read_text()), params)
    env = {**os.environ, "CI": "true", "PYTHONPATH": str(ROOT)}   # CI: no progress bars
    rows, total, worst = [], 0.0, 0.0
    with tempfile.TemporaryDirectory(prefix="adlib-stagemem-") as tmp:
        work = Path(tmp)
        for pkg in ("adlib", "stages"):
            (work / pkg).symlink_to(ROOT / pkg)
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        for name, cmd in stages:
            r = run_sampled(cmd, work, env)
            total, worst = total + r["wall"], max(worst, r["sum_mib"])
            print(name, {k: round(v, 1) for k, v in r.items()}, flush=True)
            rows.append([f"`{name}`", f"{r['wall']:.0f}", f"{r['sum_mib']:,.0f}", f"{r['one_mib']:,.0f}"])
    if args.smoke:
        return
    body = "\n".join([
        f"Every stage of `dvc.yaml` on this checkout's params.yaml ({commit()}), one after another as `dvc repro` "
        "runs them, in a fresh folder with no DVC cache (sources included). Peak RSS sampled every 0.1 s over "
        "the stage's whole process tree: the sum over its processes (a source shard stage is the stage and its "
        "workers; shared torch pages count once per process, so the sum errs high) and the largest single "
        "process (what GNU time reports).",
        "",
        table(["stage", "wall s", "peak RSS MiB, sum of its processes", "peak RSS MiB, largest process"], rows),
        "",
        f"Largest stage: **{worst / 1024:.2f} GiB** ({worst * 2**20 / 1e9:.2f} GB; target <= 2 GB per stage). "
        f"All stages: {total / 60:.1f} min (no setup, no DVC).",
        "",
        f"Machine: {machine()}. Command: `python -m benchmarks.stage_memory`.",
    ])
    print(body)
    write_section("Peak memory of every stage", body)


if __name__ == "__main__":
    main()
