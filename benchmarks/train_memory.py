"""Peak memory of train_dt on the original's data size: 57 goals x 800 000 transitions per agent.

    python -m benchmarks.train_memory [--data data/dataset] [--steps 20 --threads 1]

The dataset must hold 45,600,000 transitions (history_len 800 000, subsample 1). When
``--data``'s meta.json says otherwise (or it is missing), one is built from ``data/sources``
with ``DatasetConfig(history_len=800_000, subsample=1)`` into ``.cache/bench_dataset_800k``.
A child process runs ``adlib.train.train`` (params.yaml's dt section with ``--steps`` steps,
no evaluation, CPU, batch 32 x seq_len 256, the default model) and reports its own peak
resident set size (``ru_maxrss``) at the end; the dataset, when it must be built, is built in
another process first (on Linux a child inherits its parent's peak RSS at spawn). The child also reports
its RSS and peak right after the dataset is loaded, and the bytes of the in-memory columns.

``--smoke`` measures the same way a few steps of params.yaml's own (tiny) model on the dataset
of a tiny pipeline run in a temporary folder, and prints only.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import machine, table, write_section
from benchmarks.smoke import parse, tiny_workspace

ORIGINAL = {"history_len_per_agent": 800_000, "subsample": 1, "transitions": 57 * 800_000}
MODEL = {"batch_size": 32, "seq_len": 256, "embedding_dim": 64, "num_layers": 4, "num_heads": 4,
         "feed_forward_dim": 256}   # the default model, whatever params.yaml says (but params.yaml's with --smoke)
ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(".cache/bench_dataset_800k")
MB = 1024 * 1024


def rss_now() -> int:
    """Current resident set size in bytes."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_self() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # KiB on Linux


def is_original(data_dir: Path) -> bool:
    try:
        meta = json.loads((data_dir / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return ((data_dir / "histories.parquet").exists() and meta.get("dataset", {}).get("noise", {}).get("streams_per_goal", 0) == 0
            and all(meta.get(k) == v for k, v in ORIGINAL.items()))


def ensure_dataset(data_dir: Path, params: str, split: str) -> Path:
    if is_original(data_dir):
        return data_dir
    if is_original(CACHE):
        return CACHE
    from adlib.config import DatasetConfig, NoiseConfig, load_params
    from adlib.dataset import build_dataset
    from adlib.tasks import read_split

    p = load_params(params)
    if p.source.env_steps < ORIGINAL["history_len_per_agent"]:
        raise SystemExit(f"{params}: source.env_steps = {p.source.env_steps:,}; the original's dataset keeps "
                         f"{ORIGINAL['history_len_per_agent']:,} steps per agent: train the sources that long first "
                         f"(dvc exp run -S source.env_steps={ORIGINAL['history_len_per_agent']})")
    # one A2C agent per goal (its nenvs streams), as the original: the default trains seeds_per_goal
    cfg = DatasetConfig(history_len=800_000, subsample=1, a2c_streams_per_goal=p.source.nenvs,
                        noise=NoiseConfig(streams_per_goal=0))
    print(f"{data_dir} is not the original's size; building {CACHE} from data/sources", file=sys.stderr)
    build_dataset(p.env, cfg, read_split(split, p.env), "data/sources", len(p.source.shards), CACHE)
    return CACHE


def built(data_dir: Path, params: str, split: str) -> Path:
    """:func:`ensure_dataset` in a process of its own. A child that subprocess starts (vfork, then
    exec) inherits this process's peak RSS as its own on Linux, so a child started after this
    process had built the dataset (GBs) would report the build's peak; building elsewhere keeps
    this process small."""
    # this script again with --build, in this working directory: relative paths (and CACHE) mean the same there
    cmd = [sys.executable, "-m", "benchmarks.train_memory", "--build", "--data", str(data_dir), "--params", params,
           "--split", split]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
                         ).stdout
    return Path(out.strip().splitlines()[-1])


def child(args: argparse.Namespace) -> None:
    """Run a short train_dt and print one JSON line of measurements (last line of stdout)."""
    import pyarrow as pa
    import torch  # noqa: F401  (imported before the measurement starts, as in train_dt)

    from adlib import train as train_mod
    from adlib.config import load_params
    from adlib.dataset import HistoryDataset
    from adlib.tasks import read_split

    report: dict[str, int | float] = {"rss_after_imports": rss_now()}

    class Measured(HistoryDataset):
        def __init__(self, *a, **kw):
            t0 = time.perf_counter()
            super().__init__(*a, **kw)
            report["load_s"] = time.perf_counter() - t0
            report["column_bytes"] = sum(v.nbytes for v in self.cols.values())
            report["index_bytes"] = self.starts.nbytes + self.lengths.nbytes
            report["rss_after_load"] = rss_now()
            report["peak_after_load"] = peak_self()
            report["arrow_allocated_after_load"] = pa.total_allocated_bytes()
            report["arrow_backend"] = pa.default_memory_pool().backend_name

    train_mod.HistoryDataset = Measured   # measurement hook only; train() itself is unchanged
    p = load_params(args.params)
    dt = dataclasses.replace(p.dt, num_steps=args.steps, warmup_steps=min(p.dt.warmup_steps, args.steps - 1),
                             **({} if args.smoke else MODEL))
    rt = dataclasses.replace(p.runtime.dt, eval_step=0, device="cpu", threads=args.threads)
    split = read_split(args.split, p.env)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        summary = train_mod.train(p.env, dt, split, args.data, out, rt=rt)
        report["train_s"] = time.perf_counter() - t0
    report["transitions_per_s"] = summary["transitions_per_s"]
    report["layout"] = dt.layout
    report["model"] = f"d {dt.embedding_dim}, {dt.num_layers} layers, {dt.num_heads} heads, ff {dt.feed_forward_dim}"
    report["batch"] = f"batch {dt.batch_size} x seq_len {dt.seq_len}"
    report["rss_end"] = rss_now()
    report["peak_self"] = peak_self()
    print(json.dumps(report))


def measure(args: argparse.Namespace) -> str:
    """Run the child as ``args`` say; the section's markdown."""
    import torch

    torch.set_num_threads(args.threads)   # so that machine() names the child's thread count
    data_dir = Path(args.data) if args.smoke else built(Path(args.data), args.params, args.split)
    meta = json.loads((data_dir / "meta.json").read_text())
    disk = (data_dir / "histories.parquet").stat().st_size
    cmd = [sys.executable, "-m", "benchmarks.train_memory", "--child", "--data", str(data_dir.resolve()),
           "--params", str(Path(args.params).resolve()), "--split", str(Path(args.split).resolve()),
           "--steps", str(args.steps), "--threads", str(args.threads), *["--smoke"] * args.smoke]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"child failed with exit status {proc.returncode}")
    rep = json.loads(proc.stdout.strip().splitlines()[-1])
    # the child's own ru_maxrss: RUSAGE_CHILDREN would also count the process that built the dataset
    peak = rep["peak_self"]
    n = meta["transitions"]
    gb = peak / 1e9

    rows = [
        ["peak RSS of the train_dt process (`ru_maxrss`)", f"{peak / MB:,.0f} MiB ({gb:.2f} GB)"],
        ["RSS after imports (torch, adlib)", f"{rep['rss_after_imports'] / MB:,.0f} MiB"],
        ["RSS right after `HistoryDataset` loaded / peak so far",
         f"{rep['rss_after_load'] / MB:,.0f} / {rep['peak_after_load'] / MB:,.0f} MiB"],
        [f"Arrow memory in use right after loading ({rep['arrow_backend']} pool; the columns are views of it)",
         f"{rep['arrow_allocated_after_load'] / MB:,.0f} MiB"],
        ["RSS at the end of training", f"{rep['rss_end'] / MB:,.0f} MiB"],
        [f"in-memory columns of `HistoryDataset` ({n:,} rows of t, state, action, reward, next_state, stream, goal, kind)",
         f"{rep['column_bytes'] / MB:,.0f} MiB ({rep['column_bytes'] / n:.0f} bytes / transition)"],
        ["`histories.parquet` on disk (zstd)", f"{disk / MB:,.0f} MiB ({disk / n:.2f} bytes / transition)"],
        ["dataset load time / whole run", f"{rep['load_s']:.1f} s / {wall:.1f} s"],
    ]
    return "\n".join([
        f"Memory of `train_dt` (`adlib.train.train`, CPU, {rep['layout']} layout, {rep['model']}, "
        f"{rep['batch']}, {args.steps} steps, no evaluation) on the original's data size: "
        f"{len(meta['train_goals'])} goals x {meta['history_len_per_agent']:,} transitions per agent "
        f"(subsample {meta['subsample']}) = **{n:,} transitions** in {meta['streams']} streams (`{data_dir}`). "
        f"Measured in a child process started by a small parent (the dataset is built in another process); "
        f"peak = the child's own maximum resident set size.",
        "",
        table(["what", "value"], rows),
        "",
        f"Peak RSS: **{gb:.2f} GB** (target <= 2 GB).",
        "",
        f"Machine: {machine()}, process niceness {os.nice(0)}. "
        f"Command: `python -m benchmarks.train_memory"
        + (f" --data {args.data}" if args.data != "data/dataset" else "")
        + (f" --steps {args.steps}" if args.steps != 20 else "") + "`.",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/dataset")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--split", default="data/split.json")
    ap.add_argument("--steps", type=int, default=20, help="optimiser steps of the short run")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads of the child")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--build", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parse(ap, steps=3, no_write=True)
    if args.child:
        child(args)
        return
    if args.build:   # for built(): the dataset's path, last line of stdout
        print(ensure_dataset(Path(args.data), args.params, args.split))
        return
    with tiny_workspace("dataset") if args.smoke else contextlib.nullcontext():
        body = measure(args)
    print(body)
    if not args.no_write:
        write_section("train_dt peak memory", body)


if __name__ == "__main__":
    main()
