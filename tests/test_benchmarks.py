"""Smoke runs of the hand-run benchmarks: ``python -m benchmarks.<name> --smoke`` runs the
script's own code at tiny sizes (benchmarks/smoke.py), so that a rename or a changed signature
in adlib breaks a test instead of the next hand run; none may write into docs/."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
SCRIPTS = ("ablate", "dt_throughput", "env_throughput", "envs", "eval_batching", "eval_kv_cache", "explorers",
           "firstfind", "learners", "levers", "planted_bugs", "rooms", "shared_load", "source_quality",
           "source_training", "source_update", "splits", "stage_threads", "train_memory")
NOT_SCRIPTS = {"__init__": "shared helpers", "smoke": "the smoke runs' sizes"}


def docs_state() -> tuple[str, dict[str, str]]:
    """``git status`` of docs/ and the content hash of every file under it."""
    status = subprocess.run(["git", "status", "--porcelain", "--", "docs/"], cwd=REPO, capture_output=True,
                            text=True).stdout
    files = {str(p.relative_to(DOCS)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(DOCS.rglob("*")) if p.is_file()}
    return status, files


def smoke_env() -> dict[str, str]:
    """One thread, no progress bars, the repository importable."""
    return {**os.environ, "CI": "true", "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_every_script_has_a_smoke_run() -> None:
    found = {p.stem for p in (REPO / "benchmarks").glob("*.py")}
    assert found - set(NOT_SCRIPTS) == set(SCRIPTS)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
@pytest.mark.parametrize("name", SCRIPTS)
def test_smoke_run(name: str) -> None:
    before = docs_state()
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--smoke"], cwd=REPO, env=smoke_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"benchmarks.{name} --smoke failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    assert docs_state() == before, f"benchmarks.{name} --smoke changed docs/"
