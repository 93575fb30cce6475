"""Stage eval_dt: the frozen model plays every held-out goal x seed from an empty context."""

import argparse

from adlib.config import load_params
from adlib.logs import get_logger
from stages import run_stage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--split", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--sources", required=True)
    ap.add_argument("--metrics", required=True, help="headline numbers (dvc metrics)")
    ap.add_argument("--detail", required=True, help="the full report")
    ap.add_argument("--curves", required=True)
    ap.add_argument("--tensorboard", default=None, help="TensorBoard folder, e.g. logs/eval_dt")
    args = ap.parse_args()
    p = load_params(args.params)
    # heavy imports (torch) only once params.yaml is known to be valid: a bad key fails in a blink
    from adlib.evaluation import evaluate_checkpoint
    from adlib.tasks import read_split

    m = evaluate_checkpoint(args.model, p.env, p.dt, p.eval, read_split(args.split, p.env), args.sources, len(p.source.shards),
                            args.metrics, args.detail, args.curves, args.tensorboard, p.runtime.eval)
    key = "success" if p.env.terminate_on_goal else "return"
    s, g = m["held_out"]["sampled"], m["held_out"]["greedy"]
    get_logger("eval_dt").info(f"held-out {key} (sampled): first10 {s[key + '_first10']['mean']:.3f} -> "
                               f"last10 {s[key + '_last10']['mean']:.3f} (greedy last10 "
                               f"{g[key + '_last10']['mean']:.3f}) -> {args.metrics}")


if __name__ == "__main__":
    run_stage(main)
