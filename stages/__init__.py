"""Thin DVC stage entry points (`python -m stages.<name>`): read params.yaml, call adlib."""

from __future__ import annotations

import os
import signal
import sys
from typing import Callable


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


SPINCOUNT = "10000"   # libgomp spin iterations before a waiting thread sleeps (its default: 300000)


def prefer_sleeping_threads() -> None:
    """Let torch's OpenMP threads spin only briefly between parallel regions, then sleep
    (``GOMP_SPINCOUNT=10000``), unless the user chose a policy (``OMP_WAIT_POLICY``) or a spin
    count (``GOMP_SPINCOUNT``).

    libgomp reads the variables once, when torch is first imported, so this runs before any stage
    imports torch. Measured (docs/benchmarks.md, "train_dt on a shared machine" and "train_dt and
    eval_dt on an idle machine"): libgomp's long spin makes train_dt 4-13x slower on a CPU shared
    with 2-8 busy processes, where a fair share is 2-5x; sleeping at once (``PASSIVE``) keeps the
    fair share but costs eval_dt a third of its speed on an idle machine; the short spin is as
    fast as spinning idle and stays near the fair share under load. It changes no number, only how
    threads wait; in a process that has already imported torch it takes effect in child processes only.
    """
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = SPINCOUNT


def run_stage(main: Callable[[], object]) -> None:
    """Run a stage's ``main``; bad parameters (:class:`~adlib.config.ParamError`) print one
    line ``error: <message>`` per bad value to stderr, with no traceback, and exit with status 2.

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
        parts = [part.strip() for part in str(e).splitlines() if part.strip()]
        for line in parts if isinstance(e, ParamError) else [" ".join(parts)]:   # one line per bad value
            print(f"error: {line}", file=sys.stderr)
        sys.exit(2 if isinstance(e, ParamError) else 1)
