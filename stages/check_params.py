"""Stage check_params: validate the whole params.yaml before any other stage runs.

DVC removes a stage's outputs before running its command, so a stage that validates its own
params would find its previous outputs already gone. Every other stage depends on this
stage's output instead: a bad params.yaml stops `dvc repro` here, and nothing is removed.
The output's content never changes, so a valid edit reruns only the stages it touches.
"""

import argparse

from adlib.config import load_params
from adlib.io import write_text
from adlib.logs import get_logger
from stages import run_stage

STAMP = "params.yaml passed adlib.config validation; every other stage depends on this file\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="data/params.ok")
    args = ap.parse_args()
    load_params(args.params)
    write_text(args.out, STAMP)
    get_logger("check_params").info(f"{args.params}: OK")


if __name__ == "__main__":
    run_stage(main)
