"""Stage build_history_dataset: training goals' histories (cut, subsampled, plus AD^eps) as one Parquet dataset."""

import argparse

from adlib.config import load_params
from adlib.logs import get_logger
from stages import run_stage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--split", required=True)
    ap.add_argument("--sources", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    p = load_params(args.params)
    # heavy imports (torch) only once params.yaml is known to be valid: a bad key fails in a blink
    from adlib.dataset import build_dataset
    from adlib.tasks import read_split

    meta = build_dataset(p.env, p.dataset, read_split(args.split, p.env), args.sources, len(p.source.shards), args.out)
    get_logger("build_history_dataset").info(
        f"{meta['transitions']:,} transitions in {meta['streams']} streams ({meta['a2c_streams']} A2C, "
        f"{meta['noise_streams']} AD^eps) of {len(meta['train_goals'])} training goals, "
        f"{meta['bytes_on_disk'] / 2**20:.1f} MiB -> {args.out}")


if __name__ == "__main__":
    run_stage(main)
