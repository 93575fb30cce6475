"""Progress bars, log lines, device choice and the stage entry point shared by the stages.

torch is imported lazily (in :func:`pick_device`) so that a stage can validate params.yaml
and fail in a fraction of a second, before paying for importing torch.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Callable

from tqdm.auto import tqdm

if TYPE_CHECKING:
    import torch


def quiet() -> bool:
    """True under CI (``CI=true``): no progress bars."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def bar(total: int, desc: str, unit: str = "it", **kw) -> tqdm:
    """A tqdm progress bar with a rate, silent under CI."""
    # a log file (not a terminal) gets a line every 15 s instead of a redraw every 0.1 s
    interval = 0.5 if sys.stderr.isatty() else 15.0
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, dynamic_ncols=True, disable=quiet(),
                file=sys.stderr, mininterval=interval, **kw)


def get_logger(name: str) -> logging.Logger:
    """A logger printing ``[stage] message`` lines to stderr."""
    log = logging.getLogger(name)
    if not log.handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter(f"[{name}] %(message)s"))
        log.addHandler(h)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


def pick_device(name: str, key: str = "device") -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is a
    :class:`~adlib.config.ParamError` naming ``key`` (one ``error:`` line, exit 2)."""
    import torch

    from adlib.config import ParamError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ParamError(f"{key} = 'cuda': torch sees no CUDA GPU on this machine (torch {torch.__version__}); "
                         f"use 'auto' or 'cpu', or install a CUDA build of torch")
    return torch.device(name)


def run_stage(main: Callable[[], object]) -> None:
    """Run a stage's ``main``; a bad parameter (:class:`~adlib.config.ParamError`) prints one
    line ``error: <message>`` to stderr, with no traceback, and exits with status 2.

    Stages call it from ``if __name__ == "__main__":`` and load params.yaml before importing
    torch or doing any work, so a bad parameter costs well under a second and writes nothing.
    Bad or missing data (:class:`~adlib.io.DataError`, ``FileNotFoundError``) prints one line
    naming the file and exits with status 1. Any other exception propagates with its traceback
    (a bug).
    """
    from adlib.config import ParamError
    from adlib.io import DataError

    try:
        main()
    except (ParamError, DataError, FileNotFoundError) as e:
        line = " ".join(part.strip() for part in str(e).splitlines() if part.strip())
        print(f"error: {line}", file=sys.stderr)
        sys.exit(2 if isinstance(e, ParamError) else 1)
