"""Progress bars and log lines (nothing here changes what a stage computes)."""

from __future__ import annotations

import logging
import os
import sys

from tqdm.auto import tqdm


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
