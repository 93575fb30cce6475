"""Stage check_params: validate the whole params.yaml before any other stage runs.

DVC removes a stage's outputs before running its command, so a stage that validates its own
params would find its previous outputs already gone. Every other stage depends on this
stage's output instead: a bad params.yaml stops `dvc repro` here, and nothing is removed.
The output's content never changes, so a valid edit reruns only the stages it touches.

It also checks what only this machine or the data on disk can refute (a CUDA device; a
context longer than the streams of a dataset that stays as it is), and removes the folders of
shard stages that ``source.shards`` no longer has. dvc.yaml makes it depend on params.yaml as
a file, so any edit reruns it: DVC's run cache ignores keys named 'size' or 'nfiles', and a
stage restored from the run cache runs no code.
"""

import argparse
from pathlib import Path

from adlib.check import check_context_fits, check_devices
from adlib.config import load_params
from adlib.io import write_text
from adlib.logs import get_logger
from stages import run_stage

STAMP = "params.yaml passed adlib.config validation; every other stage depends on this file\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", required=True)
    ap.add_argument("--dataset", default=None, help="the dataset folder (data/dataset): dt.seq_len is checked "
                                                    "against its streams when params.yaml keeps it as it is")
    ap.add_argument("--sources", nargs="*", default=[], help="folders of the shard stages' outputs (data/sources, "
                                                             "logs/sources): shard folders no stage owns are removed")
    args = ap.parse_args()
    p = load_params(args.params)
    check_devices(p)
    check_context_fits(p, args.dataset)
    if args.sources:
        # here, not in a shard stage: DVC may restore a shard stage from its run cache, and skip its code
        from adlib.histories import remove_stale_shards

        remove_stale_shards([Path(d) for d in args.sources], len(p.source.shards))
    write_text(args.out, STAMP)
    get_logger("check_params").info(f"{args.params}: OK")


if __name__ == "__main__":
    run_stage(main)
