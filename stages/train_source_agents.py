"""Stage train_source_agents: one batched A2C run for one shard of goals (all goals, train and held out)."""

import argparse

from adlib.config import ParamError, load_params
from stages import run_stage

RESUME_DIR = ".cache/sources"   # scratch: ignored by git (.gitignore) and by DVC (no stage's output)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--shard", type=int, required=True)
    ap.add_argument("--out", required=True, help="shard folder, e.g. data/sources/shard_0")
    ap.add_argument("--tensorboard", default=None, help="TensorBoard folder of the shard, e.g. logs/sources/shard_0")
    ap.add_argument("--resume-dir", default=RESUME_DIR, help="scratch folder of resumable checkpoints")
    args = ap.parse_args()
    p = load_params(args.params)
    if args.shard not in p.source.shards:
        raise ParamError(f"--shard {args.shard}: not in source.shards = {list(p.source.shards)}")
    # heavy imports (torch) only once params.yaml is known to be valid: a bad key fails in a blink
    from adlib.sources import train_shard

    train_shard(p.env, p.source, args.shard, args.out, args.resume_dir, args.tensorboard, p.runtime.source)


if __name__ == "__main__":
    run_stage(main)
