"""Stage eval_dt: the frozen model plays every held-out goal x seed from an empty context."""

import argparse

from adlib.config import load_params
from adlib.logs import get_logger, run_stage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--split", default="data/split.json")
    ap.add_argument("--model", default="models/dt/model.pt")
    ap.add_argument("--sources", default="data/sources")
    ap.add_argument("--metrics", default="metrics/eval.json")
    ap.add_argument("--curves", default="metrics/curves")
    ap.add_argument("--tb", default="models/eval_tb")
    args = ap.parse_args()
    p = load_params(args.params)
    # heavy imports (torch) only once params.yaml is known to be valid: a bad key fails in a blink
    from adlib.report import evaluate_checkpoint
    from adlib.tasks import read_split

    m = evaluate_checkpoint(args.model, p.env, p.eval, read_split(args.split, p.env), args.sources,
                            args.metrics, args.curves, args.tb)
    key = "success" if p.env.terminate_on_goal else "return"
    g = m["heldout"]["greedy"]
    get_logger("eval_dt").info(f"held-out greedy {key}: first10 {g[key + '_first10']['mean']:.3f} -> "
                               f"last10 {g[key + '_last10']['mean']:.3f} -> {args.metrics}")


if __name__ == "__main__":
    run_stage(main)
