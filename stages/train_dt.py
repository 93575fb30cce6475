"""Stage train_dt: train the AD transformer on the history dataset (works under torchrun too)."""

import argparse

from adlib.config import load_params
from stages import run_stage

RESUME_DIR = ".cache/train_dt"   # scratch: ignored by git (.gitignore) and by DVC (no stage's output)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--split", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tensorboard", default=None, help="TensorBoard folder, e.g. logs/train_dt")
    ap.add_argument("--resume-dir", default=RESUME_DIR, help="scratch folder of the resumable checkpoint")
    args = ap.parse_args()
    p = load_params(args.params)
    # heavy imports (torch) only once params.yaml is known to be valid: a bad key fails in a blink
    from adlib.tasks import read_split
    from adlib.train import train

    train(p.env, p.dt, read_split(args.split, p.env), args.data, args.out, args.resume_dir, args.tensorboard, p.runtime.dt)


if __name__ == "__main__":
    run_stage(main)
