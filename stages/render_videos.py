"""Stage render_videos: source agents and AD (in context, held-out goals) walking the room, as MP4/GIF,
plus a contact-sheet PNG of AD's episodes."""

import argparse

from adlib.config import load_params
from adlib.logs import get_logger
from stages import run_stage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--split", required=True)
    ap.add_argument("--sources", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    p = load_params(args.params)
    # heavy imports (torch) only once params.yaml is known to be valid: a bad key fails in a blink
    import torch

    from adlib.tasks import read_split
    from adlib.video import render_videos

    torch.set_num_threads(1)   # a batch of 1-3 runs: threads only add overhead
    s = render_videos(p.env, p.dt, p.render, read_split(args.split, p.env), args.sources, len(p.source.shards), args.model,
                      args.out, temperature=p.eval.temperature)
    ad = {g: round(sum(r[-10:]) / len(r[-10:]), 2) for g, r in s["ad_returns"].items()}
    get_logger("render_videos").info(f"{len(s['files'])} files in {s['seconds']:.1f} s -> {args.out}; "
                                     f"AD last-10 return per goal {ad}")


if __name__ == "__main__":
    run_stage(main)
