"""Thin DVC stage entry points (`python -m stages.<name>`): read params.yaml, call adlib."""

from __future__ import annotations

import os
import signal
import sys
from typing import Callable


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def prefer_sleeping_threads() -> None:
    """Let torch's OpenMP threads sleep between parallel regions instead of spinning
    (``OMP_WAIT_POLICY=PASSIVE``), unless the user chose a policy.

    libgomp reads the variable once, when torch is first imported, so this runs before any stage
    imports torch. On a CPU shared with other jobs, spinning threads wait for each other: idle the
    policy costs nothing, under load train_dt's step time grows in proportion to the load
    instead of several times faster (docs/benchmarks.md, "train_dt on a shared machine").
    It changes no number, only how threads wait; in a process that has already imported torch
    it takes effect in child processes only.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def run_stage(main: Callable[[], object]) -> None:
    """Run a stage's ``main``; a bad parameter (:class:`~adlib.config.ParamError`) prints one
    line ``error: <message>`` to stderr, with no traceback, and exits with status 2.

    Stages call it from ``if __name__ == "__main__":`` and load params.yaml before importing
    torch or doing any work, so a bad parameter costs well under a second and writes nothing.
    Bad or missing data (:class:`~adlib.io.DataError`, ``FileNotFoundError``) prints one line
    naming the file and exits with status 1. Any other exception propagates with its traceback
    (a bug). SIGTERM (``kill``, a scheduler's time limit) exits with status 143 through
    ``SystemExit``, so that what a stage had started to write (the temporary folders of
    :func:`~adlib.io.atomic_dir`) is removed on the way out, as on Ctrl-C.
    """
    from adlib.config import ParamError
    from adlib.io import DataError

    prefer_sleeping_threads()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        main()
    except (ParamError, DataError, FileNotFoundError) as e:
        line = " ".join(part.strip() for part in str(e).splitlines() if part.strip())
        print(f"error: {line}", file=sys.stderr)
        sys.exit(2 if isinstance(e, ParamError) else 1)
