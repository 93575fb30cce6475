"""Validate a params file: ``python -m adlib.check [params.yaml]``.

Prints ``params.yaml: OK`` and exits 0, or prints the one-line error (naming the file, the
key, the value and what is allowed) to stderr and exits 1, without a traceback.

``python -m adlib.check --table`` prints the Markdown table of every parameter (key,
default, meaning and allowed values) that README.md carries between its
``<!-- params:start -->`` and ``<!-- params:end -->`` markers (a test keeps them equal).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from adlib.config import Params, ParamError, describe, load_params, to_dict

USAGE = "usage: python -m adlib.check [params.yaml] | --table"


def check_devices(p: Params) -> None:
    """Every ``runtime.*.device: cuda`` needs a GPU torch can see (torch is imported only then)."""
    from adlib.device import pick_device

    for section in ("source", "dt", "eval"):
        name = getattr(p.runtime, section).device
        if name == "cuda":
            pick_device(name, f"runtime.{section}.device")


def check_context_fits(p: Params, dataset_dir: str | Path | None = None) -> None:
    """``dt.seq_len`` against the streams a training window must fit in: every A2C stream holds
    at most ``dataset.history_len / source.nenvs`` transitions (fewer once subsampled); and when
    ``dataset_dir`` holds a dataset that this params.yaml leaves as it is (same env, source,
    dataset params and training goals), its shortest stream (train_dt refuses a window longer
    than any stream). A dataset that will be rebuilt, or an unreadable one, is not looked at."""
    from adlib.tasks import split_goals

    per_stream = p.dataset.history_len // p.source.nenvs
    if p.dt.seq_len > per_stream:
        raise ParamError(f"dt.seq_len = {p.dt.seq_len}: longer than every A2C stream (dataset.history_len / "
                         f"source.nenvs = {per_stream} transitions before subsampling); lower dt.seq_len")
    if dataset_dir is None or not (Path(dataset_dir) / "meta.json").is_file():
        return
    try:
        meta = json.loads((Path(dataset_dir) / "meta.json").read_text())
        same = (meta["env"] == to_dict(p.env) and meta["source"] == to_dict(p.source)
                and meta["dataset"] == to_dict(p.dataset) and meta["train_goals"] == split_goals(p.env, p.split)["train"])
        shortest = int(meta["shortest_stream"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    if same and p.dt.seq_len > shortest:
        raise ParamError(f"dt.seq_len = {p.dt.seq_len}: longer than the shortest stream of {dataset_dir} ({shortest} "
                         f"transitions), which this params.yaml keeps as it is; train_dt would refuse it. Lower "
                         f"dt.seq_len, or change dataset.subsample / history_len / noise.transitions / "
                         f"explorer.transitions")


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def params_table() -> str:
    """Markdown table of every parameter, from adlib/config.py."""
    def fmt(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, tuple):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return str(v)

    rows = ["| key | default | meaning (allowed) |", "|---|---|---|"]
    rows += [f"| `{key}` | `{fmt(default)}` | {doc} |" for key, default, doc in describe()]
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    if args == ["--table"]:
        print(params_table(), end="")
        return 0
    if len(args) > 1:
        print(USAGE, file=sys.stderr)
        return 2
    path = args[0] if args else "params.yaml"
    try:
        load_params(path)
    except ParamError as e:
        print(_one_line(str(e)), file=sys.stderr)
        return 1
    except (OSError, UnicodeDecodeError) as e:  # a folder, no permission, not text
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        print(_one_line(f"{path}: cannot read ({reason})"), file=sys.stderr)
        return 1
    print(f"{path}: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
