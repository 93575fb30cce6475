"""Shared fixtures of the DVC tests: the whole tiny pipeline reproduced once per test session."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from dvc_helpers import TINY_DOWNSTREAM, Repo, make_repo, tiny_params


def _build_base(base: Path) -> dict:
    r = make_repo(base, tiny_params(TINY_DOWNSTREAM))
    t0 = time.time()
    out = r.dvc("repro")
    info = {"repro_out": out, "repro_s": round(time.time() - t0, 1)}
    r.git("add", "-A")     # dvc.lock, DVC's .gitignore files and the cache: false metrics/plots
    r.git("commit", "-q", "-m", "dvc repro")
    return info


@pytest.fixture(scope="session")
def base_repo(tmp_path_factory) -> tuple[Path, dict]:
    """A committed git + DVC repo with the whole tiny pipeline reproduced; built by the first
    xdist worker that asks, reused by the others."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent          # shared by all workers of this run
    base, done = root / "dvc_base", root / "dvc_base.json"
    with FileLock(str(root / "dvc_base.lock")):
        if not done.exists():
            shutil.rmtree(base, ignore_errors=True)   # a build that failed half-way
            done.write_text(json.dumps(_build_base(base)))
    return base, json.loads(done.read_text())


@pytest.fixture
def repo(base_repo, tmp_path: Path) -> Repo:
    """This test's own copy of the reproduced repo (git history, DVC cache and workspace)."""
    base, _ = base_repo
    shutil.copytree(base, tmp_path / "repo", symlinks=True,
                    ignore=lambda d, names: ["tmp"] if Path(d).name == ".dvc" else [])
    r = Repo(tmp_path / "repo")
    assert "up to date" in r.dvc("status"), "the copied repo is not up to date"
    return r
