"""Stage split_tasks: the deterministic train / held-out goal split."""

import argparse

from adlib.config import load_params
from adlib.logs import get_logger
from stages import run_stage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    p = load_params(args.params)
    # heavy imports (torch) only once params.yaml is known to be valid: a bad key fails in a blink
    from adlib.tasks import split_goals, write_split

    split = split_goals(p.env, p.split)
    write_split(split, args.out)
    get_logger("split_tasks").info(f"{len(split['train'])} training goals, {len(split['held_out'])} held out -> {args.out}")


if __name__ == "__main__":
    run_stage(main)
